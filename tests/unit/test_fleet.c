/*
 * The fleet file: every key, defaults, provider blocks, and positioned
 * errors for what is wrong.
 */
#include "core/error.h"
#include "rollout/fleet.h"
#include "tests/support/test.h"

static kiln_fleet *parse_ok(const char *text, const char *provider)
{
	kiln_fleet *f = NULL;
	int rc = kiln_fleet_parse(&f, "fleet.json", text, provider);
	if (rc < 0)
		fail_msg("parse failed: %s", kiln_error_last()->message);
	return f;
}

static void parse_err(const char *text, const char *provider, const char *needle)
{
	kiln_fleet *f = NULL;
	assert_error(kiln_fleet_parse(&f, "fleet.json", text, provider), KILN_EINVALID, needle);
	assert_null(f);
}

static void test_defaults(void **state)
{
	kiln_fleet *f;
	(void)state;
	unsetenv("KILN_PROVIDER");
	f = parse_ok("{\"name\":\"web\",\"image\":\"web\",\"desired\":4,"
		     "\"target_group_arns\":[\"arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/a/1\"]}",
		     NULL);
	assert_string_equal(f->name, "web");
	assert_string_equal(f->provider, "aws");
	assert_int_equal(f->desired, 4);
	assert_int_equal(f->batch_size, 4);
	assert_int_equal(f->retire, KILN_RETIRE_AT_END);
	assert_int_equal(f->health_timeout_s, 600);
	assert_int_equal(f->health_grace_s, 30);
	assert_int_equal(f->warmup_s, 0);
	assert_int_equal(f->drain_timeout_s, -1);
	assert_int_equal(f->n_lbs, 1);
	assert_int_equal(f->lbs[0].kind, KILN_LB_TARGET_GROUP);
	assert_null(f->instance_type);
	assert_int_equal(f->subnet_ids.n, 0);
	kiln_fleet_free(f);
}

static void test_every_key(void **state)
{
	char *dir = kiln_test_mktmp(), *ud = kiln_test_write(dir, "boot.sh", "#!/bin/sh\necho hi\n");
	char *path, text[2048];
	kiln_fleet *f = NULL;
	(void)state;

	snprintf(text, sizeof(text),
		 "{\n"
		 "  \"name\": \"web-prod\", \"provider\": \"aws\", \"region\": \"eu-west-1\",\n"
		 "  \"image\": \"web\", \"desired\": 10, \"batch_size\": \"25%%\", \"retire\": \"per_batch\",\n"
		 "  \"instance_type\": \"t3.small\", \"subnet_ids\": [\"subnet-a\", \"subnet-b\"],\n"
		 "  \"security_group_ids\": [\"sg-1\"], \"key_name\": \"ops\",\n"
		 "  \"iam_instance_profile\": \"web-role\", \"user_data_file\": \"boot.sh\",\n"
		 "  \"tags\": {\"team\": \"web\"},\n"
		 "  \"target_group_arns\": [\"arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/a/1\",\n"
		 "                        \"arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/b/2\"],\n"
		 "  \"load_balancer_names\": [\"classic-web\"],\n"
		 "  \"health_timeout_s\": 300, \"health_grace_s\": 10, \"warmup_s\": 5, \"drain_timeout_s\": 20\n"
		 "}\n");
	path = kiln_test_write(dir, "fleet.json", text);
	assert_int_equal(kiln_fleet_load(&f, path, NULL), 0);
	assert_string_equal(f->region, "eu-west-1");
	assert_int_equal(f->batch_size, 3); /* 25% of 10, rounded up */
	assert_string_equal(f->batch_spec, "25%");
	assert_int_equal(f->retire, KILN_RETIRE_PER_BATCH);
	assert_string_equal(f->instance_type, "t3.small");
	assert_int_equal(f->subnet_ids.n, 2);
	assert_string_equal(f->security_group_ids.items[0], "sg-1");
	assert_string_equal(f->key_name, "ops");
	assert_string_equal(f->iam_instance_profile, "web-role");
	assert_string_equal(f->user_data, "#!/bin/sh\necho hi\n");
	assert_string_equal(kiln_tags_get(&f->tags, "team"), "web");
	assert_int_equal(f->n_lbs, 3);
	assert_int_equal(f->lbs[2].kind, KILN_LB_CLASSIC);
	assert_string_equal(f->lbs[2].ref, "classic-web");
	assert_int_equal(f->health_timeout_s, 300);
	assert_int_equal(f->health_grace_s, 10);
	assert_int_equal(f->warmup_s, 5);
	assert_int_equal(f->drain_timeout_s, 20);
	kiln_fleet_free(f);
	free(path);
	free(ud);
	kiln_test_rmtmp(dir);
}

