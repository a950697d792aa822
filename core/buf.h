/*
 * buf.h: a growable byte buffer with a size cap, and a non-owning view.
 *
 * Invariants (as git's strbuf.h states its own):
 *  - ptr is never NULL after kiln_buf_init: it points at a static "" until
 *    the first write, so a buffer can always be printed;
 *  - ptr[len] == '\0' always, so text can be used as a C string (binary
 *    data may hold NULs before len);
 *  - len never exceeds max: a write that would pass it fails with
 *    KILN_ENOMEM and leaves the buffer as it was (curl's dynbuf "toobig").
 *    Every body read from a remote peer goes through a capped buffer.
 *
 * kiln_view is {ptr, len} passed by value, never owning (aws_byte_cursor).
 */
#ifndef KILN_BUF_H
#define KILN_BUF_H

#include "core/common.h"

typedef struct kiln_buf {
	char *ptr;
	size_t len;
	size_t alloc; /* 0 while ptr is the static "" */
	size_t max;   /* the cap on len */
} kiln_buf;

#define KILN_BUF_MAX_DEFAULT ((size_t)64 << 20)
#define KILN_BUF_INIT { (char *)kiln_buf__empty, 0, 0, KILN_BUF_MAX_DEFAULT }
extern const char kiln_buf__empty[1];

void kiln_buf_init(kiln_buf *b, size_t max);
void kiln_buf_release(kiln_buf *b);
/* Hands the heap string to the caller (free() it); the buffer is reset. */
char *kiln_buf_detach(kiln_buf *b);
void kiln_buf_reset(kiln_buf *b);

int kiln_buf_grow(kiln_buf *b, size_t extra);
int kiln_buf_put(kiln_buf *b, const void *data, size_t len);
int kiln_buf_puts(kiln_buf *b, const char *s);
int kiln_buf_putc(kiln_buf *b, char c);
int kiln_buf_printf(kiln_buf *b, const char *fmt, ...) KILN_PRINTF(2, 3);
int kiln_buf_vprintf(kiln_buf *b, const char *fmt, va_list ap) KILN_PRINTF(2, 0);
void kiln_buf_truncate(kiln_buf *b, size_t len);
/* Removes trailing white space. */
void kiln_buf_rtrim(kiln_buf *b);

typedef struct kiln_view {
	const char *ptr;
	size_t len;
} kiln_view;

static inline kiln_view kiln_view_of(const char *s)
{
	kiln_view v = { s, s ? strlen(s) : 0 };
	return v;
}

static inline kiln_view kiln_view_buf(const kiln_buf *b)
{
	kiln_view v = { b->ptr, b->len };
	return v;
}

bool kiln_view_eq(kiln_view v, const char *s);
bool kiln_view_starts_with(kiln_view v, const char *prefix);
/* A heap copy, NUL-terminated; NULL when out of memory. */
char *kiln_view_dup(kiln_view v);

/* strdup that records KILN_ENOMEM; NULL in gives NULL out. */
char *kiln_strdup(const char *s);
/* Formats into a new heap string; NULL when out of memory. */
char *kiln_strdupf(const char *fmt, ...) KILN_PRINTF(1, 2);
/* snprintf into a fixed array, failing (KILN_EINVALID) rather than truncating. */
int kiln_strlcpy(char *dst, size_t size, const char *src);

/*
 * Parse a whole string as a decimal integer in [min, max]; 0 or
 * KILN_EINVALID (no message is set: callers say what was being parsed).
 */
int kiln_parse_i64(int64_t *out, const char *s, int64_t min, int64_t max);

#endif
