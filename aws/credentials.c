/*
 * credentials.c: the chain's sources fetched and kept fresh
 * (credentials.h), and kiln_aws_config_load, which resolves the
 * configuration (config.c) and fetches the first keys.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "aws/credentials.h"
#include "aws/imds.h"
#include "aws/sts.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/fs.h"

extern char **environ;

/* A credential process's output, and what of its stderr a message may show. */
#define PROCESS_OUT_MAX ((size_t)64 << 10)
#define PROCESS_ERR_MAX ((size_t)4 << 10)
/* Long enough for a helper that asks for a hardware key's touch; Ctrl-C ends it sooner. */
#define PROCESS_TIMEOUT_MS ((uint64_t)600 * 1000)
#define TOKEN_FILE_MAX ((size_t)64 << 10)
#define CACHE_FILE_MAX ((size_t)64 << 10)

struct kiln_aws_creds_provider {
	pthread_mutex_t lock;
	const kiln_aws_source *src;
	const kiln_aws_config *cfg;
	kiln_aws_creds_options opts;
	char description[256];
	kiln_aws_credentials current;
	bool have;
	int64_t next_try_s;            /* no refresh before this while the keys still work */
	kiln_aws_creds_provider *from; /* assume-role: the keys that assume it */
	kiln_aws_client *sts;          /* assume-role, web identity */
	kiln_imds *imds;               /* IMDS */
	char *cache_path;              /* assume-role, web identity: the disk cache; NULL: none */
};

