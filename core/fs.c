#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/fs.h"

int kiln_read_file(kiln_buf *b, const char *path)
{
	char chunk[16384];
	int fd, error = 0;
	ssize_t n;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return kiln_error_set_os(errno == ENOENT ? KILN_ENOTFOUND : KILN_ERROR, errno,
					 "cannot read '%s'", path);
	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			error = kiln_error_set_os(KILN_ERROR, errno, "cannot read '%s'", path);
			break;
		}
		if ((error = kiln_buf_put(b, chunk, (size_t)n)) < 0) {
			kiln_error_set(error, "'%s' is larger than %zu bytes", path, b->max);
			break;
		}
	}
	close(fd);
	return error;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int kiln_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	kiln_buf tmp = KILN_BUF_INIT, dir = KILN_BUF_INIT;
	int fd = -1, dfd, error = -1;

	if (kiln_buf_printf(&tmp, "%s.tmp.%ld", path, (long)getpid()) < 0 ||
	    kiln_dirname(&dir, path) < 0)
		goto done;
	fd = open(tmp.ptr, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0) {
		error = kiln_error_set_os(KILN_ERROR, errno, "cannot create '%s'", tmp.ptr);
		goto done;
	}
	/* the umask may have cut the mode; key files must be exactly 0600 */
	if (fchmod(fd, mode) < 0 || write_all(fd, data, len) < 0 || fsync(fd) < 0) {
		error = kiln_error_set_os(KILN_ERROR, errno, "cannot write '%s'", tmp.ptr);
		goto done;
	}
	if (close(fd) < 0) {
		fd = -1;
		error = kiln_error_set_os(KILN_ERROR, errno, "cannot write '%s'", tmp.ptr);
		goto done;
	}
	fd = -1;
	if (rename(tmp.ptr, path) < 0) {
		error = kiln_error_set_os(KILN_ERROR, errno, "cannot rename '%s' to '%s'", tmp.ptr, path);
		goto done;
	}
	if ((dfd = open(dir.ptr, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		fsync(dfd);
		close(dfd);
	}
	error = 0;
done:
	if (fd >= 0)
		close(fd);
	if (error < 0 && tmp.len)
		unlink(tmp.ptr);
	kiln_buf_release(&tmp);
	kiln_buf_release(&dir);
	return error;
}

int kiln_mkdir_p(const char *path, mode_t mode)
{
	kiln_buf b = KILN_BUF_INIT;
	size_t i;
	int error = 0;

	if ((error = kiln_buf_puts(&b, path)) < 0)
		return error;
	for (i = 1; i <= b.len; i++) {
		if (b.ptr[i] != '/' && b.ptr[i] != '\0')
			continue;
		b.ptr[i] = '\0';
		if (mkdir(b.ptr, mode) < 0 && errno != EEXIST) {
			error = kiln_error_set_os(KILN_ERROR, errno, "cannot create directory '%s'", b.ptr);
			break;
		}
		if (i < b.len)
			b.ptr[i] = '/';
	}
	kiln_buf_release(&b);
	return error;
}

int kiln_remove_tree(const char *path)
{
	struct stat st;
	DIR *d;
	struct dirent *de;
	int error = 0;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : kiln_error_set_os(KILN_ERROR, errno, "cannot remove '%s'", path);
	if (!S_ISDIR(st.st_mode)) {
		if (unlink(path) < 0 && errno != ENOENT)
			return kiln_error_set_os(KILN_ERROR, errno, "cannot remove '%s'", path);
		return 0;
	}
	if (!(d = opendir(path)))
		return kiln_error_set_os(KILN_ERROR, errno, "cannot open directory '%s'", path);
	while ((de = readdir(d)) != NULL) {
		kiln_buf child = KILN_BUF_INIT;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if ((error = kiln_buf_printf(&child, "%s/%s", path, de->d_name)) == 0)
			error = kiln_remove_tree(child.ptr);
		kiln_buf_release(&child);
		if (error < 0)
			break;
	}
	closedir(d);
	if (error == 0 && rmdir(path) < 0 && errno != ENOENT)
		error = kiln_error_set_os(KILN_ERROR, errno, "cannot remove '%s'", path);
	return error;
}

bool kiln_path_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

int kiln_dirname(kiln_buf *out, const char *path)
{
	const char *slash = strrchr(path, '/');
	kiln_buf_reset(out);
	if (!slash)
		return kiln_buf_puts(out, ".");
	if (slash == path)
		return kiln_buf_puts(out, "/");
	return kiln_buf_put(out, path, (size_t)(slash - path));
}

int kiln_path_join(kiln_buf *out, const char *base_dir, const char *path)
{
	kiln_buf_reset(out);
	if (path[0] == '/' || !base_dir || !*base_dir || !strcmp(base_dir, "."))
		return kiln_buf_puts(out, path);
	return kiln_buf_printf(out, "%s/%s", base_dir, path);
}

int kiln_state_dir(kiln_buf *out)
{
	const char *s;
	int error;

	kiln_buf_reset(out);
	if ((s = getenv("KILN_STATE_DIR")) && *s)
		error = kiln_buf_puts(out, s);
	else if ((s = getenv("XDG_STATE_HOME")) && *s)
		error = kiln_buf_printf(out, "%s/kiln", s);
	else if ((s = getenv("HOME")) && *s)
		error = kiln_buf_printf(out, "%s/.local/state/kiln", s);
	else
		return kiln_error_set(KILN_EINVALID,
				      "no state directory: set KILN_STATE_DIR or HOME");
	if (error < 0)
		return error;
	return kiln_mkdir_p(out->ptr, 0700);
}

int kiln_lock_acquire(kiln_lock *lock, const char *path, uint64_t wait_ms)
{
	uint64_t deadline = kiln_clock_now_ms() + wait_ms;
	char pid[32];
	int fd, n;

	lock->fd = -1;
	lock->path = NULL;
reopen:
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0)
		return kiln_error_set_os(KILN_ERROR, errno, "cannot open lock '%s'", path);
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		pid_t holder = 0;
		int error;
		if (errno != EWOULDBLOCK && errno != EINTR) {
			error = kiln_error_set_os(KILN_ERROR, errno, "cannot lock '%s'", path);
			close(fd);
			return error;
		}
		if (wait_ms == 0 || kiln_clock_now_ms() >= deadline) {
			kiln_lock_is_held(path, &holder);
			close(fd);
			if (holder > 0)
				return kiln_error_set(KILN_EBUSY, "'%s' is locked by pid %ld", path, (long)holder);
			return kiln_error_set(KILN_EBUSY, "'%s' is locked by another process", path);
		}
		if ((error = kiln_sleep_ms(50)) < 0) {
			close(fd);
			return error;
		}
	}
	{
		/* the holder before us may have unlinked the file as it let go */
		struct stat a, b;
		if (fstat(fd, &a) < 0 || stat(path, &b) < 0 || a.st_ino != b.st_ino ||
		    a.st_dev != b.st_dev) {
			close(fd);
			goto reopen;
		}
	}
	n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)n, 0) < 0) {
		/* the pid is only for messages */
	}
	if (!(lock->path = kiln_strdup(path))) {
		close(fd);
		return KILN_ENOMEM;
	}
	lock->fd = fd;
	return 0;
}

void kiln_lock_release(kiln_lock *lock)
{
	if (lock->fd >= 0) {
		/* unlink while holding, so a waiter never locks a removed file's inode */
		unlink(lock->path);
		close(lock->fd);
	}
	free(lock->path);
	lock->fd = -1;
	lock->path = NULL;
}

int kiln_lock_is_held(const char *path, pid_t *holder)
{
	char pid[32] = "";
	int fd, held;
	ssize_t n;

	if (holder)
		*holder = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return 0;
	held = flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
	if (!held)
		flock(fd, LOCK_UN);
	if (holder && held && (n = pread(fd, pid, sizeof(pid) - 1, 0)) > 0) {
		int64_t v;
		pid[n] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		if (kiln_parse_i64(&v, pid, 1, INT32_MAX) == 0)
			*holder = (pid_t)v;
	}
	close(fd);
	return held;
}
