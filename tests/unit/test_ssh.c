/*
 * The SSH communicator against a real sshd on loopback (tests/support/sshd.h).
 * The "instance" is this machine, so what an upload wrote can be checked
 * directly on the local file system.
 */
#include <signal.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/event.h"
#include "core/fs.h"
#include "provisioners/ssh.h"
#include "tests/support/sshd.h"
#include "tests/support/test.h"

static const kiln_communicator *comm = &kiln_ssh_communicator;

typedef struct fixture {
	kiln_test_sshd sshd;
	kiln_keypair key;
	char *tmp; /* local scratch, also the "remote" side's scratch */
} fixture;

static fixture *fx;

/* ---- output and events ------------------------------------------------------ */

typedef struct lines {
	kiln_buf text; /* "1:line\n" per stdout line, "2:line\n" per stderr line */
	size_t longest;
	unsigned count;
} lines;

static void collect(void *ctx, int stream, const char *line, size_t len)
{
	lines *l = ctx;
	kiln_buf_printf(&l->text, "%d:%.*s\n", stream, (int)len, line);
	l->longest = KILN_MAX(l->longest, len);
	l->count++;
}

static void lines_init(lines *l)
{
	memset(l, 0, sizeof(*l));
	kiln_buf_init(&l->text, 1 << 20);
}

typedef struct evlog {
	unsigned attempts;
	kiln_buf names;
} evlog;

static void on_event(void *ctx, const kiln_event *ev)
{
	evlog *log = ctx;
	if (json_object_get(ev->fields, "attempt") && json_object_get(ev->fields, "error"))
		log->attempts++;
	kiln_buf_printf(&log->names, "%s:%s\n", ev->name, ev->message);
}

/* ---- setup -------------------------------------------------------------------- */

static int group_setup(void **state)
{
	const char *why = kiln_test_sshd_unavailable();
	(void)state;
	if (why) {
		print_message("skipping the ssh tests: %s\n", why);
		return 0;
	}
	fx = calloc(1, sizeof(*fx));
	assert_int_equal(kiln_test_sshd_init(&fx->sshd), 0);
	assert_int_equal(kiln_keypair_generate_ed25519(&fx->key, "kiln-test"), 0);
	assert_int_equal(kiln_test_sshd_authorize(&fx->sshd, fx->key.public_openssh), 0);
	assert_int_equal(kiln_test_sshd_start(&fx->sshd), 0);
	fx->tmp = kiln_test_mktmp();
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	if (!fx)
		return 0;
	kiln_test_sshd_release(&fx->sshd);
	kiln_keypair_release(&fx->key);
	kiln_test_rmtmp(fx->tmp);
	free(fx);
	fx = NULL;
	return 0;
}

/* A failed assertion must not leave the cancel flag to the next test. */
static int reset_cancel(void **state)
{
	(void)state;
	kiln_cancel_reset();
	signal(SIGALRM, SIG_DFL);
	return 0;
}

static kiln_ssh_options options(const kiln_test_sshd *sshd, const kiln_keypair *key)
{
	kiln_ssh_options o;
	memset(&o, 0, sizeof(o));
	o.host = "127.0.0.1";
	o.port = sshd->port;
	o.username = sshd->user;
	o.key = key;
	o.timeout_ms = 10000;
	return o;
}

static void *session_open(void)
{
	kiln_ssh_options o = options(&fx->sshd, &fx->key);
	void *s = NULL;
	int rc = comm->connect(&s, &o);
	if (rc < 0)
		fail_msg("connect: %s (sshd log: %s)", kiln_error_last()->message, fx->sshd.log_path);
	return s;
}

static int run(void *s, const char *cmd, lines *l, bool *disconnected)
{
	int status = -2;
	bool disc = false;
	assert_int_equal(comm->exec(s, cmd, collect, l, &status, &disc), 0);
	if (disconnected)
		*disconnected = disc;
	else
		assert_false(disc);
	return status;
}

#define NEED_SSHD() \
	do { if (!fx) skip(); } while (0)

/* ---- connect and exec ----------------------------------------------------------- */

