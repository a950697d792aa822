#include "aws/http.h"
#include "aws/xml.h"
#include "core/error.h"
#include "tests/support/awsmock.h"
#include "tests/support/test.h"

static kiln_xml *load(const char *fixture)
{
	char *text = kiln_awsmock_fixture(fixture);
	kiln_xml *x = NULL;
	if (kiln_xml_parse(&x, text, strlen(text)) < 0)
		fail_msg("%s: %s", fixture, kiln_error_last()->message);
	free(text);
	return x;
}

static void test_every_fixture_parses(void **state)
{
	static const char *const names[] = {
		"ec2-describe-instances.xml", "ec2-run-instances.xml", "ec2-describe-images.xml",
		"ec2-describe-snapshots.xml", "ec2-describe-key-pairs.xml",
		"ec2-describe-security-groups.xml", "ec2-describe-subnets.xml", "ec2-describe-vpcs.xml",
		"ec2-get-console-output.xml", "elbv2-describe-target-health.xml",
		"elbv2-describe-target-groups.xml", "elb-describe-instance-health.xml",
		"elb-describe-load-balancers.xml", "sts-get-caller-identity.xml",
	};
	size_t i;
	(void)state;
	for (i = 0; i < KILN_ARRAY_SIZE(names); i++)
		kiln_xml_free(load(names[i]));
}

static void test_lookups_ignore_namespaces(void **state)
{
	kiln_xml *x = load("ec2-describe-instances.xml");
	const kiln_xml_node *root = kiln_xml_root(x), *res, *inst;
	char id[KILN_ID_MAX], small[4];
	size_t n = 0;
	(void)state;

	/* the reply carries xmlns="http://ec2.amazonaws.com/doc/2016-11-15" */
	assert_string_equal(kiln_xml_name(root), "DescribeInstancesResponse");
	for (res = kiln_xml_first(root, "reservationSet", "item"); res; res = kiln_xml_next(res))
		for (inst = kiln_xml_first(res, "instancesSet", "item"); inst; inst = kiln_xml_next(inst)) {
			assert_int_equal(kiln_xml_copy(id, sizeof(id), inst, "instanceId"), 0);
			assert_true(!strncmp(id, "i-", 2));
			n++;
		}
	assert_int_equal(n, 2);
	inst = kiln_xml_path(root, "reservationSet/item/instancesSet/item");
	assert_non_null(inst);
	/* the capture stopped one of the two; moto lists them in either order */
	assert_int_equal(kiln_xml_copy(id, sizeof(id), inst, "instanceState/name"), 0);
	if (!strcmp(id, "running")) {
		assert_int_equal(kiln_xml_int(inst, "instanceState/code", -1), 16);
		inst = kiln_xml_next(inst);
	}
	assert_int_equal(kiln_xml_copy(id, sizeof(id), inst, "instanceState/name"), 0);
	assert_string_equal(id, "stopped");
	assert_int_equal(kiln_xml_int(inst, "instanceState/code", -1), 80);
	assert_int_equal(kiln_xml_int(inst, "no/such", 7), 7);
	/* an absent path is "" for copy and NULL for text */
	assert_int_equal(kiln_xml_copy(id, sizeof(id), inst, "noSuchThing"), 0);
	assert_string_equal(id, "");
	assert_null(kiln_xml_text(inst, "noSuchThing"));
	/* a value that does not fit is an error, never cut short */
	assert_error(kiln_xml_copy(small, sizeof(small), inst, "instanceId"), KILN_ERROR, "instanceId");
	kiln_xml_free(x);
}

static void check_fault(const char *fixture, int rc, const char *code, const char *msg_part,
			const char *request_id)
{
	char *text = kiln_awsmock_fixture(fixture);
	kiln_aws_fault f;
	memset(&f, 0, sizeof(f));
	assert_int_equal(kiln_xml_parse_fault(&f, text, strlen(text)), rc);
	if (rc == 0) {
		assert_string_equal(f.code, code);
		assert_non_null(strstr(f.message, msg_part));
		if (request_id)
			assert_string_equal(f.request_id, request_id);
	}
	free(text);
}

