/*
 * ratelimit.h: client-side token buckets, so that kiln never trips EC2's
 * request throttling.
 *
 * EC2 throttles each account per region with token buckets (EC2 developer
 * guide, "Request throttling for the Amazon EC2 API"): a request takes a
 * token from its action's bucket, an empty bucket answers
 * RequestLimitExceeded, and buckets refill at a fixed rate up to their
 * size. Some actions also draw on a resource bucket, one token per
 * instance. Retrying after RequestLimitExceeded works, but a 1000-instance
 * rollout that runs into the buckets spends its retry quota and its time
 * on backoff; waiting for the token before sending costs nothing extra.
 *
 * Who calls: aws/http.c, before every attempt of every EC2 call (retries
 * included: EC2 charges them too). One limiter per region is shared by
 * every client of the process (kiln_aws_ratelimit_shared), so all the
 * threads and engines of one kiln run draw on the same buckets. Other
 * kiln processes, other tools and the console share the account's buckets
 * too and are not seen: their traffic still ends in RequestLimitExceeded
 * and the retries of aws/http.c.
 *
 * Classes, as tests/front/front.py maps them (first match wins):
 *   1. a bucket named after the action (RunInstances, TerminateInstances,
 *      CreateTags);
 *   2. "resource_intensive" for the actions in that list;
 *   3. Describe*, Get*, List*, Search*: "unfiltered" when the request has
 *      no Filter.*, no id list and no MaxResults/NextToken, else "describe";
 *   4. everything else: "mutating".
 * Resource buckets: RunInstances (MaxCount tokens), StartInstances,
 * StopInstances, TerminateInstances (one per InstanceId.N).
 *
 * A request waits until every bucket it draws on holds its cost plus one
 * token more: the spare token absorbs the difference between when kiln
 * sends and when EC2 counts (up to 1/rate seconds of jitter), so a bucket
 * the server keeps in step with ours never runs dry there. Reservations
 * are first come, first served; the wait is kiln_sleep_ms (a signal ends
 * it).
 *
 * KILN_AWS_RATE_LIMIT (read when a client is created):
 *   unset, "" or "on"   the documented buckets (docs/aws-configuration.md);
 *   "off"               no client-side limit;
 *   "NAME=BURST/RATE,..." the documented buckets with these changed (an
 *                       account with raised limits, or a test);
 *                       "NAME=off" removes one; resource buckets are named
 *                       "resource:ACTION".
 */
#ifndef KILN_AWS_RATELIMIT_H
#define KILN_AWS_RATELIMIT_H

#include "core/buf.h"

#define KILN_AWS_RATELIMIT_ENV "KILN_AWS_RATE_LIMIT"

typedef struct kiln_aws_ratelimit kiln_aws_ratelimit;

/*
 * A limiter of its own, from spec as KILN_AWS_RATE_LIMIT reads (NULL: the
 * defaults). *out is NULL when spec is "off". KILN_EINVALID for a spec
 * that does not parse, naming the part.
 */
int kiln_aws_ratelimit_new(kiln_aws_ratelimit **out, const char *spec);
void kiln_aws_ratelimit_free(kiln_aws_ratelimit *rl);

/*
 * The process's limiter for region, made on first use from
 * KILN_AWS_RATE_LIMIT and kept until exit (borrowed). *out is NULL when
 * the variable says "off" at the time of the call.
 */
int kiln_aws_ratelimit_shared(kiln_aws_ratelimit **out, const char *region);

/* What an EC2 request draws on. */
typedef struct kiln_aws_rate_class {
	char bucket[48];   /* "RunInstances", "describe", ...; "" if no bucket applies */
	char resource[48]; /* "RunInstances", ... ; "" if none */
	unsigned cost;     /* resource tokens: instances */
} kiln_aws_rate_class;

/*
 * Classifies an EC2 Query request (action and form body) into the first
 * class that applies and that rl has (rl NULL: as if it had them all),
 * the way front.py does with its configured buckets. Pure.
 */
void kiln_aws_ratelimit_classify(kiln_aws_rate_class *out, const kiln_aws_ratelimit *rl,
				 const char *action, kiln_view body);

/*
 * Takes the tokens one EC2 request needs, waiting until they are there.
 * rl NULL: returns at once. *waited_ms (may be NULL) is how long it
 * waited; *at_ms (may be NULL) the monotonic time the tokens were
 * reserved for. KILN_ECANCELLED if a signal ended the wait.
 */
int kiln_aws_ratelimit_acquire(kiln_aws_ratelimit *rl, const char *action, kiln_view body,
			       uint64_t *waited_ms, uint64_t *at_ms);

/*
 * A bucket's size and rate ("describe", "resource:RunInstances");
 * false if rl has no such bucket. For tests, benchmarks and docs.
 */
bool kiln_aws_ratelimit_bucket(const kiln_aws_ratelimit *rl, const char *name, double *burst,
			       double *rate);

/* The default table as "NAME=BURST/RATE,..." (for the bench and the front's config). */
const char *kiln_aws_ratelimit_defaults(void);

#endif