static void free_secret(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

static void buf_wipe(kiln_buf *b)
{
	if (b->alloc)
		OPENSSL_cleanse(b->ptr, b->alloc);
	kiln_buf_release(b);
}

static int creds_copy(kiln_aws_credentials *dst, const kiln_aws_credentials *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->access_key_id = kiln_strdup(src->access_key_id);
	dst->secret_access_key = kiln_strdup(src->secret_access_key);
	dst->session_token = src->session_token ? kiln_strdup(src->session_token) : NULL;
	dst->expires_at = src->expires_at;
	snprintf(dst->source, sizeof(dst->source), "%s", src->source);
	if (!dst->access_key_id || !dst->secret_access_key || (src->session_token && !dst->session_token)) {
		kiln_aws_credentials_release(dst);
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	}
	return 0;
}

/* ---- times and JSON ---------------------------------------------------------------- */

int kiln_aws_parse_time(int64_t *out, const char *s)
{
	char buf[40];
	size_t n = s ? strlen(s) : 0;
	int64_t t, off = 0;

	if (n < 20 || n >= sizeof(buf))
		return KILN_EINVALID;
	memcpy(buf, s, n + 1);
	if (buf[n - 1] != 'Z' && buf[n - 1] != 'z') {
		/* "+HH:MM" or "+HHMM" at the end: turn it into Z and remember it */
		size_t k = buf[n - 3] == ':' ? n - 6 : n - 5;
		int hh, mm;
		if (k < 19 || (buf[k] != '+' && buf[k] != '-'))
			return KILN_EINVALID;
		if (buf[n - 3] == ':') {
			if (sscanf(buf + k + 1, "%2d:%2d", &hh, &mm) != 2)
				return KILN_EINVALID;
		} else if (sscanf(buf + k + 1, "%2d%2d", &hh, &mm) != 2) {
			return KILN_EINVALID;
		}
		if (hh > 23 || mm > 59 || buf[k + 1] < '0' || buf[k + 1] > '9')
			return KILN_EINVALID;
		off = (int64_t)(hh * 3600 + mm * 60) * (buf[k] == '+' ? 1 : -1);
		buf[k] = 'Z';
		buf[k + 1] = '\0';
	} else {
		buf[n - 1] = 'Z';
	}
	if (kiln_parse_iso8601(&t, buf) < 0)
		return KILN_EINVALID;
	*out = t - off;
	return 0;
}

/* A string member; NULL when absent; *bad when present and not a non-empty string. */
static const char *member(const json_t *obj, const char *key, bool *bad)
{
	const json_t *v = json_object_get(obj, key);
	if (!v)
		return NULL;
	if (!json_is_string(v) || !json_string_length(v) ||
	    strlen(json_string_value(v)) != json_string_length(v)) {
		*bad = true;
		return NULL;
	}
	return json_string_value(v);
}

/* Keys are sent in HTTP headers: printable ASCII only, or a request could be split. */
static bool header_safe(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return false;
	return true;
}

int kiln_aws_creds_from_json(kiln_aws_credentials *out, const json_t *obj, const char *token_key,
			     bool expiring, const char *what)
{
	const char *id, *secret, *token = NULL, *expiration;
	const char *names[4] = { "AccessKeyId", "SecretAccessKey", token_key, "Expiration" };
	bool bad[4] = { false, false, false, false };
	kiln_aws_credentials got;
	int64_t expires = 0;
	size_t i;

	if (!json_is_object(obj))
		return kiln_error_set(KILN_ERROR, "%s are not a JSON object", what);
	id = member(obj, "AccessKeyId", &bad[0]);
	secret = member(obj, "SecretAccessKey", &bad[1]);
	if (token_key)
		token = member(obj, token_key, &bad[2]);
	expiration = member(obj, "Expiration", &bad[3]);
	for (i = 0; i < 4; i++)
		if (bad[i])
			return kiln_error_set(KILN_ERROR, "%s have a %s that is not a string", what, names[i]);
	if (!id)
		return kiln_error_set(KILN_ERROR, "%s have no AccessKeyId", what);
	if (!secret)
		return kiln_error_set(KILN_ERROR, "%s have no SecretAccessKey", what);
	if (expiring && token_key && !token)
		return kiln_error_set(KILN_ERROR, "%s have no %s", what, token_key);
	if (expiring && !expiration)
		return kiln_error_set(KILN_ERROR, "%s have no Expiration", what);
	if (!header_safe(id) || !header_safe(secret) || (token && !header_safe(token)))
		return kiln_error_set(KILN_ERROR, "%s hold a key with characters that cannot be sent", what);
	if (expiration && kiln_aws_parse_time(&expires, expiration) < 0)
		return kiln_error_set(KILN_ERROR, "%s have an Expiration that is not an ISO 8601 time", what);
	memset(&got, 0, sizeof(got));
	got.expires_at = expires;
	if (creds_copy(&got, &(kiln_aws_credentials){ (char *)id, (char *)secret, (char *)token,
						     expires, "" }) < 0)
		return KILN_ENOMEM;
	snprintf(got.source, sizeof(got.source), "%s", out->source);
	kiln_aws_credentials_release(out);
	*out = got;
	return 0;
}

int kiln_aws_parse_process_output(kiln_aws_credentials *out, const char *json, size_t len)
{
	const char *what = "the credential_process's output";
	json_error_t jerr;
	json_t *doc, *version;
	int error;

	if (!(doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr)))
		return kiln_error_set(KILN_ERROR, "%s is not JSON (line %d, column %d)", what, jerr.line,
				      jerr.column);
	version = json_object_get(doc, "Version");
	if (!json_is_object(doc))
		error = kiln_error_set(KILN_ERROR, "%s is not a JSON object", what);
	else if (!version)
		error = kiln_error_set(KILN_ERROR, "%s has no \"Version\" (it must be 1)", what);
	else if (!json_is_integer(version) || json_integer_value(version) != 1)
		error = kiln_error_set(KILN_ERROR, "%s has a \"Version\" other than 1, which kiln does not read",
				       what);
	else
		error = kiln_aws_creds_from_json(out, doc, "SessionToken", false, "the credential_process's keys");
	json_decref(doc);
	return error;
}

/* ---- splitting a command line ------------------------------------------------------ */

void kiln_aws_free_words(char **words)
{
	size_t i;
	if (!words)
		return;
	for (i = 0; words[i]; i++)
		free_secret(words[i]);
	free(words);
}

