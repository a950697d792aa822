/*
 * fuzz_aws_config: the shared-file INI parser and the profile resolution
 * over it (aws/config.c), fed from memory by kiln_aws_config_load_text.
 *
 * The input is the credentials file, a NUL byte, and the config file; with
 * no NUL byte it is the config file alone (no credentials file), so plain
 * ~/.aws/config samples are seeds as they are. Each input is resolved for
 * the default profile and for AWS_PROFILE=web, with the environment
 * otherwise empty (and the instance metadata service disabled: the load is
 * offline anyway). What comes out must be usable: a region of host-label
 * characters, every endpoint an http(s) URL with a host, no trailing '/',
 * no white space or control characters, and a credential source: both keys
 * for static keys, else a role ARN, a token file or a command as the source
 * needs, and a description. A failure must be KILN_EINVALID with a message
 * that never quotes a secret: the message must not change when every letter
 * and digit of the aws_secret_access_key, aws_session_token, external_id
 * and credential_process values is changed.
 */
#include <strings.h>

#include "aws/config.h"
#include "core/error.h"
#include "tests/fuzz/fuzz.h"

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

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	size_t i;
	(void)argc;
	(void)argv;
	for (i = 0; i < KILN_ARRAY_SIZE(aws_vars); i++)
		unsetenv(aws_vars[i]);
	/* "~/..." in ca_bundle expands here; nothing is read from it */
	setenv("HOME", "/nonexistent/kiln-fuzz-home", 1);
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	return 0;
}

/* A source has what its kind needs; a role's source, recursively, within the chain's cap. */
static void check_source(const kiln_aws_source *s, int depth)
{
	FUZZ_CHECK(s && depth < 10 && s->description[0]);
	switch (s->kind) {
	case KILN_AWS_SOURCE_STATIC:
		FUZZ_CHECK(s->keys.access_key_id && *s->keys.access_key_id);
		FUZZ_CHECK(s->keys.secret_access_key && *s->keys.secret_access_key);
		FUZZ_CHECK(!s->from);
		break;
	case KILN_AWS_SOURCE_ASSUME_ROLE:
		FUZZ_CHECK(s->role_arn && !strncmp(s->role_arn, "arn:", 4) && s->profile);
		FUZZ_CHECK(s->duration_s == 0 || (s->duration_s >= 900 && s->duration_s <= 43200));
		check_source(s->from, depth + 1);
		break;
	case KILN_AWS_SOURCE_WEB_IDENTITY:
		FUZZ_CHECK(s->role_arn && s->token_file && *s->token_file && !s->from);
		break;
	case KILN_AWS_SOURCE_PROCESS:
		FUZZ_CHECK(s->command && *s->command && s->profile && !s->from);
		break;
	case KILN_AWS_SOURCE_IMDS:
		FUZZ_CHECK(!s->from);
		break;
	default:
		FUZZ_CHECK(!"a source of no kind");
	}
}

