/*
 * test_sigv4: the official SigV4 test suite (aws-c-auth's v4 cases), read
 * from ../shared/testdata/aws-signing-test-suite/v4 beside the checkout,
 * plus the signer's own edge cases.
 *
 * For every case folder: parse request.txt (request line, headers with
 * folded continuation lines and repeats, body) and context.json, sign with
 * header signing, and compare the canonical request, the string to sign,
 * the signature and the headers the signed request adds (X-Amz-Date,
 * Authorization, X-Amz-Security-Token, X-Amz-Content-Sha256) with the
 * case's header-*.txt files. The query-* files (presigned URLs) are not
 * compared: kiln never presigns, and every case ships header outputs.
 */
#include <dirent.h>
#include <strings.h>
#include <sys/stat.h>

#include <jansson.h>

#include "aws/sigv4.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/fs.h"
#include "tests/support/test.h"

#define SUITE_REL "../shared/testdata/aws-signing-test-suite/v4"
#define N_SUITE_CASES 38

typedef struct parsed_request {
	char *method;
	char *path;
	char *query;
	char *host;
	kiln_http_header headers[32];
	size_t n_headers;
	char *body;
	size_t body_len;
} parsed_request;

static char *read_text(const char *dir, const char *name)
{
	kiln_buf b = KILN_BUF_INIT;
	char *path = kiln_strdupf("%s/%s", dir, name);
	assert_non_null(path);
	if (kiln_read_file(&b, path) < 0)
		fail_msg("cannot read %s: %s", path, kiln_error_last()->message);
	free(path);
	return kiln_buf_detach(&b);
}

/* Files end with or without a final newline; compare without it. */
static void chomp(char *s)
{
	size_t n = strlen(s);
	while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
		s[--n] = '\0';
}

/*
 * Splits request.txt into its parts. The request line's target may hold
 * spaces ("GET /example space/ HTTP/1.1"), so the method ends at the first
 * space and the version starts at the last. A header line starting with
 * white space continues the previous header's value (obs-fold); the
 * newline is kept, and the signer folds it. An empty line starts the body.
 */
static void parse_request(parsed_request *out, const char *text)
{
	const char *line = text, *end, *body = NULL;
	char *copy, *p, *sp1, *sp2, *q;
	kiln_buf values[32];
	size_t i;

	memset(out, 0, sizeof(*out));
	for (i = 0; i < KILN_ARRAY_SIZE(values); i++)
		kiln_buf_init(&values[i], 0);

	end = strchr(line, '\n');
	copy = end ? kiln_view_dup((kiln_view){ line, (size_t)(end - line) }) : kiln_strdup(line);
	assert_non_null(copy);
	sp1 = strchr(copy, ' ');
	sp2 = strrchr(copy, ' ');
	assert_non_null(sp1);
	assert_true(sp2 > sp1);
	*sp1 = *sp2 = '\0';
	out->method = kiln_strdup(copy);
	q = strchr(sp1 + 1, '?');
	if (q) {
		*q = '\0';
		out->query = kiln_strdup(q + 1);
	}
	out->path = kiln_strdup(sp1 + 1);
	free(copy);

	line = end ? end + 1 : line + strlen(line);
	while (*line) {
		end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		if (len == 0) {
			body = end + 1;
			break;
		}
		if (line[0] == ' ' || line[0] == '\t') {
			assert_true(out->n_headers > 0);
			kiln_buf *v = &values[out->n_headers - 1];
			assert_int_equal(kiln_buf_putc(v, '\n'), 0);
			assert_int_equal(kiln_buf_put(v, line, len), 0);
		} else {
			const char *colon = memchr(line, ':', len);
			assert_non_null(colon);
			assert_true(out->n_headers < KILN_ARRAY_SIZE(out->headers));
			p = kiln_view_dup((kiln_view){ line, (size_t)(colon - line) });
			out->headers[out->n_headers].name = p;
			assert_int_equal(kiln_buf_put(&values[out->n_headers], colon + 1,
						      len - (size_t)(colon + 1 - line)), 0);
			out->n_headers++;
		}
		line = end ? end + 1 : line + len;
	}
	for (i = 0; i < out->n_headers; i++)
		out->headers[i].value = kiln_buf_detach(&values[i]);
	for (i = 0; i < KILN_ARRAY_SIZE(values); i++)
		kiln_buf_release(&values[i]);

	/* Host is the signer's own field, not one of "the other headers" */
	for (i = 0; i < out->n_headers; i++) {
		if (strcasecmp(out->headers[i].name, "host") == 0) {
			out->host = (char *)out->headers[i].value;
			free((char *)out->headers[i].name);
			memmove(&out->headers[i], &out->headers[i + 1],
				(out->n_headers - i - 1) * sizeof(out->headers[0]));
			out->n_headers--;
			break;
		}
	}
	assert_non_null(out->host);
	if (body) {
		out->body_len = strlen(body);
		out->body = kiln_strdup(body);
	}
}