static int add_word(char ***words, size_t *n, kiln_buf *w)
{
	char **nw = realloc(*words, (*n + 2) * sizeof(**words));
	if (!nw)
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	*words = nw;
	if (!(nw[*n] = kiln_strdup(w->ptr)))
		return KILN_ENOMEM;
	nw[++*n] = NULL;
	OPENSSL_cleanse(w->ptr, w->len);
	kiln_buf_truncate(w, 0);
	return 0;
}

int kiln_aws_split_words(char ***out, const char *s)
{
	kiln_buf w = KILN_BUF_INIT;
	char **words = NULL;
	size_t n = 0;
	bool in_word = false;
	int error = 0;

	*out = NULL;
	while (*s && error == 0) {
		char c = *s++;
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
			if (in_word)
				error = add_word(&words, &n, &w);
			in_word = false;
			continue;
		}
		in_word = true;
		if (c == '\'') {
			const char *end = strchr(s, '\'');
			if (!end) {
				error = kiln_error_set(KILN_EINVALID, "the command has a ' without its closing '");
				break;
			}
			error = kiln_buf_put(&w, s, (size_t)(end - s));
			s = end + 1;
		} else if (c == '"') {
			for (;;) {
				c = *s++;
				if (!c) {
					s--; /* stay on the NUL: the outer loop reads *s */
					error = kiln_error_set(KILN_EINVALID, "the command has a \" without its closing \"");
					break;
				}
				if (c == '"')
					break;
				if (c == '\\' && (*s == '\\' || *s == '"' || *s == '$' || *s == '`')) {
					c = *s++;
				} else if (c == '\\' && *s == '\n') {
					s++;
					continue;
				}
				if ((error = kiln_buf_putc(&w, c)) < 0)
					break;
			}
		} else if (c == '\\') {
			if (!*s)
				break; /* a trailing backslash quotes nothing */
			if (*s == '\n') {
				s++;
				continue;
			}
			error = kiln_buf_putc(&w, *s++);
		} else {
			error = kiln_buf_putc(&w, c);
		}
	}
	if (error == 0 && in_word)
		error = add_word(&words, &n, &w);
	if (error == 0 && n == 0)
		error = kiln_error_set(KILN_EINVALID, "the command is empty");
	if (w.alloc)
		OPENSSL_cleanse(w.ptr, w.alloc);
	kiln_buf_release(&w);
	if (error < 0) {
		kiln_aws_free_words(words);
		return error;
	}
	*out = words;
	return 0;
}

/* ---- running a credential process -------------------------------------------------- */

/*
 * Reads what is there from fd into b; past b's cap it is read and dropped
 * (so the writer never blocks) and *over is set. false at EOF.
 */
static bool drain(int fd, kiln_buf *b, bool *over)
{
	char chunk[4096];
	ssize_t n = read(fd, chunk, sizeof(chunk));
	if (n < 0)
		return errno == EINTR || errno == EAGAIN;
	if (n == 0)
		return false;
	if (b->len + (size_t)n <= b->max)
		kiln_buf_put(b, chunk, (size_t)n);
	else
		*over = true;
	OPENSSL_cleanse(chunk, sizeof(chunk));
	return true;
}

/* The first line of stderr, printable and short, for a message. */
static void first_line(char *out, size_t size, const kiln_buf *b)
{
	size_t i, n = 0;
	const char *p = b->ptr;
	while (*p == '\n' || *p == '\r' || *p == ' ')
		p++;
	for (i = 0; p[i] && p[i] != '\n' && p[i] != '\r' && n + 1 < size && n < 200; i++)
		out[n++] = (unsigned char)p[i] >= 0x20 && p[i] != 0x7f ? p[i] : '?';
	out[n] = '\0';
}

/*
 * Runs the command (no shell), its stdout into out (capped), stdin and the
 * environment inherited as the AWS CLI does; waits with the clock's
 * cancellation. what names it in messages.
 */
