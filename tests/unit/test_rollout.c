/*
 * The rollout engine over the in-memory provider and the virtual clock:
 * both retire modes, every failure path, cancellation, the lock, polling
 * cost, and every kill point (stop after each journal write, then settle
 * with a fresh engine by --resume or by rollback).
 *
 * Two checks run inside every test through memcloud_on_call: healthy
 * registered capacity in every target group never drops below its floor
 * (min(desired, what the fleet had)), and after a simulated death nothing
 * reaches the cloud.
 */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/registry.h"
#include "rollout/engine.h"
#include "rollout/lock.h"
#include "rollout/state.h"
#include "tests/support/memcloud.h"
#include "tests/support/test.h"

#define TG1 "arn:aws:elasticloadbalancing:mem-1:123456789012:targetgroup/web/1"
#define TG2 "arn:aws:elasticloadbalancing:mem-1:123456789012:targetgroup/web2/2"

struct world {
	char *dir;
	memcloud *mc;
	kiln_cloud *c;
	kiln_fleet *fleet;
	char v1[KILN_ID_MAX], v2[KILN_ID_MAX], v3[KILN_ID_MAX];
	long dead_pid;
	/* the capacity invariant */
	bool check;
	unsigned floor;
	unsigned violations;
	char violation[256];
	/* a simulated SIGKILL after journal write kill_at */
	unsigned kill_at;
	unsigned writes;
	bool dead;
	/* per-test scripting, called before every provider call */
	int (*hook)(struct world *w, const char *op);
	unsigned n_hook;
	/* events seen */
	unsigned n_events;
	char last_step[512];
};

static long dead_pid(void)
{
	pid_t p = fork();
	if (p == 0)
		_exit(0);
	assert_true(p > 0);
	waitpid(p, NULL, 0);
	return (long)p;
}

static void on_event(void *ctx, const kiln_event *ev)
{
	struct world *w = ctx;
	w->n_events++;
	if (!strcmp(ev->name, "step"))
		snprintf(w->last_step, sizeof(w->last_step), "%s", ev->message);
}

static void check_capacity(struct world *w, const char *op)
{
	size_t l;
	for (l = 0; l < w->fleet->n_lbs; l++) {
		size_t n = memcloud_count_targets(w->mc, w->fleet->lbs[l].ref, KILN_HEALTH_HEALTHY);
		if (n < w->floor) {
			if (!w->violations)
				snprintf(w->violation, sizeof(w->violation),
					 "before %s: %zu healthy in %s, floor %u", op, n, w->fleet->lbs[l].ref,
					 w->floor);
			w->violations++;
		}
	}
}

static int on_call(void *ctx, const char *op)
{
	struct world *w = ctx;
	if (w->dead)
		return KILN_ERROR; /* a dead process makes no calls: fail any that slips through */
	if (w->check)
		check_capacity(w, op);
	if (w->hook)
		return w->hook(w, op);
	return 0;
}

static int journal_hook(void *ctx, unsigned seq, const json_t *entry)
{
	struct world *w = ctx;
	(void)seq;
	(void)entry;
	w->writes++;
	if (w->kill_at && w->writes == w->kill_at) {
		w->dead = true;
		return KILN_ERROR;
	}
	return 0;
}

static kiln_events sink(struct world *w)
{
	kiln_events ev = { on_event, w };
	return ev;
}

static kiln_rollout_opts opts_for(struct world *w, const kiln_events *ev)
{
	kiln_rollout_opts o;
	memset(&o, 0, sizeof(o));
	o.cloud = w->c;
	o.fleet = w->fleet;
	o.events = ev;
	o.state_dir = w->dir;
	o.host = "testhost";
	o.pid = w->dead_pid; /* so that a later engine sees this one's lock as dead */
	o.journal_hook = journal_hook;
	o.journal_hook_ctx = w;
	return o;
}

static void load_fleet(struct world *w, const char *fmt, ...) KILN_PRINTF(2, 3);

