#include "builder/template.h"

#include <arpa/inet.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/instance_options.h"
#include "core/json.h"
#include "core/registry.h"

/* What an expression may do in a given field. */
enum {
	X_VERSION = 1 << 0, /* {{version}} stays literal until kiln_template_set_version */
	X_DOT = 1 << 1,     /* {{.Path}} / {{.Vars}} pass through (execute_command) */
	X_NOVAR = 1 << 2,   /* variable defaults: no {{var}} (no ordering between them) */
};

#define VERSION_EXPR "{{version}}"
#define DEFAULT_EXECUTE_COMMAND "chmod +x {{.Path}}; {{.Vars}} {{.Path}}"

struct ctx {
	const kiln_jdoc *doc;
	json_t *root;
	json_t *block;   /* the chosen provider's block, or NULL */
	json_t *vars;    /* NAME -> string, after defaults, --var-file and --var */
	kiln_template *t;
};

/* Keys a provider block may override: all but name, provider, variables, provisioners. */
#define OVERRIDE_KEYS                                                                        \
	"description", "source_image", "source_image_filter", "instance_type", "subnet_id",   \
		"region", "iam_instance_profile", "user_data", "ssh_username", "ssh_port",    \
		"ssh_interface", "ssh_host", "ssh_timeout_s", "temporary_cidrs",              \
		"launch_timeout_s", "image_timeout_s", "build_timeout_s", "tags",             \
		"keep_versions", "ssm_parameter"

/* What only the aws provider has: image and instance options (docs/templates.md, "AWS options"). */
#define AWS_KEYS                                                                                 \
	KILN_INSTANCE_OPTION_KEYS, "imds_support", "encrypt_boot", "kms_key_id", "ami_regions",    \
		"region_kms_key_ids", "ami_users", "ami_groups", "snapshot_users", "snapshot_groups", \
		"deprecate_at"

static const char *const top_keys[] = { "name", "provider", "variables", "provisioners", "aws",
					"local", OVERRIDE_KEYS, NULL };
/* launch_options are provider-specific, so they live only in a provider block */
static const char *const block_keys[] = { OVERRIDE_KEYS, "launch_options", NULL };
static const char *const aws_block_keys[] = { OVERRIDE_KEYS, "launch_options", AWS_KEYS, NULL };
static const char *const aws_keys[] = { AWS_KEYS, NULL };
/* launch_options members that the aws block's own keys set */
static const char *const aws_launch_members[] = { "metadata_options", "root_volume",
						  "encrypt_volumes", NULL };
static const char *const filter_keys[] = { "owners", "name", "tags", NULL };
static const char *const shell_keys[] = { "type", "inline", "script", "scripts",
					  "environment_vars", "execute_command",
					  "expect_disconnect", "only", NULL };
static const char *const file_keys[] = { "type", "source", "destination", "only", NULL };

/* ---- small checks ---- */

static bool is_ident(const char *s, bool dash_ok)
{
	size_t i;
	if (!*s || (*s >= '0' && *s <= '9'))
		return false;
	for (i = 0; s[i]; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || (dash_ok && c == '-')))
			return false;
	}
	return true;
}

bool kiln_host_is_loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;
	if (!host)
		return false;
	if (!strcmp(host, "localhost"))
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return false;
}

int kiln_cidr_check(const char *cidr)
{
	char addr[64];
	unsigned char bytes[16];
	const char *slash = strchr(cidr, '/');
	int64_t prefix;
	int family, bits, i;
	size_t alen;

	if (!slash)
		return kiln_error_set(KILN_EINVALID, "'%s' is not a CIDR: add a prefix length, e.g. '%s/32'",
				      cidr, cidr);
	alen = (size_t)(slash - cidr);
	if (alen == 0 || alen >= sizeof(addr))
		return kiln_error_set(KILN_EINVALID, "'%s' is not a CIDR", cidr);
	memcpy(addr, cidr, alen);
	addr[alen] = '\0';
	if (inet_pton(AF_INET, addr, bytes) == 1) {
		family = 4;
		bits = 32;
	} else if (inet_pton(AF_INET6, addr, bytes) == 1) {
		family = 6;
		bits = 128;
	} else {
		return kiln_error_set(KILN_EINVALID, "'%s' is not a CIDR: '%s' is not an IP address",
				      cidr, addr);
	}
	if (kiln_parse_i64(&prefix, slash + 1, 0, bits) < 0)
		return kiln_error_set(KILN_EINVALID,
				      "'%s' is not a CIDR: the prefix length must be 0 to %d", cidr, bits);
	/* a set host bit usually means a typo in the prefix: say which network was meant */
	for (i = (int)prefix; i < bits; i++) {
		if (bytes[i / 8] & (0x80 >> (i % 8))) {
			char net[INET6_ADDRSTRLEN];
			int j;
			for (j = (int)prefix; j < bits; j++)
				bytes[j / 8] &= (unsigned char)~(0x80 >> (j % 8));
			inet_ntop(family == 4 ? AF_INET : AF_INET6, bytes, net, sizeof(net));
			return kiln_error_set(KILN_EINVALID,
					      "'%s' has host bits set (did you mean '%s/%lld'?)", cidr,
					      net, (long long)prefix);
		}
	}
	return 0;
}

/* ---- expressions ---- */

/* The message so far, re-set as a positioned error at container[key|index]. */
static int positioned(struct ctx *c, const json_t *container, const char *key, size_t index)
{
	char msg[sizeof(kiln_error_last()->message)];
	snprintf(msg, sizeof(msg), "%s", kiln_error_last()->message);
	return kiln_jdoc_error(c->doc, container, key, index, "%s", msg);
}

static const char *field_name(const char *key, char *tmp, size_t size, size_t index)
{
	if (key)
		return key;
	snprintf(tmp, size, "element %zu", index + 1);
	return tmp;
}

/*
 * Expands {{...}} in text (the value of container[key] or container[index])
 * into a new heap string.
 */
