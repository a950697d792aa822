#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "local/local.h"

/* ---- ids ---- */

int kiln_local_new_id(char out[KILN_ID_MAX], const char *prefix)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char rnd[9];
	size_t i, plen = strlen(prefix);

	if (plen + 18 > KILN_ID_MAX)
		return kiln_error_set(KILN_EINVALID, "id prefix '%s' is too long", prefix);
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return kiln_error_set_os(KILN_ERROR, errno, "cannot read random bytes for an id");
	memcpy(out, prefix, plen);
	/* 17 hex digits, as EC2's ids: 68 random bits */
	for (i = 0; i < 17; i++)
		out[plen + i] = hex[(rnd[i / 2] >> (i % 2 ? 0 : 4)) & 0xf];
	out[plen + 17] = '\0';
	return 0;
}

bool kiln_local_id_valid(const char *id, const char *prefix)
{
	size_t i, plen = strlen(prefix);
	if (!id || strncmp(id, prefix, plen) || strlen(id) != plen + 17)
		return false;
	for (i = plen; id[i]; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return false;
	return true;
}

int kiln_local_path(kiln_buf *out, const kiln_local *l, const char *fmt, ...)
{
	va_list ap;
	int error;

	kiln_buf_reset(out);
	if ((error = kiln_buf_printf(out, "%s/", l->dir)) < 0)
		return error;
	va_start(ap, fmt);
	error = kiln_buf_vprintf(out, fmt, ap);
	va_end(ap);
	return error;
}

/* ---- processes ---- */

static void describe_argv(char *out, size_t size, const char *const *argv)
{
	size_t used = 0, i;
	out[0] = '\0';
	for (i = 0; argv[i] && used + 1 < size; i++) {
		int n = snprintf(out + used, size - used, "%s%s", i ? " " : "", argv[i]);
		if (n < 0)
			break;
		used += (size_t)n;
	}
	if (used >= size && size > 4)
		memcpy(out + size - 4, "...", 4);
}

/* The last non-empty line of out, for messages. */
static void last_line(char *line, size_t size, const kiln_buf *out)
{
	size_t end = out->len, start;
	while (end > 0 && (out->ptr[end - 1] == '\n' || out->ptr[end - 1] == '\r' ||
			   out->ptr[end - 1] == ' '))
		end--;
	start = end;
	while (start > 0 && out->ptr[start - 1] != '\n')
		start--;
	snprintf(line, size, "%.*s", (int)(end - start), out->ptr + start);
}

static void child_exec(const char *const *argv, int out_fd)
{
	int null_fd = open("/dev/null", O_RDONLY);
	sigset_t none;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGPIPE, SIG_DFL);
	if (null_fd >= 0) {
		dup2(null_fd, STDIN_FILENO);
		if (null_fd > 2)
			close(null_fd);
	}
	if (out_fd >= 0) {
		dup2(out_fd, STDOUT_FILENO);
		dup2(out_fd, STDERR_FILENO);
		if (out_fd > 2)
			close(out_fd);
	}
	/*
	 * Nothing else kiln's caller left open goes along: a daemon holding
	 * the pipe of a shell's $(...) would keep that shell waiting forever.
	 */
	close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
	execvp(argv[0], (char *const *)argv);
}