static void load_fleet(struct world *w, const char *fmt, ...)
{
	char text[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	kiln_fleet_free(w->fleet);
	w->fleet = NULL;
	if (kiln_fleet_parse(&w->fleet, "web.json", text, "aws") < 0)
		fail_msg("fleet: %s", kiln_error_last()->message);
}

/* A fleet file: desired, batch_size (JSON text), retire, subnets, target groups. */
static void fleet(struct world *w, unsigned desired, const char *batch, const char *retire,
		  unsigned subnets, unsigned tgs)
{
	load_fleet(w,
		   "{\"name\":\"web\",\"image\":\"web\",\"desired\":%u,\"batch_size\":%s,\"retire\":\"%s\","
		   "\"instance_type\":\"t3.micro\",\"subnet_ids\":%s,\"target_group_arns\":%s,"
		   "\"health_timeout_s\":120,\"health_grace_s\":20}",
		   desired, batch, retire,
		   subnets == 1 ? "[\"subnet-a\"]" : subnets == 2 ? "[\"subnet-a\",\"subnet-b\"]" : "[]",
		   tgs == 2 ? "[\"" TG1 "\",\"" TG2 "\"]" : "[\"" TG1 "\"]");
}

static struct world *world_new(void)
{
	struct world *w = calloc(1, sizeof(*w));
	assert_non_null(w);
	w->dir = kiln_test_mktmp();
	kiln_test_clock_install(1764100000000LL);
	kiln_cancel_reset();
	w->mc = memcloud_new();
	w->c = memcloud_cloud(w->mc);
	snprintf(w->v1, sizeof(w->v1), "%s", memcloud_add_image(w->mc, "web", 1, NULL));
	snprintf(w->v2, sizeof(w->v2), "%s", memcloud_add_image(w->mc, "web", 2, NULL));
	snprintf(w->v3, sizeof(w->v3), "%s", memcloud_add_image(w->mc, "web", 3, NULL));
	w->dead_pid = dead_pid();
	memcloud_on_call(w->mc, on_call, w);
	fleet(w, 4, "1", "at_end", 1, 1);
	return w;
}

static void world_free(struct world *w)
{
	kiln_cancel_reset();
	kiln_cloud_free(w->c);
	kiln_fleet_free(w->fleet);
	kiln_test_clock_uninstall();
	kiln_test_rmtmp(w->dir);
	free(w);
}

/* n running instances of image in the fleet, registered and healthy in every target group. */
static void seed(struct world *w, const char *image, unsigned n)
{
	kiln_tags t = KILN_TAGS_INIT;
	kiln_strings ids = { 0 };
	size_t l;
	unsigned i;

	memcloud_on_call(w->mc, NULL, NULL);
	kiln_tags_set(&t, KILN_TAG_FLEET, "web");
	for (i = 0; i < n; i++)
		kiln_strings_add(&ids, memcloud_add_instance(w->mc, image, &t));
	for (l = 0; n && l < w->fleet->n_lbs; l++)
		assert_int_equal(w->c->ops->lb_register(w->c, &w->fleet->lbs[l],
							(const char *const *)ids.items, ids.n), 0);
	kiln_test_clock_advance(5000);
	kiln_tags_release(&t);
	kiln_strings_release(&ids);
	memcloud_on_call(w->mc, on_call, w);
}

static void image_of(struct world *w, const char *id, kiln_image *out)
{
	kiln_image_ref ref;
	memset(&ref, 0, sizeof(ref));
	snprintf(ref.id, sizeof(ref.id), "%s", id);
	memcloud_on_call(w->mc, NULL, NULL);
	assert_int_equal(kiln_registry_resolve(w->c, &ref, out), 0);
	memcloud_on_call(w->mc, on_call, w);
}

static int run_start(struct world *w, const char *image_id, kiln_rollout_result *res)
{
	kiln_events ev = sink(w);
	kiln_rollout_opts o = opts_for(w, &ev);
	kiln_image img;
	int rc;
	image_of(w, image_id, &img);
	rc = kiln_rollout_start(res, &o, &img, "rollout");
	kiln_image_release(&img);
	return rc;
}

static int run_resume(struct world *w, kiln_rollout_result *res)
{
	kiln_events ev = sink(w);
	kiln_rollout_opts o = opts_for(w, &ev);
	return kiln_rollout_resume(res, &o);
}

static int run_rollback(struct world *w, const char *image_id, kiln_rollout_result *res)
{
	kiln_events ev = sink(w);
	kiln_rollout_opts o = opts_for(w, &ev);
	kiln_image img;
	int rc;
	if (!image_id)
		return kiln_rollout_rollback(res, &o, NULL);
	image_of(w, image_id, &img);
	rc = kiln_rollout_rollback(res, &o, &img);
	kiln_image_release(&img);
	return rc;
}

/*
 * The fleet is exactly n instances of image, every one tagged with the
 * fleet, registered and healthy in every target group, and nothing else
 * runs or is registered anywhere: nothing orphaned, nothing untracked.
 */
static void assert_fleet_at(struct world *w, const char *image, unsigned n, const char *file, int line)
{
	kiln_instance_list all = { 0 };
	kiln_instance_query q = { 0 };
	unsigned on_image = 0;
	size_t i, l;

	memcloud_on_call(w->mc, NULL, NULL);
	kiln_test_clock_advance(60000); /* terminations and drains settle */
	assert_int_equal(w->c->ops->instances_describe(w->c, &q, &all), 0);
	for (i = 0; i < all.n; i++) {
		const kiln_instance *inst = &all.items[i];
		const char *f = kiln_tags_get(&inst->tags, KILN_TAG_FLEET);
		if (!f || strcmp(f, "web"))
			_fail(file, line), print_error("instance %s is not tagged with the fleet\n", inst->id);
		for (l = 0; l < w->fleet->n_lbs; l++)
			if (!memcloud_is_registered(w->mc, w->fleet->lbs[l].ref, inst->id)) {
				print_error("instance %s (%s) is running but not registered in %s\n", inst->id,
					    inst->image_id, w->fleet->lbs[l].ref);
				_fail(file, line);
			}
		on_image += !strcmp(inst->image_id, image);
	}
	if (all.n != n || on_image != n) {
		print_error("expected %u instances on %s, found %zu (%u on it)\n", n, image, all.n, on_image);
		_fail(file, line);
	}
	for (l = 0; l < w->fleet->n_lbs; l++) {
		if (memcloud_count_targets(w->mc, w->fleet->lbs[l].ref, KILN_HEALTH_HEALTHY) != n ||
		    memcloud_count_targets(w->mc, w->fleet->lbs[l].ref, KILN_HEALTH_UNKNOWN) != n) {
			print_error("%s: %zu healthy of %zu targets, expected %u\n", w->fleet->lbs[l].ref,
				    memcloud_count_targets(w->mc, w->fleet->lbs[l].ref, KILN_HEALTH_HEALTHY),
				    memcloud_count_targets(w->mc, w->fleet->lbs[l].ref, KILN_HEALTH_UNKNOWN), n);
			_fail(file, line);
		}
	}
	if (memcloud_max_launches_per_token(w->mc) > 1) {
		print_error("a launch token launched twice\n");
		_fail(file, line);
	}
	kiln_instance_list_release(&all);
	memcloud_on_call(w->mc, on_call, w);
}

#define assert_fleet(w, image, n) assert_fleet_at((w), (image), (n), __FILE__, __LINE__)

static void assert_no_violation(struct world *w)
{
	if (w->violations)
		fail_msg("capacity fell below its floor %u times; first %s", w->violations, w->violation);
}

static bool has_record(struct world *w, const char *suffix)
{
	char name[256];
	kiln_record r = { 0 };
	kiln_error saved;
	int rc;
	kiln_error_save(&saved);
	snprintf(name, sizeof(name), "/kiln/fleets/web/%s", suffix);
	memcloud_on_call(w->mc, NULL, NULL);
	rc = w->c->ops->record_get(w->c, name, &r);
	kiln_record_release(&r);
	memcloud_on_call(w->mc, on_call, w);
	kiln_error_restore(&saved);
	return rc == 0;
}

static void get_state(struct world *w, kiln_fleet_state *st)
{
	memcloud_on_call(w->mc, NULL, NULL);
	assert_int_equal(kiln_fleet_state_get(w->c, "web", st), 0);
	memcloud_on_call(w->mc, on_call, w);
}

static size_t count_on(struct world *w, const char *image)
{
	kiln_instance_list all = { 0 };
	kiln_instance_query q = { 0 };
	size_t i, n = 0;
	memcloud_on_call(w->mc, NULL, NULL);
	assert_int_equal(w->c->ops->instances_describe(w->c, &q, &all), 0);
	for (i = 0; i < all.n; i++)
		n += !strcmp(all.items[i].image_id, image);
	kiln_instance_list_release(&all);
	memcloud_on_call(w->mc, on_call, w);
	return n;
}

/* The ids of this fleet's instances with a tag (kiln:batch=2 ...), not terminated. */
static size_t find_tagged(struct world *w, const char *key, const char *value, kiln_strings *out)
{
	kiln_tags t = KILN_TAGS_INIT;
	size_t n;
	kiln_tags_set(&t, key, value);
	n = memcloud_find_instances(w->mc, KILN_INSTANCE_UNKNOWN, &t, out);
	kiln_tags_release(&t);
	return n;
}

/* ---- the happy paths ---------------------------------------------------------- */

static void test_first_deploy(void **state)
{
	struct world *w = world_new();
	kiln_rollout_result res;
	kiln_fleet_state st;
	(void)state;

	fleet(w, 3, "1", "at_end", 2, 1);
	assert_int_equal(run_start(w, w->v1, &res), 0);
	assert_int_equal(res.outcome, KILN_ROLLOUT_DONE);
	assert_int_equal(kiln_rollout_exit_code(0, &res), 0);
	/* nothing to protect: one batch, one launch per subnet */
	assert_int_equal(memcloud_calls(w->mc, "instances_launch"), 2);
	assert_int_equal(res.batches_done, 1);
	assert_fleet(w, w->v1, 3);
	assert_false(has_record(w, "lock"));
	get_state(w, &st);
	assert_string_equal(st.current_image_id, w->v1);
	assert_string_equal(st.current_image, "web@1");
	assert_string_equal(st.previous_image_id, "");
	assert_string_equal(st.last_result, "completed");
	kiln_fleet_state_release(&st);
	kiln_rollout_result_release(&res);
	world_free(w);
}

/* ---- stopped instances (`kiln local down`, or stopped by hand) ------------------------------ */

/* Stops the first n instances of the fleet (all of them if n is larger) and lets them stop. */
static void stop_some(struct world *w, size_t n, kiln_strings *stopped)
{
	kiln_instance_list all = { 0 };
	kiln_instance_query q = { 0 };
	size_t i;

	memcloud_on_call(w->mc, NULL, NULL);
	assert_int_equal(w->c->ops->instances_describe(w->c, &q, &all), 0);
	for (i = 0; i < all.n && i < n; i++)
		kiln_strings_add(stopped, all.items[i].id);
	assert_int_equal(w->c->ops->instances_stop(w->c, (const char *const *)stopped->items, stopped->n), 0);
	kiln_test_clock_advance(5000);
	assert_int_equal(memcloud_count_instances(w->mc, KILN_INSTANCE_STOPPED, NULL), stopped->n);
	kiln_instance_list_release(&all);
	memcloud_on_call(w->mc, on_call, w);
}

static json_t *status_of(struct world *w)
{
	kiln_rollout_opts o = opts_for(w, NULL);
	json_t *st = NULL;
	assert_int_equal(kiln_rollout_status(&st, &o), 0);
	return st;
}

/* Every step message of a run, one a line. */
static void on_step(void *ctx, const kiln_event *ev)
{
	kiln_buf *b = ctx;
	if (!strcmp(ev->name, "step"))
		kiln_buf_printf(b, "%s\n", ev->message);
}

static void test_stopped_old_instances_are_terminated(void **state)
{
	struct world *w = world_new();
	kiln_rollout_result res;
	kiln_strings stopped = { 0 };
	json_t *st;
	(void)state;

	seed(w, w->v1, 4);
	stop_some(w, 2, &stopped);
	st = status_of(w);
	assert_int_equal(json_integer_value(json_object_get(st, "stopped")), 2);
	assert_int_equal(json_integer_value(json_object_get(st, "serving")), 2);
	assert_int_equal(json_array_size(json_object_get(st, "instances")), 4);
	json_decref(st);
	w->floor = 2; /* the two that serve keep serving */
	w->check = true;
	assert_int_equal(run_start(w, w->v2, &res), 0);
	assert_no_violation(w);
	/* desired on the new image, and the stopped ones gone with the rest of the old fleet */
	assert_fleet(w, w->v2, 4);
	assert_int_equal(memcloud_count_instances(w->mc, KILN_INSTANCE_STOPPED, NULL), 0);
	st = status_of(w);
	assert_int_equal(json_integer_value(json_object_get(st, "stopped")), 0);
	assert_int_equal(json_integer_value(json_object_get(st, "serving")), 4);
	json_decref(st);
	kiln_strings_release(&stopped);
	kiln_rollout_result_release(&res);
	world_free(w);
}

static void test_all_stopped_fleet_rolls_out(void **state)
{
	struct world *w = world_new();
	kiln_rollout_result res;
	kiln_strings stopped = { 0 };
	kiln_fleet_state st;
	json_t *plan = NULL, *s;
	kiln_rollout_opts o;
	kiln_image img;
	(void)state;

	seed(w, w->v1, 4);
	stop_some(w, 4, &stopped); /* what `kiln local down` leaves */
	s = status_of(w);
	assert_int_equal(json_integer_value(json_object_get(s, "stopped")), 4);
	assert_int_equal(json_integer_value(json_object_get(s, "serving")), 0);
	assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(s, "instances"), 0),
							      "state")), "stopped");
	json_decref(s);
	/* the plan says so: nothing serves, one batch, the stopped ones terminated at the end */
	o = opts_for(w, NULL);
	image_of(w, w->v2, &img);
	assert_int_equal(kiln_rollout_dry_run(&plan, &o, &img), 0);
	kiln_image_release(&img);
	assert_false(json_is_true(json_object_get(plan, "nothing_to_do")));
	assert_int_equal(json_array_size(json_object_get(plan, "stopped")), 4);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(json_object_get(plan, "from"), 0),
							    "stopped")), 4);
	json_decref(plan);

	assert_int_equal(run_start(w, w->v2, &res), 0);
	assert_int_equal(res.outcome, KILN_ROLLOUT_DONE);
	assert_int_equal(res.batches_done, 1);
	assert_int_equal(res.terminated, 4);
	assert_fleet(w, w->v2, 4);
	/* it ran web@1, stopped: that is what a rollback goes back to */
	get_state(w, &st);
	assert_string_equal(st.current_image_id, w->v2);
	assert_string_equal(st.previous_image_id, w->v1);
	kiln_fleet_state_release(&st);
	kiln_strings_release(&stopped);
	kiln_rollout_result_release(&res);
	world_free(w);
}

