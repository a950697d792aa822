#include "aws/query.h"
#include "core/error.h"
#include "tests/support/test.h"

static void test_uri_encode(void **state)
{
	kiln_buf b = KILN_BUF_INIT;
	(void)state;
	/* RFC 3986: unreserved kept, space as %20 (never '+'), UTF-8 bytes escaped, upper-case hex */
	assert_int_equal(kiln_uri_encode(&b, "a b*~/é+=&-_.", strlen("a b*~/é+=&-_.")), 0);
	assert_string_equal(b.ptr, "a%20b%2A~%2F%C3%A9%2B%3D%26-_.");
	kiln_buf_release(&b);
}

static void test_body_with_lists(void **state)
{
	static const char *const ids[] = { "i-1", "i-2" };
	kiln_query q;
	(void)state;
	kiln_query_init(&q, "DescribeInstances", "2016-11-15");
	kiln_query_addf(&q, "tag:kiln:image", "Filter.%d.Name", 1);
	kiln_query_addf(&q, "web app", "Filter.%d.Value.%d", 1, 1);
	kiln_query_add_list(&q, "InstanceId", NULL, ids, 2);
	kiln_query_add_list(&q, "Targets.member", ".Id", ids, 2);
	kiln_query_add_int(&q, "MaxCount", 3);
	kiln_query_add_bool(&q, "Overwrite", false);
	kiln_query_add(&q, "Skipped", NULL);
	assert_int_equal(kiln_query_error(&q), 0);
	assert_string_equal(q.body.ptr,
			    "Action=DescribeInstances&Version=2016-11-15"
			    "&Filter.1.Name=tag%3Akiln%3Aimage&Filter.1.Value.1=web%20app"
			    "&InstanceId.1=i-1&InstanceId.2=i-2"
			    "&Targets.member.1.Id=i-1&Targets.member.2.Id=i-2"
			    "&MaxCount=3&Overwrite=false");
	assert_string_equal(q.action, "DescribeInstances");
	kiln_query_release(&q);
}

static void test_sticky_error(void **state)
{
	kiln_query q;
	char *big = malloc(KILN_QUERY_MAX + 1);
	size_t len;
	(void)state;
	assert_non_null(big);
	memset(big, 'a', KILN_QUERY_MAX);
	big[KILN_QUERY_MAX] = '\0';
	kiln_query_init(&q, "ImportKeyPair", "2016-11-15");
	kiln_query_add(&q, "KeyName", "k");
	len = q.body.len;
	kiln_query_add(&q, "PublicKeyMaterial", big);
	assert_int_equal(kiln_query_error(&q), KILN_ENOMEM);
	/* later adds do nothing; the first failure is kept */
	kiln_query_add(&q, "More", "x");
	assert_int_equal(kiln_query_error(&q), KILN_ENOMEM);
	assert_true(q.body.len <= KILN_QUERY_MAX);
	assert_null(strstr(q.body.ptr, "More="));
	(void)len;
	kiln_query_release(&q);

	/* a name that does not fit is refused, not cut */
	kiln_query_init(&q, "X", "1");
	kiln_query_addf(&q, "v", "%s.%0300d", "Name", 1);
	assert_error(kiln_query_error(&q), KILN_EINVALID, "too long");
	kiln_query_release(&q);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uri_encode),
		cmocka_unit_test(test_body_with_lists),
		cmocka_unit_test(test_sticky_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