static void test_error_shapes(void **state)
{
	(void)state;
	/* EC2: <Response><Errors><Error>..</Error></Errors><RequestID/> */
	check_fault("ec2-error-instance-not-found.xml", 0, "InvalidInstanceID.NotFound",
		    "i-0123456789abcdef0", "request-id");
	check_fault("ec2-error-key-pair-duplicate.xml", 0, "InvalidKeyPair.Duplicate", "kiln-b-1", NULL);
	/* ELBv2: <ErrorResponse><Error><Type/><Code/>..</Error><RequestId/> */
	check_fault("elbv2-error-target-group-not-found.xml", 0, "TargetGroupNotFound", "not found", NULL);
	check_fault("elb-error-load-balancer-not-found.xml", 0, "LoadBalancerNotFound", "nope", NULL);
	/* moto's authentication failures: <ErrorResponse><Errors><Error> */
	check_fault("ec2-error-auth-failure.xml", 0, "AuthFailure", "credentials", NULL);
	check_fault("elbv2-error-signature.xml", 0, "InvalidClientTokenId", "security token", NULL);
	/* not AWS errors: an HTML 500, a success document, JSON */
	check_fault("html-500.html", KILN_ENOTFOUND, NULL, NULL, NULL);
	check_fault("ec2-describe-vpcs.xml", KILN_ENOTFOUND, NULL, NULL, NULL);
	check_fault("ssm-error-parameter-not-found.json", KILN_ENOTFOUND, NULL, NULL, NULL);
}

static void test_fault_is_one_line_and_keeps_error_state(void **state)
{
	static const char body[] =
		"<Response><Errors><Error><Code>X</Code><Message>line one\nline two</Message>"
		"</Error></Errors></Response>";
	kiln_aws_fault f;
	(void)state;
	memset(&f, 0, sizeof(f));
	kiln_error_set(KILN_ETHROTTLED, "before");
	assert_int_equal(kiln_xml_parse_fault(&f, body, strlen(body)), 0);
	assert_string_equal(f.message, "line one line two");
	assert_int_equal(kiln_xml_parse_fault(&f, "not xml", 7), KILN_ENOTFOUND);
	/* parsing a fault never disturbs the error being reported */
	assert_string_equal(kiln_error_last()->message, "before");
}

static void test_refuses_dtds_and_entities(void **state)
{
	static const char laughs[] =
		"<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">"
		"<!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">]>"
		"<Response><Errors><Error><Code>&lol2;</Code></Error></Errors></Response>";
	static const char xxe[] =
		"<?xml version=\"1.0\"?><!doctype r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>"
		"<r>&x;</r>";
	static const char entity_only[] = "<r><!ENTITY x \"y\"></r>";
	kiln_aws_fault f;
	kiln_xml *x = NULL;
	(void)state;
	assert_error(kiln_xml_parse(&x, laughs, strlen(laughs)), KILN_ERROR, "DOCTYPE");
	assert_null(x);
	assert_error(kiln_xml_parse(&x, xxe, strlen(xxe)), KILN_ERROR, "DOCTYPE");
	assert_error(kiln_xml_parse(&x, entity_only, strlen(entity_only)), KILN_ERROR, "ENTITY");
	memset(&f, 0, sizeof(f));
	assert_int_equal(kiln_xml_parse_fault(&f, laughs, strlen(laughs)), KILN_ENOTFOUND);
	assert_string_equal(f.code, "");
}

static void test_not_xml(void **state)
{
	kiln_xml *x = NULL;
	char *html = kiln_awsmock_fixture("html-500.html");
	(void)state;
	assert_error(kiln_xml_parse(&x, "{\"json\": 1}", 11), KILN_ERROR, "cannot parse the reply as XML");
	assert_error(kiln_xml_parse(&x, "", 0), KILN_ERROR, "cannot parse");
	assert_error(kiln_xml_parse(&x, "<a><b></a>", 10), KILN_ERROR, "cannot parse");
	/* a failure says what is wrong with this reply, never the one before */
	assert_error(kiln_xml_parse(&x, "<a>SECRETISH</b>", 16), KILN_ERROR, "cannot parse");
	assert_error(kiln_xml_parse(&x, "", 0), KILN_ERROR, "no root element");
	assert_null(strstr(kiln_error_last()->message, "SECRETISH"));
	assert_error(kiln_xml_parse(&x, "<a>SECRETISH</b>", 16), KILN_ERROR, "cannot parse");
	assert_error(kiln_xml_parse(&x, " ", 1), KILN_ERROR, "cannot parse");
	assert_null(strstr(kiln_error_last()->message, "SECRETISH"));
	assert_null(strstr(kiln_error_last()->message, "mismatch"));
	/* moto's HTML 500 starts with <!doctype html> */
	assert_int_equal(kiln_xml_parse(&x, html, strlen(html)), KILN_ERROR);
	free(html);
}