/* A fleet serving nothing (stopped, or never deployed) whose rollout fails: said plainly. */
static void test_failed_rollout_of_a_stopped_fleet(void **state)
{
	struct world *w = world_new();
	kiln_rollout_result res;
	kiln_strings stopped = { 0 };
	kiln_buf steps = KILN_BUF_INIT;
	kiln_events ev = { on_step, &steps };
	kiln_rollout_opts o;
	kiln_image img;
	int rc;
	(void)state;

	seed(w, w->v1, 4);
	stop_some(w, 4, &stopped);
	memcloud_image_health(w->mc, w->v3, KILN_HEALTH_UNHEALTHY);
	o = opts_for(w, &ev);
	image_of(w, w->v3, &img);
	rc = kiln_rollout_start(&res, &o, &img, "rollout");
	kiln_image_release(&img);
	assert_int_equal(kiln_rollout_exit_code(rc, &res), 3);
	assert_non_null(strstr(steps.ptr, "restoring fleet 'web' to no instance serving, as before"));
	assert_null(strstr(steps.ptr, "to  ("));
	assert_non_null(strstr(kiln_error_last()->message, "the fleet was restored to no instances (0 instances)"));
	/* restored as it was: the stopped ones are still there, nothing new runs */
	assert_int_equal(memcloud_count_instances(w->mc, KILN_INSTANCE_STOPPED, NULL), 4);
	assert_int_equal(memcloud_count_instances(w->mc, KILN_INSTANCE_RUNNING, NULL), 0);
	kiln_buf_release(&steps);
	kiln_strings_release(&stopped);
	kiln_rollout_result_release(&res);
	world_free(w);
}

/* A first deploy that fails: the same message, never an empty image name. */
static void test_failed_first_deploy_message(void **state)
{
	struct world *w = world_new();
	kiln_rollout_result res;
	kiln_buf steps = KILN_BUF_INIT;
	kiln_events ev = { on_step, &steps };
	kiln_rollout_opts o;
	kiln_image img;
	int rc;
	(void)state;

	memcloud_image_health(w->mc, w->v3, KILN_HEALTH_UNHEALTHY);
	o = opts_for(w, &ev);
	image_of(w, w->v3, &img);
	rc = kiln_rollout_start(&res, &o, &img, "rollout");
	kiln_image_release(&img);
	assert_int_equal(kiln_rollout_exit_code(rc, &res), 3);
	assert_non_null(strstr(steps.ptr, "restoring fleet 'web' to no instance serving, as before"));
	assert_null(strstr(steps.ptr, "to  ("));
	kiln_test_clock_advance(60000); /* the new ones finish terminating */
	assert_int_equal(memcloud_count_instances(w->mc, KILN_INSTANCE_UNKNOWN, NULL), 0);
	kiln_buf_release(&steps);
	kiln_rollout_result_release(&res);
	world_free(w);
}

static void rollout_v1_to_v2(const char *batch, const char *retire, unsigned subnets, unsigned tgs,
			     unsigned want_batches)
{
	struct world *w = world_new();
	kiln_rollout_result res;
	kiln_fleet_state st;

	fleet(w, 4, batch, retire, subnets, tgs);
	seed(w, w->v1, 4);
	w->check = true;
	w->floor = 4;
	assert_int_equal(run_start(w, w->v2, &res), 0);
	assert_int_equal(res.outcome, KILN_ROLLOUT_DONE);
	assert_int_equal(res.batches_done, want_batches);
	assert_true(memcloud_calls(w->mc, "instances_launch") <= want_batches * KILN_MAX(subnets, 1));
	assert_no_violation(w);
	assert_fleet(w, w->v2, 4);
	get_state(w, &st);
	assert_string_equal(st.current_image_id, w->v2);
	assert_string_equal(st.previous_image_id, w->v1);
	assert_string_equal(st.previous_image, "web@1");
	kiln_fleet_state_release(&st);
	kiln_rollout_result_release(&res);
	world_free(w);
}

static void test_batch_of_one(void **state)
{
	(void)state;
	rollout_v1_to_v2("1", "at_end", 1, 1, 4);
	rollout_v1_to_v2("1", "per_batch", 1, 1, 4);
}

static void test_batch_of_desired(void **state)
{
	(void)state;
	rollout_v1_to_v2("4", "at_end", 1, 1, 1);
	rollout_v1_to_v2("4", "per_batch", 2, 1, 1);
}

static void test_batch_percent_subnets_two_groups(void **state)
{
	(void)state;
	rollout_v1_to_v2("\"50%\"", "at_end", 2, 2, 2);
	rollout_v1_to_v2("\"25%\"", "per_batch", 2, 2, 4);
	rollout_v1_to_v2("\"30%\"", "at_end", 0, 1, 2);
}

/* at_end keeps every old instance until the last batch is healthy; per_batch does not. */
static int count_old_terminated_at_launch(struct world *w, const char *op)
{
	if (!strcmp(op, "instances_launch") && memcloud_calls(w->mc, "instances_launch") == 4)
		w->n_hook = (unsigned)(4 - count_on(w, w->v1));
	return 0;
}

static void test_retire_modes(void **state)
{
	struct world *w;
	kiln_rollout_result res;
	(void)state;

	w = world_new();
	fleet(w, 4, "1", "at_end", 1, 1);
	seed(w, w->v1, 4);
	w->hook = count_old_terminated_at_launch;
	assert_int_equal(run_start(w, w->v2, &res), 0);
	assert_int_equal(w->n_hook, 0); /* at the 4th launch, all old ones still run */
	assert_fleet(w, w->v2, 4);
	kiln_rollout_result_release(&res);
	world_free(w);

	w = world_new();
	fleet(w, 4, "1", "per_batch", 1, 1);
	seed(w, w->v1, 4);
	w->hook = count_old_terminated_at_launch;
	assert_int_equal(run_start(w, w->v2, &res), 0);
	assert_int_equal(w->n_hook, 3); /* three batches retired, their old ones gone */
	assert_fleet(w, w->v2, 4);
	kiln_rollout_result_release(&res);
	world_free(w);
}

static void test_count_differs_from_desired(void **state)
{
	struct world *w;
	kiln_rollout_result res;
	(void)state;

	w = world_new();
	fleet(w, 3, "1", "at_end", 1, 1);
	seed(w, w->v1, 1);
	w->check = true;
	w->floor = 1;
	assert_int_equal(run_start(w, w->v2, &res), 0);
	assert_no_violation(w);
	assert_fleet(w, w->v2, 3);
	kiln_rollout_result_release(&res);
	world_free(w);

	w = world_new();
	fleet(w, 2, "1", "per_batch", 1, 1);
	seed(w, w->v1, 5);
	w->check = true;
	w->floor = 2;
	assert_int_equal(run_start(w, w->v2, &res), 0);
	assert_no_violation(w);
	assert_fleet(w, w->v2, 2);
	kiln_rollout_result_release(&res);
	world_free(w);
}

