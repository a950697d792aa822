/*
 * http.h: one AWS API call, signed, sent, retried, and its error read.
 *
 * Who calls: the typed calls (ec2.c, elbv2.c, elb.c, ssm.c, sts.c) build a
 * body and call kiln_aws_call; the provider (provider.c) owns the client.
 *
 * What a call does:
 *  - for EC2, waits for the client-side token buckets (aws/ratelimit.h)
 *    before every attempt, so EC2's own never run dry;
 *  - signs the request (aws/sigv4.h) afresh on every attempt, with the
 *    wall clock corrected by any skew learnt from the service, and keys
 *    asked of the credentials provider each time (aws/credentials.h), which
 *    refreshes them before they expire;
 *  - sends it over libcurl: one easy handle per service, reused, so a
 *    connection is kept alive where the server allows it; connect and
 *    total timeouts; TLS verification always on (AWS_CA_BUNDLE, else the
 *    system's store); curl's own proxy variables are honoured;
 *  - reads the reply into a buffer capped at 16 MiB;
 *  - retries the way the AWS SDKs' "standard" mode does (docs/aws-configuration.md, "Retries"):
 *    at most max_attempts attempts (3, or AWS_MAX_ATTEMPTS), sleeping
 *    rand(0,1) * min(2^(attempt-1) s, 20 s) between them (full jitter),
 *    each retry paid from a retry quota of 500 tokens (5 a retry, 10
 *    after a timeout; a success refunds what its last retry cost, or 1),
 *    on throttling codes, transient codes, HTTP 500/502/503/504, resets,
 *    dropped connections and timeouts; sleeps are kiln_sleep_ms, so a
 *    signal ends the wait;
 *  - on a signature or expiry error whose reply's Date is more than four
 *    minutes from our clock, remembers the offset and re-signs once;
 *  - on failure sets kiln_error_set_cloud with the service's code, the
 *    request id and the HTTP status, and returns a KILN_E* code.
 *
 * Secrets never leave this file in a message or an event: neither the
 * Authorization header, the session token nor the secret key appears in
 * an error or an event (only the access key id's prefix, nowhere here).
 */
#ifndef KILN_AWS_HTTP_H
#define KILN_AWS_HTTP_H

#include "aws/config.h"
#include "aws/sigv4.h"
#include "core/buf.h"
#include "core/event.h"

/* Every reply body is capped here (a DescribeImages page stays far below). */
#define KILN_AWS_REPLY_MAX ((size_t)16 << 20)

typedef enum kiln_aws_protocol {
	KILN_AWS_QUERY, /* form body, XML reply (EC2, ELB, ELBv2, STS) */
	KILN_AWS_JSON,  /* JSON 1.1 body and reply, X-Amz-Target (SSM) */
} kiln_aws_protocol;

/* What a failed reply said; filled from the body (either XML shape, or JSON). */
typedef struct kiln_aws_fault {
	int http_status;      /* 0: no reply at all */
	char code[128];       /* "InvalidInstanceID.NotFound"; "" if the body had none */
	char message[512];
	char request_id[128];
} kiln_aws_fault;

/* ---- the transport seam -------------------------------------------------- */

/* One attempt as it goes on the wire: every header, signed, is here. */
typedef struct kiln_aws_wire_request {
	kiln_aws_service service;
	const char *method;               /* "POST", or "GET" for caller_cidr's probe */
	const char *url;
	const kiln_http_header *headers;  /* Host, Content-Type, X-Amz-Date, Authorization ... */
	size_t n_headers;
	const char *body;
	size_t body_len;
	uint64_t connect_timeout_ms;
	uint64_t timeout_ms;
	const char *ca_bundle;            /* NULL: the system's */
	/*
	 * Send on a new connection. libcurl quietly sends a request again when
	 * a reused keep-alive connection dies before any reply, which would
	 * repeat an action that is not idempotent behind our back; it never
	 * does so on a fresh connection.
	 */
	bool fresh_connection;
} kiln_aws_wire_request;

