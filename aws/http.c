#include <curl/curl.h>
#include <jansson.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

#include "aws/credentials.h"
#include "aws/http.h"
#include "aws/ratelimit.h"
#include "aws/xml.h"
#include "core/clock.h"
#include "core/error.h"

/* More than this between our clock and the service's Date is skew (AWS allows 5 min). */
#define SKEW_THRESHOLD_S 240

static const char *const service_names[KILN_AWS_SERVICE_COUNT] = {
	[KILN_AWS_EC2] = "ec2",
	[KILN_AWS_ELBV2] = "elbv2",
	[KILN_AWS_ELB] = "elb",
	[KILN_AWS_SSM] = "ssm",
	[KILN_AWS_STS] = "sts",
};

static const char *service_name(kiln_aws_service s)
{
	return (unsigned)s < KILN_AWS_SERVICE_COUNT ? service_names[s] : "aws";
}

/* ---- the retry policy -------------------------------------------------------- */

/*
 * botocore's ThrottledRetryableChecker (retries/standard.py) and the EC2
 * and SQS entries of _retry.json: the union of the codes AWS services use
 * to say "slow down".
 */
static const char *const throttle_codes[] = {
	"Throttling",
	"ThrottlingException",
	"ThrottledException",
	"RequestThrottledException",
	"TooManyRequestsException",
	"ProvisionedThroughputExceededException",
	"TransactionInProgressException",
	"RequestLimitExceeded",
	"BandwidthLimitExceeded",
	"LimitExceededException",
	"RequestThrottled",
	"SlowDown",
	"PriorRequestNotComplete",
	"EC2ThrottledException",
};

/* botocore's TransientRetryableChecker, plus the 5xx codes EC2 and ELB name. */
static const char *const transient_codes[] = {
	"RequestTimeout",
	"RequestTimeoutException",
	"PriorRequestNotComplete",
	"InternalError",
	"InternalFailure",
	"ServiceUnavailable",
	"Unavailable",
	"InternalServerError",
};

/*
 * The codes a signature made with a skewed clock earns (the Java and JS
 * SDKs' lists); acted on only when the reply's Date shows the skew.
 */
static const char *const skew_codes[] = {
	"RequestTimeTooSkewed",
	"RequestExpired",
	"RequestInTheFuture",
	"InvalidSignatureException",
	"SignatureDoesNotMatch",
	"AuthFailure",
};

static bool in_list(const char *const *list, size_t n, const char *code)
{
	size_t i;
	if (!code || !*code)
		return false;
	for (i = 0; i < n; i++)
		if (!strcmp(list[i], code))
			return true;
	return false;
}

bool kiln_aws_is_throttle_code(const char *code)
{
	return in_list(throttle_codes, KILN_ARRAY_SIZE(throttle_codes), code);
}

bool kiln_aws_is_transient_code(const char *code)
{
	return in_list(transient_codes, KILN_ARRAY_SIZE(transient_codes), code);
}

bool kiln_aws_is_skew_code(const char *code)
{
	return in_list(skew_codes, KILN_ARRAY_SIZE(skew_codes), code);
}

kiln_aws_retry_kind kiln_aws_retry_classify(int transport_error, const kiln_aws_fault *fault)
{
	if (transport_error == KILN_ETIMEOUT)
		return KILN_AWS_RETRY_TIMEOUT;
	if (transport_error == KILN_ETRANSIENT)
		return KILN_AWS_RETRY_TRANSIENT;
	if (transport_error < 0 || !fault)
		return KILN_AWS_RETRY_NONE;
	if (fault->http_status >= 200 && fault->http_status < 300)
		return KILN_AWS_RETRY_NONE;
	if (kiln_aws_is_throttle_code(fault->code) || fault->http_status == 429 ||
	    fault->http_status == 509)
		return KILN_AWS_RETRY_THROTTLE;
	if (kiln_aws_is_transient_code(fault->code))
		return KILN_AWS_RETRY_TRANSIENT;
	switch (fault->http_status) {
	case 500: case 502: case 503: case 504:
		return KILN_AWS_RETRY_TRANSIENT;
	default:
		return KILN_AWS_RETRY_NONE;
	}
}

uint64_t kiln_aws_backoff_ms(unsigned attempt, double r)
{
	uint64_t ceiling = KILN_AWS_MAX_BACKOFF_MS;
	if (attempt < 1)
		attempt = 1;
	/* 2^(attempt-1) seconds, capped before it can overflow */
	if (attempt <= 15)
		ceiling = KILN_MIN((uint64_t)1000 << (attempt - 1), (uint64_t)KILN_AWS_MAX_BACKOFF_MS);
	if (r < 0)
		r = 0;
	if (r >= 1)
		r = 0.999999;
	return (uint64_t)(r * (double)ceiling);
}