static void test_already_there(void **state)
{
	struct world *w = world_new();
	kiln_rollout_result res;
	(void)state;
	seed(w, w->v2, 4);
	assert_int_equal(run_start(w, w->v2, &res), 0);
	assert_int_equal(res.outcome, KILN_ROLLOUT_NOTHING);
	assert_int_equal(memcloud_calls(w->mc, "instances_launch"), 0);
	assert_false(has_record(w, "lock"));
	kiln_rollout_result_release(&res);
	world_free(w);
}

static void test_rollback_to_previous_and_to(void **state)
{
	struct world *w = world_new();
	kiln_rollout_result res;
	kiln_fleet_state st;
	(void)state;

	seed(w, w->v1, 4);
	assert_int_equal(run_start(w, w->v2, &res), 0);
	kiln_rollout_result_release(&res);
	w->check = true;
	w->floor = 4;
	assert_int_equal(run_rollback(w, NULL, &res), 0);
	assert_int_equal(res.outcome, KILN_ROLLOUT_DONE);
	assert_no_violation(w);
	assert_fleet(w, w->v1, 4);
	get_state(w, &st);
	assert_string_equal(st.current_image_id, w->v1);
	assert_string_equal(st.previous_image_id, w->v2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(st.history, 0), "kind")),
			    "rollback");
	kiln_fleet_state_release(&st);
	kiln_rollout_result_release(&res);
	/* --to a version */
	assert_int_equal(run_rollback(w, w->v3, &res), 0);
	assert_fleet(w, w->v3, 4);
	kiln_rollout_result_release(&res);
	{
		kiln_rollout_opts o = opts_for(w, NULL);
		json_t *sj = NULL;
		assert_int_equal(kiln_rollout_status(&sj, &o), 0);
		assert_string_equal(json_string_value(json_object_get(json_object_get(sj, "state"),
									"previous_image")), "web@1");
		assert_int_equal(json_array_size(json_object_get(json_object_get(sj, "state"), "history")), 3);
		json_decref(sj);
	}
	world_free(w);
}

static void test_rollback_without_previous(void **state)
{
	struct world *w = world_new();
	kiln_rollout_result res;
	(void)state;
	seed(w, w->v1, 2);
	assert_error(run_rollback(w, NULL, &res), KILN_ENOTFOUND, "no image to roll back to");
	assert_int_equal(memcloud_calls(w->mc, "instances_launch"), 0);
	kiln_rollout_result_release(&res);
	world_free(w);
}

/* ---- failures ------------------------------------------------------------------ */

static void expect_restored(struct world *w, int rc, kiln_rollout_result *res, const char *needle)
{
	if (rc != KILN_ERROR || res->outcome != KILN_ROLLOUT_RESTORED)
		fail_msg("expected a restore, got rc %d outcome %d: %s", rc, res->outcome,
			 kiln_error_last()->message);
	assert_int_equal(kiln_rollout_exit_code(rc, res), 3);
	if (needle && !strstr(kiln_error_last()->message, needle))
		fail_msg("message lacks \"%s\": %s", needle, kiln_error_last()->message);
	assert_false(has_record(w, "lock"));
}

static void bad_image(const char *retire, unsigned subnets)
{
	struct world *w = world_new();
	kiln_rollout_result res;
	kiln_fleet_state st;
	int rc;

	fleet(w, 4, "1", retire, subnets, 2);
	seed(w, w->v1, 4);
	w->check = true;
	w->floor = 4;
	memcloud_image_console(w->mc, w->v2, "boot\nnginx: [emerg] bind() failed\nuwsgi: no app\n");
	memcloud_image_health(w->mc, w->v2, KILN_HEALTH_UNHEALTHY);
	rc = run_start(w, w->v2, &res);
	expect_restored(w, rc, &res, "unhealthy");
	assert_int_equal(res.batches_done, 0);
	assert_true(res.failed_instance[0] != '\0');
	assert_string_equal(res.failed_health, "unhealthy");
	assert_non_null(strstr(res.failed_reason, "Target.FailedHealthChecks"));
	assert_non_null(res.console_tail);
	assert_non_null(strstr(res.console_tail, "bind() failed"));
	if (!strstr(kiln_error_last()->message, res.failed_instance))
		fail_msg("message lacks the instance: %s", kiln_error_last()->message);
	assert_no_violation(w);
	assert_fleet(w, w->v1, 4);
	assert_int_equal(count_on(w, w->v2), 0);
	get_state(w, &st);
	assert_string_equal(st.last_result, "restored");
	assert_string_equal(st.current_image_id, w->v1);
	kiln_fleet_state_release(&st);
	kiln_rollout_result_release(&res);
	world_free(w);
}

static void test_bad_image_first_batch(void **state)
{
	(void)state;
	bad_image("at_end", 1);
	bad_image("per_batch", 2);
}

/* Turns batch n's instances unhealthy once they are launched. */
static int sicken_batch(struct world *w, const char *op)
{
	char b[16];
	kiln_strings ids = { 0 };
	size_t i;
	if (strcmp(op, "lb_health"))
		return 0;
	snprintf(b, sizeof(b), "%u", w->n_hook);
	find_tagged(w, KILN_TAG_BATCH, b, &ids);
	for (i = 0; i < ids.n; i++)
		memcloud_instance_health(w->mc, ids.items[i], KILN_HEALTH_UNHEALTHY);
	kiln_strings_release(&ids);
	return 0;
}

static void later_batch_fails(const char *retire, unsigned subnets)
{
	struct world *w = world_new();
	kiln_rollout_result res;
	int rc;

	fleet(w, 4, "1", retire, subnets, 1);
	seed(w, w->v1, 4);
	w->check = true;
	w->floor = 4;
	w->n_hook = 3;
	w->hook = sicken_batch;
	rc = run_start(w, w->v2, &res);
	expect_restored(w, rc, &res, "health_grace_s");
	assert_int_equal(res.batches_done, 2);
	assert_no_violation(w);
	assert_fleet(w, w->v1, 4);
	if (!strcmp(retire, "per_batch")) {
		/* two old ones were terminated with their batches: two were relaunched */
		kiln_strings ids = { 0 };
		find_tagged(w, KILN_TAG_ROLE, "old", &ids);
		assert_int_equal(ids.n, 4);
		kiln_strings_release(&ids);
		/* a batch of one is one launch; the relaunch of two spreads over the subnets */
		assert_int_equal(memcloud_calls(w->mc, "instances_launch"), 3 + subnets);
	}
	kiln_rollout_result_release(&res);
	world_free(w);
}

static void test_failure_in_later_batch(void **state)
{
	(void)state;
	later_batch_fails("at_end", 1);
	later_batch_fails("per_batch", 1);
	later_batch_fails("per_batch", 2);
}

/* Every launch of the fleet carries its instance options: new batches and the relaunch of a restore. */
static void assert_launched_with_options(struct world *w)
{
	const json_t *lo = memcloud_last_launch_options(w->mc);
	assert_non_null(lo);
	assert_string_equal(json_string_value(json_object_get(json_object_get(lo, "metadata_options"),
							      "http_tokens")),
			    "required");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(lo, "root_volume"), "size_gb")),
			 30);
}

static void test_instance_options(void **state)
{
	struct world *w = world_new();
	kiln_rollout_result res;
	int rc;
	(void)state;

	load_fleet(w, "{\"name\":\"web\",\"image\":\"web\",\"desired\":4,\"batch_size\":1,\"retire\":\"per_batch\","
		      "\"instance_type\":\"t3.micro\",\"target_group_arns\":[\"" TG1 "\"],"
		      "\"health_timeout_s\":120,\"health_grace_s\":20,"
		      "\"aws\":{\"metadata_options\":{\"http_tokens\":\"required\"},\"root_volume_size_gb\":30}}");
	seed(w, w->v1, 4);
	assert_int_equal(run_start(w, w->v2, &res), 0);
	assert_int_equal(res.outcome, KILN_ROLLOUT_DONE);
	assert_launched_with_options(w);
	kiln_rollout_result_release(&res);
	/* batch 3 of v3 fails: the restore relaunches v1 for the two retired, with the options */
	w->n_hook = 3;
	w->hook = sicken_batch;
	memcloud_on_call(w->mc, NULL, NULL);
	rc = run_start(w, w->v3, &res);
	assert_true(rc < 0);
	assert_int_equal(res.outcome, KILN_ROLLOUT_RESTORED);
	assert_fleet(w, w->v2, 4);
	{
		kiln_instance_list l = { 0 };
		kiln_instance_query q = { 0 };
		memcloud_on_call(w->mc, NULL, NULL);
		assert_int_equal(w->c->ops->instances_describe(w->c, &q, &l), 0);
		/* the last launch was the restore's relaunch of v2 */
		assert_string_equal(l.items[l.n - 1].image_id, w->v2);
		kiln_instance_list_release(&l);
	}
	assert_launched_with_options(w);
	kiln_rollout_result_release(&res);
	world_free(w);
}

