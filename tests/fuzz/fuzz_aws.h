/*
 * fuzz_aws.h: an AWS client whose every reply is the fuzzer's input, for
 * the targets that feed aws/'s reply parsers (fuzz_aws_reply.c,
 * fuzz_aws_error.c).
 *
 * The client is the real one (aws/http.c: signing, the reply cap, the
 * error reading), built once with a transport of our own instead of
 * libcurl, one attempt per call and no client-side rate limit
 * (KILN_AWS_RATE_LIMIT=off), so no input ever causes a sleep. The
 * first request of an input gets the input; later ones (the next page of a
 * Describe, a second call of the same operation) get an empty document of
 * the same protocol, so a nextToken in the input ends the loop after one
 * more page instead of a thousand.
 */
#ifndef KILN_FUZZ_AWS_H
#define KILN_FUZZ_AWS_H

#include "aws/config.h"
#include "aws/http.h"
#include "aws/ratelimit.h"
#include "core/error.h"
#include "tests/fuzz/fuzz.h"

/* Must never appear in an error message or an event. */
#define FUZZ_SECRET "kilnFuzzSecretKey/0123456789+abcdefghijKLMN"

struct fuzz_reply {
	int status;
	const char *body;
	size_t len;
	const char *error_type; /* the x-amzn-ErrorType header, or "" */
	unsigned calls;         /* requests sent for this input */
	bool json;              /* the later replies: "{}" rather than "<R/>" */
};

static struct fuzz_reply fuzz_reply;

static int fuzz_send(void *ctx, const kiln_aws_wire_request *req, kiln_aws_wire_reply *reply,
		     bool *maybe_sent)
{
	struct fuzz_reply *r = ctx;
	(void)req;
	*maybe_sent = true;
	if (r->calls++) {
		reply->status = 200;
		return kiln_buf_puts(&reply->body, r->json ? "{}" : "<R/>");
	}
	reply->status = r->status;
	snprintf(reply->request_id, sizeof(reply->request_id), "fuzz-request");
	snprintf(reply->error_type, sizeof(reply->error_type), "%s", r->error_type);
	/* the cap applies as to a real reply: past it the transport fails */
	return kiln_buf_put(&reply->body, r->body, r->len);
}

static const kiln_aws_transport fuzz_transport = { fuzz_send, &fuzz_reply };
static kiln_aws_config fuzz_cfg;
static kiln_aws_client *fuzz_client;

/* The client, made once. */
static inline kiln_aws_client *fuzz_aws_client(void)
{
	static const char *const hosts[KILN_AWS_SERVICE_COUNT] = { "ec2", "elasticloadbalancing",
								   "elasticloadbalancing", "ssm", "sts" };
	kiln_aws_client_options o = KILN_AWS_CLIENT_OPTIONS_INIT;
	size_t i;

	if (fuzz_client)
		return fuzz_client;
	memset(&fuzz_cfg, 0, sizeof(fuzz_cfg));
	fuzz_cfg.profile = strdup("default");
	fuzz_cfg.region = strdup("us-east-1");
	for (i = 0; i < KILN_AWS_SERVICE_COUNT; i++)
		fuzz_cfg.endpoints[i] = kiln_strdupf("https://%s.us-east-1.amazonaws.com", hosts[i]);
	fuzz_cfg.credentials.access_key_id = strdup("AKIDFUZZFUZZFUZZFUZZ");
	fuzz_cfg.credentials.secret_access_key = strdup(FUZZ_SECRET);
	snprintf(fuzz_cfg.credentials.source, sizeof(fuzz_cfg.credentials.source), "fuzz");
	o.transport = &fuzz_transport;
	o.max_attempts = 1;
	/*
	 * EC2's token buckets (aws/ratelimit.h) would make every call wait
	 * once the fuzzer has drained them: 8 to 26 execs a second instead
	 * of thousands. Read when the client is made.
	 */
	if (setenv(KILN_AWS_RATELIMIT_ENV, "off", 1) < 0)
		abort();
	if (kiln_aws_client_new(&fuzz_client, &fuzz_cfg, &o) < 0)
		abort();
	return fuzz_client;
}

/* Sets the reply of the input's first request. */
static inline void fuzz_aws_reply(int status, const uint8_t *body, size_t len, const char *error_type,
				  bool json)
{
	fuzz_reply.status = status;
	fuzz_reply.body = (const char *)body;
	fuzz_reply.len = len;
	fuzz_reply.error_type = error_type ? error_type : "";
	fuzz_reply.calls = 0;
	fuzz_reply.json = json;
}

/* A fixed array holds a C string: its NUL is inside it. */
#define FUZZ_CHECK_CSTR(arr) FUZZ_CHECK(memchr((arr), '\0', sizeof(arr)) != NULL)

/* What every error kiln sets promises (core/error.h): one line, a code, no secret it was not sent. */
static inline void fuzz_check_error(int rc)
{
	const kiln_error *e = kiln_error_last();
	FUZZ_CHECK(rc < 0 && rc >= KILN_ETRANSIENT);
	FUZZ_CHECK(e->code == rc);
	FUZZ_CHECK_CSTR(e->message);
	FUZZ_CHECK_CSTR(e->cloud_code);
	FUZZ_CHECK_CSTR(e->request_id);
	FUZZ_CHECK(e->message[0] != '\0');
	FUZZ_CHECK(!strchr(e->message, '\n') && !strchr(e->message, '\r'));
	/* a reply may quote the secret back (the fuzzer learns it from this very check): that is not a leak */
	if (!memmem(fuzz_reply.body, fuzz_reply.len, FUZZ_SECRET, strlen(FUZZ_SECRET)) &&
	    !strstr(fuzz_reply.error_type, FUZZ_SECRET))
		FUZZ_CHECK(!strstr(e->message, FUZZ_SECRET));
}

#endif
