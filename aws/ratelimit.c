/*
 * ratelimit.c: EC2's token buckets on the client side (ratelimit.h says
 * what and why).
 *
 * Each bucket is kept as (tokens at time t); t may lie in the future when
 * requests have reserved tokens ahead of now. A request computes the
 * earliest time T at which each of its buckets, counting the reservations
 * before it, holds its cost plus the spare token, reserves at T in all of
 * them under the lock, and sleeps until T outside it. Reservations never go
 * back in time, so a bucket's t only grows and the schedule is first come,
 * first served across threads.
 */
#include <pthread.h>
#include <strings.h>

#include "aws/ratelimit.h"
#include "core/clock.h"
#include "core/error.h"

/*
 * EC2's documented request and resource buckets ([burst, refill per
 * second]); the same table tests/front/README.md gives the front. The
 * resource-intensive list is the front's reading of EC2's.
 */
static const char default_spec[] =
	"RunInstances=5/2,TerminateInstances=100/5,CreateTags=100/10,"
	"describe=100/20,unfiltered=50/10,mutating=50/5,resource_intensive=50/5,"
	"resource:RunInstances=1000/2,resource:StartInstances=1000/2,"
	"resource:StopInstances=1000/20,resource:TerminateInstances=1000/20";

static const char *const resource_intensive[] = {
	"AcceptVpcPeeringConnection", "AuthorizeSecurityGroupIngress",
	"CancelSpotFleetRequests", "CreateKeyPair", "CreateManagedPrefixList",
	"DeleteManagedPrefixList", "ModifyImageAttribute", "ModifyManagedPrefixList",
	"ModifySnapshotAttribute", "RequestSpotFleet", "RequestSpotInstances",
};

/* The spare token each request leaves in its buckets (see ratelimit.h). */
#define SPARE_TOKENS 1.0

#define MAX_BUCKETS 32

struct bucket {
	char name[48];
	double burst, rate; /* tokens, tokens per second */
	double tokens;      /* at t */
	double t_ms;        /* monotonic; may be ahead of now (reserved) */
	bool used;          /* t_ms and tokens are set */
};

struct kiln_aws_ratelimit {
	pthread_mutex_t lock;
	struct bucket buckets[MAX_BUCKETS];
	size_t n;
};

const char *kiln_aws_ratelimit_defaults(void)
{
	return default_spec;
}

static struct bucket *find(struct kiln_aws_ratelimit *rl, const char *name)
{
	size_t i;
	for (i = 0; i < rl->n; i++)
		if (!strcmp(rl->buckets[i].name, name))
			return &rl->buckets[i];
	return NULL;
}

/* Parses a number of the form 123 or 1.5 (no sign, no exponent). */
static int parse_amount(double *out, const char *s, size_t len)
{
	double v = 0, scale = 0;
	size_t i;
	if (!len || len > 12)
		return KILN_EINVALID;
	for (i = 0; i < len; i++) {
		if (s[i] == '.' && scale == 0) {
			scale = 1;
			continue;
		}
		if (s[i] < '0' || s[i] > '9')
			return KILN_EINVALID;
		if (scale) {
			scale /= 10;
			v += (s[i] - '0') * scale;
		} else {
			v = v * 10 + (s[i] - '0');
		}
	}
	*out = v;
	return 0;
}