static void test_launch_error(void **state)
{
	struct world *w = world_new();
	kiln_rollout_result res;
	int rc;
	(void)state;

	fleet(w, 4, "2", "per_batch", 1, 1);
	seed(w, w->v1, 4);
	w->check = true;
	w->floor = 4;
	memcloud_fail(w->mc, "instances_launch", 2, KILN_ERROR, "InsufficientInstanceCapacity");
	rc = run_start(w, w->v2, &res);
	expect_restored(w, rc, &res, "InsufficientInstanceCapacity");
	assert_no_violation(w);
	assert_fleet(w, w->v1, 4);
	kiln_rollout_result_release(&res);
	world_free(w);
}

static int kill_batch(struct world *w, const char *op)
{
	char b[16];
	kiln_strings ids = { 0 };
	if (strcmp(op, "lb_health"))
		return 0;
	snprintf(b, sizeof(b), "%u", w->n_hook);
	if (find_tagged(w, KILN_TAG_BATCH, b, &ids))
		memcloud_kill_instance(w->mc, ids.items[0], "Server.SpotInstanceTermination: outbid");
	kiln_strings_release(&ids);
	return 0;
}

static void test_instance_dies(void **state)
{
	struct world *w = world_new();
	kiln_rollout_result res;
	int rc;
	(void)state;

	seed(w, w->v1, 4);
	w->check = true;
	w->floor = 4;
	w->n_hook = 2;
	w->hook = kill_batch;
	rc = run_start(w, w->v2, &res);
	expect_restored(w, rc, &res, "SpotInstanceTermination");
	assert_string_equal(res.failed_health, "terminated");
	assert_no_violation(w);
	assert_fleet(w, w->v1, 4);
	kiln_rollout_result_release(&res);
	world_free(w);
}

/* An instance of a batch already healthy dies while the next batch comes up. */
static int kill_earlier_batch(struct world *w, const char *op)
{
	kiln_strings ids = { 0 };
	if (strcmp(op, "lb_health") || memcloud_calls(w->mc, "instances_launch") < 2 || w->n_hook)
		return 0;
	if (find_tagged(w, KILN_TAG_BATCH, "1", &ids)) {
		memcloud_kill_instance(w->mc, ids.items[0], "Server.InternalError: host failed");
		w->n_hook = 1;
	}
	kiln_strings_release(&ids);
	return 0;
}

static void test_earlier_batch_dies(void **state)
{
	struct world *w = world_new();
	kiln_rollout_result res;
	int rc;
	(void)state;

	seed(w, w->v1, 4);
	w->hook = kill_earlier_batch;
	rc = run_start(w, w->v2, &res);
	expect_restored(w, rc, &res, NULL);
	assert_int_equal(res.batches_done, 1);
	assert_fleet(w, w->v1, 4);
	kiln_rollout_result_release(&res);
	world_free(w);
}

static void test_unhealthy_past_grace_and_initial_past_timeout(void **state)
{
	struct world *w;
	kiln_rollout_result res;
	uint64_t t0, took;
	int rc;
	(void)state;

	/* unhealthy: fails after health_grace_s (20), long before health_timeout_s (120) */
	w = world_new();
	seed(w, w->v1, 2);
	fleet(w, 2, "1", "at_end", 1, 1);
	memcloud_image_health(w->mc, w->v2, KILN_HEALTH_UNHEALTHY);
	t0 = kiln_clock_now_ms();
	rc = run_start(w, w->v2, &res);
	took = kiln_clock_now_ms() - t0;
	expect_restored(w, rc, &res, "longer than health_grace_s 20");
	assert_true(took >= 20000);
	assert_true(took < 60000);
	assert_fleet(w, w->v1, 2);
	kiln_rollout_result_release(&res);
	world_free(w);

	/* initial forever: never fails before health_timeout_s */
	w = world_new();
	seed(w, w->v1, 2);
	fleet(w, 2, "1", "at_end", 1, 1);
	memcloud_image_health(w->mc, w->v2, KILN_HEALTH_INITIAL);
	t0 = kiln_clock_now_ms();
	rc = run_start(w, w->v2, &res);
	took = kiln_clock_now_ms() - t0;
	expect_restored(w, rc, &res, "not healthy within health_timeout_s (120 s)");
	assert_string_equal(res.failed_health, "initial");
	assert_true(took >= 120000);
	assert_fleet(w, w->v1, 2);
	kiln_rollout_result_release(&res);
	world_free(w);
}

static void test_warmup(void **state)
{
	struct world *w = world_new();
	kiln_rollout_result res;
	uint64_t t0;
	(void)state;
	load_fleet(w, "{\"name\":\"web\",\"image\":\"web\",\"desired\":2,\"batch_size\":2,"
		      "\"target_group_arns\":[\"" TG1 "\"],\"warmup_s\":40}");
	seed(w, w->v1, 2);
	t0 = kiln_clock_now_ms();
	assert_int_equal(run_start(w, w->v2, &res), 0);
	assert_true(kiln_clock_now_ms() - t0 >= 40000);
	assert_fleet(w, w->v2, 2);
	kiln_rollout_result_release(&res);
	world_free(w);
}

/* per_batch, failure in batch 3, and the relaunch of the old image fails too */
static void test_restore_fails(void **state)
{
	struct world *w = world_new();
	kiln_rollout_result res;
	kiln_fleet_state st;
	kiln_strings v2 = { 0 };
	int rc;
	(void)state;

	fleet(w, 4, "1", "per_batch", 1, 1);
	seed(w, w->v1, 4);
	w->check = true;
	w->floor = 4;
	w->n_hook = 3;
	w->hook = sicken_batch;
	memcloud_fail(w->mc, "instances_launch", 4, KILN_ERROR, "InsufficientInstanceCapacity");
	rc = run_start(w, w->v2, &res);
	assert_int_equal(rc, KILN_ERROR);
	assert_int_equal(res.outcome, KILN_ROLLOUT_RESTORE_FAILED);
	assert_int_equal(kiln_rollout_exit_code(rc, &res), 1);
	assert_non_null(strstr(kiln_error_last()->message, "restoring the old fleet failed too"));
	assert_non_null(strstr(kiln_error_last()->message, "InsufficientInstanceCapacity"));
	assert_non_null(strstr(kiln_error_last()->message, "kept serving 4 healthy instances"));
	/* capacity held throughout; the healthy ones (2 old, 2 new) still serve */
	assert_no_violation(w);
	assert_int_equal(res.kept.n, 4);
	memcloud_on_call(w->mc, NULL, NULL);
	kiln_test_clock_advance(60000);
	assert_int_equal(memcloud_count_targets(w->mc, TG1, KILN_HEALTH_HEALTHY), 4);
	assert_int_equal(memcloud_count_targets(w->mc, TG1, KILN_HEALTH_UNKNOWN), 4);
	/* the unhealthy new one is gone */
	assert_int_equal(memcloud_count_instances(w->mc, KILN_INSTANCE_UNKNOWN, NULL), 4);
	find_tagged(w, KILN_TAG_BATCH, "3", &v2);
	assert_int_equal(v2.n, 0);
	kiln_strings_release(&v2);
	assert_false(has_record(w, "lock"));
	get_state(w, &st);
	assert_string_equal(st.last_result, "restore-failed");
	kiln_fleet_state_release(&st);
	kiln_rollout_result_release(&res);
	world_free(w);
}

/* ---- the lock -------------------------------------------------------------------- */

static void put_lock(struct world *w, const char *host, long pid, int64_t expires_ms)
{
	kiln_fleet_lock l;
	json_t *o;
	char *text;
	memset(&l, 0, sizeof(l));
	snprintf(l.rollout_id, sizeof(l.rollout_id), "r20261125000000-deadbeef");
	snprintf(l.fleet, sizeof(l.fleet), "web");
	snprintf(l.kind, sizeof(l.kind), "rollout");
	snprintf(l.host, sizeof(l.host), "%s", host);
	l.pid = pid;
	l.started_ms = kiln_clock_wall_ms();
	l.expires_ms = expires_ms;
	snprintf(l.from_image_id, sizeof(l.from_image_id), "%s", w->v1);
	snprintf(l.from_image, sizeof(l.from_image), "web@1");
	snprintf(l.to_image_id, sizeof(l.to_image_id), "%s", w->v2);
	snprintf(l.to_image, sizeof(l.to_image), "web@2");
	kiln_strings_add(&l.subnet_ids, "subnet-a");
	l.desired = 4;
	l.batch_size = 1;
	l.old_count = 4;
	l.epoch = 1;
	l.epoch_batch = 1;
	o = kiln_fleet_lock_to_json(&l);
	text = json_dumps(o, 0);
	memcloud_on_call(w->mc, NULL, NULL);
	assert_int_equal(w->c->ops->record_create(w->c, "/kiln/fleets/web/lock", text), 0);
	memcloud_on_call(w->mc, on_call, w);
	free(text);
	json_decref(o);
	kiln_fleet_lock_release(&l);
}

