#include <unistd.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/fs.h"
#include "tests/support/test.h"

char *kiln_test_mktmp(void)
{
	const char *base = getenv("TMPDIR");
	char *dir = kiln_strdupf("%s/kiln-test-XXXXXX", base && *base ? base : "/tmp");
	if (!dir || !mkdtemp(dir))
		fail_msg("cannot create a temporary directory");
	return dir;
}

void kiln_test_rmtmp(char *dir)
{
	if (dir)
		kiln_remove_tree(dir);
	free(dir);
}

const char *kiln_test_source_path(const char *rel)
{
	static char path[4096];
	const char *src = getenv("KILN_SOURCE_DIR");
	snprintf(path, sizeof(path), "%s/%s", src && *src ? src : ".", rel);
	return path;
}

char *kiln_test_write(const char *dir, const char *name, const char *text)
{
	char *path = kiln_strdupf("%s/%s", dir, name);
	assert_non_null(path);
	assert_int_equal(kiln_write_file_atomic(path, text, strlen(text), 0644), 0);
	return path;
}

static struct {
	uint64_t now_ms;
	int64_t wall_ms;
	void (*on_sleep)(void *ctx, uint64_t now_ms);
	void *ctx;
} vclock;

static uint64_t v_now(void *ctx)
{
	(void)ctx;
	return vclock.now_ms;
}

static int64_t v_wall(void *ctx)
{
	(void)ctx;
	return vclock.wall_ms + (int64_t)vclock.now_ms;
}

static int v_sleep(void *ctx, uint64_t ms)
{
	(void)ctx;
	vclock.now_ms += ms ? ms : 1;
	if (vclock.on_sleep)
		vclock.on_sleep(vclock.ctx, vclock.now_ms);
	/* as the real clock: a cancel during the sleep ends it, unless shielded */
	if (kiln_cancelled() && !kiln_cancel_shielded())
		return kiln_error_set(KILN_ECANCELLED, "interrupted");
	return 0;
}

static const kiln_clock_ops vclock_ops = { v_now, v_wall, v_sleep, NULL };

void kiln_test_clock_install(int64_t wall_start_ms)
{
	memset(&vclock, 0, sizeof(vclock));
	vclock.now_ms = 1000000;
	vclock.wall_ms = wall_start_ms - (int64_t)vclock.now_ms;
	kiln_clock_set(&vclock_ops);
}

void kiln_test_clock_uninstall(void)
{
	kiln_clock_set(NULL);
}

void kiln_test_clock_advance(uint64_t ms)
{
	vclock.now_ms += ms;
}

void kiln_test_clock_on_sleep(void (*fn)(void *ctx, uint64_t now_ms), void *ctx)
{
	vclock.on_sleep = fn;
	vclock.ctx = ctx;
}

void kiln_test_assert_error(int rc, int code, const char *needle, const char *file, int line)
{
	const kiln_error *e = kiln_error_last();
	if (rc != code || e->code != code || (needle && !strstr(e->message, needle))) {
		print_error("expected error %d containing \"%s\", got rc %d, last %d \"%s\"\n", code,
			    needle ? needle : "", rc, e->code, e->message);
		_fail(file, line);
	}
}
