/*
 * imds.c: IMDSv2 over the client's transport (imds.h says what and why).
 */
#include <openssl/crypto.h>

#include "aws/credentials.h"
#include "aws/imds.h"
#include "core/clock.h"
#include "core/error.h"

#define IMDS_BODY_MAX ((size_t)64 << 10)
#define TOKEN_TTL_S 21600
#define TOKEN_PATH "/latest/api/token"
#define ROLE_PATH "/latest/meta-data/iam/security-credentials/"

struct kiln_imds {
	kiln_aws_config cfg; /* no endpoints and no keys: the client's transport and CA only */
	kiln_aws_client *client;
	char *endpoint;
	uint64_t timeout_ms;
	unsigned attempts;
	char token[256];
	int64_t token_until; /* wall seconds */
};

int kiln_imds_new(kiln_imds **out, const kiln_aws_imds_config *cfg,
		  const kiln_aws_transport *transport)
{
	kiln_aws_client_options o = KILN_AWS_CLIENT_OPTIONS_INIT;
	kiln_imds *m;
	int error;

	*out = NULL;
	if (!(m = calloc(1, sizeof(*m))))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	m->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 1000;
	m->attempts = cfg->attempts ? cfg->attempts : 2;
	if (!(m->endpoint = kiln_strdup(cfg->endpoint ? cfg->endpoint : "http://169.254.169.254"))) {
		free(m);
		return KILN_ENOMEM;
	}
	o.transport = transport;
	o.connect_timeout_ms = m->timeout_ms;
	o.timeout_ms = m->timeout_ms;
	if ((error = kiln_aws_client_new(&m->client, &m->cfg, &o)) < 0) {
		free(m->endpoint);
		free(m);
		return error;
	}
	*out = m;
	return 0;
}

void kiln_imds_free(kiln_imds *m)
{
	if (!m)
		return;
	kiln_aws_client_free(m->client);
	free(m->endpoint);
	OPENSSL_cleanse(m->token, sizeof(m->token));
	free(m);
}

const char *kiln_imds_endpoint(const kiln_imds *m)
{
	return m->endpoint;
}

/* One request, retried on timeouts, dropped connections and 5xx (m->attempts in all). */
static int request(kiln_imds *m, const char *method, const char *path, const kiln_http_header *h,
		   size_t nh, int *status, kiln_buf *out)
{
	char url[512];
	unsigned attempt;
	int error = 0;

	snprintf(url, sizeof(url), "%s%s", m->endpoint, path);
	kiln_buf_init(out, IMDS_BODY_MAX);
	for (attempt = 1; attempt <= m->attempts; attempt++) {
		kiln_buf_release(out);
		error = kiln_aws_http(m->client, method, url, h, nh, m->timeout_ms, IMDS_BODY_MAX, status, out);
		if (error == 0 && *status < 500)
			return 0;
		if (error < 0 && error != KILN_ETIMEOUT && error != KILN_ETRANSIENT)
			return error;
		if (attempt < m->attempts && (error = kiln_sleep_ms(50)) < 0)
			return error;
	}
	if (error == 0)
		return kiln_error_set(KILN_ETRANSIENT, "the instance metadata service at '%s' answered HTTP %d",
				      m->endpoint, *status);
	return kiln_error_prefix("the instance metadata service at '%s' (%u attempt%s)", m->endpoint,
				 m->attempts, m->attempts == 1 ? "" : "s");
}

static int get_token(kiln_imds *m)
{
	char ttl[16];
	kiln_http_header h[1] = { { "X-aws-ec2-metadata-token-ttl-seconds", ttl } };
	kiln_buf body;
	int status, error;

	if (m->token[0] && kiln_clock_wall_s() < m->token_until)
		return 0;
	snprintf(ttl, sizeof(ttl), "%d", TOKEN_TTL_S);
	if ((error = request(m, "PUT", TOKEN_PATH, h, 1, &status, &body)) < 0)
		goto done;
	kiln_buf_rtrim(&body);
	if (status == 403)
		error = kiln_error_set(KILN_EAUTH,
				       "the instance metadata service at '%s' refused a session token (HTTP 403): "
				       "is it turned off for this instance?", m->endpoint);
	else if (status == 404 || status == 405)
		error = kiln_error_set(KILN_EUNSUPPORTED,
				       "the instance metadata service at '%s' offers no IMDSv2 session tokens "
				       "(HTTP %d), and kiln does not use IMDSv1", m->endpoint, status);
	else if (status != 200)
		error = kiln_error_set(KILN_ERROR, "the instance metadata service at '%s' answered HTTP %d "
				       "to a token request", m->endpoint, status);
	else if (!body.len || body.len >= sizeof(m->token) || memchr(body.ptr, '\n', body.len))
		error = kiln_error_set(KILN_ERROR, "the instance metadata service at '%s' sent a token "
				       "kiln cannot use", m->endpoint);
	else {
		memcpy(m->token, body.ptr, body.len + 1);
		/* a minute early, so a token never expires between two requests */
		m->token_until = kiln_clock_wall_s() + TOKEN_TTL_S - 60;
	}
done:
	if (body.alloc)
		OPENSSL_cleanse(body.ptr, body.alloc);
	kiln_buf_release(&body);
	return error;
}