static int expand(struct ctx *c, const json_t *container, const char *key, size_t index,
		  const char *text, unsigned flags, char **out)
{
	kiln_buf b = KILN_BUF_INIT;
	const char *p = text, *open;
	char fname[32];
	const char *what = field_name(key, fname, sizeof(fname), index);
	int error = 0;

	*out = NULL;
	while ((open = strstr(p, "{{"))) {
		const char *close = strstr(open + 2, "}}");
		char expr[256], word[256], arg[256] = "";
		size_t n;
		int got;

		if ((error = kiln_buf_put(&b, p, (size_t)(open - p))) < 0)
			goto done;
		if (!close) {
			error = kiln_jdoc_error(c->doc, container, key, index,
						"unterminated \"{{\" in \"%s\"", what);
			goto done;
		}
		n = (size_t)(close - open - 2);
		if (n >= sizeof(expr)) {
			error = kiln_jdoc_error(c->doc, container, key, index,
						"expression too long in \"%s\"", what);
			goto done;
		}
		memcpy(expr, open + 2, n);
		expr[n] = '\0';
		got = sscanf(expr, " %255s %255s %*s", word, arg);
		{
			/* a third word is an error too: "{{var a b}}" */
			char extra[8];
			if (sscanf(expr, " %*s %*s %7s", extra) == 1)
				got = -1;
		}
		if (got >= 1 && (!strcmp(word, "var") || !strcmp(word, "user")) && got == 2) {
			json_t *v;
			/* Packer writes {{user `name`}} */
			size_t al = strlen(arg);
			char *name = arg;
			if (al >= 2 && ((arg[0] == '`' && arg[al - 1] == '`') ||
					(arg[0] == '"' && arg[al - 1] == '"'))) {
				arg[al - 1] = '\0';
				name = arg + 1;
			}
			if (flags & X_NOVAR) {
				error = kiln_jdoc_error(c->doc, container, key, index,
							"a variable's default cannot use {{var %s}}", name);
				goto done;
			}
			if (!(v = json_object_get(c->vars, name))) {
				error = kiln_jdoc_error(c->doc, container, key, index,
							"undefined variable \"%s\" in \"%s\" (declare it in \"variables\")",
							name, what);
				goto done;
			}
			error = kiln_buf_puts(&b, json_string_value(v));
		} else if (got == 2 && !strcmp(word, "env")) {
			const char *v;
			if (!is_ident(arg, false)) {
				error = kiln_jdoc_error(c->doc, container, key, index,
							"bad environment variable name \"%s\" in \"%s\"", arg, what);
				goto done;
			}
			if (!(v = getenv(arg))) {
				error = kiln_jdoc_error(c->doc, container, key, index,
							"environment variable \"%s\" is not set (used in \"%s\")",
							arg, what);
				goto done;
			}
			error = kiln_buf_puts(&b, v);
		} else if (got == 1 && !strcmp(word, "timestamp")) {
			error = kiln_buf_printf(&b, "%lld", (long long)c->t->timestamp);
		} else if (got == 1 && !strcmp(word, "version")) {
			if (!(flags & X_VERSION)) {
				error = kiln_jdoc_error(c->doc, container, key, index,
							"{{version}} cannot be used in \"%s\": it is not known yet there",
							what);
				goto done;
			}
			error = kiln_buf_puts(&b, VERSION_EXPR);
		} else if (got == 1 && (flags & X_DOT) &&
			   (!strcmp(word, ".Path") || !strcmp(word, ".Vars"))) {
			error = kiln_buf_printf(&b, "{{%s}}", word);
		} else {
			error = kiln_jdoc_error(c->doc, container, key, index,
						"unknown expression \"{{%s}}\" in \"%s\" (known: {{var NAME}}, {{env NAME}}, {{timestamp}}, {{version}})",
						expr, what);
			goto done;
		}
		if (error < 0)
			goto done;
		p = close + 2;
	}
	if ((error = kiln_buf_puts(&b, p)) < 0)
		goto done;
	/* an expanded value with a NUL would be cut short without anyone noticing */
	if (strlen(b.ptr) != b.len) {
		error = kiln_jdoc_error(c->doc, container, key, index, "\"%s\" holds a NUL byte", what);
		goto done;
	}
	*out = kiln_buf_detach(&b);
	if (!*out)
		error = kiln_error_set(KILN_ENOMEM, "out of memory");
done:
	kiln_buf_release(&b);
	return error;
}

/* Replaces every {{version}} in *s. */
static int subst_version(char **s, int64_t version)
{
	kiln_buf b = KILN_BUF_INIT;
	const char *p, *hit;
	int error = 0;

	if (!*s || !strstr(*s, VERSION_EXPR))
		return 0;
	for (p = *s; (hit = strstr(p, VERSION_EXPR)); p = hit + strlen(VERSION_EXPR)) {
		if ((error = kiln_buf_put(&b, p, (size_t)(hit - p))) < 0 ||
		    (error = kiln_buf_printf(&b, "%lld", (long long)version)) < 0)
			goto done;
	}
	if ((error = kiln_buf_puts(&b, p)) < 0)
		goto done;
	free(*s);
	*s = kiln_buf_detach(&b);
done:
	kiln_buf_release(&b);
	return error;
}

/* ---- typed members, with the provider block overriding the top level ---- */

static json_t *pick(struct ctx *c, const char *key)
{
	if (c->block && json_object_get(c->block, key))
		return c->block;
	return c->root;
}

static int get_str(struct ctx *c, const char *key, bool required, unsigned flags, char **out)
{
	json_t *obj = pick(c, key);
	const char *s = NULL;
	int error;

	if ((error = kiln_jdoc_get_string(c->doc, obj, key, required, &s)) < 0 || !s)
		return error;
	if (!*s)
		return kiln_jdoc_error(c->doc, obj, key, 0, "\"%s\" must not be empty", key);
	return expand(c, obj, key, 0, s, flags, out);
}

static int get_int(struct ctx *c, const char *key, int64_t min, int64_t max, int64_t *out)
{
	return kiln_jdoc_get_int(c->doc, pick(c, key), key, false, min, max, out);
}

/* A local path: expanded, resolved against the template's directory, checked. */
static int get_path(struct ctx *c, const json_t *container, const char *key, size_t index,
		    const char *raw, bool dir_ok, char **out)
{
	kiln_buf full = KILN_BUF_INIT;
	char *expanded = NULL;
	struct stat st;
	int error;

	*out = NULL;
	if ((error = expand(c, container, key, index, raw, 0, &expanded)) < 0)
		goto done;
	if (!*expanded) {
		error = kiln_jdoc_error(c->doc, container, key, index, "empty path");
		goto done;
	}
	if ((error = kiln_path_join(&full, c->t->dir, expanded)) < 0)
		goto done;
	if (stat(full.ptr, &st) < 0) {
		error = kiln_jdoc_error(c->doc, container, key, index, "cannot read '%s': %s",
					full.ptr, strerror(errno));
		goto done;
	}
	if (S_ISDIR(st.st_mode) ? !dir_ok : !S_ISREG(st.st_mode)) {
		error = kiln_jdoc_error(c->doc, container, key, index, "'%s' is not a %s", full.ptr,
					dir_ok ? "file or directory" : "regular file");
		goto done;
	}
	if (access(full.ptr, R_OK) < 0) {
		error = kiln_jdoc_error(c->doc, container, key, index, "cannot read '%s': %s",
					full.ptr, strerror(errno));
		goto done;
	}
	*out = kiln_buf_detach(&full);
	error = *out ? 0 : KILN_ENOMEM;
done:
	free(expanded);
	kiln_buf_release(&full);
	return error;
}

