/*
 * error.h: how every kiln function reports failure.
 *
 * Functions return int: 0 on success, a negative KILN_E* code on failure.
 * Before returning a failure they record what went wrong in a thread-local
 * error (kiln_error_last): a one-line message in the style of git's
 * ("cannot open 'web.json': no such file"), and for a cloud error the
 * provider's error code, request id and HTTP status. The CLI turns the code
 * into an exit status and prints the message; nothing below cli/ prints.
 *
 *	int error = -1;
 *	if ((error = step(x)) < 0)
 *		goto done;
 *	...
 *	return kiln_error_set(KILN_ENOTFOUND, "no image '%s'", name);
 */
#ifndef KILN_ERROR_H
#define KILN_ERROR_H

#include "core/common.h"

enum kiln_error_code {
	KILN_OK = 0,
	KILN_ERROR = -1,       /* anything else: a cloud error, I/O, ... */
	KILN_ENOTFOUND = -2,   /* the named thing does not exist */
	KILN_ETHROTTLED = -3,  /* the service asked us to slow down (retries exhausted) */
	KILN_EAUTH = -4,       /* credentials missing, rejected or not permitted */
	KILN_ETIMEOUT = -5,    /* a wait or a request ran out of time */
	KILN_ECANCELLED = -6,  /* SIGINT/SIGTERM arrived (see clock.h) */
	KILN_ECONFLICT = -7,   /* create-if-absent found it present */
	KILN_EINVALID = -8,    /* bad input: usage, template, fleet file, config */
	KILN_EBUSY = -9,       /* a lock is held by someone else */
	KILN_ENOMEM = -10,     /* allocation failed or a size cap was hit */
	KILN_EUNSUPPORTED = -11, /* the provider cannot do this */
	KILN_ETRANSIENT = -12, /* a retryable failure (5xx, reset), retries exhausted */
};

typedef struct kiln_error {
	int code;
	char message[1024];
	/* cloud errors only, else empty / 0 */
	char cloud_code[128];
	char request_id[128];
	int http_status;
} kiln_error;

/* Records the error and returns code, so `return kiln_error_set(...)`. */
int kiln_error_set(int code, const char *fmt, ...) KILN_PRINTF(2, 3);
int kiln_error_vset(int code, const char *fmt, va_list ap) KILN_PRINTF(2, 0);

/* A cloud error: the service's code and request id are kept beside it. */
int kiln_error_set_cloud(int code, int http_status, const char *cloud_code,
			 const char *request_id, const char *fmt, ...) KILN_PRINTF(5, 6);

/*
 * Prefixes the current message with context ("create image 'web-v3': "),
 * keeping the code and cloud fields; returns the current code.
 */
int kiln_error_prefix(const char *fmt, ...) KILN_PRINTF(1, 2);

/* Sets errno's text: "cannot open 'x': No such file or directory". */
int kiln_error_set_os(int code, int errnum, const char *fmt, ...) KILN_PRINTF(3, 4);

/* The last error of this thread; never NULL (code 0 and "" when none). */
const kiln_error *kiln_error_last(void);
void kiln_error_clear(void);

/* Saves and restores the error around cleanup code that may itself fail. */
void kiln_error_save(kiln_error *out);
void kiln_error_restore(const kiln_error *saved);

/* "not found", "throttled", ... for logs and events. */
const char *kiln_error_name(int code);

#endif