int kiln_imds_get(kiln_imds *m, const char *path, kiln_buf *out)
{
	kiln_http_header h[1] = { { "X-aws-ec2-metadata-token", m->token } };
	int status = 0, error, tries;

	kiln_buf_init(out, IMDS_BODY_MAX);
	for (tries = 0; tries < 2; tries++) {
		if ((error = get_token(m)) < 0)
			return error;
		kiln_buf_release(out);
		if ((error = request(m, "GET", path, h, 1, &status, out)) < 0)
			return error;
		if (status != 401)
			break;
		/* the token expired or the service restarted: one new token */
		m->token[0] = '\0';
	}
	if (status == 200)
		return 0;
	if (status == 404)
		return kiln_error_set(KILN_ENOTFOUND, "the instance metadata service at '%s' has no '%s'",
				      m->endpoint, path);
	return kiln_error_set(status == 401 || status == 403 ? KILN_EAUTH : KILN_ERROR,
			      "the instance metadata service at '%s' answered HTTP %d for '%s'", m->endpoint,
			      status, path);
}

int kiln_imds_region(kiln_imds *m, char **out)
{
	kiln_buf body;
	int error;

	*out = NULL;
	if ((error = kiln_imds_get(m, "/latest/meta-data/placement/region", &body)) == 0) {
		kiln_buf_rtrim(&body);
		if (!body.len || body.len > 64 || strpbrk(body.ptr, " \t\r\n"))
			error = kiln_error_set(KILN_ERROR, "the instance metadata service at '%s' sent a region "
					       "that is not one", m->endpoint);
		else if (!(*out = kiln_strdup(body.ptr)))
			error = KILN_ENOMEM;
	}
	kiln_buf_release(&body);
	return error;
}

/* An IAM role name: 1-64 of [\w+=,.@-] (it becomes part of a path). */
static bool valid_role(const char *s, size_t n)
{
	size_t i;
	if (!n || n > 64)
		return false;
	for (i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      strchr("_+=,.@-", c)))
			return false;
	}
	return true;
}

int kiln_imds_parse_credentials(kiln_aws_credentials *out, const char *json, size_t len)
{
	json_error_t jerr;
	json_t *doc;
	const char *code;
	int error;

	/* jansson's error text may quote the input: only the position goes in a message */
	if (!(doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr)))
		return kiln_error_set(KILN_ERROR, "the instance role's credentials are not JSON (line %d, column %d)",
				      jerr.line, jerr.column);
	if (!json_is_object(doc)) {
		error = kiln_error_set(KILN_ERROR, "the instance role's credentials are not a JSON object");
		goto done;
	}
	code = json_string_value(json_object_get(doc, "Code"));
	if (json_object_get(doc, "Code") && (!code || strcmp(code, "Success"))) {
		char shown[65] = "";
		size_t i;
		/* the code is the service's word, not a secret; kept printable and short */
		for (i = 0; code && code[i] && i + 1 < sizeof(shown); i++)
			shown[i] = code[i] > 0x20 && code[i] < 0x7f ? code[i] : '?';
		shown[i] = '\0';
		error = kiln_error_set(KILN_ERROR, "the instance role's credentials say Code '%s', not Success",
				       shown);
		goto done;
	}
	error = kiln_aws_creds_from_json(out, doc, "Token", true, "the instance role's credentials");
done:
	json_decref(doc);
	return error;
}

int kiln_imds_credentials(kiln_imds *m, kiln_aws_credentials *out, char *role, size_t role_size)
{
	kiln_buf body = KILN_BUF_INIT;
	char path[sizeof(ROLE_PATH) + 64];
	size_t n;
	int error;

	if ((error = kiln_imds_get(m, ROLE_PATH, &body)) < 0) {
		kiln_buf_release(&body);
		if (error == KILN_ENOTFOUND)
			return kiln_error_set(KILN_ENOTFOUND, "the instance metadata service at '%s' "
					      "has no IAM role for this instance (no instance profile)", m->endpoint);
		return error;
	}
	/* one role per instance profile; the first line names it */
	n = strcspn(body.ptr, "\r\n");
	if (!valid_role(body.ptr, n)) {
		kiln_buf_release(&body);
		return kiln_error_set(KILN_ERROR, "the instance metadata service at '%s' names a role "
				      "that is not an IAM role name", m->endpoint);
	}
	snprintf(path, sizeof(path), "%s%.*s", ROLE_PATH, (int)n, body.ptr);
	if (role)
		snprintf(role, role_size, "%.*s", (int)n, body.ptr);
	kiln_buf_release(&body);
	if ((error = kiln_imds_get(m, path, &body)) == 0 &&
	    (error = kiln_imds_parse_credentials(out, body.ptr, body.len)) < 0)
		kiln_error_prefix("instance metadata service at '%s'", m->endpoint);
	if (body.alloc)
		OPENSSL_cleanse(body.ptr, body.alloc);
	kiln_buf_release(&body);
	return error;
}
