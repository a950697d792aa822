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

/* ---- the profile ------------------------------------------------------- */

/*
 * A profile is "[NAME]" in the credentials file and "[profile NAME]" in the
 * config file, where the default profile may also be plain "[default]".
 * A header like "[profile   web]" is accepted as the CLI does.
 */
typedef struct profile {
	const char *name;
	ini_file creds;   /* the credentials file */
	ini_file config;  /* the config file */
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

/* A setting of the profile: the credentials file wins over the config file (as in botocore). */
static const char *profile_get(const profile *p, const char *key)
{
	const char *v = ini_get(&p->creds, p->name, key);
	if (!v && p->config_section)
		v = ini_get(&p->config, p->config_section, key);
	return v && *v ? v : NULL;
}

static void profile_release(profile *p)
{
	ini_release(&p->creds);
	ini_release(&p->config);
	free(p->config_section);
	memset(p, 0, sizeof(*p));
}

/* creds_text, config_text: the files' texts, or NULL to read the files (ini_load) */
static int profile_load(profile *p, const char *name, const kiln_view *creds_text,
			const kiln_view *config_text)
{
	const char *creds_path = env("AWS_SHARED_CREDENTIALS_FILE");
	const char *config_path = env("AWS_CONFIG_FILE");
	int error;

	memset(p, 0, sizeof(*p));
	p->name = name;
	if ((error = ini_load(&p->creds, creds_path ? creds_path : "~/.aws/credentials",
			      creds_text)) < 0 ||
	    (error = ini_load(&p->config, config_path ? config_path : "~/.aws/config",
			      config_text)) < 0)
		goto fail;
	p->config_section = find_config_section(&p->config, name);
	return 0;
fail:
	profile_release(p);
	return error;
}

static bool profile_exists(const profile *p)
{
	return ini_has_section(&p->creds, p->name) || p->config_section;
}

/* ---- credentials ------------------------------------------------------- */

static int set_credentials(kiln_aws_credentials *c, const char *id, const char *secret,
			   const char *token, const char *source)
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

/* Keys from one file's section; 1 when found, 0 when that section has none. */
static int credentials_from(kiln_aws_credentials *c, const ini_file *f, const char *section,
			    const char *profile_name, const char *what)
{
	const char *id, *secret, *token;
	char source[64];

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
	snprintf(source, sizeof(source), "profile %s (%s)", profile_name, what);
	int error = set_credentials(c, id, secret, token && *token ? token : NULL, source);
	return error < 0 ? error : 1;
}

static int resolve_credentials(kiln_aws_credentials *c, const profile *p)
{
	const char *id = env("AWS_ACCESS_KEY_ID"), *secret = env("AWS_SECRET_ACCESS_KEY");
	const char *token = env("AWS_SESSION_TOKEN");
	int found;

	if (!token)
		token = env("AWS_SECURITY_TOKEN"); /* the older name, still honoured by the CLI */
	if (id || secret) {
		if (!id || !secret)
			return kiln_error_set(KILN_EINVALID, "%s is set but %s is not",
					      id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
					      id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
		return set_credentials(c, id, secret, token, "environment");
	}
	found = credentials_from(c, &p->creds, ini_has_section(&p->creds, p->name) ? p->name : NULL,
				 p->name, "credentials file");
	if (found == 0)
		found = credentials_from(c, &p->config, p->config_section, p->name, "config file");
	if (found < 0)
		return found;
	if (found == 0)
		return kiln_error_set(KILN_EINVALID,
				      "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
				      "or AWS_PROFILE to a profile with keys in '%s' (profile '%s' has none)",
				      p->creds.path, p->name);
	return 0;
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

static int resolve_region(char **out, const char *given, const profile *p)
{
	const char *r = given && *given ? given : NULL, *from = "the file's \"region\"";

	if (!r && (r = env("AWS_REGION")))
		from = "AWS_REGION";
	if (!r && (r = env("AWS_DEFAULT_REGION")))
		from = "AWS_DEFAULT_REGION";
	if (!r && (r = profile_get(p, "region")))
		from = "the profile's region";
	if (!r)
		return kiln_error_set(KILN_EINVALID,
				      "no AWS region: set AWS_REGION (or \"region\" in the template or "
				      "fleet file, or region in profile '%s' of '%s')",
				      p->name, p->config.path);
	if (!valid_region(r))
		return kiln_error_set(KILN_EINVALID, "region '%s' (from %s) is not a region name", r, from);
	return (*out = kiln_strdup(r)) ? 0 : KILN_ENOMEM;
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

static bool env_true(const char *name)
{
	const char *v = env(name);
	return v && strcasecmp(v, "true") == 0;
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

/* ---- all of it --------------------------------------------------------- */

static int config_load(kiln_aws_config *out, const char *region, const kiln_view *creds_text,
		       const kiln_view *config_text)
{
	const char *explicit_profile = env("AWS_PROFILE");
	const char *ca;
	profile p;
	int error;

	memset(out, 0, sizeof(*out));
	if (!(out->profile = kiln_strdup(explicit_profile ? explicit_profile : "default")))
		return KILN_ENOMEM;
	if ((error = profile_load(&p, out->profile, creds_text, config_text)) < 0) {
		kiln_aws_config_release(out);
		return error;
	}
	/* a named profile that is nowhere is a typo, as the CLI says */
	if (explicit_profile && !profile_exists(&p)) {
		error = kiln_error_set(KILN_EINVALID, "AWS_PROFILE names profile '%s', which is in neither '%s' nor '%s'",
				       out->profile, p.creds.path, p.config.path);
		goto done;
	}
	if ((error = resolve_credentials(&out->credentials, &p)) < 0 ||
	    (error = resolve_region(&out->region, region, &p)) < 0 ||
	    (error = resolve_endpoints(out, &p)) < 0)
		goto done;
	ca = env("AWS_CA_BUNDLE");
	if (!ca)
		ca = profile_get(&p, "ca_bundle");
	if (ca && !(out->ca_bundle = expand_home(ca))) {
		error = KILN_ENOMEM;
		goto done;
	}
	error = 0;
done:
	profile_release(&p);
	if (error < 0)
		kiln_aws_config_release(out);
	return error;
}

int kiln_aws_config_load(kiln_aws_config *out, const char *region)
{
	return config_load(out, region, NULL, NULL);
}

int kiln_aws_config_load_text(kiln_aws_config *out, const char *region, kiln_view credentials,
			      kiln_view config)
{
	return config_load(out, region, &credentials, &config);
}

void kiln_aws_config_release(kiln_aws_config *cfg)
{
	int i;
	if (!cfg)
		return;
	free(cfg->profile);
	free(cfg->region);
	for (i = 0; i < KILN_AWS_SERVICE_COUNT; i++)
		free(cfg->endpoints[i]);
	free(cfg->ca_bundle);
	kiln_aws_credentials_release(&cfg->credentials);
	memset(cfg, 0, sizeof(*cfg));
}
