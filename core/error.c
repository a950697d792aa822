#include "core/error.h"

static _Thread_local kiln_error last_error;

/*
 * A message is one line whatever it quotes: cloud replies, file contents and
 * peer output may hold newlines or terminal escapes, and the CLI prints the
 * message as one line (and a log reader must not be fooled by a forged one).
 * Line breaks and tabs become spaces, other control bytes '?'.
 */
static void one_line(char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '\n' || c == '\r' || c == '\t')
			*s = ' ';
		else if (c < 0x20 || c == 0x7f)
			*s = '?';
	}
}

int kiln_error_vset(int code, const char *fmt, va_list ap)
{
	memset(&last_error, 0, sizeof(last_error));
	last_error.code = code;
	vsnprintf(last_error.message, sizeof(last_error.message), fmt, ap);
	one_line(last_error.message);
	return code;
}

int kiln_error_set(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	kiln_error_vset(code, fmt, ap);
	va_end(ap);
	return code;
}

int kiln_error_set_cloud(int code, int http_status, const char *cloud_code,
			 const char *request_id, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	kiln_error_vset(code, fmt, ap);
	va_end(ap);
	last_error.http_status = http_status;
	snprintf(last_error.cloud_code, sizeof(last_error.cloud_code), "%s",
		 cloud_code ? cloud_code : "");
	snprintf(last_error.request_id, sizeof(last_error.request_id), "%s",
		 request_id ? request_id : "");
	return code;
}

int kiln_error_set_os(int code, int errnum, const char *fmt, ...)
{
	char what[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return kiln_error_set(code, "%s: %s", what, strerror(errnum));
}

int kiln_error_prefix(const char *fmt, ...)
{
	char head[512], old[sizeof(last_error.message)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(head, sizeof(head), fmt, ap);
	va_end(ap);
	memcpy(old, last_error.message, sizeof(old));
	snprintf(last_error.message, sizeof(last_error.message), "%s: %s", head, old);
	one_line(last_error.message);
	if (last_error.code == 0)
		last_error.code = KILN_ERROR;
	return last_error.code;
}

const kiln_error *kiln_error_last(void)
{
	return &last_error;
}

void kiln_error_clear(void)
{
	memset(&last_error, 0, sizeof(last_error));
}

void kiln_error_save(kiln_error *out)
{
	*out = last_error;
}

void kiln_error_restore(const kiln_error *saved)
{
	last_error = *saved;
}

const char *kiln_error_name(int code)
{
	switch (code) {
	case KILN_OK: return "ok";
	case KILN_ENOTFOUND: return "not found";
	case KILN_ETHROTTLED: return "throttled";
	case KILN_EAUTH: return "authentication";
	case KILN_ETIMEOUT: return "timeout";
	case KILN_ECANCELLED: return "cancelled";
	case KILN_ECONFLICT: return "conflict";
	case KILN_EINVALID: return "invalid";
	case KILN_EBUSY: return "busy";
	case KILN_ENOMEM: return "out of memory";
	case KILN_EUNSUPPORTED: return "unsupported";
	case KILN_ETRANSIENT: return "transient";
	default: return "error";
	}
}
