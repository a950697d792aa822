/*
 * The shell and file provisioners over the real communicator and a real
 * sshd on loopback (tests/support/sshd.h); the "instance" is this machine.
 */
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/cloud.h"
#include "core/error.h"
#include "core/event.h"
#include "core/fs.h"
#include "provisioners/provision.h"
#include "provisioners/ssh.h"
#include "tests/support/sshd.h"
#include "tests/support/test.h"

static const kiln_communicator *comm = &kiln_ssh_communicator;

typedef struct fixture {
	kiln_test_sshd sshd;
	kiln_keypair key;
	char *tmp;
} fixture;

static fixture *fx;

/* "stdout:line\n" / "stderr:line\n" for every output event; other events by name. */
typedef struct sink_log {
	kiln_buf out;
	kiln_buf other;
	bool bad_field;
} sink_log;

static void on_event(void *ctx, const kiln_event *ev)
{
	sink_log *log = ctx;
	if (!strcmp(ev->name, "output")) {
		const char *prov = json_string_value(json_object_get(ev->fields, "provisioner"));
		const char *stream = json_string_value(json_object_get(ev->fields, "stream"));
		const char *line = json_string_value(json_object_get(ev->fields, "line"));
		if (!prov || !stream || !line || strcmp(prov, "shell #1") != 0 ||
		    strcmp(line, ev->message) != 0)
			log->bad_field = true;
		kiln_buf_printf(&log->out, "%s:%s\n", stream ? stream : "?", line ? line : "?");
	} else {
		kiln_buf_printf(&log->other, "%s:%s\n", ev->name, ev->message);
	}
}

static void log_init(sink_log *log)
{
	memset(log, 0, sizeof(*log));
	kiln_buf_init(&log->out, 1 << 20);
	kiln_buf_init(&log->other, 1 << 20);
}

static void log_release(sink_log *log)
{
	kiln_buf_release(&log->out);
	kiln_buf_release(&log->other);
}