typedef struct kiln_aws_wire_reply {
	int status;
	kiln_buf body;           /* initialised by the client, capped at KILN_AWS_REPLY_MAX */
	char date[64];           /* the Date header, "" if none */
	char request_id[128];    /* x-amzn-RequestId or x-amz-request-id */
	char error_type[256];    /* x-amzn-ErrorType (JSON protocol) */
} kiln_aws_wire_reply;

/*
 * Sends one attempt and fills reply. Returns 0 when a reply arrived, of any
 * status; otherwise, with a message set:
 *   KILN_ETIMEOUT    no complete reply in time,
 *   KILN_ETRANSIENT  connection refused, reset or dropped,
 *   KILN_ENOMEM      the reply passed the cap,
 *   anything else    not worth retrying (TLS verification, bad URL).
 * *maybe_sent is set false when the request certainly never reached the
 * server (it could not connect), true otherwise.
 *
 * A table of function pointers for tests, as aws-c-auth does: leave it
 * NULL in kiln_aws_client_options for libcurl.
 */
typedef struct kiln_aws_transport {
	int (*send)(void *ctx, const kiln_aws_wire_request *req, kiln_aws_wire_reply *reply,
		    bool *maybe_sent);
	void *ctx;
} kiln_aws_transport;

/* ---- the client ------------------------------------------------------------ */

typedef struct kiln_aws_client kiln_aws_client;

struct kiln_aws_creds_provider;
struct kiln_aws_ratelimit;

typedef struct kiln_aws_client_options {
	const kiln_aws_transport *transport; /* NULL: libcurl; borrowed */
	const kiln_events *events;           /* retries are reported as debug events */
	unsigned max_attempts;               /* 0: AWS_MAX_ATTEMPTS, else 3 */
	uint64_t connect_timeout_ms;         /* 0: 10 s */
	uint64_t timeout_ms;                 /* 0: 60 s for the whole attempt */
	/* Jitter in [0, 1) for backoff; NULL: a seeded PRNG. */
	double (*random)(void *ctx);
	void *random_ctx;
	/*
	 * Where the signing keys come from (borrowed); NULL: cfg->provider,
	 * else cfg->credentials. aws/credentials.c gives its STS clients the
	 * source of the role they assume.
	 */
	struct kiln_aws_creds_provider *credentials;
	/*
	 * EC2's client-side token buckets (aws/ratelimit.h; borrowed); NULL:
	 * the process's limiter for cfg->region, unless KILN_AWS_RATE_LIMIT=off.
	 */
	struct kiln_aws_ratelimit *ratelimit;
} kiln_aws_client_options;

#define KILN_AWS_CLIENT_OPTIONS_INIT { NULL, NULL, 0, 0, 0, NULL, NULL, NULL, NULL }

/* cfg is borrowed and must outlive the client. */
int kiln_aws_client_new(kiln_aws_client **out, const kiln_aws_config *cfg,
			const kiln_aws_client_options *opts);
void kiln_aws_client_free(kiln_aws_client *c);
const kiln_aws_config *kiln_aws_client_config(const kiln_aws_client *c);

/* Request flags. */
enum {
	/*
	 * The action is not idempotent and the cloud cannot tell a repeat
	 * (CreateImage): failures after which the service may have acted
	 * (timeouts after sending, dropped replies, 500/502/504) are returned
	 * at once instead of retried, so the caller can look for what its
	 * first attempt made. Throttling and 503 are still retried: the
	 * service did nothing.
	 */
	KILN_AWS_NOT_IDEMPOTENT = 1 << 0,
	/*
	 * Send without a signature (STS AssumeRoleWithWebIdentity, whose token
	 * is the proof): no credentials are asked for, no Authorization header.
	 */
	KILN_AWS_UNSIGNED = 1 << 1,
};

typedef struct kiln_aws_request {
	kiln_aws_service service;
	kiln_aws_protocol protocol;
	const char *action;        /* "RunInstances": counters, messages, X-Amz-Target */
	const char *target_prefix; /* JSON only: "AmazonSSM" */
	kiln_view body;
	unsigned flags;
} kiln_aws_request;

/*
 * Sends req and, on a 2xx reply, puts the body into out (initialised here;
 * the caller releases it, also on failure). On failure returns a KILN_E*
 * code with kiln_error_last() naming the service and action and holding
 * the cloud code, request id and HTTP status.
 */