/* ---- variables ---- */

static int load_variables(struct ctx *c, const kiln_template_options *opts)
{
	json_t *decl = NULL, *v;
	const char *k;
	kiln_jdoc *vf = NULL;
	size_t i;
	int error;

	if (!(c->vars = json_object()))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	if ((error = kiln_jdoc_get_object(c->doc, c->root, "variables", false, &decl)) < 0)
		return error;
	if (decl) {
		json_object_foreach(decl, k, v) {
			char *val;
			if (!is_ident(k, true))
				return kiln_jdoc_error_at(c->doc, kiln_jdoc_key_pos(c->doc, decl, k),
							  "bad variable name \"%s\" (letters, digits, _ and -)", k);
			if (json_is_null(v))
				continue; /* required: must be set below */
			if (!json_is_string(v))
				return kiln_jdoc_error(c->doc, decl, k, 0,
						       "variable \"%s\" must default to a string (or null: required), not %s",
						       k, kiln_json_type_name(v));
			if ((error = expand(c, decl, k, 0, json_string_value(v), X_NOVAR, &val)) < 0)
				return error;
			json_object_set_new(c->vars, k, json_string(val));
			free(val);
		}
	}
	if (opts && opts->var_file) {
		json_t *r;
		if ((error = kiln_jdoc_load(&vf, opts->var_file)) < 0)
			return error;
		r = kiln_jdoc_root(vf);
		if (!json_is_object(r)) {
			error = kiln_jdoc_error(vf, NULL, NULL, 0,
						"a var file must be an object of NAME: \"value\", not %s",
						kiln_json_type_name(r));
			goto done;
		}
		json_object_foreach(r, k, v) {
			if (!decl || !json_object_get(decl, k)) {
				error = kiln_jdoc_error_at(vf, kiln_jdoc_key_pos(vf, r, k),
							   "variable \"%s\" is not declared in %s", k,
							   kiln_jdoc_name(c->doc));
				goto done;
			}
			if (!json_is_string(v)) {
				error = kiln_jdoc_error(vf, r, k, 0, "variable \"%s\" must be a string, not %s",
							k, kiln_json_type_name(v));
				goto done;
			}
			json_object_set(c->vars, k, v);
		}
	}
	for (i = 0; opts && i < opts->n_vars; i++) {
		const char *kv = opts->vars[i], *eq = strchr(kv, '=');
		char name[128];
		if (!eq || eq == kv || (size_t)(eq - kv) >= sizeof(name)) {
			error = kiln_error_set(KILN_EINVALID, "--var '%s': expected KEY=VALUE", kv);
			goto done;
		}
		memcpy(name, kv, (size_t)(eq - kv));
		name[eq - kv] = '\0';
		if (!decl || !json_object_get(decl, name)) {
			error = kiln_error_set(KILN_EINVALID, "--var '%s': variable \"%s\" is not declared in %s",
					       kv, name, kiln_jdoc_name(c->doc));
			goto done;
		}
		json_object_set_new(c->vars, name, json_string(eq + 1));
	}
	if (decl) {
		json_object_foreach(decl, k, v) {
			if (!json_object_get(c->vars, k)) {
				error = kiln_jdoc_error(c->doc, decl, k, 0,
							"variable \"%s\" has no default: set it with --var %s=VALUE or --var-file",
							k, k);
				goto done;
			}
		}
	}
	error = 0;
done:
	kiln_jdoc_free(vf);
	return error;
}

/* ---- the pieces ---- */

static int parse_source(struct ctx *c)
{
	kiln_template *t = c->t;
	/* the pair is one setting: a block naming either replaces both */
	json_t *obj = c->block && (json_object_get(c->block, "source_image") ||
				   json_object_get(c->block, "source_image_filter")) ?
			      c->block : c->root;
	json_t *filter = NULL, *owners = NULL, *tags = NULL, *v;
	const char *s = NULL, *k;
	size_t i;
	int error;

	if ((error = kiln_jdoc_get_string(c->doc, obj, "source_image", false, &s)) < 0 ||
	    (error = kiln_jdoc_get_object(c->doc, obj, "source_image_filter", false, &filter)) < 0)
		return error;
	if (s && filter)
		return kiln_jdoc_error_at(c->doc, kiln_jdoc_key_pos(c->doc, obj, "source_image_filter"),
					  "set \"source_image\" or \"source_image_filter\", not both");
	if (!s && !filter)
		return kiln_jdoc_error(c->doc, obj, "source_image", 0,
				       "missing required key \"source_image\" (an image id) or \"source_image_filter\"");
	if (s) {
		if (!*s)
			return kiln_jdoc_error(c->doc, obj, "source_image", 0,
					       "\"source_image\" must not be empty");
		return expand(c, obj, "source_image", 0, s, 0, &t->source_image);
	}
	t->has_source_filter = true;
	if ((error = kiln_jdoc_check_keys(c->doc, filter, "source_image_filter", filter_keys)) < 0 ||
	    (error = kiln_jdoc_get_string_array(c->doc, filter, "owners", false, &owners)) < 0 ||
	    (error = kiln_jdoc_get_string(c->doc, filter, "name", false, &s)) < 0 ||
	    (error = kiln_jdoc_get_string_map(c->doc, filter, "tags", &tags)) < 0)
		return error;
	if (!s && (!tags || !json_object_size(tags)))
		return kiln_jdoc_error(c->doc, obj, "source_image_filter", 0,
				       "\"source_image_filter\" needs a \"name\" pattern or \"tags\"");
	if (s && (error = expand(c, filter, "name", 0, s, 0, &t->filter_name)) < 0)
		return error;
	json_array_foreach(owners, i, v) {
		char *o;
		if ((error = expand(c, owners, NULL, i, json_string_value(v), 0, &o)) < 0)
			return error;
		error = kiln_strings_add(&t->filter_owners, o);
		free(o);
		if (error < 0)
			return error;
	}
	json_object_foreach(tags, k, v) {
		char *val;
		if ((error = expand(c, tags, k, 0, json_string_value(v), 0, &val)) < 0)
			return error;
		error = kiln_tags_set(&t->filter_tags, k, val);
		free(val);
		if (error < 0)
			return error;
	}
	return 0;
}

