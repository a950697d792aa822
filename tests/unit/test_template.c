#include <sys/stat.h>
#include <unistd.h>

#include "builder/template.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/fs.h"
#include "tests/support/test.h"

/*
 * Each bad template is written to a fresh directory as web.json and must
 * fail with exactly the message given ("web.json:L:C: ..." with the
 * directory stripped), so positions are checked to the column.
 */

struct fixture {
	char *dir;
	char *path;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	f->dir = kiln_test_mktmp();
	/* files the good templates refer to */
	free(kiln_test_write(f->dir, "setup.sh", "#!/bin/sh\necho hi\n"));
	free(kiln_test_write(f->dir, "two.sh", "#!/bin/sh\necho two\n"));
	assert_int_equal(kiln_mkdir_p(f->dir, 0700), 0);
	{
		char *app = kiln_strdupf("%s/app", f->dir);
		assert_int_equal(kiln_mkdir_p(app, 0755), 0);
		free(kiln_test_write(app, "manage.py", "print('hi')\n"));
		free(app);
	}
	unsetenv("KILN_PROVIDER");
	unsetenv("KILN_TEST_UNSET");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	free(f->path);
	kiln_test_rmtmp(f->dir);
	free(f);
	unsetenv("KILN_PROVIDER");
	return 0;
}

static int load(struct fixture *f, const char *text, const kiln_template_options *opts,
		kiln_template **out)
{
	free(f->path);
	f->path = kiln_test_write(f->dir, "web.json", text);
	return kiln_template_load(out, f->path, opts);
}

/* The error message with every "DIR/" of the fixture's directory removed. */
static const char *message_rel(struct fixture *f)
{
	static char out[1024];
	const char *m = kiln_error_last()->message, *hit;
	size_t n = strlen(f->dir), o = 0;

	while ((hit = strstr(m, f->dir)) && hit[n] == '/' && o < sizeof(out) - 1) {
		size_t k = KILN_MIN((size_t)(hit - m), sizeof(out) - 1 - o);
		memcpy(out + o, m, k);
		o += k;
		m = hit + n + 1;
	}
	snprintf(out + o, sizeof(out) - o, "%s", m);
	return out;
}

#define assert_bad(f, text, want)                                                   \
	do {                                                                        \
		kiln_template *t_ = NULL;                                           \
		int rc_ = load((f), (text), NULL, &t_);                             \
		if (rc_ != KILN_EINVALID || strcmp(message_rel(f), (want)))         \
			fail_msg("rc %d, message\n  got:  %s\n  want: %s", rc_,    \
				 message_rel(f), (want));                           \
		assert_null(t_);                                                    \
	} while (0)

#define GOOD_HEAD                                         \
	"{\n"                                             \
	"  \"name\": \"web\",\n"                          \
	"  \"source_image\": \"ami-12345678\",\n"         \
	"  \"instance_type\": \"t3.micro\",\n"            \
	"  \"ssh_username\": \"admin\",\n"