int kiln_aws_error_code(const char *code, int http_status)
{
	static const char *const auth[] = {
		"AuthFailure", "SignatureDoesNotMatch", "InvalidClientTokenId",
		"UnrecognizedClient", "UnrecognizedClientException", "IncompleteSignature",
		"IncompleteSignatureException", "MissingAuthenticationToken",
		"MissingAuthenticationTokenException", "InvalidSignatureException",
		"ExpiredToken", "ExpiredTokenException", "RequestExpired", "InvalidAccessKeyId",
		"UnauthorizedOperation", "AccessDenied", "AccessDeniedException",
		"OptInRequired", "Blocked",
	};
	static const char *const conflict[] = {
		"InvalidKeyPair.Duplicate", "InvalidGroup.Duplicate", "ParameterAlreadyExists",
		"InvalidAMIName.Duplicate", "InvalidPermission.Duplicate", "DuplicateTargetGroupName",
		"DuplicateLoadBalancerName", "IdempotentParameterMismatch",
	};
	static const char *const invalid[] = {
		"InvalidParameterValue", "InvalidParameterCombination", "InvalidParameter",
		"MissingParameter", "ValidationError", "ValidationException", "InvalidInput",
		"UnknownParameter", "InvalidQueryParameter", "MalformedQueryString",
		"InvalidInstanceID.Malformed", "InvalidAMIID.Malformed", "InvalidGroupId.Malformed",
		"InvalidSubnetID.Malformed", "InvalidKeyPair.Format", "HierarchyLevelLimitExceededException",
		"ParameterPatternMismatchException", "ParameterMaxVersionLimitExceeded",
		"InvalidAction", "UnsupportedOperation",
	};
	size_t n;

	if (!code || !*code) {
		if (http_status == 401 || http_status == 403)
			return KILN_EAUTH;
		if (http_status == 404)
			return KILN_ENOTFOUND;
		return KILN_ERROR;
	}
	if (in_list(auth, KILN_ARRAY_SIZE(auth), code))
		return KILN_EAUTH;
	if (in_list(conflict, KILN_ARRAY_SIZE(conflict), code))
		return KILN_ECONFLICT;
	if (in_list(invalid, KILN_ARRAY_SIZE(invalid), code))
		return KILN_EINVALID;
	if (kiln_aws_is_throttle_code(code))
		return KILN_ETHROTTLED;
	if (kiln_aws_is_transient_code(code))
		return KILN_ETRANSIENT;
	/* InvalidInstanceID.NotFound, ParameterNotFound, TargetGroupNotFound, InvalidAMIID.Unavailable ... */
	n = strlen(code);
	if ((n > 8 && !strcmp(code + n - 8, "NotFound")) ||
	    (n > 17 && !strcmp(code + n - 17, "NotFoundException")) ||
	    !strcmp(code, "InvalidAMIID.Unavailable") || !strcmp(code, "InvalidInstance"))
		return KILN_ENOTFOUND;
	return KILN_ERROR;
}

int kiln_http_date_parse(int64_t *out, const char *s)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	struct tm tm = { 0 };
	char wday[4], mon[4], zone[4];
	const char *m;
	time_t t;
	int n = 0;

	/* IMF-fixdate, RFC 7231 7.1.1.1: "Sun, 06 Nov 1994 08:49:37 GMT" */
	if (!s || sscanf(s, "%3s, %2d %3s %4d %2d:%2d:%2d %3s%n", wday, &tm.tm_mday, mon,
			 &tm.tm_year, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, zone, &n) != 8 ||
	    s[n] != '\0' || strcmp(zone, "GMT") || strlen(mon) != 3 || !(m = strstr(months, mon)) ||
	    (m - months) % 3)
		return KILN_EINVALID;
	tm.tm_mon = (int)(m - months) / 3;
	tm.tm_year -= 1900;
	if (tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
		return KILN_EINVALID;
	if ((t = timegm(&tm)) == (time_t)-1)
		return KILN_EINVALID;
	*out = (int64_t)t;
	return 0;
}

/* ---- the libcurl transport ------------------------------------------------------ */

struct curl_transport {
	CURL *handles[KILN_AWS_SERVICE_COUNT + 1]; /* one per service, + one for plain GETs */
};

struct curl_call {
	kiln_aws_wire_reply *reply;
	bool too_big;
};

/*
 * A request is a wait too: SIGINT/SIGTERM abort it (libcurl calls this about
 * once a second while idle), unless a cleanup shield is up. What an aborted
 * create may have made carries kiln's tags, so cleanup can still find it.
 */
static int on_progress(void *ctx, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	(void)ctx;
	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return kiln_sleep_ms(0) < 0 ? 1 : 0;
}

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
	struct curl_call *call = ctx;
	size_t len = size * n;
	if (kiln_buf_put(&call->reply->body, data, len) < 0) {
		call->too_big = true;
		return 0; /* CURLE_WRITE_ERROR */
	}
	return len;
}

/* Copies a header's value (trimmed) into out if the line is that header. */
static bool header_value(const char *line, size_t len, const char *name, char *out, size_t size)
{
	size_t n = strlen(name), end;
	if (len <= n || strncasecmp(line, name, n) || line[n] != ':')
		return false;
	line += n + 1;
	len -= n + 1;
	while (len && (*line == ' ' || *line == '\t')) {
		line++;
		len--;
	}
	end = len;
	while (end && (line[end - 1] == '\r' || line[end - 1] == '\n' || line[end - 1] == ' '))
		end--;
	snprintf(out, size, "%.*s", (int)KILN_MIN(end, size - 1), line);
	return true;
}