static char *text_of(const char *doc, const char *path)
{
	kiln_xml *x = NULL;
	char *t;
	if (kiln_xml_parse(&x, doc, strlen(doc)) < 0)
		fail_msg("%s: %s", doc, kiln_error_last()->message);
	t = kiln_xml_text(kiln_xml_root(x), path);
	kiln_xml_free(x);
	return t;
}

#define assert_text(doc, path, want)                 \
	do {                                         \
		char *t_ = text_of(doc, path);       \
		assert_non_null(t_);                 \
		assert_string_equal(t_, want);       \
		free(t_);                            \
	} while (0)

static void test_text_decoding(void **state)
{
	(void)state;
	/* the five predefined entities and character references, decimal and hex */
	assert_text("<a>&lt;&gt;&amp;&quot;&apos;</a>", NULL, "<>&\"'");
	assert_text("<a>&#65;&#x42;&#x20AC;&#128512;</a>", NULL, "AB\xE2\x82\xAC\xF0\x9F\x98\x80");
	/* CDATA is text, markup in it is not markup */
	assert_text("<a>x<![CDATA[<b>&amp;</b>]]>y</a>", NULL, "x<b>&amp;</b>y");
	/* line ends become \n, in text and CDATA */
	assert_text("<a>1\r\n2\r3<![CDATA[\r\n]]></a>", NULL, "1\n2\n3\n");
	/* an element's text is all its descendants' text, comments and PIs left out */
	assert_text("<a>p<!-- no --><b>q<c>r</c></b><?pi x?>s</a>", NULL, "pqrs");
	assert_text("<a><b>one</b><b>two</b></a>", "b", "one");
	/* an empty element is "" (present), an absent one NULL */
	assert_text("<a><b/><c></c></a>", "b", "");
	assert_text("<a><b/><c></c></a>", "c", "");
	assert_null(text_of("<a><b/></a>", "d"));
	/* UTF-8 passes through */
	assert_text("<a>gr\xC3\xBC\xC3\x9F</a>", NULL, "gr\xC3\xBC\xC3\x9F");
}

static void test_structure(void **state)
{
	static const char doc[] =
		"\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n"
		"<!-- before -->\n<?pi here?>\n"
		"<s:Envelope xmlns:s=\"urn:x\" a='1' b = \"&amp;2\">"
		"<s:Body><item>1</item><other/><item>2</item><item>3</item></s:Body>"
		"</s:Envelope>\n<!-- after -->\n";
	kiln_xml *x = NULL;
	const kiln_xml_node *it;
	int n = 0;
	(void)state;
	assert_int_equal(kiln_xml_parse(&x, doc, strlen(doc)), 0);
	/* prefixes are dropped: lookups go by local name */
	assert_string_equal(kiln_xml_name(kiln_xml_root(x)), "Envelope");
	for (it = kiln_xml_first(kiln_xml_root(x), "Body", "item"); it; it = kiln_xml_next(it))
		assert_int_equal(kiln_xml_int(it, NULL, 0), ++n);
	assert_int_equal(n, 3);
	assert_string_equal(kiln_xml_name(kiln_xml_child(kiln_xml_child(kiln_xml_root(x), "Body"), NULL)),
			    "item");
	kiln_xml_free(x);
}