static void test_good_template(void **state)
{
	struct fixture *f = *state;
	kiln_template *t = NULL;
	const char *vars[] = { "app_dir=/srv/app", "greeting=hello world" };
	kiln_template_options opts = KILN_TEMPLATE_OPTIONS_INIT;
	char *want;

	setenv("KILN_TEST_REGION", "eu-west-1", 1);
	opts.vars = vars;
	opts.n_vars = 2;
	assert_int_equal(load(f,
			      "{\n"
			      "  \"name\": \"web\",\n"
			      "  \"variables\": {\"app_dir\": null, \"greeting\": \"hi\", \"owner\": \"ops\"},\n"
			      "  \"description\": \"web v{{version}} by {{var owner}}\",\n"
			      "  \"source_image_filter\": {\"owners\": [\"self\"], \"name\": \"debian-12-*\", \"tags\": {\"os\": \"debian\"}},\n"
			      "  \"instance_type\": \"t3.micro\",\n"
			      "  \"region\": \"{{env KILN_TEST_REGION}}\",\n"
			      "  \"ssh_username\": \"admin\",\n"
			      "  \"ssh_interface\": \"private_ip\",\n"
			      "  \"temporary_cidrs\": [\"10.0.0.0/8\", \"2001:db8::/32\"],\n"
			      "  \"tags\": {\"team\": \"{{var owner}}\", \"release\": \"{{version}}\"},\n"
			      "  \"keep_versions\": 3,\n"
			      "  \"ssm_parameter\": \"/golden/web\",\n"
			      "  \"aws\": {\"ssh_host\": \"127.0.0.1\", \"ssh_port\": 2222, \"launch_options\": {\"ebs_optimized\": true}},\n"
			      "  \"local\": {\"source_image\": \"debian-12\", \"ssh_username\": \"root\"},\n"
			      "  \"provisioners\": [\n"
			      "    {\"type\": \"shell\", \"inline\": [\"echo {{var greeting}}\", \"echo {{version}} > /etc/v\"],\n"
			      "     \"environment_vars\": {\"APP_DIR\": \"{{var app_dir}}\", \"V\": \"{{version}}\"}},\n"
			      "    {\"type\": \"shell\", \"scripts\": [\"setup.sh\", \"two.sh\"], \"expect_disconnect\": true,\n"
			      "     \"execute_command\": \"sudo -E sh -c '{{.Vars}} {{.Path}}'\"},\n"
			      "    {\"type\": \"file\", \"source\": \"app\", \"destination\": \"{{var app_dir}}\"},\n"
			      "    {\"type\": \"shell\", \"script\": \"setup.sh\", \"only\": [\"local\"]}\n"
			      "  ]\n"
			      "}\n",
			      &opts, &t),
			 0);
	assert_string_equal(t->provider, "aws");
	assert_null(t->file_provider);
	assert_true(t->has_aws_block);
	assert_true(t->has_local_block);
	assert_string_equal(t->name, "web");
	assert_null(t->source_image);
	assert_true(t->has_source_filter);
	assert_string_equal(t->filter_name, "debian-12-*");
	assert_int_equal(t->filter_owners.n, 1);
	assert_string_equal(kiln_tags_get(&t->filter_tags, "os"), "debian");
	assert_string_equal(t->region, "eu-west-1");
	assert_string_equal(t->ssh_host, "127.0.0.1");
	assert_int_equal(t->ssh_port, 2222);
	assert_int_equal(t->ssh_interface, KILN_SSH_PRIVATE_IP);
	assert_int_equal(t->ssh_timeout_s, 300);
	assert_int_equal(t->temporary_cidrs.n, 2);
	assert_int_equal(t->keep_versions, 3);
	assert_string_equal(t->ssm_parameter, "/golden/web");
	assert_true(json_is_true(json_object_get(t->launch_options, "ebs_optimized")));
	assert_int_equal(strlen(t->sha256), 64);
	/* the local-only provisioner is left out on aws */
	assert_int_equal(t->n_provisioners, 3);
	assert_string_equal(t->provisioners[0].label, "shell #1");
	assert_int_equal(t->provisioners[0].n_inline, 2);
	assert_string_equal(t->provisioners[0].inline_cmds[0], "echo hello world");
	assert_string_equal(t->provisioners[0].inline_cmds[1], "echo {{version}} > /etc/v");
	assert_string_equal(kiln_tags_get(&t->provisioners[0].environment, "APP_DIR"), "/srv/app");
	assert_string_equal(t->provisioners[0].execute_command, "chmod +x {{.Path}}; {{.Vars}} {{.Path}}");
	assert_int_equal(t->provisioners[1].n_scripts, 2);
	want = kiln_strdupf("%s/two.sh", f->dir);
	assert_string_equal(t->provisioners[1].scripts[1], want);
	free(want);
	assert_true(t->provisioners[1].expect_disconnect);
	assert_string_equal(t->provisioners[1].execute_command, "sudo -E sh -c '{{.Vars}} {{.Path}}'");
	assert_int_equal(t->provisioners[2].type, KILN_PROVISIONER_FILE);
	assert_string_equal(t->provisioners[2].label, "file #3");
	want = kiln_strdupf("%s/app", f->dir);
	assert_string_equal(t->provisioners[2].source, want);
	free(want);
	assert_string_equal(t->provisioners[2].destination, "/srv/app");

	/* {{version}} becomes known once reserved */
	assert_int_equal(kiln_template_set_version(t, 7), 0);
	assert_string_equal(t->description, "web v7 by ops");
	assert_string_equal(kiln_tags_get(&t->tags, "release"), "7");
	assert_string_equal(t->provisioners[0].inline_cmds[1], "echo 7 > /etc/v");
	assert_string_equal(kiln_tags_get(&t->provisioners[0].environment, "V"), "7");
	kiln_template_free(t);

	/* the local block overrides the source (the filter goes with it) and the user */
	opts.provider = "local";
	assert_int_equal(kiln_template_load(&t, f->path, &opts), 0);
	assert_string_equal(t->provider, "local");
	assert_string_equal(t->source_image, "debian-12");
	assert_false(t->has_source_filter);
	assert_string_equal(t->ssh_username, "root");
	assert_null(t->ssh_host);
	assert_int_equal(t->ssh_port, 22);
	assert_null(t->launch_options);
	assert_int_equal(t->n_provisioners, 4);
	assert_string_equal(t->provisioners[3].label, "shell #4");
	kiln_template_free(t);
	unsetenv("KILN_TEST_REGION");
}

static void test_provider_precedence(void **state)
{
	struct fixture *f = *state;
	kiln_template *t = NULL;
	kiln_template_options opts = KILN_TEMPLATE_OPTIONS_INIT;
	const char *text = GOOD_HEAD "  \"local\": {\"instance_type\": \"small\"}\n}\n";
	const char *text_fp = GOOD_HEAD "  \"provider\": \"local\"\n}\n";

	assert_int_equal(load(f, text, NULL, &t), 0);
	assert_string_equal(t->provider, "aws");
	assert_string_equal(t->instance_type, "t3.micro");
	kiln_template_free(t);

	setenv("KILN_PROVIDER", "local", 1);
	assert_int_equal(load(f, text, NULL, &t), 0);
	assert_string_equal(t->provider, "local");
	assert_string_equal(t->instance_type, "small");
	kiln_template_free(t);

	/* the file's provider beats the environment, --provider beats both */
	setenv("KILN_PROVIDER", "aws", 1);
	assert_int_equal(load(f, text_fp, NULL, &t), 0);
	assert_string_equal(t->provider, "local");
	assert_string_equal(t->file_provider, "local");
	kiln_template_free(t);
	opts.provider = "aws";
	assert_int_equal(kiln_template_load(&t, f->path, &opts), 0);
	assert_string_equal(t->provider, "aws");
	kiln_template_free(t);
	opts.provider = "gcp";
	assert_error(kiln_template_load(&t, f->path, &opts), KILN_EINVALID,
		     "unknown provider 'gcp': use aws or local");
}

