/*
 * provision.c: the shell and file provisioners, over any communicator.
 *
 * Who calls: the builder, once per provisioner of a template. Behaviour
 * follows Packer's shell and file provisioners (same keys, same default
 * execute_command, same {{.Vars}} quoting) so templates port over; where
 * kiln says more (which inline command failed) it is documented in
 * provision.h.
 */
#include "provisioners/provision.h"

#include <openssl/rand.h>

#include "core/clock.h"
#include "core/error.h"

#define DEFAULT_EXECUTE "chmod +x {{.Path}}; {{.Vars}} {{.Path}}"
#define MARKER_PREFIX "kiln-failed-"
#define SHOWN_COMMAND_MAX 120 /* characters of a command quoted in a message */

void kiln_provisioner_release(kiln_provisioner *p)
{
	size_t i;

	if (!p)
		return;
	free(p->label);
	for (i = 0; i < p->n_inline; i++)
		free(p->inline_cmds[i]);
	free(p->inline_cmds);
	for (i = 0; i < p->n_scripts; i++)
		free(p->scripts[i]);
	free(p->scripts);
	kiln_tags_release(&p->environment);
	free(p->execute_command);
	free(p->source);
	free(p->destination);
	memset(p, 0, sizeof(*p));
}

/* ---- output ----------------------------------------------------------------- */

/*
 * Appends text as valid UTF-8 (JSON events need it): invalid bytes and
 * NULs become U+FFFD.
 */
static void put_utf8(kiln_buf *b, const char *s, size_t n)
{
	static const char repl[] = "\xef\xbf\xbd";
	const unsigned char *p = (const unsigned char *)s, *end = p + n;

	while (p < end) {
		size_t len = 0, i;
		uint32_t cp = 0;
		if (*p >= 0x01 && *p < 0x80) {
			kiln_buf_putc(b, (char)*p++);
			continue;
		}
		if (*p >= 0xc2 && *p <= 0xdf)
			len = 2, cp = *p & 0x1f;
		else if (*p >= 0xe0 && *p <= 0xef)
			len = 3, cp = *p & 0x0f;
		else if (*p >= 0xf0 && *p <= 0xf4)
			len = 4, cp = *p & 0x07;
		if (len && (size_t)(end - p) >= len) {
			for (i = 1; i < len && (p[i] & 0xc0) == 0x80; i++)
				cp = (cp << 6) | (p[i] & 0x3f);
			/* no overlong forms, no surrogates, nothing past U+10FFFF */
			if (i == len && !(len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) &&
			    !(len == 4 && (cp < 0x10000 || cp > 0x10ffff))) {
				kiln_buf_put(b, p, len);
				p += len;
				continue;
			}
		}
		kiln_buf_put(b, repl, 3);
		p++;
	}
}

typedef struct run_ctx {
	const kiln_events *events;
	const char *label;
	char marker[48];        /* "kiln-failed-<random>", inline scripts only */
	long failed_index;      /* 1-based inline command the EXIT trap reported, 0: none */
	kiln_buf line;
} run_ctx;

static void emit_line(run_ctx *rc, int stream, const char *line, size_t len)
{
	kiln_buf_reset(&rc->line);
	put_utf8(&rc->line, line, len);
	kiln_emit(rc->events, "output", KILN_LEVEL_INFO,
		  json_pack("{s:s,s:s,s:s}", "provisioner", rc->label, "stream",
			    stream == 2 ? "stderr" : "stdout", "line", rc->line.ptr),
		  "%s", rc->line.ptr);
}

static void on_output(void *ctx, int stream, const char *line, size_t len)
{
	run_ctx *rc = ctx;
	const char *m;

	/* either stream: an execute_command may well say 2>&1 */
	if (rc->marker[0] && (m = memmem(line, len, rc->marker, strlen(rc->marker)))) {
		/* "<marker> INDEX STATUS", maybe behind a partial line */
		char tail[64];
		size_t k = (size_t)(m - line), rest = len - k - strlen(rc->marker);
		long index = 0;
		snprintf(tail, sizeof(tail), "%.*s", (int)KILN_MIN(rest, sizeof(tail) - 1),
			 m + strlen(rc->marker));
		if (sscanf(tail, " %ld", &index) == 1 && index > 0)
			rc->failed_index = index;
		if (k)
			emit_line(rc, stream, line, k);
		return;
	}
	emit_line(rc, stream, line, len);
}