static void check_config(const kiln_aws_config *cfg)
{
	const char *s;
	int i;

	FUZZ_CHECK(cfg->profile && cfg->region && *cfg->region);
	for (s = cfg->region; *s; s++)
		FUZZ_CHECK((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-');
	for (i = 0; i < KILN_AWS_SERVICE_COUNT; i++) {
		const char *e = cfg->endpoints[i];
		size_t n;
		FUZZ_CHECK(e);
		n = strlen(e);
		size_t host = !strncasecmp(e, "https://", 8) ? 8 : !strncasecmp(e, "http://", 7) ? 7 : 0;
		FUZZ_CHECK(host);
		FUZZ_CHECK(n > host && e[host] != '/' && e[n - 1] != '/');
		for (s = e; *s; s++)
			FUZZ_CHECK((unsigned char)*s > 0x20 && *s != 0x7f && *s != '?' && *s != '#');
	}
	FUZZ_CHECK(cfg->credentials.source[0]);
	FUZZ_CHECK(cfg->source && !strcmp(cfg->source->description, cfg->credentials.source));
	/* offline: nothing was fetched */
	FUZZ_CHECK(!cfg->provider);
	check_source(cfg->source, 0);
	if (cfg->source->kind == KILN_AWS_SOURCE_STATIC) {
		FUZZ_CHECK(cfg->credentials.access_key_id && *cfg->credentials.access_key_id);
		FUZZ_CHECK(cfg->credentials.secret_access_key && *cfg->credentials.secret_access_key);
		FUZZ_CHECK(!cfg->credentials.session_token || *cfg->credentials.session_token);
	} else {
		FUZZ_CHECK(!cfg->credentials.access_key_id && !cfg->credentials.secret_access_key);
	}
	FUZZ_CHECK(cfg->imds.endpoint && cfg->imds.timeout_ms >= 1000 && cfg->imds.attempts >= 1);
}

/* Resolves; the error message (or "" on success) into msg. */
static int load(const char *text, size_t size, char *msg, size_t msg_size)
{
	const char *nul = memchr(text, '\0', size);
	kiln_view creds = { NULL, 0 }, config = { text, size };
	kiln_aws_config cfg;
	int rc;

	if (nul) {
		creds = (kiln_view){ text, (size_t)(nul - text) };
		config = (kiln_view){ nul + 1, size - creds.len - 1 };
	}
	rc = kiln_aws_config_load_text(&cfg, NULL, creds, config);
	msg[0] = '\0';
	if (rc == 0) {
		check_config(&cfg);
		kiln_aws_config_release(&cfg);
	} else {
		FUZZ_CHECK(rc == KILN_EINVALID && kiln_error_last()->code == rc);
		FUZZ_CHECK(kiln_error_last()->message[0]);
		snprintf(msg, msg_size, "%s", kiln_error_last()->message);
		/* on failure nothing is held */
		FUZZ_CHECK(!cfg.profile && !cfg.region && !cfg.credentials.secret_access_key);
	}
	return rc;
}

static bool is_secret_key(const char *k, size_t n)
{
	return (n == 21 && !strncasecmp(k, "aws_secret_access_key", n)) ||
	       (n == 17 && !strncasecmp(k, "aws_session_token", n)) ||
	       (n == 18 && !strncasecmp(k, "aws_security_token", n)) ||
	       (n == 11 && !strncasecmp(k, "external_id", n)) ||
	       (n == 18 && !strncasecmp(k, "credential_process", n));
}

/*
 * Changes every letter and digit of the values of secret keys' lines in
 * place (a->b, z->a, 0->1, ...); true if there was one. Only the value
 * changes, and only in ways that keep its length, white space and comment
 * characters, so the parser's view of the file stays the same.
 */
static bool rotate_secrets(char *text, size_t size)
{
	char *p = text, *end = text + size;
	bool any = false;

	while (p < end) {
		char *eol = p, *k = p, *eq, *ke;
		/* a line ends at '\n', and at the NUL between the two files */
		while (eol < end && *eol != '\n' && *eol != '\0')
			eol++;
		p = eol + 1;
		while (k < eol && (*k == ' ' || *k == '\t' || *k == '\r'))
			k++;
		if (!(eq = memchr(k, '=', (size_t)(eol - k))))
			continue;
		for (ke = eq; ke > k && (ke[-1] == ' ' || ke[-1] == '\t' || ke[-1] == '\r'); ke--)
			;
		if (!is_secret_key(k, (size_t)(ke - k)))
			continue;
		for (k = eq + 1; k < eol; k++) {
			char c = *k;
			if (c >= 'a' && c <= 'z')
				*k = c == 'z' ? 'a' : (char)(c + 1);
			else if (c >= 'A' && c <= 'Z')
				*k = c == 'Z' ? 'A' : (char)(c + 1);
			else if (c >= '0' && c <= '9')
				*k = c == '9' ? '0' : (char)(c + 1);
			else
				continue;
			any = true;
		}
	}
	return any;
}

static void run(const uint8_t *data, size_t size)
{
	char msg[sizeof(kiln_error_last()->message)], msg2[sizeof(msg)];
	char *copy;
	int rc;

	if ((rc = load((const char *)data, size, msg, sizeof(msg))) == 0)
		return;
	copy = malloc(size ? size : 1);
	FUZZ_CHECK(copy);
	memcpy(copy, data, size);
	if (rotate_secrets(copy, size)) {
		int rc2 = load(copy, size, msg2, sizeof(msg2));
		FUZZ_CHECK(rc2 == rc);
		if (strcmp(msg, msg2) != 0) {
			fprintf(stderr, "a secret reached an error message:\n  %s\n  %s\n", msg, msg2);
			abort();
		}
	}
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsetenv("AWS_PROFILE");
	run(data, size);
	/* two fixed values only: glibc keeps every value setenv was ever given */
	setenv("AWS_PROFILE", "web", 1);
	run(data, size);
	unsetenv("AWS_PROFILE");
	return 0;
}