static void test_lock_held_by_live_rollout(void **state)
{
	struct world *w = world_new();
	kiln_rollout_result res;
	int rc;
	(void)state;

	seed(w, w->v1, 4);
	put_lock(w, "ci-runner-7", 4242, kiln_clock_wall_ms() + 240000);
	rc = run_start(w, w->v2, &res);
	assert_error(rc, KILN_EBUSY, "host 'ci-runner-7' pid 4242");
	assert_int_equal(kiln_rollout_exit_code(rc, &res), 5);
	kiln_rollout_result_release(&res);
	/* resume and rollback do not take a live holder's lock */
	assert_error(run_resume(w, &res), KILN_EBUSY, "ci-runner-7");
	assert_int_equal(kiln_rollout_exit_code(KILN_EBUSY, &res), 5);
	kiln_rollout_result_release(&res);
	assert_error(run_rollback(w, NULL, &res), KILN_EBUSY, "ci-runner-7");
	kiln_rollout_result_release(&res);
	assert_int_equal(memcloud_calls(w->mc, "instances_launch"), 0);
	assert_int_equal(memcloud_calls(w->mc, "lb_deregister"), 0);
	assert_true(has_record(w, "lock"));
	world_free(w);
}

static void test_lock_expired_is_taken_over(void **state)
{
	struct world *w = world_new();
	kiln_rollout_result res;
	(void)state;

	seed(w, w->v1, 4);
	put_lock(w, "ci-runner-7", 4242, kiln_clock_wall_ms() - 1000);
	/* a plain rollout does not settle someone else's rollout */
	assert_error(run_start(w, w->v2, &res), KILN_ECONFLICT, "--resume");
	assert_int_equal(kiln_rollout_exit_code(KILN_ECONFLICT, &res), 1);
	kiln_rollout_result_release(&res);
	w->check = true;
	w->floor = 4;
	assert_int_equal(run_resume(w, &res), 0);
	assert_int_equal(res.outcome, KILN_ROLLOUT_DONE);
	assert_string_equal(res.rollout_id, "r20261125000000-deadbeef");
	assert_no_violation(w);
	assert_fleet(w, w->v2, 4);
	/* the take-over's claim went with the lock: only the state record is left */
	assert_int_equal(memcloud_count_records(w->mc), 1);
	assert_true(has_record(w, "state"));
	kiln_rollout_result_release(&res);
	world_free(w);
}

/* Two machines taking over one dead holder: the claim lets one go on, the other gets exit 5. */
static void test_lock_takeover_claimed_by_rival(void **state)
{
	struct world *w = world_new();
	kiln_rollout_result res;
	char claim[256], value[256];
	int64_t expires = kiln_clock_wall_ms() - 1000;
	int rc;
	(void)state;

	seed(w, w->v1, 4);
	put_lock(w, "ci-runner-7", 4242, expires);
	snprintf(claim, sizeof(claim), "/kiln/fleets/web/takeovers/r20261125000000-deadbeef-%lld-4242-1",
		 (long long)expires);
	snprintf(value, sizeof(value), "{\"host\":\"ci-runner-8\",\"pid\":77,\"claimed_ms\":%lld}",
		 (long long)kiln_clock_wall_ms());
	memcloud_on_call(w->mc, NULL, NULL);
	assert_int_equal(w->c->ops->record_create(w->c, claim, value), 0);
	memcloud_on_call(w->mc, on_call, w);
	rc = run_resume(w, &res);
	assert_error(rc, KILN_EBUSY, "being taken over by host 'ci-runner-8' pid 77");
	assert_int_equal(kiln_rollout_exit_code(rc, &res), 5);
	kiln_rollout_result_release(&res);
	assert_error(run_rollback(w, NULL, &res), KILN_EBUSY, "ci-runner-8");
	kiln_rollout_result_release(&res);
	assert_int_equal(memcloud_calls(w->mc, "instances_launch"), 0);
	assert_int_equal(memcloud_calls(w->mc, "tags_create"), 0);
	/* the rival never got further (it died too): its claim goes stale, and resume goes on */
	kiln_test_clock_advance(KILN_CLAIM_TTL_MS + 1000);
	assert_int_equal(run_resume(w, &res), 0);
	assert_fleet(w, w->v2, 4);
	assert_false(has_record(w, "lock"));
	/* both claims (the rival's and this one's) went with the lock */
	assert_int_equal(memcloud_count_records(w->mc), 1);
	kiln_rollout_result_release(&res);
	world_free(w);
}

static void test_lock_dead_pid_is_taken_over(void **state)
{
	struct world *w = world_new();
	kiln_rollout_result res;
	(void)state;

	seed(w, w->v1, 4);
	put_lock(w, "testhost", w->dead_pid, kiln_clock_wall_ms() + 240000);
	w->check = true;
	w->floor = 4;
	assert_int_equal(run_rollback(w, NULL, &res), 0);
	assert_int_equal(res.outcome, KILN_ROLLOUT_DONE);
	assert_fleet(w, w->v1, 4);
	kiln_rollout_result_release(&res);
	/* but a live pid on this host holds it */
	put_lock(w, "testhost", (long)getpid(), kiln_clock_wall_ms() + 240000);
	assert_error(run_resume(w, &res), KILN_EBUSY, "live");
	kiln_rollout_result_release(&res);
	world_free(w);
}

/* The lock is renewed while a long rollout runs, so it never looks dead. */
static void test_lock_renewed(void **state)
{
	struct world *w = world_new();
	kiln_rollout_result res;
	(void)state;
	load_fleet(w, "{\"name\":\"web\",\"image\":\"web\",\"desired\":2,\"batch_size\":1,"
		      "\"target_group_arns\":[\"" TG1 "\"],\"warmup_s\":400}");
	seed(w, w->v1, 2);
	assert_int_equal(run_start(w, w->v2, &res), 0);
	/* 800 s of warmup: more than the lock's 300 s life, so it must have been renewed */
	assert_true(memcloud_calls(w->mc, "record_put") >= 10);
	kiln_rollout_result_release(&res);
	world_free(w);
}

/* ---- cancellation ---------------------------------------------------------------------- */

static int cancel_on_nth(struct world *w, const char *op)
{
	/* the 3rd round of health polls: batch 1 is launched, not yet healthy */
	if (!strcmp(op, "lb_health") && ++w->n_hook == 4 && !kiln_cancelled())
		kiln_cancel_set(SIGINT);
	return 0;
}

static void test_cancel_mid_batch(void **state)
{
	struct world *w = world_new();
	kiln_rollout_result res;
	char tok[80];
	int rc;
	(void)state;

	fleet(w, 4, "2", "at_end", 1, 1);
	seed(w, w->v1, 4);
	w->check = true;
	w->floor = 4;
	w->hook = cancel_on_nth;
	rc = run_start(w, w->v2, &res);
	assert_int_equal(rc, KILN_ECANCELLED);
	assert_int_equal(res.outcome, KILN_ROLLOUT_INTERRUPTED);
	assert_int_equal(kiln_rollout_exit_code(rc, &res), 4);
	if (!strstr(kiln_error_last()->message, "--resume"))
		fail_msg("message lacks --resume: %s", kiln_error_last()->message);
	/* the batch that was starting is gone; the old fleet serves; the lock stays */
	assert_fleet(w, w->v1, 4);
	assert_true(has_record(w, "lock"));
	kiln_rollout_result_release(&res);

	kiln_cancel_reset();
	w->hook = NULL;
	assert_int_equal(run_resume(w, &res), 0);
	assert_int_equal(res.outcome, KILN_ROLLOUT_DONE);
	assert_no_violation(w);
	assert_fleet(w, w->v2, 4);
	/* batch 1 was launched twice, under two tokens: the cancelled one and its successor */
	snprintf(tok, sizeof(tok), "%s-e1-b1-s0", res.rollout_id);
	assert_int_equal(memcloud_launches_with_token(w->mc, tok), 1);
	snprintf(tok, sizeof(tok), "%s-e2-b1-s0", res.rollout_id);
	assert_int_equal(memcloud_launches_with_token(w->mc, tok), 1);
	kiln_rollout_result_release(&res);
	world_free(w);
}