/* ---- scripts -------------------------------------------------------------- */

static bool valid_env_name(const char *k)
{
	const char *p = k;
	if (!*p || (*p >= '0' && *p <= '9'))
		return false;
	for (; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '_'))
			return false;
	return true;
}

/* Packer's {{.Vars}}: KEY='value' ..., a ' inside a value written as '"'"'. */
static int build_vars(kiln_buf *out, const kiln_provisioner *p)
{
	size_t i;
	int error = 0;

	for (i = 0; i < p->environment.n; i++) {
		const kiln_tag *t = &p->environment.items[i];
		const char *v;
		if (!valid_env_name(t->key))
			return kiln_error_set(KILN_EINVALID,
					      "%s: environment variable name '%s' is not a shell name",
					      p->label ? p->label : "shell", t->key);
		if (i)
			error = kiln_buf_putc(out, ' ');
		if (error == 0)
			error = kiln_buf_printf(out, "%s='", t->key);
		for (v = t->value ? t->value : ""; *v && error == 0; v++)
			error = *v == '\'' ? kiln_buf_puts(out, "'\"'\"'") : kiln_buf_putc(out, *v);
		if (error == 0)
			error = kiln_buf_putc(out, '\'');
		if (error < 0)
			return error;
	}
	return 0;
}

/* Replaces {{.Path}} and {{.Vars}} (spaces inside the braces allowed). */
static int expand_command(kiln_buf *out, const char *tmpl, const char *path, const char *vars)
{
	const char *p = tmpl;
	int error = 0;

	while (*p && error == 0) {
		const char *open = strstr(p, "{{"), *close, *a, *z;
		if (!open) {
			error = kiln_buf_puts(out, p);
			break;
		}
		if ((error = kiln_buf_put(out, p, (size_t)(open - p))) < 0)
			break;
		if (!(close = strstr(open + 2, "}}"))) {
			error = kiln_buf_puts(out, open);
			break;
		}
		for (a = open + 2; *a == ' '; a++)
			;
		for (z = close; z > a && z[-1] == ' '; z--)
			;
		if (z - a == 5 && !memcmp(a, ".Path", 5))
			error = kiln_buf_puts(out, path);
		else if (z - a == 5 && !memcmp(a, ".Vars", 5))
			error = kiln_buf_puts(out, vars);
		else
			error = kiln_buf_put(out, open, (size_t)(close + 2 - open));
		p = close + 2;
	}
	return error;
}

static int random_hex(char *out, size_t nbytes)
{
	unsigned char r[16];
	size_t i;

	if (nbytes > sizeof(r) || RAND_bytes(r, (int)nbytes) != 1)
		return kiln_error_set(KILN_ERROR, "cannot draw random bytes from OpenSSL");
	for (i = 0; i < nbytes; i++)
		snprintf(out + 2 * i, 3, "%02x", r[i]);
	return 0;
}

/* "apt-get install -y nginx", its first line only and cut short if long. */
static void shown_command(char *out, size_t size, const char *cmd)
{
	size_t n = strcspn(cmd, "\n"), max = KILN_MIN(size - 4, (size_t)SHOWN_COMMAND_MAX);
	bool cut = n > max || cmd[n] == '\n';
	snprintf(out, size, "%.*s%s", (int)KILN_MIN(n, max), cmd, cut ? "..." : "");
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s && s[1] ? s + 1 : path;
}

/* The inline commands as one script: set -e, and an EXIT trap naming the failing one. */
static int inline_script(kiln_buf *out, const kiln_provisioner *p, const char *marker)
{
	size_t i;
	int error;

	error = kiln_buf_printf(out,
		"#!/bin/sh -e\n"
		"# generated by kiln for %s\n"
		"set -e\n"
		"trap '__kiln_rc=$?; if [ \"$__kiln_rc\" -ne 0 ]; then "
		"printf \"%%s %%s %%s\\n\" %s \"$__kiln_n\" \"$__kiln_rc\" >&2; fi' EXIT\n",
		p->label ? p->label : "shell", marker);
	for (i = 0; i < p->n_inline && error == 0; i++) {
		const char *c = p->inline_cmds[i] ? p->inline_cmds[i] : "";
		size_t n = strlen(c);
		error = kiln_buf_printf(out, "__kiln_n=%zu\n%s%s", i + 1, c,
					n && c[n - 1] == '\n' ? "" : "\n");
	}
	return error;
}

