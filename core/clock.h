/*
 * clock.h: time, sleeping, and cancellation.
 *
 * Every wait in kiln goes through kiln_sleep_ms, which returns
 * KILN_ECANCELLED as soon as SIGINT or SIGTERM has arrived (the CLI installs
 * the handlers with kiln_cancel_install). Engines then unwind and clean up;
 * a second signal is left to the default action so a stuck cleanup can
 * still be killed.
 *
 * Tests swap the clock for a virtual one (kiln_clock_set) so that state
 * machines with minutes of timeouts run in milliseconds: sleeping then
 * just advances the virtual time.
 */
#ifndef KILN_CLOCK_H
#define KILN_CLOCK_H

#include "core/common.h"

typedef struct kiln_clock_ops {
	uint64_t (*now_ms)(void *ctx);     /* monotonic */
	int64_t (*wall_ms)(void *ctx);     /* Unix epoch, milliseconds */
	int (*sleep_ms)(void *ctx, uint64_t ms);
	void *ctx;
} kiln_clock_ops;

/* NULL restores the real clock. The ops must outlive their use. */
void kiln_clock_set(const kiln_clock_ops *ops);

uint64_t kiln_clock_now_ms(void);
int64_t kiln_clock_wall_ms(void);
static inline int64_t kiln_clock_wall_s(void) { return kiln_clock_wall_ms() / 1000; }

/* Sleeps ms (0 just checks); KILN_ECANCELLED if cancelled before or during. */
int kiln_sleep_ms(uint64_t ms);

/* Installs SIGINT/SIGTERM handlers that set the cancellation flag. */
void kiln_cancel_install(void);
bool kiln_cancelled(void);
/* The signal that cancelled (SIGINT/SIGTERM), or 0. */
int kiln_cancel_signal(void);
/* For tests and for cleanup that must run to its end after a cancel. */
void kiln_cancel_set(int signo);
void kiln_cancel_reset(void);

/*
 * Cleanup after a cancel must still wait (for a terminate to take effect,
 * a security group to be free): it runs inside a shield, during which sleeps
 * ignore the flag. Shields nest; the flag itself is kept.
 */
void kiln_cancel_shield_push(void);
void kiln_cancel_shield_pop(void);
/* Whether a shield is up (for clocks that sleep on their own, such as the tests' virtual one). */
bool kiln_cancel_shielded(void);

/*
 * "2026-11-25T21:37:44Z" for a Unix time in seconds; out must hold 21 bytes.
 * Times before year 0000 or after 9999 are clamped to those years' ends.
 */
void kiln_format_iso8601(char out[21], int64_t t);
/* Parses "YYYY-MM-DDTHH:MM:SS[.fff]Z"; KILN_EINVALID if not that. */
int kiln_parse_iso8601(int64_t *out, const char *s);

/*
 * A polling schedule that starts fast and backs off: first_ms, then each
 * interval times 1.5, capped at max_ms. Engines poll with it so that they
 * notice a change within one interval without hammering an API.
 */
typedef struct kiln_backoff {
	uint64_t next_ms, max_ms;
} kiln_backoff;

void kiln_backoff_init(kiln_backoff *b, uint64_t first_ms, uint64_t max_ms);
/* The interval to sleep now; advances the schedule. */
uint64_t kiln_backoff_next(kiln_backoff *b);

#endif