static void test_bad_keys_and_types(void **state)
{
	struct fixture *f = *state;

	assert_bad(f, "[1]\n", "web.json:1:1: a template must be an object, not an array");
	assert_bad(f, "{\"name\": \"web\",\n  \"name\": \"x\"}\n",
		   "web.json:2:8: duplicate object key near '\"name\"'");
	assert_bad(f, GOOD_HEAD "  \"instnace_type\": \"t3.micro\"\n}\n",
		   "web.json:6:3: unknown key \"instnace_type\" in template (did you mean \"instance_type\"?)");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"ssh_prot\": 22}\n}\n",
		   "web.json:6:11: unknown key \"ssh_prot\" in the \"aws\" block (did you mean \"ssh_port\"?)");
	/* the block not in use is checked too */
	assert_bad(f, GOOD_HEAD "  \"local\": {\"bogus\": 1}\n}\n",
		   "web.json:6:13: unknown key \"bogus\" in the \"local\" block (did you mean \"tags\"?)");
	assert_bad(f, GOOD_HEAD "  \"ssh_port\": \"22\"\n}\n",
		   "web.json:6:15: \"ssh_port\" must be an integer, not a string");
	assert_bad(f, GOOD_HEAD "  \"ssh_port\": 70000\n}\n",
		   "web.json:6:15: \"ssh_port\" must be between 1 and 65535, not 70000");
	assert_bad(f, GOOD_HEAD "  \"keep_versions\": 0\n}\n",
		   "web.json:6:20: \"keep_versions\" must be between 1 and 100000, not 0");
	assert_bad(f, GOOD_HEAD "  \"tags\": {\"a\": 1}\n}\n",
		   "web.json:6:17: \"a\" in \"tags\" must be a string, not an integer");
	assert_bad(f, GOOD_HEAD "  \"tags\": {\"kiln:image\": \"x\"}\n}\n",
		   "web.json:6:12: tag key \"kiln:image\" is not allowed (empty, too long, or reserved: kiln:*, aws:*)");
	assert_bad(f, GOOD_HEAD "  \"ssh_interface\": \"public_dns\"\n}\n",
		   "web.json:6:20: unknown \"ssh_interface\" \"public_dns\" (public_ip or private_ip)");
	assert_bad(f, GOOD_HEAD "  \"provider\": \"gcp\"\n}\n",
		   "web.json:6:15: unknown provider \"gcp\" (aws or local)");
	assert_bad(f, GOOD_HEAD "  \"aws\": [1]\n}\n", "web.json:6:10: \"aws\" must be an object, not an array");
	assert_bad(f, GOOD_HEAD "  \"ssm_parameter\": \"/kiln/x\"\n}\n",
		   "web.json:6:20: bad \"ssm_parameter\" \"/kiln/x\": letters, digits, _ . - /; not under /kiln/, not starting aws or ssm");
}

static void test_aws_options(void **state)
{
	struct fixture *f = *state;
	kiln_template *t = NULL;
	kiln_template_options opts = KILN_TEMPLATE_OPTIONS_INIT;
	json_t *lo, *m, *rv;

	setenv("KILN_TEST_KEY", "arn:aws:kms:us-east-1:111122223333:key/1234", 1);
	assert_int_equal(load(f,
			      GOOD_HEAD
			      "  \"region\": \"us-east-1\",\n"
			      "  \"aws\": {\n"
			      "    \"metadata_options\": {\"http_tokens\": \"required\", \"http_put_response_hop_limit\": 2},\n"
			      "    \"imds_support\": \"v2.0\",\n"
			      "    \"root_volume_size_gb\": 40, \"root_volume_type\": \"gp3\",\n"
			      "    \"root_volume_iops\": 4000, \"root_volume_throughput\": 250,\n"
			      "    \"encrypt_boot\": true, \"kms_key_id\": \"{{env KILN_TEST_KEY}}\",\n"
			      "    \"ami_regions\": [\"eu-west-1\", \"us-gov-west-1\"],\n"
			      "    \"region_kms_key_ids\": {\"eu-west-1\": \"alias/kiln\", \"us-gov-west-1\": \"mrk-1\"},\n"
			      "    \"ami_users\": [\"111122223333\", \"444455556666\"],\n"
			      "    \"snapshot_users\": [\"111122223333\"],\n"
			      "    \"deprecate_at\": \"90d\",\n"
			      "    \"launch_options\": {\"ebs_optimized\": true}\n"
			      "  }\n"
			      "}\n",
			      NULL, &t),
			 0);
	assert_string_equal(t->imds_support, "v2.0");
	assert_true(t->encrypt_boot);
	assert_string_equal(t->kms_key_id, "arn:aws:kms:us-east-1:111122223333:key/1234");
	assert_int_equal(t->ami_regions.n, 2);
	assert_string_equal(t->ami_regions.items[1], "us-gov-west-1");
	assert_string_equal(kiln_tags_get(&t->region_kms_key_ids, "eu-west-1"), "alias/kiln");
	assert_int_equal(t->ami_users.n, 2);
	assert_int_equal(t->ami_groups.n, 0);
	assert_int_equal(t->snapshot_users.n, 1);
	assert_int_equal(t->deprecate_after_s, 90 * 86400);
	assert_int_equal(t->deprecate_at, 0);
	/* what the provider gets: the typed options beside the block's own launch_options */
	lo = t->launch_options;
	assert_non_null(lo);
	assert_true(json_is_true(json_object_get(lo, "ebs_optimized")));
	m = json_object_get(lo, "metadata_options");
	assert_string_equal(json_string_value(json_object_get(m, "http_tokens")), "required");
	assert_int_equal(json_integer_value(json_object_get(m, "http_put_response_hop_limit")), 2);
	assert_null(json_object_get(m, "http_endpoint"));
	rv = json_object_get(lo, "root_volume");
	assert_int_equal(json_integer_value(json_object_get(rv, "size_gb")), 40);
	assert_string_equal(json_string_value(json_object_get(rv, "type")), "gp3");
	assert_int_equal(json_integer_value(json_object_get(rv, "iops")), 4000);
	assert_int_equal(json_integer_value(json_object_get(rv, "throughput")), 250);
	assert_string_equal(json_string_value(json_object_get(json_object_get(lo, "encrypt_volumes"), "kms_key_id")),
			    "arn:aws:kms:us-east-1:111122223333:key/1234");
	kiln_template_free(t);

	/* on local the aws block is checked by `kiln validate` for aws, not used */
	opts.provider = "local";
	assert_int_equal(kiln_template_load(&t, f->path, &opts), 0);
	assert_null(t->imds_support);
	assert_false(t->encrypt_boot);
	assert_int_equal(t->ami_regions.n, 0);
	assert_null(t->launch_options);
	kiln_template_free(t);

	/* absolute deprecation (now is 2026-01-01), public sharing, default key for the volumes */
	kiln_test_clock_install(1767225600000);
	assert_int_equal(load(f,
			      GOOD_HEAD
			      "  \"aws\": {\"deprecate_at\": \"2027-01-31T00:00:00Z\", \"ami_groups\": [\"all\"],\n"
			      "          \"metadata_options\": {\"http_endpoint\": \"disabled\"}, \"root_volume_size_gb\": 8}\n"
			      "}\n",
			      NULL, &t),
			 0);
	kiln_test_clock_uninstall();
	assert_int_equal(t->deprecate_at, 1801353600);
	assert_int_equal(t->ami_groups.n, 1);
	assert_string_equal(json_string_value(json_object_get(json_object_get(t->launch_options, "metadata_options"),
							      "http_endpoint")),
			    "disabled");
	assert_null(json_object_get(json_object_get(t->launch_options, "root_volume"), "type"));
	assert_null(json_object_get(t->launch_options, "encrypt_volumes"));
	kiln_template_free(t);

	assert_int_equal(load(f, GOOD_HEAD "  \"aws\": {\"encrypt_boot\": true, \"ami_regions\": [\"eu-west-1\"]}\n}\n",
			      NULL, &t),
			 0);
	/* the default key: the copies take each region's default */
	assert_non_null(json_object_get(t->launch_options, "encrypt_volumes"));
	assert_null(json_object_get(json_object_get(t->launch_options, "encrypt_volumes"), "kms_key_id"));
	kiln_template_free(t);
	unsetenv("KILN_TEST_KEY");
}

