/*
 * config.c: kiln's AWS settings, resolved like the AWS CLI (config.h has the
 * chains; docs/aws-configuration.md tells users).
 *
 * Who calls: cli/ (kiln whoami, and every aws command through the
 * provider) once per run, before the first request.
 *
 * The shared files are INI: "[section]" headers, "key = value" lines,
 * whole-line comments starting with '#' or ';', and a '#' or ';' preceded
 * by white space starting a comment inside a line (the SDKs' shared-file
 * rule; keys and secrets never hold white space). Keys are
 * case-insensitive. An indented line under "key =" is a nested setting
 * ("s3 =\n  max_concurrent_requests = 10") and is not a key of the profile:
 * a nested "ec2 =\n  endpoint_url = ..." must not become the profile's own
 * endpoint_url. The file text holds secrets: it is wiped before it is freed,
 * and no message ever quotes a value read from it.
 */
#include "aws/config.h"

#include <pwd.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "core/error.h"
#include "aws/credentials.h"
#include "core/fs.h"

/* The shared files are small; a bigger one is a mistake, not a config. */
#define SHARED_FILE_MAX ((size_t)1 << 20)

static const struct {
	const char *signing_name;
	const char *endpoint_prefix; /* the host's first label */
	const char *env_suffix;      /* AWS_ENDPOINT_URL_<this> */
} services[KILN_AWS_SERVICE_COUNT] = {
	[KILN_AWS_EC2] = { "ec2", "ec2", "EC2" },
	[KILN_AWS_ELBV2] = { "elasticloadbalancing", "elasticloadbalancing", "ELASTIC_LOAD_BALANCING_V2" },
	[KILN_AWS_ELB] = { "elasticloadbalancing", "elasticloadbalancing", "ELASTIC_LOAD_BALANCING" },
	[KILN_AWS_SSM] = { "ssm", "ssm", "SSM" },
	[KILN_AWS_STS] = { "sts", "sts", "STS" },
};

const char *kiln_aws_service_signing_name(kiln_aws_service s)
{
	return s >= 0 && s < KILN_AWS_SERVICE_COUNT ? services[s].signing_name : NULL;
}

const char *kiln_aws_service_env_suffix(kiln_aws_service s)
{
	return s >= 0 && s < KILN_AWS_SERVICE_COUNT ? services[s].env_suffix : NULL;
}

/* ---- the environment --------------------------------------------------- */

/* Set and not empty, as botocore reads them ("" counts as unset). */
static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

static const char *home_dir(void)
{
	const char *h = env("HOME");
	struct passwd *pw;
	if (h)
		return h;
	pw = getpwuid(getuid());
	return pw && pw->pw_dir && *pw->pw_dir ? pw->pw_dir : NULL;
}

/* "~/x" -> "$HOME/x" (botocore expands the files' paths the same way). */
static char *expand_home(const char *path)
{
	const char *home;
	if (path[0] == '~' && (path[1] == '/' || path[1] == '\0') && (home = home_dir()))
		return kiln_strdupf("%s%s", home, path + 1);
	return kiln_strdup(path);
}

/* ---- INI --------------------------------------------------------------- */

typedef struct ini_entry {
	char *section; /* as written between the brackets, trimmed */
	char *key;     /* lowercased */
	char *value;
} ini_entry;

typedef struct ini_file {
	char *path;      /* what messages name */
	bool present;
	ini_entry *entries;
	size_t n, cap;
} ini_file;

static void ini_release(ini_file *f)
{
	size_t i;
	for (i = 0; i < f->n; i++) {
		free(f->entries[i].section);
		free(f->entries[i].key);
		if (f->entries[i].value) {
			OPENSSL_cleanse(f->entries[i].value, strlen(f->entries[i].value));
			free(f->entries[i].value);
		}
	}
	free(f->entries);
	free(f->path);
	memset(f, 0, sizeof(*f));
}

static bool ini_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

static kiln_view trim(const char *s, size_t len)
{
	while (len && ini_space(*s)) {
		s++;
		len--;
	}
	while (len && ini_space(s[len - 1]))
		len--;
	return (kiln_view){ s, len };
}

static int ini_add(ini_file *f, const char *section, kiln_view key, kiln_view value)
{
	ini_entry *e;
	size_t i;

	if (f->n == f->cap) {
		size_t ncap = f->cap ? f->cap * 2 : 32;
		ini_entry *ne = realloc(f->entries, ncap * sizeof(*ne));
		if (!ne)
			return kiln_error_set(KILN_ENOMEM, "out of memory");
		f->entries = ne;
		f->cap = ncap;
	}
	e = &f->entries[f->n];
	e->section = kiln_strdup(section);
	e->key = kiln_view_dup(key);
	e->value = kiln_view_dup(value);
	if (!e->section || !e->key || !e->value) {
		free(e->section);
		free(e->key);
		free(e->value);
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	}
	for (i = 0; e->key[i]; i++)
		if (e->key[i] >= 'A' && e->key[i] <= 'Z')
			e->key[i] = (char)(e->key[i] - 'A' + 'a');
	f->n++;
	return 0;
}