int kiln_local_run(const char *const *argv, kiln_buf *out, int *status, uint64_t timeout_ms)
{
	kiln_buf local = KILN_BUF_INIT;
	kiln_buf *o = out ? out : &local;
	char what[256], line[320];
	uint64_t deadline = kiln_clock_now_ms() + timeout_ms;
	int fds[2], wstatus = 0, code, error = 0;
	bool killed = false, eof = false;
	pid_t pid;

	describe_argv(what, sizeof(what), argv);
	if (!out)
		kiln_buf_init(&local, 64 << 10);
	if (pipe2(fds, O_CLOEXEC) < 0)
		return kiln_error_set_os(KILN_ERROR, errno, "cannot run '%s'", what);
	if ((pid = fork()) < 0) {
		error = kiln_error_set_os(KILN_ERROR, errno, "cannot run '%s'", what);
		close(fds[0]);
		close(fds[1]);
		return error;
	}
	if (pid == 0) {
		close(fds[0]);
		child_exec(argv, fds[1]);
		dprintf(STDERR_FILENO, "cannot execute '%s': %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(fds[1]);
	while (!eof) {
		struct pollfd p = { fds[0], POLLIN, 0 };
		char chunk[8192];
		ssize_t n;
		int r = poll(&p, 1, 100);

		if (r > 0) {
			n = read(fds[0], chunk, sizeof(chunk));
			if (n > 0) {
				/* past the cap the output is dropped, the command keeps running */
				if (o->len + (size_t)n <= o->max)
					kiln_buf_put(o, chunk, (size_t)n);
			} else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
				eof = true;
			}
		}
		if (!killed) {
			/* kiln_sleep_ms(0) only checks for a cancel (and honours shields) */
			if ((error = kiln_sleep_ms(0)) == 0 && kiln_clock_now_ms() >= deadline)
				error = kiln_error_set(KILN_ETIMEOUT, "'%s' did not finish in %llu s",
						       what, (unsigned long long)(timeout_ms / 1000));
			if (error < 0) {
				kill(pid, SIGKILL);
				killed = true;
			}
		}
	}
	close(fds[0]);
	while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
		;
	if (error < 0) {
		kiln_buf_release(&local);
		return error;
	}
	code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
	if (status) {
		*status = code;
	} else if (code != 0) {
		last_line(line, sizeof(line), o);
		error = kiln_error_set(KILN_ERROR, "'%s' failed (exit %d)%s%s", what, code,
				       line[0] ? ": " : "", line);
	}
	kiln_buf_release(&local);
	return error;
}

int kiln_local_spawn(pid_t *out, const char *const *argv, const char *log_path)
{
	int fds[2], log_fd, error = 0;
	pid_t child, grandchild = 0;
	int exec_errno = 0;
	ssize_t n;

	if ((log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)) < 0)
		return kiln_error_set_os(KILN_ERROR, errno, "cannot open '%s'", log_path);
	if (pipe2(fds, O_CLOEXEC) < 0) {
		error = kiln_error_set_os(KILN_ERROR, errno, "cannot start '%s'", argv[0]);
		close(log_fd);
		return error;
	}
	if ((child = fork()) < 0) {
		error = kiln_error_set_os(KILN_ERROR, errno, "cannot start '%s'", argv[0]);
		goto done;
	}
	if (child == 0) {
		pid_t gc;
		close(fds[0]);
		setsid();
		/* a second fork: the daemon is never kiln's child, so never kiln's zombie */
		if ((gc = fork()) < 0)
			_exit(1);
		if (gc > 0) {
			if (write(fds[1], &gc, sizeof(gc)) < 0)
				_exit(1);
			_exit(0);
		}
		child_exec(argv, log_fd);
		{
			int e = errno;
			if (write(fds[1], &e, sizeof(e)) < 0)
				_exit(127);
		}
		_exit(127);
	}
	close(fds[1]);
	fds[1] = -1;
	while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
		;
	n = read(fds[0], &grandchild, sizeof(grandchild));
	if (n != (ssize_t)sizeof(grandchild) || grandchild <= 0) {
		error = kiln_error_set(KILN_ERROR, "cannot start '%s'", argv[0]);
		goto done;
	}
	/* EOF here means exec succeeded (the pipe is close-on-exec) */
	while ((n = read(fds[0], &exec_errno, sizeof(exec_errno))) < 0 && errno == EINTR)
		;
	if (n == (ssize_t)sizeof(exec_errno)) {
		error = kiln_error_set_os(KILN_ERROR, exec_errno, "cannot execute '%s'", argv[0]);
		goto done;
	}
	*out = grandchild;
done:
	close(fds[0]);
	if (fds[1] >= 0)
		close(fds[1]);
	close(log_fd);
	return error;
}