static void test_bad_aws_options(void **state)
{
	struct fixture *f = *state;

	/* only the aws block has them */
	assert_bad(f, GOOD_HEAD "  \"ami_regions\": [\"eu-west-1\"]\n}\n",
		   "web.json:6:3: \"ami_regions\" is an aws option: put it in the \"aws\" block, not at the top level");
	assert_bad(f, GOOD_HEAD "  \"local\": {\"metadata_options\": {}}\n}\n",
		   "web.json:6:13: \"metadata_options\" is an aws option: put it in the \"aws\" block, not in the \"local\" block");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"ami_region\": [\"eu-west-1\"]}\n}\n",
		   "web.json:6:11: unknown key \"ami_region\" in the \"aws\" block (did you mean \"ami_regions\"?)");
	/* metadata options */
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"metadata_options\": {\"http_tokens\": \"yes\"}}\n}\n",
		   "web.json:6:47: unknown \"http_tokens\" \"yes\" (required or optional)");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"metadata_options\": {\"http_put_response_hop_limit\": 65}}\n}\n",
		   "web.json:6:63: \"http_put_response_hop_limit\" must be between 1 and 64, not 65");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"metadata_options\": {\"http_token\": \"required\"}}\n}\n",
		   "web.json:6:32: unknown key \"http_token\" in \"metadata_options\" (did you mean \"http_tokens\"?)");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"metadata_options\": {}}\n}\n",
		   "web.json:6:31: \"metadata_options\" is empty: set \"http_tokens\": \"required\" for IMDSv2");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"metadata_options\": {\"http_tokens\": \"required\", \"http_endpoint\": \"disabled\"}}\n}\n",
		   "web.json:6:76: \"http_endpoint\" \"disabled\" turns the metadata service off: leave out \"http_tokens\" and \"http_put_response_hop_limit\"");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"imds_support\": \"v1\"}\n}\n",
		   "web.json:6:27: unknown \"imds_support\" \"v1\" (only \"v2.0\")");
	/* volumes */
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"root_volume_type\": \"gp4\"}\n}\n",
		   "web.json:6:31: unknown \"root_volume_type\" \"gp4\" (gp3, gp2, io1, io2, st1, sc1 or standard)");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"root_volume_type\": \"st1\", \"root_volume_size_gb\": 8}\n}\n",
		   "web.json:6:61: \"root_volume_size_gb\" of st1 must be between 125 and 16384, not 8");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"root_volume_size_gb\": 0}\n}\n",
		   "web.json:6:34: \"root_volume_size_gb\" must be between 1 and 65536, not 0");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"root_volume_iops\": 3000}\n}\n",
		   "web.json:6:31: \"root_volume_iops\" needs \"root_volume_type\" gp3, io1 or io2");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"root_volume_type\": \"gp2\", \"root_volume_iops\": 3000}\n}\n",
		   "web.json:6:58: \"root_volume_iops\" needs \"root_volume_type\" gp3, io1 or io2 (not gp2)");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"root_volume_type\": \"gp3\", \"root_volume_iops\": 100}\n}\n",
		   "web.json:6:58: \"root_volume_iops\" of gp3 must be between 3000 and 80000, not 100");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"root_volume_type\": \"io2\"}\n}\n",
		   "web.json:6:31: \"root_volume_type\" io2 needs \"root_volume_iops\"");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"root_volume_type\": \"io1\", \"root_volume_iops\": 500, \"root_volume_throughput\": 200}\n}\n",
		   "web.json:6:89: \"root_volume_throughput\" needs \"root_volume_type\" gp3 (not io1)");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"root_volume_type\": \"gp3\", \"root_volume_throughput\": 5000}\n}\n",
		   "web.json:6:64: \"root_volume_throughput\" of gp3 must be between 125 and 2000 MiB/s, not 5000");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"launch_options\": {\"metadata_options\": {}}, \"metadata_options\": {\"http_tokens\": \"required\"}}\n}\n",
		   "web.json:6:30: \"launch_options\" cannot set \"metadata_options\": use the \"aws\" block's own keys (docs/templates.md)");
	/* encryption */
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"kms_key_id\": \"alias/x\"}\n}\n",
		   "web.json:6:11: \"kms_key_id\" needs \"encrypt_boot\": true");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"encrypt_boot\": true, \"kms_key_id\": \"alias/a b\"}\n}\n",
		   "web.json:6:47: bad \"kms_key_id\" \"alias/a b\"");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"encrypt_boot\": \"yes\"}\n}\n",
		   "web.json:6:27: \"encrypt_boot\" must be true or false, not a string");
	/* copies */
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"ami_regions\": [\"eu-west-1\", \"EU_WEST\"]}\n}\n",
		   "web.json:6:40: bad region \"EU_WEST\" in \"ami_regions\"");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"ami_regions\": [\"eu-west-1\", \"eu-west-1\"]}\n}\n",
		   "web.json:6:40: \"eu-west-1\" is listed twice in \"ami_regions\"");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"ami_regions\": []}\n}\n",
		   "web.json:6:26: \"ami_regions\" is empty: leave it out");
	assert_bad(f, GOOD_HEAD "  \"region\": \"eu-west-1\",\n  \"aws\": {\"ami_regions\": [\"eu-west-1\"]}\n}\n",
		   "web.json:7:27: \"ami_regions\" lists the build's own region \"eu-west-1\"");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"encrypt_boot\": true, \"kms_key_id\": \"alias/a\", \"ami_regions\": [\"eu-west-1\"]}\n}\n",
		   "web.json:6:74: copying to \"eu-west-1\" needs a key of that region: add it to \"region_kms_key_ids\" (\"kms_key_id\" is a key of the build's region)");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"encrypt_boot\": true, \"ami_regions\": [\"eu-west-1\"], \"region_kms_key_ids\": {\"us-west-2\": \"k\"}}\n}\n",
		   "web.json:6:86: \"region_kms_key_ids\" names \"us-west-2\", which is not in \"ami_regions\"");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"ami_regions\": [\"eu-west-1\"], \"region_kms_key_ids\": {\"eu-west-1\": \"k\"}}\n}\n",
		   "web.json:6:41: \"region_kms_key_ids\" needs \"encrypt_boot\": true");
	/* sharing */
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"ami_users\": [\"12345\"]}\n}\n",
		   "web.json:6:25: bad account id (12 digits) \"12345\" in \"ami_users\"");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"snapshot_groups\": [\"everyone\"]}\n}\n",
		   "web.json:6:31: bad group (only \"all\") \"everyone\" in \"snapshot_groups\"");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"encrypt_boot\": true, \"ami_groups\": [\"all\"]}\n}\n",
		   "web.json:6:33: an encrypted image cannot be made public");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"encrypt_boot\": true, \"ami_users\": [\"111122223333\"]}\n}\n",
		   "web.json:6:33: an image encrypted with the default EBS key cannot be shared: set \"kms_key_id\" to a customer managed key the accounts may use");
	/* deprecation */
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"deprecate_at\": \"2001-01-01T00:00:00Z\"}\n}\n",
		   "web.json:6:27: \"deprecate_at\" 2001-01-01T00:00:00Z is in the past");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"deprecate_at\": \"soon\"}\n}\n",
		   "web.json:6:27: bad \"deprecate_at\" \"soon\": a UTC time such as 2027-01-31T00:00:00Z, or a time from the build such as 90d or 36h");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"deprecate_at\": \"4000d\"}\n}\n",
		   "web.json:6:27: \"deprecate_at\" is more than 10 years away (EC2's limit)");
	assert_bad(f, GOOD_HEAD "  \"aws\": {\"deprecate_at\": \"0d\"}\n}\n",
		   "web.json:6:27: bad \"deprecate_at\" \"0d\": a UTC time such as 2027-01-31T00:00:00Z, or a time from the build such as 90d or 36h");
}