/*
 * Parses text into f. A malformed line fails with "path:line: ..." and the
 * line is not quoted (it may be a secret).
 */
static int ini_parse(ini_file *f, const char *text, size_t len)
{
	const char *p = text, *end = text + len;
	char *section = NULL;
	bool have_key = false; /* a key was read in this section: indented lines nest under it */
	int line_no = 0, error = 0;

	while (p < end && error == 0) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *line_end = nl ? nl : end;
		kiln_view line = trim(p, (size_t)(line_end - p));
		bool indented = p < line_end && ini_space(*p) && *p != '\r';
		line_no++;
		p = nl ? nl + 1 : end;

		if (line.len == 0 || line.ptr[0] == '#' || line.ptr[0] == ';')
			continue;
		if (line.ptr[0] == '[') {
			const char *close = memchr(line.ptr, ']', line.len);
			if (!close) {
				error = kiln_error_set(KILN_EINVALID, "%s:%d: section header without ']'",
						       f->path, line_no);
				break;
			}
			kiln_view name = trim(line.ptr + 1, (size_t)(close - line.ptr - 1));
			free(section);
			if (!(section = kiln_view_dup(name))) {
				error = KILN_ENOMEM;
				break;
			}
			have_key = false;
			continue;
		}
		if (indented && have_key)
			continue; /* a nested setting of the key above */
		if (!section) {
			error = kiln_error_set(KILN_EINVALID, "%s:%d: setting outside any [section]",
					       f->path, line_no);
			break;
		}
		const char *eq = memchr(line.ptr, '=', line.len);
		if (!eq) {
			error = kiln_error_set(KILN_EINVALID, "%s:%d: expected 'key = value'", f->path,
					       line_no);
			break;
		}
		kiln_view key = trim(line.ptr, (size_t)(eq - line.ptr));
		kiln_view value = trim(eq + 1, (size_t)(line.ptr + line.len - eq - 1));
		size_t i;
		for (i = 1; i < value.len; i++) {
			if ((value.ptr[i] == '#' || value.ptr[i] == ';') && ini_space(value.ptr[i - 1])) {
				value = trim(value.ptr, i);
				break;
			}
		}
		if (key.len == 0) {
			error = kiln_error_set(KILN_EINVALID, "%s:%d: setting without a name", f->path,
					       line_no);
			break;
		}
		error = ini_add(f, section, key, value);
		have_key = true;
	}
	free(section);
	return error;
}

/*
 * Reads path if it exists: a missing file is an empty one, and so is
 * "~/..." when there is no home directory to expand it in. With given,
 * the file is not read: given->ptr is its text, or NULL for no file
 * (kiln_aws_config_load_text); path is still what messages name.
 */
static int ini_load(ini_file *f, const char *path, const kiln_view *given)
{
	kiln_buf text;
	int error;

	memset(f, 0, sizeof(*f));
	if (!(f->path = expand_home(path)))
		return KILN_ENOMEM;
	if (given) {
		f->present = given->ptr != NULL;
		return f->present ? ini_parse(f, given->ptr, given->len) : 0;
	}
	if (f->path[0] == '~')
		return 0;
	kiln_buf_init(&text, SHARED_FILE_MAX);
	error = kiln_read_file(&text, f->path);
	if (error == KILN_ENOTFOUND) {
		error = 0;
	} else if (error == 0) {
		f->present = true;
		error = ini_parse(f, text.ptr, text.len);
	}
	if (text.alloc)
		OPENSSL_cleanse(text.ptr, text.alloc);
	kiln_buf_release(&text);
	return error;
}

/* The last value of key in section (a later line overrides an earlier). */
static const char *ini_get(const ini_file *f, const char *section, const char *key)
{
	size_t i = f->n;
	while (i-- > 0)
		if (strcmp(f->entries[i].section, section) == 0 && strcmp(f->entries[i].key, key) == 0)
			return f->entries[i].value;
	return NULL;
}

static bool ini_has_section(const ini_file *f, const char *section)
{
	size_t i;
	for (i = 0; i < f->n; i++)
		if (strcmp(f->entries[i].section, section) == 0)
			return true;
	return false;
}

/* ---- the profiles ------------------------------------------------------ */

/* Both shared files, read once per load: a role chain looks up several profiles. */
typedef struct files {
	ini_file creds;  /* the credentials file */
	ini_file config; /* the config file */
} files;

/*
 * A profile is "[NAME]" in the credentials file and "[profile NAME]" in the
 * config file, where the default profile may also be plain "[default]".
 * A header like "[profile   web]" is accepted as the CLI does.
 */
typedef struct profile {
	const char *name;
	const files *f;
	char *config_section; /* the section name found in config, or NULL */
} profile;