static void test_exec_status_and_lines(void **state)
{
	void *s;
	lines l;
	(void)state;
	NEED_SSHD();

	s = session_open();
	/* no pin: the key is accepted and reported, as ssh-keygen sees it */
	assert_string_equal(comm->host_key(s), fx->sshd.host_fingerprint);

	lines_init(&l);
	assert_int_equal(run(s, "echo one; echo two >&2; printf 'three\\r\\nfour'; exit 3", &l, NULL), 3);
	/* stdout and stderr are separate streams; the partial last line is flushed */
	assert_non_null(strstr(l.text.ptr, "1:one\n"));
	assert_non_null(strstr(l.text.ptr, "2:two\n"));
	assert_non_null(strstr(l.text.ptr, "1:three\n"));
	assert_non_null(strstr(l.text.ptr, "1:four\n"));
	assert_int_equal(l.count, 4);
	kiln_buf_release(&l.text);

	/* several commands over one session; empty lines are lines */
	lines_init(&l);
	assert_int_equal(run(s, "printf 'a\\n\\nb\\n'; true", &l, NULL), 0);
	assert_string_equal(l.text.ptr, "1:a\n1:\n1:b\n");
	kiln_buf_release(&l.text);

	/* stdin is closed: a command reading it does not hang */
	lines_init(&l);
	assert_int_equal(run(s, "cat; echo done", &l, NULL), 0);
	assert_string_equal(l.text.ptr, "1:done\n");
	kiln_buf_release(&l.text);

	/* a status that arrives after the output is closed */
	lines_init(&l);
	assert_int_equal(run(s, "echo early; exec >&- 2>&-; sleep 0.3; exit 7", &l, NULL), 7);
	assert_string_equal(l.text.ptr, "1:early\n");
	kiln_buf_release(&l.text);

	/* killed by a signal: -1 */
	lines_init(&l);
	assert_int_equal(run(s, "kill -TERM $$", &l, NULL), -1);
	kiln_buf_release(&l.text);

	comm->close(s);
}

static void test_exec_long_lines_and_volume(void **state)
{
	void *s;
	lines l;
	(void)state;
	NEED_SSHD();

	s = session_open();
	/* 200 000 characters on one line: pieces of at most 64 KiB */
	lines_init(&l);
	assert_int_equal(run(s, "head -c 200000 /dev/zero | tr '\\0' x; echo; echo after", &l, NULL), 0);
	assert_int_equal(l.longest, 64 * 1024);
	assert_int_equal(l.count, 5); /* 3 full pieces, the rest, "after" */
	assert_non_null(strstr(l.text.ptr, "1:after\n"));
	kiln_buf_release(&l.text);

	/* many lines on both streams at once: nothing lost */
	lines_init(&l);
	assert_int_equal(run(s, "seq 1 20000; seq 1 20000 >&2", &l, NULL), 0);
	assert_int_equal(l.count, 40000);
	assert_non_null(strstr(l.text.ptr, "1:20000\n"));
	assert_non_null(strstr(l.text.ptr, "2:20000\n"));
	kiln_buf_release(&l.text);
	comm->close(s);
}

static void test_retry_until_sshd_starts_late(void **state)
{
	kiln_test_sshd late;
	kiln_ssh_options o;
	evlog log = { 0, KILN_BUF_INIT };
	kiln_events sink = { on_event, &log };
	void *s = NULL;
	lines l;
	(void)state;
	NEED_SSHD();

	assert_int_equal(kiln_test_sshd_init(&late), 0);
	assert_int_equal(kiln_test_sshd_authorize(&late, fx->key.public_openssh), 0);
	assert_int_equal(kiln_test_sshd_start_delayed(&late, 1500), 0);
	o = options(&late, &fx->key);
	o.events = &sink;
	assert_int_equal(comm->connect(&s, &o), 0);
	/* refused at first, then connected: several attempts, each reported */
	assert_true(log.attempts >= 2);
	assert_non_null(strstr(log.names.ptr, "Connection refused"));
	lines_init(&l);
	assert_int_equal(run(s, "echo up", &l, NULL), 0);
	assert_string_equal(l.text.ptr, "1:up\n");
	kiln_buf_release(&l.text);
	comm->close(s);
	kiln_buf_release(&log.names);
	kiln_test_sshd_release(&late);
}