static size_t on_header(char *data, size_t size, size_t n, void *ctx)
{
	struct curl_call *call = ctx;
	kiln_aws_wire_reply *r = call->reply;
	size_t len = size * n;

	if (len >= 5 && !memcmp(data, "HTTP/", 5)) {
		/* a new status line (after a 100 Continue): forget what came before */
		r->date[0] = r->request_id[0] = r->error_type[0] = '\0';
		return len;
	}
	if (!header_value(data, len, "Date", r->date, sizeof(r->date)) &&
	    !header_value(data, len, "x-amzn-RequestId", r->request_id, sizeof(r->request_id)) &&
	    !header_value(data, len, "x-amz-request-id", r->request_id, sizeof(r->request_id)))
		header_value(data, len, "x-amzn-ErrorType", r->error_type, sizeof(r->error_type));
	return len;
}

static int curl_send(void *ctx, const kiln_aws_wire_request *req, kiln_aws_wire_reply *reply,
		     bool *maybe_sent)
{
	struct curl_transport *t = ctx;
	struct curl_slist *headers = NULL, *h;
	struct curl_call call = { reply, false };
	char errbuf[CURL_ERROR_SIZE] = "";
	unsigned slot = (unsigned)req->service < KILN_AWS_SERVICE_COUNT ? (unsigned)req->service
									   : KILN_AWS_SERVICE_COUNT;
	CURL *curl;
	CURLcode rc;
	curl_off_t connect_us = 0;
	long status = 0;
	size_t i;
	int error = KILN_ERROR;

	*maybe_sent = true;
	if (!t->handles[slot] && !(t->handles[slot] = curl_easy_init()))
		return kiln_error_set(KILN_ENOMEM, "cannot create a libcurl handle");
	curl = t->handles[slot];
	/* reset keeps the handle's live connections, so keep-alive still works */
	curl_easy_reset(curl);

	for (i = 0; i < req->n_headers; i++) {
		char line[2048];
		snprintf(line, sizeof(line), "%s: %s", req->headers[i].name, req->headers[i].value);
		if (!(h = curl_slist_append(headers, line)))
			goto oom;
		headers = h;
	}
	/* no "Expect: 100-continue" round trip for a body we send whole */
	if (!(h = curl_slist_append(headers, "Expect:")))
		goto oom;
	headers = h;

	curl_easy_setopt(curl, CURLOPT_URL, req->url);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
	if (req->ca_bundle)
		curl_easy_setopt(curl, CURLOPT_CAINFO, req->ca_bundle);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)req->connect_timeout_ms);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)req->timeout_ms);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &call);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, &call);
	curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &call);
	if (req->fresh_connection)
		curl_easy_setopt(curl, CURLOPT_FRESH_CONNECT, 1L);
	if (!strcmp(req->method, "POST") || !strcmp(req->method, "PUT")) {
		curl_easy_setopt(curl, CURLOPT_POST, 1L);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req->body ? req->body : "");
		/* IMDSv2's token is a PUT with an empty body */
		if (!strcmp(req->method, "PUT"))
			curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "PUT");
	} else {
		curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
	}

	rc = curl_easy_perform(curl);
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(curl, CURLINFO_CONNECT_TIME_T, &connect_us);
	/* no secret in errbuf: curl names the host and the failure, never headers */
	if (!errbuf[0])
		snprintf(errbuf, sizeof(errbuf), "%s", curl_easy_strerror(rc));
	switch (rc) {
	case CURLE_OK:
		reply->status = (int)status;
		error = 0;
		break;
	case CURLE_WRITE_ERROR:
		error = call.too_big ? kiln_error_set(KILN_ENOMEM, "the reply from '%s' is larger than %zu bytes",
						      req->url, reply->body.max)
				     : kiln_error_set(KILN_ERROR, "%s", errbuf);
		break;
	case CURLE_ABORTED_BY_CALLBACK:
		error = kiln_error_set(KILN_ECANCELLED, "interrupted while waiting for '%s'", req->url);
		break;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
		*maybe_sent = false;
		error = kiln_error_set(KILN_ETRANSIENT, "cannot connect to '%s': %s", req->url, errbuf);
		break;
	case CURLE_OPERATION_TIMEDOUT:
		*maybe_sent = connect_us > 0;
		error = kiln_error_set(KILN_ETIMEOUT, "no reply from '%s' in time: %s", req->url, errbuf);
		break;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		error = kiln_error_set(KILN_ETRANSIENT, "connection to '%s' failed: %s", req->url, errbuf);
		break;
	default:
		/* TLS verification, bad URL, unsupported protocol: retrying will not help */
		*maybe_sent = false;
		error = kiln_error_set(KILN_ERROR, "request to '%s' failed: %s", req->url, errbuf);
		break;
	}
	curl_slist_free_all(headers);
	/* the handle must not keep pointers to our stack */
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, NULL);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
	return error;
