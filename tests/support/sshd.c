#include "tests/support/sshd.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/error.h"
#include "core/fs.h"

#define SSHD_BIN "/usr/sbin/sshd"
#define SFTP_SERVER "/usr/lib/openssh/sftp-server"

static void real_sleep_ms(unsigned ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int kiln_test_sh(char *out, size_t out_size, const char *fmt, ...)
{
	char cmd[8192];
	size_t len = 0;
	va_list ap;
	FILE *p;
	int status;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (out && out_size)
		out[0] = '\0';
	if (!(p = popen(cmd, "r")))
		return -1;
	for (;;) {
		char tmp[4096];
		size_t n = fread(tmp, 1, sizeof(tmp), p);
		if (n == 0)
			break;
		if (out && out_size) {
			size_t take = KILN_MIN(n, out_size - 1 - len);
			memcpy(out + len, tmp, take);
			len += take;
			out[len] = '\0';
		}
	}
	status = pclose(p);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

const char *kiln_test_sshd_unavailable(void)
{
	if (geteuid() != 0)
		return "a real sshd needs root (privilege separation, logging in as any user)";
	if (access(SSHD_BIN, X_OK) != 0)
		return "no " SSHD_BIN " (package openssh-server)";
	if (access("/usr/bin/ssh-keygen", X_OK) != 0)
		return "no ssh-keygen (package openssh-client)";
	return NULL;
}

/* A port the kernel has just handed out, so most likely still free. */
static int free_port(void)
{
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	if (fd < 0)
		return -1;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &alen) == 0)
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static bool port_answers(int port)
{
	struct sockaddr_in a;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((uint16_t)port);
	ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(fd);
	return ok;
}

int kiln_test_sshd_init(kiln_test_sshd *s)
{
	const char *base = getenv("TMPDIR");
	struct passwd *pw = getpwuid(geteuid());
	char out[512], *sp;
	int error = -1;

	memset(s, 0, sizeof(*s));
	if (!(s->dir = kiln_strdupf("%s/kiln-sshd-XXXXXX", base && *base ? base : "/tmp")))
		return KILN_ENOMEM;
	if (!mkdtemp(s->dir))
		return kiln_error_set_os(KILN_ERROR, errno, "cannot create '%s'", s->dir);
	s->config_path = kiln_strdupf("%s/sshd_config", s->dir);
	s->authorized_keys = kiln_strdupf("%s/authorized_keys", s->dir);
	s->log_path = kiln_strdupf("%s/sshd.log", s->dir);
	if (!s->config_path || !s->authorized_keys || !s->log_path)
		return KILN_ENOMEM;
	if (!pw || (error = kiln_strlcpy(s->user, sizeof(s->user), pw->pw_name)) < 0)
		return kiln_error_set(KILN_ERROR, "cannot name the current user");
	if ((error = kiln_write_file_atomic(s->authorized_keys, "", 0, 0600)) < 0)
		return error;

	if (kiln_test_sh(out, sizeof(out), "ssh-keygen -q -t ed25519 -N '' -C kiln-test-host "
			 "-f '%s/host_ed25519' </dev/null", s->dir) != 0)
		return kiln_error_set(KILN_ERROR, "ssh-keygen could not make a host key in '%s'", s->dir);
	if (kiln_test_sh(out, sizeof(out), "ssh-keygen -l -f '%s/host_ed25519.pub'", s->dir) != 0 ||
	    !(sp = strchr(out, ' ')))
		return kiln_error_set(KILN_ERROR, "ssh-keygen -l failed on the host key");
	/* "256 SHA256:xxxx comment (ED25519)": the second field */
	sp++;
	out[sizeof(out) - 1] = '\0';
	*strchrnul(sp, ' ') = '\0';
	if ((error = kiln_strlcpy(s->host_fingerprint, sizeof(s->host_fingerprint), sp)) < 0)
		return error;

	if ((s->port = free_port()) < 0)
		return kiln_error_set_os(KILN_ERROR, errno, "cannot find a free port");
	return 0;
}

int kiln_test_sshd_authorize(kiln_test_sshd *s, const char *public_key)
{
	kiln_buf b = KILN_BUF_INIT;
	int error;

	if ((error = kiln_read_file(&b, s->authorized_keys)) < 0 ||
	    (error = kiln_buf_printf(&b, "%s\n", public_key)) < 0 ||
	    (error = kiln_write_file_atomic(s->authorized_keys, b.ptr, b.len, 0600)) < 0) {
		kiln_buf_release(&b);
		return error;
	}
	kiln_buf_release(&b);
	return 0;
}

static int write_config(kiln_test_sshd *s)
{
	kiln_buf b = KILN_BUF_INIT;
	int error;

	/* privilege separation wants this directory even with -D */
	if ((error = kiln_mkdir_p("/run/sshd", 0755)) < 0)
		return error;
	error = kiln_buf_printf(&b,
		"Port %d\n"
		"ListenAddress 127.0.0.1\n"
		"HostKey %s/host_ed25519\n"
		"PidFile %s/sshd.pid\n"
		"AuthorizedKeysFile %s\n"
		"UsePAM no\n"
		"StrictModes no\n"
		"PermitRootLogin prohibit-password\n"
		"PubkeyAuthentication yes\n"
		"PasswordAuthentication no\n"
		"KbdInteractiveAuthentication no\n"
		"UseDNS no\n"
		"PrintMotd no\n"
		"X11Forwarding no\n"
		"MaxStartups 100\n"
		"LogLevel VERBOSE\n"
		"Subsystem sftp " SFTP_SERVER "\n"
		"%s\n",
		s->port, s->dir, s->dir, s->authorized_keys,
		s->extra_config ? s->extra_config : "");
	if (error == 0)
		error = kiln_write_file_atomic(s->config_path, b.ptr, b.len, 0644);
	kiln_buf_release(&b);
	return error;
}

static pid_t spawn(kiln_test_sshd *s, unsigned delay_ms)
{
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	/* the child: never returns into the test */
	{
		int log = open(s->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		int null = open("/dev/null", O_RDWR);
		/* a test that crashes (an ASan abort) must not leave its sshd behind */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() == 1)
			_exit(127);
		if (log >= 0)
			dup2(log, 2);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
		}
		if (delay_ms)
			real_sleep_ms(delay_ms);
		execl(SSHD_BIN, SSHD_BIN, "-D", "-e", "-f", s->config_path, (char *)NULL);
		_exit(127);
	}
}