static char *find_config_section(const ini_file *f, const char *name)
{
	size_t i;
	char *want = NULL;

	for (i = 0; i < f->n; i++) {
		const char *s = f->entries[i].section;
		if (strncmp(s, "profile", 7) == 0 && ini_space(s[7])) {
			kiln_view rest = trim(s + 7, strlen(s + 7));
			if (kiln_view_eq(rest, name)) {
				want = f->entries[i].section;
				break;
			}
		}
	}
	if (!want && strcmp(name, "default") == 0 && ini_has_section(f, "default"))
		want = (char *)"default";
	return want ? kiln_strdup(want) : NULL;
}

static int profile_open(profile *p, const files *f, const char *name)
{
	memset(p, 0, sizeof(*p));
	p->name = name;
	p->f = f;
	p->config_section = find_config_section(&f->config, name);
	return 0;
}

static void profile_close(profile *p)
{
	free(p->config_section);
	memset(p, 0, sizeof(*p));
}

/* A setting of the profile: the credentials file wins over the config file (as in botocore). */
static const char *profile_get(const profile *p, const char *key)
{
	const char *v = ini_get(&p->f->creds, p->name, key);
	if (!v && p->config_section)
		v = ini_get(&p->f->config, p->config_section, key);
	return v && *v ? v : NULL;
}

static bool profile_exists(const profile *p)
{
	return ini_has_section(&p->f->creds, p->name) || p->config_section;
}

static void files_release(files *f)
{
	ini_release(&f->creds);
	ini_release(&f->config);
}

/* creds_text, config_text: the files' texts, or NULL to read the files (ini_load) */
static int files_load(files *f, const kiln_view *creds_text, const kiln_view *config_text)
{
	const char *creds_path = env("AWS_SHARED_CREDENTIALS_FILE");
	const char *config_path = env("AWS_CONFIG_FILE");
	int error;

	memset(f, 0, sizeof(*f));
	if ((error = ini_load(&f->creds, creds_path ? creds_path : "~/.aws/credentials",
			      creds_text)) < 0 ||
	    (error = ini_load(&f->config, config_path ? config_path : "~/.aws/config",
			      config_text)) < 0)
		files_release(f);
	return error;
}

/* ---- credential sources ------------------------------------------------ */

void kiln_aws_source_free(kiln_aws_source *s)
{
	if (!s)
		return;
	kiln_aws_source_free(s->from);
	kiln_aws_credentials_release(&s->keys);
	free(s->profile);
	free(s->role_arn);
	free(s->session_name);
	if (s->external_id) {
		OPENSSL_cleanse(s->external_id, strlen(s->external_id));
		free(s->external_id);
	}
	free(s->token_file);
	if (s->command) {
		/* a command line may carry a secret as an argument */
		OPENSSL_cleanse(s->command, strlen(s->command));
		free(s->command);
	}
	free(s);
}

static int source_new(kiln_aws_source **out, kiln_aws_source_kind kind, const char *profile_name)
{
	kiln_aws_source *s = calloc(1, sizeof(*s));
	*out = NULL;
	if (!s)
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	s->kind = kind;
	if (profile_name && !(s->profile = kiln_strdup(profile_name))) {
		free(s);
		return KILN_ENOMEM;
	}
	*out = s;
	return 0;
}

static int set_keys(kiln_aws_credentials *c, const char *id, const char *secret, const char *token,
		    const char *source)
{
	c->access_key_id = kiln_strdup(id);
	c->secret_access_key = kiln_strdup(secret);
	c->session_token = token ? kiln_strdup(token) : NULL;
	c->expires_at = 0;
	snprintf(c->source, sizeof(c->source), "%s", source);
	if (!c->access_key_id || !c->secret_access_key || (token && !c->session_token))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	return 0;
}

static int static_source(kiln_aws_source **out, const char *profile_name, const char *id,
			 const char *secret, const char *token, const char *description)
{
	kiln_aws_source *s;
	int error;

	if ((error = source_new(&s, KILN_AWS_SOURCE_STATIC, profile_name)) < 0)
		return error;
	snprintf(s->description, sizeof(s->description), "%s", description);
	if ((error = set_keys(&s->keys, id, secret, token, description)) < 0) {
		kiln_aws_source_free(s);
		return error;
	}
	*out = s;
	return 0;
}

/* Keys from one file's section; 1 when found, 0 when that section has none. */
static int keys_from(kiln_aws_source **out, const ini_file *f, const char *section,
		     const char *profile_name, const char *what)
{
	const char *id, *secret, *token;
	char description[256];
	int error;

	if (!section)
		return 0;
	id = ini_get(f, section, "aws_access_key_id");
	secret = ini_get(f, section, "aws_secret_access_key");
	if ((!id || !*id) && (!secret || !*secret))
		return 0;
	if (!id || !*id || !secret || !*secret)
		return kiln_error_set(KILN_EINVALID, "profile '%s' in '%s' has %s but not %s",
				      profile_name, f->path,
				      id && *id ? "aws_access_key_id" : "aws_secret_access_key",
				      id && *id ? "aws_secret_access_key" : "aws_access_key_id");
	token = ini_get(f, section, "aws_session_token");
	if (!token || !*token)
		token = ini_get(f, section, "aws_security_token"); /* the older name */
	snprintf(description, sizeof(description), "profile %s (%s)", profile_name, what);
	error = static_source(out, profile_name, id, secret, token && *token ? token : NULL, description);
	return error < 0 ? error : 1;
}