static void test_malformed(void **state)
{
	static const char *const bad[][2] = {
		{ "<a>", "not closed" },
		{ "<a></b>", "does not match" },
		{ "<a><b></a></b>", "does not match" },
		{ "<a/><b/>", "after the root" },
		{ "<a/>text", "after the root" },
		{ "text<a/>", "no root" },
		{ "<a>&unknown;</a>", "undefined entity" },
		{ "<a>&amp</a>", "undefined entity" },
		{ "<a>& </a>", "undefined entity" },
		{ "<a>&#;</a>", "character reference" },
		{ "<a>&#0;</a>", "forbids" },
		{ "<a>&#xD800;</a>", "forbids" },
		{ "<a>&#x110000;</a>", "out of range" },
		{ "<a>\x01</a>", "forbidden character" },
		{ "<a>\xC3</a>", "UTF-8" },
		{ "<a>\xC0\x80</a>", "UTF-8" },         /* overlong NUL */
		{ "<a>\xED\xA0\x80</a>", "UTF-8" },     /* a surrogate */
		{ "<a>]]></a>", "']]>'" },
		{ "<a b=1/>", "quoted" },
		{ "<a b=\"<\"/>", "'<'" },
		{ "<a b=\"1\"c=\"2\"/>", "white space" },
		{ "<a><!-- x -- y --></a>", "'--'" },
		{ "<a><![CDATA[x</a>", "unterminated CDATA" },
		{ "<a><?xml version=\"1.0\"?></a>", "not at the start" },
		{ "<?xml version=\"2.0\"?><a/>", "version" },
		{ "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>", "UTF-8" },
		{ "<?xml encoding=\"UTF-8\"?><a/>", "without a version" },
		{ "<a:/>", "ends with ':'" },
		{ "<1a/>", "name" },
		{ "", "no root" },
		{ "   ", "no root" },
	};
	kiln_xml *x = NULL;
	size_t i;
	(void)state;
	for (i = 0; i < KILN_ARRAY_SIZE(bad); i++) {
		int rc = kiln_xml_parse(&x, bad[i][0], strlen(bad[i][0]));
		if (rc != KILN_ERROR || !strstr(kiln_error_last()->message, bad[i][1]))
			fail_msg("'%s': rc %d, '%s' (wanted '%s')", bad[i][0], rc,
				 kiln_error_last()->message, bad[i][1]);
		assert_null(x);
	}
	/* a NUL inside the body is refused too (it would cut strings short) */
	assert_error(kiln_xml_parse(&x, "<a>\0</a>", 8), KILN_ERROR, "forbidden character");
}

static void test_depth_is_capped(void **state)
{
	kiln_buf b = KILN_BUF_INIT;
	kiln_xml *x = NULL;
	int i;
	(void)state;
	for (i = 0; i < 256; i++)
		assert_int_equal(kiln_buf_puts(&b, "<d>"), 0);
	for (i = 0; i < 256; i++)
		assert_int_equal(kiln_buf_puts(&b, "</d>"), 0);
	assert_int_equal(kiln_xml_parse(&x, b.ptr, b.len), 0);
	kiln_xml_free(x);
	kiln_buf_reset(&b);
	for (i = 0; i < 257; i++)
		assert_int_equal(kiln_buf_puts(&b, "<d>"), 0);
	assert_error(kiln_xml_parse(&x, b.ptr, b.len), KILN_ERROR, "nest too deep");
	kiln_buf_release(&b);
}

static void test_big_text(void **state)
{
	/* text larger than an arena block, and many nodes */
	kiln_buf b = KILN_BUF_INIT;
	kiln_xml *x = NULL;
	char *t;
	int i;
	(void)state;
	assert_int_equal(kiln_buf_puts(&b, "<r><big>"), 0);
	for (i = 0; i < 50000; i++)
		assert_int_equal(kiln_buf_putc(&b, (char)('a' + i % 26)), 0);
	assert_int_equal(kiln_buf_puts(&b, "</big>"), 0);
	for (i = 0; i < 5000; i++)
		assert_int_equal(kiln_buf_printf(&b, "<n>%d</n>", i), 0);
	assert_int_equal(kiln_buf_puts(&b, "</r>"), 0);
	assert_int_equal(kiln_xml_parse(&x, b.ptr, b.len), 0);
	t = kiln_xml_text(kiln_xml_root(x), "big");
	assert_non_null(t);
	assert_int_equal(strlen(t), 50000);
	assert_int_equal(t[49999], 'a' + 49999 % 26);
	free(t);
	assert_int_equal(kiln_xml_int(kiln_xml_next(kiln_xml_child(kiln_xml_root(x), "n")), NULL, -1), 1);
	kiln_xml_free(x);
	kiln_buf_release(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_fixture_parses),
		cmocka_unit_test(test_lookups_ignore_namespaces),
		cmocka_unit_test(test_error_shapes),
		cmocka_unit_test(test_fault_is_one_line_and_keeps_error_state),
		cmocka_unit_test(test_refuses_dtds_and_entities),
		cmocka_unit_test(test_not_xml),
		cmocka_unit_test(test_text_decoding),
		cmocka_unit_test(test_structure),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_depth_is_capped),
		cmocka_unit_test(test_big_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