static int group_setup(void **state)
{
	const char *why = kiln_test_sshd_unavailable();
	(void)state;
	if (why) {
		print_message("skipping the provisioner tests: %s\n", why);
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

#define NEED_SSHD() \
	do { if (!fx) skip(); } while (0)

static void *session_open(void)
{
	kiln_ssh_options o;
	void *s = NULL;

	memset(&o, 0, sizeof(o));
	o.host = "127.0.0.1";
	o.port = fx->sshd.port;
	o.username = fx->sshd.user;
	o.key = &fx->key;
	o.timeout_ms = 10000;
	if (comm->connect(&s, &o) < 0)
		fail_msg("connect: %s", kiln_error_last()->message);
	return s;
}

/* A shell provisioner from a NULL-terminated list of inline commands. */
static void shell_inline(kiln_provisioner *p, const char *const *cmds)
{
	size_t n = 0;
	memset(p, 0, sizeof(*p));
	p->type = KILN_PROVISIONER_SHELL;
	p->label = kiln_strdup("shell #1");
	while (cmds[n])
		n++;
	p->inline_cmds = calloc(n, sizeof(char *));
	for (p->n_inline = 0; p->n_inline < n; p->n_inline++)
		p->inline_cmds[p->n_inline] = kiln_strdup(cmds[p->n_inline]);
}

static void shell_scripts(kiln_provisioner *p, const char *const *paths)
{
	size_t n = 0;
	memset(p, 0, sizeof(*p));
	p->type = KILN_PROVISIONER_SHELL;
	p->label = kiln_strdup("shell #1");
	while (paths[n])
		n++;
	p->scripts = calloc(n, sizeof(char *));
	for (p->n_scripts = 0; p->n_scripts < n; p->n_scripts++)
		p->scripts[p->n_scripts] = kiln_strdup(paths[p->n_scripts]);
}

static int provision(void *s, const kiln_provisioner *p, sink_log *log,
		     kiln_provision_stats *stats)
{
	kiln_events sink = { on_event, log };
	return kiln_provision_run(comm, s, p, &sink, stats);
}

static void test_inline_runs_and_cleans_up(void **state)
{
	static const char *const cmds[] = {
		"echo \"script at $0\"",
		"echo to-stderr >&2",
		"x=kept; echo \"state $x\"",
		"echo \"$x across lines\"",
		"printf 'bad\\377byte\\n'",
		NULL,
	};
	kiln_provisioner p;
	kiln_provision_stats stats;
	sink_log log;
	const char *at;
	char path[128];
	void *s;
	(void)state;
	NEED_SSHD();

	s = session_open();
	shell_inline(&p, cmds);
	log_init(&log);
	memset(&stats, 0, sizeof(stats));
	assert_int_equal(provision(s, &p, &log, &stats), 0);
	assert_false(log.bad_field);
	assert_non_null(at = strstr(log.out.ptr, "stdout:script at /tmp/kiln-script-"));
	assert_non_null(strstr(log.out.ptr, "stderr:to-stderr\n"));
	/* one script: shell state carries from one command to the next */
	assert_non_null(strstr(log.out.ptr, "stdout:state kept\nstdout:kept across lines\n"));
	/* invalid UTF-8 becomes U+FFFD so that the JSON events stay valid */
	assert_non_null(strstr(log.out.ptr, "stdout:bad\xef\xbf\xbd" "byte\n"));
	assert_int_equal(stats.commands, 1);
	assert_true(stats.bytes_uploaded > 100);
	assert_false(stats.disconnected);
	/* the remote script is gone afterwards */
	snprintf(path, sizeof(path), "%.*s", (int)strcspn(at + 17, "\n"), at + 17);
	assert_true(kiln_view_starts_with(kiln_view_of(path), "/tmp/kiln-script-"));
	assert_false(kiln_path_exists(path));

	kiln_provisioner_release(&p);
	log_release(&log);
	comm->close(s);
}

static void test_inline_failure_names_the_command(void **state)
{
	static const char *const cmds[] = {
		"echo first",
		"printf 'partial' >&2; sh -c 'exit 100'",
		"echo never",
		NULL,
	};
	static const char *const cmds2[] = { "true", "kill -KILL $$", NULL };
	kiln_provisioner p;
	kiln_provision_stats stats;
	sink_log log;
	void *s;
	(void)state;
	NEED_SSHD();

	s = session_open();
	shell_inline(&p, cmds);
	log_init(&log);
	memset(&stats, 0, sizeof(stats));
	assert_error(provision(s, &p, &log, &stats), KILN_ERROR,
		     "shell #1: command `printf 'partial' >&2; sh -c 'exit 100'` exited with status 100");
	assert_non_null(strstr(log.out.ptr, "stdout:first\n"));
	assert_null(strstr(log.out.ptr, "never"));
	/* the marker that named the command is not shown, the partial line is */
	assert_non_null(strstr(log.out.ptr, "stderr:partial\n"));
	assert_null(strstr(log.out.ptr, "kiln-failed-"));
	kiln_provisioner_release(&p);
	log_release(&log);

	/* no EXIT trap runs after SIGKILL: the script as a whole is named */
	shell_inline(&p, cmds2);
	log_init(&log);
	assert_error(provision(s, &p, &log, &stats), KILN_ERROR,
		     "shell #1: the inline commands were killed by a signal");
	kiln_provisioner_release(&p);
	log_release(&log);
	comm->close(s);
}

static void test_environment_vars_quoting(void **state)
{
	static const char *const cmds[] = {
		"printf '[%s][%s][%s][%s]\\n' \"$GREETING\" \"$QUOTE\" \"$EMPTY\" \"$MULTI\"", NULL,
	};
	kiln_provisioner p;
	sink_log log;
	void *s;
	(void)state;
	NEED_SSHD();

	s = session_open();
	shell_inline(&p, cmds);
	kiln_tags_set(&p.environment, "GREETING", "hello  world");
	kiln_tags_set(&p.environment, "QUOTE", "it's \"quoted\" $HOME `id` \\ ;|&");
	kiln_tags_set(&p.environment, "EMPTY", "");
	kiln_tags_set(&p.environment, "MULTI", "a\nb");
	log_init(&log);
	assert_int_equal(provision(s, &p, &log, NULL), 0);
	assert_string_equal(log.out.ptr,
			    "stdout:[hello  world][it's \"quoted\" $HOME `id` \\ ;|&][][a\n"
			    "stdout:b]\n");
	log_release(&log);

	/* {{.Vars}} in order, quoted as Packer quotes them */
	free(p.execute_command);
	p.execute_command = kiln_strdup("printf '%s\\n' {{ .Vars }}; echo {{.Path}} | cut -c1-17");
	log_init(&log);
	assert_int_equal(provision(s, &p, &log, NULL), 0);
	assert_string_equal(log.out.ptr,
			    "stdout:GREETING=hello  world\n"
			    "stdout:QUOTE=it's \"quoted\" $HOME `id` \\ ;|&\n"
			    "stdout:EMPTY=\n"
			    "stdout:MULTI=a\n"
			    "stdout:b\n"
			    "stdout:/tmp/kiln-script-\n");
	log_release(&log);

	/* a name the shell cannot take is refused before anything runs */
	kiln_tags_set(&p.environment, "NOT VALID", "x");
	log_init(&log);
	assert_error(provision(s, &p, &log, NULL), KILN_EINVALID, "'NOT VALID'");
	assert_string_equal(log.out.ptr, "");
	log_release(&log);
	kiln_provisioner_release(&p);
	comm->close(s);
}

static void test_execute_command_override(void **state)
{
	static const char *const cmds[] = { "echo \"in script as $(id -un) with $FOO\"", NULL };
	kiln_provisioner p;
	sink_log log;
	void *s;
	char want[256];
	(void)state;
	NEED_SSHD();

	s = session_open();
	shell_inline(&p, cmds);
	kiln_tags_set(&p.environment, "FOO", "bar baz");
	/* as with sudo -E sh: run by an explicit shell, so the shebang is not used */
	p.execute_command = kiln_strdup("echo wrapper; {{.Vars}} sh -c 'sh \"$0\"' {{.Path}}");
	log_init(&log);
	assert_int_equal(provision(s, &p, &log, NULL), 0);
	snprintf(want, sizeof(want), "stdout:wrapper\nstdout:in script as %s with bar baz\n",
		 fx->sshd.user);
	assert_string_equal(log.out.ptr, want);
	log_release(&log);
	kiln_provisioner_release(&p);

	/* set -e holds without the shebang too; the failing command is found through 2>&1 */
	{
		static const char *const fail[] = { "false", "echo not-reached", NULL };
		shell_inline(&p, fail);
		p.execute_command = kiln_strdup("sh {{.Path}} 2>&1");
		log_init(&log);
		assert_error(provision(s, &p, &log, NULL), KILN_ERROR,
			     "command `false` exited with status 1");
		assert_null(strstr(log.out.ptr, "not-reached"));
		assert_null(strstr(log.out.ptr, "kiln-failed-"));
		log_release(&log);
		kiln_provisioner_release(&p);
	}
	comm->close(s);
}

static void test_scripts(void **state)
{
	kiln_provisioner p;
	kiln_provision_stats stats;
	sink_log log;
	char *ok, *bad, *after;
	void *s;
	(void)state;
	NEED_SSHD();

	ok = kiln_test_write(fx->tmp, "ok.sh", "#!/bin/sh\necho \"ok with $FOO\"\n");
	bad = kiln_test_write(fx->tmp, "fail.sh", "#!/bin/sh\necho failing >&2\nexit 3\n");
	after = kiln_test_write(fx->tmp, "after.sh", "#!/bin/sh\necho after\n");
	s = session_open();

	{
		const char *const one[] = { ok, NULL };
		shell_scripts(&p, one);
		kiln_tags_set(&p.environment, "FOO", "x'y");
		log_init(&log);
		memset(&stats, 0, sizeof(stats));
		assert_int_equal(provision(s, &p, &log, &stats), 0);
		assert_string_equal(log.out.ptr, "stdout:ok with x'y\n");
		assert_int_equal(stats.commands, 1);
		assert_int_equal(stats.bytes_uploaded, strlen("#!/bin/sh\necho \"ok with $FOO\"\n"));
		assert_non_null(strstr(log.other.ptr, "running script 'ok.sh'"));
		log_release(&log);
		kiln_provisioner_release(&p);
	}
	{
		const char *const three[] = { ok, bad, after, NULL };
		shell_scripts(&p, three);
		free(p.label);
		p.label = kiln_strdup("shell #2");
		log_init(&log);
		memset(&stats, 0, sizeof(stats));
		assert_error(provision(s, &p, &log, &stats), KILN_ERROR,
			     "shell #2: script 'fail.sh' exited with status 3");
		assert_int_equal(stats.commands, 2);
		assert_non_null(strstr(log.out.ptr, "stderr:failing\n"));
		assert_null(strstr(log.out.ptr, "after"));
		log_release(&log);
		kiln_provisioner_release(&p);
	}
	{
		const char *const missing[] = { "/nonexistent/setup.sh", NULL };
		shell_scripts(&p, missing);
		log_init(&log);
		assert_error(provision(s, &p, &log, NULL), KILN_ERROR, "script 'setup.sh'");
		log_release(&log);
		kiln_provisioner_release(&p);
	}
	{
		kiln_provisioner both;
		static const char *const cmds[] = { "true", NULL };
		shell_inline(&both, cmds);
		both.scripts = calloc(1, sizeof(char *));
		both.scripts[0] = kiln_strdup(ok);
		both.n_scripts = 1;
		assert_error(kiln_provision_run(comm, s, &both, NULL, NULL), KILN_EINVALID,
			     "exactly one of inline and scripts");
		kiln_provisioner_release(&both);
	}
	comm->close(s);
	free(ok);
	free(bad);
	free(after);
}

/* Kills the session's sshd process from inside, the way a reboot drops it. */
#define DROP_CONNECTION                                                         \
	"p=$PPID; while [ \"$(cat /proc/$p/comm)\" != sshd ]; do "              \
	"p=$(cut -d' ' -f4 /proc/$p/stat); done; sleep 1; kill -9 $p; sleep 5"

static void test_expect_disconnect(void **state)
{
	static const char *const cmds[] = { "echo rebooting", DROP_CONNECTION, NULL };
	kiln_provisioner p;
	kiln_provision_stats stats;
	sink_log log;
	void *s;
	(void)state;
	NEED_SSHD();

	shell_inline(&p, cmds);
	p.expect_disconnect = true;
	s = session_open();
	log_init(&log);
	memset(&stats, 0, sizeof(stats));
	assert_int_equal(provision(s, &p, &log, &stats), 0);
	assert_true(stats.disconnected);
	assert_non_null(strstr(log.out.ptr, "stdout:rebooting\n"));
	assert_non_null(strstr(log.other.ptr, "dropped, as expected"));
	log_release(&log);
	comm->close(s);

	p.expect_disconnect = false;
	s = session_open();
	log_init(&log);
	memset(&stats, 0, sizeof(stats));
	assert_error(provision(s, &p, &log, &stats), KILN_ERROR,
		     "shell #1: the connection dropped while the inline commands ran");
	assert_false(stats.disconnected);
	log_release(&log);
	comm->close(s);

	/* expected but it did not happen: the status still counts */
	{
		static const char *const fail[] = { "exit 2", NULL };
		kiln_provisioner q;
		shell_inline(&q, fail);
		q.expect_disconnect = true;
		s = session_open();
		log_init(&log);
		assert_error(provision(s, &q, &log, NULL), KILN_ERROR, "exited with status 2");
		log_release(&log);
		comm->close(s);
		kiln_provisioner_release(&q);
	}
	kiln_provisioner_release(&p);
}

static void test_file_provisioner(void **state)
{
	kiln_provisioner p;
	kiln_provision_stats stats;
	sink_log log;
	char *src, *dest, *f;
	void *s;
	(void)state;
	NEED_SSHD();

	src = kiln_strdupf("%s/site", fx->tmp);
	assert_int_equal(kiln_mkdir_p(src, 0755), 0);
	free(kiln_test_write(src, "index.html", "<h1>v1</h1>\n"));
	dest = kiln_strdupf("%s/srv", fx->tmp);
	assert_int_equal(kiln_mkdir_p(dest, 0755), 0);

	memset(&p, 0, sizeof(p));
	p.type = KILN_PROVISIONER_FILE;
	p.label = kiln_strdup("file #3");
	p.source = kiln_strdup(src);
	p.destination = kiln_strdup(dest);
	s = session_open();
	log_init(&log);
	memset(&stats, 0, sizeof(stats));
	assert_int_equal(provision(s, &p, &log, &stats), 0);
	f = kiln_strdupf("%s/site/index.html", dest);
	assert_true(kiln_path_exists(f));
	assert_int_equal(stats.bytes_uploaded, 12);
	assert_non_null(strstr(log.other.ptr, "file #3: uploaded 12 bytes"));
	log_release(&log);

	/* a failure names the provisioner */
	free(p.source);
	p.source = kiln_strdupf("%s/absent", fx->tmp);
	log_init(&log);
	assert_error(provision(s, &p, &log, &stats), KILN_ERROR, "file #3: cannot upload");
	log_release(&log);

	comm->close(s);
	kiln_provisioner_release(&p);
	free(src);
	free(dest);
	free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_inline_runs_and_cleans_up),
		cmocka_unit_test(test_inline_failure_names_the_command),
		cmocka_unit_test(test_environment_vars_quoting),
		cmocka_unit_test(test_execute_command_override),
		cmocka_unit_test(test_scripts),
		cmocka_unit_test(test_expect_disconnect),
		cmocka_unit_test(test_file_provisioner),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
