#include "tests/support/awsmock.h"

#include <jansson.h>
#include <strings.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/fs.h"
#include "tests/support/test.h"

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static char *form_decode(const char *s, size_t len)
{
	char *out = malloc(len + 1);
	size_t i, n = 0;
	assert_non_null(out);
	for (i = 0; i < len; i++) {
		if (s[i] == '%' && i + 2 < len && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
			out[n++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
			i += 2;
		} else {
			out[n++] = s[i] == '+' ? ' ' : s[i];
		}
	}
	out[n] = '\0';
	return out;
}

static void parse_params(kiln_mock_request *r)
{
	const char *p = r->body;
	json_t *doc;

	if (p[0] == '{') {
		const char *k;
		json_t *v;
		doc = json_loads(p, 0, NULL);
		assert_non_null(doc);
		json_object_foreach(doc, k, v) {
			char *text = json_is_string(v) ? strdup(json_string_value(v))
						       : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
			kiln_tags_set(&r->params, k, text);
			free(text);
		}
		json_decref(doc);
		return;
	}
	while (*p) {
		size_t len = strcspn(p, "&");
		const char *eq = memchr(p, '=', len);
		if (eq) {
			char *k = form_decode(p, (size_t)(eq - p));
			char *v = form_decode(eq + 1, len - (size_t)(eq - p) - 1);
			kiln_tags_set(&r->params, k, v);
			free(k);
			free(v);
		}
		p += len;
		if (*p == '&')
			p++;
	}
}

static int mock_send(void *ctx, const kiln_aws_wire_request *req, kiln_aws_wire_reply *reply,
		     bool *maybe_sent)
{
	kiln_awsmock *m = ctx;
	kiln_mock_request *r;
	const kiln_mock_reply *rep = NULL;
	size_t i;

	assert_true(m->n_requests < KILN_MOCK_MAX);
	r = &m->requests[m->n_requests++];
	memset(r, 0, sizeof(*r));
	r->method = strdup(req->method);
	r->url = strdup(req->url);
	r->body = strndup(req->body ? req->body : "", req->body_len);
	r->wall_s = kiln_clock_wall_s();
	r->fresh_connection = req->fresh_connection;
	for (i = 0; i < req->n_headers; i++)
		kiln_tags_set(&r->headers, req->headers[i].name, req->headers[i].value);
	parse_params(r);

	if (m->next < m->n_replies)
		rep = &m->replies[m->next++];
	else if (m->has_repeat)
		rep = &m->repeat;
	if (!rep) {
		fail_msg("awsmock: no reply queued for request %zu (%s)", m->n_requests, r->body);
		return KILN_ERROR;
	}
	*maybe_sent = rep->maybe_sent;
	if (rep->transport_error)
		return kiln_error_set(rep->transport_error, "mock transport failure %d", rep->transport_error);
	reply->status = rep->status;
	snprintf(reply->date, sizeof(reply->date), "%s", rep->date);
	snprintf(reply->error_type, sizeof(reply->error_type), "%s", rep->error_type);
	snprintf(reply->request_id, sizeof(reply->request_id), "mock-%zu", m->n_requests);
	if (rep->body && kiln_buf_puts(&reply->body, rep->body) < 0)
		return KILN_ENOMEM;
	return 0;
}

void kiln_awsmock_init(kiln_awsmock *m)
{
	memset(m, 0, sizeof(*m));
	m->transport.send = mock_send;
	m->transport.ctx = m;
}

static void reply_release(kiln_mock_reply *r)
{
	free(r->body);
	r->body = NULL;
}

void kiln_awsmock_release(kiln_awsmock *m)
{
	size_t i;
	for (i = 0; i < m->n_replies; i++)
		reply_release(&m->replies[i]);
	reply_release(&m->repeat);
	for (i = 0; i < m->n_requests; i++) {
		kiln_mock_request *r = &m->requests[i];
		free(r->method);
		free(r->url);
		free(r->body);
		kiln_tags_release(&r->headers);
		kiln_tags_release(&r->params);
	}
	kiln_awsmock_init(m);
}

static kiln_mock_reply *next_slot(kiln_awsmock *m)
{
	assert_true(m->n_replies < KILN_MOCK_MAX);
	memset(&m->replies[m->n_replies], 0, sizeof(m->replies[0]));
	m->replies[m->n_replies].maybe_sent = true;
	return &m->replies[m->n_replies++];
}

void kiln_awsmock_push(kiln_awsmock *m, int status, const char *body)
{
	kiln_mock_reply *r = next_slot(m);
	r->status = status;
	r->body = strdup(body ? body : "");
}

char *kiln_awsmock_fixture(const char *name)
{
	kiln_buf b = KILN_BUF_INIT;
	char rel[256];
	snprintf(rel, sizeof(rel), "tests/data/aws/%s", name);
	if (kiln_read_file(&b, kiln_test_source_path(rel)) < 0)
		fail_msg("cannot read fixture '%s': %s", rel, kiln_error_last()->message);
	return kiln_buf_detach(&b);
}

void kiln_awsmock_push_file(kiln_awsmock *m, int status, const char *name)
{
	kiln_mock_reply *r = next_slot(m);
	r->status = status;
	r->body = kiln_awsmock_fixture(name);
	if (strstr(name, ".json") && status >= 400) {
		/* the JSON protocol's errors also name their type in a header */
		json_t *doc = json_loads(r->body, 0, NULL);
		snprintf(r->error_type, sizeof(r->error_type), "%s",
			 json_string_value(json_object_get(doc, "__type")));
		json_decref(doc);
	}
}

void kiln_awsmock_push_fail(kiln_awsmock *m, int transport_error, bool maybe_sent)
{
	kiln_mock_reply *r = next_slot(m);
	r->transport_error = transport_error;
	r->maybe_sent = maybe_sent;
}

void kiln_awsmock_push_ec2_error(kiln_awsmock *m, int status, const char *code, const char *message)
{
	char body[1024];
	snprintf(body, sizeof(body),
		 "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>%s</Code>"
		 "<Message>%s</Message></Error></Errors><RequestID>req-%s</RequestID></Response>",
		 code, message, code);
	kiln_awsmock_push(m, status, body);
}

void kiln_awsmock_last_date(kiln_awsmock *m, const char *date)
{
	assert_true(m->n_replies > 0);
	snprintf(m->replies[m->n_replies - 1].date, sizeof(m->replies[0].date), "%s", date);
}

void kiln_awsmock_repeat(kiln_awsmock *m, int status, const char *body)
{
	reply_release(&m->repeat);
	memset(&m->repeat, 0, sizeof(m->repeat));
	m->repeat.status = status;
	m->repeat.maybe_sent = true;
	m->repeat.body = strdup(body ? body : "");
	m->has_repeat = true;
}

const kiln_mock_request *kiln_awsmock_request(const kiln_awsmock *m, size_t i)
{
	if (i >= m->n_requests)
		fail_msg("awsmock: request %zu was never sent (%zu were)", i, m->n_requests);
	return &m->requests[i];
}

const char *kiln_mock_header(const kiln_mock_request *r, const char *name)
{
	size_t i;
	for (i = 0; i < r->headers.n; i++)
		if (!strcasecmp(r->headers.items[i].key, name))
			return r->headers.items[i].value;
	return NULL;
}

const char *kiln_mock_param(const kiln_mock_request *r, const char *name)
{
	return kiln_tags_get(&r->params, name);
}

void kiln_awsmock_config(kiln_aws_config *cfg)
{
	static const char *const hosts[KILN_AWS_SERVICE_COUNT] = { "ec2", "elasticloadbalancing",
								   "elasticloadbalancing", "ssm", "sts" };
	size_t i;
	memset(cfg, 0, sizeof(*cfg));
	cfg->region = strdup("us-east-1");
	for (i = 0; i < KILN_AWS_SERVICE_COUNT; i++)
		cfg->endpoints[i] = kiln_strdupf("https://%s.us-east-1.amazonaws.com", hosts[i]);
	cfg->credentials.access_key_id = strdup("AKIDEXAMPLE");
	cfg->credentials.secret_access_key = strdup(KILN_MOCK_SECRET);
	snprintf(cfg->credentials.source, sizeof(cfg->credentials.source), "test");
}
