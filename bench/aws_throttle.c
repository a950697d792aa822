/*
 * aws_throttle: drives the aws provider through more EC2 calls of each
 * throttling class than EC2's token buckets allow at once, in one process,
 * and prints how long each phase took beside the least time the buckets
 * allow for it. bench/throttle.sh runs it against moto behind the test
 * front, which enforces the same buckets.
 *
 *   aws_throttle --front-config            the front's "buckets" and
 *                                          "resource_buckets", from kiln's table
 *   aws_throttle [--instances N] [--batch B] [--describes D] [--tags T]
 *                [--stops S] [--terminate-batch K] [--image AMI]
 *
 * Phases, each starting with its buckets full (no phase touches another's):
 *   launch     N instances, B per RunInstances (RunInstances; resource RunInstances);
 *              B is 10 by default: moto takes longer to make 100 instances than
 *              EC2's RunInstances bucket takes to refill, and the point is the
 *              buckets, not moto (--batch 100 shows the difference);
 *   parallel   three threads, each with its own provider (so its own client and
 *              connections; one limiter for the process): D DescribeInstances of
 *              one instance each (describe), T CreateTags of one instance each
 *              (CreateTags), StopInstances of all N in S calls (mutating;
 *              resource StopInstances);
 *   terminate  all N, K per TerminateInstances (TerminateInstances; resource).
 * A phase's bound is, over the buckets it draws on, the longest
 * max(0, (tokens taken - burst) / rate): what a client that sent every
 * request at the first instant the bucket allowed, with no latency, would
 * need. The run's bound is the sum (the phases follow each other).
 *
 * Output: one line per phase and a total, then one JSON object (for the
 * script) on the last line. Exit 1 if any call failed.
 */
#include <getopt.h>
#include <pthread.h>

#include "aws/provider.h"
#include "aws/ratelimit.h"
#include "core/clock.h"
#include "core/error.h"

struct opts {
	unsigned instances, batch, describes, tags, stops, term_batch;
	const char *image;
};

static kiln_aws_ratelimit *table; /* the bucket sizes, for the bounds */

static double bucket_time(const char *name, double tokens)
{
	double burst, rate;
	if (!kiln_aws_ratelimit_bucket(table, name, &burst, &rate) || tokens <= burst)
		return 0;
	return (tokens - burst) / rate;
}

static int open_cloud(kiln_cloud **out)
{
	if (kiln_aws_cloud_new(out, NULL, NULL) < 0) {
		fprintf(stderr, "aws_throttle: %s\n", kiln_error_last()->message);
		return -1;
	}
	return 0;
}

/* Sums the counters of c into acc (by name). */
static void add_counters(json_t *acc, kiln_cloud *c)
{
	size_t n, i;
	const kiln_aws_counter *k = kiln_aws_client_counters(kiln_aws_cloud_client(c), &n);
	for (i = 0; i < n; i++) {
		json_t *o = json_object_get(acc, k[i].name);
		if (!o) {
			o = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "calls", 0, "attempts", 0, "failures", 0,
				      "throttled", 0, "waits", 0, "wait_ms", 0);
			json_object_set_new(acc, k[i].name, o);
		}
#define ADD(f) json_object_set_new(o, #f, json_integer(json_integer_value(json_object_get(o, #f)) + (json_int_t)k[i].f))
		ADD(calls);
		ADD(attempts);
		ADD(failures);
		ADD(throttled);
		ADD(waits);
		ADD(wait_ms);
#undef ADD
	}
}

static uint64_t failures;
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;

static void failed(const char *what)
{
	pthread_mutex_lock(&fail_lock);
	if (failures++ < 5)
		fprintf(stderr, "aws_throttle: %s: %s\n", what, kiln_error_last()->message);
	pthread_mutex_unlock(&fail_lock);
}

/* ---- the parallel phase's workers -------------------------------------------------- */

enum job { DESCRIBE, TAG, STOP };

struct worker {
	enum job job;
	const struct opts *o;
	char **ids;
	size_t n_ids;
	kiln_cloud *cloud;
	uint64_t ms;
	unsigned calls; /* made: the bound counts these */
};