/* cloud-init installs the key after sshd is up: refusals are retried too */
static void test_retry_until_key_accepted(void **state)
{
	kiln_keypair later;
	kiln_ssh_options o;
	evlog log = { 0, KILN_BUF_INIT };
	kiln_events sink = { on_event, &log };
	void *s = NULL;
	pid_t pid;
	int status;
	(void)state;
	NEED_SSHD();

	/* no comment at all: libssh2 must still read the key */
	assert_int_equal(kiln_keypair_generate_ed25519(&later, NULL), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct timespec ts = { 1, 0 };
		nanosleep(&ts, NULL);
		_exit(kiln_test_sshd_authorize(&fx->sshd, later.public_openssh) == 0 ? 0 : 1);
	}
	o = options(&fx->sshd, &later);
	o.events = &sink;
	assert_int_equal(comm->connect(&s, &o), 0);
	assert_true(log.attempts >= 2);
	assert_non_null(strstr(log.names.ptr, "refused the key"));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	comm->close(s);
	kiln_buf_release(&log.names);
	kiln_keypair_release(&later);
}

static void test_timeout_when_nothing_listens(void **state)
{
	kiln_test_sshd none; /* initialised, never started: its port is free */
	kiln_ssh_options o;
	void *s = NULL;
	uint64_t t0;
	(void)state;
	NEED_SSHD();

	assert_int_equal(kiln_test_sshd_init(&none), 0);
	o = options(&none, &fx->key);
	o.timeout_ms = 1200;
	t0 = kiln_clock_now_ms();
	assert_error(comm->connect(&s, &o), KILN_ETIMEOUT, "within 1.2 s");
	assert_non_null(strstr(kiln_error_last()->message, "Connection refused"));
	/* it kept trying until the timeout, and not much longer */
	assert_true(kiln_clock_now_ms() - t0 >= 1200);
	assert_true(kiln_clock_now_ms() - t0 < 5000);
	assert_null(s);
	kiln_test_sshd_release(&none);
}

static void test_host_key_pinned(void **state)
{
	kiln_ssh_options o;
	const char *good[] = { "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", fx ? fx->sshd.host_fingerprint : "" };
	const char *bad[] = { "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" };
	void *s = NULL;
	uint64_t t0;
	(void)state;
	NEED_SSHD();

	o = options(&fx->sshd, &fx->key);
	o.host_key_fingerprints = good;
	o.n_host_key_fingerprints = 2;
	assert_int_equal(comm->connect(&s, &o), 0);
	assert_string_equal(comm->host_key(s), fx->sshd.host_fingerprint);
	comm->close(s);
	s = NULL;

	/* a key not among the expected ones: refused at once, naming both */
	o.host_key_fingerprints = bad;
	o.n_host_key_fingerprints = 1;
	t0 = kiln_clock_now_ms();
	assert_error(comm->connect(&s, &o), KILN_EAUTH, fx->sshd.host_fingerprint);
	assert_non_null(strstr(kiln_error_last()->message, bad[0]));
	assert_true(kiln_clock_now_ms() - t0 < o.timeout_ms);
	assert_null(s);
}

static void test_wrong_key_refused(void **state)
{
	kiln_keypair other;
	kiln_ssh_options o;
	void *s = NULL;
	(void)state;
	NEED_SSHD();

	assert_int_equal(kiln_keypair_generate_ed25519(&other, "stranger"), 0);
	o = options(&fx->sshd, &other);
	/* a refused key ends the attempt at once; the deadline only bounds a
	 * handshake that a loaded machine (CI) makes slow, so it is generous */
	o.timeout_ms = 15000;
	assert_error(comm->connect(&s, &o), KILN_EAUTH, other.fingerprint);
	assert_non_null(strstr(kiln_error_last()->message, "refused the key"));
	assert_null(s);
	kiln_keypair_release(&other);
}

static void on_alarm(int signo)
{
	(void)signo;
	kiln_cancel_set(SIGINT);
}

/* Cancels (as SIGINT would) once the command has said it started. */
typedef struct cancel_ctx {
	lines l;
	uint64_t cancelled_at;
} cancel_ctx;

static void collect_then_cancel(void *ctx, int stream, const char *line, size_t len)
{
	cancel_ctx *c = ctx;
	collect(&c->l, stream, line, len);
	if (!c->cancelled_at && len == 7 && !memcmp(line, "started", 7)) {
		c->cancelled_at = kiln_clock_now_ms();
		kiln_cancel_set(SIGINT);
	}
}

