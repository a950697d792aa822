#include "core/buf.h"
#include "core/error.h"

const char kiln_buf__empty[1] = "";

void kiln_buf_init(kiln_buf *b, size_t max)
{
	b->ptr = (char *)kiln_buf__empty;
	b->len = 0;
	b->alloc = 0;
	b->max = max ? max : KILN_BUF_MAX_DEFAULT;
}

void kiln_buf_release(kiln_buf *b)
{
	if (b->alloc)
		free(b->ptr);
	kiln_buf_init(b, b->max);
}

char *kiln_buf_detach(kiln_buf *b)
{
	char *s = b->alloc ? b->ptr : strdup("");
	kiln_buf_init(b, b->max);
	return s;
}

void kiln_buf_reset(kiln_buf *b)
{
	kiln_buf_truncate(b, 0);
}

int kiln_buf_grow(kiln_buf *b, size_t extra)
{
	size_t want, alloc;
	char *p;

	if (extra > b->max || b->len > b->max - extra)
		return kiln_error_set(KILN_ENOMEM, "buffer would exceed its cap of %zu bytes", b->max);
	want = b->len + extra + 1;
	if (want <= b->alloc)
		return 0;
	alloc = b->alloc ? b->alloc : 64;
	while (alloc < want)
		alloc = alloc < SIZE_MAX / 2 ? alloc * 2 : want;
	p = b->alloc ? realloc(b->ptr, alloc) : malloc(alloc);
	if (!p)
		return kiln_error_set(KILN_ENOMEM, "out of memory growing a buffer to %zu bytes", alloc);
	if (!b->alloc)
		p[0] = '\0';
	b->ptr = p;
	b->alloc = alloc;
	return 0;
}

int kiln_buf_put(kiln_buf *b, const void *data, size_t len)
{
	int error;

	if (len == 0)
		return 0;
	if ((error = kiln_buf_grow(b, len)) < 0)
		return error;
	memmove(b->ptr + b->len, data, len);
	b->len += len;
	b->ptr[b->len] = '\0';
	return 0;
}

int kiln_buf_puts(kiln_buf *b, const char *s)
{
	return kiln_buf_put(b, s, strlen(s));
}

int kiln_buf_putc(kiln_buf *b, char c)
{
	return kiln_buf_put(b, &c, 1);
}

int kiln_buf_vprintf(kiln_buf *b, const char *fmt, va_list ap)
{
	va_list cp;
	int n, error;

	va_copy(cp, ap);
	n = vsnprintf(NULL, 0, fmt, cp);
	va_end(cp);
	if (n < 0)
		return kiln_error_set(KILN_ERROR, "bad format string");
	if ((error = kiln_buf_grow(b, (size_t)n)) < 0)
		return error;
	vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int kiln_buf_printf(kiln_buf *b, const char *fmt, ...)
{
	va_list ap;
	int error;

	va_start(ap, fmt);
	error = kiln_buf_vprintf(b, fmt, ap);
	va_end(ap);
	return error;
}

void kiln_buf_truncate(kiln_buf *b, size_t len)
{
	if (len >= b->len)
		return;
	b->len = len;
	b->ptr[len] = '\0';
}

void kiln_buf_rtrim(kiln_buf *b)
{
	size_t n = b->len;
	while (n > 0 && (b->ptr[n - 1] == ' ' || b->ptr[n - 1] == '\n' ||
			 b->ptr[n - 1] == '\r' || b->ptr[n - 1] == '\t'))
		n--;
	kiln_buf_truncate(b, n);
}

bool kiln_view_eq(kiln_view v, const char *s)
{
	size_t n = strlen(s);
	return v.len == n && memcmp(v.ptr, s, n) == 0;
}

bool kiln_view_starts_with(kiln_view v, const char *prefix)
{
	size_t n = strlen(prefix);
	return v.len >= n && memcmp(v.ptr, prefix, n) == 0;
}

char *kiln_view_dup(kiln_view v)
{
	char *s = malloc(v.len + 1);
	if (!s) {
		kiln_error_set(KILN_ENOMEM, "out of memory");
		return NULL;
	}
	if (v.len)
		memcpy(s, v.ptr, v.len);
	s[v.len] = '\0';
	return s;
}

char *kiln_strdup(const char *s)
{
	char *d;
	if (!s)
		return NULL;
	if (!(d = strdup(s)))
		kiln_error_set(KILN_ENOMEM, "out of memory");
	return d;
}

char *kiln_strdupf(const char *fmt, ...)
{
	kiln_buf b = KILN_BUF_INIT;
	va_list ap;
	int error;

	va_start(ap, fmt);
	error = kiln_buf_vprintf(&b, fmt, ap);
	va_end(ap);
	if (error < 0) {
		kiln_buf_release(&b);
		return NULL;
	}
	return kiln_buf_detach(&b);
}

int kiln_strlcpy(char *dst, size_t size, const char *src)
{
	size_t n = strlen(src);
	if (n >= size) {
		if (size)
			dst[0] = '\0';
		return kiln_error_set(KILN_EINVALID, "'%.40s...' is longer than %zu bytes", src, size - 1);
	}
	memcpy(dst, src, n + 1);
	return 0;
}

int kiln_parse_i64(int64_t *out, const char *s, int64_t min, int64_t max)
{
	char *end;
	long long v;

	if (!s || !*s)
		return KILN_EINVALID;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return KILN_EINVALID;
	*out = v;
	return 0;
}