static void *work(void *arg)
{
	struct worker *w = arg;
	uint64_t t0 = kiln_clock_now_ms();
	unsigned i;

	if (w->job == DESCRIBE) {
		for (i = 0; i < w->o->describes; i++) {
			kiln_instance_query q = { 0 };
			kiln_instance_list l = { 0 };
			const char *id = w->ids[i % w->n_ids];
			q.ids = &id;
			q.n_ids = 1;
			if (w->cloud->ops->instances_describe(w->cloud, &q, &l) < 0)
				failed("describe");
			w->calls++;
			kiln_instance_list_release(&l);
		}
	} else if (w->job == TAG) {
		kiln_tags tags = KILN_TAGS_INIT;
		char v[32];
		for (i = 0; i < w->o->tags; i++) {
			snprintf(v, sizeof(v), "%u", i);
			kiln_tags_set(&tags, "kiln:bench-tag", v);
			if (w->cloud->ops->tags_create(w->cloud, (const char *const *)&w->ids[i % w->n_ids], 1, &tags) < 0)
				failed("tag");
			w->calls++;
		}
		kiln_tags_release(&tags);
	} else {
		size_t per = (w->n_ids + w->o->stops - 1) / w->o->stops, at;
		for (at = 0; at < w->n_ids; at += per, w->calls++)
			if (w->cloud->ops->instances_stop(w->cloud, (const char *const *)&w->ids[at],
							  KILN_MIN(per, w->n_ids - at)) < 0)
				failed("stop");
	}
	w->ms = kiln_clock_now_ms() - t0;
	return NULL;
}

static void phase_line(json_t *phases, const char *name, const char *calls, double bound, uint64_t ms)
{
	double wall = (double)ms / 1000.0;
	printf("%-10s %-58s %8.2f %8.2f %7.3f\n", name, calls, bound, wall, bound > 0 ? wall / bound : 0.0);
	json_array_append_new(phases, json_pack("{s:s,s:f,s:f}", "phase", name, "bound_s", bound, "wall_s", wall));
}