static void test_cancel_during_long_command(void **state)
{
	cancel_ctx c;
	void *s;
	int status = 0;
	bool disc = false;
	(void)state;
	NEED_SSHD();

	s = session_open();
	memset(&c, 0, sizeof(c));
	lines_init(&c.l);
	assert_error(comm->exec(s, "echo started; sleep 30", collect_then_cancel, &c, &status, &disc),
		     KILN_ECANCELLED, "SIGINT");
	/* noticed within a poll slice, the channel given up within its grace */
	assert_true(c.cancelled_at > 0);
	assert_true(kiln_clock_now_ms() - c.cancelled_at < 1000);
	assert_string_equal(c.l.text.ptr, "1:started\n");
	kiln_cancel_reset();
	comm->close(s);
	kiln_buf_release(&c.l.text);
}

static void test_disconnect_detected(void **state)
{
	void *s;
	lines l;
	bool disc = false;
	int status = 0;
	uint64_t t0;
	(void)state;
	NEED_SSHD();

	s = session_open();
	lines_init(&l);
	/* the shell's parent is the session's sshd process: as if the host went down */
	t0 = kiln_clock_now_ms();
	status = run(s, "echo going; sleep 1; kill -9 $PPID; sleep 5", &l, &disc);
	assert_true(disc);
	/* noticed when the connection dropped, not when the command would have ended */
	assert_true(kiln_clock_now_ms() - t0 < 5000);
	assert_int_equal(status, -1);
	assert_string_equal(l.text.ptr, "1:going\n");
	/* the session is dead now: later calls fail at once */
	assert_error(comm->exec(s, "true", collect, &l, &status, &disc), KILN_ERROR, "closed");
	assert_error(comm->upload_data(s, "x", 1, "/tmp/x", 0644), KILN_ERROR, "closed");
	comm->close(s);
	kiln_buf_release(&l.text);
}

/* ---- uploads ---------------------------------------------------------------------- */