static void test_provider_blocks(void **state)
{
	static const char text[] =
		"{\"name\":\"web\",\"image\":\"web\",\"desired\":2,\"instance_type\":\"t3.micro\",\n"
		" \"aws\":{\"target_group_arns\":[\"arn:aws:elasticloadbalancing:r:1:targetgroup/a/1\"],\n"
		"        \"desired\":6},\n"
		" \"local\":{\"instance_type\":\"small\",\"load_balancer\":{\"listen\":\"127.0.0.1:9000\",\n"
		"          \"health\":{\"path\":\"/healthz\",\"interval_s\":1,\"rise\":1,\"fall\":2}}}}";
	kiln_fleet *f;
	(void)state;

	unsetenv("KILN_PROVIDER");
	f = parse_ok(text, NULL);
	assert_string_equal(f->provider, "aws");
	assert_int_equal(f->desired, 6);
	assert_string_equal(f->instance_type, "t3.micro");
	assert_int_equal(f->n_lbs, 1);
	kiln_fleet_free(f);

	f = parse_ok(text, "local");
	assert_string_equal(f->provider, "local");
	assert_int_equal(f->desired, 2);
	assert_string_equal(f->instance_type, "small");
	assert_int_equal(f->n_lbs, 1);
	assert_int_equal(f->lbs[0].kind, KILN_LB_LOCAL);
	assert_string_equal(f->lbs[0].ref, "web");
	assert_string_equal(f->lbs[0].listen, "127.0.0.1:9000");
	assert_string_equal(f->lbs[0].health_path, "/healthz");
	assert_int_equal(f->lbs[0].interval_s, 1);
	assert_int_equal(f->lbs[0].fall, 2);
	assert_int_equal(f->lbs[0].target_port, 80);
	kiln_fleet_free(f);

	/* precedence: flag > file > environment > aws */
	setenv("KILN_PROVIDER", "local", 1);
	f = parse_ok(text, NULL);
	assert_string_equal(f->provider, "local");
	kiln_fleet_free(f);
	f = parse_ok("{\"name\":\"w\",\"provider\":\"aws\",\"image\":\"web\",\"desired\":1,"
		     "\"target_group_arns\":[\"arn:x\"]}", NULL);
	assert_string_equal(f->provider, "aws");
	kiln_fleet_free(f);
	unsetenv("KILN_PROVIDER");

	/* the local balancer's defaults */
	f = parse_ok("{\"name\":\"w\",\"image\":\"web\",\"desired\":1}", "local");
	assert_string_equal(f->lbs[0].listen, "127.0.0.1:8080");
	kiln_fleet_free(f);
}

static void test_batch_sizes(void **state)
{
	kiln_fleet *f;
	(void)state;
	f = parse_ok("{\"name\":\"w\",\"image\":\"web\",\"desired\":3,\"batch_size\":\"50%\"}", "local");
	assert_int_equal(f->batch_size, 2);
	kiln_fleet_free(f);
	f = parse_ok("{\"name\":\"w\",\"image\":\"web\",\"desired\":1000,\"batch_size\":\"10%\"}", "local");
	assert_int_equal(f->batch_size, 100);
	kiln_fleet_free(f);
	f = parse_ok("{\"name\":\"w\",\"image\":\"web\",\"desired\":3,\"batch_size\":\"1%\"}", "local");
	assert_int_equal(f->batch_size, 1);
	kiln_fleet_free(f);
	f = parse_ok("{\"name\":\"w\",\"image\":\"web\",\"desired\":3,\"batch_size\":7}", "local");
	assert_int_equal(f->batch_size, 3);
	kiln_fleet_free(f);
	parse_err("{\"name\":\"w\",\"image\":\"web\",\"desired\":3,\n\"batch_size\":\"150%\"}", "local",
		  "fleet.json:2:14: \"batch_size\" must be an integer or a percentage");
	parse_err("{\"name\":\"w\",\"image\":\"web\",\"desired\":3,\"batch_size\":0}", "local",
		  "at least 1");
	parse_err("{\"name\":\"w\",\"image\":\"web\",\"desired\":3,\"batch_size\":\"x%\"}", "local",
		  "percentage");
	parse_err("{\"name\":\"w\",\"image\":\"web\",\"desired\":3,\"batch_size\":true}", "local",
		  "not a boolean");
}