static int creds_file_keys(kiln_aws_source **out, const profile *p)
{
	return keys_from(out, &p->f->creds, ini_has_section(&p->f->creds, p->name) ? p->name : NULL,
			 p->name, "credentials file");
}

static int config_file_keys(kiln_aws_source **out, const profile *p)
{
	return keys_from(out, &p->f->config, p->config_section, p->name, "config file");
}

static bool has_keys(const profile *p)
{
	return profile_get(p, "aws_access_key_id") || profile_get(p, "aws_secret_access_key");
}

/* The environment's keys; 1 when set, 0 when not. */
static int env_keys(kiln_aws_source **out)
{
	const char *id = env("AWS_ACCESS_KEY_ID"), *secret = env("AWS_SECRET_ACCESS_KEY");
	const char *token = env("AWS_SESSION_TOKEN");
	int error;

	if (!token)
		token = env("AWS_SECURITY_TOKEN"); /* the older name, still honoured by the CLI */
	if (!id && !secret)
		return 0;
	if (!id || !secret)
		return kiln_error_set(KILN_EINVALID, "%s is set but %s is not",
				      id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
				      id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
	error = static_source(out, NULL, id, secret, token, "environment");
	return error < 0 ? error : 1;
}

static int dup_opt(char **out, const char *v)
{
	*out = NULL;
	return v && !(*out = kiln_strdup(v)) ? KILN_ENOMEM : 0;
}

/* An ARN of a role: "arn:PARTITION:iam::ACCOUNT:role/NAME"; checked loosely, STS checks the rest. */
static int check_role_arn(const char *arn, const char *from)
{
	size_t i;
	if (strncmp(arn, "arn:", 4) != 0 || !strstr(arn, ":role/") || strlen(arn) > 2048)
		return kiln_error_set(KILN_EINVALID, "%s is not a role ARN (arn:aws:iam::ACCOUNT:role/NAME)", from);
	for (i = 0; arn[i]; i++)
		if ((unsigned char)arn[i] <= 0x20 || arn[i] == 0x7f)
			return kiln_error_set(KILN_EINVALID, "%s is not a role ARN: it holds white space", from);
	return 0;
}

/* role_session_name: 2-64 of [\w+=,.@-] (STS's pattern); checked here for a clear message. */
static int check_session_name(const char *name, const char *from)
{
	size_t i, n = strlen(name);
	if (n < 2 || n > 64)
		return kiln_error_set(KILN_EINVALID, "%s must be 2 to 64 characters long", from);
	for (i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      strchr("_+=,.@-", c)))
			return kiln_error_set(KILN_EINVALID,
					      "%s may hold only letters, digits and _+=,.@-", from);
	}
	return 0;
}

/* The web identity source: token file and role ARN, from the environment or the profile. */
static int web_identity_source(kiln_aws_source **out, const char *token_file, const char *role_arn,
			       const char *session, const char *profile_name, bool from_env)
{
	kiln_aws_source *s;
	char *path;
	int error;

	if ((error = check_role_arn(role_arn, from_env ? "AWS_ROLE_ARN" : "role_arn")) < 0)
		return from_env ? kiln_error_prefix("web identity")
				: kiln_error_prefix("web identity of profile '%s'", profile_name);
	if (session && (error = check_session_name(session, from_env ? "AWS_ROLE_SESSION_NAME"
								     : "role_session_name")) < 0)
		return error;
	if ((error = source_new(&s, KILN_AWS_SOURCE_WEB_IDENTITY, from_env ? NULL : profile_name)) < 0)
		return error;
	if (!(path = expand_home(token_file)) || dup_opt(&s->role_arn, role_arn) < 0 ||
	    dup_opt(&s->session_name, session) < 0) {
		free(path);
		kiln_aws_source_free(s);
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	}
	s->token_file = path;
	if (from_env)
		snprintf(s->description, sizeof(s->description), "web identity %s (AWS_WEB_IDENTITY_TOKEN_FILE)",
			 role_arn);
	else
		snprintf(s->description, sizeof(s->description), "web identity %s via profile %s", role_arn,
			 profile_name);
	*out = s;
	return 0;
}

static int process_source(kiln_aws_source **out, const profile *p, const char *command)
{
	kiln_aws_source *s;
	int error;

	if ((error = source_new(&s, KILN_AWS_SOURCE_PROCESS, p->name)) < 0)
		return error;
	if (!(s->command = kiln_strdup(command))) {
		kiln_aws_source_free(s);
		return KILN_ENOMEM;
	}
	snprintf(s->description, sizeof(s->description), "credential_process of profile %s", p->name);
	*out = s;
	return 0;
}