static void test_bad_required(void **state)
{
	struct fixture *f = *state;

	assert_bad(f, "{\n  \"source_image\": \"ami-1\",\n  \"instance_type\": \"t3.micro\",\n  \"ssh_username\": \"a\"\n}\n",
		   "web.json:1:1: missing required key \"name\" (a string)");
	assert_bad(f, "{\n  \"name\": \"web\",\n  \"instance_type\": \"t3.micro\",\n  \"ssh_username\": \"a\"\n}\n",
		   "web.json:1:1: missing required key \"source_image\" (an image id) or \"source_image_filter\"");
	assert_bad(f, "{\n  \"name\": \"web\",\n  \"source_image\": \"ami-1\",\n  \"ssh_username\": \"a\"\n}\n",
		   "web.json:1:1: missing required key \"instance_type\" (a string)");
	assert_bad(f, "{\n  \"name\": \"web\",\n  \"source_image\": \"ami-1\",\n  \"instance_type\": \"t3.micro\"\n}\n",
		   "web.json:1:1: missing required key \"ssh_username\" (a string)");
	assert_bad(f, "{\n  \"name\": \"web server\",\n  \"source_image\": \"ami-1\"\n}\n",
		   "web.json:2:11: bad image name \"web server\": 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit");
	assert_bad(f, "{\n  \"name\": \"\"\n}\n", "web.json:2:11: \"name\" must not be empty");
	assert_bad(f, GOOD_HEAD "  \"source_image_filter\": {\"name\": \"x\"}\n}\n",
		   "web.json:6:3: set \"source_image\" or \"source_image_filter\", not both");
	assert_bad(f,
		   "{\n  \"name\": \"web\",\n  \"instance_type\": \"t3.micro\",\n  \"ssh_username\": \"a\",\n"
		   "  \"source_image_filter\": {\"owners\": [\"self\"]}\n}\n",
		   "web.json:5:26: \"source_image_filter\" needs a \"name\" pattern or \"tags\"");
	assert_bad(f,
		   "{\n  \"name\": \"web\",\n  \"instance_type\": \"t3.micro\",\n  \"ssh_username\": \"a\",\n"
		   "  \"source_image_filter\": {\"nmae\": \"x\"}\n}\n",
		   "web.json:5:27: unknown key \"nmae\" in source_image_filter (did you mean \"name\"?)");
}

