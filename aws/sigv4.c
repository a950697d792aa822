/*
 * sigv4.c: AWS Signature Version 4, header signing.
 *
 * The steps are the ones AWS documents (canonical request -> string to
 * sign -> derived key -> signature); the canonicalisation rules are the
 * official test suite's and botocore's, stated in sigv4.h. aws/http.c calls
 * kiln_sigv4_sign for every attempt of every request.
 *
 * Secrets: the secret only ever lives in the caller's credentials and in
 * the "AWS4"+secret key buffer and the derived keys here, which are wiped
 * (OPENSSL_cleanse) before returning. Error messages never quote them.
 */
#include "aws/sigv4.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <strings.h>

#include "core/error.h"

#define SIGV4_ALGORITHM "AWS4-HMAC-SHA256"
/* Bound on what one canonical request may grow to (headers + query). */
#define SIGV4_CANONICAL_MAX ((size_t)1 << 20)

void kiln_aws_credentials_release(kiln_aws_credentials *c)
{
	if (!c)
		return;
	if (c->secret_access_key) {
		OPENSSL_cleanse(c->secret_access_key, strlen(c->secret_access_key));
		free(c->secret_access_key);
	}
	if (c->session_token) {
		OPENSSL_cleanse(c->session_token, strlen(c->session_token));
		free(c->session_token);
	}
	free(c->access_key_id);
	memset(c, 0, sizeof(*c));
}

void kiln_sigv4_result_init(kiln_sigv4_result *r)
{
	memset(r, 0, sizeof(*r));
	kiln_buf_init(&r->canonical_request, SIGV4_CANONICAL_MAX);
	kiln_buf_init(&r->string_to_sign, SIGV4_CANONICAL_MAX);
}

static void wipe_buf(kiln_buf *b)
{
	if (b->alloc)
		OPENSSL_cleanse(b->ptr, b->alloc);
	kiln_buf_release(b);
}

void kiln_sigv4_result_release(kiln_sigv4_result *r)
{
	if (!r)
		return;
	/* the canonical request holds the session token */
	wipe_buf(&r->canonical_request);
	wipe_buf(&r->string_to_sign);
	OPENSSL_cleanse(r, sizeof(*r));
	kiln_sigv4_result_init(r);
}

/* ---- encoding ---------------------------------------------------------- */

static bool is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.' || c == '~';
}

int kiln_sigv4_uri_encode(kiln_buf *out, const char *s, size_t len, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i;
	int error;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (is_unreserved(c) || (keep_slash && c == '/')) {
			error = kiln_buf_putc(out, (char)c);
		} else {
			char esc[3] = { '%', hex[c >> 4], hex[c & 15] };
			error = kiln_buf_put(out, esc, 3);
		}
		if (error < 0)
			return error;
	}
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* %XX -> byte; a '%' not followed by two hex digits stays a literal '%'. */
static int uri_decode(kiln_buf *out, const char *s, size_t len)
{
	size_t i;
	int error;

	for (i = 0; i < len; i++) {
		char c = s[i];
		if (c == '%' && i + 2 < len && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
			c = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
			i += 2;
		}
		if ((error = kiln_buf_putc(out, c)) < 0)
			return error;
	}
	return 0;
}

static void hex_encode(char *out, const unsigned char *in, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t i;
	for (i = 0; i < len; i++) {
		out[2 * i] = hex[in[i] >> 4];
		out[2 * i + 1] = hex[in[i] & 15];
	}
	out[2 * len] = '\0';
}

/* ---- crypto ------------------------------------------------------------ */

static int sha256_hex(char out[65], const void *data, size_t len)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;

	if (!EVP_Digest(data ? data : "", len, md, &md_len, EVP_sha256(), NULL) || md_len != 32)
		return kiln_error_set(KILN_ERROR, "sha-256 failed (openssl)");
	hex_encode(out, md, 32);
	return 0;
}