int kiln_test_sshd_start(kiln_test_sshd *s)
{
	int error, tries;

	for (tries = 0; tries < 5; tries++) {
		unsigned waited;
		int status;

		if ((error = write_config(s)) < 0)
			return error;
		if ((s->pid = spawn(s, 0)) < 0)
			return kiln_error_set_os(KILN_ERROR, errno, "cannot fork sshd");
		for (waited = 0; waited < 10000; waited += 20) {
			if (port_answers(s->port))
				return 0;
			if (waitpid(s->pid, &status, WNOHANG) == s->pid)
				break;
			real_sleep_ms(20);
		}
		if (waited >= 10000) {
			kiln_test_sshd_stop(s);
			return kiln_error_set(KILN_ETIMEOUT, "sshd did not answer on port %d (see '%s')",
					      s->port, s->log_path);
		}
		/* it died: most likely someone took the port meanwhile; pick another */
		s->pid = 0;
		if ((s->port = free_port()) < 0)
			return kiln_error_set_os(KILN_ERROR, errno, "cannot find a free port");
	}
	return kiln_error_set(KILN_ERROR, "sshd would not start (see '%s')", s->log_path);
}

int kiln_test_sshd_start_delayed(kiln_test_sshd *s, unsigned delay_ms)
{
	int error;

	if ((error = write_config(s)) < 0)
		return error;
	if ((s->pid = spawn(s, delay_ms)) < 0)
		return kiln_error_set_os(KILN_ERROR, errno, "cannot fork sshd");
	return 0;
}

void kiln_test_sshd_stop(kiln_test_sshd *s)
{
	int i, status;

	if (s->pid <= 0)
		return;
	kill(s->pid, SIGTERM);
	for (i = 0; i < 100; i++) {
		if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
			s->pid = 0;
			return;
		}
		real_sleep_ms(20);
	}
	kill(s->pid, SIGKILL);
	waitpid(s->pid, &status, 0);
	s->pid = 0;
}

void kiln_test_sshd_release(kiln_test_sshd *s)
{
	kiln_test_sshd_stop(s);
	if (s->dir && !getenv("KILN_TEST_KEEP"))
		kiln_remove_tree(s->dir);
	free(s->dir);
	free(s->config_path);
	free(s->authorized_keys);
	free(s->log_path);
	memset(s, 0, sizeof(*s));
}
