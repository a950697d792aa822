/*
 * test_aws_credentials: the credential chain (aws/config.c's choice, in the
 * AWS CLI's order) and its sources (aws/credentials.c, aws/imds.c,
 * aws/sts.c), with the transport seam: the exact AssumeRole,
 * AssumeRoleWithWebIdentity and IMDSv2 requests, refreshes on the virtual
 * clock, the disk cache, credential_process runs and its JSON's errors.
 * HOME, the state directory and the shared files are temporary; nothing
 * leaves the process but the credential processes it runs.
 */
#include <sys/stat.h>

#include "aws/credentials.h"
#include "aws/imds.h"
#include "aws/sts.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/fs.h"
#include "tests/support/awsmock.h"
#include "tests/support/test.h"

/* 2026-11-25T21:52:12Z */
#define T0_MS 1795643532000LL
#define T0 (T0_MS / 1000)

static const char *const aws_vars[] = {
	"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
	"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
	"AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2",
	"AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING", "AWS_ENDPOINT_URL_SSM", "AWS_ENDPOINT_URL_STS",
	"AWS_CA_BUNDLE", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_WEB_IDENTITY_TOKEN_FILE",
	"AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
	"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_EC2_METADATA_SERVICE_ENDPOINT",
	"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "AWS_METADATA_SERVICE_TIMEOUT",
	"AWS_METADATA_SERVICE_NUM_ATTEMPTS", "AWS_MAX_ATTEMPTS",
};

static kiln_awsmock mock;
static char *tmp, *creds_path, *config_path;
static kiln_buf events_text;

static void capture(void *ctx, const kiln_event *ev)
{
	(void)ctx;
	kiln_buf_printf(&events_text, "%s %s\n", ev->name, ev->message);
}

static const kiln_events sink = { capture, NULL };