static int front_config(void)
{
	static const char *const names[] = { "RunInstances", "TerminateInstances", "CreateTags", "describe",
					     "unfiltered", "mutating", "resource_intensive" };
	static const char *const resources[] = { "RunInstances", "StartInstances", "StopInstances",
						 "TerminateInstances" };
	json_t *b = json_object(), *r = json_object();
	double burst, rate;
	char name[64];
	size_t i;

	for (i = 0; i < KILN_ARRAY_SIZE(names); i++)
		if (kiln_aws_ratelimit_bucket(table, names[i], &burst, &rate))
			json_object_set_new(b, names[i], json_pack("[f,f]", burst, rate));
	for (i = 0; i < KILN_ARRAY_SIZE(resources); i++) {
		snprintf(name, sizeof(name), "resource:%s", resources[i]);
		if (kiln_aws_ratelimit_bucket(table, name, &burst, &rate))
			json_object_set_new(r, resources[i], json_pack("[f,f]", burst, rate));
	}
	{
		json_t *cfg = json_pack("{s:o,s:o,s:s}", "buckets", b, "resource_buckets", r, "bucket_scope", "class");
		json_dumpf(cfg, stdout, JSON_COMPACT | JSON_SORT_KEYS);
		json_decref(cfg);
	}
	putchar('\n');
	kiln_aws_ratelimit_free(table);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "instances", required_argument, NULL, 'n' }, { "batch", required_argument, NULL, 'b' },
		{ "describes", required_argument, NULL, 'd' }, { "tags", required_argument, NULL, 't' },
		{ "stops", required_argument, NULL, 's' },     { "terminate-batch", required_argument, NULL, 'k' },
		{ "image", required_argument, NULL, 'i' },     { "front-config", no_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { 1000, 10, 500, 300, 150, 5, "ami-03cf127a" };
	kiln_cloud *cloud = NULL;
	kiln_strings ids = { 0 };
	json_t *counters = json_object(), *phases = json_array();
	struct worker w[3];
	pthread_t th[3];
	uint64_t t0, ms, total_ms = 0;
	double bound, total_bound = 0, d_bound, t_bound, s_bound;
	char calls[160], token[64];
	unsigned i, launches, terms;
	int c;

	/* the defaults, whatever KILN_AWS_RATE_LIMIT says: the front is configured from them */
	if (kiln_aws_ratelimit_new(&table, NULL) < 0)
		return 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'n': o.instances = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'b': o.batch = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'd': o.describes = (unsigned)strtoul(optarg, NULL, 10); break;
		case 't': o.tags = (unsigned)strtoul(optarg, NULL, 10); break;
		case 's': o.stops = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'k': o.term_batch = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'i': o.image = optarg; break;
		case 'f': return front_config();
		default: fprintf(stderr, "usage: see the header of bench/aws_throttle.c\n"); return 2;
		}
	}
	if (!o.instances || !o.batch || !o.stops || !o.term_batch)
		return 2;
	if (open_cloud(&cloud) < 0)
		return 1;
	printf("%-10s %-58s %8s %8s %7s\n", "phase", "calls", "bound_s", "wall_s", "ratio");

	/* launch */
	t0 = kiln_clock_now_ms();
	launches = (o.instances + o.batch - 1) / o.batch;
	for (i = 0; i < launches; i++) {
		kiln_launch spec = { 0 };
		kiln_instance_list l = { 0 };
		kiln_tags tags = KILN_TAGS_INIT;
		size_t j;
		snprintf(token, sizeof(token), "kiln-bench-throttle-%lld-%u", (long long)kiln_clock_wall_ms(), i);
		kiln_tags_set(&tags, "kiln:bench", "throttle");
		spec.image_id = o.image;
		spec.instance_type = "t3.micro";
		spec.count = KILN_MIN(o.batch, o.instances - i * o.batch);
		spec.client_token = token;
		spec.tags = &tags;
		if (cloud->ops->instances_launch(cloud, &spec, &l) < 0)
			failed("launch");
		for (j = 0; j < l.n; j++)
			kiln_strings_add(&ids, l.items[j].id);
		kiln_instance_list_release(&l);
		kiln_tags_release(&tags);
	}
	ms = kiln_clock_now_ms() - t0;
	bound = KILN_MAX(bucket_time("RunInstances", launches), bucket_time("resource:RunInstances", o.instances));
	snprintf(calls, sizeof(calls), "RunInstances %u (%u instances)", launches, o.instances);
	phase_line(phases, "launch", calls, bound, ms);
	total_bound += bound;
	total_ms += ms;
	if (ids.n != o.instances)
		/* (with KILN_AWS_RATE_LIMIT=off) carry on with what there is, to see the rest too */
		fprintf(stderr, "aws_throttle: launched %zu instances, not %u\n", ids.n, o.instances);
	if (!ids.n)
		return 1;

	/* describe, tag and stop at once, from three providers */
	t0 = kiln_clock_now_ms();
	for (i = 0; i < 3; i++) {
		w[i].job = (enum job)i;
		w[i].o = &o;
		w[i].ids = ids.items;
		w[i].n_ids = ids.n;
		w[i].calls = 0;
		if (open_cloud(&w[i].cloud) < 0)
			return 1;
		pthread_create(&th[i], NULL, work, &w[i]);
	}
	for (i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	ms = kiln_clock_now_ms() - t0;
	d_bound = bucket_time("describe", w[DESCRIBE].calls);
	t_bound = bucket_time("CreateTags", w[TAG].calls);
	s_bound = KILN_MAX(bucket_time("mutating", w[STOP].calls), bucket_time("resource:StopInstances", ids.n));
	bound = KILN_MAX(d_bound, KILN_MAX(t_bound, s_bound));
	snprintf(calls, sizeof(calls), "DescribeInstances %u, CreateTags %u, StopInstances %u", w[DESCRIBE].calls,
		 w[TAG].calls, w[STOP].calls);
	phase_line(phases, "parallel", calls, bound, ms);
	printf("%-10s   %-56s %8.2f %8.2f\n", "", "DescribeInstances", d_bound, (double)w[DESCRIBE].ms / 1000);
	printf("%-10s   %-56s %8.2f %8.2f\n", "", "CreateTags", t_bound, (double)w[TAG].ms / 1000);
	printf("%-10s   %-56s %8.2f %8.2f\n", "", "StopInstances", s_bound, (double)w[STOP].ms / 1000);
	total_bound += bound;
	total_ms += ms;
	for (i = 0; i < 3; i++) {
		add_counters(counters, w[i].cloud);
		kiln_cloud_free(w[i].cloud);
	}

	/* terminate */
	t0 = kiln_clock_now_ms();
	terms = 0;
	for (i = 0; i < ids.n; i += o.term_batch, terms++)
		if (cloud->ops->instances_terminate(cloud, (const char *const *)&ids.items[i],
						    KILN_MIN(o.term_batch, ids.n - i)) < 0)
			failed("terminate");
	ms = kiln_clock_now_ms() - t0;
	bound = KILN_MAX(bucket_time("TerminateInstances", terms),
			 bucket_time("resource:TerminateInstances", ids.n));
	snprintf(calls, sizeof(calls), "TerminateInstances %u", terms);
	phase_line(phases, "terminate", calls, bound, ms);
	total_bound += bound;
	total_ms += ms;
	add_counters(counters, cloud);

	printf("%-10s %-58s %8.2f %8.2f %7.3f\n", "total", "", total_bound, (double)total_ms / 1000,
	       (double)total_ms / 1000 / total_bound);
	{
		json_t *result = json_pack("{s:f,s:f,s:I,s:o,s:o}", "bound_s", total_bound, "wall_s",
					   (double)total_ms / 1000, "failures", (json_int_t)failures, "phases",
					   phases, "counters", counters);
		json_dumpf(result, stdout, JSON_COMPACT | JSON_SORT_KEYS);
		json_decref(result);
	}
	putchar('\n');
	kiln_cloud_free(cloud);
	kiln_strings_release(&ids);
	kiln_aws_ratelimit_free(table);
	return failures ? 1 : 0;
}