int kiln_aws_call(kiln_aws_client *c, const kiln_aws_request *req, kiln_buf *out);

/*
 * A plain GET of url through the same transport, no signing, one attempt
 * with the given timeout; for caller_cidr's probe. out as above.
 */
int kiln_aws_get(kiln_aws_client *c, const char *url, uint64_t timeout_ms, kiln_buf *out);

/*
 * One unsigned request of any method ("GET", "PUT") through the client's
 * transport: one attempt, no retry, connect and total timeout timeout_ms,
 * the body capped at max_body. Any reply is a success: *status says what
 * it was, and out (initialised here, released by the caller also on
 * failure) holds its body. Transport failures are returned as the
 * transport reports them (KILN_ETIMEOUT, KILN_ETRANSIENT, ...). For the
 * instance metadata service (aws/imds.c).
 */
int kiln_aws_http(kiln_aws_client *c, const char *method, const char *url,
		  const kiln_http_header *headers, size_t n_headers, uint64_t timeout_ms,
		  size_t max_body, int *status, kiln_buf *out);

/* Where the signing keys come from, for whoami ("environment", "assume-role ..."). */
void kiln_aws_client_credential_source(kiln_aws_client *c, char *out, size_t size);

/* The endpoint the client sends service's calls to (for whoami). */
const char *kiln_aws_client_endpoint(const kiln_aws_client *c, kiln_aws_service service);

/* ---- counters, for benchmarks ----------------------------------------------- */

typedef struct kiln_aws_counter {
	char name[80];       /* "ec2:RunInstances" */
	uint64_t calls;      /* kiln_aws_call invocations */
	uint64_t attempts;   /* requests sent, retries included */
	uint64_t failures;   /* calls that returned an error */
	uint64_t throttled;  /* attempts answered with a throttling error */
	uint64_t waits;      /* attempts that waited for the client-side rate limit */
	uint64_t wait_ms;    /* how long they waited in all */
} kiln_aws_counter;

/* The counters so far, in first-call order; borrowed until the next call. */
const kiln_aws_counter *kiln_aws_client_counters(const kiln_aws_client *c, size_t *n);
/* The retry quota's tokens left (for tests and benchmarks). */
int kiln_aws_client_quota(const kiln_aws_client *c);
/* The clock offset learnt from the service, in seconds (0 if none). */
int64_t kiln_aws_client_skew_s(const kiln_aws_client *c);

/* ---- the retry policy, pure, exposed for tests -------------------------------- */

typedef enum kiln_aws_retry_kind {
	KILN_AWS_RETRY_NONE = 0,
	KILN_AWS_RETRY_THROTTLE,  /* the service asked us to slow down */
	KILN_AWS_RETRY_TRANSIENT, /* 5xx, transient codes, resets */
	KILN_AWS_RETRY_TIMEOUT,   /* no reply in time */
} kiln_aws_retry_kind;

/*
 * What kind of retry a failure deserves: transport_error is the transport's
 * return (0 when a reply came), fault the reply's (NULL when none).
 */
kiln_aws_retry_kind kiln_aws_retry_classify(int transport_error, const kiln_aws_fault *fault);
bool kiln_aws_is_throttle_code(const char *code);
bool kiln_aws_is_transient_code(const char *code);
bool kiln_aws_is_skew_code(const char *code);

/* The sleep before attempt+1 after attempt (1-based) failed, for jitter r in [0, 1). */
uint64_t kiln_aws_backoff_ms(unsigned attempt, double r);

#define KILN_AWS_RETRY_QUOTA 500
#define KILN_AWS_RETRY_COST 5
#define KILN_AWS_RETRY_TIMEOUT_COST 10
#define KILN_AWS_NO_RETRY_REFUND 1
#define KILN_AWS_MAX_BACKOFF_MS 20000

/* The KILN_E* code for an AWS error code and HTTP status (not retry-aware). */
int kiln_aws_error_code(const char *code, int http_status);

/* Parses an HTTP Date ("Wed, 25 Nov 2026 21:52:12 GMT"); KILN_EINVALID if not one. */
int kiln_http_date_parse(int64_t *out, const char *s);

#endif
