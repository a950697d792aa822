/*
 * test_aws_ratelimit: EC2's token buckets on the client side
 * (aws/ratelimit.h), on the virtual clock: the classes as the test front
 * maps them, rates, bursts, the spare token, resource buckets, sharing
 * between classes, clients and threads, and the HTTP client waiting before
 * it sends.
 */
#include <pthread.h>
#include <signal.h>

#include "aws/http.h"
#include "aws/ratelimit.h"
#include "core/clock.h"
#include "core/error.h"
#include "tests/support/awsmock.h"
#include "tests/support/test.h"

static int setup(void **state)
{
	(void)state;
	kiln_test_clock_install(1795643532000LL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	kiln_test_clock_uninstall();
	kiln_cancel_reset();
	unsetenv(KILN_AWS_RATELIMIT_ENV);
	return 0;
}

static void classify(kiln_aws_rate_class *c, const kiln_aws_ratelimit *rl, const char *action,
		     const char *body)
{
	kiln_aws_ratelimit_classify(c, rl, action, kiln_view_of(body));
}

static void test_classes(void **state)
{
	static const struct {
		const char *action, *body, *bucket, *resource;
		unsigned cost;
	} cases[] = {
		{ "DescribeInstances", "Action=DescribeInstances&Version=2016-11-15", "unfiltered", "", 1 },
		{ "DescribeInstances", "Action=DescribeInstances&Version=2016-11-15&Filter.1.Name=tag%3Akiln%3Afleet&Filter.1.Value.1=web", "describe", "", 1 },
		{ "DescribeInstances", "Action=DescribeInstances&Version=2016-11-15&InstanceId.1=i-1", "describe", "", 1 },
		{ "DescribeImages", "Action=DescribeImages&Version=2016-11-15&Owner.1=self", "describe", "", 1 },
		{ "DescribeVpcs", "Action=DescribeVpcs&Version=2016-11-15&MaxResults=5", "describe", "", 1 },
		{ "DescribeVpcs", "Action=DescribeVpcs&NextToken=abc", "describe", "", 1 },
		{ "GetConsoleOutput", "Action=GetConsoleOutput&InstanceId=i-1", "describe", "", 1 },
		{ "RunInstances", "Action=RunInstances&ImageId=ami-1&MinCount=1&MaxCount=100", "RunInstances", "RunInstances", 100 },
		{ "RunInstances", "Action=RunInstances&ImageId=ami-1", "RunInstances", "RunInstances", 1 },
		{ "TerminateInstances", "Action=TerminateInstances&InstanceId.1=i-1&InstanceId.2=i-2&InstanceId.3=i-3", "TerminateInstances", "TerminateInstances", 3 },
		{ "StopInstances", "Action=StopInstances&InstanceId.1=i-1&InstanceId.2=i-2", "mutating", "StopInstances", 2 },
		{ "StartInstances", "Action=StartInstances&InstanceId.1=i-1", "mutating", "StartInstances", 1 },
		{ "CreateTags", "Action=CreateTags&ResourceId.1=i-1&Tag.1.Key=a&Tag.1.Value=b", "CreateTags", "", 1 },
		{ "AuthorizeSecurityGroupIngress", "Action=AuthorizeSecurityGroupIngress&GroupId=sg-1", "resource_intensive", "", 1 },
		{ "CreateKeyPair", "Action=CreateKeyPair&KeyName=k", "resource_intensive", "", 1 },
		{ "CreateImage", "Action=CreateImage&InstanceId=i-1&Name=web-v1", "mutating", "", 1 },
		{ "DeleteSecurityGroup", "Action=DeleteSecurityGroup&GroupId=sg-1", "mutating", "", 1 },
	};
	kiln_aws_ratelimit *rl;
	kiln_aws_rate_class c;
	size_t i;
	(void)state;
	for (i = 0; i < KILN_ARRAY_SIZE(cases); i++) {
		classify(&c, NULL, cases[i].action, cases[i].body);
		if (strcmp(c.bucket, cases[i].bucket) || strcmp(c.resource, cases[i].resource) ||
		    c.cost != cases[i].cost)
			fail_msg("%s (%s): got %s/%s/%u", cases[i].action, cases[i].body, c.bucket, c.resource, c.cost);
	}
	/* a class the limiter has not: the next that applies, as the front falls through */
	assert_int_equal(kiln_aws_ratelimit_new(&rl, "unfiltered=off,CreateTags=off,resource_intensive=off"), 0);
	classify(&c, rl, "DescribeInstances", "Action=DescribeInstances");
	assert_string_equal(c.bucket, "describe");
	classify(&c, rl, "CreateTags", "Action=CreateTags&ResourceId.1=i-1");
	assert_string_equal(c.bucket, "mutating");
	classify(&c, rl, "CreateKeyPair", "Action=CreateKeyPair");
	assert_string_equal(c.bucket, "mutating");
	kiln_aws_ratelimit_free(rl);
	assert_int_equal(kiln_aws_ratelimit_new(&rl, "describe=off,unfiltered=off"), 0);
	classify(&c, rl, "DescribeInstances", "Action=DescribeInstances");
	assert_string_equal(c.bucket, ""); /* a describe is never "mutating" */
	kiln_aws_ratelimit_free(rl);
}

static void test_spec(void **state)
{
	kiln_aws_ratelimit *rl;
	double burst, rate;
	(void)state;
	/* the documented buckets */
	assert_int_equal(kiln_aws_ratelimit_new(&rl, NULL), 0);
	assert_true(kiln_aws_ratelimit_bucket(rl, "RunInstances", &burst, &rate));
	assert_true(burst == 5 && rate == 2);
	assert_true(kiln_aws_ratelimit_bucket(rl, "describe", &burst, &rate));
	assert_true(burst == 100 && rate == 20);
	assert_true(kiln_aws_ratelimit_bucket(rl, "mutating", &burst, &rate));
	assert_true(burst == 50 && rate == 5);
	assert_true(kiln_aws_ratelimit_bucket(rl, "TerminateInstances", &burst, &rate));
	assert_true(burst == 100 && rate == 5);
	assert_true(kiln_aws_ratelimit_bucket(rl, "CreateTags", &burst, &rate));
	assert_true(burst == 100 && rate == 10);
	assert_true(kiln_aws_ratelimit_bucket(rl, "resource:RunInstances", &burst, &rate));
	assert_true(burst == 1000 && rate == 2);
	assert_true(kiln_aws_ratelimit_bucket(rl, "resource:TerminateInstances", &burst, &rate));
	assert_true(burst == 1000 && rate == 20);
	kiln_aws_ratelimit_free(rl);
	/* changed, removed, added; "on" is the defaults; white space forgiven */
	assert_int_equal(kiln_aws_ratelimit_new(&rl, " describe=10/2.5 , RunInstances=off,DescribeVpcs=3/1"), 0);
	assert_true(kiln_aws_ratelimit_bucket(rl, "describe", &burst, &rate));
	assert_true(burst == 10 && rate == 2.5);
	assert_false(kiln_aws_ratelimit_bucket(rl, "RunInstances", NULL, NULL));
	assert_true(kiln_aws_ratelimit_bucket(rl, "mutating", NULL, NULL));
	kiln_aws_ratelimit_free(rl);
	assert_int_equal(kiln_aws_ratelimit_new(&rl, "on"), 0);
	assert_true(kiln_aws_ratelimit_bucket(rl, "RunInstances", NULL, NULL));
	kiln_aws_ratelimit_free(rl);
	assert_int_equal(kiln_aws_ratelimit_new(&rl, "OFF"), 0);
	assert_null(rl);
	assert_error(kiln_aws_ratelimit_new(&rl, "describe=10"), KILN_EINVALID,
		     "KILN_AWS_RATE_LIMIT: 'describe=10' is not NAME=BURST/RATE");
	assert_error(kiln_aws_ratelimit_new(&rl, "describe=10/0"), KILN_EINVALID, "'describe=10/0'");
	assert_error(kiln_aws_ratelimit_new(&rl, "describe=0.5/1"), KILN_EINVALID, "'describe=0.5/1'");
	assert_error(kiln_aws_ratelimit_new(&rl, "=1/1"), KILN_EINVALID, "'=1/1'");
	assert_error(kiln_aws_ratelimit_new(&rl, "a=-1/1"), KILN_EINVALID, "'a=-1/1'");
}

/* acquires n requests of action, returning the virtual times they were let through */
static void acquire_n(kiln_aws_ratelimit *rl, const char *action, const char *body, size_t n,
		      uint64_t *at)
{
	size_t i;
	for (i = 0; i < n; i++)
		assert_int_equal(kiln_aws_ratelimit_acquire(rl, action, kiln_view_of(body), NULL, &at[i]), 0);
}

static void test_rate_and_burst(void **state)
{
	kiln_aws_ratelimit *rl;
	uint64_t at[40], start;
	size_t i;
	(void)state;
	assert_int_equal(kiln_aws_ratelimit_new(&rl, NULL), 0);
	start = kiln_clock_now_ms();
	/* RunInstances 5/2: four at once (one token stays spare), then one every 500 ms */
	acquire_n(rl, "RunInstances", "Action=RunInstances&MaxCount=1", 12, at);
	for (i = 0; i < 4; i++)
		assert_int_equal(at[i], start);
	for (i = 4; i < 12; i++)
		assert_int_equal(at[i], start + (i - 3) * 500);
	/* idle long enough, the bucket is full again: the burst comes back, never more */
	kiln_test_clock_advance(60000);
	start = kiln_clock_now_ms();
	acquire_n(rl, "RunInstances", "Action=RunInstances&MaxCount=1", 5, at);
	assert_int_equal(at[3], start);
	assert_int_equal(at[4], start + 500);

	/* describe 100/20: 99 at once, then one every 50 ms */
	start = kiln_clock_now_ms();
	for (i = 0; i < 99; i++)
		acquire_n(rl, "DescribeImages", "Action=DescribeImages&Owner.1=self", 1, at);
	assert_int_equal(at[0], start);
	acquire_n(rl, "DescribeImages", "Action=DescribeImages&Owner.1=self", 3, at);
	assert_int_equal(at[0], start + 50);
	assert_int_equal(at[2], start + 150);
	/* another class has its own bucket: no wait */
	acquire_n(rl, "CreateTags", "Action=CreateTags&ResourceId.1=i-1", 1, at);
	assert_int_equal(at[0], kiln_clock_now_ms());
	kiln_aws_ratelimit_free(rl);
}

static void test_resource_buckets(void **state)
{
	kiln_aws_ratelimit *rl;
	uint64_t at[4], start, waited;
	(void)state;
	assert_int_equal(kiln_aws_ratelimit_new(&rl, NULL), 0);
	start = kiln_clock_now_ms();
	/* 1000 instances at once: the whole resource bucket (a request may take all of it) */
	acquire_n(rl, "RunInstances", "Action=RunInstances&MinCount=1000&MaxCount=1000", 1, at);
	assert_int_equal(at[0], start);
	/* then 10 more instances need 11 tokens at 2 a second: 5.5 s */
	assert_int_equal(kiln_aws_ratelimit_acquire(rl, "RunInstances",
						    kiln_view_of("Action=RunInstances&MaxCount=10"), &waited, &at[1]),
			 0);
	assert_int_equal(waited, 5500);
	assert_int_equal(at[1], start + 5500);
	/* terminating 100 of them: 100 resource tokens of 1000, no wait */
	{
		kiln_buf b = KILN_BUF_INIT;
		int i;
		kiln_buf_puts(&b, "Action=TerminateInstances");
		for (i = 1; i <= 100; i++)
			kiln_buf_printf(&b, "&InstanceId.%d=i-%d", i, i);
		assert_int_equal(kiln_aws_ratelimit_acquire(rl, "TerminateInstances", kiln_view_buf(&b), &waited, NULL), 0);
		assert_int_equal(waited, 0);
		kiln_buf_release(&b);
	}
	kiln_aws_ratelimit_free(rl);
}

/* ---- shared by threads ----------------------------------------------------------------- */

struct worker {
	kiln_aws_ratelimit *rl;
	uint64_t at[30];
};

static void *work(void *arg)
{
	struct worker *w = arg;
	size_t i;
	for (i = 0; i < KILN_ARRAY_SIZE(w->at); i++)
		if (kiln_aws_ratelimit_acquire(w->rl, "DescribeVpcs", kiln_view_of("Action=DescribeVpcs&VpcId.1=v"),
					       NULL, &w->at[i]) < 0)
			return NULL;
	return w;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void test_threads_share_one_schedule(void **state)
{
	struct worker w[4];
	pthread_t t[4];
	uint64_t all[4 * 30];
	kiln_aws_ratelimit *rl;
	size_t i, j, n = 0;
	(void)state;
	/* the real clock: threads sleep for real, the schedule is what is checked */
	kiln_test_clock_uninstall();
	assert_int_equal(kiln_aws_ratelimit_new(&rl, "describe=5/100"), 0);
	for (i = 0; i < 4; i++) {
		w[i].rl = rl;
		assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		void *r;
		pthread_join(t[i], &r);
		assert_ptr_equal(r, &w[i]);
		for (j = 0; j < KILN_ARRAY_SIZE(w[i].at); j++)
			all[n++] = w[i].at[j];
	}
	qsort(all, n, sizeof(all[0]), cmp_u64);
	/*
	 * Every window of the merged schedule holds no more than the bucket
	 * allows with its spare token kept: burst - 1 + rate x width (1 ms of
	 * rounding each side). Without the lock the threads would overdraw it.
	 */
	for (i = 0; i < n; i++)
		for (j = i; j < n; j++)
			if ((double)(j - i + 1) > 4 + 100.0 * (double)(all[j] - all[i] + 2) / 1000.0)
				fail_msg("%zu requests in %llu ms", j - i + 1, (unsigned long long)(all[j] - all[i]));
	/* and it was not slower than the bucket: 120 requests, 4 at once, then 100 a second */
	assert_true(all[n - 1] - all[0] <= 1160 + 20);
	kiln_aws_ratelimit_free(rl);
	kiln_test_clock_install(1795643532000LL);
}

static void test_shared_per_region(void **state)
{
	kiln_aws_ratelimit *a, *b, *c;
	(void)state;
	unsetenv(KILN_AWS_RATELIMIT_ENV);
	assert_int_equal(kiln_aws_ratelimit_shared(&a, "eu-west-1"), 0);
	assert_int_equal(kiln_aws_ratelimit_shared(&b, "eu-west-1"), 0);
	assert_int_equal(kiln_aws_ratelimit_shared(&c, "us-east-1"), 0);
	assert_non_null(a);
	assert_ptr_equal(a, b);
	assert_ptr_not_equal(a, c);
	setenv(KILN_AWS_RATELIMIT_ENV, "off", 1);
	assert_int_equal(kiln_aws_ratelimit_shared(&a, "eu-west-1"), 0);
	assert_null(a);
}

/* ---- the HTTP client waits before it sends ---------------------------------------------------- */

static void test_client_waits(void **state)
{
	kiln_aws_client_options o = KILN_AWS_CLIENT_OPTIONS_INIT;
	static kiln_awsmock mock;
	kiln_aws_config cfg;
	kiln_aws_client *c1, *c2;
	kiln_aws_ratelimit *rl;
	const kiln_aws_counter *counters;
	kiln_aws_request req = { 0 };
	kiln_buf out;
	size_t i, n;
	(void)state;
	kiln_awsmock_init(&mock);
	kiln_awsmock_config(&cfg);
	kiln_awsmock_repeat(&mock, 200, "<ok/>");
	assert_int_equal(kiln_aws_ratelimit_new(&rl, "RunInstances=3/1"), 0);
	o.transport = &mock.transport;
	o.ratelimit = rl;
	/* two clients, one limiter: as the provider's and any other client of one process */
	assert_int_equal(kiln_aws_client_new(&c1, &cfg, &o), 0);
	assert_int_equal(kiln_aws_client_new(&c2, &cfg, &o), 0);
	req.service = KILN_AWS_EC2;
	req.protocol = KILN_AWS_QUERY;
	req.action = "RunInstances";
	req.body = kiln_view_of("Action=RunInstances&MaxCount=1");
	for (i = 0; i < 6; i++) {
		assert_int_equal(kiln_aws_call(i % 2 ? c2 : c1, &req, &out), 0);
		kiln_buf_release(&out);
	}
	/* two at once, then one a second: sent at +0 +0 +1 +2 +3 +4 s */
	assert_int_equal(mock.n_requests, 6);
	assert_int_equal(kiln_awsmock_request(&mock, 1)->wall_s - kiln_awsmock_request(&mock, 0)->wall_s, 0);
	for (i = 2; i < 6; i++)
		assert_int_equal(kiln_awsmock_request(&mock, i)->wall_s - kiln_awsmock_request(&mock, 0)->wall_s,
				 (int64_t)i - 1);
	counters = kiln_aws_client_counters(c1, &n);
	assert_int_equal(n, 1);
	assert_int_equal(counters[0].calls, 3);
	assert_int_equal(counters[0].waits, 2);
	assert_int_equal(counters[0].wait_ms, 2000);
	/* other services are not limited */
	req.service = KILN_AWS_SSM;
	req.protocol = KILN_AWS_JSON;
	req.target_prefix = "AmazonSSM";
	req.action = "RunInstances";
	req.body = kiln_view_of("{}");
	assert_int_equal(kiln_aws_call(c1, &req, &out), 0);
	kiln_buf_release(&out);
	assert_int_equal(mock.requests[6].wall_s, mock.requests[5].wall_s);
	/* a signal during the wait: nothing is sent */
	req.service = KILN_AWS_EC2;
	req.protocol = KILN_AWS_QUERY;
	req.body = kiln_view_of("Action=RunInstances&MaxCount=1");
	kiln_cancel_set(SIGINT);
	assert_int_equal(kiln_aws_call(c1, &req, &out), KILN_ECANCELLED);
	kiln_buf_release(&out);
	assert_int_equal(mock.n_requests, 7);
	kiln_cancel_reset();

	kiln_aws_client_free(c1);
	kiln_aws_client_free(c2);
	kiln_aws_ratelimit_free(rl);
	kiln_aws_config_release(&cfg);
	kiln_awsmock_release(&mock);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_classes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spec, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rate_and_burst, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resource_buckets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threads_share_one_schedule, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shared_per_region, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_waits, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