static void write_file(const char *path, const char *text, mode_t mode)
{
	assert_int_equal(kiln_write_file_atomic(path, text, strlen(text), mode), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static void assert_file(const char *path, const char *text, mode_t mode)
{
	kiln_buf b = KILN_BUF_INIT;
	struct stat st;
	if (kiln_read_file(&b, path) < 0)
		fail_msg("%s", kiln_error_last()->message);
	assert_string_equal(b.ptr, text);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, mode);
	kiln_buf_release(&b);
}

static char *tmp_path(const char *name)
{
	return kiln_strdupf("%s/%s", fx->tmp, name);
}

static void test_upload_file_with_mode(void **state)
{
	void *s;
	char *src = NULL, *dst, *dir;
	uint64_t bytes = 0;
	(void)state;
	NEED_SSHD();

	s = session_open();
	src = tmp_path("tool.sh");
	write_file(src, "#!/bin/sh\necho hi\n", 0751);
	dst = tmp_path("tool-copy.sh");
	assert_int_equal(comm->upload(s, src, dst, &bytes), 0);
	assert_int_equal(bytes, 18);
	assert_file(dst, "#!/bin/sh\necho hi\n", 0751);

	/* a trailing slash, or an existing directory: into it under its own name */
	dir = tmp_path("into");
	assert_int_equal(mkdir(dir, 0755), 0);
	free(dst);
	dst = kiln_strdupf("%s/", dir);
	assert_int_equal(comm->upload(s, src, dst, &bytes), 0);
	free(dst);
	dst = tmp_path("into/tool.sh");
	assert_file(dst, "#!/bin/sh\necho hi\n", 0751);
	assert_int_equal(unlink(dst), 0);
	assert_int_equal(comm->upload(s, src, dir, &bytes), 0);
	assert_file(dst, "#!/bin/sh\necho hi\n", 0751);
	assert_int_equal(bytes, 3 * 18);

	/* overwriting keeps nothing of the old content */
	write_file(src, "short\n", 0600);
	assert_int_equal(comm->upload(s, src, dst, &bytes), 0);
	assert_file(dst, "short\n", 0600);

	/* a missing parent directory is an error, as in Packer */
	free(dst);
	dst = tmp_path("missing/dir/file");
	assert_error(comm->upload(s, src, dst, &bytes), KILN_ENOTFOUND, "no such file");
	assert_non_null(strstr(kiln_error_last()->message, "missing/dir/file"));
	free(dst);
	dst = tmp_path("no-such-source");
	assert_error(comm->upload(s, dst, fx->tmp, &bytes), KILN_ERROR, "no-such-source");

	/* generated data with its mode, past the umask */
	free(dst);
	dst = tmp_path("script.sh");
	assert_int_equal(comm->upload_data(s, "echo data\n", 10, dst, 0700), 0);
	assert_file(dst, "echo data\n", 0700);
	assert_int_equal(comm->upload_data(s, "", 0, dst, 0640), 0);
	assert_file(dst, "", 0640);

	free(src);
	free(dst);
	free(dir);
	comm->close(s);
}

static void make_tree(const char *root)
{
	char *p;
	assert_int_equal(mkdir(root, 0750), 0);
	p = kiln_strdupf("%s/a.txt", root);
	write_file(p, "a\n", 0644);
	free(p);
	p = kiln_strdupf("%s/sub", root);
	assert_int_equal(mkdir(p, 0700), 0);
	free(p);
	p = kiln_strdupf("%s/sub/run.sh", root);
	write_file(p, "#!/bin/sh\n", 0755);
	free(p);
	p = kiln_strdupf("%s/sub/deeper", root);
	assert_int_equal(mkdir(p, 0755), 0);
	free(p);
	p = kiln_strdupf("%s/sub/deeper/empty", root);
	write_file(p, "", 0600);
	free(p);
	p = kiln_strdupf("%s/empty-dir", root);
	assert_int_equal(mkdir(p, 0555), 0);
	free(p);
}

static void assert_tree(const char *root)
{
	char *p;
	struct stat st;
	p = kiln_strdupf("%s/a.txt", root);
	assert_file(p, "a\n", 0644);
	free(p);
	p = kiln_strdupf("%s/sub/run.sh", root);
	assert_file(p, "#!/bin/sh\n", 0755);
	free(p);
	p = kiln_strdupf("%s/sub/deeper/empty", root);
	assert_file(p, "", 0600);
	free(p);
	p = kiln_strdupf("%s/sub", root);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	free(p);
	p = kiln_strdupf("%s/empty-dir", root);
	assert_int_equal(stat(p, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0555);
	free(p);
	assert_int_equal(stat(root, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0750);
}

static void test_upload_directory_trees(void **state)
{
	void *s;
	char *src, *src_slash, *dest, *p;
	uint64_t bytes = 0;
	(void)state;
	NEED_SSHD();

	s = session_open();
	src = tmp_path("app");
	make_tree(src);

	/* "app" -> dest/app (dest exists) */
	dest = tmp_path("dest1");
	assert_int_equal(mkdir(dest, 0755), 0);
	assert_int_equal(comm->upload(s, src, dest, &bytes), 0);
	assert_int_equal(bytes, 2 + 10);
	p = kiln_strdupf("%s/app", dest);
	assert_tree(p);
	free(p);
	free(dest);

	/* "app/" -> its contents into dest (created, with its parents) */
	src_slash = kiln_strdupf("%s/", src);
	dest = tmp_path("dest2/deep/er");
	assert_int_equal(comm->upload(s, src_slash, dest, &bytes), 0);
	assert_tree(dest);
	p = kiln_strdupf("%s/app", dest);
	assert_false(kiln_path_exists(p));
	free(p);
	free(dest);

	/* "app/" into an existing directory leaves that directory's own mode alone */
	dest = tmp_path("dest3");
	assert_int_equal(mkdir(dest, 0711), 0);
	assert_int_equal(chmod(dest, 0711), 0);
	assert_int_equal(comm->upload(s, src_slash, dest, &bytes), 0);
	{
		struct stat st;
		assert_int_equal(stat(dest, &st), 0);
		assert_int_equal(st.st_mode & 07777, 0711);
		p = kiln_strdupf("%s/sub/run.sh", dest);
		assert_file(p, "#!/bin/sh\n", 0755);
		free(p);
	}
	free(dest);

	/* uploading again over what is there works (directories exist already) */
	dest = tmp_path("dest1");
	assert_int_equal(comm->upload(s, src, dest, &bytes), 0);
	free(dest);

	free(src);
	free(src_slash);
	comm->close(s);
}

static void sha256_hex(char out[65], const unsigned char *data, size_t len)
{
	unsigned char md[32];
	size_t i;
	EVP_Digest(data, len, md, NULL, EVP_sha256(), NULL);
	for (i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void test_upload_50mb_integrity(void **state)
{
	/* not a multiple of the window, of its quarter or of libssh2's 30000-byte requests */
	const size_t size = (50u << 20) + 12345;
	unsigned char *data;
	char *src, *dst, want[65], got[256];
	uint64_t bytes = 0;
	void *s;
	lines l;
	(void)state;
	NEED_SSHD();

	data = malloc(size);
	assert_non_null(data);
	assert_int_equal(RAND_bytes(data, (int)size), 1);
	sha256_hex(want, data, size);
	src = tmp_path("big.bin");
	assert_int_equal(kiln_write_file_atomic(src, data, size, 0644), 0);
	dst = tmp_path("big-copy.bin");

	s = session_open();
	assert_int_equal(comm->upload(s, src, dst, &bytes), 0);
	assert_int_equal(bytes, size);
	/* the far side's own view of what it received */
	lines_init(&l);
	{
		char *cmd = kiln_strdupf("sha256sum '%s'", dst);
		assert_int_equal(run(s, cmd, &l, NULL), 0);
		free(cmd);
	}
	snprintf(got, sizeof(got), "1:%s  %s\n", want, dst);
	assert_string_equal(l.text.ptr, got);
	kiln_buf_release(&l.text);

	/* the same from memory */
	assert_int_equal(unlink(dst), 0);
	assert_int_equal(comm->upload_data(s, data, size, dst, 0600), 0);
	assert_int_equal(kiln_test_sh(got, sizeof(got), "sha256sum < '%s'", dst), 0);
	assert_true(kiln_view_starts_with(kiln_view_of(got), want));

	comm->close(s);
	unlink(src);
	unlink(dst);
	free(src);
	free(dst);
	free(data);
}

static void test_cancel_during_upload(void **state)
{
	struct itimerval it = { { 0, 0 }, { 0, 100000 } };
	struct sigaction sa;
	const size_t size = 200u << 20;
	char *data, *dst;
	void *s;
	uint64_t t0;
	(void)state;
	NEED_SSHD();

	data = calloc(1, size);
	assert_non_null(data);
	dst = tmp_path("cancelled.bin");
	s = session_open();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);
	t0 = kiln_clock_now_ms();
	setitimer(ITIMER_REAL, &it, NULL);
	assert_error(comm->upload_data(s, data, size, dst, 0644), KILN_ECANCELLED, "SIGINT");
	assert_true(kiln_clock_now_ms() - t0 < 1500);
	kiln_cancel_reset();
	signal(SIGALRM, SIG_DFL);
	/* the session was left consistent enough to close cleanly */
	comm->close(s);
	unlink(dst);
	free(dst);
	free(data);
}

static void test_upload_window(void **state)
{
	(void)state;
	/* no round trip known: the old fixed 1 MiB */
	assert_int_equal(kiln_ssh_upload_window(0), 1u << 20);
	/* loopback and LAN: never below 384 KiB */
	assert_int_equal(kiln_ssh_upload_window(30), 384u << 10);
	assert_int_equal(kiln_ssh_upload_window(3750), 384u << 10);
	/* a round trip of 100 MiB/s, in whole 64 KiB */
	assert_int_equal(kiln_ssh_upload_window(4000), 448u << 10);
	assert_int_equal(kiln_ssh_upload_window(5000), 512u << 10);
	assert_int_equal(kiln_ssh_upload_window(10000), 1u << 20);
	/* a WAN: OpenSSH's 2 MiB at most */
	assert_int_equal(kiln_ssh_upload_window(20000), 2u << 20);
	assert_int_equal(kiln_ssh_upload_window(300000), 2u << 20);
	assert_int_equal(kiln_ssh_upload_window(UINT32_MAX), 2u << 20);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_exec_status_and_lines, reset_cancel),
		cmocka_unit_test_teardown(test_exec_long_lines_and_volume, reset_cancel),
		cmocka_unit_test_teardown(test_retry_until_sshd_starts_late, reset_cancel),
		cmocka_unit_test_teardown(test_retry_until_key_accepted, reset_cancel),
		cmocka_unit_test_teardown(test_timeout_when_nothing_listens, reset_cancel),
		cmocka_unit_test_teardown(test_host_key_pinned, reset_cancel),
		cmocka_unit_test_teardown(test_wrong_key_refused, reset_cancel),
		cmocka_unit_test_teardown(test_cancel_during_long_command, reset_cancel),
		cmocka_unit_test_teardown(test_disconnect_detected, reset_cancel),
		cmocka_unit_test_teardown(test_upload_file_with_mode, reset_cancel),
		cmocka_unit_test_teardown(test_upload_directory_trees, reset_cancel),
		cmocka_unit_test_teardown(test_upload_50mb_integrity, reset_cancel),
		cmocka_unit_test(test_upload_window),
		cmocka_unit_test_teardown(test_cancel_during_upload, reset_cancel),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
