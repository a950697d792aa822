/*
 * fuzz_fleet: the fleet-file reader (rollout/fleet.c, kiln_fleet_parse)
 * for each provider: "aws", "local", and none (the file's "provider" key,
 * else aws; KILN_PROVIDER is unset).
 *
 * Input: a fleet file's text (up to its first NUL, as the C string
 * kiln_fleet_parse takes), named SCRATCH/fleet.json: a directory made once
 * holding the user data files the seeds name (boot.sh, ud/boot.sh).
 *
 * Checked beyond "no crash, no leak":
 *  - a failure is KILN_EINVALID (or ENOMEM) with *out NULL and one line of
 *    message, positioned as fleet.h promises: "NAME:LINE:COL: ...", the
 *    line and column inside the text (a column may point just past a
 *    line's last character: the end of the text, a missing value);
 *  - a fleet accepted keeps fleet.h's promises: a valid name and image
 *    name, the provider asked for (or the file's), 1 <= batch_size <=
 *    desired, timeouts in their ranges, no kiln:/aws: or empty tag keys,
 *    no empty or repeated subnet or security group, at least one load
 *    balancer and only the provider's kind (target groups are ARNs; local:
 *    one HAProxy named after the fleet, listen ADDRESS:PORT, a health path
 *    starting with '/'), instance options only on aws, user data only with
 *    its file;
 *  - a round trip: the fleet written back as a fleet file (every field,
 *    top level, the instance options in the "aws" block as the file spells
 *    them) parses, for the same provider, to an equal fleet.
 */
#include "core/error.h"
#include "core/fs.h"
#include "core/registry.h"
#include "rollout/fleet.h"
#include "tests/fuzz/fuzz.h"

static char scratch[64];
static char name[128];

static void put(const char *rel, const char *text)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", scratch, rel);
	if (kiln_write_file_atomic(p, text, strlen(text), 0644) < 0)
		abort();
}