static int cancel_at_deregister(struct world *w, const char *op)
{
	(void)w;
	if (!strcmp(op, "lb_deregister") && !kiln_cancelled())
		kiln_cancel_set(SIGTERM);
	return 0;
}

static void test_cancel_while_retiring(void **state)
{
	struct world *w = world_new();
	kiln_rollout_result res;
	int rc;
	(void)state;

	fleet(w, 4, "2", "per_batch", 1, 1);
	seed(w, w->v1, 4);
	w->check = true;
	w->floor = 4;
	w->hook = cancel_at_deregister;
	rc = run_start(w, w->v2, &res);
	assert_int_equal(rc, KILN_ECANCELLED);
	assert_int_equal(res.outcome, KILN_ROLLOUT_INTERRUPTED);
	assert_non_null(strstr(kiln_error_last()->message, "SIGTERM"));
	/* the healthy batch was retired to the end: its two old ones are gone */
	assert_int_equal(res.batches_done, 1);
	assert_int_equal(count_on(w, w->v1), 2);
	kiln_rollout_result_release(&res);
	kiln_cancel_reset();
	w->hook = NULL;
	assert_int_equal(run_resume(w, &res), 0);
	assert_no_violation(w);
	assert_fleet(w, w->v2, 4);
	kiln_rollout_result_release(&res);
	world_free(w);
}

static int cancel_at_once(struct world *w, const char *op)
{
	(void)w;
	if (!strcmp(op, "record_create") && !kiln_cancelled())
		kiln_cancel_set(SIGINT);
	return 0;
}

static void test_cancel_before_launch(void **state)
{
	struct world *w = world_new();
	kiln_rollout_result res;
	(void)state;
	seed(w, w->v1, 4);
	w->hook = cancel_at_once;
	assert_int_equal(run_start(w, w->v2, &res), KILN_ECANCELLED);
	assert_int_equal(memcloud_calls(w->mc, "instances_launch"), 0);
	assert_false(has_record(w, "lock"));
	assert_fleet(w, w->v1, 4);
	kiln_rollout_result_release(&res);
	world_free(w);
}

/* ---- polling cost ------------------------------------------------------------------------ */

static void polls_for(unsigned n, unsigned *describes, unsigned *healths, unsigned *rounds)
{
	struct world *w = world_new();
	kiln_rollout_result res;
	fleet(w, n, "\"50%\"", "at_end", 2, 2);
	seed(w, w->v1, n);
	assert_int_equal(run_start(w, w->v2, &res), 0);
	*describes = memcloud_calls(w->mc, "instances_describe");
	*healths = memcloud_calls(w->mc, "lb_health");
	*rounds = res.poll_rounds;
	assert_fleet(w, w->v2, n);
	kiln_rollout_result_release(&res);
	world_free(w);
}

static void test_polling_independent_of_fleet_size(void **state)
{
	unsigned d4, h4, r4, d40, h40, r40, d200, h200, r200;
	(void)state;
	polls_for(4, &d4, &h4, &r4);
	polls_for(40, &d40, &h40, &r40);
	polls_for(200, &d200, &h200, &r200);
	/* at most one describe and one health call per balancer a round, whatever the size */
	assert_true(d4 <= r4);
	assert_int_equal(h4, 2 * r4);
	assert_int_equal(r4, r40);
	assert_int_equal(r4, r200);
	assert_int_equal(d4, d40);
	assert_int_equal(h4, h40);
	assert_int_equal(d4, d200);
	assert_int_equal(h4, h200);
}

/*
 * How late the engine sees a change: memcloud makes a registered target
 * healthy health_initial_ms after its registration; the engine's "healthy"
 * event comes at its next poll. With checks every second (local fleets)
 * that must be within a quarter second; with ELB's slow checks the schedule
 * stays 1 s backing off to 5 s.
 */
struct reaction {
	char ids[32][KILN_ID_MAX];
	uint64_t registered_ms[32];
	size_t n;
	uint64_t worst_ms;
	uint64_t initial_ms;
	unsigned seen;
};

static void on_reaction(void *ctx, const kiln_event *ev)
{
	struct reaction *r = ctx;
	const char *id = json_string_value(json_object_get(ev->fields, "id"));
	const char *action = json_string_value(json_object_get(ev->fields, "action"));
	const char *health = json_string_value(json_object_get(ev->fields, "health"));
	size_t i;

	if (!id)
		return;
	if (!strcmp(ev->name, "resource") && action && !strcmp(action, "registered") && r->n < 32) {
		snprintf(r->ids[r->n], KILN_ID_MAX, "%s", id);
		r->registered_ms[r->n++] = kiln_clock_now_ms();
	} else if (!strcmp(ev->name, "health") && health && !strcmp(health, "healthy")) {
		for (i = 0; i < r->n; i++) {
			uint64_t late;
			if (strcmp(r->ids[i], id))
				continue;
			late = kiln_clock_now_ms() - (r->registered_ms[i] + r->initial_ms);
			r->worst_ms = KILN_MAX(r->worst_ms, late);
			r->seen++;
		}
	}
}

static uint64_t reaction_with_interval(int interval_s)
{
	struct world *w = world_new();
	struct reaction r;
	kiln_events ev = { on_reaction, &r };
	kiln_rollout_opts o = opts_for(w, &ev);
	kiln_rollout_result res;
	kiln_image img;

	memset(&r, 0, sizeof(r));
	memcloud_cfg(w->mc)->health_interval_s = interval_s;
	r.initial_ms = memcloud_cfg(w->mc)->health_initial_ms;
	seed(w, w->v1, 4);
	image_of(w, w->v2, &img);
	assert_int_equal(kiln_rollout_start(&res, &o, &img, "rollout"), 0);
	assert_int_equal(r.seen, 4); /* every new instance, one batch each */
	assert_fleet(w, w->v2, 4);
	kiln_image_release(&img);
	kiln_rollout_result_release(&res);
	world_free(w);
	return r.worst_ms;
}

static void test_polls_within_a_quarter_check_interval(void **state)
{
	(void)state;
	/* checks every 1 s: seen within 0.25 s (1 s backing off 1.5x saw it up to 1.75 s late) */
	assert_true(reaction_with_interval(1) <= 250);
	assert_true(reaction_with_interval(4) <= 1000);
	/* ELB's default 30 s: the usual 1 s -> 5 s schedule, never slower */
	assert_true(reaction_with_interval(30) <= 5000);
	assert_true(reaction_with_interval(30) > 500);
}

/*
 * What each describe lists: after the one describe of the whole fleet at the
 * start, a rollout describes only the batch coming up (old instances are
 * followed through the balancers), so no call grows with the fleet.
 */
static kiln_cloud_ops sized_ops;
static int (*real_describe)(kiln_cloud *, const kiln_instance_query *, kiln_instance_list *);
static size_t n_describes, first_listed, max_listed_after_first;

static int sized_describe(kiln_cloud *c, const kiln_instance_query *q, kiln_instance_list *out)
{
	int rc = real_describe(c, q, out);
	if (rc == 0 && n_describes++ == 0)
		first_listed = out->n;
	else if (rc == 0 && out->n > max_listed_after_first)
		max_listed_after_first = out->n;
	return rc;
}

static void test_describes_list_one_batch(void **state)
{
	struct world *w = world_new();
	const kiln_cloud_ops *saved = w->c->ops;
	kiln_rollout_result res;
	(void)state;

	fleet(w, 200, "\"10%\"", "per_batch", 2, 1);
	seed(w, w->v1, 200);
	sized_ops = *saved;
	real_describe = saved->instances_describe;
	sized_ops.instances_describe = sized_describe;
	w->c->ops = &sized_ops;
	n_describes = first_listed = max_listed_after_first = 0;
	assert_int_equal(run_start(w, w->v2, &res), 0);
	w->c->ops = saved;
	assert_int_equal(first_listed, 200);
	if (max_listed_after_first > 20)
		fail_msg("a describe after the start listed %zu instances (a batch is 20)", max_listed_after_first);
	assert_true(n_describes > 10);
	assert_fleet(w, w->v2, 200);
	kiln_rollout_result_release(&res);
	world_free(w);
}

/* ---- dry run and status ------------------------------------------------------------------ */