/* out = HMAC-SHA256(key, data); ctx is reused across the derivation chain. */
static int hmac(EVP_MAC_CTX *ctx, unsigned char out[32], const void *key, size_t key_len,
		const void *data, size_t data_len)
{
	OSSL_PARAM params[2];
	size_t out_len = 0;

	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if (!EVP_MAC_init(ctx, key, key_len, params) || !EVP_MAC_update(ctx, data, data_len) ||
	    !EVP_MAC_final(ctx, out, &out_len, 32) || out_len != 32)
		return kiln_error_set(KILN_ERROR, "hmac-sha256 failed (openssl)");
	return 0;
}

/*
 * signature = hex(HMAC(kSigning, string_to_sign)), with
 * kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request").
 */
static int compute_signature(char out[65], const char *secret, const char *date,
			     const char *region, const char *service, const kiln_buf *sts)
{
	EVP_MAC *mac = NULL;
	EVP_MAC_CTX *ctx = NULL;
	unsigned char k1[32], k2[32], sig[32];
	size_t secret_len = strlen(secret);
	char *seed = NULL;
	int error = KILN_ERROR;

	if (!(mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) || !(ctx = EVP_MAC_CTX_new(mac))) {
		error = kiln_error_set(KILN_ERROR, "hmac-sha256 unavailable (openssl)");
		goto done;
	}
	if (!(seed = malloc(secret_len + 5))) {
		error = kiln_error_set(KILN_ENOMEM, "out of memory");
		goto done;
	}
	memcpy(seed, "AWS4", 4);
	memcpy(seed + 4, secret, secret_len + 1);
	if ((error = hmac(ctx, k1, seed, secret_len + 4, date, strlen(date))) < 0 ||
	    (error = hmac(ctx, k2, k1, 32, region, strlen(region))) < 0 ||
	    (error = hmac(ctx, k1, k2, 32, service, strlen(service))) < 0 ||
	    (error = hmac(ctx, k2, k1, 32, "aws4_request", 12)) < 0 ||
	    (error = hmac(ctx, sig, k2, 32, sts->ptr, sts->len)) < 0)
		goto done;
	hex_encode(out, sig, 32);
	error = 0;
done:
	if (seed) {
		OPENSSL_cleanse(seed, secret_len + 5);
		free(seed);
	}
	OPENSSL_cleanse(k1, sizeof(k1));
	OPENSSL_cleanse(k2, sizeof(k2));
	OPENSSL_cleanse(sig, sizeof(sig));
	EVP_MAC_CTX_free(ctx); /* frees (and clears) the key it holds */
	EVP_MAC_free(mac);
	return error;
}

/* ---- canonical path ---------------------------------------------------- */

/*
 * RFC 3986 5.2.4 dot-segment removal, plus dropping empty segments (AWS
 * services treat "//" as "/"); a trailing '/' survives when something is
 * left before it. This is botocore's remove_dot_segments.
 */
static int normalize_path(kiln_buf *out, const char *path)
{
	size_t len = strlen(path), n_seg = 0, i, start;
	kiln_view *segs = NULL;
	int error = 0;

	segs = calloc(len / 2 + 2, sizeof(*segs));
	if (!segs)
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	for (start = 0, i = 0; i <= len; i++) {
		if (i < len && path[i] != '/')
			continue;
		kiln_view seg = { path + start, i - start };
		start = i + 1;
		if (seg.len == 0 || kiln_view_eq(seg, "."))
			continue;
		if (kiln_view_eq(seg, "..")) {
			if (n_seg)
				n_seg--;
			continue;
		}
		segs[n_seg++] = seg;
	}
	if (len && path[0] == '/')
		error = kiln_buf_putc(out, '/');
	for (i = 0; i < n_seg && error == 0; i++) {
		if (i)
			error = kiln_buf_putc(out, '/');
		if (error == 0)
			error = kiln_buf_put(out, segs[i].ptr, segs[i].len);
	}
	if (error == 0 && n_seg && path[len - 1] == '/')
		error = kiln_buf_putc(out, '/');
	free(segs);
	return error;
}