static void test_errors_are_positioned(void **state)
{
	(void)state;
	parse_err("{\"name\":\"web\",\"image\":\"web\",\"desired\":2,\n"
		  "  \"batchsize\":1}", "local",
		  "fleet.json:2:3: unknown key \"batchsize\" in the fleet file (did you mean \"batch_size\"?)");
	parse_err("{\"name\":\"web\",\"image\":\"web\",\n  \"desired\":\"2\"}", "local",
		  "fleet.json:2:13: \"desired\" must be an integer, not a string");
	parse_err("{\"name\":\"web\",\"image\":\"web\"}", "local", "missing required key \"desired\"");
	parse_err("{\"image\":\"web\",\"desired\":1}", "local", "missing required key \"name\"");
	parse_err("{\"name\":\"a/b\",\"image\":\"web\",\"desired\":1}", "local", "bad fleet name");
	parse_err("{\"name\":\"w\",\"image\":\"web@2\",\"desired\":1}", "local", "image name");
	parse_err("{\"name\":\"w\",\"image\":\"web\",\"desired\":1,\"retire\":\"later\"}", "local",
		  "\"retire\" must be \"at_end\" or \"per_batch\"");
	parse_err("{\"name\":\"w\",\"image\":\"web\",\"desired\":1,\"tags\":{\"kiln:fleet\":\"x\"}}",
		  "local", "reserved");
	parse_err("{\"name\":\"w\",\"image\":\"web\",\"desired\":1,\"tags\":{\"a\":1}}", "local",
		  "must be a string");
	parse_err("{\"name\":\"w\",\"image\":\"web\",\"desired\":1,\"subnet_ids\":[\"a\",\"a\"]}", "local",
		  "listed twice");
	parse_err("{\"name\":\"w\",\"image\":\"web\",\"desired\":1,\"provider\":\"gcp\"}", NULL,
		  "\"provider\" must be \"aws\" or \"local\"");
	parse_err("{\"name\":\"w\",\"image\":\"web\",\"desired\":1}", "aws", "no load balancer");
	parse_err("{\"name\":\"w\",\"image\":\"web\",\"desired\":1,\n"
		  " \"aws\":{\"load_balancer\":{}}}", "aws",
		  "fleet.json:2:9: \"load_balancer\" does not apply to the aws provider");
	parse_err("{\"name\":\"w\",\"image\":\"web\",\"desired\":1,\"local\":{\"name\":\"x\"}}", "local",
		  "unknown key \"name\" in the \"local\" block");
	parse_err("{\"name\":\"w\",\"image\":\"web\",\"desired\":1,\n"
		  " \"load_balancer\":{\"health\":{\"path\":\"/\",\"rise\":0}}}", "local",
		  "fleet.json:2:47: \"rise\" must be between 1 and 100");
	parse_err("{\"name\":\"w\",\"image\":\"web\",\"desired\":1,\"load_balancer\":{\"listen\":\"8080\"}}",
		  "local", "ADDRESS:PORT");
	parse_err("{\"name\":\"w\",\"image\":\"web\",\"desired\":1,\"target_group_arns\":[\"tg-1\"]}", "aws",
		  "not a target group ARN");
	parse_err("{\"name\":\"w\",\"image\":\"web\",\"desired\":1,\"user_data_file\":\"/nonexistent/x\"}",
		  "local", "fleet.json:1:56: cannot read");
	parse_err("[1]", "local", "fleet.json:1:1: a fleet file must hold a JSON object");
	parse_err("{\"name\":\"w\",", "local", "fleet.json:1:");
}

#define TG "\"target_group_arns\":[\"arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/a/1\"]"

