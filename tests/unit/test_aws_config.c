/*
 * test_aws_config: every precedence rule of aws/config.h, with temporary
 * shared files and a scrubbed environment (HOME points at a temp dir, so
 * the real ~/.aws of whoever runs the tests is never read).
 */
#include <sys/stat.h>

#include "aws/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "tests/support/test.h"

static const char *const aws_vars[] = {
	"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
	"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
	"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2",
	"AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2", "AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING",
	"AWS_ENDPOINT_URL_SSM", "AWS_ENDPOINT_URL_STS", "AWS_CA_BUNDLE",
	"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
	"AWS_ROLE_SESSION_NAME", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
	"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_EC2_METADATA_SERVICE_ENDPOINT",
	"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "AWS_METADATA_SERVICE_TIMEOUT",
	"AWS_METADATA_SERVICE_NUM_ATTEMPTS",
};

typedef struct fixture {
	char *home;
	char *creds_path;  /* $HOME/.aws/credentials */
	char *config_path; /* $HOME/.aws/config */
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	char *dir;
	size_t i;

	for (i = 0; i < KILN_ARRAY_SIZE(aws_vars); i++)
		unsetenv(aws_vars[i]);
	/* the chain's last resort is 169.254.169.254: tests talk to loopback only */
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	f->home = kiln_test_mktmp();
	setenv("HOME", f->home, 1);
	dir = kiln_strdupf("%s/.aws", f->home);
	assert_int_equal(kiln_mkdir_p(dir, 0700), 0);
	f->creds_path = kiln_strdupf("%s/credentials", dir);
	f->config_path = kiln_strdupf("%s/config", dir);
	free(dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	kiln_test_rmtmp(f->home);
	free(f->creds_path);
	free(f->config_path);
	free(f);
	return 0;
}

static void write_file(const char *path, const char *text)
{
	assert_int_equal(kiln_write_file_atomic(path, text, strlen(text), 0600), 0);
}

static void load_ok(kiln_aws_config *cfg, const char *region)
{
	if (kiln_aws_config_load(cfg, region) < 0)
		fail_msg("config load: %s", kiln_error_last()->message);
}

static void set_env_keys(void)
{
	setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
}

/* ---- credentials ------------------------------------------------------- */

static void test_env_credentials_win(void **state)
{
	fixture *f = *state;
	kiln_aws_config cfg;

	write_file(f->creds_path, "[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = filesecret\n");
	set_env_keys();
	setenv("AWS_SESSION_TOKEN", "envtoken", 1);
	setenv("AWS_REGION", "us-east-1", 1);
	load_ok(&cfg, NULL);
	assert_string_equal(cfg.credentials.access_key_id, "AKIDENV");
	assert_string_equal(cfg.credentials.secret_access_key, "envsecret");
	assert_string_equal(cfg.credentials.session_token, "envtoken");
	assert_string_equal(cfg.credentials.source, "environment");
	assert_string_equal(cfg.profile, "default");
	kiln_aws_config_release(&cfg);

	/* the older token name still counts; an empty variable is an unset one */
	unsetenv("AWS_SESSION_TOKEN");
	setenv("AWS_SECURITY_TOKEN", "oldtoken", 1);
	load_ok(&cfg, NULL);
	assert_string_equal(cfg.credentials.session_token, "oldtoken");
	kiln_aws_config_release(&cfg);
	unsetenv("AWS_SECURITY_TOKEN");
	setenv("AWS_SESSION_TOKEN", "", 1);
	load_ok(&cfg, NULL);
	assert_null(cfg.credentials.session_token);
	kiln_aws_config_release(&cfg);

	/* both keys empty: the file's keys */
	setenv("AWS_ACCESS_KEY_ID", "", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "", 1);
	load_ok(&cfg, NULL);
	assert_string_equal(cfg.credentials.access_key_id, "AKIDFILE");
	kiln_aws_config_release(&cfg);
}

static void test_env_credentials_partial(void **state)
{
	kiln_aws_config cfg;
	(void)state;
	setenv("AWS_REGION", "us-east-1", 1);
	setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
	assert_error(kiln_aws_config_load(&cfg, NULL), KILN_EINVALID,
		     "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
	assert_null(cfg.profile); /* on failure nothing is held */
	unsetenv("AWS_ACCESS_KEY_ID");
	setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
	assert_error(kiln_aws_config_load(&cfg, NULL), KILN_EINVALID,
		     "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not");
}

static void test_profile_credentials(void **state)
{
	fixture *f = *state;
	kiln_aws_config cfg;

	write_file(f->creds_path,
		   "# kiln test\n"
		   "[default]\n"
		   "aws_access_key_id=AKIDDEFAULT\n"
		   "aws_secret_access_key=defaultsecret\n"
		   "\n"
		   "[web]\n"
		   "  aws_access_key_id   =   AKIDWEB   \n"
		   "aws_secret_access_key = websecret ; inline comment\n"
		   "aws_session_token = webtoken\n"
		   "[profile web]\n" /* in the credentials file this is a profile named "profile web" */
		   "aws_access_key_id = WRONG\n"
		   "aws_secret_access_key = WRONG\n");
	write_file(f->config_path, "[default]\nregion = eu-west-1\n[profile web]\nregion = eu-central-1\n");

	load_ok(&cfg, NULL);
	assert_string_equal(cfg.credentials.access_key_id, "AKIDDEFAULT");
	assert_null(cfg.credentials.session_token);
	assert_string_equal(cfg.credentials.source, "profile default (credentials file)");
	assert_string_equal(cfg.region, "eu-west-1");
	kiln_aws_config_release(&cfg);

	setenv("AWS_PROFILE", "web", 1);
	load_ok(&cfg, NULL);
	assert_string_equal(cfg.profile, "web");
	assert_string_equal(cfg.credentials.access_key_id, "AKIDWEB");
	assert_string_equal(cfg.credentials.secret_access_key, "websecret");
	assert_string_equal(cfg.credentials.session_token, "webtoken");
	assert_string_equal(cfg.credentials.source, "profile web (credentials file)");
	assert_string_equal(cfg.region, "eu-central-1");
	kiln_aws_config_release(&cfg);
}

static void test_config_file_credentials(void **state)
{
	fixture *f = *state;
	kiln_aws_config cfg;

	/* keys only in the config file, under "[profile NAME]" */
	write_file(f->config_path,
		   "[profile ci]\r\n"
		   "region = us-west-2\r\n"
		   "aws_access_key_id = AKIDCONFIG\r\n"
		   "aws_secret_access_key = configsecret\r\n");
	setenv("AWS_PROFILE", "ci", 1);
	load_ok(&cfg, NULL);
	assert_string_equal(cfg.credentials.access_key_id, "AKIDCONFIG");
	assert_string_equal(cfg.credentials.secret_access_key, "configsecret");
	assert_string_equal(cfg.credentials.source, "profile ci (config file)");
	assert_string_equal(cfg.region, "us-west-2");
	kiln_aws_config_release(&cfg);

	/* the credentials file wins over the config file, key and setting alike */
	write_file(f->creds_path, "[ci]\naws_access_key_id = AKIDCREDS\naws_secret_access_key = credssecret\nregion = sa-east-1\n");
	load_ok(&cfg, NULL);
	assert_string_equal(cfg.credentials.access_key_id, "AKIDCREDS");
	assert_string_equal(cfg.credentials.source, "profile ci (credentials file)");
	assert_string_equal(cfg.region, "sa-east-1");
	kiln_aws_config_release(&cfg);
}

static void test_file_locations(void **state)
{
	fixture *f = *state;
	kiln_aws_config cfg;
	char *creds = kiln_strdupf("%s/other-creds", f->home);
	char *config = kiln_strdupf("%s/other-config", f->home);

	write_file(f->creds_path, "[default]\naws_access_key_id = AKIDHOME\naws_secret_access_key = s\n");
	write_file(f->config_path, "[default]\nregion = eu-west-1\n");
	write_file(creds, "[default]\naws_access_key_id = AKIDOTHER\naws_secret_access_key = s\n");
	write_file(config, "[profile default]\nregion = ap-south-1\n");

	load_ok(&cfg, NULL);
	assert_string_equal(cfg.credentials.access_key_id, "AKIDHOME");
	assert_string_equal(cfg.region, "eu-west-1");
	kiln_aws_config_release(&cfg);

	setenv("AWS_SHARED_CREDENTIALS_FILE", creds, 1);
	setenv("AWS_CONFIG_FILE", config, 1);
	load_ok(&cfg, NULL);
	assert_string_equal(cfg.credentials.access_key_id, "AKIDOTHER");
	/* "[profile default]" is the default profile too */
	assert_string_equal(cfg.region, "ap-south-1");
	kiln_aws_config_release(&cfg);

	/* "~/" in the variables is the home directory */
	setenv("AWS_SHARED_CREDENTIALS_FILE", "~/other-creds", 1);
	load_ok(&cfg, NULL);
	assert_string_equal(cfg.credentials.access_key_id, "AKIDOTHER");
	kiln_aws_config_release(&cfg);
	free(creds);
	free(config);
}

static void test_missing_credentials(void **state)
{
	fixture *f = *state;
	kiln_aws_config cfg;
	const kiln_error *e;

	setenv("AWS_REGION", "us-east-1", 1);
	assert_error(kiln_aws_config_load(&cfg, NULL), KILN_EINVALID,
		     "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE");
	e = kiln_error_last();
	assert_null(strchr(e->message, '\n'));
	assert_non_null(strstr(e->message, "profile 'default' has none"));
	assert_null(cfg.region);

	/* a profile with settings but no keys is no credentials either */
	write_file(f->config_path, "[default]\nregion = eu-west-1\n");
	assert_error(kiln_aws_config_load(&cfg, NULL), KILN_EINVALID, "no AWS credentials");

	/* half a key pair in a file: named, and the secret half never quoted */
	write_file(f->creds_path, "[default]\naws_secret_access_key = do-not-print-me\n");
	assert_error(kiln_aws_config_load(&cfg, NULL), KILN_EINVALID,
		     "has aws_secret_access_key but not aws_access_key_id");
	assert_null(strstr(kiln_error_last()->message, "do-not-print-me"));
}

static void test_unknown_profile(void **state)
{
	fixture *f = *state;
	kiln_aws_config cfg;

	write_file(f->creds_path, "[default]\naws_access_key_id = A\naws_secret_access_key = s\n");
	setenv("AWS_PROFILE", "nope", 1);
	setenv("AWS_REGION", "us-east-1", 1);
	/* even with keys in the environment: a named profile that is nowhere is a typo */
	set_env_keys();
	assert_error(kiln_aws_config_load(&cfg, NULL), KILN_EINVALID, "AWS_PROFILE names profile 'nope'");
}

static void test_ini_syntax(void **state)
{
	fixture *f = *state;
	kiln_aws_config cfg;

	write_file(f->config_path,
		   "; a comment\n"
		   "   # an indented comment\n"
		   "[  profile    dev  ]   \n"
		   "REGION = eu-north-1   # where dev lives\n"
		   "s3 =\n"
		   "  max_concurrent_requests = 10\n"
		   "ec2 =\n"
		   "  endpoint_url = http://nested.invalid:1\n"
		   "\tregion = xx-nested-1\n"
		   "Aws_Access_Key_Id = AKIDDEV\n"
		   "aws_secret_access_key = a#b;c\n"
		   "aws_secret_access_key = later#wins\n"
		   "[services dev]\n"
		   "endpoint_url = http://services.invalid:2\n");
	setenv("AWS_PROFILE", "dev", 1);
	load_ok(&cfg, NULL);
	assert_string_equal(cfg.region, "eu-north-1");
	assert_string_equal(cfg.credentials.access_key_id, "AKIDDEV");
	/* '#' and ';' inside a value (no white space before them) are the value */
	assert_string_equal(cfg.credentials.secret_access_key, "later#wins");
	/* neither the nested setting nor another section's leaks in */
	assert_string_equal(cfg.endpoints[KILN_AWS_EC2], "https://ec2.eu-north-1.amazonaws.com");
	kiln_aws_config_release(&cfg);

	write_file(f->config_path, "[profile dev]\naws_access_key_id = AKIDDEV\nthis line holds a secret\n");
	assert_error(kiln_aws_config_load(&cfg, NULL), KILN_EINVALID, "config:3: expected 'key = value'");
	assert_null(strstr(kiln_error_last()->message, "secret"));
	write_file(f->config_path, "[profile dev\n");
	assert_error(kiln_aws_config_load(&cfg, NULL), KILN_EINVALID, "config:1: section header without ']'");
	write_file(f->config_path, "region = us-east-1\n");
	assert_error(kiln_aws_config_load(&cfg, NULL), KILN_EINVALID, "config:1: setting outside any [section]");
}

/* The same resolution from texts in memory: the files on disk are not read. */
static void test_load_text(void **state)
{
	fixture *f = *state;
	kiln_aws_config cfg;
	const char *creds = "[web]\naws_access_key_id = AKIDTEXT\naws_secret_access_key = textsecret\n";
	const char *config = "[profile web]\nregion = eu-west-3\nendpoint_url = http://127.0.0.1:5000/\n";
	kiln_view none = { NULL, 0 };

	write_file(f->creds_path, "[web]\naws_access_key_id = AKIDDISK\naws_secret_access_key = disk\n");
	write_file(f->config_path, "[profile web]\nregion = us-west-2\n");
	setenv("AWS_PROFILE", "web", 1);
	if (kiln_aws_config_load_text(&cfg, NULL, kiln_view_of(creds), kiln_view_of(config)) < 0)
		fail_msg("load_text: %s", kiln_error_last()->message);
	assert_string_equal(cfg.credentials.access_key_id, "AKIDTEXT");
	assert_string_equal(cfg.credentials.source, "profile web (credentials file)");
	assert_string_equal(cfg.region, "eu-west-3");
	assert_string_equal(cfg.endpoints[KILN_AWS_SSM], "http://127.0.0.1:5000");
	kiln_aws_config_release(&cfg);

	/* no credentials file: the config file's keys; texts need no NUL at their end */
	config = "[profile web]\naws_access_key_id=AKIDCONF\naws_secret_access_key=c\nregion=ap-south-1\n"
		 "this tail is not part of the text";
	if (kiln_aws_config_load_text(&cfg, NULL, none,
				      (kiln_view){ config, strstr(config, "this") - config }) < 0)
		fail_msg("load_text: %s", kiln_error_last()->message);
	assert_string_equal(cfg.credentials.access_key_id, "AKIDCONF");
	assert_string_equal(cfg.credentials.source, "profile web (config file)");
	kiln_aws_config_release(&cfg);

	/* neither file: the profile is nowhere, and messages still name the paths */
	assert_error(kiln_aws_config_load_text(&cfg, NULL, none, none), KILN_EINVALID,
		     "AWS_PROFILE names profile 'web', which is in neither");
	assert_non_null(strstr(kiln_error_last()->message, "/.aws/credentials"));
	assert_error(kiln_aws_config_load_text(&cfg, NULL, kiln_view_of("[web]\nregion\n"), none),
		     KILN_EINVALID, "credentials:2: expected 'key = value'");
}

/* ---- region ------------------------------------------------------------ */

static void test_region_chain(void **state)
{
	fixture *f = *state;
	kiln_aws_config cfg;

	set_env_keys();
	write_file(f->config_path, "[default]\nregion = eu-west-3\n");
	load_ok(&cfg, NULL);
	assert_string_equal(cfg.region, "eu-west-3");
	kiln_aws_config_release(&cfg);

	setenv("AWS_DEFAULT_REGION", "eu-west-2", 1);
	load_ok(&cfg, NULL);
	assert_string_equal(cfg.region, "eu-west-2");
	kiln_aws_config_release(&cfg);

	setenv("AWS_REGION", "eu-west-1", 1);
	load_ok(&cfg, NULL);
	assert_string_equal(cfg.region, "eu-west-1");
	kiln_aws_config_release(&cfg);

	/* the file being run names where its fleet lives: it wins over all */
	load_ok(&cfg, "ap-northeast-1");
	assert_string_equal(cfg.region, "ap-northeast-1");
	kiln_aws_config_release(&cfg);
	load_ok(&cfg, ""); /* an empty one is none */
	assert_string_equal(cfg.region, "eu-west-1");
	kiln_aws_config_release(&cfg);

	assert_error(kiln_aws_config_load(&cfg, "us-east-1.evil.com/"), KILN_EINVALID,
		     "region 'us-east-1.evil.com/' (from the file's \"region\") is not a region name");
	setenv("AWS_REGION", "US_EAST_1", 1);
	assert_error(kiln_aws_config_load(&cfg, NULL), KILN_EINVALID, "(from AWS_REGION)");
}

static void test_missing_region(void **state)
{
	kiln_aws_config cfg;
	const kiln_error *e;
	(void)state;

	set_env_keys();
	assert_error(kiln_aws_config_load(&cfg, NULL), KILN_EINVALID, "no AWS region: set AWS_REGION");
	e = kiln_error_last();
	assert_null(strchr(e->message, '\n'));
	assert_null(cfg.profile);
	assert_null(cfg.credentials.access_key_id);
}

/* ---- endpoints and TLS -------------------------------------------------- */

static void test_endpoint_chain(void **state)
{
	fixture *f = *state;
	kiln_aws_config cfg;
	int i;

	set_env_keys();
	setenv("AWS_REGION", "us-east-2", 1);
	load_ok(&cfg, NULL);
	assert_string_equal(cfg.endpoints[KILN_AWS_EC2], "https://ec2.us-east-2.amazonaws.com");
	assert_string_equal(cfg.endpoints[KILN_AWS_ELBV2], "https://elasticloadbalancing.us-east-2.amazonaws.com");
	assert_string_equal(cfg.endpoints[KILN_AWS_ELB], "https://elasticloadbalancing.us-east-2.amazonaws.com");
	assert_string_equal(cfg.endpoints[KILN_AWS_SSM], "https://ssm.us-east-2.amazonaws.com");
	assert_string_equal(cfg.endpoints[KILN_AWS_STS], "https://sts.us-east-2.amazonaws.com");
	assert_null(cfg.ca_bundle);
	kiln_aws_config_release(&cfg);

	load_ok(&cfg, "cn-north-1");
	assert_string_equal(cfg.endpoints[KILN_AWS_EC2], "https://ec2.cn-north-1.amazonaws.com.cn");
	kiln_aws_config_release(&cfg);

	/* the profile's endpoint_url, for every service */
	write_file(f->config_path, "[default]\nendpoint_url = http://127.0.0.1:5001/\nca_bundle = ~/ca.pem\n");
	load_ok(&cfg, NULL);
	for (i = 0; i < KILN_AWS_SERVICE_COUNT; i++)
		assert_string_equal(cfg.endpoints[i], "http://127.0.0.1:5001");
	{
		char *want = kiln_strdupf("%s/ca.pem", f->home);
		assert_string_equal(cfg.ca_bundle, want);
		free(want);
	}
	kiln_aws_config_release(&cfg);

	/* AWS_ENDPOINT_URL beats the profile */
	setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000", 1);
	setenv("AWS_CA_BUNDLE", "/etc/kiln/ca.pem", 1);
	load_ok(&cfg, NULL);
	for (i = 0; i < KILN_AWS_SERVICE_COUNT; i++)
		assert_string_equal(cfg.endpoints[i], "http://127.0.0.1:5000");
	assert_string_equal(cfg.ca_bundle, "/etc/kiln/ca.pem");
	kiln_aws_config_release(&cfg);

	/* a service's own variable beats both */
	setenv("AWS_ENDPOINT_URL_EC2", "http://127.0.0.1:6000", 1);
	setenv("AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2", "http://127.0.0.1:6001", 1);
	setenv("AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING", "http://127.0.0.1:6002", 1);
	setenv("AWS_ENDPOINT_URL_SSM", "https://ssm.example.test:6003/", 1);
	setenv("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:6004", 1);
	load_ok(&cfg, NULL);
	assert_string_equal(cfg.endpoints[KILN_AWS_EC2], "http://127.0.0.1:6000");
	assert_string_equal(cfg.endpoints[KILN_AWS_ELBV2], "http://127.0.0.1:6001");
	assert_string_equal(cfg.endpoints[KILN_AWS_ELB], "http://127.0.0.1:6002");
	assert_string_equal(cfg.endpoints[KILN_AWS_SSM], "https://ssm.example.test:6003");
	assert_string_equal(cfg.endpoints[KILN_AWS_STS], "http://127.0.0.1:6004");
	kiln_aws_config_release(&cfg);

	unsetenv("AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2");
	load_ok(&cfg, NULL);
	assert_string_equal(cfg.endpoints[KILN_AWS_ELBV2], "http://127.0.0.1:5000");
	kiln_aws_config_release(&cfg);

	/* the SDKs' switch that turns every configured endpoint off */
	setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true", 1);
	load_ok(&cfg, NULL);
	for (i = 0; i < KILN_AWS_SERVICE_COUNT; i++)
		assert_non_null(strstr(cfg.endpoints[i], ".us-east-2.amazonaws.com"));
	kiln_aws_config_release(&cfg);
	unsetenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");

	setenv("AWS_ENDPOINT_URL_SSM", "127.0.0.1:5000", 1);
	assert_error(kiln_aws_config_load(&cfg, NULL), KILN_EINVALID,
		     "AWS_ENDPOINT_URL_SSM '127.0.0.1:5000' is not an http:// or https:// url");
	setenv("AWS_ENDPOINT_URL_SSM", "http://", 1);
	assert_error(kiln_aws_config_load(&cfg, NULL), KILN_EINVALID, "is not a url kiln can use");
	/* a control character is refused, and the message does not carry it */
	setenv("AWS_ENDPOINT_URL_SSM", "http://\x05", 1);
	assert_error(kiln_aws_config_load(&cfg, NULL), KILN_EINVALID,
		     "AWS_ENDPOINT_URL_SSM is not a url kiln can use: it holds a control character");
	setenv("AWS_ENDPOINT_URL_SSM", "http://a\nb", 1);
	assert_error(kiln_aws_config_load(&cfg, NULL), KILN_EINVALID, "holds a control character");
	assert_null(strchr(kiln_error_last()->message, '\n'));
}

static void test_service_names(void **state)
{
	(void)state;
	assert_string_equal(kiln_aws_service_signing_name(KILN_AWS_EC2), "ec2");
	assert_string_equal(kiln_aws_service_signing_name(KILN_AWS_ELBV2), "elasticloadbalancing");
	assert_string_equal(kiln_aws_service_signing_name(KILN_AWS_ELB), "elasticloadbalancing");
	assert_string_equal(kiln_aws_service_signing_name(KILN_AWS_SSM), "ssm");
	assert_string_equal(kiln_aws_service_signing_name(KILN_AWS_STS), "sts");
	assert_null(kiln_aws_service_signing_name(KILN_AWS_SERVICE_COUNT));
	assert_string_equal(kiln_aws_service_env_suffix(KILN_AWS_ELBV2), "ELASTIC_LOAD_BALANCING_V2");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_env_credentials_win, setup, teardown),
		cmocka_unit_test_setup_teardown(test_env_credentials_partial, setup, teardown),
		cmocka_unit_test_setup_teardown(test_profile_credentials, setup, teardown),
		cmocka_unit_test_setup_teardown(test_config_file_credentials, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_locations, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_credentials, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_profile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ini_syntax, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_text, setup, teardown),
		cmocka_unit_test_setup_teardown(test_region_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_region, setup, teardown),
		cmocka_unit_test_setup_teardown(test_endpoint_chain, setup, teardown),
		cmocka_unit_test(test_service_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