static int parse_cidrs(struct ctx *c)
{
	json_t *obj = pick(c, "temporary_cidrs"), *arr = NULL, *v;
	size_t i;
	int error;

	if ((error = kiln_jdoc_get_string_array(c->doc, obj, "temporary_cidrs", false, &arr)) < 0 ||
	    !arr)
		return error;
	if (!json_array_size(arr))
		return kiln_jdoc_error(c->doc, obj, "temporary_cidrs", 0,
				       "\"temporary_cidrs\" must list at least one CIDR (leave it out for this machine's address)");
	json_array_foreach(arr, i, v) {
		char *cidr;
		if ((error = expand(c, arr, NULL, i, json_string_value(v), 0, &cidr)) < 0)
			return error;
		if ((error = kiln_cidr_check(cidr)) < 0) {
			free(cidr);
			return positioned(c, arr, NULL, i);
		}
		error = kiln_strings_add(&c->t->temporary_cidrs, cidr);
		free(cidr);
		if (error < 0)
			return error;
	}
	return 0;
}

static int parse_tags(struct ctx *c)
{
	json_t *obj = pick(c, "tags"), *m = NULL, *v;
	const char *k;
	int error;

	if ((error = kiln_jdoc_get_string_map(c->doc, obj, "tags", &m)) < 0 || !m)
		return error;
	json_object_foreach(m, k, v) {
		char *val;
		/* kiln's own tags are the registry's source of truth: no template may forge them */
		if (!strncmp(k, "kiln:", 5) || !strncmp(k, "aws:", 4) || !*k || strlen(k) > 127)
			return kiln_jdoc_error_at(c->doc, kiln_jdoc_key_pos(c->doc, m, k),
						  "tag key \"%s\" is not allowed (empty, too long, or reserved: kiln:*, aws:*)",
						  k);
		if ((error = expand(c, m, k, 0, json_string_value(v), X_VERSION, &val)) < 0)
			return error;
		error = kiln_tags_set(&c->t->tags, k, val);
		free(val);
		if (error < 0)
			return error;
	}
	return 0;
}

/* 1 if the provisioner runs on this provider, 0 if its "only" leaves it out. */
static int parse_only(struct ctx *c, json_t *p)
{
	json_t *only = NULL, *v;
	size_t i;
	int error, runs = 0;

	if ((error = kiln_jdoc_get_string_array(c->doc, p, "only", false, &only)) < 0)
		return error;
	if (!only)
		return 1;
	json_array_foreach(only, i, v) {
		const char *s = json_string_value(v);
		if (strcmp(s, "aws") && strcmp(s, "local"))
			return kiln_jdoc_error(c->doc, only, NULL, i,
					       "unknown provider \"%s\" in \"only\" (aws or local)", s);
		if (!strcmp(s, c->t->provider))
			runs = 1;
	}
	return runs;
}

static int parse_environment(struct ctx *c, json_t *p, kiln_provisioner *out)
{
	json_t *env = json_object_get(p, "environment_vars"), *v;
	const char *k;
	size_t i;
	int error;

	if (!env)
		return 0;
	if (json_is_object(env)) {
		json_object_foreach(env, k, v) {
			char *val;
			if (!is_ident(k, false))
				return kiln_jdoc_error_at(c->doc, kiln_jdoc_key_pos(c->doc, env, k),
							  "bad environment variable name \"%s\"", k);
			if (!json_is_string(v))
				return kiln_jdoc_error(c->doc, env, k, 0,
						       "\"%s\" in \"environment_vars\" must be a string, not %s",
						       k, kiln_json_type_name(v));
			if ((error = expand(c, env, k, 0, json_string_value(v), X_VERSION, &val)) < 0)
				return error;
			error = kiln_tags_set(&out->environment, k, val);
			free(val);
			if (error < 0)
				return error;
		}
		return 0;
	}
	if (!json_is_array(env))
		return kiln_jdoc_error(c->doc, p, "environment_vars", 0,
				       "\"environment_vars\" must be an object (or Packer's [\"K=V\"]), not %s",
				       kiln_json_type_name(env));
	/* Packer's form: ["KEY=value", ...] */
	json_array_foreach(env, i, v) {
		char *kv, *eq;
		if (!json_is_string(v))
			return kiln_jdoc_error(c->doc, env, NULL, i,
					       "element %zu of \"environment_vars\" must be a string, not %s",
					       i + 1, kiln_json_type_name(v));
		if ((error = expand(c, env, NULL, i, json_string_value(v), X_VERSION, &kv)) < 0)
			return error;
		eq = strchr(kv, '=');
		if (eq)
			*eq = '\0';
		if (!eq || !is_ident(kv, false)) {
			free(kv);
			return kiln_jdoc_error(c->doc, env, NULL, i,
					       "element %zu of \"environment_vars\" must be NAME=value",
					       i + 1);
		}
		error = kiln_tags_set(&out->environment, kv, eq + 1);
		free(kv);
		if (error < 0)
			return error;
	}
	return 0;
}

static int add_string(char ***items, size_t *n, char *s)
{
	char **grown = realloc(*items, (*n + 1) * sizeof(**items));
	if (!grown) {
		free(s);
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	}
	*items = grown;
	(*items)[(*n)++] = s;
	return 0;
}

static int parse_shell(struct ctx *c, const json_t *list, json_t *p, size_t idx,
		       kiln_provisioner *out)
{
	const char *const ways[] = { "inline", "script", "scripts" };
	const char *first = NULL, *s = NULL;
	json_t *arr = NULL, *v;
	char what[32];
	size_t i;
	int error;

	snprintf(what, sizeof(what), "provisioner %zu (shell)", idx + 1);
	if ((error = kiln_jdoc_check_keys(c->doc, p, what, shell_keys)) < 0)
		return error;
	for (i = 0; i < KILN_ARRAY_SIZE(ways); i++) {
		if (!json_object_get(p, ways[i]))
			continue;
		if (first)
			return kiln_jdoc_error_at(c->doc, kiln_jdoc_key_pos(c->doc, p, ways[i]),
						  "%s: \"%s\" and \"%s\" cannot both be set", what, first,
						  ways[i]);
		first = ways[i];
	}
	if (!first)
		return kiln_jdoc_error(c->doc, list, NULL, idx,
				       "%s needs \"inline\", \"script\" or \"scripts\"", what);
	if (!strcmp(first, "script")) {
		char *path;
		if ((error = kiln_jdoc_get_string(c->doc, p, "script", true, &s)) < 0 ||
		    (error = get_path(c, p, "script", 0, s, false, &path)) < 0 ||
		    (error = add_string(&out->scripts, &out->n_scripts, path)) < 0)
			return error;
	} else {
		bool is_inline = !strcmp(first, "inline");
		if ((error = kiln_jdoc_get_string_array(c->doc, p, first, true, &arr)) < 0)
			return error;
		if (!json_array_size(arr))
			return kiln_jdoc_error(c->doc, p, first, 0, "%s: \"%s\" is empty", what, first);
		json_array_foreach(arr, i, v) {
			char *x;
			error = is_inline ? expand(c, arr, NULL, i, json_string_value(v), X_VERSION, &x)
					  : get_path(c, arr, NULL, i, json_string_value(v), false, &x);
			if (error < 0 ||
			    (error = is_inline ? add_string(&out->inline_cmds, &out->n_inline, x)
					       : add_string(&out->scripts, &out->n_scripts, x)) < 0)
				return error;
		}
	}
	if ((error = parse_environment(c, p, out)) < 0)
		return error;
	s = NULL;
	if ((error = kiln_jdoc_get_string(c->doc, p, "execute_command", false, &s)) < 0)
		return error;
	if (s && !strstr(s, "{{.Path}}") && !strstr(s, "{{ .Path }}"))
		return kiln_jdoc_error(c->doc, p, "execute_command", 0,
				       "\"execute_command\" must run {{.Path}}");
	if ((error = expand(c, p, "execute_command", 0, s ? s : DEFAULT_EXECUTE_COMMAND,
			    X_VERSION | X_DOT, &out->execute_command)) < 0)
		return error;
	return kiln_jdoc_get_bool(c->doc, p, "expect_disconnect", false, &out->expect_disconnect);
}