static int run_process(const char *command, const char *what, kiln_buf *out)
{
	char **argv = NULL;
	int outp[2] = { -1, -1 }, errp[2] = { -1, -1 };
	posix_spawn_file_actions_t fa;
	bool fa_ready = false;
	kiln_buf err;
	pid_t pid = -1;
	bool out_over = false, err_over = false;
	uint64_t deadline;
	int error, status = 0, rc;

	kiln_buf_init(out, PROCESS_OUT_MAX);
	kiln_buf_init(&err, PROCESS_ERR_MAX);
	if ((error = kiln_aws_split_words(&argv, command)) < 0) {
		kiln_error_prefix("%s", what);
		goto done;
	}
	if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
		error = kiln_error_set_os(KILN_ERROR, errno, "cannot run %s: pipe", what);
		goto done;
	}
	if (posix_spawn_file_actions_init(&fa) != 0) {
		error = kiln_error_set(KILN_ENOMEM, "out of memory");
		goto done;
	}
	fa_ready = true;
	if (posix_spawn_file_actions_adddup2(&fa, outp[1], 1) != 0 ||
	    posix_spawn_file_actions_adddup2(&fa, errp[1], 2) != 0) {
		error = kiln_error_set(KILN_ENOMEM, "out of memory");
		goto done;
	}
	/* argv[0] is a program name, never a secret; the other words may be */
	if ((rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ)) != 0) {
		pid = -1;
		error = kiln_error_set_os(KILN_EINVALID, rc, "cannot run %s: '%s'", what, argv[0]);
		goto done;
	}
	close(outp[1]);
	close(errp[1]);
	outp[1] = errp[1] = -1;

	deadline = kiln_clock_now_ms() + PROCESS_TIMEOUT_MS;
	while (outp[0] >= 0 || errp[0] >= 0) {
		struct pollfd fds[2] = { { outp[0], POLLIN, 0 }, { errp[0], POLLIN, 0 } };
		/* the pipes are I/O; the clock's check makes Ctrl-C end the wait */
		if ((error = kiln_sleep_ms(0)) < 0)
			goto kill;
		if (kiln_clock_now_ms() > deadline) {
			error = kiln_error_set(KILN_ETIMEOUT, "%s did not finish in %llu s", what,
					       (unsigned long long)(PROCESS_TIMEOUT_MS / 1000));
			goto kill;
		}
		if (poll(fds, 2, 100) < 0 && errno != EINTR) {
			error = kiln_error_set_os(KILN_ERROR, errno, "cannot read from %s", what);
			goto kill;
		}
		if (outp[0] >= 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) && !drain(outp[0], out, &out_over)) {
			close(outp[0]);
			outp[0] = -1;
		}
		if (errp[0] >= 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) && !drain(errp[0], &err, &err_over)) {
			close(errp[0]);
			errp[0] = -1;
		}
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	pid = -1;
	if (WIFSIGNALED(status)) {
		error = kiln_error_set(KILN_ERROR, "%s was killed by signal %d", what, WTERMSIG(status));
	} else if (WEXITSTATUS(status) != 0) {
		char line[256];
		first_line(line, sizeof(line), &err);
		error = kiln_error_set(KILN_ERROR, "%s exited with status %d%s%s", what, WEXITSTATUS(status),
				       line[0] ? ": " : "", line);
	} else if (out_over) {
		error = kiln_error_set(KILN_ENOMEM, "%s wrote more than %zu bytes", what, PROCESS_OUT_MAX);
	} else {
		error = 0;
	}
	goto done;
kill:
	kill(pid, SIGTERM);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	pid = -1;
done:
	if (fa_ready)
		posix_spawn_file_actions_destroy(&fa);
	for (rc = 0; rc < 2; rc++) {
		if (outp[rc] >= 0)
			close(outp[rc]);
		if (errp[rc] >= 0)
			close(errp[rc]);
	}
	kiln_aws_free_words(argv);
	buf_wipe(&err);
	if (error < 0)
		buf_wipe(out);
	return error;
}

/* ---- the disk cache ----------------------------------------------------------------- */

