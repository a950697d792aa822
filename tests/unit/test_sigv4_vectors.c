/*
 * test_sigv4_vectors: kiln signs the requests it really sends exactly as
 * botocore does. tests/vectors/gen_sigv4_vectors.py ran botocore's own
 * clients (serializers, endpoints, signer) with a frozen clock and wrote one
 * JSON file per request: EC2 Query POSTs with lists, ELBv2, classic ELB,
 * STS, SSM over the JSON protocol; each on AWS's endpoint and on a custom
 * http://127.0.0.1:5000, each with and without a session token.
 *
 * For each file: sign request.{method,host,path,query,headers,body} with
 * the credentials, region and signing name at the file's time, and compare
 * the canonical request, the string to sign and the Authorization header.
 */
#include <dirent.h>
#include <jansson.h>

#include "aws/sigv4.h"
#include "core/buf.h"
#include "core/error.h"
#include "tests/support/test.h"

#define VECTORS_REL "tests/vectors/sigv4"
/* what the generator writes: 7 calls x 2 endpoints x with/without token */
#define MIN_VECTORS 28

static const char *str(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_string(v))
		fail_msg("vector: '%s' missing or not a string", key);
	return json_string_value(v);
}

static void check_vector(const char *path, const char *name)
{
	kiln_http_header headers[16];
	kiln_aws_credentials creds = { 0 };
	kiln_sigv4_request req = { 0 };
	kiln_sigv4_result res;
	json_error_t jerr;
	json_t *v, *r, *c, *hs, *h, *tok;
	size_t i;

	v = json_load_file(path, 0, &jerr);
	if (!v)
		fail_msg("%s: %s", path, jerr.text);
	r = json_object_get(v, "request");
	c = json_object_get(v, "credentials");
	creds.access_key_id = (char *)str(c, "access_key_id");
	creds.secret_access_key = (char *)str(c, "secret_access_key");
	tok = json_object_get(c, "session_token");
	creds.session_token = tok ? (char *)json_string_value(tok) : NULL;

	req.method = str(r, "method");
	req.host = str(r, "host");
	req.path = str(r, "path");
	req.query = str(r, "query");
	req.body = str(r, "body");
	req.body_len = strlen(req.body);
	req.region = str(v, "region");
	req.service = str(v, "signing_name");
	req.time = json_integer_value(json_object_get(v, "time"));
	assert_true(req.time > 0);
	hs = json_object_get(r, "headers");
	assert_true(json_array_size(hs) <= KILN_ARRAY_SIZE(headers));
	json_array_foreach(hs, i, h) {
		headers[i].name = json_string_value(json_array_get(h, 0));
		headers[i].value = json_string_value(json_array_get(h, 1));
		assert_non_null(headers[i].name);
		assert_non_null(headers[i].value);
	}
	req.headers = headers;
	req.n_headers = json_array_size(hs);

	kiln_sigv4_result_init(&res);
	if (kiln_sigv4_sign(&res, &req, &creds) < 0)
		fail_msg("%s: sign: %s", name, kiln_error_last()->message);
	if (strcmp(res.canonical_request.ptr, str(v, "canonical_request")) != 0)
		fail_msg("%s: canonical request\n--- botocore\n%s\n--- kiln\n%s", name,
			 str(v, "canonical_request"), res.canonical_request.ptr);
	if (strcmp(res.string_to_sign.ptr, str(v, "string_to_sign")) != 0)
		fail_msg("%s: string to sign\n--- botocore\n%s\n--- kiln\n%s", name,
			 str(v, "string_to_sign"), res.string_to_sign.ptr);
	assert_string_equal(res.amz_date, str(v, "amz_date"));
	if (strcmp(res.authorization, str(v, "authorization")) != 0)
		fail_msg("%s: authorization\n botocore %s\n kiln     %s", name,
			 str(v, "authorization"), res.authorization);
	kiln_sigv4_result_release(&res);
	json_decref(v);
}

static void test_botocore_vectors(void **state)
{
	const char *root = kiln_test_source_path(VECTORS_REL);
	char *dir = kiln_strdup(root), *path;
	struct dirent *de;
	size_t n = 0, len;
	DIR *d;
	(void)state;

	d = opendir(dir);
	if (!d)
		fail_msg("cannot open %s (is KILN_SOURCE_DIR set?)", dir);
	while ((de = readdir(d))) {
		len = strlen(de->d_name);
		if (len < 6 || strcmp(de->d_name + len - 5, ".json") != 0)
			continue;
		path = kiln_strdupf("%s/%s", dir, de->d_name);
		check_vector(path, de->d_name);
		free(path);
		n++;
	}
	closedir(d);
	free(dir);
	assert_true(n >= MIN_VECTORS);
	printf("sigv4 vectors: %zu/%zu match botocore\n", n, n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_botocore_vectors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
