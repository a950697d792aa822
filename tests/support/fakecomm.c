#include <ftw.h>
#include <sys/stat.h>

#include "core/error.h"
#include "tests/support/fakecomm.h"

static fakecomm the_fake;
static kiln_strings ran_texts; /* command + the scripts it named, for fakecomm_ran */

struct session {
	int id;
};

fakecomm *fakecomm_get(void)
{
	return &the_fake;
}

fakecomm *fakecomm_reset(void)
{
	kiln_strings_release(&the_fake.commands);
	kiln_strings_release(&the_fake.uploads);
	kiln_tags_release(&the_fake.files);
	kiln_strings_release(&ran_texts);
	memset(&the_fake, 0, sizeof(the_fake));
	snprintf(the_fake.host_key, sizeof(the_fake.host_key), "SHA256:fakehostkey");
	return &the_fake;
}

fakecomm_rule *fakecomm_rule_add(fakecomm *fc, const char *match, int exit_status,
				 const char *out, const char *err)
{
	fakecomm_rule *r;
	if (fc->n_rules == FAKECOMM_RULES)
		abort();
	r = &fc->rules[fc->n_rules++];
	memset(r, 0, sizeof(*r));
	snprintf(r->match, sizeof(r->match), "%s", match ? match : "");
	r->exit_status = exit_status;
	snprintf(r->out, sizeof(r->out), "%s", out ? out : "");
	snprintf(r->err, sizeof(r->err), "%s", err ? err : "");
	return r;
}

bool fakecomm_ran(const fakecomm *fc, const char *needle)
{
	size_t i;
	(void)fc;
	for (i = 0; i < ran_texts.n; i++)
		if (strstr(ran_texts.items[i], needle))
			return true;
	return false;
}

static int f_connect(void **out, const kiln_ssh_options *opts)
{
	fakecomm *fc = &the_fake;
	struct session *s;
	size_t i;

	*out = NULL;
	fc->connect_attempts++;
	snprintf(fc->host, sizeof(fc->host), "%s", opts->host ? opts->host : "");
	snprintf(fc->user, sizeof(fc->user), "%s", opts->username ? opts->username : "");
	fc->port = opts->port;
	if (opts->key)
		snprintf(fc->key_fingerprint, sizeof(fc->key_fingerprint), "%s", opts->key->fingerprint);
	fc->n_accepted_fps = opts->n_host_key_fingerprints;
	if (fc->connect_failures) {
		fc->connect_failures--;
		return kiln_error_set(KILN_ETIMEOUT, "connection to %s:%d timed out", opts->host,
				      opts->port);
	}
	if (opts->n_host_key_fingerprints) {
		for (i = 0; i < opts->n_host_key_fingerprints; i++)
			if (!strcmp(opts->host_key_fingerprints[i], fc->host_key))
				break;
		if (i == opts->n_host_key_fingerprints)
			return kiln_error_set(KILN_EAUTH, "host key %s of %s is not one the console listed",
					      fc->host_key, opts->host);
	}
	if (!(s = calloc(1, sizeof(*s))))
		return KILN_ENOMEM;
	s->id = ++fc->connects;
	fc->open_sessions++;
	*out = s;
	return 0;
}

static const char *f_host_key(void *session)
{
	(void)session;
	return the_fake.host_key;
}

static void emit_lines(const char *text, int stream, kiln_ssh_output_fn out, void *ctx)
{
	const char *p = text;
	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		if (out)
			out(ctx, stream, p, n);
		p += n + (nl ? 1 : 0);
	}
}

static int f_exec(void *session, const char *command, kiln_ssh_output_fn out, void *ctx,
		  int *exit_status, bool *disconnected)
{
	fakecomm *fc = &the_fake;
	kiln_buf text = KILN_BUF_INIT;
	size_t i;
	int rc;
	(void)session;

	*exit_status = 0;
	*disconnected = false;
	kiln_strings_add(&fc->commands, command);
	/* the text rules match: the command and every uploaded script it names */
	kiln_buf_puts(&text, command);
	for (i = 0; i < fc->files.n; i++)
		if (strstr(command, fc->files.items[i].key)) {
			kiln_buf_putc(&text, '\n');
			kiln_buf_puts(&text, fc->files.items[i].value);
		}
	kiln_strings_add(&ran_texts, text.ptr);
	if (fc->on_exec && (rc = fc->on_exec(fc->ctx, text.ptr)) < 0) {
		kiln_buf_release(&text);
		return rc < -1 ? rc : kiln_error_set(KILN_ERROR, "exec failed (scripted)");
	}
	for (i = 0; i < fc->n_rules; i++) {
		fakecomm_rule *r = &fc->rules[i];
		if (!strstr(text.ptr, r->match))
			continue;
		emit_lines(r->out, 1, out, ctx);
		emit_lines(r->err, 2, out, ctx);
		kiln_buf_release(&text);
		if (r->error < 0)
			return kiln_error_set(r->error, "scripted failure of '%s'", r->match);
		*exit_status = r->exit_status;
		*disconnected = r->disconnect;
		return 0;
	}
	kiln_buf_release(&text);
	return 0;
}

static uint64_t tree_bytes;

static int add_size(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path;
	(void)ftw;
	if (flag == FTW_F)
		tree_bytes += (uint64_t)st->st_size;
	return 0;
}

static int f_upload(void *session, const char *local_path, const char *remote_path,
		    uint64_t *bytes)
{
	fakecomm *fc = &the_fake;
	(void)session;
	tree_bytes = 0;
	if (nftw(local_path, add_size, 16, FTW_PHYS) < 0)
		return kiln_error_set_os(KILN_ERROR, errno, "cannot read '%s'", local_path);
	kiln_strings_add(&fc->uploads, remote_path);
	fc->bytes += tree_bytes;
	if (bytes)
		*bytes += tree_bytes;
	return 0;
}

static int f_upload_data(void *session, const void *data, size_t len, const char *remote_path,
			 int mode)
{
	fakecomm *fc = &the_fake;
	char *copy = malloc(len + 1);
	(void)session;
	(void)mode;
	if (!copy)
		return KILN_ENOMEM;
	memcpy(copy, data, len);
	copy[len] = '\0';
	kiln_tags_set(&fc->files, remote_path, copy);
	free(copy);
	kiln_strings_add(&fc->uploads, remote_path);
	fc->bytes += len;
	return 0;
}

static void f_close(void *session)
{
	if (!session)
		return;
	the_fake.closes++;
	the_fake.open_sessions--;
	free(session);
}

const kiln_communicator fakecomm_communicator = {
	.connect = f_connect,
	.host_key = f_host_key,
	.exec = f_exec,
	.upload = f_upload,
	.upload_data = f_upload_data,
	.close = f_close,
};