static void test_dry_run_changes_nothing(void **state)
{
	struct world *w = world_new();
	kiln_rollout_opts o;
	kiln_image img;
	json_t *plan = NULL, *b;
	unsigned calls;
	(void)state;

	fleet(w, 4, "\"50%\"", "at_end", 2, 1);
	seed(w, w->v1, 3);
	o = opts_for(w, NULL);
	image_of(w, w->v2, &img);
	calls = memcloud_calls(w->mc, "instances_launch") + memcloud_calls(w->mc, "lb_register") +
		memcloud_calls(w->mc, "record_create") + memcloud_calls(w->mc, "tags_create");
	assert_int_equal(kiln_rollout_dry_run(&plan, &o, &img), 0);
	assert_string_equal(json_string_value(json_object_get(plan, "to_image")), "web@2");
	assert_int_equal(json_integer_value(json_object_get(plan, "current")), 3);
	assert_int_equal(json_array_size(json_object_get(plan, "replaced")), 3);
	assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(plan, "from"), 0),
							      "image")), "web@1");
	b = json_object_get(plan, "batches");
	assert_int_equal(json_array_size(b), 2);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(b, 0), "launch")), 2);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(b, 0), "retire")), 1);
	assert_int_equal(json_array_size(json_object_get(json_array_get(b, 1), "deregisters")), 2);
	assert_int_equal(memcloud_calls(w->mc, "instances_launch") + memcloud_calls(w->mc, "lb_register") +
				 memcloud_calls(w->mc, "record_create") + memcloud_calls(w->mc, "tags_create"),
			 calls);
	json_decref(plan);
	kiln_image_release(&img);
	world_free(w);
}

static void test_status_shows_interrupted(void **state)
{
	struct world *w = world_new();
	kiln_rollout_opts o;
	kiln_rollout_result res;
	json_t *st = NULL, *r;
	(void)state;

	seed(w, w->v1, 4);
	w->kill_at = 12;
	run_start(w, w->v2, &res);
	kiln_rollout_result_release(&res);
	w->dead = false;
	w->kill_at = 0;
	o = opts_for(w, NULL);
	assert_int_equal(kiln_rollout_status(&st, &o), 0);
	r = json_object_get(st, "rollout");
	assert_non_null(r);
	assert_false(json_is_true(json_object_get(r, "alive")));
	assert_string_equal(json_string_value(json_array_get(json_object_get(r, "settle"), 0)),
			    "kiln rollout web.json --resume");
	assert_true(json_array_size(json_object_get(st, "instances")) >= 4);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(st, "images"), "web@1")), 4);
	assert_non_null(json_object_get(st, "unfinished_journals"));
	assert_int_equal(memcloud_calls(w->mc, "instances_launch"), 1);
	json_decref(st);
	world_free(w);
}

/* ---- every kill point --------------------------------------------------------------------- */

/* How many journal writes a whole rollout of this shape makes. */
static unsigned count_writes(const char *retire, const char *batch, bool bad)
{
	struct world *w = world_new();
	kiln_rollout_result res;
	unsigned n;
	fleet(w, 4, batch, retire, 2, 2);
	seed(w, w->v1, 4);
	if (bad) {
		w->n_hook = 2;
		w->hook = sicken_batch;
	}
	run_start(w, w->v2, &res);
	n = w->writes;
	kiln_rollout_result_release(&res);
	world_free(w);
	return n;
}

static void kill_then_settle(const char *retire, const char *batch, bool bad, unsigned kill_at,
			     bool by_rollback)
{
	struct world *w = world_new();
	kiln_rollout_result res;
	int rc;

	fleet(w, 4, batch, retire, 2, 2);
	seed(w, w->v1, 4);
	if (bad) {
		w->n_hook = 2;
		w->hook = sicken_batch;
	}
	w->check = true;
	w->floor = 4;
	w->kill_at = kill_at;
	rc = run_start(w, w->v2, &res);
	if (!w->dead)
		fail_msg("kill point %u was never reached (rc %d)", kill_at, rc);
	kiln_rollout_result_release(&res);

	/* a fresh engine, as after a restart: the old process is gone */
	w->dead = false;
	w->kill_at = 0;
	w->dead_pid = dead_pid();
	if (by_rollback) {
		rc = run_rollback(w, NULL, &res);
		if (rc == KILN_ENOTFOUND && bad && !has_record(w, "lock"))
			rc = 0; /* the failed rollout was settled before the kill: nothing to go back to */
		if (rc < 0)
			fail_msg("%s %s%s: rollback after kill point %u: %s", retire, batch, bad ? " bad" : "",
				 kill_at, kiln_error_last()->message);
		assert_no_violation(w);
		assert_fleet(w, w->v1, 4);
	} else {
		rc = run_resume(w, &res);
		if (bad) {
			/* whatever the kill point, the bad image ends restored */
			if (!(rc == 0 && res.outcome == KILN_ROLLOUT_NOTHING) &&
			    res.outcome != KILN_ROLLOUT_RESTORED)
				fail_msg("bad image, kill point %u: resume gave rc %d outcome %d: %s", kill_at, rc,
					 res.outcome, kiln_error_last()->message);
			/* never started (killed before the lock): nothing happened at all */
			assert_no_violation(w);
			assert_fleet(w, w->v1, 4);
		} else {
			if (rc < 0)
				fail_msg("%s %s: resume after kill point %u: %s", retire, batch, kill_at,
					 kiln_error_last()->message);
			assert_no_violation(w);
			if (res.outcome == KILN_ROLLOUT_NOTHING && count_on(w, w->v2) == 0)
				assert_fleet(w, w->v1, 4); /* killed before it took the lock */
			else
				assert_fleet(w, w->v2, 4);
		}
	}
	assert_false(has_record(w, "lock"));
	kiln_rollout_result_release(&res);
	world_free(w);
}

static void kill_points(const char *retire, const char *batch, bool bad)
{
	unsigned n = count_writes(retire, batch, bad), k;
	assert_true(n > 10);
	for (k = 1; k <= n; k++) {
		kill_then_settle(retire, batch, bad, k, false);
		kill_then_settle(retire, batch, bad, k, true);
	}
}

static void test_kill_points_at_end(void **state)
{
	(void)state;
	kill_points("at_end", "\"50%\"", false);
}

static void test_kill_points_per_batch(void **state)
{
	(void)state;
	kill_points("per_batch", "1", false);
}

static void test_kill_points_during_restore(void **state)
{
	(void)state;
	kill_points("per_batch", "\"50%\"", true);
	kill_points("at_end", "1", true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_deploy),
		cmocka_unit_test(test_instance_options),
		cmocka_unit_test(test_batch_of_one),
		cmocka_unit_test(test_batch_of_desired),
		cmocka_unit_test(test_batch_percent_subnets_two_groups),
		cmocka_unit_test(test_retire_modes),
		cmocka_unit_test(test_count_differs_from_desired),
		cmocka_unit_test(test_already_there),
		cmocka_unit_test(test_rollback_to_previous_and_to),
		cmocka_unit_test(test_rollback_without_previous),
		cmocka_unit_test(test_bad_image_first_batch),
		cmocka_unit_test(test_failure_in_later_batch),
		cmocka_unit_test(test_launch_error),
		cmocka_unit_test(test_instance_dies),
		cmocka_unit_test(test_earlier_batch_dies),
		cmocka_unit_test(test_unhealthy_past_grace_and_initial_past_timeout),
		cmocka_unit_test(test_warmup),
		cmocka_unit_test(test_restore_fails),
		cmocka_unit_test(test_lock_held_by_live_rollout),
		cmocka_unit_test(test_lock_expired_is_taken_over),
		cmocka_unit_test(test_lock_takeover_claimed_by_rival),
		cmocka_unit_test(test_lock_dead_pid_is_taken_over),
		cmocka_unit_test(test_lock_renewed),
		cmocka_unit_test(test_cancel_mid_batch),
		cmocka_unit_test(test_cancel_while_retiring),
		cmocka_unit_test(test_cancel_before_launch),
		cmocka_unit_test(test_polling_independent_of_fleet_size),
		cmocka_unit_test(test_polls_within_a_quarter_check_interval),
		cmocka_unit_test(test_stopped_old_instances_are_terminated),
		cmocka_unit_test(test_all_stopped_fleet_rolls_out),
		cmocka_unit_test(test_failed_rollout_of_a_stopped_fleet),
		cmocka_unit_test(test_failed_first_deploy_message),
		cmocka_unit_test(test_describes_list_one_batch),
		cmocka_unit_test(test_dry_run_changes_nothing),
		cmocka_unit_test(test_status_shows_interrupted),
		cmocka_unit_test(test_kill_points_at_end),
		cmocka_unit_test(test_kill_points_per_batch),
		cmocka_unit_test(test_kill_points_during_restore),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