static int cache_path(kiln_aws_creds_provider *p, char **out)
{
	const kiln_aws_source *s = p->src;
	kiln_buf key = KILN_BUF_INIT, dir = KILN_BUF_INIT;
	unsigned char md[32];
	unsigned int mdlen = 0;
	char hex[65];
	size_t i;
	int error;

	*out = NULL;
	if (p->opts.cache_dir && !*p->opts.cache_dir)
		return 0;
	/* everything that makes the keys, so that different roads never share a file */
	kiln_buf_printf(&key, "kiln-credentials-cache-v1\n%d\n%s\n%s\n%s\n%d\n%s\n%s\n%s\n", (int)s->kind,
			s->role_arn ? s->role_arn : "", s->session_name ? s->session_name : "",
			s->external_id ? s->external_id : "", s->duration_s,
			s->from ? s->from->description : "", s->token_file ? s->token_file : "",
			p->cfg->endpoints[KILN_AWS_STS] ? p->cfg->endpoints[KILN_AWS_STS] : "");
	if (!EVP_Digest(key.ptr, key.len, md, &mdlen, EVP_sha256(), NULL) || mdlen != sizeof(md)) {
		buf_wipe(&key);
		return kiln_error_set(KILN_ERROR, "cannot hash the credentials cache key");
	}
	buf_wipe(&key);
	for (i = 0; i < sizeof(md); i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	if (p->opts.cache_dir)
		error = kiln_buf_puts(&dir, p->opts.cache_dir);
	else if ((error = kiln_state_dir(&dir)) == 0)
		error = kiln_buf_puts(&dir, "/aws/cache");
	if (error == 0 && !(*out = kiln_strdupf("%s/%s.json", dir.ptr, hex)))
		error = KILN_ENOMEM;
	kiln_buf_release(&dir);
	if (error < 0 && error != KILN_ENOMEM) {
		/* no state directory (no HOME): no disk cache, the keys stay in memory */
		kiln_error_clear();
		error = 0;
	}
	return error;
}

/* Keys from the cache file that stay good past the refresh window; 0 and nothing when none. */
static bool cache_read(kiln_aws_creds_provider *p, kiln_aws_credentials *out)
{
	kiln_buf text;
	json_t *doc;
	bool ok = false;

	if (!p->cache_path)
		return false;
	kiln_buf_init(&text, CACHE_FILE_MAX);
	if (kiln_read_file(&text, p->cache_path) == 0 &&
	    (doc = json_loadb(text.ptr, text.len, 0, NULL))) {
		kiln_aws_credentials got = { 0 };
		if (kiln_aws_creds_from_json(&got, json_object_get(doc, "Credentials"), "SessionToken",
					     true, "cached credentials") == 0 &&
		    got.expires_at - kiln_clock_wall_s() > KILN_AWS_CREDS_REFRESH_S) {
			kiln_aws_credentials_release(out);
			*out = got;
			ok = true;
		} else {
			kiln_aws_credentials_release(&got);
		}
		json_decref(doc);
	}
	buf_wipe(&text);
	kiln_error_clear();
	return ok;
}

/* Writes the keys for the next run; a cache that cannot be written is no error. */
static void cache_write(kiln_aws_creds_provider *p, const kiln_aws_credentials *c)
{
	kiln_buf dir = KILN_BUF_INIT;
	char expiration[21];
	json_t *doc;
	char *text;
	kiln_error saved;

	if (!p->cache_path)
		return;
	kiln_error_save(&saved);
	kiln_format_iso8601(expiration, c->expires_at);
	doc = json_pack("{s:{s:s,s:s,s:s,s:s}}", "Credentials", "AccessKeyId", c->access_key_id,
			"SecretAccessKey", c->secret_access_key, "SessionToken",
			c->session_token ? c->session_token : "", "Expiration", expiration);
	text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	if (text && kiln_dirname(&dir, p->cache_path) == 0 && kiln_mkdir_p(dir.ptr, 0700) == 0)
		kiln_write_file_atomic(p->cache_path, text, strlen(text), 0600);
	free_secret(text);
	kiln_buf_release(&dir);
	kiln_error_restore(&saved);
}

/* ---- fetching ----------------------------------------------------------------------- */

static void default_session_name(char *out, size_t size, const char *given)
{
	if (given)
		snprintf(out, size, "%s", given);
	else
		snprintf(out, size, "kiln-%lld", (long long)kiln_clock_wall_s());
}

static int fetch_assume_role(kiln_aws_creds_provider *p, kiln_aws_credentials *out)
{
	kiln_sts_role_request r = { 0 };
	char session[80];

	if (cache_read(p, out))
		return 0;
	default_session_name(session, sizeof(session), p->src->session_name);
	r.role_arn = p->src->role_arn;
	r.session_name = session;
	r.external_id = p->src->external_id;
	r.duration_s = p->src->duration_s;
	if (kiln_sts_assume_role(p->sts, &r, out) < 0)
		return kiln_error_last()->code;
	cache_write(p, out);
	return 0;
}

static int fetch_web_identity(kiln_aws_creds_provider *p, kiln_aws_credentials *out)
{
	kiln_sts_role_request r = { 0 };
	kiln_buf token;
	char session[80];
	int error;

	if (cache_read(p, out))
		return 0;
	/* read afresh each time: CI systems and Kubernetes rotate the file */
	kiln_buf_init(&token, TOKEN_FILE_MAX);
	if ((error = kiln_read_file(&token, p->src->token_file)) < 0) {
		buf_wipe(&token);
		return kiln_error_set(error == KILN_ENOTFOUND ? KILN_EINVALID : error,
				      "cannot read the web identity token file '%s'%s", p->src->token_file,
				      error == KILN_ENOTFOUND ? ": no such file" : error == KILN_ENOMEM ? ": too large" : "");
	}
	kiln_buf_rtrim(&token);
	{
		/* and leading white space: an editor's indentation is not the token */
		size_t lead = strspn(token.ptr, " \t\r\n");
		memmove(token.ptr, token.ptr + lead, token.len - lead + 1);
		token.len -= lead;
	}
	if (!token.len) {
		buf_wipe(&token);
		return kiln_error_set(KILN_EINVALID, "the web identity token file '%s' is empty", p->src->token_file);
	}
	default_session_name(session, sizeof(session), p->src->session_name);
	r.role_arn = p->src->role_arn;
	r.session_name = session;
	r.web_identity_token = token.ptr;
	error = kiln_sts_assume_role(p->sts, &r, out);
	buf_wipe(&token);
	if (error == 0)
		cache_write(p, out);
	return error;
}

static int fetch_process(kiln_aws_creds_provider *p, kiln_aws_credentials *out)
{
	char what[160];
	kiln_buf text;
	int error;

	snprintf(what, sizeof(what), "credential_process of profile '%s'", p->src->profile);
	if ((error = run_process(p->src->command, what, &text)) < 0)
		return error;
	error = kiln_aws_parse_process_output(out, text.ptr, text.len);
	buf_wipe(&text);
	return error;
}

static int fetch_imds(kiln_aws_creds_provider *p, kiln_aws_credentials *out)
{
	char role[80];
	int error;

	if ((error = kiln_imds_credentials(p->imds, out, role, sizeof(role))) < 0)
		return error;
	snprintf(p->description, sizeof(p->description), "instance profile %s (IMDSv2)%s", role,
		 strstr(p->src->description, ";") ? strstr(p->src->description, ";") : "");
	return 0;
}

/* New keys from the source into out; the caller holds the lock. */
static int fetch(kiln_aws_creds_provider *p, kiln_aws_credentials *out)
{
	int error;

	switch (p->src->kind) {
	case KILN_AWS_SOURCE_STATIC:
		error = creds_copy(out, &p->src->keys);
		break;
	case KILN_AWS_SOURCE_ASSUME_ROLE:
		error = fetch_assume_role(p, out);
		break;
	case KILN_AWS_SOURCE_WEB_IDENTITY:
		error = fetch_web_identity(p, out);
		break;
	case KILN_AWS_SOURCE_PROCESS:
		error = fetch_process(p, out);
		break;
	case KILN_AWS_SOURCE_IMDS:
		error = fetch_imds(p, out);
		break;
	default:
		error = kiln_error_set(KILN_ERROR, "unknown credential source");
	}
	if (error < 0)
		return kiln_error_prefix("%s", p->description);
	snprintf(out->source, sizeof(out->source), "%s", p->description);
	if (out->expires_at && out->expires_at - kiln_clock_wall_s() <= KILN_AWS_CREDS_MIN_S) {
		char at[21];
		bool past = out->expires_at < kiln_clock_wall_s();
		kiln_format_iso8601(at, out->expires_at);
		kiln_aws_credentials_release(out);
		return kiln_error_set(KILN_EAUTH, "%s: the keys it gave expire%s at %s (is this machine's clock right?)",
				      p->description, past ? "d" : "", at);
	}
	return 0;
}

int kiln_aws_creds_get(kiln_aws_creds_provider *p, kiln_aws_credentials *out)
{
	kiln_aws_credentials fresh = { 0 };
	int64_t now, left;
	int error = 0;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&p->lock);
	now = kiln_clock_wall_s();
	left = p->current.expires_at - now;
	if (!p->have) {
		if ((error = fetch(p, &fresh)) < 0)
			goto done;
		p->current = fresh;
		p->have = true;
	} else if (p->current.expires_at && left <= KILN_AWS_CREDS_MIN_S) {
		/* too close to use: new keys or nothing */
		if ((error = fetch(p, &fresh)) < 0)
			goto done;
		kiln_aws_credentials_release(&p->current);
		p->current = fresh;
		p->next_try_s = now + KILN_AWS_CREDS_RETRY_S;
	} else if (p->current.expires_at && left <= KILN_AWS_CREDS_REFRESH_S && now >= p->next_try_s) {
		p->next_try_s = now + KILN_AWS_CREDS_RETRY_S;
		if (fetch(p, &fresh) == 0) {
			kiln_aws_credentials_release(&p->current);
			p->current = fresh;
		} else {
			/* the old keys still work for a while: say so, and use them */
			kiln_warn(p->opts.events, "cannot refresh the AWS credentials (they expire in %lld s): %s",
				  (long long)left, kiln_error_last()->message);
			kiln_error_clear();
		}
	}
	error = creds_copy(out, &p->current);
done:
	pthread_mutex_unlock(&p->lock);
	return error;
}

