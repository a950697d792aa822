/*
 * test.h: what unit tests share. Include after the system headers cmocka
 * needs (this header includes them).
 */
#ifndef KILN_TEST_H
#define KILN_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/common.h"

/* A fresh directory under $TMPDIR, removed by kiln_test_rmtmp; heap string. */
char *kiln_test_mktmp(void);
void kiln_test_rmtmp(char *dir);

/* $KILN_SOURCE_DIR/rel (the checkout), into a static buffer. */
const char *kiln_test_source_path(const char *rel);

/* Writes text to dir/name and returns the path (heap). */
char *kiln_test_write(const char *dir, const char *name, const char *text);

/*
 * A virtual clock: kiln_sleep_ms advances it instantly. Install it for
 * tests of engines whose timeouts are minutes long.
 */
void kiln_test_clock_install(int64_t wall_start_ms);
void kiln_test_clock_uninstall(void);
void kiln_test_clock_advance(uint64_t ms);
/* Called on every virtual sleep (for scripted events); NULL to clear. */
void kiln_test_clock_on_sleep(void (*fn)(void *ctx, uint64_t now_ms), void *ctx);

/* Asserts the last error's code and that its message contains needle. */
#define assert_error(rc, code, needle) kiln_test_assert_error((rc), (code), (needle), __FILE__, __LINE__)
void kiln_test_assert_error(int rc, int code, const char *needle, const char *file, int line);

#endif
