/*
 * fs.h: files the way kiln needs them: capped reads, atomic writes
 * (temp file + fsync + rename + fsync of the directory, so a crash leaves
 * either the old or the new content, never a torn file), directories, and
 * advisory locks.
 *
 * Locks are flock(2) on a lock file: the kernel drops them when their
 * holder dies (even by SIGKILL), which is what makes "is that build still
 * running on this host?" answerable: a build holds the lock on its build
 * id while it runs, and `kiln cleanup` only touches builds whose lock it
 * can take. The lock file records the holder's pid for messages.
 */
#ifndef KILN_FS_H
#define KILN_FS_H

#include <sys/types.h>

#include "core/buf.h"

/* Appends the whole file to b; fails with KILN_ENOMEM past b's cap. */
int kiln_read_file(kiln_buf *b, const char *path);
int kiln_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* Creates path and its parents (mode for the ones it creates). */
int kiln_mkdir_p(const char *path, mode_t mode);
/* Removes path and everything below it; absent is not an error. */
int kiln_remove_tree(const char *path);
bool kiln_path_exists(const char *path);
/* dir of path ("a/b/c.json" -> "a/b", "c.json" -> "."), into out. */
int kiln_dirname(kiln_buf *out, const char *path);
/* path if absolute, else base_dir/path. */
int kiln_path_join(kiln_buf *out, const char *base_dir, const char *path);

/*
 * The state directory: KILN_STATE_DIR, else $XDG_STATE_HOME/kiln, else
 * $HOME/.local/state/kiln. Created 0700 if missing.
 */
int kiln_state_dir(kiln_buf *out);

typedef struct kiln_lock {
	int fd;
	char *path;
} kiln_lock;

#define KILN_LOCK_INIT { -1, NULL }

/*
 * Takes an exclusive lock on path (created 0600). wait_ms 0: fail at once
 * with KILN_EBUSY if held ("... held by pid N"); otherwise wait up to
 * wait_ms (the wait honours cancellation).
 */
int kiln_lock_acquire(kiln_lock *lock, const char *path, uint64_t wait_ms);
void kiln_lock_release(kiln_lock *lock);
/* 1 if some process holds the lock on path, 0 if not (or no such file). */
int kiln_lock_is_held(const char *path, pid_t *holder);

#endif