/*
 * Uploads one script (data, or the local file at local_path), runs it with
 * execute_command, removes it. *status / *disconnected as exec reports.
 */
static int run_script(const kiln_communicator *comm, void *session, const kiln_provisioner *p,
		      run_ctx *rc, const kiln_buf *data, const char *local_path,
		      const char *vars, int *status, bool *disconnected,
		      kiln_provision_stats *stats)
{
	kiln_buf cmd = KILN_BUF_INIT;
	char hex[33], path[64];
	uint64_t t0, bytes = 0;
	int error, ignored_status;
	bool ignored_disc;

	if ((error = random_hex(hex, 8)) < 0)
		return error;
	snprintf(path, sizeof(path), "/tmp/kiln-script-%s.sh", hex);

	t0 = kiln_clock_now_ms();
	if (data) {
		error = comm->upload_data(session, data->ptr, data->len, path, 0755);
		bytes = data->len;
	} else {
		error = comm->upload(session, local_path, path, &bytes);
	}
	stats->upload_ms += kiln_clock_now_ms() - t0;
	stats->bytes_uploaded += bytes;
	if (error < 0)
		goto done;

	if ((error = expand_command(&cmd, p->execute_command && *p->execute_command
						   ? p->execute_command : DEFAULT_EXECUTE,
				    path, vars)) < 0)
		goto done;
	stats->commands++;
	if ((error = comm->exec(session, cmd.ptr, on_output, rc, status, disconnected)) < 0)
		goto done;
	if (!*disconnected) {
		/* like Packer: best effort, a failure here only warns */
		kiln_buf_reset(&cmd);
		kiln_buf_printf(&cmd, "rm -f %s", path);
		if (comm->exec(session, cmd.ptr, NULL, NULL, &ignored_status, &ignored_disc) < 0 ||
		    ignored_status != 0)
			kiln_warn(rc->events, "%s: could not remove '%s' from the instance",
				  rc->label, path);
	}
done:
	kiln_buf_release(&cmd);
	return error;
}