oom:
	curl_slist_free_all(headers);
	return kiln_error_set(KILN_ENOMEM, "out of memory");
}

static void curl_transport_free(struct curl_transport *t)
{
	size_t i;
	if (!t)
		return;
	for (i = 0; i < KILN_ARRAY_SIZE(t->handles); i++)
		if (t->handles[i])
			curl_easy_cleanup(t->handles[i]);
	free(t);
}

/* ---- the client ------------------------------------------------------------------- */

struct endpoint {
	char *url;  /* as configured, with a path ("/" if it had none) */
	char *host; /* the Host header: host, plus ":port" when not the scheme's default */
};

struct kiln_aws_client {
	const kiln_aws_config *cfg;
	kiln_aws_client_options opts;
	kiln_aws_transport transport;
	struct curl_transport *own; /* when the transport is libcurl */
	struct endpoint endpoints[KILN_AWS_SERVICE_COUNT];
	int quota;
	int64_t skew_s;
	uint64_t rng;
	kiln_aws_counter *counters;
	size_t n_counters;
	kiln_aws_ratelimit *ratelimit; /* NULL: none; borrowed */
};

static int endpoint_parse(struct endpoint *ep, const char *url)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL;
	int error = KILN_EINVALID;

	if (!u)
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		error = kiln_error_set(KILN_EINVALID, "endpoint '%s' is not a URL", url);
		goto done;
	}
	if (strcmp(scheme, "http") && strcmp(scheme, "https")) {
		error = kiln_error_set(KILN_EINVALID, "endpoint '%s' is not http or https", url);
		goto done;
	}
	curl_url_get(u, CURLUPART_PORT, &port, 0);
	curl_url_get(u, CURLUPART_PATH, &path, 0);
	if (port && ((!strcmp(scheme, "http") && !strcmp(port, "80")) ||
		     (!strcmp(scheme, "https") && !strcmp(port, "443")))) {
		curl_free(port);
		port = NULL;
	}
	ep->host = port ? kiln_strdupf("%s:%s", host, port) : kiln_strdup(host);
	ep->url = kiln_strdupf("%s://%s%s", scheme, ep->host ? ep->host : "",
			       path && *path ? path : "/");
	error = ep->host && ep->url ? 0 : KILN_ENOMEM;
done:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_url_cleanup(u);
	return error;
}

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64*: jitter needs no cryptographic strength, only spread */
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static double jitter(kiln_aws_client *c)
{
	if (c->opts.random)
		return c->opts.random(c->opts.random_ctx);
	return (double)(rng_next(&c->rng) >> 11) / (double)(1ULL << 53);
}

static unsigned max_attempts_from_env(void)
{
	const char *s = getenv("AWS_MAX_ATTEMPTS");
	int64_t v;
	if (s && *s && kiln_parse_i64(&v, s, 1, 100) == 0)
		return (unsigned)v;
	return 3;
}

int kiln_aws_client_new(kiln_aws_client **out, const kiln_aws_config *cfg,
			const kiln_aws_client_options *opts)
{
	static bool curl_ready;
	kiln_aws_client *c;
	size_t i;
	int error;

	*out = NULL;
	if (!(c = calloc(1, sizeof(*c))))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	c->cfg = cfg;
	if (opts)
		c->opts = *opts;
	if (!c->opts.max_attempts)
		c->opts.max_attempts = max_attempts_from_env();
	if (!c->opts.connect_timeout_ms)
		c->opts.connect_timeout_ms = 10000;
	if (!c->opts.timeout_ms)
		c->opts.timeout_ms = 60000;
	c->quota = KILN_AWS_RETRY_QUOTA;
	c->ratelimit = c->opts.ratelimit;
	/* only EC2 is limited: a client without an EC2 endpoint (IMDS's) needs no buckets */
	if (!c->ratelimit && cfg->endpoints[KILN_AWS_EC2] &&
	    (error = kiln_aws_ratelimit_shared(&c->ratelimit, cfg->region)) < 0) {
		free(c);
		return error;
	}
	if (getrandom(&c->rng, sizeof(c->rng), GRND_NONBLOCK) != (ssize_t)sizeof(c->rng))
		c->rng = (uint64_t)kiln_clock_wall_ms() ^ ((uint64_t)getpid() << 32);
	if (!c->rng)
		c->rng = 0x9E3779B97F4A7C15ULL;

	if (c->opts.transport) {
		c->transport = *c->opts.transport;
	} else {
		if (!curl_ready) {
			if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
				free(c);
				return kiln_error_set(KILN_ERROR, "cannot initialise libcurl");
			}
			curl_ready = true;
		}
		if (!(c->own = calloc(1, sizeof(*c->own)))) {
			free(c);
			return kiln_error_set(KILN_ENOMEM, "out of memory");
		}
		c->transport.send = curl_send;
		c->transport.ctx = c->own;
	}
	for (i = 0; i < KILN_AWS_SERVICE_COUNT; i++) {
		if (!cfg->endpoints[i])
			continue;
		if ((error = endpoint_parse(&c->endpoints[i], cfg->endpoints[i])) < 0) {
			kiln_aws_client_free(c);
			return error;
		}
	}
	*out = c;
	return 0;
}