static void parsed_request_release(parsed_request *r)
{
	size_t i;
	free(r->method);
	free(r->path);
	free(r->query);
	free(r->host);
	for (i = 0; i < r->n_headers; i++) {
		free((char *)r->headers[i].name);
		free((char *)r->headers[i].value);
	}
	free(r->body);
}

/* The value of header name (first match) in a signed-request.txt, or NULL. */
static char *signed_header(const char *signed_request, const char *name)
{
	const char *line = strchr(signed_request, '\n');
	size_t n = strlen(name);
	while (line && line[1] && line[1] != '\n') {
		line++;
		if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
			const char *end = strchr(line, '\n');
			return kiln_view_dup((kiln_view){ line + n + 1, end ? (size_t)(end - line - n - 1)
									   : strlen(line + n + 1) });
		}
		line = strchr(line, '\n');
	}
	return NULL;
}

static char *json_str(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_string(v) ? kiln_strdup(json_string_value(v)) : NULL;
}

static void run_case(const char *dir, const char *name)
{
	kiln_aws_credentials creds = { 0 };
	kiln_sigv4_request req = { 0 };
	kiln_sigv4_result res;
	parsed_request pr;
	json_error_t jerr;
	json_t *ctx, *jc;
	char *text, *want, *signed_req, *hv;
	int64_t t;

	text = read_text(dir, "context.json");
	ctx = json_loads(text, 0, &jerr);
	free(text);
	if (!ctx)
		fail_msg("%s: context.json: %s", name, jerr.text);
	jc = json_object_get(ctx, "credentials");
	creds.access_key_id = json_str(jc, "access_key_id");
	creds.secret_access_key = json_str(jc, "secret_access_key");
	creds.session_token = json_str(jc, "token");
	req.region = json_string_value(json_object_get(ctx, "region"));
	req.service = json_string_value(json_object_get(ctx, "service"));
	assert_int_equal(kiln_parse_iso8601(&t, json_string_value(json_object_get(ctx, "timestamp"))), 0);
	req.time = t;
	req.no_normalize_path = json_is_false(json_object_get(ctx, "normalize"));
	req.sign_content_sha256 = json_is_true(json_object_get(ctx, "sign_body"));
	req.omit_session_token = json_is_true(json_object_get(ctx, "omit_session_token"));

	text = read_text(dir, "request.txt");
	parse_request(&pr, text);
	free(text);
	req.method = pr.method;
	req.host = pr.host;
	req.path = pr.path;
	req.query = pr.query;
	req.headers = pr.headers;
	req.n_headers = pr.n_headers;
	req.body = pr.body;
	req.body_len = pr.body_len;

	kiln_sigv4_result_init(&res);
	if (kiln_sigv4_sign(&res, &req, &creds) < 0)
		fail_msg("%s: sign: %s", name, kiln_error_last()->message);

	want = read_text(dir, "header-canonical-request.txt");
	chomp(want);
	if (strcmp(res.canonical_request.ptr, want) != 0)
		fail_msg("%s: canonical request\n--- want\n%s\n--- got\n%s", name, want,
			 res.canonical_request.ptr);
	free(want);

	want = read_text(dir, "header-string-to-sign.txt");
	chomp(want);
	if (strcmp(res.string_to_sign.ptr, want) != 0)
		fail_msg("%s: string to sign\n--- want\n%s\n--- got\n%s", name, want,
			 res.string_to_sign.ptr);
	free(want);

	want = read_text(dir, "header-signature.txt");
	chomp(want);
	if (strcmp(res.signature, want) != 0)
		fail_msg("%s: signature: want %s got %s", name, want, res.signature);
	free(want);

	/* what the signed request adds, each as the signer hands it to http.c */
	signed_req = read_text(dir, "header-signed-request.txt");
	hv = signed_header(signed_req, "Authorization");
	assert_non_null(hv);
	if (strcmp(hv, res.authorization) != 0)
		fail_msg("%s: authorization\n want %s\n got  %s", name, hv, res.authorization);
	free(hv);
	hv = signed_header(signed_req, "X-Amz-Date");
	assert_non_null(hv);
	assert_string_equal(hv, res.amz_date);
	free(hv);
	hv = signed_header(signed_req, "X-Amz-Security-Token");
	if (creds.session_token) {
		/* sent even when omitted from the signature (post-sts-header-after) */
		assert_non_null(hv);
		assert_string_equal(hv, creds.session_token);
	} else {
		assert_null(hv);
	}
	free(hv);
	hv = signed_header(signed_req, "X-Amz-Content-Sha256");
	if (req.sign_content_sha256) {
		assert_non_null(hv);
		assert_string_equal(hv, res.content_sha256);
	} else {
		assert_null(hv);
	}
	free(hv);
	free(signed_req);

	kiln_sigv4_result_release(&res);
	parsed_request_release(&pr);
	kiln_aws_credentials_release(&creds);
	json_decref(ctx);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_official_suite(void **state)
{
	char *root, *names[128], *dir;
	size_t n = 0, i;
	struct dirent *de;
	DIR *d;
	(void)state;

	root = kiln_strdup(kiln_test_source_path(SUITE_REL));
	d = opendir(root);
	if (!d) {
		printf("skipped: suite not found (%s)\n", root);
		free(root);
		skip();
	}
	while ((de = readdir(d))) {
		struct stat st;
		if (de->d_name[0] == '.')
			continue;
		dir = kiln_strdupf("%s/%s", root, de->d_name);
		if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
			assert_true(n < KILN_ARRAY_SIZE(names));
			names[n++] = kiln_strdup(de->d_name);
		}
		free(dir);
	}
	closedir(d);
	qsort(names, n, sizeof(names[0]), cmp_str);
	/* a short suite (a partial copy) must not pass as the whole */
	assert_int_equal(n, N_SUITE_CASES);
	for (i = 0; i < n; i++) {
		dir = kiln_strdupf("%s/%s", root, names[i]);
		run_case(dir, names[i]);
		free(dir);
		free(names[i]);
	}
	printf("sigv4 suite: %zu/%d cases passed\n", n, N_SUITE_CASES);
	free(root);
}