/* IMDSv2 and the root volume for the fleet's instances: the aws block only, as in templates. */
static void test_instance_options(void **state)
{
	kiln_fleet *f;
	json_t *m, *rv;
	(void)state;
	f = parse_ok("{\"name\":\"web\",\"image\":\"web\",\"desired\":2," TG ",\n"
		     " \"aws\":{\"metadata_options\":{\"http_tokens\":\"required\",\"http_put_response_hop_limit\":2},\n"
		     "        \"root_volume_size_gb\":30,\"root_volume_type\":\"gp3\",\"root_volume_throughput\":300},\n"
		     " \"local\":{\"instance_type\":\"small\"}}",
		     "aws");
	m = json_object_get(f->launch_options, "metadata_options");
	assert_string_equal(json_string_value(json_object_get(m, "http_tokens")), "required");
	assert_int_equal(json_integer_value(json_object_get(m, "http_put_response_hop_limit")), 2);
	rv = json_object_get(f->launch_options, "root_volume");
	assert_int_equal(json_integer_value(json_object_get(rv, "size_gb")), 30);
	assert_string_equal(json_string_value(json_object_get(rv, "type")), "gp3");
	assert_int_equal(json_integer_value(json_object_get(rv, "throughput")), 300);
	assert_null(json_object_get(f->launch_options, "encrypt_volumes"));
	kiln_fleet_free(f);
	/* the same file on local: no options */
	f = parse_ok("{\"name\":\"web\",\"image\":\"web\",\"desired\":2,\n"
		     " \"aws\":{\"metadata_options\":{\"http_tokens\":\"required\"}}}", "local");
	assert_null(f->launch_options);
	kiln_fleet_free(f);
	/* none given: none */
	f = parse_ok("{\"name\":\"web\",\"image\":\"web\",\"desired\":2," TG ",\"aws\":{\"desired\":3}}", "aws");
	assert_null(f->launch_options);
	assert_int_equal(f->desired, 3);
	kiln_fleet_free(f);

	parse_err("{\"name\":\"w\",\"image\":\"web\",\"desired\":1," TG ",\n"
		  " \"metadata_options\":{\"http_tokens\":\"required\"}}", "aws",
		  "fleet.json:2:2: \"metadata_options\" is an aws option: put it in the \"aws\" block, not at the top level");
	parse_err("{\"name\":\"w\",\"image\":\"web\",\"desired\":1,\n"
		  " \"local\":{\"root_volume_size_gb\":8}}", "local",
		  "fleet.json:2:11: \"root_volume_size_gb\" is an aws option: put it in the \"aws\" block, not in the \"local\" block");
	parse_err("{\"name\":\"w\",\"image\":\"web\",\"desired\":1," TG ",\n"
		  " \"aws\":{\"metadata_options\":{\"http_tokens\":\"always\"}}}", "aws",
		  "fleet.json:2:43: unknown \"http_tokens\" \"always\" (required or optional)");
	parse_err("{\"name\":\"w\",\"image\":\"web\",\"desired\":1," TG ",\n"
		  " \"aws\":{\"root_volume_type\":\"gp2\",\"root_volume_iops\":3000}}", "aws",
		  "fleet.json:2:53: \"root_volume_iops\" needs \"root_volume_type\" gp3, io1 or io2 (not gp2)");
	parse_err("{\"name\":\"w\",\"image\":\"web\",\"desired\":1," TG ",\n"
		  " \"aws\":{\"root_volume_sizegb\":8}}", "aws",
		  "unknown key \"root_volume_sizegb\" in the \"aws\" block (did you mean \"root_volume_size_gb\"?)");
}

static void test_missing_file_is_bad_input(void **state)
{
	kiln_fleet *f = NULL;
	(void)state;
	assert_error(kiln_fleet_load(&f, "/nonexistent/fleet.json", "local"), KILN_EINVALID,
		     "/nonexistent/fleet.json");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_every_key),
		cmocka_unit_test(test_provider_blocks),
		cmocka_unit_test(test_batch_sizes),
		cmocka_unit_test(test_errors_are_positioned),
		cmocka_unit_test(test_instance_options),
		cmocka_unit_test(test_missing_file_is_bad_input),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