static int canonical_path(kiln_buf *out, const char *path, bool normalize)
{
	kiln_buf norm = KILN_BUF_INIT;
	int error;

	if (!path || !*path)
		path = "/";
	if (normalize) {
		if ((error = normalize_path(&norm, path)) < 0)
			goto done;
		if (norm.len == 0 && (error = kiln_buf_putc(&norm, '/')) < 0)
			goto done;
		path = norm.ptr;
	}
	error = kiln_sigv4_uri_encode(out, path, strlen(path), true);
done:
	kiln_buf_release(&norm);
	return error;
}

/* ---- canonical query --------------------------------------------------- */

typedef struct query_param {
	char *key;   /* encoded */
	char *value; /* encoded */
} query_param;

static int cmp_param(const void *a, const void *b)
{
	const query_param *x = a, *y = b;
	int c = strcmp(x->key, y->key);
	return c ? c : strcmp(x->value, y->value);
}

/* decode then encode again, so that "%7E" and "~" sign alike */
static char *reencode(const char *s, size_t len)
{
	kiln_buf dec = KILN_BUF_INIT, enc = KILN_BUF_INIT;
	char *r = NULL;

	if (uri_decode(&dec, s, len) == 0 && kiln_sigv4_uri_encode(&enc, dec.ptr, dec.len, false) == 0)
		r = kiln_buf_detach(&enc);
	kiln_buf_release(&dec);
	kiln_buf_release(&enc);
	if (!r)
		kiln_error_set(KILN_ENOMEM, "out of memory");
	return r;
}

static int canonical_query(kiln_buf *out, const char *query)
{
	query_param *params = NULL;
	size_t n = 0, cap = 0, i;
	const char *p = query;
	int error = 0;

	if (!query || !*query)
		return 0;
	while (*p) {
		const char *amp = strchr(p, '&'), *end = amp ? amp : p + strlen(p), *eq;
		if (end > p) {
			if (n == cap) {
				size_t ncap = cap ? cap * 2 : 16;
				query_param *np = realloc(params, ncap * sizeof(*np));
				if (!np) {
					error = kiln_error_set(KILN_ENOMEM, "out of memory");
					goto done;
				}
				params = np;
				cap = ncap;
			}
			eq = memchr(p, '=', (size_t)(end - p));
			params[n].key = reencode(p, (size_t)((eq ? eq : end) - p));
			params[n].value = eq ? reencode(eq + 1, (size_t)(end - eq - 1)) : kiln_strdup("");
			n++;
			if (!params[n - 1].key || !params[n - 1].value) {
				error = KILN_ENOMEM;
				goto done;
			}
		}
		p = amp ? amp + 1 : end;
	}
	if (n)
		qsort(params, n, sizeof(*params), cmp_param);
	for (i = 0; i < n && error == 0; i++)
		error = kiln_buf_printf(out, "%s%s=%s", i ? "&" : "", params[i].key, params[i].value);
done:
	for (i = 0; i < n; i++) {
		free(params[i].key);
		free(params[i].value);
	}
	free(params);
	return error;
}

/* ---- canonical headers ------------------------------------------------- */

typedef struct canon_header {
	char *name;  /* lowercased */
	char *value; /* trimmed, white space runs folded to one space */
	size_t order;
} canon_header;