/* ---- the signer's own cases ------------------------------------------ */

static const kiln_aws_credentials test_creds = {
	(char *)"AKIDEXAMPLE", (char *)"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", NULL, 0, "test",
};

static void test_query_reencoding(void **state)
{
	kiln_sigv4_request req = { 0 };
	kiln_sigv4_result res;
	const char *nl;
	(void)state;

	req.method = "GET";
	req.host = "example.amazonaws.com";
	req.path = "/a%20b/./c";
	/* "~" and "%7E" sign alike; '+' is a literal plus; bare key; empty pairs */
	req.query = "b=%7e&a=x+y&&c&a=%zz&B=1";
	req.region = "us-east-1";
	req.service = "service";
	req.time = 1440938160;
	kiln_sigv4_result_init(&res);
	assert_int_equal(kiln_sigv4_sign(&res, &req, &test_creds), 0);
	nl = strchr(res.canonical_request.ptr, '\n') + 1;
	/* the path was sent percent-encoded: it is encoded once more */
	assert_true(strncmp(nl, "/a%2520b/c\nB=1&a=%25zz&a=x%2By&b=~&c=\n", 38) == 0);
	kiln_sigv4_result_release(&res);
}

static void test_header_rules(void **state)
{
	kiln_http_header h[] = {
		{ "X-Amz-Target", "AmazonSSM.PutParameter" },
		{ "Content-Type", "  application/x-amz-json-1.1\t " },
		{ "x-multi", "a\r\n\t b" },
		{ "X-MULTI", "c" },
	};
	kiln_http_header bad[] = { { "Host", "x" } };
	kiln_http_header bad2[] = { { "Bad Name", "x" } };
	kiln_aws_credentials tok = test_creds;
	kiln_sigv4_request req = { 0 };
	kiln_sigv4_result res;
	(void)state;

	req.method = "POST";
	req.host = "127.0.0.1:5000";
	req.path = "/";
	req.headers = h;
	req.n_headers = KILN_ARRAY_SIZE(h);
	req.body = "{}";
	req.body_len = 2;
	req.region = "eu-west-1";
	req.service = "ssm";
	req.time = 1440938160;
	tok.session_token = (char *)"TOKEN";
	kiln_sigv4_result_init(&res);
	assert_int_equal(kiln_sigv4_sign(&res, &req, &tok), 0);
	assert_string_equal(res.canonical_request.ptr,
			    "POST\n/\n\n"
			    "content-type:application/x-amz-json-1.1\n"
			    "host:127.0.0.1:5000\n"
			    "x-amz-date:20150830T123600Z\n"
			    "x-amz-security-token:TOKEN\n"
			    "x-amz-target:AmazonSSM.PutParameter\n"
			    "x-multi:a b,c\n\n"
			    "content-type;host;x-amz-date;x-amz-security-token;x-amz-target;x-multi\n"
			    "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
	assert_true(strstr(res.authorization, "Credential=AKIDEXAMPLE/20150830/eu-west-1/ssm/aws4_request, ") != NULL);
	/* the secret never shows in what the signer hands back */
	assert_null(strstr(res.canonical_request.ptr, test_creds.secret_access_key));
	assert_null(strstr(res.string_to_sign.ptr, test_creds.secret_access_key));
	assert_null(strstr(res.authorization, test_creds.secret_access_key));

	/* a retry re-signs into the same result with a fresh time */
	req.time += 61;
	assert_int_equal(kiln_sigv4_sign(&res, &req, &tok), 0);
	assert_string_equal(res.amz_date, "20150830T123701Z");
	assert_int_equal(strstr(res.canonical_request.ptr, "x-amz-date:20150830T123701Z") != NULL, 1);
	assert_null(strstr(res.canonical_request.ptr, "123600Z"));

	req.headers = bad;
	req.n_headers = 1;
	assert_error(kiln_sigv4_sign(&res, &req, &tok), KILN_EINVALID, "'Host'");
	assert_string_equal(res.authorization, "");
	req.headers = bad2;
	assert_error(kiln_sigv4_sign(&res, &req, &tok), KILN_EINVALID, "'Bad Name'");
	req.n_headers = 0;
	tok.secret_access_key = NULL;
	assert_error(kiln_sigv4_sign(&res, &req, &tok), KILN_EAUTH, "secret");
	kiln_sigv4_result_release(&res);
}

static void test_uri_encode(void **state)
{
	kiln_buf b = KILN_BUF_INIT;
	const char in[] = "a/b c~-_.\xe1\x88\xb4+*=&%";
	(void)state;
	assert_int_equal(kiln_sigv4_uri_encode(&b, in, strlen(in), true), 0);
	assert_string_equal(b.ptr, "a/b%20c~-_.%E1%88%B4%2B%2A%3D%26%25");
	kiln_buf_reset(&b);
	assert_int_equal(kiln_sigv4_uri_encode(&b, in, 3, false), 0);
	assert_string_equal(b.ptr, "a%2Fb");
	kiln_buf_release(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_official_suite),
		cmocka_unit_test(test_query_reencoding),
		cmocka_unit_test(test_header_rules),
		cmocka_unit_test(test_uri_encode),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