static int imds_source(kiln_aws_source **out, const char *why)
{
	kiln_aws_source *s;
	int error;
	if ((error = source_new(&s, KILN_AWS_SOURCE_IMDS, NULL)) < 0)
		return error;
	snprintf(s->description, sizeof(s->description), "instance profile (IMDSv2)%s", why ? why : "");
	*out = s;
	return 0;
}

static int unsupported_sso(const profile *p)
{
	return kiln_error_set(KILN_EINVALID,
			      "profile '%s' uses IAM Identity Center (sso_*), which kiln does not support: "
			      "export its credentials with 'aws configure export-credentials --profile %s "
			      "--format env'",
			      p->name, p->name);
}

static bool uses_sso(const profile *p)
{
	return profile_get(p, "sso_start_url") || profile_get(p, "sso_session");
}

/*
 * What a profile offers by itself, without the environment: botocore's
 * profile provider chain (web identity when with_web_identity, SSO, the
 * credentials file's keys, credential_process, the config file's keys).
 * 1 when found, 0 when the profile has none of them.
 */
static int profile_chain(kiln_aws_source **out, const profile *p, bool with_web_identity)
{
	const char *command;
	int found;

	if (with_web_identity && profile_get(p, "web_identity_token_file")) {
		const char *arn = profile_get(p, "role_arn");
		if (!arn)
			return kiln_error_set(KILN_EINVALID,
					      "profile '%s' has web_identity_token_file but no role_arn", p->name);
		found = web_identity_source(out, profile_get(p, "web_identity_token_file"), arn,
					    profile_get(p, "role_session_name"), p->name, false);
		return found < 0 ? found : 1;
	}
	if (uses_sso(p))
		return unsupported_sso(p);
	if ((found = creds_file_keys(out, p)) != 0)
		return found;
	if ((command = profile_get(p, "credential_process"))) {
		found = process_source(out, p, command);
		return found < 0 ? found : 1;
	}
	return config_file_keys(out, p);
}

/* The profiles a role chain has passed through, to refuse a loop. */
typedef struct visited {
	const char *names[8];
	size_t n;
} visited;

static bool has_role_config(const profile *p)
{
	return profile_get(p, "role_arn") && !profile_get(p, "web_identity_token_file");
}

static int role_source(kiln_aws_source **out, const files *f, const char *name, visited *seen);

/* The keys a role's source_profile stands for (botocore's _resolve_credentials_from_profile). */
static int source_profile_source(kiln_aws_source **out, const files *f, const char *name,
				 const char *parent, visited *seen)
{
	profile p;
	size_t i;
	int error;

	for (i = 0; i < seen->n; i++) {
		/* a profile may name itself as its source when it has keys (botocore allows it) */
		if (!strcmp(seen->names[i], name) && !(i == seen->n - 1 && !strcmp(name, parent)))
			return kiln_error_set(KILN_EINVALID,
					      "profile '%s': source_profile '%s' makes a loop", parent, name);
	}
	profile_open(&p, f, name);
	if (!profile_exists(&p)) {
		error = kiln_error_set(KILN_EINVALID,
				       "profile '%s' names source_profile '%s', which is in neither '%s' nor '%s'",
				       parent, name, f->creds.path, f->config.path);
		goto done;
	}
	if (has_keys(&p) || !has_role_config(&p) || !strcmp(name, parent)) {
		if ((error = profile_chain(out, &p, true)) == 0)
			error = kiln_error_set(KILN_EINVALID,
					       "source_profile '%s' of profile '%s' has no credentials", name,
					       parent);
		error = error < 0 ? error : 0;
		goto done;
	}
	if (seen->n == KILN_ARRAY_SIZE(seen->names)) {
		error = kiln_error_set(KILN_EINVALID, "profile '%s': a chain of more than %zu roles",
				       parent, KILN_ARRAY_SIZE(seen->names));
		goto done;
	}
	error = role_source(out, f, name, seen);
done:
	profile_close(&p);
	return error;
}

/* The credential_source of a role: the environment or the instance (botocore's CanonicalNameSourceProvider). */
static int credential_source(kiln_aws_source **out, const char *what, const char *profile_name)
{
	int found;

	if (!strcmp(what, "Environment")) {
		if ((found = env_keys(out)) == 0)
			return kiln_error_set(KILN_EINVALID,
					      "profile '%s' has credential_source Environment but "
					      "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set",
					      profile_name);
		return found < 0 ? found : 0;
	}
	if (!strcmp(what, "Ec2InstanceMetadata"))
		return imds_source(out, NULL);
	if (!strcmp(what, "EcsContainer"))
		return kiln_error_set(KILN_EINVALID,
				      "profile '%s' has credential_source EcsContainer: kiln does not read "
				      "ECS container credentials",
				      profile_name);
	return kiln_error_set(KILN_EINVALID,
			      "profile '%s' has credential_source '%s': use Environment or Ec2InstanceMetadata",
			      profile_name, what);
}