bool kiln_local_pid_alive(pid_t pid, const char *needle)
{
	char path[64], stat[512];
	kiln_buf cmd = KILN_BUF_INIT;
	char *p;
	bool alive = false;
	size_t i;
	int fd;
	ssize_t n;

	if (pid <= 1)
		return false;
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return false;
	n = read(fd, stat, sizeof(stat) - 1);
	close(fd);
	if (n <= 0)
		return false;
	stat[n] = '\0';
	/* the state follows the command name's closing parenthesis */
	if (!(p = strrchr(stat, ')')) || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X')
		return false;
	if (!needle)
		return true;
	kiln_buf_init(&cmd, 64 << 10);
	snprintf(path, sizeof(path), "/proc/%ld/cmdline", (long)pid);
	if (kiln_read_file(&cmd, path) < 0 && cmd.len == 0) {
		kiln_error_clear();
		kiln_buf_release(&cmd);
		return false;
	}
	kiln_error_clear();
	for (i = 0; i < cmd.len; i++)
		if (cmd.ptr[i] == '\0')
			cmd.ptr[i] = ' ';
	alive = strstr(cmd.ptr, needle) != NULL;
	kiln_buf_release(&cmd);
	return alive;
}

pid_t kiln_local_pidfile_read(const char *path)
{
	kiln_buf b = KILN_BUF_INIT;
	int64_t v = 0;

	kiln_buf_init(&b, 64);
	if (kiln_read_file(&b, path) < 0) {
		kiln_error_clear();
		kiln_buf_release(&b);
		return 0;
	}
	kiln_buf_rtrim(&b);
	if (kiln_parse_i64(&v, b.ptr, 1, INT32_MAX) < 0)
		v = 0;
	kiln_buf_release(&b);
	return (pid_t)v;
}

int kiln_local_pidfile_write(const char *path, pid_t pid)
{
	char text[32];
	int n = snprintf(text, sizeof(text), "%ld\n", (long)pid);
	return kiln_write_file_atomic(path, text, (size_t)n, 0644);
}

int kiln_local_kill_wait(pid_t pid, const char *needle, int sig, uint64_t timeout_ms)
{
	uint64_t deadline;
	int error;

	if (!kiln_local_pid_alive(pid, needle))
		return 0;
	kill(pid, sig);
	deadline = kiln_clock_now_ms() + timeout_ms;
	while (kiln_local_pid_alive(pid, needle)) {
		if (kiln_clock_now_ms() >= deadline) {
			kill(pid, SIGKILL);
			deadline = kiln_clock_now_ms() + 5000;
			while (kiln_local_pid_alive(pid, needle)) {
				if (kiln_clock_now_ms() >= deadline)
					return kiln_error_set(KILN_ETIMEOUT,
							      "process %ld did not exit after SIGKILL",
							      (long)pid);
				if ((error = kiln_sleep_ms(20)) < 0)
					return error;
			}
			return 0;
		}
		if ((error = kiln_sleep_ms(20)) < 0)
			return error;
	}
	return 0;
}

/* ---- files ---- */

int kiln_local_json_load(json_t **out, const char *path)
{
	kiln_buf b = KILN_BUF_INIT;
	json_error_t jerr;
	json_t *doc;
	int error;

	kiln_buf_init(&b, 16 << 20);
	if ((error = kiln_read_file(&b, path)) < 0) {
		kiln_buf_release(&b);
		return error;
	}
	doc = json_loadb(b.ptr, b.len, 0, &jerr);
	kiln_buf_release(&b);
	if (!doc || !json_is_object(doc)) {
		json_decref(doc);
		return kiln_error_set(KILN_ERROR, "'%s' is not a JSON object%s%s", path,
				      doc ? "" : ": ", doc ? "" : jerr.text);
	}
	*out = doc;
	return 0;
}

int kiln_local_json_save(const char *path, const json_t *doc, mode_t mode)
{
	char *text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
	int error;

	if (!text)
		return kiln_error_set(KILN_ENOMEM, "cannot encode '%s'", path);
	error = kiln_write_file_atomic(path, text, strlen(text), mode);
	free(text);
	return error;
}

int kiln_local_require_root(const char *what)
{
	if (geteuid() == 0)
		return 0;
	return kiln_error_set(KILN_EAUTH,
			      "%s needs root: the local provider creates containers, mounts and "
			      "network namespaces (run kiln as root)",
			      what);
}

int kiln_local_require_tool(const char *argv0, const char *package)
{
	const char *path = getenv("PATH");
	char dir[4096];
	const char *p = path ? path : "/usr/sbin:/usr/bin:/sbin:/bin";

	while (*p) {
		size_t len = strcspn(p, ":");
		char full[4200];
		snprintf(dir, sizeof(dir), "%.*s", (int)len, p);
		snprintf(full, sizeof(full), "%s/%s", dir[0] ? dir : ".", argv0);
		if (access(full, X_OK) == 0)
			return 0;
		p += len;
		if (*p == ':')
			p++;
	}
	return kiln_error_set(KILN_EUNSUPPORTED,
			      "'%s' is not installed (Debian package %s; scripts/bootstrap.sh check "
			      "installs it)",
			      argv0, package);
}

int kiln_local_tcp_probe(const char *ip, int port, uint64_t timeout_ms, bool banner)
{
	struct sockaddr_in sa;
	struct pollfd p;
	socklen_t len = sizeof(int);
	int fd, soerr = 0, open_ = 0;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
		return 0;
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
		return 0;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS)
		goto done;
	p.fd = fd;
	p.events = POLLOUT;
	if (poll(&p, 1, (int)timeout_ms) != 1)
		goto done;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 || soerr)
		goto done;
	if (banner) {
		/* sshd speaks first ("SSH-2.0-..."): it is serving, not just listening */
		char buf[16];
		p.events = POLLIN;
		if (poll(&p, 1, (int)timeout_ms) != 1 || read(fd, buf, sizeof(buf)) < 4)
			goto done;
	}
	open_ = 1;