/* One "NAME=BURST/RATE" or "NAME=off" of a spec, applied to rl. */
static int apply(struct kiln_aws_ratelimit *rl, const char *item, size_t len)
{
	const char *eq = memchr(item, '=', len), *slash;
	char name[48];
	double burst, rate;
	struct bucket *b;
	size_t nlen;

	if (!eq || eq == item || (size_t)(eq - item) >= sizeof(name))
		goto bad;
	nlen = (size_t)(eq - item);
	memcpy(name, item, nlen);
	name[nlen] = '\0';
	b = find(rl, name);
	if ((size_t)(item + len - eq - 1) == 3 && !strncasecmp(eq + 1, "off", 3)) {
		if (b)
			*b = rl->buckets[--rl->n];
		return 0;
	}
	if (!(slash = memchr(eq + 1, '/', (size_t)(item + len - eq - 1))) ||
	    parse_amount(&burst, eq + 1, (size_t)(slash - eq - 1)) < 0 ||
	    parse_amount(&rate, slash + 1, (size_t)(item + len - slash - 1)) < 0 || burst < 1 ||
	    rate <= 0)
		goto bad;
	if (!b) {
		if (rl->n == MAX_BUCKETS)
			return kiln_error_set(KILN_EINVALID, "%s: more than %d buckets",
					      KILN_AWS_RATELIMIT_ENV, MAX_BUCKETS);
		b = &rl->buckets[rl->n++];
	}
	memset(b, 0, sizeof(*b));
	memcpy(b->name, name, nlen + 1);
	b->burst = burst;
	b->rate = rate;
	return 0;
bad:
	return kiln_error_set(KILN_EINVALID,
			      "%s: '%.*s' is not NAME=BURST/RATE (e.g. describe=100/20) or NAME=off",
			      KILN_AWS_RATELIMIT_ENV, (int)KILN_MIN(len, 64), item);
}

static int apply_spec(struct kiln_aws_ratelimit *rl, const char *spec)
{
	const char *p = spec;
	int error;

	while (*p) {
		size_t len = strcspn(p, ",");
		/* white space around items is forgiven ("a=1/1, b=2/2") */
		while (len && (*p == ' ' || *p == '\t')) {
			p++;
			len--;
		}
		size_t end = len;
		while (end && (p[end - 1] == ' ' || p[end - 1] == '\t'))
			end--;
		if (end && (error = apply(rl, p, end)) < 0)
			return error;
		p += len;
		if (*p == ',')
			p++;
	}
	return 0;
}

int kiln_aws_ratelimit_new(kiln_aws_ratelimit **out, const char *spec)
{
	struct kiln_aws_ratelimit *rl;
	int error;

	*out = NULL;
	if (spec && !strcasecmp(spec, "off"))
		return 0;
	if (!(rl = calloc(1, sizeof(*rl))))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	pthread_mutex_init(&rl->lock, NULL);
	if ((error = apply_spec(rl, default_spec)) < 0 ||
	    (spec && strcasecmp(spec, "on") && (error = apply_spec(rl, spec)) < 0)) {
		kiln_aws_ratelimit_free(rl);
		return error;
	}
	*out = rl;
	return 0;
}

void kiln_aws_ratelimit_free(kiln_aws_ratelimit *rl)
{
	if (!rl)
		return;
	pthread_mutex_destroy(&rl->lock);
	free(rl);
}

/* ---- the process's limiters, one per region ---------------------------------- */

static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static struct shared {
	char region[64];
	kiln_aws_ratelimit *rl;
} shared[16];

int kiln_aws_ratelimit_shared(kiln_aws_ratelimit **out, const char *region)
{
	const char *spec = getenv(KILN_AWS_RATELIMIT_ENV);
	size_t i;
	int error = 0;

	*out = NULL;
	if (spec && !strcasecmp(spec, "off"))
		return 0;
	if (!region)
		region = "";
	pthread_mutex_lock(&shared_lock);
	for (i = 0; i < KILN_ARRAY_SIZE(shared) && shared[i].rl; i++) {
		if (!strcmp(shared[i].region, region)) {
			*out = shared[i].rl;
			goto done;
		}
	}
	if (i == KILN_ARRAY_SIZE(shared)) {
		error = kiln_error_set(KILN_ENOMEM, "rate limits for more than %zu regions",
				       KILN_ARRAY_SIZE(shared));
		goto done;
	}
	if ((error = kiln_aws_ratelimit_new(&shared[i].rl, spec && *spec ? spec : NULL)) < 0)
		goto done;
	snprintf(shared[i].region, sizeof(shared[i].region), "%s", region);
	*out = shared[i].rl;
done:
	pthread_mutex_unlock(&shared_lock);
	return error;
}

/* ---- classes ------------------------------------------------------------------- */

static bool has_prefix(const char *s, const char *prefix)
{
	return !strncmp(s, prefix, strlen(prefix));
}