static int role_source(kiln_aws_source **out, const files *f, const char *name, visited *seen)
{
	const char *arn, *source_profile, *cred_source, *v;
	kiln_aws_source *s = NULL;
	profile p;
	int error;

	seen->names[seen->n++] = name;
	profile_open(&p, f, name);
	arn = profile_get(&p, "role_arn");
	source_profile = profile_get(&p, "source_profile");
	cred_source = profile_get(&p, "credential_source");
	if ((error = check_role_arn(arn, "role_arn")) < 0) {
		kiln_error_prefix("profile '%s'", name);
		goto fail;
	}
	if (profile_get(&p, "mfa_serial")) {
		/* exit 2 like every configuration kiln cannot use: nothing was done */
		error = kiln_error_set(KILN_EINVALID,
				       "profile '%s' has mfa_serial, which is not supported: kiln does not ask "
				       "for MFA codes; assume the role first (aws sts assume-role ...) and pass "
				       "its keys in the environment",
				       name);
		goto fail;
	}
	if (source_profile && cred_source) {
		error = kiln_error_set(KILN_EINVALID,
				       "profile '%s' has both source_profile and credential_source: keep one", name);
		goto fail;
	}
	if (!source_profile && !cred_source) {
		error = kiln_error_set(KILN_EINVALID,
				       "profile '%s' has role_arn but neither source_profile nor "
				       "credential_source (nor web_identity_token_file)",
				       name);
		goto fail;
	}
	if ((error = source_new(&s, KILN_AWS_SOURCE_ASSUME_ROLE, name)) < 0)
		goto fail;
	if (dup_opt(&s->role_arn, arn) < 0 ||
	    dup_opt(&s->session_name, profile_get(&p, "role_session_name")) < 0 ||
	    dup_opt(&s->external_id, profile_get(&p, "external_id")) < 0) {
		error = KILN_ENOMEM;
		goto fail;
	}
	if (s->session_name && (error = check_session_name(s->session_name, "role_session_name")) < 0) {
		kiln_error_prefix("profile '%s'", name);
		goto fail;
	}
	if ((v = profile_get(&p, "duration_seconds"))) {
		int64_t d;
		/* STS's bounds; the role's own maximum may be lower, which STS then says */
		if (kiln_parse_i64(&d, v, 900, 43200) < 0) {
			error = kiln_error_set(KILN_EINVALID,
					       "profile '%s': duration_seconds must be a number of seconds from 900 to 43200",
					       name);
			goto fail;
		}
		s->duration_s = (int)d;
	}
	snprintf(s->description, sizeof(s->description), "assume-role %s via profile %s", arn, name);
	if (cred_source)
		error = credential_source(&s->from, cred_source, name);
	else
		error = source_profile_source(&s->from, f, source_profile, name, seen);
	if (error < 0)
		goto fail;
	profile_close(&p);
	*out = s;
	return 0;
fail:
	kiln_aws_source_free(s);
	profile_close(&p);
	return error;
}

static bool env_true(const char *name)
{
	const char *v = env(name);
	return v && strcasecmp(v, "true") == 0;
}

/*
 * The chain (config.h), up to the instance metadata service, which is
 * picked when nothing else is there and it is not disabled.
 */
static int resolve_source(kiln_aws_source **out, char **notes, const profile *p,
			  const kiln_aws_imds_config *imds)
{
	const char *token_file, *container;
	int found;

	*out = NULL;
	if ((found = env_keys(out)) != 0)
		return found < 0 ? found : 0;
	if (has_role_config(p)) {
		visited seen = { { NULL }, 0 };
		return role_source(out, p->f, p->name, &seen);
	}
	if ((token_file = env("AWS_WEB_IDENTITY_TOKEN_FILE"))) {
		const char *arn = env("AWS_ROLE_ARN");
		if (!arn)
			return kiln_error_set(KILN_EINVALID,
					      "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not");
		return web_identity_source(out, token_file, arn, env("AWS_ROLE_SESSION_NAME"), p->name, true);
	}
	if ((found = profile_chain(out, p, true)) != 0)
		return found < 0 ? found : 0;
	container = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") ? "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
		    : env("AWS_CONTAINER_CREDENTIALS_FULL_URI") ? "AWS_CONTAINER_CREDENTIALS_FULL_URI"
								 : NULL;
	if (container && !(*notes = kiln_strdupf("%s is set, but kiln does not read ECS container "
						  "credentials: skipped", container)))
		return KILN_ENOMEM;
	if (!imds->disabled)
		return imds_source(out, container ? "; ECS container credentials skipped" : NULL);
	return kiln_error_set(KILN_EINVALID,
			      "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
			      "or AWS_PROFILE to a profile with keys in '%s' (profile '%s' has none)%s%s",
			      p->f->creds.path, p->name,
			      container ? "; " : "", container ? *notes : "");
}

/* ---- region and endpoints ---------------------------------------------- */

