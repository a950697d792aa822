#include <signal.h>
#include <time.h>

#include "core/clock.h"
#include "core/error.h"

static const kiln_clock_ops *clock_ops;
static volatile sig_atomic_t cancel_signal;
static int cancel_shield;

void kiln_clock_set(const kiln_clock_ops *ops)
{
	clock_ops = ops;
}

uint64_t kiln_clock_now_ms(void)
{
	struct timespec ts;
	if (clock_ops)
		return clock_ops->now_ms(clock_ops->ctx);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int64_t kiln_clock_wall_ms(void)
{
	struct timespec ts;
	if (clock_ops)
		return clock_ops->wall_ms(clock_ops->ctx);
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int check_cancel(void)
{
	if (cancel_signal && !cancel_shield)
		return kiln_error_set(KILN_ECANCELLED, "interrupted by %s",
				      cancel_signal == SIGINT ? "SIGINT" : "SIGTERM");
	return 0;
}

int kiln_sleep_ms(uint64_t ms)
{
	uint64_t end;
	int error;

	if ((error = check_cancel()) < 0)
		return error;
	if (clock_ops)
		return clock_ops->sleep_ms(clock_ops->ctx, ms);
	end = kiln_clock_now_ms() + ms;
	for (;;) {
		uint64_t now = kiln_clock_now_ms(), slice;
		struct timespec ts;
		if (now >= end)
			return 0;
		/* slices bound the wait if a signal lands just before nanosleep */
		slice = KILN_MIN(end - now, 200);
		ts.tv_sec = (time_t)(slice / 1000);
		ts.tv_nsec = (long)(slice % 1000) * 1000000;
		nanosleep(&ts, NULL);
		if ((error = check_cancel()) < 0)
			return error;
	}
}

static void on_signal(int signo)
{
	struct sigaction sa;

	cancel_signal = signo;
	/* the next one kills: a stuck cleanup can still be stopped */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigaction(signo, &sa, NULL);
}

void kiln_cancel_install(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART: blocking calls return EINTR */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

bool kiln_cancelled(void)
{
	return cancel_signal != 0;
}

int kiln_cancel_signal(void)
{
	return cancel_signal;
}

void kiln_cancel_set(int signo)
{
	cancel_signal = signo;
}

void kiln_cancel_reset(void)
{
	cancel_signal = 0;
	cancel_shield = 0;
}

void kiln_cancel_shield_push(void)
{
	cancel_shield++;
}

void kiln_cancel_shield_pop(void)
{
	if (cancel_shield > 0)
		cancel_shield--;
}

bool kiln_cancel_shielded(void)
{
	return cancel_shield > 0;
}

/* 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z: what four-digit years can say */
#define ISO8601_MIN_S (-62167219200LL)
#define ISO8601_MAX_S 253402300799LL

void kiln_format_iso8601(char out[21], int64_t t)
{
	struct tm tm;
	time_t tt;

	/*
	 * Clamped: beyond year 9999 strftime left out unterminated, and beyond
	 * gmtime_r's range it read an unset tm (found by tests/fuzz/fuzz_iso8601;
	 * a template's timeout or a peer's date can be that large).
	 */
	tt = (time_t)KILN_MAX(ISO8601_MIN_S, KILN_MIN(t, ISO8601_MAX_S));
	if (!gmtime_r(&tt, &tm)) {
		snprintf(out, 21, "%s", "0000-01-01T00:00:00Z");
		return;
	}
	snprintf(out, 21, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

int kiln_parse_iso8601(int64_t *out, const char *s)
{
	struct tm tm;
	const char *p;

	memset(&tm, 0, sizeof(tm));
	if (!s || !(p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)))
		return KILN_EINVALID;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++)
			;
	if (*p == '+' && !strcmp(p, "+00:00"))
		p += 6;
	if (*p == 'Z')
		p++;
	if (*p)
		return KILN_EINVALID;
	*out = (int64_t)timegm(&tm);
	return 0;
}

void kiln_backoff_init(kiln_backoff *b, uint64_t first_ms, uint64_t max_ms)
{
	b->next_ms = first_ms;
	b->max_ms = max_ms;
}

uint64_t kiln_backoff_next(kiln_backoff *b)
{
	uint64_t now = b->next_ms;
	b->next_ms = KILN_MIN(b->max_ms, b->next_ms + b->next_ms / 2);
	if (b->next_ms == 0)
		b->next_ms = 1;
	return now;
}