static int parse_file(struct ctx *c, json_t *p, size_t idx, kiln_provisioner *out)
{
	const char *src = NULL, *dst = NULL;
	char what[32];
	int error;

	snprintf(what, sizeof(what), "provisioner %zu (file)", idx + 1);
	if ((error = kiln_jdoc_check_keys(c->doc, p, what, file_keys)) < 0 ||
	    (error = kiln_jdoc_get_string(c->doc, p, "source", true, &src)) < 0 ||
	    (error = kiln_jdoc_get_string(c->doc, p, "destination", true, &dst)) < 0)
		return error;
	if (!*dst)
		return kiln_jdoc_error(c->doc, p, "destination", 0, "\"destination\" must not be empty");
	if ((error = get_path(c, p, "source", 0, src, true, &out->source)) < 0)
		return error;
	return expand(c, p, "destination", 0, dst, X_VERSION, &out->destination);
}

static int parse_provisioners(struct ctx *c)
{
	kiln_template *t = c->t;
	json_t *arr = NULL, *p;
	size_t i;
	int error;

	if ((error = kiln_jdoc_get_array(c->doc, c->root, "provisioners", false, &arr)) < 0 || !arr)
		return error;
	if (!(t->provisioners = calloc(json_array_size(arr) + 1, sizeof(*t->provisioners))))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	json_array_foreach(arr, i, p) {
		kiln_provisioner *out = &t->provisioners[t->n_provisioners];
		const char *type = NULL;
		int runs;

		if (!json_is_object(p))
			return kiln_jdoc_error(c->doc, arr, NULL, i, "provisioner %zu must be an object, not %s",
					       i + 1, kiln_json_type_name(p));
		if ((error = kiln_jdoc_get_string(c->doc, p, "type", true, &type)) < 0)
			return error;
		if (!strcmp(type, "shell"))
			out->type = KILN_PROVISIONER_SHELL;
		else if (!strcmp(type, "file"))
			out->type = KILN_PROVISIONER_FILE;
		else
			return kiln_jdoc_error(c->doc, p, "type", 0,
					       "unknown provisioner type \"%s\" (shell or file)", type);
		if (!(out->label = kiln_strdupf("%s #%zu", type, i + 1)))
			return KILN_ENOMEM;
		/* counted now so that kiln_template_free releases a half-parsed one */
		t->n_provisioners++;
		error = out->type == KILN_PROVISIONER_SHELL ? parse_shell(c, arr, p, i, out)
							     : parse_file(c, p, i, out);
		if (error < 0)
			return error;
		if ((runs = parse_only(c, p)) < 0)
			return runs;
		if (!runs) {
			/* checked, but not for this provider */
			kiln_provisioner_release(out);
			t->n_provisioners--;
		}
	}
	return 0;
}

static int parse_ssm_parameter(struct ctx *c)
{
	char *s = NULL;
	size_t i;
	int error;

	if ((error = get_str(c, "ssm_parameter", false, 0, &s)) < 0 || !s)
		return error;
	c->t->ssm_parameter = s;
	for (i = 0; s[i]; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-/", s[i]))
			break;
	if (s[i] || i > 1011 || !strncmp(s, "/kiln/", 6) || !strncmp(s, "aws", 3) ||
	    !strncmp(s, "ssm", 3))
		return kiln_jdoc_error(c->doc, pick(c, "ssm_parameter"), "ssm_parameter", 0,
				       "bad \"ssm_parameter\" \"%s\": letters, digits, _ . - /; not under /kiln/, not starting aws or ssm",
				       s);
	return 0;
}

/* ---- the aws options ---- */

/* Keys only the aws block may hold, found elsewhere: say where they belong. */
static int misplaced_aws_keys(struct ctx *c, const json_t *obj, const char *where)
{
	size_t i;
	for (i = 0; aws_keys[i]; i++)
		if (json_object_get(obj, aws_keys[i]))
			return kiln_jdoc_error_at(c->doc, kiln_jdoc_key_pos(c->doc, obj, aws_keys[i]),
						  "\"%s\" is an aws option: put it in the \"aws\" block, not %s",
						  aws_keys[i], where);
	return 0;
}

/* "us-east-1", "us-gov-west-1", "ap-southeast-2": the shape, not the list (regions are added). */
static bool is_region(const char *s)
{
	size_t i, n = strlen(s);
	bool dash = false;
	if (n < 4 || n > 32 || !(s[0] >= 'a' && s[0] <= 'z') || !(s[n - 1] >= '0' && s[n - 1] <= '9'))
		return false;
	for (i = 0; i < n; i++) {
		if (s[i] == '-') {
			if (s[i + 1] == '-' || s[i + 1] == '\0')
				return false;
			dash = true;
		} else if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9'))) {
			return false;
		}
	}
	return dash;
}

