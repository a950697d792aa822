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
	assert_error(kiln_xml_parse(&x, "", 0), KILN_ERROR, "it is empty");
	assert_null(strstr(kiln_error_last()->message, "SECRETISH"));
	assert_error(kiln_xml_parse(&x, "<a>SECRETISH</b>", 16), KILN_ERROR, "cannot parse");
	assert_error(kiln_xml_parse(&x, " ", 1), KILN_ERROR, "cannot parse");
	assert_null(strstr(kiln_error_last()->message, "SECRETISH"));
	assert_null(strstr(kiln_error_last()->message, "mismatch"));
	/* moto's HTML 500 starts with <!doctype html> */
	assert_int_equal(kiln_xml_parse(&x, html, strlen(html)), KILN_ERROR);
	free(html);
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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
