#include <signal.h>

#include "aws/http.h"
#include "core/clock.h"
#include "core/error.h"
#include "tests/support/awsmock.h"
#include "tests/support/test.h"

/* 2026-11-25T21:52:12Z, as the machine's clock said when the fixtures were captured */
#define T0_MS 1795643532000LL

static kiln_awsmock mock;
static kiln_aws_config cfg;
static kiln_aws_client *client;
static double jitter_value = 0.5;
static kiln_buf events_text;

static double fixed_jitter(void *ctx)
{
	(void)ctx;
	return jitter_value;
}

static void capture(void *ctx, const kiln_event *ev)
{
	char *fields = ev->fields ? json_dumps(ev->fields, JSON_COMPACT) : NULL;
	(void)ctx;
	kiln_buf_printf(&events_text, "%s %s %s\n", ev->name, ev->message, fields ? fields : "");
	free(fields);
}

static const kiln_events sink = { capture, NULL };

static void client_open(unsigned max_attempts)
{
	kiln_aws_client_options o = KILN_AWS_CLIENT_OPTIONS_INIT;
	o.transport = &mock.transport;
	o.events = &sink;
	o.max_attempts = max_attempts;
	o.random = fixed_jitter;
	assert_int_equal(kiln_aws_client_new(&client, &cfg, &o), 0);
}