static bool is_digits(const char *s, size_t n)
{
	size_t i;
	if (!n)
		return false;
	for (i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/*
 * Whether a form field name selects or pages (front.py's test): Filter.*,
 * MaxResults, NextToken, a name ending in Id, Ids, Id.N or Ids.N, or any
 * name ending in .N (a list).
 */
static bool selects(const char *k, size_t n)
{
	const char *dot;
	size_t base = n;

	if ((n >= 7 && !memcmp(k, "Filter.", 7)) || (n == 10 && !memcmp(k, "MaxResults", 10)) ||
	    (n == 9 && !memcmp(k, "NextToken", 9)))
		return true;
	dot = memrchr(k, '.', n);
	if (dot && is_digits(dot + 1, n - (size_t)(dot - k) - 1))
		return true; /* ends in .N */
	if (n >= 3 && !memcmp(k + n - 3, "Ids", 3))
		base = n - 3;
	else if (n >= 2 && !memcmp(k + n - 2, "Id", 2))
		base = n - 2;
	return base != n;
}

/* Counts fields named "prefix.N" and tells whether any field selects. */
static void scan_body(kiln_view body, const char *prefix, unsigned *count, bool *any_select)
{
	const char *p = body.ptr, *end = body.ptr + body.len;
	size_t plen = prefix ? strlen(prefix) : 0;

	*count = 0;
	*any_select = false;
	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *field_end = amp ? amp : end;
		const char *eq = memchr(p, '=', (size_t)(field_end - p));
		size_t klen = (size_t)((eq ? eq : field_end) - p);
		/* names kiln sends are plain ASCII: no percent-decoding needed to match */
		if (selects(p, klen))
			*any_select = true;
		if (prefix && klen > plen + 1 && !memcmp(p, prefix, plen) && p[plen] == '.' &&
		    is_digits(p + plen + 1, klen - plen - 1))
			(*count)++;
		p = amp ? amp + 1 : end;
	}
}

/* The decimal value of field name in a form body, or def. */
static unsigned field_uint(kiln_view body, const char *name, unsigned def)
{
	const char *p = body.ptr, *end = body.ptr + body.len;
	size_t nlen = strlen(name);

	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *field_end = amp ? amp : end;
		if ((size_t)(field_end - p) > nlen && !memcmp(p, name, nlen) && p[nlen] == '=') {
			const char *v = p + nlen + 1;
			unsigned long n = 0;
			if (v == field_end)
				return def;
			for (; v < field_end; v++) {
				if (*v < '0' || *v > '9' || n > 1000000)
					return def;
				n = n * 10 + (unsigned long)(*v - '0');
			}
			return n ? (unsigned)n : def;
		}
		p = amp ? amp + 1 : end;
	}
	return def;
}

static bool has_bucket(const struct kiln_aws_ratelimit *rl, const char *name)
{
	size_t i;
	if (!rl)
		return true;
	for (i = 0; i < rl->n; i++)
		if (!strcmp(rl->buckets[i].name, name))
			return true;
	return false;
}

void kiln_aws_ratelimit_classify(kiln_aws_rate_class *out, const kiln_aws_ratelimit *rl,
				 const char *action, kiln_view body)
{
	static const char *const named[] = { "RunInstances", "TerminateInstances", "CreateTags" };
	const char *cls = NULL;
	unsigned ids;
	bool any_select;
	size_t i;

	memset(out, 0, sizeof(*out));
	out->cost = 1;
	if (!action || !*action)
		return;
	/* the first class that applies and that the limiter has, as front.py maps */
	for (i = 0; i < KILN_ARRAY_SIZE(named) && !cls; i++)
		if (!strcmp(action, named[i]) && has_bucket(rl, action))
			cls = action;
	for (i = 0; i < KILN_ARRAY_SIZE(resource_intensive) && !cls; i++)
		if (!strcmp(action, resource_intensive[i]) && has_bucket(rl, "resource_intensive"))
			cls = "resource_intensive";
	if (!cls && (has_prefix(action, "Describe") || has_prefix(action, "Get") ||
		     has_prefix(action, "List") || has_prefix(action, "Search"))) {
		scan_body(body, NULL, &ids, &any_select);
		if (!any_select && has_bucket(rl, "unfiltered"))
			cls = "unfiltered";
		else if (has_bucket(rl, "describe"))
			cls = "describe";
		else
			cls = ""; /* a non-mutating action is never "mutating" */
	}
	if (!cls && has_bucket(rl, "mutating"))
		cls = "mutating";
	snprintf(out->bucket, sizeof(out->bucket), "%s", cls ? cls : "");
	/* the resource bucket and what it costs */
	if (!strcmp(action, "RunInstances")) {
		snprintf(out->resource, sizeof(out->resource), "%s", action);
		out->cost = field_uint(body, "MaxCount", 1);
	} else if (!strcmp(action, "StartInstances") || !strcmp(action, "StopInstances") ||
		   !strcmp(action, "TerminateInstances")) {
		snprintf(out->resource, sizeof(out->resource), "%s", action);
		scan_body(body, "InstanceId", &ids, &any_select);
		out->cost = ids ? ids : 1;
	}
}