done:
	close(fd);
	return open_;
}

static uint64_t du_at(int dirfd)
{
	DIR *d = fdopendir(dirfd);
	struct dirent *de;
	uint64_t total = 0;

	if (!d) {
		close(dirfd);
		return 0;
	}
	while ((de = readdir(d)) != NULL) {
		struct stat st;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		total += (uint64_t)st.st_blocks * 512;
		if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0)
				total += du_at(sub);
		}
	}
	closedir(d);
	return total;
}

uint64_t kiln_local_du(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return fd < 0 ? 0 : du_at(fd);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int kiln_local_list_dir(kiln_strings *out, const char *dir, const char *suffix)
{
	size_t slen = strlen(suffix);
	struct dirent *de;
	DIR *d;
	int error = 0;

	if (!(d = opendir(dir)))
		return errno == ENOENT ? 0 : kiln_error_set_os(KILN_ERROR, errno, "cannot list '%s'", dir);
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		if (de->d_name[0] == '.' || len < slen || strcmp(de->d_name + len - slen, suffix))
			continue;
		if ((error = kiln_strings_add(out, de->d_name)) < 0)
			break;
	}
	closedir(d);
	if (out->n > 1)
		qsort(out->items, out->n, sizeof(*out->items), cmp_str);
	return error;
}

/* mountinfo escapes space, tab, newline and backslash as \ooo */
static void unescape_octal(char *s)
{
	char *w = s;
	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*w++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 4;
		} else {
			*w++ = *s++;
		}
	}
	*w = '\0';
}

static int cmp_len_desc(const void *a, const void *b)
{
	size_t la = strlen(*(char *const *)a), lb = strlen(*(char *const *)b);
	return la < lb ? 1 : la > lb ? -1 : 0;
}