static int setup(void **state)
{
	(void)state;
	kiln_test_clock_install(T0_MS);
	kiln_awsmock_init(&mock);
	kiln_awsmock_config(&cfg);
	/* the virtual clock restarts with every test; the process's limiter would not (test_aws_ratelimit has it) */
	setenv("KILN_AWS_RATE_LIMIT", "off", 1);
	kiln_buf_init(&events_text, 0);
	jitter_value = 0.5;
	unsetenv("AWS_MAX_ATTEMPTS");
	client_open(0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	kiln_aws_client_free(client);
	client = NULL;
	kiln_aws_config_release(&cfg);
	kiln_awsmock_release(&mock);
	kiln_buf_release(&events_text);
	kiln_test_clock_uninstall();
	kiln_cancel_reset();
	return 0;
}

static int call_query(const char *action, const char *body, unsigned flags, kiln_buf *out)
{
	kiln_aws_request req = { 0 };
	req.service = KILN_AWS_EC2;
	req.protocol = KILN_AWS_QUERY;
	req.action = action;
	req.body = kiln_view_of(body);
	req.flags = flags;
	return kiln_aws_call(client, &req, out);
}

static uint64_t sleep_total_since(uint64_t start)
{
	return kiln_clock_now_ms() - start;
}

/* ---- the policy, pure ---- */

static void test_classify(void **state)
{
	static const struct {
		int transport;
		int status;
		const char *code;
		kiln_aws_retry_kind want;
	} cases[] = {
		{ 0, 503, "RequestLimitExceeded", KILN_AWS_RETRY_THROTTLE },
		{ 0, 400, "Throttling", KILN_AWS_RETRY_THROTTLE },
		{ 0, 400, "ThrottlingException", KILN_AWS_RETRY_THROTTLE },
		{ 0, 503, "SlowDown", KILN_AWS_RETRY_THROTTLE },
		{ 0, 503, "EC2ThrottledException", KILN_AWS_RETRY_THROTTLE },
		{ 0, 429, "", KILN_AWS_RETRY_THROTTLE },
		{ 0, 500, "InternalError", KILN_AWS_RETRY_TRANSIENT },
		{ 0, 400, "RequestTimeout", KILN_AWS_RETRY_TRANSIENT },
		{ 0, 500, "", KILN_AWS_RETRY_TRANSIENT },
		{ 0, 502, "", KILN_AWS_RETRY_TRANSIENT },
		{ 0, 503, "", KILN_AWS_RETRY_TRANSIENT },
		{ 0, 504, "", KILN_AWS_RETRY_TRANSIENT },
		{ 0, 501, "", KILN_AWS_RETRY_NONE },
		{ 0, 400, "InvalidParameterValue", KILN_AWS_RETRY_NONE },
		{ 0, 400, "InvalidInstanceID.NotFound", KILN_AWS_RETRY_NONE },
		{ 0, 401, "AuthFailure", KILN_AWS_RETRY_NONE },
		{ 0, 400, "DependencyViolation", KILN_AWS_RETRY_NONE },
		{ KILN_ETIMEOUT, 0, NULL, KILN_AWS_RETRY_TIMEOUT },
		{ KILN_ETRANSIENT, 0, NULL, KILN_AWS_RETRY_TRANSIENT },
		{ KILN_ERROR, 0, NULL, KILN_AWS_RETRY_NONE },
		{ KILN_ENOMEM, 0, NULL, KILN_AWS_RETRY_NONE },
	};
	size_t i;
	(void)state;
	for (i = 0; i < KILN_ARRAY_SIZE(cases); i++) {
		kiln_aws_fault f;
		memset(&f, 0, sizeof(f));
		f.http_status = cases[i].status;
		snprintf(f.code, sizeof(f.code), "%s", cases[i].code ? cases[i].code : "");
		if (kiln_aws_retry_classify(cases[i].transport, cases[i].transport ? NULL : &f) != cases[i].want)
			fail_msg("case %zu (%d %s) misclassified", i, cases[i].status,
				 cases[i].code ? cases[i].code : "-");
	}
}

static void test_backoff_bounds(void **state)
{
	unsigned attempt;
	(void)state;
	/* full jitter: rand * min(2^(attempt-1) s, 20 s) */
	assert_int_equal(kiln_aws_backoff_ms(1, 0.0), 0);
	assert_int_equal(kiln_aws_backoff_ms(1, 0.5), 500);
	assert_int_equal(kiln_aws_backoff_ms(2, 0.5), 1000);
	assert_int_equal(kiln_aws_backoff_ms(3, 0.5), 2000);
	assert_int_equal(kiln_aws_backoff_ms(5, 0.5), 8000);
	assert_int_equal(kiln_aws_backoff_ms(6, 0.5), 10000); /* 32 s capped at 20 */
	for (attempt = 1; attempt < 200; attempt++) {
		uint64_t ceiling = attempt <= 5 ? 1000ULL << (attempt - 1) : 20000;
		assert_true(kiln_aws_backoff_ms(attempt, 0.999999) < ceiling);
		assert_true(kiln_aws_backoff_ms(attempt, 0.999999) >= ceiling * 99 / 100);
		assert_true(kiln_aws_backoff_ms(attempt, 1.5) <= KILN_AWS_MAX_BACKOFF_MS);
		assert_int_equal(kiln_aws_backoff_ms(attempt, -1), 0);
	}
}

static void test_error_codes(void **state)
{
	(void)state;
	assert_int_equal(kiln_aws_error_code("InvalidInstanceID.NotFound", 400), KILN_ENOTFOUND);
	assert_int_equal(kiln_aws_error_code("InvalidAMIID.NotFound", 400), KILN_ENOTFOUND);
	assert_int_equal(kiln_aws_error_code("ParameterNotFound", 400), KILN_ENOTFOUND);
	assert_int_equal(kiln_aws_error_code("TargetGroupNotFound", 400), KILN_ENOTFOUND);
	assert_int_equal(kiln_aws_error_code("LoadBalancerNotFound", 400), KILN_ENOTFOUND);
	assert_int_equal(kiln_aws_error_code("AuthFailure", 401), KILN_EAUTH);
	assert_int_equal(kiln_aws_error_code("SignatureDoesNotMatch", 403), KILN_EAUTH);
	assert_int_equal(kiln_aws_error_code("InvalidClientTokenId", 403), KILN_EAUTH);
	assert_int_equal(kiln_aws_error_code("UnrecognizedClientException", 400), KILN_EAUTH);
	assert_int_equal(kiln_aws_error_code("UnauthorizedOperation", 403), KILN_EAUTH);
	assert_int_equal(kiln_aws_error_code("AccessDeniedException", 400), KILN_EAUTH);
	assert_int_equal(kiln_aws_error_code("InvalidKeyPair.Duplicate", 400), KILN_ECONFLICT);
	assert_int_equal(kiln_aws_error_code("InvalidGroup.Duplicate", 400), KILN_ECONFLICT);
	assert_int_equal(kiln_aws_error_code("ParameterAlreadyExists", 400), KILN_ECONFLICT);
	assert_int_equal(kiln_aws_error_code("InvalidAMIName.Duplicate", 400), KILN_ECONFLICT);
	assert_int_equal(kiln_aws_error_code("InvalidParameterValue", 400), KILN_EINVALID);
	assert_int_equal(kiln_aws_error_code("RequestLimitExceeded", 503), KILN_ETHROTTLED);
	assert_int_equal(kiln_aws_error_code("DependencyViolation", 400), KILN_ERROR);
	assert_int_equal(kiln_aws_error_code("", 403), KILN_EAUTH);
	assert_int_equal(kiln_aws_error_code("", 500), KILN_ERROR);
}

static void test_http_date(void **state)
{
	int64_t t = 0;
	(void)state;
	assert_int_equal(kiln_http_date_parse(&t, "Wed, 25 Nov 2026 21:52:12 GMT"), 0);
	assert_int_equal(t, T0_MS / 1000);
	assert_int_equal(kiln_http_date_parse(&t, "Sun, 06 Nov 1994 08:49:37 GMT"), 0);
	assert_int_equal(t, 784111777);
	assert_int_equal(kiln_http_date_parse(&t, "Sun, 06 Nov 1994 08:49:37 UTC"), KILN_EINVALID);
	assert_int_equal(kiln_http_date_parse(&t, "Sun, 06 Xyz 1994 08:49:37 GMT"), KILN_EINVALID);
	assert_int_equal(kiln_http_date_parse(&t, "Sunday, 06-Nov-94 08:49:37 GMT"), KILN_EINVALID);
	assert_int_equal(kiln_http_date_parse(&t, ""), KILN_EINVALID);
	assert_int_equal(kiln_http_date_parse(&t, NULL), KILN_EINVALID);
}

/* ---- what goes on the wire ---- */

static void test_query_request_on_the_wire(void **state)
{
	const kiln_mock_request *r;
	const char *auth;
	kiln_buf out;
	(void)state;
	kiln_awsmock_push(&mock, 200, "<DescribeVpcsResponse/>");
	assert_int_equal(call_query("DescribeVpcs", "Action=DescribeVpcs&Version=2016-11-15", 0, &out), 0);
	assert_string_equal(out.ptr, "<DescribeVpcsResponse/>");
	kiln_buf_release(&out);

	r = kiln_awsmock_request(&mock, 0);
	assert_string_equal(r->method, "POST");
	assert_string_equal(r->url, "https://ec2.us-east-1.amazonaws.com/");
	assert_string_equal(r->body, "Action=DescribeVpcs&Version=2016-11-15");
	assert_string_equal(kiln_mock_header(r, "Host"), "ec2.us-east-1.amazonaws.com");
	assert_string_equal(kiln_mock_header(r, "Content-Type"),
			    "application/x-www-form-urlencoded; charset=utf-8");
	assert_string_equal(kiln_mock_header(r, "X-Amz-Date"), "20261125T215212Z");
	assert_null(kiln_mock_header(r, "X-Amz-Security-Token"));
	auth = kiln_mock_header(r, "Authorization");
	assert_non_null(auth);
	assert_true(!strncmp(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261125/us-east-1/ec2/aws4_request, "
				   "SignedHeaders=content-type;host;x-amz-date, Signature=", 119));
	assert_null(strstr(auth, KILN_MOCK_SECRET));
}

static void test_json_request_and_session_token(void **state)
{
	const kiln_mock_request *r;
	kiln_aws_request req = { 0 };
	kiln_buf out;
	(void)state;
	cfg.credentials.session_token = strdup("FQoGZXIvYXdzE-token");
	kiln_awsmock_push(&mock, 200, "{}");
	req.service = KILN_AWS_SSM;
	req.protocol = KILN_AWS_JSON;
	req.action = "GetParameter";
	req.target_prefix = "AmazonSSM";
	req.body = kiln_view_of("{\"Name\":\"/x\"}");
	assert_int_equal(kiln_aws_call(client, &req, &out), 0);
	kiln_buf_release(&out);
	r = kiln_awsmock_request(&mock, 0);
	assert_string_equal(r->url, "https://ssm.us-east-1.amazonaws.com/");
	assert_string_equal(kiln_mock_header(r, "X-Amz-Target"), "AmazonSSM.GetParameter");
	assert_string_equal(kiln_mock_header(r, "Content-Type"), "application/x-amz-json-1.1");
	assert_string_equal(kiln_mock_header(r, "X-Amz-Security-Token"), "FQoGZXIvYXdzE-token");
	assert_non_null(strstr(kiln_mock_header(r, "Authorization"), "/us-east-1/ssm/aws4_request"));
	/* the token is signed too */
	assert_non_null(strstr(kiln_mock_header(r, "Authorization"), "x-amz-security-token"));
	assert_non_null(strstr(kiln_mock_header(r, "Authorization"), "x-amz-target"));
}

static void test_endpoint_with_port_and_path(void **state)
{
	const kiln_mock_request *r;
	kiln_buf out;
	(void)state;
	kiln_aws_client_free(client);
	free(cfg.endpoints[KILN_AWS_EC2]);
	cfg.endpoints[KILN_AWS_EC2] = strdup("http://127.0.0.1:5000");
	client_open(0);
	kiln_awsmock_push(&mock, 200, "<ok/>");
	assert_int_equal(call_query("DescribeVpcs", "Action=DescribeVpcs", 0, &out), 0);
	kiln_buf_release(&out);
	r = kiln_awsmock_request(&mock, 0);
	assert_string_equal(r->url, "http://127.0.0.1:5000/");
	assert_string_equal(kiln_mock_header(r, "Host"), "127.0.0.1:5000");
	assert_string_equal(kiln_aws_client_endpoint(client, KILN_AWS_EC2), "http://127.0.0.1:5000/");

	/* a default port is not part of the Host header */
	kiln_aws_client_free(client);
	free(cfg.endpoints[KILN_AWS_EC2]);
	cfg.endpoints[KILN_AWS_EC2] = strdup("https://ec2.example.com:443/base");
	client_open(0);
	kiln_awsmock_push(&mock, 200, "<ok/>");
	assert_int_equal(call_query("DescribeVpcs", "Action=DescribeVpcs", 0, &out), 0);
	kiln_buf_release(&out);
	r = kiln_awsmock_request(&mock, 1);
	assert_string_equal(r->url, "https://ec2.example.com/base");
	assert_string_equal(kiln_mock_header(r, "Host"), "ec2.example.com");

	/* not a URL: refused when the client is made */
	kiln_aws_client_free(client);
	client = NULL;
	free(cfg.endpoints[KILN_AWS_EC2]);
	cfg.endpoints[KILN_AWS_EC2] = strdup("ftp://ec2.example.com");
	assert_error(kiln_aws_client_new(&client, &cfg, NULL), KILN_EINVALID, "not http or https");
}

/* ---- retries ---- */

static void test_throttle_then_success(void **state)
{
	size_t n;
	const kiln_aws_counter *counters;
	uint64_t start = kiln_clock_now_ms();
	kiln_buf out;
	(void)state;
	kiln_awsmock_push_ec2_error(&mock, 503, "RequestLimitExceeded", "Request limit exceeded.");
	kiln_awsmock_push(&mock, 200, "<ok/>");
	assert_int_equal(call_query("DescribeInstances", "Action=DescribeInstances", 0, &out), 0);
	kiln_buf_release(&out);
	assert_int_equal(mock.n_requests, 2);
	/* one sleep of rand(0.5) * 1 s */
	assert_int_equal(sleep_total_since(start), 500);
	/* each attempt is signed afresh, at its own time */
	assert_string_equal(kiln_mock_header(kiln_awsmock_request(&mock, 0), "X-Amz-Date"), "20261125T215212Z");
	assert_string_equal(kiln_mock_header(kiln_awsmock_request(&mock, 1), "X-Amz-Date"), "20261125T215212Z");
	/* the retry cost 5 tokens and the success gave them back */
	assert_int_equal(kiln_aws_client_quota(client), KILN_AWS_RETRY_QUOTA);
	counters = kiln_aws_client_counters(client, &n);
	assert_int_equal(n, 1);
	assert_string_equal(counters[0].name, "ec2:DescribeInstances");
	assert_int_equal(counters[0].calls, 1);
	assert_int_equal(counters[0].attempts, 2);
	assert_int_equal(counters[0].failures, 0);
	/* the retry is reported as a debug event */
	assert_non_null(strstr(events_text.ptr, "RequestLimitExceeded (HTTP 503); retrying in 500 ms (attempt 2 of 3)"));
}

static void test_throttle_gives_up_after_max_attempts(void **state)
{
	const kiln_error *e;
	uint64_t start = kiln_clock_now_ms();
	kiln_buf out;
	(void)state;
	kiln_awsmock_repeat(&mock, 400,
			    "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
			    "<Message>Rate exceeded</Message></Error><RequestId>r-9</RequestId></ErrorResponse>");
	assert_error(call_query("DescribeTargetHealth", "Action=DescribeTargetHealth", 0, &out),
		     KILN_ETHROTTLED, "ec2 DescribeTargetHealth: Rate exceeded (Throttling, after 3 attempts)");
	kiln_buf_release(&out);
	e = kiln_error_last();
	assert_string_equal(e->cloud_code, "Throttling");
	assert_string_equal(e->request_id, "r-9");
	assert_int_equal(e->http_status, 400);
	assert_int_equal(mock.n_requests, 3);
	/* 0.5 * 1 s + 0.5 * 2 s */
	assert_int_equal(sleep_total_since(start), 1500);
	/* two retries paid for, none refunded */
	assert_int_equal(kiln_aws_client_quota(client), KILN_AWS_RETRY_QUOTA - 2 * KILN_AWS_RETRY_COST);
}

static void test_max_attempts_from_environment(void **state)
{
	kiln_buf out;
	(void)state;
	kiln_aws_client_free(client);
	setenv("AWS_MAX_ATTEMPTS", "5", 1);
	client_open(0);
	unsetenv("AWS_MAX_ATTEMPTS");
	kiln_awsmock_repeat(&mock, 500, "");
	assert_error(call_query("DescribeVpcs", "Action=DescribeVpcs", 0, &out), KILN_ETRANSIENT,
		     "after 5 attempts");
	kiln_buf_release(&out);
	assert_int_equal(mock.n_requests, 5);

	/* one attempt: nothing is retried */
	kiln_aws_client_free(client);
	client_open(1);
	assert_error(call_query("DescribeVpcs", "Action=DescribeVpcs", 0, &out), KILN_ETRANSIENT, "HTTP 500");
	kiln_buf_release(&out);
	assert_int_equal(mock.n_requests, 6);
}

static void test_retry_quota(void **state)
{
	size_t before;
	int calls = 0;
	kiln_buf out;
	(void)state;
	kiln_awsmock_repeat(&mock, 503, "");
	/* each failing call spends 2 retries of 5 tokens: 50 calls drain 500 */
	while (kiln_aws_client_quota(client) >= KILN_AWS_RETRY_COST) {
		assert_int_equal(call_query("DescribeVpcs", "Action=DescribeVpcs", 0, &out), KILN_ETRANSIENT);
		kiln_buf_release(&out);
		calls++;
	}
	assert_int_equal(calls, 50);
	assert_int_equal(mock.n_requests, 150);
	/* with the quota spent, a failure is not retried */
	before = mock.n_requests;
	assert_error(call_query("DescribeVpcs", "Action=DescribeVpcs", 0, &out), KILN_ETRANSIENT, "HTTP 503");
	kiln_buf_release(&out);
	assert_int_equal(mock.n_requests, before + 1);
	/* successes refill it a token at a time */
	kiln_awsmock_push(&mock, 200, "<ok/>");
	assert_int_equal(call_query("DescribeVpcs", "Action=DescribeVpcs", 0, &out), 0);
	kiln_buf_release(&out);
	assert_int_equal(kiln_aws_client_quota(client), 1);
}

static void test_timeouts_cost_more(void **state)
{
	kiln_buf out;
	(void)state;
	kiln_awsmock_push_fail(&mock, KILN_ETIMEOUT, true);
	kiln_awsmock_push_fail(&mock, KILN_ETRANSIENT, true);
	kiln_awsmock_push_fail(&mock, KILN_ETIMEOUT, true);
	assert_error(call_query("DescribeVpcs", "Action=DescribeVpcs", 0, &out), KILN_ETIMEOUT,
		     "ec2 DescribeVpcs (after 3 attempts): mock transport failure");
	kiln_buf_release(&out);
	assert_int_equal(kiln_aws_client_quota(client),
			 KILN_AWS_RETRY_QUOTA - KILN_AWS_RETRY_TIMEOUT_COST - KILN_AWS_RETRY_COST);
	/* a success after a timeout retry refunds the 10 it cost */
	kiln_awsmock_push_fail(&mock, KILN_ETIMEOUT, true);
	kiln_awsmock_push(&mock, 200, "<ok/>");
	assert_int_equal(call_query("DescribeVpcs", "Action=DescribeVpcs", 0, &out), 0);
	kiln_buf_release(&out);
	assert_int_equal(kiln_aws_client_quota(client),
			 KILN_AWS_RETRY_QUOTA - KILN_AWS_RETRY_TIMEOUT_COST - KILN_AWS_RETRY_COST);
}

static void test_not_idempotent(void **state)
{
	kiln_buf out;
	(void)state;
	/* a 500 may mean the image was made: back to the caller at once */
	kiln_awsmock_push_ec2_error(&mock, 500, "InternalError", "An internal error has occurred");
	assert_error(call_query("CreateImage", "Action=CreateImage", KILN_AWS_NOT_IDEMPOTENT, &out),
		     KILN_ETRANSIENT, "InternalError");
	kiln_buf_release(&out);
	assert_int_equal(mock.n_requests, 1);
	/* so does a reply lost after sending */
	kiln_awsmock_push_fail(&mock, KILN_ETIMEOUT, true);
	assert_int_equal(call_query("CreateImage", "Action=CreateImage", KILN_AWS_NOT_IDEMPOTENT, &out),
			 KILN_ETIMEOUT);
	kiln_buf_release(&out);
	assert_int_equal(mock.n_requests, 2);
	/* but throttling, 503 and a connection never made are safe to retry */
	kiln_awsmock_push_ec2_error(&mock, 503, "RequestLimitExceeded", "slow down");
	kiln_awsmock_push(&mock, 503, "");
	kiln_awsmock_push_fail(&mock, KILN_ETRANSIENT, false);
	kiln_awsmock_push(&mock, 200, "<CreateImageResponse><imageId>ami-1</imageId></CreateImageResponse>");
	kiln_aws_client_free(client);
	client_open(4);
	assert_int_equal(call_query("CreateImage", "Action=CreateImage", KILN_AWS_NOT_IDEMPOTENT, &out), 0);
	kiln_buf_release(&out);
	assert_int_equal(mock.n_requests, 6);
	/* never on a reused connection, where libcurl would resend it on its own */
	assert_true(kiln_awsmock_request(&mock, 5)->fresh_connection);
	kiln_awsmock_push(&mock, 200, "<ok/>");
	assert_int_equal(call_query("DescribeVpcs", "Action=DescribeVpcs", 0, &out), 0);
	kiln_buf_release(&out);
	assert_false(kiln_awsmock_request(&mock, 6)->fresh_connection);
}

static void test_clock_skew_is_corrected(void **state)
{
	kiln_buf out;
	(void)state;
	/* AWS's clock is an hour ahead of ours: the signature is refused once */
	kiln_awsmock_push_ec2_error(&mock, 400, "RequestExpired", "Request has expired.");
	kiln_awsmock_last_date(&mock, "Wed, 25 Nov 2026 22:52:12 GMT");
	kiln_awsmock_push(&mock, 200, "<ok/>");
	assert_int_equal(call_query("DescribeVpcs", "Action=DescribeVpcs", 0, &out), 0);
	kiln_buf_release(&out);
	assert_int_equal(mock.n_requests, 2);
	assert_int_equal(kiln_aws_client_skew_s(client), 3600);
	assert_string_equal(kiln_mock_header(kiln_awsmock_request(&mock, 1), "X-Amz-Date"), "20261125T225212Z");
	/* re-signing is immediate and free */
	assert_int_equal(kiln_aws_client_quota(client), KILN_AWS_RETRY_QUOTA);
	/* later calls keep the offset */
	kiln_awsmock_push(&mock, 200, "<ok/>");
	assert_int_equal(call_query("DescribeVpcs", "Action=DescribeVpcs", 0, &out), 0);
	kiln_buf_release(&out);
	assert_string_equal(kiln_mock_header(kiln_awsmock_request(&mock, 2), "X-Amz-Date"), "20261125T225212Z");
	assert_non_null(strstr(events_text.ptr, "this machine's clock is 3600 s behind AWS's"));
}

static void test_auth_failure_is_final(void **state)
{
	kiln_buf out;
	(void)state;
	/* a wrong secret, clocks in step: no retry, one clear line */
	kiln_awsmock_push_file(&mock, 401, "ec2-error-auth-failure.xml");
	kiln_awsmock_last_date(&mock, "Wed, 25 Nov 2026 21:52:13 GMT");
	assert_error(call_query("DescribeImages", "Action=DescribeImages", 0, &out), KILN_EAUTH,
		     "ec2 DescribeImages: AWS rejected the credentials: AWS was not able to validate the "
		     "provided access credentials (AuthFailure)");
	kiln_buf_release(&out);
	assert_int_equal(mock.n_requests, 1);
	assert_int_equal(kiln_aws_client_skew_s(client), 0);
	assert_null(strchr(kiln_error_last()->message, '\n'));
}

static void test_permission_errors(void **state)
{
	kiln_buf out;
	(void)state;
	kiln_awsmock_push_ec2_error(&mock, 403, "UnauthorizedOperation",
				    "You are not authorized to perform this operation. Encoded authorization "
				    "failure message: AbCdEf0123");
	assert_error(call_query("RunInstances", "Action=RunInstances", 0, &out), KILN_EAUTH,
		     "ec2 RunInstances: the credentials in use are not allowed to call ec2:RunInstances: "
		     "You are not authorized to perform this operation. (UnauthorizedOperation)");
	kiln_buf_release(&out);
	assert_null(strstr(kiln_error_last()->message, "AbCdEf0123"));
}

static void test_html_500(void **state)
{
	kiln_buf out;
	(void)state;
	kiln_awsmock_repeat(&mock, 500, NULL);
	free(mock.repeat.body);
	mock.repeat.body = kiln_awsmock_fixture("html-500.html");
	assert_error(call_query("NoSuchAction", "Action=NoSuchAction", 0, &out), KILN_ETRANSIENT,
		     "ec2 NoSuchAction: HTTP 500 with a body that is not an AWS error ('500 Internal "
		     "Server Error'), after 3 attempts");
	kiln_buf_release(&out);
	assert_int_equal(kiln_error_last()->http_status, 500);
	assert_string_equal(kiln_error_last()->cloud_code, "");
}

static void test_json_errors(void **state)
{
	kiln_aws_request req = { 0 };
	kiln_buf out;
	(void)state;
	req.service = KILN_AWS_SSM;
	req.protocol = KILN_AWS_JSON;
	req.action = "GetParameter";
	req.target_prefix = "AmazonSSM";
	req.body = kiln_view_of("{}");
	kiln_awsmock_push_file(&mock, 400, "ssm-error-parameter-not-found.json");
	assert_error(kiln_aws_call(client, &req, &out), KILN_ENOTFOUND,
		     "ssm GetParameter: Parameter /kiln/nope not found. (ParameterNotFound)");
	kiln_buf_release(&out);
	assert_string_equal(kiln_error_last()->cloud_code, "ParameterNotFound");
	assert_string_equal(kiln_error_last()->request_id, "mock-1");
	/* the namespaced form of __type, and a code only in the header */
	kiln_awsmock_push(&mock, 400, "{\"__type\":\"com.amazonaws.ssm#ThrottlingException\",\"message\":\"Rate exceeded\"}");
	kiln_awsmock_push(&mock, 400, "{}");
	snprintf(mock.replies[mock.n_replies - 1].error_type, sizeof(mock.replies[0].error_type),
		 "AccessDeniedException:http://internal.amazon.com/coral/com.amazon.coral.service/");
	assert_error(kiln_aws_call(client, &req, &out), KILN_EAUTH, "AccessDeniedException");
	kiln_buf_release(&out);
	assert_int_equal(mock.n_requests, 3);
	/* moto refuses an SSM signature in XML, not JSON */
	kiln_awsmock_push_file(&mock, 403, "elbv2-error-signature.xml");
	assert_error(kiln_aws_call(client, &req, &out), KILN_EAUTH,
		     "ssm GetParameter: AWS rejected the credentials: The security token included in the "
		     "request is invalid. (InvalidClientTokenId)");
	kiln_buf_release(&out);
}

static void test_cancelled_during_backoff(void **state)
{
	kiln_buf out;
	(void)state;
	kiln_awsmock_repeat(&mock, 503, "");
	kiln_cancel_set(SIGINT);
	assert_int_equal(call_query("DescribeVpcs", "Action=DescribeVpcs", 0, &out), KILN_ECANCELLED);
	kiln_buf_release(&out);
	assert_int_equal(mock.n_requests, 1);
	kiln_cancel_reset();
}

static void test_no_secret_anywhere(void **state)
{
	kiln_buf out;
	size_t i;
	(void)state;
	kiln_awsmock_push_fail(&mock, KILN_ETRANSIENT, false);
	kiln_awsmock_push_ec2_error(&mock, 503, "RequestLimitExceeded", "x");
	kiln_awsmock_push_file(&mock, 401, "ec2-error-auth-failure.xml");
	assert_int_equal(call_query("DescribeVpcs", "Action=DescribeVpcs", 0, &out), KILN_EAUTH);
	kiln_buf_release(&out);
	assert_null(strstr(kiln_error_last()->message, KILN_MOCK_SECRET));
	assert_null(strstr(kiln_error_last()->message, "Signature="));
	assert_null(strstr(events_text.ptr, KILN_MOCK_SECRET));
	assert_null(strstr(events_text.ptr, "Signature="));
	/* nor in anything sent: only the signature derived from it */
	for (i = 0; i < mock.n_requests; i++) {
		const kiln_mock_request *r = kiln_awsmock_request(&mock, i);
		size_t h;
		assert_null(strstr(r->body, KILN_MOCK_SECRET));
		for (h = 0; h < r->headers.n; h++)
			assert_null(strstr(r->headers.items[h].value, KILN_MOCK_SECRET));
	}
}

static void test_plain_get(void **state)
{
	kiln_buf out;
	(void)state;
	kiln_awsmock_push(&mock, 200, "203.0.113.7\n");
	assert_int_equal(kiln_aws_get(client, "https://checkip.amazonaws.com/", 5000, &out), 0);
	assert_string_equal(out.ptr, "203.0.113.7\n");
	kiln_buf_release(&out);
	assert_string_equal(kiln_awsmock_request(&mock, 0)->method, "GET");
	assert_null(kiln_mock_header(kiln_awsmock_request(&mock, 0), "Authorization"));
	kiln_awsmock_push(&mock, 503, "");
	assert_error(kiln_aws_get(client, "https://checkip.amazonaws.com/", 5000, &out), KILN_ERROR, "HTTP 503");
	kiln_buf_release(&out);
	/* one attempt only: it is a probe */
	assert_int_equal(mock.n_requests, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify),
		cmocka_unit_test(test_backoff_bounds),
		cmocka_unit_test(test_error_codes),
		cmocka_unit_test(test_http_date),
		cmocka_unit_test_setup_teardown(test_query_request_on_the_wire, setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_request_and_session_token, setup, teardown),
		cmocka_unit_test_setup_teardown(test_endpoint_with_port_and_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_throttle_then_success, setup, teardown),
		cmocka_unit_test_setup_teardown(test_throttle_gives_up_after_max_attempts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_attempts_from_environment, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retry_quota, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeouts_cost_more, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_idempotent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clock_skew_is_corrected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auth_failure_is_final, setup, teardown),
		cmocka_unit_test_setup_teardown(test_permission_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_html_500, setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancelled_during_backoff, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_secret_anywhere, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plain_get, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