static void remove_scratch(void)
{
	kiln_remove_tree(scratch);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");
	char p[256];
	(void)argc;
	(void)argv;
	snprintf(scratch, sizeof(scratch), "%.40s/kiln-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(scratch))
		abort();
	atexit(remove_scratch);
	snprintf(p, sizeof(p), "%s/ud", scratch);
	if (kiln_mkdir_p(p, 0755) < 0)
		abort();
	put("boot.sh", "#!/bin/sh\necho hi\n");
	put("ud/boot.sh", "#!/bin/sh\necho ud\n");
	put("empty", "");
	snprintf(name, sizeof(name), "%s/fleet.json", scratch);
	unsetenv("KILN_PROVIDER");
	return 0;
}

/* ---- errors ---- */

/* The number of characters (not bytes) of line `line` (1-based), or -1. */
static long line_chars(const char *text, long line)
{
	const char *p = text, *nl;
	long n = 0;
	while (--line > 0) {
		if (!(p = strchr(p, '\n')))
			return -1;
		p++;
	}
	nl = strchr(p, '\n');
	for (; *p && p != nl; p++)
		n += ((unsigned char)*p & 0xC0) != 0x80;
	return n;
}

static void check_error(int rc, const kiln_fleet *f, const char *text)
{
	const kiln_error *e = kiln_error_last();
	size_t nlen = strlen(name);
	long line, col, chars;
	char *end;

	FUZZ_CHECK(f == NULL);
	FUZZ_CHECK(rc == KILN_EINVALID || rc == KILN_ENOMEM);
	if (rc == KILN_ENOMEM)
		return;
	FUZZ_CHECK(e->code == KILN_EINVALID && e->message[0]);
	FUZZ_CHECK(!strchr(e->message, '\n'));
	/* NAME:LINE:COL: message */
	FUZZ_CHECK(!strncmp(e->message, name, nlen) && e->message[nlen] == ':');
	line = strtol(e->message + nlen + 1, &end, 10);
	FUZZ_CHECK(end > e->message + nlen + 1 && *end == ':');
	col = strtol(end + 1, &end, 10);
	FUZZ_CHECK(*end == ':' && end[1] == ' ' && end[2]);
	FUZZ_CHECK(line >= 1 && col >= 1);
	chars = line_chars(text, line);
	if (chars < 0 || col > chars + 1)
		fprintf(stderr, "position %ld:%ld outside the text: %s\n", line, col, e->message);
	FUZZ_CHECK(chars >= 0 && col <= chars + 1);
}

/* ---- what an accepted fleet promises ---- */

static bool reserved_tag(const char *k)
{
	return !strncmp(k, "kiln:", 5) || !strncmp(k, "aws:", 4) || !*k;
}

static void check_fleet(const kiln_fleet *f, const char *provider)
{
	size_t i, j;

	FUZZ_CHECK(kiln_fleet_name_valid(f->name));
	FUZZ_CHECK(!strcmp(f->provider, "aws") || !strcmp(f->provider, "local"));
	FUZZ_CHECK(!provider || !strcmp(f->provider, provider));
	FUZZ_CHECK(f->path && !strcmp(f->path, name));
	FUZZ_CHECK(f->image && kiln_image_name_valid(f->image));
	FUZZ_CHECK(f->desired >= 1 && f->desired <= 10000);
	FUZZ_CHECK(f->batch_size >= 1 && f->batch_size <= f->desired);
	FUZZ_CHECK(f->batch_spec[0]);
	FUZZ_CHECK(f->retire == KILN_RETIRE_AT_END || f->retire == KILN_RETIRE_PER_BATCH);
	FUZZ_CHECK(!f->region || *f->region);
	FUZZ_CHECK(!f->instance_type || *f->instance_type);
	FUZZ_CHECK(!f->key_name || *f->key_name);
	FUZZ_CHECK(!f->iam_instance_profile || *f->iam_instance_profile);
	FUZZ_CHECK(f->health_timeout_s >= 1 && f->health_timeout_s <= 86400);
	FUZZ_CHECK(f->health_grace_s >= 0 && f->health_grace_s <= 86400);
	FUZZ_CHECK(f->warmup_s >= 0 && f->warmup_s <= 86400);
	FUZZ_CHECK(f->drain_timeout_s == -1 ||
		   (f->drain_timeout_s >= 0 && f->drain_timeout_s <= 86400));
	for (i = 0; i < f->tags.n; i++)
		FUZZ_CHECK(!reserved_tag(f->tags.items[i].key));
	for (i = 0; i < f->subnet_ids.n; i++) {
		FUZZ_CHECK(*f->subnet_ids.items[i]);
		for (j = 0; j < i; j++)
			FUZZ_CHECK(strcmp(f->subnet_ids.items[i], f->subnet_ids.items[j]));
	}
	for (i = 0; i < f->security_group_ids.n; i++) {
		FUZZ_CHECK(*f->security_group_ids.items[i]);
		for (j = 0; j < i; j++)
			FUZZ_CHECK(strcmp(f->security_group_ids.items[i],
					  f->security_group_ids.items[j]));
	}
	FUZZ_CHECK((f->user_data_file != NULL) == (f->user_data != NULL));
	FUZZ_CHECK(!f->user_data || strlen(f->user_data) <= 16 * 1024);
	FUZZ_CHECK(f->n_lbs >= 1 && f->lbs);
	if (!strcmp(f->provider, "local")) {
		const kiln_lb *lb = &f->lbs[0];
		FUZZ_CHECK(f->n_lbs == 1 && lb->kind == KILN_LB_LOCAL);
		FUZZ_CHECK(!strcmp(lb->ref, f->name));
		FUZZ_CHECK(lb->listen && strchr(lb->listen, ':'));
		FUZZ_CHECK(lb->health_path && lb->health_path[0] == '/');
		FUZZ_CHECK(lb->interval_s >= 1 && lb->interval_s <= 3600);
		FUZZ_CHECK(lb->rise >= 1 && lb->rise <= 100 && lb->fall >= 1 && lb->fall <= 100);
		FUZZ_CHECK(lb->target_port >= 1 && lb->target_port <= 65535);
		FUZZ_CHECK(f->launch_options == NULL);
	} else {
		for (i = 0; i < f->n_lbs; i++) {
			const kiln_lb *lb = &f->lbs[i];
			FUZZ_CHECK(lb->kind == KILN_LB_TARGET_GROUP || lb->kind == KILN_LB_CLASSIC);
			FUZZ_CHECK(lb->ref && *lb->ref);
			FUZZ_CHECK(lb->kind != KILN_LB_TARGET_GROUP || !strncmp(lb->ref, "arn:", 4));
			FUZZ_CHECK(!lb->listen && !lb->health_path);
		}
		FUZZ_CHECK(!f->launch_options || (json_is_object(f->launch_options) &&
						   json_object_size(f->launch_options)));
	}
}

/* ---- the round trip ---- */

static void set(json_t *o, const char *key, json_t *v)
{
	FUZZ_CHECK(v && json_object_set_new(o, key, v) == 0);
}

static void set_str(json_t *o, const char *key, const char *s)
{
	if (s)
		set(o, key, json_string(s));
}

static void set_strings(json_t *o, const char *key, const kiln_strings *l)
{
	json_t *a = json_array();
	size_t i;
	FUZZ_CHECK(a);
	for (i = 0; i < l->n; i++)
		FUZZ_CHECK(json_array_append_new(a, json_string(l->items[i])) == 0);
	if (l->n)
		set(o, key, a);
	else
		json_decref(a);
}

/* launch_options back into the file's keys (core/instance_options.h) */
static void put_instance_options(json_t *aws, const json_t *opts)
{
	static const char *const rv[][2] = { { "size_gb", "root_volume_size_gb" },
					     { "type", "root_volume_type" },
					     { "iops", "root_volume_iops" },
					     { "throughput", "root_volume_throughput" } };
	json_t *m = json_object_get(opts, "metadata_options");
	json_t *r = json_object_get(opts, "root_volume");
	size_t i;

	if (m)
		set(aws, "metadata_options", json_deep_copy(m));
	for (i = 0; r && i < KILN_ARRAY_SIZE(rv); i++)
		if (json_object_get(r, rv[i][0]))
			set(aws, rv[i][1], json_deep_copy(json_object_get(r, rv[i][0])));
}

static char *write_back(const kiln_fleet *f)
{
	json_t *o = json_object(), *tags = json_object();
	size_t i;
	char *text;

	FUZZ_CHECK(o && tags);
	set_str(o, "name", f->name);
	set_str(o, "provider", f->provider);
	set_str(o, "region", f->region);
	set_str(o, "image", f->image);
	set(o, "desired", json_integer(f->desired));
	if (strchr(f->batch_spec, '%'))
		set_str(o, "batch_size", f->batch_spec);
	else
		set(o, "batch_size", json_integer(strtoll(f->batch_spec, NULL, 10)));
	set_str(o, "retire", kiln_retire_name(f->retire));
	set_str(o, "instance_type", f->instance_type);
	set_strings(o, "subnet_ids", &f->subnet_ids);
	set_strings(o, "security_group_ids", &f->security_group_ids);
	set_str(o, "key_name", f->key_name);
	set_str(o, "iam_instance_profile", f->iam_instance_profile);
	set_str(o, "user_data_file", f->user_data_file);
	for (i = 0; i < f->tags.n; i++)
		set(tags, f->tags.items[i].key, json_string(f->tags.items[i].value));
	set(o, "tags", tags);
	set(o, "health_timeout_s", json_integer(f->health_timeout_s));
	set(o, "health_grace_s", json_integer(f->health_grace_s));
	set(o, "warmup_s", json_integer(f->warmup_s));
	if (f->drain_timeout_s >= 0)
		set(o, "drain_timeout_s", json_integer(f->drain_timeout_s));
	if (!strcmp(f->provider, "local")) {
		const kiln_lb *lb = &f->lbs[0];
		set(o, "load_balancer",
		    json_pack("{s:s,s:i,s:{s:s,s:i,s:i,s:i}}", "listen", lb->listen, "target_port",
			      lb->target_port, "health", "path", lb->health_path, "interval_s",
			      lb->interval_s, "rise", lb->rise, "fall", lb->fall));
	} else {
		json_t *tgs = json_array(), *elbs = json_array(), *aws = json_object();
		FUZZ_CHECK(tgs && elbs && aws);
		for (i = 0; i < f->n_lbs; i++)
			FUZZ_CHECK(json_array_append_new(f->lbs[i].kind == KILN_LB_TARGET_GROUP ? tgs : elbs,
							 json_string(f->lbs[i].ref)) == 0);
		set(o, "target_group_arns", tgs);
		set(o, "load_balancer_names", elbs);
		if (f->launch_options)
			put_instance_options(aws, f->launch_options);
		set(o, "aws", aws);
	}
	FUZZ_CHECK((text = json_dumps(o, JSON_INDENT(1) | JSON_PRESERVE_ORDER)));
	json_decref(o);
	return text;
}

static bool same(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

static void same_strings(const kiln_strings *a, const kiln_strings *b)
{
	size_t i;
	FUZZ_CHECK(a->n == b->n);
	for (i = 0; i < a->n; i++)
		FUZZ_CHECK(!strcmp(a->items[i], b->items[i]));
}

static void check_round_trip(const kiln_fleet *f)
{
	char *text = write_back(f);
	kiln_fleet *g = NULL;
	size_t i;
	int rc;

	kiln_error_clear();
	rc = kiln_fleet_parse(&g, name, text, f->provider);
	if (rc < 0)
		fprintf(stderr, "written back, it does not parse: %s\n%s\n",
			kiln_error_last()->message, text);
	FUZZ_CHECK(rc == 0);
	FUZZ_CHECK(!strcmp(f->name, g->name) && !strcmp(f->provider, g->provider));
	FUZZ_CHECK(same(f->region, g->region) && same(f->image, g->image));
	FUZZ_CHECK(f->desired == g->desired && f->batch_size == g->batch_size);
	FUZZ_CHECK(!strcmp(f->batch_spec, g->batch_spec) && f->retire == g->retire);
	FUZZ_CHECK(same(f->instance_type, g->instance_type));
	same_strings(&f->subnet_ids, &g->subnet_ids);
	same_strings(&f->security_group_ids, &g->security_group_ids);
	FUZZ_CHECK(same(f->key_name, g->key_name));
	FUZZ_CHECK(same(f->iam_instance_profile, g->iam_instance_profile));
	FUZZ_CHECK(same(f->user_data_file, g->user_data_file) && same(f->user_data, g->user_data));
	FUZZ_CHECK(f->tags.n == g->tags.n);
	for (i = 0; i < f->tags.n; i++) {
		FUZZ_CHECK(!strcmp(f->tags.items[i].key, g->tags.items[i].key));
		FUZZ_CHECK(!strcmp(f->tags.items[i].value, g->tags.items[i].value));
	}
	FUZZ_CHECK((f->launch_options == NULL) == (g->launch_options == NULL));
	FUZZ_CHECK(!f->launch_options || json_equal(f->launch_options, g->launch_options));
	FUZZ_CHECK(f->n_lbs == g->n_lbs);
	for (i = 0; i < f->n_lbs; i++) {
		const kiln_lb *a = &f->lbs[i], *b = &g->lbs[i];
		FUZZ_CHECK(a->kind == b->kind && !strcmp(a->ref, b->ref));
		FUZZ_CHECK(same(a->listen, b->listen) && same(a->health_path, b->health_path));
		FUZZ_CHECK(a->interval_s == b->interval_s && a->rise == b->rise &&
			   a->fall == b->fall && a->target_port == b->target_port);
	}
	FUZZ_CHECK(f->health_timeout_s == g->health_timeout_s);
	FUZZ_CHECK(f->health_grace_s == g->health_grace_s && f->warmup_s == g->warmup_s);
	FUZZ_CHECK(f->drain_timeout_s == g->drain_timeout_s);
	kiln_fleet_free(g);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const providers[] = { "aws", "local", NULL };
	char *text = fuzz_cstring(data, size);
	size_t i;

	for (i = 0; i < KILN_ARRAY_SIZE(providers); i++) {
		kiln_fleet *f = NULL;
		int rc;

		kiln_error_clear();
		rc = kiln_fleet_parse(&f, name, text, providers[i]);
		if (rc < 0) {
			check_error(rc, f, text);
			continue;
		}
		FUZZ_CHECK(rc == 0 && f);
		check_fleet(f, providers[i]);
		check_round_trip(f);
		kiln_fleet_free(f);
	}
	free(text);
	kiln_error_clear();
	return 0;
}