static int setup(void **state)
{
	size_t i;
	char *dir;
	(void)state;
	for (i = 0; i < KILN_ARRAY_SIZE(aws_vars); i++)
		unsetenv(aws_vars[i]);
	tmp = kiln_test_mktmp();
	setenv("HOME", tmp, 1);
	dir = kiln_strdupf("%s/state", tmp);
	setenv("KILN_STATE_DIR", dir, 1);
	free(dir);
	creds_path = kiln_strdupf("%s/credentials", tmp);
	config_path = kiln_strdupf("%s/config", tmp);
	setenv("AWS_SHARED_CREDENTIALS_FILE", creds_path, 1);
	setenv("AWS_CONFIG_FILE", config_path, 1);
	/* loopback only: the instance metadata service is the mock's, when a test wants it */
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	setenv("AWS_REGION", "us-east-1", 1);
	setenv("KILN_AWS_RATE_LIMIT", "off", 1);
	setenv("AWS_MAX_ATTEMPTS", "1", 1);
	kiln_test_clock_install(T0_MS);
	kiln_awsmock_init(&mock);
	kiln_buf_init(&events_text, 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	kiln_awsmock_release(&mock);
	kiln_buf_release(&events_text);
	kiln_test_clock_uninstall();
	kiln_test_rmtmp(tmp);
	free(creds_path);
	free(config_path);
	kiln_cancel_reset();
	return 0;
}

static void write_file(const char *path, const char *text)
{
	assert_int_equal(kiln_write_file_atomic(path, text, strlen(text), 0600), 0);
}

static int load(kiln_aws_config *cfg)
{
	kiln_aws_load_options o = KILN_AWS_LOAD_OPTIONS_INIT;
	o.transport = &mock.transport;
	o.events = &sink;
	return kiln_aws_config_load_ex(cfg, NULL, &o);
}

static void load_ok(kiln_aws_config *cfg)
{
	if (load(cfg) < 0)
		fail_msg("load: %s", kiln_error_last()->message);
}

static void resolve_ok(kiln_aws_config *cfg)
{
	kiln_aws_load_options o = KILN_AWS_LOAD_OPTIONS_INIT;
	o.offline = true;
	if (kiln_aws_config_load_ex(cfg, NULL, &o) < 0)
		fail_msg("resolve: %s", kiln_error_last()->message);
}

static void resolve_fails(const char *needle)
{
	kiln_aws_load_options o = KILN_AWS_LOAD_OPTIONS_INIT;
	kiln_aws_config cfg;
	o.offline = true;
	assert_error(kiln_aws_config_load_ex(&cfg, NULL, &o), KILN_EINVALID, needle);
	assert_null(cfg.source);
}

/* An STS AssumeRole* reply with these keys, expiring at unix time expires. */
static void push_sts(const char *action, const char *key, const char *secret, int64_t expires)
{
	char at[21], body[1024];
	kiln_format_iso8601(at, expires);
	snprintf(body, sizeof(body),
		 "<%sResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><%sResult><Credentials>"
		 "<AccessKeyId>%s</AccessKeyId><SecretAccessKey>%s</SecretAccessKey>"
		 "<SessionToken>token-of-%s</SessionToken><Expiration>%s</Expiration></Credentials>"
		 "</%sResult><ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata></%sResponse>",
		 action, action, key, secret, key, at, action, action);
	kiln_awsmock_push(&mock, 200, body);
}

/* Signs one call with cfg's credentials; returns the mock request it became. */
static const kiln_mock_request *signed_call(const kiln_aws_config *cfg)
{
	kiln_aws_client_options o = KILN_AWS_CLIENT_OPTIONS_INIT;
	kiln_aws_client *c;
	kiln_identity id;
	o.transport = &mock.transport;
	o.max_attempts = 1;
	assert_int_equal(kiln_aws_client_new(&c, cfg, &o), 0);
	kiln_awsmock_push_file(&mock, 200, "sts-get-caller-identity.xml");
	memset(&id, 0, sizeof(id));
	if (kiln_sts_get_caller_identity(c, &id) < 0)
		fail_msg("call: %s", kiln_error_last()->message);
	kiln_aws_client_free(c);
	return kiln_awsmock_request(&mock, mock.n_requests - 1);
}

static void assert_signed_with(const kiln_mock_request *r, const char *key)
{
	char want[128];
	snprintf(want, sizeof(want), "Credential=%s/", key);
	if (!strstr(kiln_mock_header(r, "Authorization"), want))
		fail_msg("signed with %s, wanted %s", kiln_mock_header(r, "Authorization"), key);
}

/* ---- the chain's order (offline: which source, nothing fetched) ---------------------- */

static const char role_profiles[] =
	"[profile dev]\n"
	"role_arn = arn:aws:iam::123456789012:role/dev\n"
	"source_profile = base\n"
	"[profile base]\n"
	"aws_access_key_id = AKIABASE\n"
	"aws_secret_access_key = basesecret\n";

static void test_chain_order(void **state)
{
	kiln_aws_config cfg;
	(void)state;

	/* 1. the environment's keys win over everything */
	write_file(config_path, role_profiles);
	setenv("AWS_PROFILE", "dev", 1);
	setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent/token", 1);
	setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/ci", 1);
	setenv("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
	resolve_ok(&cfg);
	assert_int_equal(cfg.source->kind, KILN_AWS_SOURCE_STATIC);
	assert_string_equal(cfg.credentials.source, "environment");
	kiln_aws_config_release(&cfg);

	/* 2. then the profile's role (before web identity, as botocore orders them) */
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	resolve_ok(&cfg);
	assert_int_equal(cfg.source->kind, KILN_AWS_SOURCE_ASSUME_ROLE);
	assert_string_equal(cfg.credentials.source,
			    "assume-role arn:aws:iam::123456789012:role/dev via profile dev");
	assert_int_equal(cfg.source->from->kind, KILN_AWS_SOURCE_STATIC);
	assert_string_equal(cfg.source->from->keys.access_key_id, "AKIABASE");
	/* nothing fetched offline: no keys, no provider */
	assert_null(cfg.provider);
	assert_null(cfg.credentials.access_key_id);
	kiln_aws_config_release(&cfg);

	/* 3. then web identity, before the profile's own keys */
	setenv("AWS_PROFILE", "base", 1);
	resolve_ok(&cfg);
	assert_int_equal(cfg.source->kind, KILN_AWS_SOURCE_WEB_IDENTITY);
	assert_string_equal(cfg.credentials.source,
			    "web identity arn:aws:iam::123456789012:role/ci (AWS_WEB_IDENTITY_TOKEN_FILE)");
	assert_string_equal(cfg.source->token_file, "/nonexistent/token");
	kiln_aws_config_release(&cfg);
	unsetenv("AWS_WEB_IDENTITY_TOKEN_FILE");
	unsetenv("AWS_ROLE_ARN");

	/* 5-7. the credentials file's keys, then credential_process, then the config file's keys */
	write_file(config_path, "[profile p]\ncredential_process = /bin/helper --json\n"
				"aws_access_key_id = AKIACONFIG\naws_secret_access_key = c\n");
	write_file(creds_path, "[p]\naws_access_key_id = AKIACREDS\naws_secret_access_key = s\n");
	setenv("AWS_PROFILE", "p", 1);
	resolve_ok(&cfg);
	assert_string_equal(cfg.credentials.access_key_id, "AKIACREDS");
	kiln_aws_config_release(&cfg);
	write_file(creds_path, "");
	resolve_ok(&cfg);
	assert_int_equal(cfg.source->kind, KILN_AWS_SOURCE_PROCESS);
	assert_string_equal(cfg.source->command, "/bin/helper --json");
	assert_string_equal(cfg.credentials.source, "credential_process of profile p");
	kiln_aws_config_release(&cfg);
	write_file(config_path, "[profile p]\naws_access_key_id = AKIACONFIG\naws_secret_access_key = c\n");
	resolve_ok(&cfg);
	assert_string_equal(cfg.credentials.source, "profile p (config file)");
	kiln_aws_config_release(&cfg);

	/* 9. nothing: the instance metadata service, unless it is disabled */
	write_file(config_path, "[profile p]\nregion = eu-west-1\n");
	resolve_fails("no AWS credentials");
	unsetenv("AWS_EC2_METADATA_DISABLED");
	resolve_ok(&cfg);
	assert_int_equal(cfg.source->kind, KILN_AWS_SOURCE_IMDS);
	assert_string_equal(cfg.credentials.source, "instance profile (IMDSv2)");
	assert_string_equal(cfg.imds.endpoint, "http://169.254.169.254");
	assert_int_equal(cfg.imds.timeout_ms, 1000);
	assert_int_equal(cfg.imds.attempts, 2);
	assert_null(cfg.notes);
	kiln_aws_config_release(&cfg);

	/* 8. ECS container credentials are skipped, and that is said */
	setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/x", 1);
	resolve_ok(&cfg);
	assert_int_equal(cfg.source->kind, KILN_AWS_SOURCE_IMDS);
	assert_non_null(strstr(cfg.notes, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is set, but kiln does not read ECS"));
	assert_string_equal(cfg.credentials.source, "instance profile (IMDSv2); ECS container credentials skipped");
	kiln_aws_config_release(&cfg);
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	resolve_fails("ECS container credentials");
}

static void test_imds_settings(void **state)
{
	kiln_aws_config cfg;
	(void)state;
	write_file(config_path, "[default]\naws_access_key_id = A\naws_secret_access_key = s\n"
				"ec2_metadata_service_endpoint_mode = IPv6\nmetadata_service_timeout = 3\n");
	resolve_ok(&cfg);
	assert_string_equal(cfg.imds.endpoint, "http://[fd00:ec2::254]");
	assert_int_equal(cfg.imds.timeout_ms, 3000);
	kiln_aws_config_release(&cfg);
	setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:8111/", 1);
	setenv("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "1", 1);
	resolve_ok(&cfg);
	assert_string_equal(cfg.imds.endpoint, "http://127.0.0.1:8111");
	assert_int_equal(cfg.imds.attempts, 1);
	kiln_aws_config_release(&cfg);
	setenv("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "lots", 1);
	resolve_fails("metadata_service_num_attempts 'lots'");
}

static void test_role_configuration_errors(void **state)
{
	kiln_aws_config cfg;
	(void)state;
	setenv("AWS_PROFILE", "r", 1);

	write_file(config_path, "[profile r]\nrole_arn = arn:aws:iam::1:role/x\n");
	resolve_fails("neither source_profile nor credential_source");
	write_file(config_path, "[profile r]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = a\n"
				"credential_source = Environment\n");
	resolve_fails("both source_profile and credential_source");
	write_file(config_path, "[profile r]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = gone\n");
	resolve_fails("names source_profile 'gone', which is in neither");
	write_file(config_path, "[profile r]\nrole_arn = not-an-arn\nsource_profile = r\n");
	resolve_fails("role_arn is not a role ARN");
	write_file(config_path, "[profile r]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = b\nmfa_serial = arn:aws:iam::1:mfa/me\n"
				"[profile b]\naws_access_key_id = A\naws_secret_access_key = s\n");
	resolve_fails("has mfa_serial, which is not supported");
	write_file(config_path, "[profile r]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = b\nduration_seconds = 60\n"
				"[profile b]\naws_access_key_id = A\naws_secret_access_key = s\n");
	resolve_fails("duration_seconds must be a number of seconds from 900 to 43200");
	write_file(config_path, "[profile r]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = b\nrole_session_name = has space\n"
				"[profile b]\naws_access_key_id = A\naws_secret_access_key = s\n");
	resolve_fails("role_session_name may hold only");
	/* a loop of roles */
	write_file(config_path, "[profile r]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = s\n"
				"[profile s]\nrole_arn = arn:aws:iam::1:role/y\nsource_profile = r\n");
	resolve_fails("source_profile 'r' makes a loop");
	/* a source profile with nothing */
	write_file(config_path, "[profile r]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = e\n[profile e]\nregion = eu-west-1\n");
	resolve_fails("source_profile 'e' of profile 'r' has no credentials");
	/* credential_source */
	write_file(config_path, "[profile r]\nrole_arn = arn:aws:iam::1:role/x\ncredential_source = EcsContainer\n");
	resolve_fails("kiln does not read ECS container credentials");
	write_file(config_path, "[profile r]\nrole_arn = arn:aws:iam::1:role/x\ncredential_source = Environment\n");
	resolve_fails("credential_source Environment but AWS_ACCESS_KEY_ID");
	write_file(config_path, "[profile r]\nrole_arn = arn:aws:iam::1:role/x\ncredential_source = Somewhere\n");
	resolve_fails("use Environment or Ec2InstanceMetadata");
	/* IAM Identity Center */
	write_file(config_path, "[profile r]\nsso_session = corp\nsso_account_id = 1\n");
	resolve_fails("uses IAM Identity Center (sso_*), which kiln does not support");
	/* web identity without a role */
	write_file(config_path, "[profile r]\nweb_identity_token_file = /t\n");
	resolve_fails("has web_identity_token_file but no role_arn");
	unsetenv("AWS_PROFILE");
	write_file(config_path, "");
	setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "/t", 1);
	resolve_fails("AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not");

	/* what works: a self-referencing source with keys, a chain, credential_source Environment */
	setenv("AWS_PROFILE", "r", 1);
	unsetenv("AWS_WEB_IDENTITY_TOKEN_FILE");
	write_file(config_path, "[profile r]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = r\n"
				"aws_access_key_id = AKIASELF\naws_secret_access_key = s\n");
	resolve_ok(&cfg);
	assert_int_equal(cfg.source->kind, KILN_AWS_SOURCE_ASSUME_ROLE);
	assert_string_equal(cfg.source->from->keys.access_key_id, "AKIASELF");
	kiln_aws_config_release(&cfg);
	write_file(config_path, "[profile r]\nrole_arn = arn:aws:iam::1:role/top\nsource_profile = mid\nexternal_id = ext-1\n"
				"role_session_name = me@corp\nduration_seconds = 900\n"
				"[profile mid]\nrole_arn = arn:aws:iam::1:role/mid\nsource_profile = base\n"
				"[profile base]\ncredential_process = helper\n");
	resolve_ok(&cfg);
	assert_string_equal(cfg.source->role_arn, "arn:aws:iam::1:role/top");
	assert_string_equal(cfg.source->external_id, "ext-1");
	assert_string_equal(cfg.source->session_name, "me@corp");
	assert_int_equal(cfg.source->duration_s, 900);
	assert_int_equal(cfg.source->from->kind, KILN_AWS_SOURCE_ASSUME_ROLE);
	assert_string_equal(cfg.source->from->role_arn, "arn:aws:iam::1:role/mid");
	assert_int_equal(cfg.source->from->from->kind, KILN_AWS_SOURCE_PROCESS);
	kiln_aws_config_release(&cfg);
	write_file(config_path, "[profile r]\nrole_arn = arn:aws:iam::1:role/x\ncredential_source = Environment\n");
	setenv("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
	/* the environment's keys are the chain's first link: the role is used only through credential_source */
	resolve_ok(&cfg);
	assert_int_equal(cfg.source->kind, KILN_AWS_SOURCE_STATIC);
	kiln_aws_config_release(&cfg);
}

/* ---- AssumeRole ---------------------------------------------------------------------------- */

static void test_assume_role_request(void **state)
{
	const kiln_mock_request *r;
	kiln_aws_config cfg;
	(void)state;
	write_file(creds_path, "[base]\naws_access_key_id = AKIABASE\naws_secret_access_key = " KILN_MOCK_SECRET "\n");
	write_file(config_path, "[profile dev]\nrole_arn = arn:aws:iam::123456789012:role/dev\nsource_profile = base\n"
				"external_id = ext-42\nrole_session_name = kiln-ci\nduration_seconds = 1800\n");
	setenv("AWS_PROFILE", "dev", 1);
	setenv("AWS_ENDPOINT_URL_STS", "https://sts.example.test", 1);
	push_sts("AssumeRole", "ASIAROLE1", "rolesecret1", T0 + 1800);
	load_ok(&cfg);
	assert_int_equal(mock.n_requests, 1);
	r = kiln_awsmock_request(&mock, 0);
	assert_string_equal(r->method, "POST");
	assert_string_equal(r->url, "https://sts.example.test/");
	assert_string_equal(r->body, "Action=AssumeRole&Version=2011-06-15"
				     "&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fdev"
				     "&RoleSessionName=kiln-ci&ExternalId=ext-42&DurationSeconds=1800");
	/* signed for STS with the source profile's keys */
	assert_signed_with(r, "AKIABASE");
	assert_non_null(strstr(kiln_mock_header(r, "Authorization"), "/us-east-1/sts/aws4_request"));
	assert_null(kiln_mock_header(r, "X-Amz-Security-Token"));
	assert_string_equal(cfg.credentials.source, "assume-role arn:aws:iam::123456789012:role/dev via profile dev");

	/* the role's keys sign what follows, with its session token */
	r = signed_call(&cfg);
	assert_signed_with(r, "ASIAROLE1");
	assert_string_equal(kiln_mock_header(r, "X-Amz-Security-Token"), "token-of-ASIAROLE1");
	assert_int_equal(mock.n_requests, 2);
	kiln_aws_config_release(&cfg);
}

static void test_assume_role_default_session_and_errors(void **state)
{
	kiln_aws_config cfg;
	const kiln_error *e;
	(void)state;
	write_file(config_path, "[profile dev]\nrole_arn = arn:aws:iam::123456789012:role/dev\nsource_profile = base\n"
				"[profile base]\naws_access_key_id = AKIABASE\naws_secret_access_key = " KILN_MOCK_SECRET "\n");
	setenv("AWS_PROFILE", "dev", 1);
	kiln_awsmock_push(&mock, 403,
			  "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
			  "<Message>User is not authorized to perform: sts:AssumeRole</Message></Error>"
			  "<RequestId>r-7</RequestId></ErrorResponse>");
	assert_error(load(&cfg), KILN_EAUTH,
		     "assume-role arn:aws:iam::123456789012:role/dev via profile dev: sts AssumeRole: "
		     "the credentials in use are not allowed to call sts:AssumeRole");
	e = kiln_error_last();
	assert_string_equal(e->cloud_code, "AccessDenied");
	assert_null(strstr(e->message, KILN_MOCK_SECRET));
	assert_null(cfg.provider);
	/* no role_session_name: kiln-<unix time>; no ExternalId, no DurationSeconds */
	assert_string_equal(kiln_mock_param(kiln_awsmock_request(&mock, 0), "RoleSessionName"), "kiln-1795643532");
	assert_null(kiln_mock_param(kiln_awsmock_request(&mock, 0), "ExternalId"));
	assert_null(kiln_mock_param(kiln_awsmock_request(&mock, 0), "DurationSeconds"));

	/* a reply without keys is an error that names the field, not a crash */
	kiln_awsmock_push(&mock, 200, "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>A</AccessKeyId>"
				      "</Credentials></AssumeRoleResult></AssumeRoleResponse>");
	assert_error(load(&cfg), KILN_ERROR, "sts AssumeRole: the STS reply's Credentials have no SecretAccessKey");
	/* keys that are already expired are refused */
	push_sts("AssumeRole", "ASIAOLD", "s", T0 - 10);
	assert_error(load(&cfg), KILN_EAUTH, "expired at 2026-11-25T21:52:02Z");
}

static void test_refresh_on_the_virtual_clock(void **state)
{
	const kiln_mock_request *r;
	kiln_aws_config cfg;
	kiln_aws_credentials k;
	(void)state;
	write_file(config_path, "[profile dev]\nrole_arn = arn:aws:iam::123456789012:role/dev\nsource_profile = base\n"
				"[profile base]\naws_access_key_id = AKIABASE\naws_secret_access_key = s\n");
	setenv("AWS_PROFILE", "dev", 1);
	push_sts("AssumeRole", "ASIAONE", "s1", T0 + 3600);
	load_ok(&cfg);
	assert_int_equal(mock.n_requests, 1);

	/* 301 s before the expiry: still the same keys, nothing asked */
	kiln_test_clock_advance((3600 - 301) * 1000);
	r = signed_call(&cfg);
	assert_signed_with(r, "ASIAONE");
	assert_int_equal(mock.n_requests, 2);

	/* 299 s before: fetched again before signing */
	kiln_test_clock_advance(2 * 1000);
	push_sts("AssumeRole", "ASIATWO", "s2", T0 + 2 * 3600);
	r = signed_call(&cfg);
	assert_int_equal(mock.n_requests, 4);
	assert_string_equal(kiln_mock_param(kiln_awsmock_request(&mock, 2), "Action"), "AssumeRole");
	assert_signed_with(kiln_awsmock_request(&mock, 2), "AKIABASE");
	assert_signed_with(r, "ASIATWO");

	/* a refresh that fails while the keys still work: a warning, and the old keys */
	kiln_test_clock_advance(3600 * 1000); /* ASIATWO has 299 s left */
	kiln_awsmock_push(&mock, 503, "<ErrorResponse><Error><Code>ServiceUnavailable</Code><Message>down</Message></Error></ErrorResponse>");
	r = signed_call(&cfg);
	assert_signed_with(r, "ASIATWO");
	assert_non_null(strstr(events_text.ptr, "warning cannot refresh the AWS credentials (they expire in 299 s)"));
	assert_int_equal(mock.n_requests, 6);
	/* and no new attempt for 30 s */
	kiln_test_clock_advance(20 * 1000);
	r = signed_call(&cfg);
	assert_int_equal(mock.n_requests, 7);
	/* 15 s or less before the expiry the old keys are not used: new ones or an error */
	kiln_test_clock_advance((299 - 20 - 15) * 1000);
	kiln_awsmock_push(&mock, 503, "<ErrorResponse><Error><Code>ServiceUnavailable</Code><Message>down</Message></Error></ErrorResponse>");
	assert_error(kiln_aws_creds_get(cfg.provider, &k), KILN_ETRANSIENT, "sts AssumeRole: down (ServiceUnavailable");
	push_sts("AssumeRole", "ASIATHREE", "s3", kiln_clock_wall_s() + 3600);
	assert_int_equal(kiln_aws_creds_get(cfg.provider, &k), 0);
	assert_string_equal(k.access_key_id, "ASIATHREE");
	assert_int_equal(k.expires_at, kiln_clock_wall_s() + 3600);
	kiln_aws_credentials_release(&k);
	kiln_aws_config_release(&cfg);
}

static void test_disk_cache(void **state)
{
	kiln_aws_config cfg;
	kiln_buf dir = KILN_BUF_INIT, text = KILN_BUF_INIT;
	struct stat st;
	char *cache_dir;
	(void)state;
	write_file(config_path, "[profile dev]\nrole_arn = arn:aws:iam::123456789012:role/dev\nsource_profile = base\n"
				"[profile base]\naws_access_key_id = AKIABASE\naws_secret_access_key = s\n"
				"[profile other]\naws_access_key_id = AKIAOTHER\naws_secret_access_key = s\n");
	setenv("AWS_PROFILE", "dev", 1);
	push_sts("AssumeRole", "ASIACACHED", "cachedsecret", T0 + 3600);
	load_ok(&cfg);
	kiln_aws_config_release(&cfg);
	assert_int_equal(mock.n_requests, 1);

	/* one file, 0600, in a 0700 directory under the state directory */
	assert_int_equal(kiln_state_dir(&dir), 0);
	cache_dir = kiln_strdupf("%s/aws/cache", dir.ptr);
	assert_int_equal(stat(cache_dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	{
		char cmd[600];
		FILE *p;
		char name[256] = "";
		snprintf(cmd, sizeof(cmd), "ls '%s'", cache_dir);
		p = popen(cmd, "r");
		assert_non_null(fgets(name, sizeof(name), p));
		assert_null(fgets(cmd, sizeof(cmd), p));
		pclose(p);
		name[strcspn(name, "\n")] = '\0';
		assert_int_equal(strlen(name), 64 + 5);
		kiln_buf_printf(&text, "%s/%s", cache_dir, name);
		assert_int_equal(stat(text.ptr, &st), 0);
		assert_int_equal(st.st_mode & 0777, 0600);
	}

	/* the next run within the hour assumes nothing (the mock would fail on a request) */
	load_ok(&cfg);
	assert_int_equal(mock.n_requests, 1);
	assert_signed_with(signed_call(&cfg), "ASIACACHED");
	kiln_aws_config_release(&cfg);

	/* another source of the same role is another file */
	write_file(config_path, "[profile dev]\nrole_arn = arn:aws:iam::123456789012:role/dev\nsource_profile = other\n"
				"[profile other]\naws_access_key_id = AKIAOTHER\naws_secret_access_key = s\n");
	push_sts("AssumeRole", "ASIAVIAOTHER", "s", T0 + 3600);
	load_ok(&cfg);
	assert_int_equal(mock.n_requests, 3);
	assert_signed_with(kiln_awsmock_request(&mock, 2), "AKIAOTHER");
	kiln_aws_config_release(&cfg);

	/* cached keys within 5 minutes of their expiry are not taken */
	write_file(config_path, "[profile dev]\nrole_arn = arn:aws:iam::123456789012:role/dev\nsource_profile = base\n"
				"[profile base]\naws_access_key_id = AKIABASE\naws_secret_access_key = s\n");
	kiln_test_clock_advance(3400 * 1000);
	push_sts("AssumeRole", "ASIANEW", "s", kiln_clock_wall_s() + 3600);
	load_ok(&cfg);
	assert_int_equal(mock.n_requests, 4);
	kiln_aws_config_release(&cfg);

	/* a damaged cache file is ignored */
	write_file(text.ptr, "{\"Credentials\": {\"AccessKeyId\": 7}}");
	push_sts("AssumeRole", "ASIAREPAIRED", "s", kiln_clock_wall_s() + 3600);
	load_ok(&cfg);
	assert_int_equal(mock.n_requests, 5);
	kiln_aws_config_release(&cfg);
	free(cache_dir);
	kiln_buf_release(&dir);
	kiln_buf_release(&text);
}

/* ---- web identity ----------------------------------------------------------------------------- */

static void test_web_identity_request(void **state)
{
	const kiln_mock_request *r;
	kiln_aws_config cfg;
	char *token = kiln_strdupf("%s/token", tmp);
	(void)state;
	write_file(token, "  eyJ.first.token\n\n");
	setenv("AWS_WEB_IDENTITY_TOKEN_FILE", token, 1);
	setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/ci", 1);
	setenv("AWS_ROLE_SESSION_NAME", "github-run-7", 1);
	push_sts("AssumeRoleWithWebIdentity", "ASIAWEB1", "w1", T0 + 3600);
	load_ok(&cfg);
	r = kiln_awsmock_request(&mock, 0);
	assert_string_equal(r->body, "Action=AssumeRoleWithWebIdentity&Version=2011-06-15"
				     "&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fci"
				     "&RoleSessionName=github-run-7&WebIdentityToken=eyJ.first.token");
	/* unsigned: the token is the proof */
	assert_null(kiln_mock_header(r, "Authorization"));
	assert_null(kiln_mock_header(r, "X-Amz-Security-Token"));
	assert_null(kiln_mock_header(r, "X-Amz-Date"));
	assert_signed_with(signed_call(&cfg), "ASIAWEB1");

	/* the file is read again on refresh: CI systems rotate it */
	write_file(token, "eyJ.second.token");
	kiln_test_clock_advance(3400 * 1000);
	push_sts("AssumeRoleWithWebIdentity", "ASIAWEB2", "w2", kiln_clock_wall_s() + 3600);
	assert_signed_with(signed_call(&cfg), "ASIAWEB2");
	assert_string_equal(kiln_mock_param(kiln_awsmock_request(&mock, 2), "WebIdentityToken"), "eyJ.second.token");
	kiln_aws_config_release(&cfg);

	/* a token file that is not there: a clear error */
	setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent/kiln/token", 1);
	assert_error(load(&cfg), KILN_EINVALID, "cannot read the web identity token file '/nonexistent/kiln/token': no such file");
	free(token);
}

/* ---- credential_process -------------------------------------------------------------------------- */

static void test_process_output_errors(void **state)
{
	static const struct {
		const char *json;
		const char *error;
	} bad[] = {
		{ "", "is not JSON (line" },
		{ "{\"Version\": 1, \"AccessKeyId\": \"AKIA\", \"SecretAccessKey\": \"s3cr3t-value\"", "is not JSON (line 1" },
		{ "[1]", "is not a JSON object" },
		{ "{\"AccessKeyId\": \"AKIA\", \"SecretAccessKey\": \"s3cr3t-value\"}", "has no \"Version\"" },
		{ "{\"Version\": 2, \"AccessKeyId\": \"AKIA\", \"SecretAccessKey\": \"s3cr3t-value\"}", "\"Version\" other than 1" },
		{ "{\"Version\": \"1\", \"AccessKeyId\": \"AKIA\", \"SecretAccessKey\": \"s3cr3t-value\"}", "\"Version\" other than 1" },
		{ "{\"Version\": 1, \"SecretAccessKey\": \"s3cr3t-value\"}", "have no AccessKeyId" },
		{ "{\"Version\": 1, \"AccessKeyId\": \"AKIA\"}", "have no SecretAccessKey" },
		{ "{\"Version\": 1, \"AccessKeyId\": \"AKIA\", \"SecretAccessKey\": 5}", "have a SecretAccessKey that is not a string" },
		{ "{\"Version\": 1, \"AccessKeyId\": \"AKIA\", \"SecretAccessKey\": \"s3cr3t-value\", \"SessionToken\": null}", "have a SessionToken that is not a string" },
		{ "{\"Version\": 1, \"AccessKeyId\": \"AKIA\", \"SecretAccessKey\": \"s3cr3t-value\", \"Expiration\": \"tomorrow\"}", "Expiration that is not an ISO 8601 time" },
		{ "{\"Version\": 1, \"AccessKeyId\": \"AKIA\", \"SecretAccessKey\": \"s3cr3t\\nvalue\"}", "characters that cannot be sent" },
		{ "{\"Version\": 1, \"AccessKeyId\": \"AKIA\", \"AccessKeyId\": \"AKIB\", \"SecretAccessKey\": \"s3cr3t-value\"}", "is not JSON" },
	};
	kiln_aws_credentials c = { 0 };
	size_t i;
	(void)state;
	for (i = 0; i < KILN_ARRAY_SIZE(bad); i++) {
		int rc = kiln_aws_parse_process_output(&c, bad[i].json, strlen(bad[i].json));
		if (rc != KILN_ERROR || !strstr(kiln_error_last()->message, bad[i].error))
			fail_msg("case %zu: rc %d, '%s'", i, rc, kiln_error_last()->message);
		assert_null(strstr(kiln_error_last()->message, "s3cr3t"));
		assert_null(c.access_key_id);
	}
	/* what is right: the token and the expiry are optional, offsets are honoured */
	{
		const char *j = "{\"Version\": 1, \"AccessKeyId\": \"AKIAP\", \"SecretAccessKey\": \"sp\"}";
		assert_int_equal(kiln_aws_parse_process_output(&c, j, strlen(j)), 0);
	}
	assert_string_equal(c.access_key_id, "AKIAP");
	assert_null(c.session_token);
	assert_int_equal(c.expires_at, 0);
	{
		const char *j = "{\"Version\": 1, \"AccessKeyId\": \"AKIAP\", \"SecretAccessKey\": \"sp\", \"SessionToken\": \"tp\","
				" \"Expiration\": \"2026-11-25T23:52:12+01:00\"}";
		assert_int_equal(kiln_aws_parse_process_output(&c, j, strlen(j)), 0);
		assert_string_equal(c.session_token, "tp");
		assert_int_equal(c.expires_at, T0 + 3600);
	}
	kiln_aws_credentials_release(&c);
}

static void test_times(void **state)
{
	int64_t t;
	(void)state;
	assert_int_equal(kiln_aws_parse_time(&t, "2026-11-25T21:52:12Z"), 0);
	assert_int_equal(t, T0);
	assert_int_equal(kiln_aws_parse_time(&t, "2026-11-25T21:52:12.866260Z"), 0);
	assert_int_equal(t, T0);
	assert_int_equal(kiln_aws_parse_time(&t, "2026-11-25T16:52:12-05:00"), 0);
	assert_int_equal(t, T0);
	assert_int_equal(kiln_aws_parse_time(&t, "2026-11-26T03:22:12.5+0530"), 0);
	assert_int_equal(t, T0);
	assert_int_equal(kiln_aws_parse_time(&t, "2026-11-25T21:52:12+25:00"), KILN_EINVALID);
	assert_int_equal(kiln_aws_parse_time(&t, "2026-11-25 21:52:12"), KILN_EINVALID);
	assert_int_equal(kiln_aws_parse_time(&t, "2026-11-25T21:52:12"), KILN_EINVALID);
	assert_int_equal(kiln_aws_parse_time(&t, NULL), KILN_EINVALID);
}

static void test_split_words(void **state)
{
	static const struct {
		const char *line;
		const char *words[6];
	} cases[] = {
		{ "helper", { "helper" } },
		{ "  /usr/bin/helper   --profile  prod ", { "/usr/bin/helper", "--profile", "prod" } },
		{ "sh -c 'echo \"$HOME\" | cat'", { "sh", "-c", "echo \"$HOME\" | cat" } },
		{ "a\\ b \"c \\\"d\\\" \\x\" ''", { "a b", "c \"d\" \\x", "" } },
		{ "x\"y\"'z'", { "xyz" } },
	};
	char **w;
	size_t i, j;
	(void)state;
	for (i = 0; i < KILN_ARRAY_SIZE(cases); i++) {
		assert_int_equal(kiln_aws_split_words(&w, cases[i].line), 0);
		for (j = 0; cases[i].words[j]; j++) {
			assert_non_null(w[j]);
			assert_string_equal(w[j], cases[i].words[j]);
		}
		assert_null(w[j]);
		kiln_aws_free_words(w);
	}
	assert_error(kiln_aws_split_words(&w, "helper 'open"), KILN_EINVALID, "without its closing '");
	assert_error(kiln_aws_split_words(&w, "helper \"open"), KILN_EINVALID, "without its closing \"");
	assert_error(kiln_aws_split_words(&w, "   "), KILN_EINVALID, "the command is empty");
}

static void test_process_runs(void **state)
{
	kiln_aws_config cfg;
	char *script = kiln_strdupf("%s/helper script.sh", tmp);
	char *count = kiln_strdupf("%s/count", tmp);
	char *config;
	kiln_aws_credentials k;
	(void)state;
	/* counts its runs; the keys name the run; expires an hour after T0 */
	write_file(script,
		   "n=$(( $(cat \"$1\" 2>/dev/null || echo 0) + 1 )); echo $n > \"$1\"\n"
		   "printf '{\"Version\": 1, \"AccessKeyId\": \"AKIAPROC%d\", \"SecretAccessKey\": \"procsecret\",' \"$n\"\n"
		   "printf ' \"SessionToken\": \"pt\", \"Expiration\": \"2026-11-25T22:52:12Z\"}'\n");
	/* the path has a space: quoted as a shell would quote it, run without one */
	config = kiln_strdupf("[profile proc]\ncredential_process = /bin/sh '%s' \"%s\"\n", script, count);
	write_file(config_path, config);
	setenv("AWS_PROFILE", "proc", 1);
	load_ok(&cfg);
	assert_string_equal(cfg.credentials.source, "credential_process of profile proc");
	assert_signed_with(signed_call(&cfg), "AKIAPROC1");
	/* honours Expiration: run again within 5 minutes of it */
	kiln_test_clock_advance(3400 * 1000);
	assert_int_equal(kiln_aws_creds_get(cfg.provider, &k), 0);
	assert_string_equal(k.access_key_id, "AKIAPROC2");
	assert_int_equal(k.expires_at, T0 + 3600);
	kiln_aws_credentials_release(&k);
	kiln_aws_config_release(&cfg);
	free(config);

	/* a helper that fails: its status and the first line it wrote to stderr */
	write_file(script, "echo 'helper: the session expired, run login' >&2\necho '{\"Version\": 1}'\nexit 3\n");
	assert_error(load(&cfg), KILN_ERROR,
		     "credential_process of profile proc: credential_process of profile 'proc' exited with "
		     "status 3: helper: the session expired, run login");
	/* a helper that is not there; its arguments (a secret, maybe) are not quoted */
	write_file(config_path, "[profile proc]\ncredential_process = /nonexistent/helper --token sup3rs3cret\n");
	assert_error(load(&cfg), KILN_EINVALID, "cannot run credential_process of profile 'proc': '/nonexistent/helper'");
	assert_null(strstr(kiln_error_last()->message, "sup3rs3cret"));
	/* output that is not JSON */
	write_file(config_path, "[profile proc]\ncredential_process = /bin/echo AKIA sup3rs3cret\n");
	assert_error(load(&cfg), KILN_ERROR, "the credential_process's output is not JSON");
	assert_null(strstr(kiln_error_last()->message, "sup3rs3cret"));
	write_file(config_path, "[profile proc]\ncredential_process = /bin/sh -c 'echo \"unterminated\n");
	assert_error(load(&cfg), KILN_EINVALID, "without its closing '");
	free(script);
	free(count);
}

/* ---- IMDSv2 --------------------------------------------------------------------------------------- */

static char *imds_keys(const char *key, int64_t expires)
{
	char at[21];
	kiln_format_iso8601(at, expires);
	return kiln_strdupf("{\n  \"Code\" : \"Success\",\n  \"LastUpdated\" : \"2026-11-25T21:00:00Z\",\n"
			    "  \"Type\" : \"AWS-HMAC\",\n  \"AccessKeyId\" : \"%s\",\n"
			    "  \"SecretAccessKey\" : \"imds-secret\",\n  \"Token\" : \"imds-token-%s\",\n"
			    "  \"Expiration\" : \"%s\"\n}",
			    key, key, at);
}

static void imds_env(void)
{
	unsetenv("AWS_EC2_METADATA_DISABLED");
	setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9", 1);
}

static void test_imds_credentials(void **state)
{
	const kiln_mock_request *r;
	kiln_aws_config cfg;
	char *keys;
	(void)state;
	imds_env();
	kiln_awsmock_push(&mock, 200, "session-token-1");
	kiln_awsmock_push(&mock, 200, "web-role\n");
	keys = imds_keys("ASIAIMDS1", T0 + 6 * 3600);
	kiln_awsmock_push(&mock, 200, keys);
	free(keys);
	load_ok(&cfg);
	assert_int_equal(mock.n_requests, 3);
	r = kiln_awsmock_request(&mock, 0);
	assert_string_equal(r->method, "PUT");
	assert_string_equal(r->url, "http://127.0.0.1:9/latest/api/token");
	assert_string_equal(kiln_mock_header(r, "X-aws-ec2-metadata-token-ttl-seconds"), "21600");
	r = kiln_awsmock_request(&mock, 1);
	assert_string_equal(r->method, "GET");
	assert_string_equal(r->url, "http://127.0.0.1:9/latest/meta-data/iam/security-credentials/");
	assert_string_equal(kiln_mock_header(r, "X-aws-ec2-metadata-token"), "session-token-1");
	r = kiln_awsmock_request(&mock, 2);
	assert_string_equal(r->url, "http://127.0.0.1:9/latest/meta-data/iam/security-credentials/web-role");
	assert_string_equal(kiln_mock_header(r, "X-aws-ec2-metadata-token"), "session-token-1");
	assert_null(kiln_mock_header(r, "Authorization"));
	assert_string_equal(cfg.credentials.source, "instance profile web-role (IMDSv2)");
	r = signed_call(&cfg);
	assert_signed_with(r, "ASIAIMDS1");
	assert_string_equal(kiln_mock_header(r, "X-Amz-Security-Token"), "imds-token-ASIAIMDS1");

	/* refreshed before the expiry; the session token is kept; a 401 gets a new one */
	kiln_test_clock_advance((6 * 3600 - 200) * 1000);
	kiln_awsmock_push(&mock, 401, "");
	kiln_awsmock_push(&mock, 200, "session-token-2");
	kiln_awsmock_push(&mock, 200, "web-role");
	keys = imds_keys("ASIAIMDS2", kiln_clock_wall_s() + 6 * 3600);
	kiln_awsmock_push(&mock, 200, keys);
	free(keys);
	r = signed_call(&cfg);
	assert_signed_with(r, "ASIAIMDS2");
	assert_string_equal(kiln_awsmock_request(&mock, 4)->method, "GET");
	assert_string_equal(kiln_mock_header(kiln_awsmock_request(&mock, 4), "X-aws-ec2-metadata-token"),
			    "session-token-1");
	assert_string_equal(kiln_awsmock_request(&mock, 5)->method, "PUT");
	assert_string_equal(kiln_mock_header(kiln_awsmock_request(&mock, 6), "X-aws-ec2-metadata-token"),
			    "session-token-2");
	kiln_aws_config_release(&cfg);
}

static void test_imds_region_and_failures(void **state)
{
	kiln_aws_config cfg;
	char *keys;
	(void)state;
	imds_env();
	unsetenv("AWS_REGION");
	/* the region from placement/region, then the keys (a token each: two short-lived clients) */
	kiln_awsmock_push(&mock, 200, "t1");
	kiln_awsmock_push(&mock, 200, "ap-southeast-2");
	kiln_awsmock_push(&mock, 200, "t2");
	kiln_awsmock_push(&mock, 200, "r");
	keys = imds_keys("ASIAIMDS", T0 + 3600);
	kiln_awsmock_push(&mock, 200, keys);
	free(keys);
	load_ok(&cfg);
	assert_string_equal(cfg.region, "ap-southeast-2");
	assert_string_equal(kiln_awsmock_request(&mock, 1)->url, "http://127.0.0.1:9/latest/meta-data/placement/region");
	assert_string_equal(cfg.endpoints[KILN_AWS_EC2], "https://ec2.ap-southeast-2.amazonaws.com");
	kiln_aws_config_release(&cfg);
	setenv("AWS_REGION", "us-east-1", 1);

	/* nothing answers: tried twice, then the one line about having no credentials */
	kiln_awsmock_release(&mock);
	kiln_awsmock_init(&mock);
	kiln_awsmock_push_fail(&mock, KILN_ETIMEOUT, true);
	kiln_awsmock_push_fail(&mock, KILN_ETIMEOUT, true);
	assert_error(load(&cfg), KILN_EINVALID, "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
	assert_non_null(strstr(kiln_error_last()->message, "the instance metadata service at 'http://127.0.0.1:9' (2 attempts)"));
	assert_null(strchr(kiln_error_last()->message, '\n'));
	assert_int_equal(mock.n_requests, 2);

	/* AWS_METADATA_SERVICE_NUM_ATTEMPTS=1: once */
	setenv("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "1", 1);
	kiln_awsmock_push_fail(&mock, KILN_ETRANSIENT, false);
	assert_error(load(&cfg), KILN_EINVALID, "(1 attempt)");
	assert_int_equal(mock.n_requests, 3);
	unsetenv("AWS_METADATA_SERVICE_NUM_ATTEMPTS");

	/* an instance without a role */
	kiln_awsmock_push(&mock, 200, "t");
	kiln_awsmock_push(&mock, 404, "Not Found");
	assert_error(load(&cfg), KILN_EINVALID, "has no IAM role for this instance");
	/* IMDSv1 only: not used */
	kiln_awsmock_push(&mock, 405, "");
	assert_error(load(&cfg), KILN_EINVALID, "offers no IMDSv2 session tokens");
	/* keys that say they failed */
	kiln_awsmock_push(&mock, 200, "t");
	kiln_awsmock_push(&mock, 200, "r");
	kiln_awsmock_push(&mock, 200, "{\"Code\": \"AssumeRoleUnauthorizedAccess\", \"Message\": \"no\"}");
	assert_error(load(&cfg), KILN_EINVALID, "Code 'AssumeRoleUnauthorizedAccess', not Success");

	/* credential_source Ec2InstanceMetadata: explicit, so its errors stay as they are */
	write_file(config_path, "[profile r]\nrole_arn = arn:aws:iam::1:role/x\ncredential_source = Ec2InstanceMetadata\n");
	setenv("AWS_PROFILE", "r", 1);
	kiln_awsmock_push(&mock, 200, "t");
	kiln_awsmock_push(&mock, 404, "");
	assert_error(load(&cfg), KILN_ENOTFOUND, "assume-role arn:aws:iam::1:role/x via profile r: sts AssumeRole: instance profile (IMDSv2): the instance metadata service at 'http://127.0.0.1:9' has no IAM role");
}

static void test_imds_parse(void **state)
{
	kiln_aws_credentials c = { 0 };
	char *made = imds_keys("ASIAOK", T0);
	const char *keys;
	(void)state;
	assert_int_equal(kiln_imds_parse_credentials(&c, made, strlen(made)), 0);
	assert_string_equal(c.access_key_id, "ASIAOK");
	assert_string_equal(c.session_token, "imds-token-ASIAOK");
	assert_int_equal(c.expires_at, T0);
	kiln_aws_credentials_release(&c);
	free(made);
	keys = "{\"AccessKeyId\": \"A\", \"SecretAccessKey\": \"imds-s3cret\", \"Expiration\": \"2026-11-25T21:52:12Z\"}";
	assert_error(kiln_imds_parse_credentials(&c, keys, strlen(keys)), KILN_ERROR, "have no Token");
	assert_null(strstr(kiln_error_last()->message, "imds-s3cret"));
	keys = "{\"AccessKeyId\": \"A\", \"SecretAccessKey\": \"s\", \"Token\": \"t\"}";
	assert_error(kiln_imds_parse_credentials(&c, keys, strlen(keys)), KILN_ERROR, "have no Expiration");
	assert_error(kiln_imds_parse_credentials(&c, "<html>", 6), KILN_ERROR, "are not JSON");
}

static void test_sts_parse(void **state)
{
	kiln_aws_credentials c = { 0 };
	char *xml = kiln_awsmock_fixture("sts-assume-role.xml");
	(void)state;
	/* moto's own reply */
	assert_int_equal(kiln_sts_parse_credentials(&c, xml, strlen(xml)), 0);
	assert_true(!strncmp(c.access_key_id, "ASIA", 4));
	assert_non_null(c.secret_access_key);
	assert_true(strlen(c.session_token) > 100);
	assert_true(c.expires_at > T0 - 86400 * 365);
	kiln_aws_credentials_release(&c);
	free(xml);
	xml = kiln_awsmock_fixture("sts-assume-role-with-web-identity.xml");
	assert_int_equal(kiln_sts_parse_credentials(&c, xml, strlen(xml)), 0);
	kiln_aws_credentials_release(&c);
	free(xml);
	assert_error(kiln_sts_parse_credentials(&c, "<x>", 3), KILN_ERROR, "the STS reply is not XML");
	assert_error(kiln_sts_parse_credentials(&c, "<AssumeRoleResponse/>", 21), KILN_ERROR, "has no Credentials");
	xml = "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>A</AccessKeyId>"
	      "<SecretAccessKey>sts-s3cret</SecretAccessKey><SessionToken>t</SessionToken>"
	      "<Expiration>soon</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>";
	assert_error(kiln_sts_parse_credentials(&c, xml, strlen(xml)), KILN_ERROR, "Expiration is not an ISO 8601 time");
	assert_null(strstr(kiln_error_last()->message, "sts-s3cret"));
	assert_null(c.access_key_id);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_chain_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_imds_settings, setup, teardown),
		cmocka_unit_test_setup_teardown(test_role_configuration_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_assume_role_request, setup, teardown),
		cmocka_unit_test_setup_teardown(test_assume_role_default_session_and_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refresh_on_the_virtual_clock, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disk_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(test_web_identity_request, setup, teardown),
		cmocka_unit_test_setup_teardown(test_process_output_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_times, setup, teardown),
		cmocka_unit_test_setup_teardown(test_split_words, setup, teardown),
		cmocka_unit_test_setup_teardown(test_process_runs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_imds_credentials, setup, teardown),
		cmocka_unit_test_setup_teardown(test_imds_region_and_failures, setup, teardown),
		cmocka_unit_test_setup_teardown(test_imds_parse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sts_parse, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