static void test_bad_cidrs(void **state)
{
	struct fixture *f = *state;

	assert_bad(f, GOOD_HEAD "  \"temporary_cidrs\": [\"10.0.0.1\"]\n}\n",
		   "web.json:6:23: '10.0.0.1' is not a CIDR: add a prefix length, e.g. '10.0.0.1/32'");
	assert_bad(f, GOOD_HEAD "  \"temporary_cidrs\": [\"10.0.0.0/8\", \"10.0.0.300/32\"]\n}\n",
		   "web.json:6:37: '10.0.0.300/32' is not a CIDR: '10.0.0.300' is not an IP address");
	assert_bad(f, GOOD_HEAD "  \"temporary_cidrs\": [\"10.0.0.0/33\"]\n}\n",
		   "web.json:6:23: '10.0.0.0/33' is not a CIDR: the prefix length must be 0 to 32");
	assert_bad(f, GOOD_HEAD "  \"temporary_cidrs\": [\"192.168.1.7/24\"]\n}\n",
		   "web.json:6:23: '192.168.1.7/24' has host bits set (did you mean '192.168.1.0/24'?)");
	assert_bad(f, GOOD_HEAD "  \"temporary_cidrs\": []\n}\n",
		   "web.json:6:22: \"temporary_cidrs\" must list at least one CIDR (leave it out for this machine's address)");
	assert_bad(f, GOOD_HEAD "  \"temporary_cidrs\": \"10.0.0.0/8\"\n}\n",
		   "web.json:6:22: \"temporary_cidrs\" must be an array, not a string");
	assert_int_equal(kiln_cidr_check("0.0.0.0/0"), 0);
	assert_int_equal(kiln_cidr_check("2001:db8::/32"), 0);
	assert_int_equal(kiln_cidr_check("2001:db8::1/128"), 0);
	assert_error(kiln_cidr_check("2001:db8::1/32"), KILN_EINVALID, "did you mean '2001:db8::/32'");
	assert_true(kiln_host_is_loopback("127.0.0.1"));
	assert_true(kiln_host_is_loopback("127.3.2.1"));
	assert_true(kiln_host_is_loopback("::1"));
	assert_false(kiln_host_is_loopback("10.0.0.1"));
	assert_false(kiln_host_is_loopback(NULL));
}

static void test_bad_variables(void **state)
{
	struct fixture *f = *state;
	kiln_template *t = NULL;
	kiln_template_options opts = KILN_TEMPLATE_OPTIONS_INIT;
	const char *vars[1];
	char *vf;

	assert_bad(f, GOOD_HEAD "  \"description\": \"{{var nope}}\"\n}\n",
		   "web.json:6:18: undefined variable \"nope\" in \"description\" (declare it in \"variables\")");
	assert_bad(f, GOOD_HEAD "  \"description\": \"{{ frobnicate }}\"\n}\n",
		   "web.json:6:18: unknown expression \"{{ frobnicate }}\" in \"description\" (known: {{var NAME}}, {{env NAME}}, {{timestamp}}, {{version}})");
	assert_bad(f, GOOD_HEAD "  \"description\": \"{{var a\"\n}\n",
		   "web.json:6:18: unterminated \"{{\" in \"description\"");
	assert_bad(f, GOOD_HEAD "  \"region\": \"{{env KILN_TEST_UNSET}}\"\n}\n",
		   "web.json:6:13: environment variable \"KILN_TEST_UNSET\" is not set (used in \"region\")");
	/* the version is not known when the name or a source path is needed */
	assert_bad(f, "{\n  \"name\": \"web-{{version}}\"\n}\n",
		   "web.json:2:11: {{version}} cannot be used in \"name\": it is not known yet there");
	assert_bad(f, GOOD_HEAD "  \"variables\": {\"a\": null}\n}\n",
		   "web.json:6:22: variable \"a\" has no default: set it with --var a=VALUE or --var-file");
	assert_bad(f, GOOD_HEAD "  \"variables\": {\"a\": 3}\n}\n",
		   "web.json:6:22: variable \"a\" must default to a string (or null: required), not an integer");
	assert_bad(f, GOOD_HEAD "  \"variables\": {\"a\": \"x\", \"b\": \"{{var a}}\"}\n}\n",
		   "web.json:6:32: a variable's default cannot use {{var a}}");
	assert_bad(f, GOOD_HEAD "  \"provisioners\": [{\"type\": \"shell\", \"inline\": [\"ok\", \"{{var x}}\"]}]\n}\n",
		   "web.json:6:55: undefined variable \"x\" in \"element 2\" (declare it in \"variables\")");

	/* --var and --var-file */
	free(f->path);
	f->path = kiln_test_write(f->dir, "web.json", GOOD_HEAD "  \"variables\": {\"a\": null}\n}\n");
	vars[0] = "b=1";
	opts.vars = vars;
	opts.n_vars = 1;
	assert_error(kiln_template_load(&t, f->path, &opts), KILN_EINVALID,
		     "--var 'b=1': variable \"b\" is not declared in ");
	vars[0] = "novalue";
	assert_error(kiln_template_load(&t, f->path, &opts), KILN_EINVALID,
		     "--var 'novalue': expected KEY=VALUE");
	opts.n_vars = 0;
	vf = kiln_test_write(f->dir, "vars.json", "{\n  \"a\": \"x\",\n  \"c\": \"y\"\n}\n");
	opts.var_file = vf;
	assert_error(kiln_template_load(&t, f->path, &opts), KILN_EINVALID,
		     "vars.json:3:3: variable \"c\" is not declared in ");
	free(vf);
	vf = kiln_test_write(f->dir, "vars.json", "{\"a\": [1]}");
	opts.var_file = vf;
	assert_error(kiln_template_load(&t, f->path, &opts), KILN_EINVALID,
		     "vars.json:1:7: variable \"a\" must be a string, not an array");
	free(vf);
	vf = kiln_test_write(f->dir, "vars.json", "{\"a\": \"from-file\"}");
	opts.var_file = vf;
	assert_int_equal(kiln_template_load(&t, f->path, &opts), 0);
	kiln_template_free(t);
	free(vf);
}