int kiln_local_mounts_under(kiln_strings *out, const char *prefix)
{
	kiln_buf b = KILN_BUF_INIT;
	size_t plen = strlen(prefix);
	char *line, *save = NULL;
	int error;

	kiln_buf_init(&b, 8 << 20);
	if ((error = kiln_read_file(&b, "/proc/self/mountinfo")) < 0)
		goto done;
	for (line = strtok_r(b.ptr, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *f, *s2 = NULL;
		int i;
		/* 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw */
		for (i = 0, f = strtok_r(line, " ", &s2); f && i < 4; i++)
			f = strtok_r(NULL, " ", &s2);
		if (!f)
			continue;
		unescape_octal(f);
		if (strncmp(f, prefix, plen) || (f[plen] != '\0' && f[plen] != '/'))
			continue;
		if (!kiln_strings_has(out, f) && (error = kiln_strings_add(out, f)) < 0)
			goto done;
	}
	if (out->n > 1)
		qsort(out->items, out->n, sizeof(*out->items), cmp_len_desc);
done:
	kiln_buf_release(&b);
	return error;
}

/* ---- json ---- */

const char *kiln_local_jstr(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

int64_t kiln_local_jint(const json_t *o, const char *key)
{
	return (int64_t)json_integer_value(json_object_get(o, key));
}

int kiln_local_strings_from_json(kiln_strings *out, const json_t *arr)
{
	size_t i;
	json_t *v;
	int error;

	json_array_foreach((json_t *)arr, i, v) {
		if (json_is_string(v) && (error = kiln_strings_add(out, json_string_value(v))) < 0)
			return error;
	}
	return 0;
}

json_t *kiln_local_strings_to_json(const kiln_strings *s)
{
	json_t *a = json_array();
	size_t i;
	for (i = 0; a && s && i < s->n; i++)
		json_array_append_new(a, json_string(s->items[i]));
	return a;
}

/* ---- files inside an instance's root ---- */

int kiln_local_open_parent(int rootfd, const char *rel, const char **leaf, bool mkdirs)
{
	char part[256];
	const char *p = rel, *slash;
	int fd = dup(rootfd);

	while (fd >= 0 && (slash = strchr(p, '/')) != NULL) {
		int next;
		if ((size_t)(slash - p) >= sizeof(part) || slash == p) {
			close(fd);
			errno = EINVAL;
			return -1;
		}
		snprintf(part, sizeof(part), "%.*s", (int)(slash - p), p);
		if (!strcmp(part, "..")) {
			close(fd);
			errno = EINVAL;
			return -1;
		}
		next = openat(fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0 && errno == ENOENT && mkdirs && mkdirat(fd, part, 0755) == 0)
			next = openat(fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(fd);
		fd = next;
		p = slash + 1;
	}
	*leaf = p;
	return fd;
}

int kiln_local_write_in_root(const char *root, const char *rel, const char *data, size_t len, mode_t mode)
{
	char tmp[300];
	const char *leaf;
	int rootfd, dfd = -1, fd = -1, error = 0;
	size_t done = 0;

	if ((rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return kiln_error_set_os(KILN_ERROR, errno, "cannot open '%s'", root);
	if ((dfd = kiln_local_open_parent(rootfd, rel, &leaf, true)) < 0) {
		error = kiln_error_set_os(KILN_ERROR, errno, "cannot open the directory of '%s' in '%s'", rel, root);
		goto done;
	}
	snprintf(tmp, sizeof(tmp), ".%s.kiln-tmp", leaf);
	unlinkat(dfd, tmp, 0);
	if ((fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)) < 0 ||
	    fchmod(fd, mode) < 0) {
		error = kiln_error_set_os(KILN_ERROR, errno, "cannot write '%s' in '%s'", rel, root);
		goto done;
	}
	while (done < len) {
		ssize_t n = write(fd, data + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			error = kiln_error_set_os(KILN_ERROR, errno, "cannot write '%s' in '%s'", rel, root);
			goto done;
		}
		done += (size_t)n;
	}
	/* rename replaces a symlink at rel itself, never what it points to */
	if (close(fd) < 0 || renameat(dfd, tmp, dfd, leaf) < 0) {
		fd = -1;
		error = kiln_error_set_os(KILN_ERROR, errno, "cannot write '%s' in '%s'", rel, root);
		goto done;
	}
	fd = -1;
done:
	if (fd >= 0)
		close(fd);
	if (error < 0 && dfd >= 0)
		unlinkat(dfd, tmp, 0);
	if (dfd >= 0)
		close(dfd);
	close(rootfd);
	return error;
}

int kiln_local_read_in_root(kiln_buf *out, const char *root, const char *rel)
{
	const char *leaf;
	char chunk[8192];
	int rootfd, dfd, fd, error = 0;
	ssize_t n;

	if ((rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return kiln_error_set_os(KILN_ERROR, errno, "cannot open '%s'", root);
	dfd = kiln_local_open_parent(rootfd, rel, &leaf, false);
	close(rootfd);
	if (dfd < 0 || (fd = openat(dfd, leaf, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
		error = kiln_error_set_os(errno == ENOENT ? KILN_ENOTFOUND : KILN_ERROR, errno,
					  "cannot read '%s' in '%s'", rel, root);
		if (dfd >= 0)
			close(dfd);
		return error;
	}
	close(dfd);
	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || kiln_buf_put(out, chunk, (size_t)n) < 0) {
			error = kiln_error_set(KILN_ERROR, "cannot read '%s' in '%s'", rel, root);
			break;
		}
	}
	close(fd);
	return error;
}
