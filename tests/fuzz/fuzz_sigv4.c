/*
 * fuzz_sigv4: the SigV4 canonicalizer and signer (aws/sigv4.c).
 *
 * The input is an HTTP request in the official suite's request.txt shape,
 * so the suite's files and kiln's vectors are seeds as they are:
 *
 *	[!FLAGS [REGION [SERVICE [TIME]]]]       optional, see below
 *	METHOD SP PATH[?QUERY] [SP HTTP/1.1]
 *	Name:value                               any number; lines starting
 *	  more of the value                      with white space continue one
 *	                                         (an empty line ends them)
 *	BODY                                     the rest, any bytes
 *
 * The first Host header is the host (region and service default to its
 * labels, SERVICE.REGION.amazonaws.com); the first X-Amz-Date gives the
 * time and the first X-Amz-Security-Token the session token. Any further
 * Host, X-Amz-Date ... is passed on as an ordinary header, which the signer
 * must refuse. FLAGS: 'n' no_normalize_path, 'o' omit_session_token, 'c'
 * sign_content_sha256. A signature must come out well formed, be the same
 * when signed again with the same result struct, and its string to sign
 * must hash the canonical request it reports; a refusal must leave no
 * signature and no canonical request behind.
 */
#include <openssl/evp.h>
#include <strings.h>

#include "aws/sigv4.h"
#include "core/error.h"
#include "tests/fuzz/fuzz.h"

#define MAX_HEADERS 64
#define AUTH_PREFIX "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"

typedef struct request {
	char *text;        /* the input, NUL-terminated; the fields point into it */
	kiln_sigv4_request req;
	kiln_http_header headers[MAX_HEADERS];
	char *token;
} request;

static char *next_line(char **p, char *end)
{
	char *line = *p, *nl;
	if (line >= end)
		return NULL;
	nl = memchr(line, '\n', (size_t)(end - line));
	if (nl) {
		*nl = '\0';
		*p = nl + 1;
	} else {
		*p = end;
	}
	/* a '\r' before the '\n' stays: the signer trims it as white space */
	return line;
}

/* "20150830T123600Z" -> Unix seconds; false if not that shape. */
static bool parse_amz_date(const char *s, int64_t *out)
{
	struct tm tm;
	const char *end;

	memset(&tm, 0, sizeof(tm));
	if (!(end = strptime(s, "%Y%m%dT%H%M%SZ", &tm)) || *end)
		return false;
	*out = (int64_t)timegm(&tm);
	return true;
}

/* Splits "svc.region.amazonaws.com[:port]" into two labels, in buf. */
static void labels_of(const char *host, char *buf, size_t size, const char **svc, const char **region)
{
	char *dot;
	snprintf(buf, size, "%s", host);
	*svc = buf;
	if ((dot = strchr(buf, '.'))) {
		*dot = '\0';
		*region = dot + 1;
		if ((dot = strchr(dot + 1, '.')))
			*dot = '\0';
	}
}

static void parse(request *r, const uint8_t *data, size_t size, char *labels, size_t labels_size)
{
	kiln_sigv4_request *req = &r->req;
	char *p, *end, *line, *target, *q, *sp, *opts = NULL;
	bool have_host = false, have_date = false, have_token = false;
	const char *region = NULL, *service = NULL;
	long long time_opt = 0;
	bool have_time = false;

	r->text = malloc(size + 1);
	FUZZ_CHECK(r->text);
	memcpy(r->text, data, size);
	r->text[size] = '\0';
	p = r->text;
	end = r->text + size;

	req->method = "";
	req->path = "/";
	req->time = 1440938160; /* 20150830T123600Z, the suite's */
	if (size && r->text[0] == '!') {
		opts = next_line(&p, end) + 1;
		req->no_normalize_path = strchr(opts, 'n') != NULL;
		req->omit_session_token = strchr(opts, 'o') != NULL;
		req->sign_content_sha256 = strchr(opts, 'c') != NULL;
	}
	if ((line = next_line(&p, end))) {
		req->method = line;
		if ((target = strchr(line, ' '))) {
			*target++ = '\0';
			if ((sp = strrchr(target, ' ')) && strncmp(sp + 1, "HTTP/", 5) == 0)
				*sp = '\0';
			if ((q = strchr(target, '?'))) {
				*q = '\0';
				req->query = q + 1;
			}
			req->path = target;
		}
	}
	while ((line = next_line(&p, end)) && *line) {
		char *colon = strchr(line, ':'), *name = line, *value;
		if ((*line == ' ' || *line == '\t') && req->n_headers) {
			/* a continuation: the signer folds the line break */
			line[-1] = '\n';
			continue;
		}
		value = colon ? colon + 1 : line + strlen(line);
		if (colon)
			*colon = '\0';
		if (!have_host && !strcasecmp(name, "host")) {
			req->host = value;
			have_host = true;
		} else if (!have_date && !strcasecmp(name, "x-amz-date") && parse_amz_date(value, &req->time)) {
			have_date = true;
		} else if (!have_token && !strcasecmp(name, "x-amz-security-token")) {
			r->token = value;
			have_token = true;
		} else if (req->n_headers < MAX_HEADERS) {
			r->headers[req->n_headers].name = name;
			r->headers[req->n_headers].value = value;
			req->n_headers++;
		}
	}
	req->headers = r->headers;
	req->body = p;
	req->body_len = (size_t)(end - p);
	if (!req->host)
		req->host = "example.amazonaws.com";

	labels_of(req->host, labels, labels_size, &service, &region);
	if (opts) {
		char *save = NULL, *tok = strtok_r(opts, " ", &save); /* the flags */
		if (tok && (tok = strtok_r(NULL, " ", &save)))
			region = tok;
		if (tok && (tok = strtok_r(NULL, " ", &save)))
			service = tok;
		if (tok && (tok = strtok_r(NULL, " ", &save))) {
			time_opt = strtoll(tok, NULL, 10);
			have_time = true;
		}
	}
	req->region = region ? region : "us-east-1";
	req->service = service ? service : "service";
	if (have_time)
		req->time = time_opt;
}