static void test_var_precedence(void **state)
{
	struct fixture *f = *state;
	kiln_template *t = NULL;
	kiln_template_options opts = KILN_TEMPLATE_OPTIONS_INIT;
	const char *vars[] = { "a=cli1", "a=cli2" };
	char *vf;

	free(f->path);
	f->path = kiln_test_write(f->dir, "web.json",
				  GOOD_HEAD "  \"variables\": {\"a\": \"default\", \"b\": \"b-default\"},\n"
					    "  \"description\": \"{{var a}} {{user `b`}} {{timestamp}}\"\n}\n");
	assert_int_equal(kiln_template_load(&t, f->path, &opts), 0);
	assert_true(!strncmp(t->description, "default b-default ", 18));
	assert_true(t->timestamp > 1600000000);
	kiln_template_free(t);
	vf = kiln_test_write(f->dir, "vars.json", "{\"a\": \"file\", \"b\": \"b-file\"}");
	opts.var_file = vf;
	assert_int_equal(kiln_template_load(&t, f->path, &opts), 0);
	assert_true(!strncmp(t->description, "file b-file ", 12));
	kiln_template_free(t);
	opts.vars = vars;
	opts.n_vars = 2;
	assert_int_equal(kiln_template_load(&t, f->path, &opts), 0);
	assert_true(!strncmp(t->description, "cli2 b-file ", 12));
	kiln_template_free(t);
	free(vf);
}

static void test_bad_provisioners(void **state)
{
	struct fixture *f = *state;

	assert_bad(f, GOOD_HEAD "  \"provisioners\": {}\n}\n",
		   "web.json:6:19: \"provisioners\" must be an array, not an object");
	assert_bad(f, GOOD_HEAD "  \"provisioners\": [\"echo\"]\n}\n",
		   "web.json:6:20: provisioner 1 must be an object, not a string");
	assert_bad(f, GOOD_HEAD "  \"provisioners\": [{\"inline\": [\"x\"]}]\n}\n",
		   "web.json:6:20: missing required key \"type\" (a string)");
	assert_bad(f, GOOD_HEAD "  \"provisioners\": [{\"type\": \"ansible\"}]\n}\n",
		   "web.json:6:29: unknown provisioner type \"ansible\" (shell or file)");
	assert_bad(f, GOOD_HEAD "  \"provisioners\": [\n    {\"type\": \"shell\", \"inline\": [\"x\"]},\n"
				"    {\"type\": \"shell\", \"inline\": [\"x\"], \"script\": \"setup.sh\"}\n  ]\n}\n",
		   "web.json:8:40: provisioner 2 (shell): \"inline\" and \"script\" cannot both be set");
	assert_bad(f, GOOD_HEAD "  \"provisioners\": [\n    {\"type\": \"shell\"}\n  ]\n}\n",
		   "web.json:7:5: provisioner 1 (shell) needs \"inline\", \"script\" or \"scripts\"");
	assert_bad(f, GOOD_HEAD "  \"provisioners\": [{\"type\": \"shell\", \"inline\": []}]\n}\n",
		   "web.json:6:48: provisioner 1 (shell): \"inline\" is empty");
	assert_bad(f, GOOD_HEAD "  \"provisioners\": [{\"type\": \"shell\", \"inline\": [\"x\", 2]}]\n}\n",
		   "web.json:6:54: element 2 of \"inline\" must be a string, not an integer");
	assert_bad(f, GOOD_HEAD "  \"provisioners\": [{\"type\": \"shell\", \"inlin\": [\"x\"]}]\n}\n",
		   "web.json:6:38: unknown key \"inlin\" in provisioner 1 (shell) (did you mean \"inline\"?)");
	assert_bad(f, GOOD_HEAD "  \"provisioners\": [{\"type\": \"shell\", \"script\": \"missing.sh\"}]\n}\n",
		   "web.json:6:48: cannot read 'missing.sh': No such file or directory");
	assert_bad(f, GOOD_HEAD "  \"provisioners\": [{\"type\": \"shell\", \"scripts\": [\"setup.sh\", \"app\"]}]\n}\n",
		   "web.json:6:62: 'app' is not a regular file");
	assert_bad(f, GOOD_HEAD "  \"provisioners\": [{\"type\": \"shell\", \"inline\": [\"x\"], \"expect_disconnect\": \"yes\"}]\n}\n",
		   "web.json:6:76: \"expect_disconnect\" must be true or false, not a string");
	assert_bad(f, GOOD_HEAD "  \"provisioners\": [{\"type\": \"shell\", \"inline\": [\"x\"], \"environment_vars\": {\"1A\": \"x\"}}]\n}\n",
		   "web.json:6:76: bad environment variable name \"1A\"");
	assert_bad(f, GOOD_HEAD "  \"provisioners\": [{\"type\": \"shell\", \"inline\": [\"x\"], \"environment_vars\": [\"NOEQ\"]}]\n}\n",
		   "web.json:6:76: element 1 of \"environment_vars\" must be NAME=value");
	assert_bad(f, GOOD_HEAD "  \"provisioners\": [{\"type\": \"shell\", \"inline\": [\"x\"], \"execute_command\": \"sh x\"}]\n}\n",
		   "web.json:6:74: \"execute_command\" must run {{.Path}}");
	assert_bad(f, GOOD_HEAD "  \"provisioners\": [{\"type\": \"shell\", \"inline\": [\"{{.Path}}\"]}]\n}\n",
		   "web.json:6:49: unknown expression \"{{.Path}}\" in \"element 1\" (known: {{var NAME}}, {{env NAME}}, {{timestamp}}, {{version}})");
	assert_bad(f, GOOD_HEAD "  \"provisioners\": [{\"type\": \"file\", \"source\": \"app\"}]\n}\n",
		   "web.json:6:20: missing required key \"destination\" (a string)");
	assert_bad(f, GOOD_HEAD "  \"provisioners\": [{\"type\": \"file\", \"source\": \"nope\", \"destination\": \"/x\"}]\n}\n",
		   "web.json:6:47: cannot read 'nope': No such file or directory");
	assert_bad(f, GOOD_HEAD "  \"provisioners\": [{\"type\": \"file\", \"source\": \"{{version}}\", \"destination\": \"/x\"}]\n}\n",
		   "web.json:6:47: {{version}} cannot be used in \"source\": it is not known yet there");
	assert_bad(f, GOOD_HEAD "  \"provisioners\": [{\"type\": \"file\", \"source\": \"app\", \"destination\": \"/x\", \"only\": [\"gcp\"]}]\n}\n",
		   "web.json:6:84: unknown provider \"gcp\" in \"only\" (aws or local)");
}