void kiln_aws_client_free(kiln_aws_client *c)
{
	size_t i;
	if (!c)
		return;
	for (i = 0; i < KILN_AWS_SERVICE_COUNT; i++) {
		free(c->endpoints[i].url);
		free(c->endpoints[i].host);
	}
	curl_transport_free(c->own);
	free(c->counters);
	free(c);
}

const kiln_aws_config *kiln_aws_client_config(const kiln_aws_client *c)
{
	return c->cfg;
}

const char *kiln_aws_client_endpoint(const kiln_aws_client *c, kiln_aws_service service)
{
	if ((unsigned)service >= KILN_AWS_SERVICE_COUNT || !c->endpoints[service].url)
		return "";
	return c->endpoints[service].url;
}

const kiln_aws_counter *kiln_aws_client_counters(const kiln_aws_client *c, size_t *n)
{
	*n = c->n_counters;
	return c->counters;
}

int kiln_aws_client_quota(const kiln_aws_client *c)
{
	return c->quota;
}

int64_t kiln_aws_client_skew_s(const kiln_aws_client *c)
{
	return c->skew_s;
}

static kiln_aws_counter *counter_for(kiln_aws_client *c, kiln_aws_service s, const char *action)
{
	char name[80];
	kiln_aws_counter *p;
	size_t i;

	snprintf(name, sizeof(name), "%s:%s", service_name(s), action);
	for (i = 0; i < c->n_counters; i++)
		if (!strcmp(c->counters[i].name, name))
			return &c->counters[i];
	if (!(p = realloc(c->counters, (c->n_counters + 1) * sizeof(*p))))
		return NULL;
	c->counters = p;
	p = &c->counters[c->n_counters++];
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", name);
	return p;
}

/* The JSON protocol's error: {"__type": "com.amazonaws.ssm#ParameterNotFound", "message": ...}. */
static void json_fault(kiln_aws_fault *f, const kiln_aws_wire_reply *r)
{
	json_t *doc = json_loadb(r->body.ptr, r->body.len, 0, NULL);
	const char *type = json_string_value(json_object_get(doc, "__type"));
	const char *msg = json_string_value(json_object_get(doc, "message"));
	const char *hash;
	size_t i;

	if (!msg)
		msg = json_string_value(json_object_get(doc, "Message"));
	if (!type && r->error_type[0])
		type = r->error_type; /* "ParameterNotFound:http://internal.amazon.com/..." */
	if (type) {
		if ((hash = strrchr(type, '#')))
			type = hash + 1;
		snprintf(f->code, sizeof(f->code), "%.*s", (int)strcspn(type, ":"), type);
		/* a code is a word ("ParameterNotFound"); the peer's other bytes stay out of messages */
		for (i = 0; f->code[i]; i++)
			if ((unsigned char)f->code[i] <= ' ' || (unsigned char)f->code[i] >= 0x7f)
				f->code[i] = '?';
	}
	if (msg) {
		snprintf(f->message, sizeof(f->message), "%s", msg);
		for (i = 0; f->message[i]; i++)
			if (f->message[i] == '\n' || f->message[i] == '\r')
				f->message[i] = ' ';
	}
	json_decref(doc);
}

