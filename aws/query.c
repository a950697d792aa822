#include "aws/http.h"
#include "aws/query.h"
#include "aws/sigv4.h"
#include "aws/xml.h"
#include "core/error.h"

int kiln_uri_encode(kiln_buf *out, const char *s, size_t len)
{
	/* the signer's encoding: the Query body must match what it canonicalises */
	return kiln_sigv4_uri_encode(out, s, len, false);
}

static void add_pair(kiln_query *q, const char *name, const char *value)
{
	if (q->error)
		return;
	if ((q->error = kiln_buf_putc(&q->body, '&')) < 0 ||
	    (q->error = kiln_uri_encode(&q->body, name, strlen(name))) < 0 ||
	    (q->error = kiln_buf_putc(&q->body, '=')) < 0 ||
	    (q->error = kiln_uri_encode(&q->body, value, strlen(value))) < 0)
		return;
}

void kiln_query_init(kiln_query *q, const char *action, const char *version)
{
	kiln_buf_init(&q->body, KILN_QUERY_MAX);
	q->action = action;
	q->error = 0;
	if ((q->error = kiln_buf_puts(&q->body, "Action=")) < 0 ||
	    (q->error = kiln_uri_encode(&q->body, action, strlen(action))) < 0)
		return;
	add_pair(q, "Version", version);
}

void kiln_query_release(kiln_query *q)
{
	kiln_buf_release(&q->body);
	q->error = 0;
}

void kiln_query_add(kiln_query *q, const char *name, const char *value)
{
	if (value)
		add_pair(q, name, value);
}

void kiln_query_add_int(kiln_query *q, const char *name, int64_t value)
{
	char num[24];
	snprintf(num, sizeof(num), "%lld", (long long)value);
	add_pair(q, name, num);
}

void kiln_query_add_bool(kiln_query *q, const char *name, bool value)
{
	add_pair(q, name, value ? "true" : "false");
}

void kiln_query_addf(kiln_query *q, const char *value, const char *name_fmt, ...)
{
	char name[256];
	va_list ap;
	int n;

	if (q->error || !value)
		return;
	va_start(ap, name_fmt);
	n = vsnprintf(name, sizeof(name), name_fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(name)) {
		q->error = kiln_error_set(KILN_EINVALID, "query parameter name too long ('%.40s...')", name);
		return;
	}
	add_pair(q, name, value);
}

void kiln_query_add_list(kiln_query *q, const char *prefix, const char *suffix,
			 const char *const *values, size_t n)
{
	size_t i;
	for (i = 0; i < n; i++)
		kiln_query_addf(q, values[i], "%s.%zu%s", prefix, i + 1, suffix ? suffix : "");
}

int kiln_query_call(struct kiln_aws_client *c, int service, const kiln_query *q, unsigned flags,
		    struct kiln_xml **out)
{
	kiln_aws_request req = { 0 };
	kiln_buf body;
	int error;

	*out = NULL;
	if (q->error)
		return q->error;
	req.service = (kiln_aws_service)service;
	req.protocol = KILN_AWS_QUERY;
	req.action = q->action;
	req.body = kiln_query_view(q);
	req.flags = flags;
	if ((error = kiln_aws_call(c, &req, &body)) == 0 &&
	    (error = kiln_xml_parse(out, body.ptr, body.len)) < 0)
		kiln_error_prefix("%s", q->action);
	kiln_buf_release(&body);
	return error;
}