/* A region names a host label: lowercase letters, digits and '-'. */
static bool valid_region(const char *r)
{
	const char *s;
	if (!*r || strlen(r) > 64)
		return false;
	for (s = r; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
			return false;
	return true;
}

static int resolve_region(kiln_aws_config *cfg, const char *given, const profile *p,
			  kiln_aws_region_hook hook, void *hook_ctx)
{
	const char *r = given && *given ? given : NULL, *from = "the file's \"region\"";
	char *asked = NULL;
	int error = 0;

	if (!r && (r = env("AWS_REGION")))
		from = "AWS_REGION";
	if (!r && (r = env("AWS_DEFAULT_REGION")))
		from = "AWS_DEFAULT_REGION";
	if (!r && (r = profile_get(p, "region")))
		from = "the profile's region";
	if (!r && hook && !cfg->imds.disabled) {
		/* an instance knows where it is; a laptop pays one short timeout */
		if ((error = hook(hook_ctx, cfg, &asked)) == 0) {
			r = asked;
			from = "the instance metadata service";
		} else if (error == KILN_ECANCELLED) {
			return error;
		}
	}
	if (!r)
		return kiln_error_set(KILN_EINVALID,
				      "no AWS region: set AWS_REGION (or \"region\" in the template or "
				      "fleet file, or region in profile '%s' of '%s')",
				      p->name, p->f->config.path);
	if (!valid_region(r))
		error = kiln_error_set(KILN_EINVALID, "region '%s' (from %s) is not a region name", r, from);
	else
		error = (cfg->region = kiln_strdup(r)) ? 0 : KILN_ENOMEM;
	free(asked);
	return error;
}

/* http(s)://host[:port][/path], kept without its trailing '/'. */
static int endpoint_dup(char **out, const char *url, const char *from)
{
	size_t len = strlen(url), i;
	const char *host;

	/*
	 * No control characters: curl would refuse the url only later, and the
	 * messages below quote it, which must stay one printable line.
	 */
	for (i = 0; i < len; i++)
		if ((unsigned char)url[i] < 0x20 || url[i] == 0x7f)
			return kiln_error_set(KILN_EINVALID,
					      "%s is not a url kiln can use: it holds a control character", from);
	if (strncasecmp(url, "https://", 8) == 0)
		host = url + 8;
	else if (strncasecmp(url, "http://", 7) == 0)
		host = url + 7;
	else
		return kiln_error_set(KILN_EINVALID, "%s '%s' is not an http:// or https:// url", from, url);
	if (!*host || *host == '/' || strpbrk(url, " ?#"))
		return kiln_error_set(KILN_EINVALID, "%s '%s' is not a url kiln can use", from, url);
	while (len && url[len - 1] == '/')
		len--;
	return (*out = kiln_view_dup((kiln_view){ url, len })) ? 0 : KILN_ENOMEM;
}

static int resolve_endpoints(kiln_aws_config *cfg, const profile *p)
{
	bool ignore = env_true("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS") ||
		      (profile_get(p, "ignore_configured_endpoint_urls") &&
		       strcasecmp(profile_get(p, "ignore_configured_endpoint_urls"), "true") == 0);
	const char *global = ignore ? NULL : env("AWS_ENDPOINT_URL");
	const char *prof = ignore ? NULL : profile_get(p, "endpoint_url");
	/* China's partition has its own domain */
	const char *domain = strncmp(cfg->region, "cn-", 3) == 0 ? "amazonaws.com.cn" : "amazonaws.com";
	int i, error;

	for (i = 0; i < KILN_AWS_SERVICE_COUNT; i++) {
		char var[64];
		const char *url;
		snprintf(var, sizeof(var), "AWS_ENDPOINT_URL_%s", services[i].env_suffix);
		if (!ignore && (url = env(var)))
			error = endpoint_dup(&cfg->endpoints[i], url, var);
		else if (global)
			error = endpoint_dup(&cfg->endpoints[i], global, "AWS_ENDPOINT_URL");
		else if (prof)
			error = endpoint_dup(&cfg->endpoints[i], prof, "the profile's endpoint_url");
		else
			error = (cfg->endpoints[i] = kiln_strdupf("https://%s.%s.%s", services[i].endpoint_prefix,
								  cfg->region, domain)) ? 0 : KILN_ENOMEM;
		if (error < 0)
			return error;
	}
	return 0;
}

/*
 * The instance metadata service's settings, botocore's names: the
 * environment, then the profile. One retry by default where botocore
 * makes one attempt: a lost packet should not cost an instance its
 * credentials, and a laptop pays at most two short timeouts.
 */
static int resolve_imds(kiln_aws_imds_config *m, const profile *p)
{
	const char *v, *mode;
	int64_t n;
	int error;

	m->disabled = env_true("AWS_EC2_METADATA_DISABLED");
	m->timeout_ms = 1000;
	m->attempts = 2;
	if ((v = env("AWS_METADATA_SERVICE_TIMEOUT")) || (v = profile_get(p, "metadata_service_timeout"))) {
		if (kiln_parse_i64(&n, v, 1, 3600) < 0)
			return kiln_error_set(KILN_EINVALID,
					      "metadata_service_timeout '%s' is not a number of seconds (1-3600)", v);
		m->timeout_ms = (uint64_t)n * 1000;
	}
	if ((v = env("AWS_METADATA_SERVICE_NUM_ATTEMPTS")) ||
	    (v = profile_get(p, "metadata_service_num_attempts"))) {
		if (kiln_parse_i64(&n, v, 1, 10) < 0)
			return kiln_error_set(KILN_EINVALID,
					      "metadata_service_num_attempts '%s' is not a number from 1 to 10", v);
		m->attempts = (unsigned)n;
	}
	if ((v = env("AWS_EC2_METADATA_SERVICE_ENDPOINT")))
		return endpoint_dup(&m->endpoint, v, "AWS_EC2_METADATA_SERVICE_ENDPOINT");
	if ((v = profile_get(p, "ec2_metadata_service_endpoint")))
		return endpoint_dup(&m->endpoint, v, "the profile's ec2_metadata_service_endpoint");
	mode = env("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE");
	if (!mode)
		mode = profile_get(p, "ec2_metadata_service_endpoint_mode");
	if (mode && strcasecmp(mode, "IPv6") && strcasecmp(mode, "IPv4"))
		return kiln_error_set(KILN_EINVALID,
				      "ec2_metadata_service_endpoint_mode '%s' is not IPv4 or IPv6", mode);
	error = (m->endpoint = kiln_strdup(mode && !strcasecmp(mode, "IPv6") ? "http://[fd00:ec2::254]"
									     : "http://169.254.169.254"))
			? 0
			: KILN_ENOMEM;
	return error;
}

/* ---- all of it --------------------------------------------------------- */

int kiln_aws_config_resolve(kiln_aws_config *out, const char *region, const kiln_view *creds_text,
			    const kiln_view *config_text, kiln_aws_region_hook region_hook,
			    void *hook_ctx)
{
	const char *explicit_profile = env("AWS_PROFILE");
	const char *ca;
	files f;
	profile p;
	int error;

	memset(out, 0, sizeof(*out));
	if (!(out->profile = kiln_strdup(explicit_profile ? explicit_profile : "default")))
		return KILN_ENOMEM;
	if ((error = files_load(&f, creds_text, config_text)) < 0) {
		kiln_aws_config_release(out);
		return error;
	}
	profile_open(&p, &f, out->profile);
	/* a named profile that is nowhere is a typo, as the CLI says */
	if (explicit_profile && !profile_exists(&p)) {
		error = kiln_error_set(KILN_EINVALID, "AWS_PROFILE names profile '%s', which is in neither '%s' nor '%s'",
				       out->profile, f.creds.path, f.config.path);
		goto done;
	}
	if ((error = resolve_imds(&out->imds, &p)) < 0 ||
	    (error = resolve_source(&out->source, &out->notes, &p, &out->imds)) < 0 ||
	    (error = resolve_region(out, region, &p, region_hook, hook_ctx)) < 0 ||
	    (error = resolve_endpoints(out, &p)) < 0)
		goto done;
	/* static keys are the configuration's own; other sources fill in only the description */
	if (out->source->kind == KILN_AWS_SOURCE_STATIC) {
		const kiln_aws_credentials *k = &out->source->keys;
		if ((error = set_keys(&out->credentials, k->access_key_id, k->secret_access_key,
				      k->session_token, out->source->description)) < 0)
			goto done;
	} else {
		snprintf(out->credentials.source, sizeof(out->credentials.source), "%s",
			 out->source->description);
	}
	ca = env("AWS_CA_BUNDLE");
	if (!ca)
		ca = profile_get(&p, "ca_bundle");
	if (ca && !(out->ca_bundle = expand_home(ca))) {
		error = KILN_ENOMEM;
		goto done;
	}
	error = 0;
done:
	profile_close(&p);
	files_release(&f);
	if (error < 0)
		kiln_aws_config_release(out);
	return error;
}

int kiln_aws_config_load_text(kiln_aws_config *out, const char *region, kiln_view credentials,
			      kiln_view config)
{
	return kiln_aws_config_resolve(out, region, &credentials, &config, NULL, NULL);
}

void kiln_aws_config_release(kiln_aws_config *cfg)
{
	int i;
	if (!cfg)
		return;
	/* the provider first: it may borrow the rest */
	kiln_aws_creds_provider_free(cfg->provider);
	free(cfg->profile);
	free(cfg->region);
	for (i = 0; i < KILN_AWS_SERVICE_COUNT; i++)
		free(cfg->endpoints[i]);
	free(cfg->ca_bundle);
	kiln_aws_credentials_release(&cfg->credentials);
	kiln_aws_source_free(cfg->source);
	free(cfg->imds.endpoint);
	free(cfg->notes);
	memset(cfg, 0, sizeof(*cfg));
}