static bool is_hex(const char *s, size_t n)
{
	size_t i;
	for (i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return s[n] == '\0';
}

static void check_signed(const kiln_sigv4_result *res, const kiln_sigv4_request *req)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	char hex[65];
	const char *last;
	size_t i;

	FUZZ_CHECK(strlen(res->amz_date) == 16);
	FUZZ_CHECK(is_hex(res->signature, 64));
	FUZZ_CHECK(is_hex(res->content_sha256, 64));
	FUZZ_CHECK(strncmp(res->authorization, AUTH_PREFIX, strlen(AUTH_PREFIX)) == 0);
	FUZZ_CHECK(strstr(res->authorization, res->signature) != NULL);
	/* METHOD\n ... \nPAYLOAD_HASH */
	FUZZ_CHECK(strncmp(res->canonical_request.ptr, req->method, strlen(req->method)) == 0);
	FUZZ_CHECK(res->canonical_request.ptr[strlen(req->method)] == '\n');
	FUZZ_CHECK(res->canonical_request.len >= 64);
	FUZZ_CHECK(strcmp(res->canonical_request.ptr + res->canonical_request.len - 64,
			  res->content_sha256) == 0);
	/* the string to sign's last line is the canonical request's hash */
	FUZZ_CHECK(EVP_Digest(res->canonical_request.ptr, res->canonical_request.len, md, &md_len,
			      EVP_sha256(), NULL) && md_len == 32);
	for (i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	last = strrchr(res->string_to_sign.ptr, '\n');
	FUZZ_CHECK(last && strcmp(last + 1, hex) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	request r;
	char labels[512];
	kiln_aws_credentials creds;
	kiln_sigv4_result res;
	char first[65];
	int rc;

	memset(&r, 0, sizeof(r));
	memset(&creds, 0, sizeof(creds));
	parse(&r, data, size, labels, sizeof(labels));
	creds.access_key_id = (char *)"AKIDEXAMPLE";
	creds.secret_access_key = (char *)"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
	creds.session_token = r.token;

	kiln_sigv4_result_init(&res);
	rc = kiln_sigv4_sign(&res, &r.req, &creds);
	if (rc == 0) {
		check_signed(&res, &r.req);
		memcpy(first, res.signature, sizeof(first));
		/* each retry re-signs into the same result: same request, same signature */
		FUZZ_CHECK(kiln_sigv4_sign(&res, &r.req, &creds) == 0);
		FUZZ_CHECK(strcmp(first, res.signature) == 0);
	} else {
		FUZZ_CHECK(rc == KILN_EINVALID || rc == KILN_ENOMEM);
		FUZZ_CHECK(kiln_error_last()->code == rc && kiln_error_last()->message[0]);
		FUZZ_CHECK(res.canonical_request.len == 0 && res.signature[0] == '\0' &&
			   res.authorization[0] == '\0');
		/* the secret never reaches a message, unless the request itself held it */
		if (!memmem(data, size, creds.secret_access_key, strlen(creds.secret_access_key)))
			FUZZ_CHECK(strstr(kiln_error_last()->message, creds.secret_access_key) == NULL);
	}
	kiln_sigv4_result_release(&res);
	free(r.text);
	return 0;
}