static int run_shell(const kiln_communicator *comm, void *session, const kiln_provisioner *p,
		     const char *label, const kiln_events *events, kiln_provision_stats *stats)
{
	kiln_buf vars = KILN_BUF_INIT, script = KILN_BUF_INIT;
	run_ctx rc;
	char shown[SHOWN_COMMAND_MAX + 8];
	int error = 0, status = 0;
	bool disconnected = false;
	size_t i;

	memset(&rc, 0, sizeof(rc));
	rc.events = events;
	rc.label = label;
	kiln_buf_init(&rc.line, 0);

	if ((p->n_inline > 0) == (p->n_scripts > 0)) {
		error = kiln_error_set(KILN_EINVALID, "%s: give exactly one of inline and scripts",
				       label);
		goto done;
	}
	if ((error = build_vars(&vars, p)) < 0)
		goto done;

	if (p->n_inline) {
		char hex[33];
		if ((error = random_hex(hex, 12)) < 0)
			goto done;
		snprintf(rc.marker, sizeof(rc.marker), MARKER_PREFIX "%s", hex);
		if ((error = inline_script(&script, p, rc.marker)) < 0)
			goto done;
		kiln_info(events, "%s: running %zu inline command%s", label, p->n_inline,
			  p->n_inline == 1 ? "" : "s");
		if ((error = run_script(comm, session, p, &rc, &script, NULL, vars.ptr, &status,
					&disconnected, stats)) < 0)
			goto done;
		if (disconnected) {
			snprintf(shown, sizeof(shown), "the inline commands");
			goto dropped;
		}
		if (status != 0) {
			if (rc.failed_index > 0 && (size_t)rc.failed_index <= p->n_inline) {
				shown_command(shown, sizeof(shown), p->inline_cmds[rc.failed_index - 1]);
				error = status < 0
					? kiln_error_set(KILN_ERROR, "%s: command `%s` was killed by a signal",
							 label, shown)
					: kiln_error_set(KILN_ERROR, "%s: command `%s` exited with status %d",
							 label, shown, status);
			} else {
				error = status < 0
					? kiln_error_set(KILN_ERROR, "%s: the inline commands were killed by a signal",
							 label)
					: kiln_error_set(KILN_ERROR, "%s: the inline commands exited with status %d",
							 label, status);
			}
			goto done;
		}
	}

	for (i = 0; i < p->n_scripts; i++) {
		const char *name = base_name(p->scripts[i]);
		kiln_info(events, "%s: running script '%s'", label, name);
		if ((error = run_script(comm, session, p, &rc, NULL, p->scripts[i], vars.ptr, &status,
					&disconnected, stats)) < 0) {
			kiln_error_prefix("%s: script '%s'", label, name);
			goto done;
		}
		if (disconnected) {
			snprintf(shown, sizeof(shown), "script '%s'", name);
			goto dropped;
		}
		if (status != 0) {
			error = status < 0
				? kiln_error_set(KILN_ERROR, "%s: script '%s' was killed by a signal",
						 label, name)
				: kiln_error_set(KILN_ERROR, "%s: script '%s' exited with status %d",
						 label, name, status);
			goto done;
		}
	}
	error = 0;
	goto done;

dropped:
	/* a reboot: fine when the template said so, and nothing after it runs here */
	if (p->expect_disconnect) {
		stats->disconnected = true;
		kiln_info(events, "%s: the connection dropped, as expected", label);
		error = 0;
	} else {
		error = kiln_error_set(KILN_ERROR,
				       "%s: the connection dropped while %s ran (set expect_disconnect "
				       "if it reboots)",
				       label, shown);
	}
done:
	kiln_buf_release(&vars);
	kiln_buf_release(&script);
	kiln_buf_release(&rc.line);
	return error;
}

static int run_file(const kiln_communicator *comm, void *session, const kiln_provisioner *p,
		    const char *label, const kiln_events *events, kiln_provision_stats *stats)
{
	uint64_t t0, ms, bytes = 0;
	int error;

	if (!p->source || !*p->source || !p->destination || !*p->destination)
		return kiln_error_set(KILN_EINVALID, "%s: needs a source and a destination", label);
	kiln_info(events, "%s: uploading '%s' to '%s'", label, p->source, p->destination);
	t0 = kiln_clock_now_ms();
	error = comm->upload(session, p->source, p->destination, &bytes);
	ms = kiln_clock_now_ms() - t0;
	stats->bytes_uploaded += bytes;
	stats->upload_ms += ms;
	if (error < 0)
		return kiln_error_prefix("%s", label);
	kiln_emit(events, "info", KILN_LEVEL_INFO,
		  json_pack("{s:s,s:I,s:I}", "provisioner", label, "bytes", (json_int_t)bytes,
			    "ms", (json_int_t)ms),
		  "%s: uploaded %llu bytes in %.2f s", label, (unsigned long long)bytes,
		  (double)ms / 1000.0);
	return 0;
}

int kiln_provision_run(const kiln_communicator *comm, void *session, const kiln_provisioner *p,
		       const kiln_events *events, kiln_provision_stats *stats)
{
	kiln_provision_stats ignored;
	const char *label;

	memset(&ignored, 0, sizeof(ignored));
	if (!stats)
		stats = &ignored;
	if (!comm || !p)
		return kiln_error_set(KILN_EINVALID, "nothing to provision");
	switch (p->type) {
	case KILN_PROVISIONER_SHELL:
		label = p->label ? p->label : "shell";
		return run_shell(comm, session, p, label, events, stats);
	case KILN_PROVISIONER_FILE:
		label = p->label ? p->label : "file";
		return run_file(comm, session, p, label, events, stats);
	}
	return kiln_error_set(KILN_EINVALID, "unknown provisioner type %d", (int)p->type);
}