/* ---- reserving ----------------------------------------------------------------- */

static double level_at(const struct bucket *b, double t_ms)
{
	double lvl = b->tokens + (t_ms - b->t_ms) * b->rate / 1000.0;
	return lvl < b->burst ? lvl : b->burst;
}

/* The earliest time >= now at which b holds need tokens, after its reservations. */
static double ready_at(struct bucket *b, double now, double cost)
{
	double need = KILN_MIN(cost + SPARE_TOKENS, b->burst);
	double t0, lvl;

	if (!b->used) {
		b->used = true;
		b->tokens = b->burst;
		b->t_ms = now;
	}
	t0 = b->t_ms > now ? b->t_ms : now;
	lvl = level_at(b, t0);
	return lvl >= need ? t0 : t0 + (need - lvl) * 1000.0 / b->rate;
}

static void take_at(struct bucket *b, double t_ms, double cost)
{
	b->tokens = level_at(b, t_ms) - KILN_MIN(cost, b->burst);
	b->t_ms = t_ms;
}

int kiln_aws_ratelimit_acquire(kiln_aws_ratelimit *rl, const char *action, kiln_view body,
			       uint64_t *waited_ms, uint64_t *at_ms)
{
	kiln_aws_rate_class cls;
	struct bucket *b[2] = { NULL, NULL };
	double cost[2] = { 1, 1 };
	double now, t;
	uint64_t now_ms, wait = 0;
	size_t i;

	if (waited_ms)
		*waited_ms = 0;
	if (at_ms)
		*at_ms = kiln_clock_now_ms();
	if (!rl)
		return 0;
	pthread_mutex_lock(&rl->lock);
	kiln_aws_ratelimit_classify(&cls, rl, action, body);
	if (cls.bucket[0])
		b[0] = find(rl, cls.bucket);
	if (cls.resource[0]) {
		char name[64];
		snprintf(name, sizeof(name), "resource:%s", cls.resource);
		b[1] = find(rl, name);
		cost[1] = cls.cost;
	}
	now_ms = kiln_clock_now_ms();
	now = (double)now_ms;
	t = now;
	for (i = 0; i < 2; i++)
		if (b[i])
			t = KILN_MAX(t, ready_at(b[i], now, cost[i]));
	for (i = 0; i < 2; i++)
		if (b[i])
			take_at(b[i], t, cost[i]);
	pthread_mutex_unlock(&rl->lock);

	/* whole milliseconds, rounded up: never early */
	if (t > now)
		wait = (uint64_t)(t - now) + ((double)(uint64_t)(t - now) < t - now ? 1 : 0);
	if (waited_ms)
		*waited_ms = wait;
	if (at_ms)
		*at_ms = now_ms + wait;
	return wait ? kiln_sleep_ms(wait) : 0;
}

bool kiln_aws_ratelimit_bucket(const kiln_aws_ratelimit *rl, const char *name, double *burst,
			       double *rate)
{
	size_t i;
	if (!rl)
		return false;
	for (i = 0; i < rl->n; i++) {
		if (!strcmp(rl->buckets[i].name, name)) {
			if (burst)
				*burst = rl->buckets[i].burst;
			if (rate)
				*rate = rl->buckets[i].rate;
			return true;
		}
	}
	return false;
}