/* What a non-AWS error body says, for the message: an HTML <title>, else its first line. */
static void body_hint(char *out, size_t size, const kiln_buf *body)
{
	const char *p = body->ptr, *end;
	const char *t = strstr(p, "<title>");
	size_t i, n = 0;

	if (t && (end = strstr(t, "</title>"))) {
		p = t + 7;
	} else {
		while (*p == ' ' || *p == '\n' || *p == '\r')
			p++;
		end = p + strcspn(p, "\r\n");
	}
	for (i = 0; p + i < end && n + 1 < size && n < 80; i++) {
		unsigned char ch = (unsigned char)p[i];
		out[n++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	out[n] = '\0';
}

static void fault_from_reply(kiln_aws_fault *f, kiln_aws_protocol protocol,
			     const kiln_aws_wire_reply *r)
{
	memset(f, 0, sizeof(*f));
	f->http_status = r->status;
	if (protocol == KILN_AWS_JSON)
		json_fault(f, r);
	/* XML for Query services, and what moto sends SSM callers whose signature it refuses */
	if (!f->code[0])
		kiln_xml_parse_fault(f, r->body.ptr, r->body.len);
	if (!f->request_id[0])
		snprintf(f->request_id, sizeof(f->request_id), "%s", r->request_id);
}

/* Sets the error for a reply that failed for good. */
static int fail_fault(const kiln_aws_request *req, const kiln_aws_fault *f,
		      const kiln_aws_wire_reply *r, kiln_aws_retry_kind kind, unsigned attempts)
{
	const char *svc = service_name(req->service);
	char after[64] = "", hint[96];
	int code = kiln_aws_error_code(f->code, f->http_status);

	if (kind != KILN_AWS_RETRY_NONE) {
		snprintf(after, sizeof(after), ", after %u attempt%s", attempts, attempts == 1 ? "" : "s");
		code = kind == KILN_AWS_RETRY_THROTTLE ? KILN_ETHROTTLED : KILN_ETRANSIENT;
	}
	if (!f->code[0]) {
		body_hint(hint, sizeof(hint), &r->body);
		return kiln_error_set_cloud(code, f->http_status, "", f->request_id,
					    "%s %s: HTTP %d with a body that is not an AWS error%s%s%s%s",
					    svc, req->action, f->http_status, hint[0] ? " ('" : "", hint,
					    hint[0] ? "')" : "", after);
	}
	if (!strcmp(f->code, "UnauthorizedOperation") || !strcmp(f->code, "AccessDenied") ||
	    !strcmp(f->code, "AccessDeniedException")) {
		/* EC2 appends a long encoded blob that helps no one reading a terminal */
		char msg[sizeof(f->message)];
		char *cut;
		snprintf(msg, sizeof(msg), "%s", f->message);
		if ((cut = strstr(msg, " Encoded authorization failure message")))
			*cut = '\0';
		return kiln_error_set_cloud(KILN_EAUTH, f->http_status, f->code, f->request_id,
					    "%s %s: the credentials in use are not allowed to call %s:%s: %s (%s)",
					    svc, req->action,
					    kiln_aws_service_signing_name(req->service), req->action,
					    msg[0] ? msg : "access denied", f->code);
	}
	if (code == KILN_EAUTH)
		return kiln_error_set_cloud(code, f->http_status, f->code, f->request_id,
					    "%s %s: AWS rejected the credentials: %s (%s)", svc,
					    req->action, f->message[0] ? f->message : "no message",
					    f->code);
	return kiln_error_set_cloud(code, f->http_status, f->code, f->request_id, "%s %s: %s (%s%s)",
				    svc, req->action, f->message[0] ? f->message : "failed", f->code,
				    after);
}

static void emit_retry(kiln_aws_client *c, const kiln_aws_request *req, unsigned attempt,
		       uint64_t delay_ms, const char *why)
{
	if (!c->opts.events)
		return;
	kiln_emit(c->opts.events, "info", KILN_LEVEL_DEBUG,
		  json_pack("{s:s,s:s,s:i,s:I,s:s}", "service", service_name(req->service), "action",
			    req->action, "attempt", (int)attempt + 1, "delay_ms", (json_int_t)delay_ms,
			    "reason", why),
		  "%s %s: %s; retrying in %llu ms (attempt %u of %u)", service_name(req->service),
		  req->action, why, (unsigned long long)delay_ms, attempt + 1, c->opts.max_attempts);
}

static kiln_aws_creds_provider *provider_of(const kiln_aws_client *c)
{
	return c->opts.credentials ? c->opts.credentials : c->cfg->provider;
}

void kiln_aws_client_credential_source(kiln_aws_client *c, char *out, size_t size)
{
	kiln_aws_creds_provider *p = provider_of(c);
	if (p)
		kiln_aws_creds_describe(p, out, size);
	else
		snprintf(out, size, "%s", c->cfg->credentials.source);
}

static int sign_and_send(kiln_aws_client *c, const kiln_aws_request *req, const struct endpoint *ep,
			 kiln_aws_wire_reply *reply, bool *maybe_sent)
{
	const kiln_aws_credentials *creds = &c->cfg->credentials;
	kiln_aws_creds_provider *provider = provider_of(c);
	kiln_aws_credentials fresh = { 0 };
	bool sign = !(req->flags & KILN_AWS_UNSIGNED);
	kiln_http_header sign_h[2], wire[8];
	kiln_sigv4_request sr = { 0 };
	kiln_sigv4_result res;
	kiln_aws_wire_request wr = { 0 };
	char target[160];
	size_t ns = 0, nw = 0;
	int error;

	sign_h[ns++] = (kiln_http_header){ "Content-Type",
					   req->protocol == KILN_AWS_JSON
						   ? "application/x-amz-json-1.1"
						   : "application/x-www-form-urlencoded; charset=utf-8" };
	if (req->protocol == KILN_AWS_JSON) {
		snprintf(target, sizeof(target), "%s.%s", req->target_prefix ? req->target_prefix : "",
			 req->action);
		sign_h[ns++] = (kiln_http_header){ "X-Amz-Target", target };
	}
	sr.method = "POST";
	sr.host = ep->host;
	sr.path = strchr(strstr(ep->url, "://") + 3, '/');
	sr.query = NULL;
	sr.headers = sign_h;
	sr.n_headers = ns;
	sr.body = req->body.ptr;
	sr.body_len = req->body.len;
	sr.region = c->cfg->region;
	sr.service = kiln_aws_service_signing_name(req->service);
	sr.time = kiln_clock_wall_s() + c->skew_s;

	kiln_sigv4_result_init(&res);
	if (sign && provider) {
		/* fresh keys for every attempt: a long run outlives a role's hour */
		if ((error = kiln_aws_creds_get(provider, &fresh)) < 0) {
			*maybe_sent = false;
			kiln_sigv4_result_release(&res);
			return kiln_error_prefix("%s %s", service_name(req->service), req->action);
		}
		creds = &fresh;
	}
	if (sign && (error = kiln_sigv4_sign(&res, &sr, creds)) < 0) {
		kiln_sigv4_result_release(&res);
		kiln_aws_credentials_release(&fresh);
		return kiln_error_prefix("cannot sign %s %s", service_name(req->service), req->action);
	}
	wire[nw++] = (kiln_http_header){ "Host", ep->host };
	for (size_t i = 0; i < ns; i++)
		wire[nw++] = sign_h[i];
	if (sign) {
		wire[nw++] = (kiln_http_header){ "X-Amz-Date", res.amz_date };
		if (creds->session_token)
			wire[nw++] = (kiln_http_header){ "X-Amz-Security-Token", creds->session_token };
		wire[nw++] = (kiln_http_header){ "Authorization", res.authorization };
	}
	wire[nw++] = (kiln_http_header){ "User-Agent", "kiln/" KILN_VERSION };

	wr.service = req->service;
	wr.method = "POST";
	wr.url = ep->url;
	wr.headers = wire;
	wr.n_headers = nw;
	wr.body = req->body.ptr;
	wr.body_len = req->body.len;
	wr.connect_timeout_ms = c->opts.connect_timeout_ms;
	wr.timeout_ms = c->opts.timeout_ms;
	wr.ca_bundle = c->cfg->ca_bundle;
	wr.fresh_connection = (req->flags & KILN_AWS_NOT_IDEMPOTENT) != 0;
	error = c->transport.send(c->transport.ctx, &wr, reply, maybe_sent);
	kiln_sigv4_result_release(&res);
	kiln_aws_credentials_release(&fresh);
	return error;
}

static void reply_reset(kiln_aws_wire_reply *r)
{
	kiln_buf_reset(&r->body);
	r->status = 0;
	r->date[0] = r->request_id[0] = r->error_type[0] = '\0';
}

/* Failures after which a non-idempotent action may have been carried out. */
static bool maybe_acted(int transport_error, bool maybe_sent, const kiln_aws_fault *f,
			kiln_aws_retry_kind kind)
{
	if (transport_error < 0)
		return maybe_sent;
	if (kind == KILN_AWS_RETRY_THROTTLE)
		return false;
	return f->http_status != 503;
}

int kiln_aws_call(kiln_aws_client *c, const kiln_aws_request *req, kiln_buf *out)
{
	const struct endpoint *ep;
	kiln_aws_wire_reply reply;
	kiln_aws_counter *counter;
	kiln_aws_fault fault;
	unsigned attempt = 1;
	int last_cost = 0, error = KILN_ERROR;
	bool skew_fixed = false;

	kiln_buf_init(out, KILN_AWS_REPLY_MAX);
	if ((unsigned)req->service >= KILN_AWS_SERVICE_COUNT || !c->endpoints[req->service].url)
		return kiln_error_set(KILN_EINVALID, "no endpoint for %s", service_name(req->service));
	ep = &c->endpoints[req->service];
	if (!(counter = counter_for(c, req->service, req->action)))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	counter->calls++;
	memset(&reply, 0, sizeof(reply));
	kiln_buf_init(&reply.body, KILN_AWS_REPLY_MAX);

	for (;;) {
		kiln_aws_retry_kind kind;
		bool maybe_sent = true;
		int rc, cost;
		uint64_t delay;
		char why[160];

		reply_reset(&reply);
		if (req->service == KILN_AWS_EC2 && c->ratelimit) {
			uint64_t waited = 0;
			/* every attempt costs EC2 a token, retries too */
			if ((error = kiln_aws_ratelimit_acquire(c->ratelimit, req->action, req->body,
								&waited, NULL)) < 0)
				break;
			if (waited) {
				counter->waits++;
				counter->wait_ms += waited;
				if (waited >= 500 && c->opts.events)
					kiln_emit(c->opts.events, "info", KILN_LEVEL_DEBUG,
						  json_pack("{s:s,s:s,s:I}", "service", service_name(req->service),
							    "action", req->action, "waited_ms", (json_int_t)waited),
						  "%s %s: waited %llu ms for EC2's request rate", service_name(req->service),
						  req->action, (unsigned long long)waited);
			}
		}
		counter->attempts++;
		rc = sign_and_send(c, req, ep, &reply, &maybe_sent);
		if (rc == 0 && reply.status >= 200 && reply.status < 300) {
			/* success refunds what the last retry cost, or a token when none was needed */
			c->quota = KILN_MIN(KILN_AWS_RETRY_QUOTA,
					    c->quota + (last_cost ? last_cost : KILN_AWS_NO_RETRY_REFUND));
			*out = reply.body;
			return 0;
		}
		memset(&fault, 0, sizeof(fault));
		if (rc == 0) {
			int64_t server;
			fault_from_reply(&fault, req->protocol, &reply);
			if (!skew_fixed && kiln_aws_is_skew_code(fault.code) &&
			    kiln_http_date_parse(&server, reply.date) == 0) {
				int64_t off = server - kiln_clock_wall_s();
				if (off - c->skew_s > SKEW_THRESHOLD_S || c->skew_s - off > SKEW_THRESHOLD_S) {
					/* sign again with the service's idea of now; once per call */
					c->skew_s = off;
					skew_fixed = true;
					kiln_warn(c->opts.events,
						  "this machine's clock is %lld s %s AWS's; correcting for it",
						  (long long)(off < 0 ? -off : off), off > 0 ? "behind" : "ahead of");
					continue;
				}
			}
		} else if (rc != KILN_ETIMEOUT && rc != KILN_ETRANSIENT) {
			error = rc;
			break;
		}
		kind = kiln_aws_retry_classify(rc, rc == 0 ? &fault : NULL);
		if (kind == KILN_AWS_RETRY_THROTTLE)
			counter->throttled++;
		if (kind == KILN_AWS_RETRY_NONE) {
			error = fail_fault(req, &fault, &reply, kind, attempt);
			break;
		}
		if ((req->flags & KILN_AWS_NOT_IDEMPOTENT) && maybe_acted(rc, maybe_sent, &fault, kind)) {
			/* the caller looks for what this attempt may have made */
			error = rc < 0 ? kiln_error_prefix("%s %s", service_name(req->service), req->action)
				       : fail_fault(req, &fault, &reply, kind, attempt);
			break;
		}
		if (attempt >= c->opts.max_attempts) {
			error = rc < 0 ? kiln_error_prefix("%s %s (after %u attempt%s)",
							   service_name(req->service), req->action, attempt,
							   attempt == 1 ? "" : "s")
				       : fail_fault(req, &fault, &reply, kind, attempt);
			break;
		}
		cost = kind == KILN_AWS_RETRY_TIMEOUT ? KILN_AWS_RETRY_TIMEOUT_COST : KILN_AWS_RETRY_COST;
		if (cost > c->quota) {
			error = rc < 0 ? kiln_error_prefix("%s %s (retry quota exhausted)",
							   service_name(req->service), req->action)
				       : fail_fault(req, &fault, &reply, kind, attempt);
			break;
		}
		c->quota -= cost;
		last_cost = cost;
		delay = kiln_aws_backoff_ms(attempt, jitter(c));
		if (rc < 0)
			snprintf(why, sizeof(why), "%s", kiln_error_last()->message);
		else if (fault.code[0])
			snprintf(why, sizeof(why), "%s (HTTP %d)", fault.code, fault.http_status);
		else
			snprintf(why, sizeof(why), "HTTP %d", fault.http_status);
		emit_retry(c, req, attempt, delay, why);
		if ((error = kiln_sleep_ms(delay)) < 0)
			break;
		attempt++;
	}
	counter->failures++;
	kiln_buf_release(&reply.body);
	return error;
}

int kiln_aws_http(kiln_aws_client *c, const char *method, const char *url,
		  const kiln_http_header *headers, size_t n_headers, uint64_t timeout_ms,
		  size_t max_body, int *status, kiln_buf *out)
{
	kiln_http_header h[9];
	kiln_aws_wire_request wr = { 0 };
	kiln_aws_wire_reply reply;
	bool maybe_sent;
	size_t i, n = 0;
	int error;

	kiln_buf_init(out, max_body);
	*status = 0;
	if (n_headers + 1 > KILN_ARRAY_SIZE(h))
		return kiln_error_set(KILN_EINVALID, "too many headers for '%s'", url);
	for (i = 0; i < n_headers; i++)
		h[n++] = headers[i];
	h[n++] = (kiln_http_header){ "User-Agent", "kiln/" KILN_VERSION };
	memset(&reply, 0, sizeof(reply));
	kiln_buf_init(&reply.body, max_body);
	wr.service = KILN_AWS_SERVICE_COUNT;
	wr.method = method;
	wr.url = url;
	wr.headers = h;
	wr.n_headers = n;
	wr.connect_timeout_ms = KILN_MIN(timeout_ms, c->opts.connect_timeout_ms);
	wr.timeout_ms = timeout_ms;
	wr.ca_bundle = c->cfg->ca_bundle;
	if ((error = c->transport.send(c->transport.ctx, &wr, &reply, &maybe_sent)) < 0) {
		kiln_buf_release(&reply.body);
		return error;
	}
	*status = reply.status;
	*out = reply.body;
	return 0;
}

int kiln_aws_get(kiln_aws_client *c, const char *url, uint64_t timeout_ms, kiln_buf *out)
{
	int status, error;

	if ((error = kiln_aws_http(c, "GET", url, NULL, 0, timeout_ms, 64 << 10, &status, out)) < 0)
		return error;
	if (status < 200 || status >= 300) {
		kiln_buf_release(out);
		kiln_buf_init(out, KILN_AWS_REPLY_MAX);
		return kiln_error_set(KILN_ERROR, "GET '%s': HTTP %d", url, status);
	}
	return 0;
}