static bool is_account(const char *s)
{
	size_t i;
	for (i = 0; s[i]; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return i == 12;
}

/* A KMS key id, key ARN, alias name or alias ARN: printable, no blanks (KMS checks the rest). */
static bool is_kms_key(const char *s)
{
	size_t i;
	for (i = 0; s[i]; i++)
		if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
			return false;
	return i > 0 && i <= 2048;
}

enum { LIST_REGIONS, LIST_ACCOUNTS, LIST_GROUPS };

/* An array of distinct strings of one kind, expanded, into out. */
static int get_list(struct ctx *c, const json_t *obj, const char *key, int kind, kiln_strings *out)
{
	json_t *arr = NULL, *v;
	size_t i;
	int error;

	if ((error = kiln_jdoc_get_string_array(c->doc, obj, key, false, &arr)) < 0 || !arr)
		return error;
	if (!json_array_size(arr))
		return kiln_jdoc_error(c->doc, obj, key, 0, "\"%s\" is empty: leave it out", key);
	if (kind == LIST_REGIONS && json_array_size(arr) > KILN_TEMPLATE_MAX_REGIONS)
		return kiln_jdoc_error(c->doc, obj, key, 0, "\"%s\" lists more than %d regions", key,
				       KILN_TEMPLATE_MAX_REGIONS);
	json_array_foreach(arr, i, v) {
		char *x;
		bool ok;
		if ((error = expand(c, arr, NULL, i, json_string_value(v), 0, &x)) < 0)
			return error;
		ok = kind == LIST_REGIONS ? is_region(x) : kind == LIST_ACCOUNTS ? is_account(x)
										 : !strcmp(x, "all");
		if (!ok) {
			error = kiln_jdoc_error(c->doc, arr, NULL, i, "bad %s \"%s\" in \"%s\"",
						kind == LIST_REGIONS ? "region" :
						kind == LIST_ACCOUNTS ? "account id (12 digits)" : "group (only \"all\")",
						x, key);
			free(x);
			return error;
		}
		if (kiln_strings_has(out, x)) {
			error = kiln_jdoc_error(c->doc, arr, NULL, i, "\"%s\" is listed twice in \"%s\"", x,
						key);
			free(x);
			return error;
		}
		error = kiln_strings_add(out, x);
		free(x);
		if (error < 0)
			return error;
	}
	return 0;
}

/* "2027-01-31T00:00:00Z", or "90d" / "36h" from when the image is made. */
static int parse_deprecate_at(struct ctx *c, const json_t *aws)
{
	kiln_template *t = c->t;
	const char *s = NULL;
	char *x = NULL;
	int64_t n = 0, now = kiln_clock_wall_s(), limit = 10 * 365 * 86400LL;
	size_t len;
	int error;

	if ((error = kiln_jdoc_get_string(c->doc, aws, "deprecate_at", false, &s)) < 0 || !s)
		return error;
	if ((error = expand(c, aws, "deprecate_at", 0, s, 0, &x)) < 0)
		return error;
	len = strlen(x);
	if (len >= 2 && (x[len - 1] == 'd' || x[len - 1] == 'h')) {
		char unit = x[len - 1];
		x[len - 1] = '\0';
		if (x[0] >= '0' && x[0] <= '9' && kiln_parse_i64(&n, x, 1, 10 * 365 * 24) == 0) {
			t->deprecate_after_s = n * (unit == 'd' ? 86400 : 3600);
			if (t->deprecate_after_s > limit)
				error = kiln_jdoc_error(c->doc, aws, "deprecate_at", 0,
							"\"deprecate_at\" is more than 10 years away (EC2's limit)");
			goto done;
		}
		x[len - 1] = unit;
	}
	if (kiln_parse_iso8601(&t->deprecate_at, x) < 0) {
		error = kiln_jdoc_error(c->doc, aws, "deprecate_at", 0,
					"bad \"deprecate_at\" \"%s\": a UTC time such as 2027-01-31T00:00:00Z, or a time from the build such as 90d or 36h",
					x);
	} else if (t->deprecate_at <= now) {
		error = kiln_jdoc_error(c->doc, aws, "deprecate_at", 0,
					"\"deprecate_at\" %s is in the past", x);
	} else if (t->deprecate_at - now > limit) {
		error = kiln_jdoc_error(c->doc, aws, "deprecate_at", 0,
					"\"deprecate_at\" %s is more than 10 years away (EC2's limit)", x);
	}
done:
	free(x);
	return error;
}

static int parse_aws_image(struct ctx *c, const json_t *aws)
{
	kiln_template *t = c->t;
	json_t *keys = NULL, *v;
	const char *s = NULL, *k;
	size_t i;
	int error;

	if ((error = kiln_jdoc_get_string(c->doc, aws, "imds_support", false, &s)) < 0)
		return error;
	if (s) {
		if (strcmp(s, "v2.0"))
			return kiln_jdoc_error(c->doc, aws, "imds_support", 0,
					       "unknown \"imds_support\" \"%s\" (only \"v2.0\")", s);
		if (!(t->imds_support = kiln_strdup(s)))
			return KILN_ENOMEM;
	}
	s = NULL;
	if ((error = kiln_jdoc_get_bool(c->doc, aws, "encrypt_boot", false, &t->encrypt_boot)) < 0 ||
	    (error = kiln_jdoc_get_string(c->doc, aws, "kms_key_id", false, &s)) < 0)
		return error;
	if (s) {
		if (!t->encrypt_boot)
			return kiln_jdoc_error_at(c->doc, kiln_jdoc_key_pos(c->doc, aws, "kms_key_id"),
						  "\"kms_key_id\" needs \"encrypt_boot\": true");
		if ((error = expand(c, aws, "kms_key_id", 0, s, 0, &t->kms_key_id)) < 0)
			return error;
		if (!is_kms_key(t->kms_key_id))
			return kiln_jdoc_error(c->doc, aws, "kms_key_id", 0, "bad \"kms_key_id\" \"%s\"",
					       t->kms_key_id);
	}
	if ((error = get_list(c, aws, "ami_regions", LIST_REGIONS, &t->ami_regions)) < 0 ||
	    (error = get_list(c, aws, "ami_users", LIST_ACCOUNTS, &t->ami_users)) < 0 ||
	    (error = get_list(c, aws, "ami_groups", LIST_GROUPS, &t->ami_groups)) < 0 ||
	    (error = get_list(c, aws, "snapshot_users", LIST_ACCOUNTS, &t->snapshot_users)) < 0 ||
	    (error = get_list(c, aws, "snapshot_groups", LIST_GROUPS, &t->snapshot_groups)) < 0 ||
	    (error = parse_deprecate_at(c, aws)) < 0)
		return error;
	/* the copies go elsewhere: the build's own region has the image already */
	for (i = 0; t->region && i < t->ami_regions.n; i++)
		if (!strcmp(t->ami_regions.items[i], t->region))
			return kiln_jdoc_error(c->doc, json_object_get(aws, "ami_regions"), NULL, i,
					       "\"ami_regions\" lists the build's own region \"%s\"",
					       t->region);

	if ((error = kiln_jdoc_get_string_map(c->doc, aws, "region_kms_key_ids", &keys)) < 0)
		return error;
	if (keys && !t->encrypt_boot)
		return kiln_jdoc_error_at(c->doc, kiln_jdoc_key_pos(c->doc, aws, "region_kms_key_ids"),
					  "\"region_kms_key_ids\" needs \"encrypt_boot\": true");
	json_object_foreach(keys, k, v) {
		char *x;
		if (!kiln_strings_has(&t->ami_regions, k))
			return kiln_jdoc_error_at(c->doc, kiln_jdoc_key_pos(c->doc, keys, k),
						  "\"region_kms_key_ids\" names \"%s\", which is not in \"ami_regions\"",
						  k);
		if ((error = expand(c, keys, k, 0, json_string_value(v), 0, &x)) < 0)
			return error;
		error = is_kms_key(x) ? kiln_tags_set(&t->region_kms_key_ids, k, x)
				      : kiln_jdoc_error(c->doc, keys, k, 0, "bad KMS key \"%s\" for \"%s\"", x, k);
		free(x);
		if (error < 0)
			return error;
	}
	/* a key is a key of one region: a copy elsewhere needs that region's own */
	for (i = 0; t->kms_key_id && i < t->ami_regions.n; i++)
		if (!kiln_tags_get(&t->region_kms_key_ids, t->ami_regions.items[i]))
			return kiln_jdoc_error(c->doc, json_object_get(aws, "ami_regions"), NULL, i,
					       "copying to \"%s\" needs a key of that region: add it to \"region_kms_key_ids\" (\"kms_key_id\" is a key of the build's region)",
					       t->ami_regions.items[i]);
	if (t->encrypt_boot) {
		/* what EC2 would refuse after the whole build: say it now */
		if (t->ami_groups.n || t->snapshot_groups.n)
			return kiln_jdoc_error_at(c->doc,
						  kiln_jdoc_key_pos(c->doc, aws, t->ami_groups.n ? "ami_groups"
											: "snapshot_groups"),
						  "an encrypted image cannot be made public");
		if (!t->kms_key_id && (t->ami_users.n || t->snapshot_users.n))
			return kiln_jdoc_error_at(c->doc,
						  kiln_jdoc_key_pos(c->doc, aws, t->ami_users.n ? "ami_users"
											: "snapshot_users"),
						  "an image encrypted with the default EBS key cannot be shared: set \"kms_key_id\" to a customer managed key the accounts may use");
	}
	return 0;
}

/*
 * kiln_launch.options: the block's "launch_options", plus on aws the
 * instance options and the encryption of the build instance's volumes.
 */
static int parse_launch_options(struct ctx *c)
{
	kiln_template *t = c->t;
	json_t *lo = NULL, *opts;
	size_t i;
	int error;

	if (!c->block)
		return 0;
	if ((error = kiln_jdoc_get_object(c->doc, c->block, "launch_options", false, &lo)) < 0)
		return error;
	if (!(opts = lo ? json_deep_copy(lo) : json_object()))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	t->launch_options = opts;
	if (strcmp(t->provider, "aws"))
		goto done;
	for (i = 0; lo && aws_launch_members[i]; i++)
		if (json_object_get(lo, aws_launch_members[i]))
			return kiln_jdoc_error_at(c->doc, kiln_jdoc_key_pos(c->doc, lo, aws_launch_members[i]),
						  "\"launch_options\" cannot set \"%s\": use the \"aws\" block's own keys (docs/templates.md)",
						  aws_launch_members[i]);
	if ((error = kiln_instance_options_parse(c->doc, c->block, opts)) < 0)
		return error;
	if (t->encrypt_boot) {
		json_t *enc = json_object();
		if (!enc || (t->kms_key_id && json_object_set_new(enc, "kms_key_id",
								  json_string(t->kms_key_id)) < 0) ||
		    json_object_set_new(opts, "encrypt_volumes", enc) < 0)
			return kiln_error_set(KILN_ENOMEM, "out of memory");
	}
done:
	if (!json_object_size(opts)) {
		json_decref(opts);
		t->launch_options = NULL;
	}
	return 0;
}

static int pick_provider(struct ctx *c, const kiln_template_options *opts)
{
	kiln_template *t = c->t;
	const char *fp = NULL, *env = getenv("KILN_PROVIDER"), *chosen;
	int error;

	if ((error = kiln_jdoc_get_string(c->doc, c->root, "provider", false, &fp)) < 0)
		return error;
	if (fp && strcmp(fp, "aws") && strcmp(fp, "local"))
		return kiln_jdoc_error(c->doc, c->root, "provider", 0,
				       "unknown provider \"%s\" (aws or local)", fp);
	if (fp && !(t->file_provider = kiln_strdup(fp)))
		return KILN_ENOMEM;
	/* DESIGN.md: --provider, else the file's, else KILN_PROVIDER, else aws (as cli_provider_name) */
	chosen = opts && opts->provider ? opts->provider : fp ? fp : env && *env ? env : "aws";
	if (strcmp(chosen, "aws") && strcmp(chosen, "local"))
		return kiln_error_set(KILN_EINVALID, "unknown provider '%s': use aws or local", chosen);
	if (!(t->provider = kiln_strdup(chosen)))
		return KILN_ENOMEM;
	return 0;
}

static int parse(struct ctx *c, const kiln_template_options *opts)
{
	kiln_template *t = c->t;
	json_t *aws = NULL, *local = NULL;
	int64_t v;
	char *s = NULL;
	int error;

	if (!json_is_object(c->root))
		return kiln_jdoc_error(c->doc, NULL, NULL, 0, "a template must be an object, not %s",
				       kiln_json_type_name(c->root));
	if ((error = misplaced_aws_keys(c, c->root, "at the top level")) < 0 ||
	    (error = kiln_jdoc_check_keys(c->doc, c->root, "template", top_keys)) < 0 ||
	    (error = kiln_jdoc_get_object(c->doc, c->root, "aws", false, &aws)) < 0 ||
	    (error = kiln_jdoc_get_object(c->doc, c->root, "local", false, &local)) < 0)
		return error;
	/* both blocks' keys are checked whichever provider runs: a typo waits for no one */
	if ((aws && (error = kiln_jdoc_check_keys(c->doc, aws, "the \"aws\" block", aws_block_keys)) < 0) ||
	    (local && (error = misplaced_aws_keys(c, local, "in the \"local\" block")) < 0) ||
	    (local && (error = kiln_jdoc_check_keys(c->doc, local, "the \"local\" block", block_keys)) < 0))
		return error;
	t->has_aws_block = aws != NULL;
	t->has_local_block = local != NULL;
	if ((error = pick_provider(c, opts)) < 0)
		return error;
	c->block = !strcmp(t->provider, "aws") ? aws : local;
	if ((error = load_variables(c, opts)) < 0)
		return error;

	if ((error = get_str(c, "name", true, 0, &t->name)) < 0)
		return error;
	if (!kiln_image_name_valid(t->name))
		return kiln_jdoc_error(c->doc, c->root, "name", 0,
				       "bad image name \"%s\": 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit",
				       t->name);
	if ((error = get_str(c, "description", false, X_VERSION, &t->description)) < 0 ||
	    (error = parse_source(c)) < 0 ||
	    (error = get_str(c, "instance_type", !strcmp(t->provider, "aws"), 0, &t->instance_type)) < 0 ||
	    (error = get_str(c, "subnet_id", false, 0, &t->subnet_id)) < 0 ||
	    (error = get_str(c, "region", false, 0, &t->region)) < 0 ||
	    (error = get_str(c, "iam_instance_profile", false, 0, &t->iam_instance_profile)) < 0 ||
	    (error = get_str(c, "user_data", false, 0, &t->user_data)) < 0 ||
	    (error = get_str(c, "ssh_username", true, 0, &t->ssh_username)) < 0 ||
	    (error = get_str(c, "ssh_host", false, 0, &t->ssh_host)) < 0)
		return error;
	if (!strcmp(t->provider, "aws") && c->block && (error = parse_aws_image(c, c->block)) < 0)
		return error;
	if ((error = parse_launch_options(c)) < 0)
		return error;

	v = 22;
	if ((error = get_int(c, "ssh_port", 1, 65535, &v)) < 0)
		return error;
	t->ssh_port = (int)v;
	t->ssh_timeout_s = 300;
	t->launch_timeout_s = 600;
	t->image_timeout_s = 3600;
	t->build_timeout_s = 4 * 3600;
	if ((error = get_int(c, "ssh_timeout_s", 1, 86400, &t->ssh_timeout_s)) < 0 ||
	    (error = get_int(c, "launch_timeout_s", 1, 86400, &t->launch_timeout_s)) < 0 ||
	    (error = get_int(c, "image_timeout_s", 1, 7 * 86400, &t->image_timeout_s)) < 0 ||
	    (error = get_int(c, "build_timeout_s", 60, 7 * 86400, &t->build_timeout_s)) < 0 ||
	    (error = get_int(c, "keep_versions", 1, 100000, &t->keep_versions)) < 0)
		return error;
	if ((error = get_str(c, "ssh_interface", false, 0, &s)) < 0)
		return error;
	if (s) {
		if (!strcmp(s, "public_ip"))
			t->ssh_interface = KILN_SSH_PUBLIC_IP;
		else if (!strcmp(s, "private_ip"))
			t->ssh_interface = KILN_SSH_PRIVATE_IP;
		else
			error = kiln_jdoc_error(c->doc, pick(c, "ssh_interface"), "ssh_interface", 0,
						"unknown \"ssh_interface\" \"%s\" (public_ip or private_ip)", s);
		free(s);
		if (error < 0)
			return error;
	}
	if ((error = parse_cidrs(c)) < 0 || (error = parse_tags(c)) < 0 ||
	    (error = parse_ssm_parameter(c)) < 0 || (error = parse_provisioners(c)) < 0)
		return error;
	return 0;
}

static void hash_text(char out[65], const char *text, size_t len)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0, i;
	static const char hex[] = "0123456789abcdef";

	out[0] = '\0';
	if (!EVP_Digest(text, len, md, &n, EVP_sha256(), NULL))
		return;
	for (i = 0; i < n && i < 32; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[2 * i] = '\0';
}

int kiln_template_parse(kiln_template **out, const char *name, const char *text, size_t len,
			const kiln_template_options *opts)
{
	kiln_jdoc *doc = NULL;
	kiln_buf dir = KILN_BUF_INIT;
	struct ctx c = { 0 };
	kiln_template *t;
	int error;

	*out = NULL;
	if (!(t = calloc(1, sizeof(*t))))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	if ((error = kiln_jdoc_parse(&doc, name, text, len)) < 0)
		goto done;
	if ((error = kiln_dirname(&dir, name)) < 0)
		goto done;
	t->path = kiln_strdup(name);
	t->dir = kiln_buf_detach(&dir);
	if (!t->path || !t->dir) {
		error = kiln_error_set(KILN_ENOMEM, "out of memory");
		goto done;
	}
	t->timestamp = kiln_clock_wall_s();
	hash_text(t->sha256, text, len);
	c.doc = doc;
	c.root = kiln_jdoc_root(doc);
	c.t = t;
	if ((error = parse(&c, opts)) < 0)
		goto done;
	*out = t;
	t = NULL;
done:
	json_decref(c.vars);
	kiln_jdoc_free(doc);
	kiln_buf_release(&dir);
	kiln_template_free(t);
	return error;
}

int kiln_template_load(kiln_template **out, const char *path, const kiln_template_options *opts)
{
	kiln_buf b = KILN_BUF_INIT;
	int error;

	*out = NULL;
	kiln_buf_init(&b, 16 << 20);
	if ((error = kiln_read_file(&b, path)) < 0) {
		kiln_buf_release(&b);
		return error;
	}
	error = kiln_template_parse(out, path, b.ptr, b.len, opts);
	kiln_buf_release(&b);
	return error;
}

int kiln_template_set_version(kiln_template *t, int64_t version)
{
	size_t i, j;
	int error = 0;

	t->version = version;
	if ((error = subst_version(&t->description, version)) < 0)
		return error;
	for (i = 0; i < t->tags.n; i++)
		if ((error = subst_version(&t->tags.items[i].value, version)) < 0)
			return error;
	for (i = 0; i < t->n_provisioners; i++) {
		kiln_provisioner *p = &t->provisioners[i];
		for (j = 0; j < p->n_inline; j++)
			if ((error = subst_version(&p->inline_cmds[j], version)) < 0)
				return error;
		for (j = 0; j < p->environment.n; j++)
			if ((error = subst_version(&p->environment.items[j].value, version)) < 0)
				return error;
		if ((error = subst_version(&p->execute_command, version)) < 0 ||
		    (error = subst_version(&p->destination, version)) < 0)
			return error;
	}
	return 0;
}

void kiln_template_free(kiln_template *t)
{
	size_t i;
	if (!t)
		return;
	free(t->path);
	free(t->dir);
	free(t->provider);
	free(t->file_provider);
	free(t->name);
	free(t->description);
	free(t->source_image);
	kiln_strings_release(&t->filter_owners);
	free(t->filter_name);
	kiln_tags_release(&t->filter_tags);
	free(t->instance_type);
	free(t->subnet_id);
	free(t->region);
	free(t->iam_instance_profile);
	free(t->user_data);
	json_decref(t->launch_options);
	free(t->imds_support);
	free(t->kms_key_id);
	kiln_strings_release(&t->ami_regions);
	kiln_tags_release(&t->region_kms_key_ids);
	kiln_strings_release(&t->ami_users);
	kiln_strings_release(&t->ami_groups);
	kiln_strings_release(&t->snapshot_users);
	kiln_strings_release(&t->snapshot_groups);
	free(t->ssh_username);
	free(t->ssh_host);
	kiln_strings_release(&t->temporary_cidrs);
	kiln_tags_release(&t->tags);
	free(t->ssm_parameter);
	for (i = 0; i < t->n_provisioners; i++)
		kiln_provisioner_release(&t->provisioners[i]);
	free(t->provisioners);
	free(t);
}