static int cmp_header(const void *a, const void *b)
{
	const canon_header *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	if (c)
		return c;
	return x->order < y->order ? -1 : x->order > y->order;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* RFC 7230 token characters: what a header name may hold. */
static bool is_tchar(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int add_header(canon_header *h, size_t order, const char *name, const char *value)
{
	kiln_buf v = KILN_BUF_INIT;
	size_t i, n = strlen(name);
	bool pending_space = false;
	int error;

	h->order = order;
	h->value = NULL;
	if (!(h->name = kiln_strdup(name)))
		return KILN_ENOMEM;
	for (i = 0; i < n; i++)
		if (h->name[i] >= 'A' && h->name[i] <= 'Z')
			h->name[i] = (char)(h->name[i] - 'A' + 'a');
	for (; value && *value; value++) {
		if (is_space(*value)) {
			pending_space = v.len > 0;
			continue;
		}
		if (pending_space && (error = kiln_buf_putc(&v, ' ')) < 0)
			goto fail;
		pending_space = false;
		if ((error = kiln_buf_putc(&v, *value)) < 0)
			goto fail;
	}
	if (!(h->value = kiln_buf_detach(&v)))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	return 0;
fail:
	kiln_buf_release(&v);
	return error;
}

static bool is_reserved_header(const char *name)
{
	static const char *const reserved[] = { "host", "x-amz-date", "authorization",
						"x-amz-security-token" };
	size_t i;
	for (i = 0; i < KILN_ARRAY_SIZE(reserved); i++)
		if (strcasecmp(name, reserved[i]) == 0)
			return true;
	return false;
}

static int check_header_name(const char *name)
{
	const char *p;
	if (!name || !*name)
		return kiln_error_set(KILN_EINVALID, "cannot sign a header with an empty name");
	for (p = name; *p; p++)
		if (!is_tchar((unsigned char)*p))
			return kiln_error_set(KILN_EINVALID, "cannot sign header '%s': bad character in its name", name);
	if (is_reserved_header(name))
		return kiln_error_set(KILN_EINVALID, "cannot sign header '%s': the signer sets it", name);
	return 0;
}

/* Appends "name:value\n" lines to canon and "name;name" to signed_names. */
static int canonical_headers(kiln_buf *canon, kiln_buf *signed_names, const kiln_sigv4_request *req,
			     const char *amz_date, const char *token, const char *content_sha)
{
	size_t n = 0, i, max = req->n_headers + 4;
	canon_header *h = calloc(max, sizeof(*h));
	int error = 0;

	if (!h)
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	for (i = 0; i < req->n_headers; i++) {
		if ((error = check_header_name(req->headers[i].name)) < 0)
			goto done;
		if (content_sha && strcasecmp(req->headers[i].name, "x-amz-content-sha256") == 0) {
			error = kiln_error_set(KILN_EINVALID, "cannot sign header '%s': the signer sets it",
					       req->headers[i].name);
			goto done;
		}
		if ((error = add_header(&h[n], n, req->headers[i].name, req->headers[i].value)) < 0)
			goto done;
		n++;
	}
	if ((error = add_header(&h[n], n, "host", req->host)) < 0)
		goto done;
	n++;
	if ((error = add_header(&h[n], n, "x-amz-date", amz_date)) < 0)
		goto done;
	n++;
	if (token) {
		if ((error = add_header(&h[n], n, "x-amz-security-token", token)) < 0)
			goto done;
		n++;
	}
	if (content_sha) {
		if ((error = add_header(&h[n], n, "x-amz-content-sha256", content_sha)) < 0)
			goto done;
		n++;
	}
	qsort(h, n, sizeof(*h), cmp_header);
	for (i = 0; i < n && error == 0; i++) {
		bool first = i == 0 || strcmp(h[i].name, h[i - 1].name) != 0;
		bool last = i + 1 == n || strcmp(h[i].name, h[i + 1].name) != 0;
		if (first) {
			error = kiln_buf_printf(canon, "%s:%s", h[i].name, h[i].value);
			if (error == 0)
				error = kiln_buf_printf(signed_names, "%s%s", i ? ";" : "", h[i].name);
		} else {
			error = kiln_buf_printf(canon, ",%s", h[i].value);
		}
		if (error == 0 && last)
			error = kiln_buf_putc(canon, '\n');
	}
done:
	/* calloc'd: entries never filled (or half filled by a failure) are NULL */
	for (i = 0; i < max; i++) {
		free(h[i].name);
		if (h[i].value) {
			OPENSSL_cleanse(h[i].value, strlen(h[i].value));
			free(h[i].value);
		}
	}
	free(h);
	return error;
}

/* ---- the signature ----------------------------------------------------- */

int kiln_sigv4_sign(kiln_sigv4_result *out, const kiln_sigv4_request *req,
		    const kiln_aws_credentials *creds)
{
	kiln_buf signed_names = KILN_BUF_INIT;
	char date[9], scope[256], cr_hash[65], *payload_hash = out->content_sha256;
	kiln_buf *cr = &out->canonical_request;
	const char *token;
	struct tm tm;
	time_t t;
	int error = -1, n;

	kiln_buf_reset(&out->canonical_request);
	kiln_buf_reset(&out->string_to_sign);
	out->amz_date[0] = out->authorization[0] = out->signature[0] = '\0';

	if (!req->method || !*req->method || !req->host || !*req->host || !req->region ||
	    !*req->region || !req->service || !*req->service)
		return kiln_error_set(KILN_EINVALID, "cannot sign a request without method, host, region and service");
	if (!creds || !creds->access_key_id || !*creds->access_key_id || !creds->secret_access_key ||
	    !*creds->secret_access_key)
		return kiln_error_set(KILN_EAUTH, "cannot sign a request without an access key and a secret");
	if (req->n_headers && !req->headers)
		return kiln_error_set(KILN_EINVALID, "cannot sign: headers missing");
	if (req->body_len && !req->body)
		return kiln_error_set(KILN_EINVALID, "cannot sign: body missing");

	t = (time_t)req->time;
	if (req->time < 0 || !gmtime_r(&t, &tm) ||
	    strftime(out->amz_date, sizeof(out->amz_date), "%Y%m%dT%H%M%SZ", &tm) != 16)
		return kiln_error_set(KILN_EINVALID, "cannot sign: bad request time %lld",
				      (long long)req->time);
	memcpy(date, out->amz_date, 8);
	date[8] = '\0';
	n = snprintf(scope, sizeof(scope), "%s/%s/%s/aws4_request", date, req->region, req->service);
	if (n < 0 || (size_t)n >= sizeof(scope))
		return kiln_error_set(KILN_EINVALID, "cannot sign: region '%s' or service '%s' too long",
				      req->region, req->service);

	if ((error = sha256_hex(payload_hash, req->body, req->body_len)) < 0)
		goto done;
	token = creds->session_token && *creds->session_token && !req->omit_session_token
			? creds->session_token : NULL;

	if ((error = kiln_buf_printf(cr, "%s\n", req->method)) < 0 ||
	    (error = canonical_path(cr, req->path, !req->no_normalize_path)) < 0 ||
	    (error = kiln_buf_putc(cr, '\n')) < 0 ||
	    (error = canonical_query(cr, req->query)) < 0 ||
	    (error = kiln_buf_putc(cr, '\n')) < 0 ||
	    (error = canonical_headers(cr, &signed_names, req, out->amz_date, token,
				       req->sign_content_sha256 ? payload_hash : NULL)) < 0 ||
	    (error = kiln_buf_printf(cr, "\n%s\n%s", signed_names.ptr, payload_hash)) < 0)
		goto done;

	if ((error = sha256_hex(cr_hash, cr->ptr, cr->len)) < 0 ||
	    (error = kiln_buf_printf(&out->string_to_sign, SIGV4_ALGORITHM "\n%s\n%s\n%s",
				     out->amz_date, scope, cr_hash)) < 0)
		goto done;
	if ((error = compute_signature(out->signature, creds->secret_access_key, date, req->region,
				       req->service, &out->string_to_sign)) < 0)
		goto done;

	n = snprintf(out->authorization, sizeof(out->authorization),
		     SIGV4_ALGORITHM " Credential=%s/%s, SignedHeaders=%s, Signature=%s",
		     creds->access_key_id, scope, signed_names.ptr, out->signature);
	if (n < 0 || (size_t)n >= sizeof(out->authorization)) {
		out->authorization[0] = '\0';
		error = kiln_error_set(KILN_EINVALID, "cannot sign: the authorization header would pass %zu bytes",
				       sizeof(out->authorization) - 1);
		goto done;
	}
	error = 0;
done:
	if (error < 0) {
		wipe_buf(&out->canonical_request);
		out->signature[0] = out->authorization[0] = '\0';
	}
	kiln_buf_release(&signed_names);
	return error;
}