void kiln_aws_creds_describe(kiln_aws_creds_provider *p, char *out, size_t size)
{
	pthread_mutex_lock(&p->lock);
	snprintf(out, size, "%s", p->description);
	pthread_mutex_unlock(&p->lock);
}

int kiln_aws_creds_provider_new(kiln_aws_creds_provider **out, const kiln_aws_source *src,
				const kiln_aws_config *cfg, const kiln_aws_creds_options *opts)
{
	kiln_aws_client_options co = KILN_AWS_CLIENT_OPTIONS_INIT;
	kiln_aws_creds_provider *p;
	int error = 0;

	*out = NULL;
	if (!(p = calloc(1, sizeof(*p))))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	pthread_mutex_init(&p->lock, NULL);
	p->src = src;
	p->cfg = cfg;
	if (opts)
		p->opts = *opts;
	snprintf(p->description, sizeof(p->description), "%s", src->description);
	co.transport = p->opts.transport;
	co.events = p->opts.events;
	switch (src->kind) {
	case KILN_AWS_SOURCE_ASSUME_ROLE:
		if ((error = kiln_aws_creds_provider_new(&p->from, src->from, cfg, opts)) < 0)
			break;
		co.credentials = p->from;
		/* both ask STS */
		__attribute__((fallthrough));
	case KILN_AWS_SOURCE_WEB_IDENTITY:
		if ((error = kiln_aws_client_new(&p->sts, cfg, &co)) == 0)
			error = cache_path(p, &p->cache_path);
		break;
	case KILN_AWS_SOURCE_IMDS:
		error = kiln_imds_new(&p->imds, &cfg->imds, p->opts.transport);
		break;
	default:
		break;
	}
	if (error < 0) {
		kiln_aws_creds_provider_free(p);
		return error;
	}
	*out = p;
	return 0;
}