static void test_missing_file_and_syntax(void **state)
{
	struct fixture *f = *state;
	kiln_template *t = NULL;
	char *missing = kiln_strdupf("%s/nope.json", f->dir);

	assert_error(kiln_template_load(&t, missing, NULL), KILN_ENOTFOUND, "nope.json");
	assert_null(t);
	free(missing);
	assert_bad(f, "{\n  \"name\": \"web\",\n  \"source_image\" \"ami-1\"\n}\n",
		   "web.json:3:24: ':' expected near '\"ami-1\"'");
}

static void test_paths_relative_to_template(void **state)
{
	struct fixture *f = *state;
	kiln_template *t = NULL;
	char *sub = kiln_strdupf("%s/sub", f->dir), *path, *want;
	char cwd[4096];

	assert_int_equal(kiln_mkdir_p(sub, 0755), 0);
	free(kiln_test_write(sub, "p.sh", "true\n"));
	path = kiln_test_write(sub, "t.json",
			       GOOD_HEAD "  \"provisioners\": [{\"type\": \"shell\", \"script\": \"p.sh\"},\n"
					 "    {\"type\": \"file\", \"source\": \"../app\", \"destination\": \"/srv/app\"}]\n}\n");
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir("/"), 0);
	assert_int_equal(kiln_template_load(&t, path, NULL), 0);
	want = kiln_strdupf("%s/p.sh", sub);
	assert_string_equal(t->provisioners[0].scripts[0], want);
	free(want);
	want = kiln_strdupf("%s/../app", sub);
	assert_string_equal(t->provisioners[1].source, want);
	free(want);
	kiln_template_free(t);
	assert_int_equal(chdir(cwd), 0);
	free(path);
	free(sub);
}

static void test_sha256(void **state)
{
	kiln_template *t = NULL;
	const char text[] = GOOD_HEAD "  \"ssh_port\": 22\n}\n";
	(void)state;
	assert_int_equal(kiln_template_parse(&t, "x.json", text, strlen(text), NULL), 0);
	/* sha256sum of the same bytes, computed outside */
	{
		char cmd[] = "printf '%s' \"$T\" | sha256sum";
		FILE *p;
		char line[128] = "";
		setenv("T", text, 1);
		p = popen(cmd, "r");
		assert_non_null(p);
		assert_non_null(fgets(line, sizeof(line), p));
		pclose(p);
		line[64] = '\0';
		assert_string_equal(t->sha256, line);
	}
	kiln_template_free(t);
}

static void test_web_image_validates(void **state)
{
	kiln_template *t = NULL;
	kiln_template_options opts = KILN_TEMPLATE_OPTIONS_INIT;
	(void)state;
	/* the seed image of the repository must always pass validate, for both clouds */
	assert_int_equal(kiln_template_load(&t, kiln_test_source_path("images/web/web.json"), &opts), 0);
	assert_string_equal(t->name, "web");
	assert_true(t->has_aws_block && t->has_local_block);
	assert_true(t->n_provisioners >= 3);
	kiln_template_free(t);
	opts.provider = "local";
	assert_int_equal(kiln_template_load(&t, kiln_test_source_path("images/web/web.json"), &opts), 0);
	assert_string_equal(t->provider, "local");
	kiln_template_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_good_template, setup, teardown),
		cmocka_unit_test_setup_teardown(test_provider_precedence, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_keys_and_types, setup, teardown),
		cmocka_unit_test_setup_teardown(test_aws_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_aws_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_required, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_cidrs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_variables, setup, teardown),
		cmocka_unit_test_setup_teardown(test_var_precedence, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_provisioners, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_file_and_syntax, setup, teardown),
		cmocka_unit_test_setup_teardown(test_paths_relative_to_template, setup, teardown),
		cmocka_unit_test(test_sha256),
		cmocka_unit_test(test_web_image_validates),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