void kiln_aws_creds_provider_free(kiln_aws_creds_provider *p)
{
	if (!p)
		return;
	kiln_aws_client_free(p->sts);
	kiln_aws_creds_provider_free(p->from);
	kiln_imds_free(p->imds);
	kiln_aws_credentials_release(&p->current);
	free(p->cache_path);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

/* ---- loading the configuration ------------------------------------------------------ */

struct region_ctx {
	const kiln_aws_load_options *opts;
	char why[300];
};

/* The region from IMDS, when nothing else names one (config.c's hook). */
static int region_from_imds(void *ctx, const kiln_aws_config *partial, char **out)
{
	struct region_ctx *rc = ctx;
	kiln_imds *m = NULL;
	int error;

	if ((error = kiln_imds_new(&m, &partial->imds, rc->opts->transport)) == 0)
		error = kiln_imds_region(m, out);
	kiln_imds_free(m);
	if (error < 0)
		snprintf(rc->why, sizeof(rc->why), "%s", kiln_error_last()->message);
	return error;
}

int kiln_aws_config_load_ex(kiln_aws_config *out, const char *region,
			    const kiln_aws_load_options *opts)
{
	kiln_aws_load_options o = KILN_AWS_LOAD_OPTIONS_INIT;
	kiln_aws_creds_options co = KILN_AWS_CREDS_OPTIONS_INIT;
	kiln_aws_credentials first = { 0 };
	struct region_ctx rc;
	int error;

	if (opts)
		o = *opts;
	memset(&rc, 0, sizeof(rc));
	rc.opts = &o;
	if ((error = kiln_aws_config_resolve(out, region, NULL, NULL, o.offline ? NULL : region_from_imds,
					     &rc)) < 0) {
		/* say why the instance metadata service gave no region */
		if (rc.why[0] && !strncmp(kiln_error_last()->message, "no AWS region", 13)) {
			char msg[sizeof(kiln_error_last()->message)];
			snprintf(msg, sizeof(msg), "%s", kiln_error_last()->message);
			kiln_error_set(error, "%s; nor did the instance metadata service: %s", msg, rc.why);
		}
		return error;
	}
	if (out->notes)
		kiln_warn(o.events, "%s", out->notes);
	if (o.offline || out->source->kind == KILN_AWS_SOURCE_STATIC)
		return 0;
	co.transport = o.transport;
	co.events = o.events;
	if ((error = kiln_aws_creds_provider_new(&out->provider, out->source, out, &co)) < 0 ||
	    (error = kiln_aws_creds_get(out->provider, &first)) < 0)
		goto fail;
	kiln_aws_credentials_release(&first);
	kiln_aws_creds_describe(out->provider, out->credentials.source, sizeof(out->credentials.source));
	return 0;
fail:
	if (out->source->kind == KILN_AWS_SOURCE_IMDS && error != KILN_ECANCELLED && error != KILN_ENOMEM) {
		/*
		 * Nothing else was configured and the last resort gave nothing:
		 * the user's problem is having no credentials at all.
		 */
		char why[sizeof(kiln_error_last()->message)];
		snprintf(why, sizeof(why), "%s", kiln_error_last()->message);
		error = kiln_error_set(KILN_EINVALID,
				       "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
				       "AWS_PROFILE to a profile with keys (profile '%s' has none; %s; "
				       "AWS_EC2_METADATA_DISABLED=true skips asking it)",
				       out->profile, why);
	}
	kiln_aws_config_release(out);
	return error;
}

int kiln_aws_config_load(kiln_aws_config *out, const char *region)
{
	return kiln_aws_config_load_ex(out, region, NULL);
}
