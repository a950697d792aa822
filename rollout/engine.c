#include <signal.h>
#include <sys/random.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/registry.h"
#include "rollout/engine.h"
#include "rollout/lock.h"
#include "rollout/plan.h"
#include "rollout/state.h"

/* ids per terminate or tag call: well under what EC2 takes in one request */
#define CHUNK 500
/* after a balancer's drain timeout, how long it may take to say so */
#define DRAIN_SLACK_MS 10000

struct lbstate {
	const kiln_lb *lb;
	kiln_lb_info info;
	int drain_s;
	kiln_target_list t; /* last lb_health, sorted by instance id */
};

/*
 * An old instance, as the describe of the whole fleet at the start (or at
 * a take-over) saw it. Going forward, old instances are followed through
 * the balancers' health alone: retiring and finishing need their ids and
 * launch times, never a describe of hundreds of them again.
 */
struct old {
	char id[KILN_ID_MAX];
	int64_t launch_time;
	bool terminated; /* asked of the cloud by this process */
	/*
	 * Stopped (or stopping) when the rollout began: e.g. by `kiln local
	 * down`, or by hand. It serves nothing, so it is neither counted nor
	 * retired batch by batch: it goes with the rest of the old fleet once
	 * the new one is complete (a failure leaves it as it was).
	 */
	bool stopped;
};

/* What the engine remembers of an instance between poll rounds. */
struct track {
	char id[KILN_ID_MAX];
	kiln_instance_state state;
	kiln_health health;
	uint64_t unhealthy_since; /* 0: not unhealthy */
};

struct failure {
	bool set;
	char instance[KILN_ID_MAX];
	char health[32];
	char reason[KILN_NAME_MAX];
	char message[1024];
};

struct engine {
	const kiln_rollout_opts *o;
	kiln_cloud *c;
	const kiln_fleet *f;
	const kiln_events *ev;
	kiln_rollout_result *res;
	kiln_buf state_dir;
	char host[KILN_NAME_MAX];
	long pid;
	kiln_fleet_lock lock;
	bool locked;             /* the lock record is ours */
	kiln_lock flock;         /* held while we run, so this host can tell we live */
	kiln_journal *j;
	bool fatal;              /* journal failed or lock lost: change nothing more */
	kiln_plan plan;
	struct lbstate *lbs;
	size_t n_lbs;
	kiln_instance_list insts; /* last describe, sorted by id */
	struct track *tr;
	size_t n_tr;
	kiln_backoff bo;
	int64_t renewed_ms;
	uint64_t t0;
	struct failure fail;
	kiln_image_list labels;  /* images seen, for "web@3" in messages */
	unsigned cur_batch;      /* the batch SEE_BATCH describes */
	const kiln_strings *batch_ids; /* its instances as the launches returned them, or NULL */
	kiln_strings known_new;  /* new instances of batches already healthy */
	struct old *olds;        /* the old instances (remember_olds) */
	size_t n_olds;
};

/* ---- small helpers ------------------------------------------------------- */

static uint64_t now_ms(void)
{
	return kiln_clock_now_ms();
}

static int cmp_inst(const void *a, const void *b)
{
	return strcmp(((const kiln_instance *)a)->id, ((const kiln_instance *)b)->id);
}

static int key_inst(const void *k, const void *el)
{
	return strcmp(k, ((const kiln_instance *)el)->id);
}

static int cmp_target(const void *a, const void *b)
{
	return strcmp(((const kiln_target *)a)->instance_id, ((const kiln_target *)b)->instance_id);
}

static int key_target(const void *k, const void *el)
{
	return strcmp(k, ((const kiln_target *)el)->instance_id);
}

static const kiln_instance *find_inst(const struct engine *e, const char *id)
{
	if (!e->insts.n)
		return NULL;
	return bsearch(id, e->insts.items, e->insts.n, sizeof(*e->insts.items), key_inst);
}

static const kiln_target *target_in(const struct lbstate *l, const char *id)
{
	if (!l->t.n)
		return NULL;
	return bsearch(id, l->t.items, l->t.n, sizeof(*l->t.items), key_target);
}

static kiln_health health_in(const struct lbstate *l, const char *id)
{
	const kiln_target *t = target_in(l, id);
	return t ? t->health : KILN_HEALTH_UNUSED;
}

/* Registered and not on its way out. */
static bool active_in(const struct lbstate *l, const char *id)
{
	kiln_health h = health_in(l, id);
	return h != KILN_HEALTH_UNUSED && h != KILN_HEALTH_DRAINING;
}

static bool healthy_everywhere(const struct engine *e, const char *id)
{
	size_t i;
	for (i = 0; i < e->n_lbs; i++)
		if (health_in(&e->lbs[i], id) != KILN_HEALTH_HEALTHY)
			return false;
	return e->n_lbs > 0;
}

static bool active_anywhere(const struct engine *e, const char *id)
{
	size_t i;
	for (i = 0; i < e->n_lbs; i++)
		if (active_in(&e->lbs[i], id))
			return true;
	return false;
}

static bool draining_anywhere(const struct engine *e, const char *id)
{
	size_t i;
	for (i = 0; i < e->n_lbs; i++)
		if (health_in(&e->lbs[i], id) == KILN_HEALTH_DRAINING)
			return true;
	return false;
}

static bool inst_gone(const kiln_instance *i)
{
	return i->state == KILN_INSTANCE_SHUTTING_DOWN || i->state == KILN_INSTANCE_TERMINATED;
}

static bool inst_alive(const kiln_instance *i)
{
	return i->state == KILN_INSTANCE_PENDING || i->state == KILN_INSTANCE_RUNNING;
}

/* Stopped or on its way: not serving, but still the fleet's (and still costing a disk). */
static bool inst_stopped(const kiln_instance *i)
{
	return i->state == KILN_INSTANCE_STOPPING || i->state == KILN_INSTANCE_STOPPED;
}

static unsigned tag_uint(const kiln_instance *i, const char *key)
{
	const char *s = kiln_tags_get(&i->tags, key);
	int64_t v;
	if (!s || kiln_parse_i64(&v, s, 0, UINT32_MAX) < 0)
		return 0;
	return (unsigned)v;
}

/* Launched by this rollout as a new instance (any epoch). */
static bool is_ours_new(const struct engine *e, const kiln_instance *i)
{
	const char *role = kiln_tags_get(&i->tags, KILN_TAG_ROLE);
	const char *rid = kiln_tags_get(&i->tags, KILN_TAG_ROLLOUT_ID);
	return role && rid && !strcmp(role, "new") && !strcmp(rid, e->lock.rollout_id);
}

/* A new instance that belongs to the rollout's batches (not a cancelled batch's leftover). */
static bool is_valid_new(const struct engine *e, const kiln_instance *i)
{
	unsigned epoch = tag_uint(i, KILN_TAG_EPOCH), batch = tag_uint(i, KILN_TAG_BATCH);
	if (!is_ours_new(e, i))
		return false;
	return epoch == e->lock.epoch || (epoch < e->lock.epoch && batch < e->lock.epoch_batch);
}

static bool is_old(const struct engine *e, const kiln_instance *i)
{
	return !is_ours_new(e, i);
}

/* Relaunched by this rollout's restore. */
static bool is_relaunched(const struct engine *e, const kiln_instance *i)
{
	const char *role = kiln_tags_get(&i->tags, KILN_TAG_ROLE);
	const char *rid = kiln_tags_get(&i->tags, KILN_TAG_ROLLOUT_ID);
	return role && rid && !strcmp(role, "old") && !strcmp(rid, e->lock.rollout_id) &&
	       tag_uint(i, KILN_TAG_BATCH) == 0 && kiln_tags_get(&i->tags, KILN_TAG_EPOCH);
}

static int add_unique(kiln_strings *s, const char *id)
{
	return kiln_strings_has(s, id) ? 0 : kiln_strings_add(s, id);
}

/* Remembers the old instances of the last describe of the whole fleet (SEE_FLEET). */
static int remember_olds(struct engine *e)
{
	size_t i;
	free(e->olds);
	e->n_olds = 0;
	if (!(e->olds = calloc(e->insts.n + 1, sizeof(*e->olds))))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	for (i = 0; i < e->insts.n; i++) {
		const kiln_instance *inst = &e->insts.items[i];
		struct old *o = &e->olds[e->n_olds];
		if (!(inst_alive(inst) || inst_stopped(inst)) || !is_old(e, inst))
			continue;
		snprintf(o->id, sizeof(o->id), "%s", inst->id);
		o->launch_time = inst->launch_time;
		o->stopped = inst_stopped(inst);
		e->n_olds++;
	}
	return 0;
}

static void olds_terminated(struct engine *e, const kiln_strings *ids)
{
	size_t i;
	for (i = 0; i < e->n_olds; i++)
		if (kiln_strings_has(ids, e->olds[i].id))
			e->olds[i].terminated = true;
}

static struct track *track_of(struct engine *e, const char *id)
{
	struct track *t;
	size_t i;
	for (i = 0; i < e->n_tr; i++)
		if (!strcmp(e->tr[i].id, id))
			return &e->tr[i];
	if (!(t = realloc(e->tr, (e->n_tr + 1) * sizeof(*t))))
		return NULL;
	e->tr = t;
	t = &e->tr[e->n_tr++];
	memset(t, 0, sizeof(*t));
	snprintf(t->id, sizeof(t->id), "%s", id);
	return t;
}

/* "web@3" for an image id, when the engine has seen the image; else the id. */
static const char *label(const struct engine *e, const char *image_id)
{
	static char buf[4][KILN_NAME_MAX + 32];
	static unsigned next;
	size_t i;
	for (i = 0; i < e->labels.n; i++) {
		const kiln_image *img = &e->labels.items[i];
		if (strcmp(img->id, image_id) || !kiln_image_version(img))
			continue;
		next = (next + 1) % 4;
		snprintf(buf[next], sizeof(buf[next]), "%s@%lld", kiln_image_kiln_name(img),
			 (long long)kiln_image_version(img));
		return buf[next];
	}
	return image_id;
}

/* What the fleet ran before the rollout, for messages: "web@6", an image id, or "no image". */
static const char *from_label(const struct engine *e)
{
	if (e->lock.from_image[0])
		return e->lock.from_image;
	if (e->lock.from_image_id[0])
		return label(e, e->lock.from_image_id);
	return "no image";
}

/* Learns the names of the images in ids (one images_describe); failures only cost names. */
static void learn_labels(struct engine *e, const kiln_strings *ids)
{
	kiln_image_list got = { 0 };
	kiln_image_query q = { 0 };
	kiln_strings want = { 0 };
	size_t i;

	for (i = 0; i < ids->n; i++) {
		size_t k;
		bool known = false;
		for (k = 0; k < e->labels.n; k++)
			known |= !strcmp(e->labels.items[k].id, ids->items[i]);
		if (!known && ids->items[i][0])
			add_unique(&want, ids->items[i]);
	}
	if (!want.n)
		return;
	q.ids = (const char *const *)want.items;
	q.n_ids = want.n;
	if (e->c->ops->images_describe(e->c, &q, &got) == 0)
		for (i = 0; i < got.n; i++)
			kiln_image_list_add(&e->labels, &got.items[i]);
	kiln_error_clear();
	kiln_image_list_release(&got);
	kiln_strings_release(&want);
}

/* ---- events -------------------------------------------------------------- */

static void emit(struct engine *e, const char *name, kiln_level level, json_t *fields,
		 const char *fmt, ...) KILN_PRINTF(5, 6);

static void emit(struct engine *e, const char *name, kiln_level level, json_t *fields,
		 const char *fmt, ...)
{
	char msg[1536];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (fields && e->lock.rollout_id[0])
		json_object_set_new(fields, "rollout_id", json_string(e->lock.rollout_id));
	kiln_emit(e->ev, name, level, fields, "%s", msg);
}

static void step(struct engine *e, const char *phase, const char *fmt, ...) KILN_PRINTF(3, 4);

static void step(struct engine *e, const char *phase, const char *fmt, ...)
{
	char msg[1536];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	emit(e, "step", KILN_LEVEL_INFO, json_pack("{s:s}", "phase", phase), "%s", msg);
}

/* ---- the journal ---------------------------------------------------------- */

static int jwrite(struct engine *e, json_t *entry)
{
	int error = 0;
	if (!entry)
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	if (e->j && !e->fatal && (error = kiln_journal_append(e->j, entry)) < 0)
		e->fatal = true;
	else if (e->fatal)
		error = kiln_error_last()->code ? kiln_error_last()->code : KILN_ERROR;
	json_decref(entry);
	return error;
}

static json_t *ids_json(const char *const *ids, size_t n)
{
	json_t *a = json_array();
	size_t i;
	for (i = 0; a && i < n; i++)
		json_array_append_new(a, json_string(ids[i]));
	return a;
}

/* A mutation about to be made; fields stolen (NULL: none). */
static int jbefore(struct engine *e, const char *op, json_t *fields)
{
	json_t *o = json_pack("{s:s,s:s}", "op", op, "stage", "before");
	if (o && fields)
		json_object_update(o, fields);
	json_decref(fields);
	return jwrite(e, o);
}

/* Its result: rc from the call. Returns rc, or the journal's failure. */
static int jafter(struct engine *e, const char *op, int rc, json_t *fields)
{
	json_t *o = json_pack("{s:s,s:s,s:s}", "op", op, "stage", "after", "result",
			      rc < 0 ? "error" : "ok");
	kiln_error saved;
	int error;
	if (o && rc < 0)
		json_object_set_new(o, "error", json_string(kiln_error_last()->message));
	if (o && fields)
		json_object_update(o, fields);
	json_decref(fields);
	kiln_error_save(&saved);
	error = jwrite(e, o);
	if (error < 0)
		return error;
	kiln_error_restore(&saved);
	return rc;
}

static int jmark(struct engine *e, const char *op, json_t *fields)
{
	json_t *o = json_pack("{s:s}", "op", op);
	if (o && fields)
		json_object_update(o, fields);
	json_decref(fields);
	return jwrite(e, o);
}

/* ---- mutations, each journaled before and after ----------------------------- */

static int m_register(struct engine *e, size_t lb, const kiln_strings *ids, bool deregister)
{
	const char *op = deregister ? "deregister" : "register";
	size_t i;
	int error;

	if (!ids->n)
		return 0;
	if (e->fatal)
		return KILN_ERROR;
	if ((error = jbefore(e, op, json_pack("{s:s,s:o}", "lb", e->lbs[lb].lb->ref, "instance_ids",
					      ids_json((const char *const *)ids->items, ids->n)))) < 0)
		return error;
	error = deregister ?
		e->c->ops->lb_deregister(e->c, e->lbs[lb].lb, (const char *const *)ids->items, ids->n) :
		e->c->ops->lb_register(e->c, e->lbs[lb].lb, (const char *const *)ids->items, ids->n);
	if (error < 0)
		kiln_error_prefix("cannot %s %zu instance%s %s '%s'", op, ids->n, ids->n == 1 ? "" : "s",
				  deregister ? "from" : "with", e->lbs[lb].info.name);
	if ((error = jafter(e, op, error, NULL)) < 0)
		return error;
	for (i = 0; i < ids->n; i++)
		emit(e, "resource", KILN_LEVEL_DEBUG,
		     json_pack("{s:s,s:s,s:s,s:s}", "kind", "target", "id", ids->items[i], "lb",
			       e->lbs[lb].lb->ref, "action", deregister ? "deregistered" : "registered"),
		     "%s %s '%s'", ids->items[i], deregister ? "deregistered from" : "registered with",
		     e->lbs[lb].info.name);
	return 0;
}

static int m_terminate(struct engine *e, const kiln_strings *ids)
{
	size_t off, i;
	int error;

	for (off = 0; off < ids->n; off += CHUNK) {
		size_t n = KILN_MIN(CHUNK, ids->n - off);
		const char *const *v = (const char *const *)ids->items + off;
		if (e->fatal)
			return KILN_ERROR;
		if ((error = jbefore(e, "terminate", json_pack("{s:o}", "instance_ids", ids_json(v, n)))) < 0)
			return error;
		error = e->c->ops->instances_terminate(e->c, v, n);
		if (error < 0)
			kiln_error_prefix("cannot terminate %zu instance%s", n, n == 1 ? "" : "s");
		if ((error = jafter(e, "terminate", error, json_pack("{s:o}", "instance_ids", ids_json(v, n)))) < 0)
			return error;
		for (i = 0; i < n; i++)
			emit(e, "resource", KILN_LEVEL_DEBUG,
			     json_pack("{s:s,s:s,s:s}", "kind", "instance", "id", v[i], "action", "terminated"),
			     "terminated %s", v[i]);
		e->res->terminated += (unsigned)n;
	}
	return 0;
}

static int m_tag(struct engine *e, const kiln_strings *ids, const kiln_tags *tags)
{
	size_t off;
	int error;
	for (off = 0; off < ids->n; off += CHUNK) {
		size_t n = KILN_MIN(CHUNK, ids->n - off);
		const char *const *v = (const char *const *)ids->items + off;
		if ((error = jbefore(e, "tag", json_pack("{s:o,s:o}", "instance_ids", ids_json(v, n), "tags",
							 kiln_tags_to_json(tags)))) < 0)
			return error;
		error = e->c->ops->tags_create(e->c, v, n, tags);
		if ((error = jafter(e, "tag", error, NULL)) < 0)
			return error;
	}
	return 0;
}

/*
 * One launch call: count instances of image in subnet i, tagged for this
 * rollout. The token makes it safe to repeat: whoever repeats it gets the
 * same instances back. Their ids are added to ids.
 */
static int m_launch(struct engine *e, unsigned batch, unsigned epoch, size_t subnet, unsigned count,
		    const char *image_id, const char *role, kiln_strings *ids)
{
	const kiln_fleet *f = e->f;
	kiln_tags tags = KILN_TAGS_INIT;
	kiln_instance_list got = { 0 };
	kiln_launch spec = { 0 };
	const char *subnet_id = subnet < e->lock.subnet_ids.n ? e->lock.subnet_ids.items[subnet] : NULL;
	char token[80], num[16], ep[16];
	size_t i;
	int error;

	if (e->fatal)
		return KILN_ERROR;
	if ((error = kiln_plan_token(token, sizeof(token), e->lock.rollout_id, epoch, batch, subnet)) < 0)
		return error;
	snprintf(num, sizeof(num), "%u", batch);
	snprintf(ep, sizeof(ep), "%u", epoch);
	if ((error = kiln_tags_copy(&tags, &f->tags)) < 0 ||
	    (error = kiln_tags_set(&tags, KILN_TAG_FLEET, f->name)) < 0 ||
	    (error = kiln_tags_set(&tags, KILN_TAG_ROLLOUT_ID, e->lock.rollout_id)) < 0 ||
	    (error = kiln_tags_set(&tags, KILN_TAG_ROLE, role)) < 0 ||
	    (error = kiln_tags_set(&tags, KILN_TAG_BATCH, num)) < 0 ||
	    (error = kiln_tags_set(&tags, KILN_TAG_EPOCH, ep)) < 0)
		goto done;
	if (!kiln_tags_get(&tags, "Name")) {
		char name[KILN_NAME_MAX];
		snprintf(name, sizeof(name), "%s %s", f->name, label(e, image_id));
		if ((error = kiln_tags_set(&tags, "Name", name)) < 0)
			goto done;
	}
	spec.image_id = image_id;
	spec.instance_type = f->instance_type;
	spec.subnet_id = subnet_id;
	spec.security_group_ids = (const char *const *)f->security_group_ids.items;
	spec.n_security_groups = f->security_group_ids.n;
	spec.key_name = f->key_name;
	spec.iam_instance_profile = f->iam_instance_profile;
	spec.user_data = f->user_data;
	spec.options = f->launch_options; /* IMDSv2, the root volume: the same for every launch */
	spec.count = count;
	spec.client_token = token;
	spec.tags = &tags;
	if ((error = jbefore(e, "launch",
			     json_pack("{s:I,s:I,s:I,s:s?,s:s,s:I,s:s,s:s}", "batch", (json_int_t)batch,
				       "epoch", (json_int_t)epoch, "subnet_index", (json_int_t)subnet,
				       "subnet_id", subnet_id, "token", token, "count", (json_int_t)count,
				       "image_id", image_id, "role", role))) < 0)
		goto done;
	error = e->c->ops->instances_launch(e->c, &spec, &got);
	if (error == 0 && got.n != count)
		error = kiln_error_set(KILN_ERROR, "launch '%s' returned %zu instances, not %u", token, got.n,
				       count);
	if (error < 0)
		kiln_error_prefix("cannot launch %u instance%s of %s%s%s", count, count == 1 ? "" : "s",
				  label(e, image_id), subnet_id ? " in " : "", subnet_id ? subnet_id : "");
	{
		json_t *a = json_array();
		for (i = 0; a && error == 0 && i < got.n; i++)
			json_array_append_new(a, json_string(got.items[i].id));
		if ((error = jafter(e, "launch", error,
				    json_pack("{s:I,s:I,s:I,s:o}", "batch", (json_int_t)batch, "epoch",
					      (json_int_t)epoch, "subnet_index", (json_int_t)subnet,
					      "instance_ids", a ? a : json_array()))) < 0)
			goto done;
	}
	for (i = 0; i < got.n; i++) {
		if ((error = add_unique(ids, got.items[i].id)) < 0)
			goto done;
		emit(e, "resource", KILN_LEVEL_DEBUG,
		     json_pack("{s:s,s:s,s:s,s:s}", "kind", "instance", "id", got.items[i].id, "action",
			       "launched", "image_id", image_id),
		     "launched %s (%s%s%s)", got.items[i].id, label(e, image_id), subnet_id ? " in " : "",
		     subnet_id ? subnet_id : "");
	}
	e->res->launched += (unsigned)got.n;
done:
	kiln_instance_list_release(&got);
	kiln_tags_release(&tags);
	return error;
}

/* ---- observing ------------------------------------------------------------ */

static int renew_lock(struct engine *e)
{
	int error;
	if (!e->locked || kiln_clock_wall_ms() - e->renewed_ms < KILN_LOCK_RENEW_MS)
		return 0;
	error = kiln_fleet_lock_update(e->c, e->f->name, &e->lock);
	if (error == KILN_EBUSY) {
		/* someone judged us dead and took over: they settle it now, we must stop */
		e->fatal = true;
		e->locked = false;
		return error;
	}
	if (error < 0) {
		/* the lock lives a few minutes more; try again next round */
		emit(e, "warning", KILN_LEVEL_WARN, json_object(), "cannot renew the fleet's lock: %s",
		     kiln_error_last()->message);
		kiln_error_clear();
		return 0;
	}
	e->renewed_ms = kiln_clock_wall_ms();
	return 0;
}

/*
 * What a poll round describes. Each scope is one instances_describe by
 * tag, so a round costs one describe (or none) and one lb_health per
 * balancer, whatever the fleet's size; and it lists only what the step
 * needs, so a 1000-instance fleet is not described whole every second:
 *   SEE_NEW    this rollout's new instances, terminated ones too (a new
 *              instance that died is seen dead, not just missing);
 *   SEE_OLD    the old ones (tagged kiln:role=old for this rollout when it
 *              began or was taken over), terminated ones too;
 *   SEE_FLEET  everything of the fleet that is not terminated (the start,
 *              a take-over, dry runs and status).
 *   SEE_BATCH  the new instances of the batch coming up (cur_batch): while
 *              it waits, earlier batches are followed through the
 *              balancers' health alone, so a round describes one batch.
 *              By their ids when the launches returned all of them and
 *              they fit one filter (IDS_MAX), else by tag: a describe by
 *              id costs what the batch costs, where one by tag may cost
 *              what every instance in the account costs (moto scans every
 *              instance's tags, so its describes by tag grow with the
 *              square of the fleet);
 *   SEE_NEW | SEE_OLD  both, in one call (every instance tagged with the
 *              rollout's id).
 * A mask of 0 reads only the balancers and keeps the last instances.
 */
#define SEE_NEW 1
#define SEE_OLD 2
#define SEE_FLEET 4
#define SEE_BATCH 8

/* EC2 takes at most 200 values in one describe call's filters */
#define IDS_MAX 200

static int describe_scope(struct engine *e, int scope, kiln_instance_list *into)
{
	kiln_tags want = KILN_TAGS_INIT;
	kiln_instance_query q = { 0 };
	kiln_instance_list list = { 0 };
	size_t i;
	int error;

	if ((error = kiln_tags_set(&want, KILN_TAG_FLEET, e->f->name)) < 0)
		goto done;
	if (scope == SEE_BATCH && e->batch_ids && e->batch_ids->n && e->batch_ids->n <= IDS_MAX) {
		/* by id; the fleet's tag only guards against a foreign id */
		q.ids = (const char *const *)e->batch_ids->items;
		q.n_ids = e->batch_ids->n;
	} else if (scope != SEE_FLEET) {
		if ((error = kiln_tags_set(&want, KILN_TAG_ROLLOUT_ID, e->lock.rollout_id)) < 0)
			goto done;
		/* both new and old: every instance tagged with the rollout, in one call */
		if ((scope == SEE_NEW || scope == SEE_OLD || scope == SEE_BATCH) &&
		    (error = kiln_tags_set(&want, KILN_TAG_ROLE, scope == SEE_OLD ? "old" : "new")) < 0)
			goto done;
		if (scope == SEE_BATCH) {
			char b[16];
			snprintf(b, sizeof(b), "%u", e->cur_batch);
			if ((error = kiln_tags_set(&want, KILN_TAG_BATCH, b)) < 0)
				goto done;
		}
	}
	q.tags = &want;
	q.include_terminated = scope != SEE_FLEET;
	if ((error = e->c->ops->instances_describe(e->c, &q, &list)) < 0) {
		kiln_error_prefix("cannot list the instances of fleet '%s'", e->f->name);
		goto done;
	}
	for (i = 0; i < list.n && error == 0; i++)
		if (!kiln_instance_list_find(into, list.items[i].id))
			error = kiln_instance_list_add(into, &list.items[i]);
done:
	kiln_instance_list_release(&list);
	kiln_tags_release(&want);
	return error;
}

static int observe(struct engine *e, int mask)
{
	kiln_instance_list list = { 0 };
	size_t i;
	int error;

	if ((error = renew_lock(e)) < 0)
		return error;
	if (mask) {
		int scope = mask & SEE_FLEET ? SEE_FLEET : mask;
		if ((error = describe_scope(e, scope, &list)) < 0) {
			kiln_instance_list_release(&list);
			return error;
		}
		if (list.n > 1)
			qsort(list.items, list.n, sizeof(*list.items), cmp_inst);
		kiln_instance_list_release(&e->insts);
		e->insts = list;
	}
	for (i = 0; i < e->n_lbs; i++) {
		kiln_target_list t = { 0 };
		if ((error = e->c->ops->lb_health(e->c, e->lbs[i].lb, NULL, 0, &t)) < 0)
			return kiln_error_prefix("cannot read the health of '%s'", e->lbs[i].info.name);
		if (t.n > 1)
			qsort(t.items, t.n, sizeof(*t.items), cmp_target);
		kiln_target_list_release(&e->lbs[i].t);
		e->lbs[i].t = t;
	}
	e->res->poll_rounds++;
	return 0;
}

/* the shortest poll interval: a describe and a health call per round is cheap, not free */
#define POLL_FLOOR_MS 100

/*
 * The fastest check interval of the fleet's balancers (ms), 0 if none says:
 * what lb_open reported, else the fleet's own setting (local balancers).
 */
static uint64_t check_interval_ms(const struct engine *e)
{
	uint64_t best = 0;
	size_t i;
	for (i = 0; i < e->n_lbs; i++) {
		int s = e->lbs[i].info.health_interval_s > 0 ? e->lbs[i].info.health_interval_s
							     : e->lbs[i].lb->interval_s;
		if (s > 0 && (!best || (uint64_t)s * 1000 < best))
			best = (uint64_t)s * 1000;
	}
	return best;
}

/*
 * The poll schedule: 1 s backing off to 5 s, but never slower than a
 * quarter of the balancers' check interval (and starting at an eighth of
 * it). A balancer changes a target's health at most once a check, so kiln
 * sees each change well within one interval, even counting the round's own
 * time. With checks every second (local fleets) a batch waits for two
 * changes (running, then healthy), and 1 s backing off 1.5x saw each 0.5-1.5 s
 * late; at half the interval still 0.25 s on average. Slow checks (ELB's
 * 30 s by default) keep 1 s -> 5 s: no more calls than before.
 */
static void poll_reset(struct engine *e)
{
	uint64_t first = e->o->poll_first_ms ? e->o->poll_first_ms : 1000;
	uint64_t max = e->o->poll_max_ms ? e->o->poll_max_ms : 5000;
	uint64_t check = check_interval_ms(e);

	if (check) {
		uint64_t cap = KILN_MAX(check / 4, (uint64_t)POLL_FLOOR_MS);
		max = KILN_MIN(max, cap);
		if (!e->o->poll_first_ms)
			first = KILN_MIN(first, KILN_MAX(cap / 2, (uint64_t)POLL_FLOOR_MS));
	}
	kiln_backoff_init(&e->bo, KILN_MIN(first, max), max);
}

/* Sleeps the next interval (reset to fast by a change), never past until_ms. */
static int nap(struct engine *e, bool changed, uint64_t until_ms)
{
	uint64_t ms, t = now_ms();
	if (changed)
		poll_reset(e);
	ms = kiln_backoff_next(&e->bo);
	if (until_ms > t && until_ms - t < ms)
		ms = until_ms - t;
	return kiln_sleep_ms(ms ? ms : 1);
}

static int open_lbs(struct engine *e)
{
	size_t i;
	int error;

	if (!(e->lbs = calloc(e->f->n_lbs, sizeof(*e->lbs))))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	e->n_lbs = e->f->n_lbs;
	for (i = 0; i < e->n_lbs; i++) {
		struct lbstate *l = &e->lbs[i];
		l->lb = &e->f->lbs[i];
		if ((error = e->c->ops->lb_open(e->c, l->lb, &l->info)) < 0)
			return kiln_error_prefix("load balancer '%s'", l->lb->ref);
		if (!l->info.name[0])
			snprintf(l->info.name, sizeof(l->info.name), "%s", l->lb->ref);
		l->drain_s = e->f->drain_timeout_s >= 0 ? e->f->drain_timeout_s : l->info.drain_timeout_s;
	}
	return 0;
}

/* ---- failure ----------------------------------------------------------------- */

static void set_failure(struct engine *e, const char *id, const char *health, const char *reason,
			const char *fmt, ...) KILN_PRINTF(5, 6);

static void set_failure(struct engine *e, const char *id, const char *health, const char *reason,
			const char *fmt, ...)
{
	va_list ap;
	if (e->fail.set)
		return;
	e->fail.set = true;
	snprintf(e->fail.instance, sizeof(e->fail.instance), "%s", id ? id : "");
	snprintf(e->fail.health, sizeof(e->fail.health), "%s", health ? health : "");
	snprintf(e->fail.reason, sizeof(e->fail.reason), "%s", reason ? reason : "");
	va_start(ap, fmt);
	vsnprintf(e->fail.message, sizeof(e->fail.message), fmt, ap);
	va_end(ap);
}

/* The last lines of an instance's console, for the failure message. */
static void fetch_console(struct engine *e)
{
	kiln_buf b = KILN_BUF_INIT;
	const char *p;
	int lines = 0;

	if (!e->fail.instance[0] || e->res->console_tail)
		return;
	kiln_buf_init(&b, 1 << 20);
	if (e->c->ops->console_output(e->c, e->fail.instance, &b) == 0 && b.len) {
		kiln_buf_rtrim(&b);
		/* the last 10 lines, at most 2 KiB */
		for (p = b.ptr + b.len; p > b.ptr; p--)
			if (p[-1] == '\n' && ++lines == 10)
				break;
		if ((size_t)(b.ptr + b.len - p) > 2048)
			p = b.ptr + b.len - 2048;
		e->res->console_tail = kiln_strdup(p);
	}
	kiln_error_clear();
	kiln_buf_release(&b);
}

/* ---- waiting for health ---------------------------------------------------------- */

/*
 * Waits until every id in expect (and at least want of them) is running
 * and healthy in every balancer for warmup_s, registering each as it
 * comes up. A failure sets e->fail and returns KILN_ERROR; a cloud error
 * or a cancel is returned as it is.
 *
 * expect_fn fills the ids to wait for from the latest observation, so
 * that instances found in the cloud (a resumed rollout) and ids only the
 * launch returned (not yet listed) are both waited for.
 */
typedef int (*expect_fn)(struct engine *e, void *ctx, kiln_strings *out);

static int wait_healthy(struct engine *e, expect_fn expect, void *ctx, unsigned want,
			const char *what, bool is_restore)
{
	uint64_t deadline = now_ms() + (uint64_t)e->f->health_timeout_s * 1000, healthy_since = 0;
	uint64_t warm = (uint64_t)e->f->warmup_s * 1000, grace = (uint64_t)e->f->health_grace_s * 1000;
	int see = is_restore ? SEE_OLD : SEE_BATCH;
	kiln_strings *reg = NULL;
	int error;

	poll_reset(e);
	if (!(reg = calloc(e->n_lbs, sizeof(*reg))))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	for (;;) {
		kiln_strings ids = { 0 };
		const char *laggard = NULL;
		bool changed = false;
		unsigned ok = 0;
		size_t i, l;
		uint64_t t, until;

		if ((error = observe(e, see)) < 0 || (error = expect(e, ctx, &ids)) < 0) {
			kiln_strings_release(&ids);
			goto done;
		}
		t = now_ms();
		for (i = 0; i < ids.n; i++) {
			const char *id = ids.items[i];
			const kiln_instance *inst = find_inst(e, id);
			struct track *tr = track_of(e, id);
			kiln_health worst = KILN_HEALTH_HEALTHY;
			const kiln_target *bad = NULL;
			size_t bad_lb = 0;

			if (!tr) {
				error = kiln_error_set(KILN_ENOMEM, "out of memory");
				kiln_strings_release(&ids);
				goto done;
			}
			if (!inst && !kiln_strings_has(&e->known_new, id)) {
				/* launched but not listed yet (describe is eventually consistent) */
				laggard = laggard ? laggard : id;
				continue;
			}
			/*
			 * An instance of an earlier batch is not described again: the
			 * balancers say whether it still serves (and registering it
			 * again fails if it is gone).
			 */
			if (inst && inst->state != tr->state) {
				tr->state = inst->state;
				changed = true;
				emit(e, "instance", KILN_LEVEL_DEBUG,
				     json_pack("{s:s,s:s}", "id", id, "state", kiln_instance_state_name(inst->state)),
				     "%s is %s", id, kiln_instance_state_name(inst->state));
			}
			if (inst && !inst_alive(inst)) {
				set_failure(e, id, kiln_instance_state_name(inst->state), inst->state_reason,
					    "instance '%s' is %s%s%s", id, kiln_instance_state_name(inst->state),
					    inst->state_reason[0] ? ": " : "", inst->state_reason);
				error = KILN_ERROR;
				kiln_strings_release(&ids);
				goto done;
			}
			if (inst && inst->state != KILN_INSTANCE_RUNNING) {
				laggard = laggard ? laggard : id;
				continue;
			}
			for (l = 0; l < e->n_lbs; l++) {
				const kiln_target *tg = target_in(&e->lbs[l], id);
				kiln_health h = tg ? tg->health : KILN_HEALTH_UNUSED;
				if (h == KILN_HEALTH_UNUSED || h == KILN_HEALTH_DRAINING) {
					if ((error = add_unique(&reg[l], id)) < 0) {
						kiln_strings_release(&ids);
						goto done;
					}
					if (worst == KILN_HEALTH_HEALTHY)
						worst = KILN_HEALTH_INITIAL;
				} else if (h == KILN_HEALTH_UNHEALTHY) {
					worst = KILN_HEALTH_UNHEALTHY;
					bad = tg;
					bad_lb = l;
				} else if (h != KILN_HEALTH_HEALTHY && worst == KILN_HEALTH_HEALTHY) {
					worst = h;
					bad = tg;
					bad_lb = l;
				}
			}
			if (worst != tr->health) {
				tr->health = worst;
				changed = true;
				emit(e, "health", worst == KILN_HEALTH_UNHEALTHY ? KILN_LEVEL_WARN : KILN_LEVEL_DEBUG,
				     json_pack("{s:s,s:s,s:s,s:s}", "id", id, "lb",
					       bad ? e->lbs[bad_lb].lb->ref : "", "health", kiln_health_name(worst),
					       "reason", bad ? bad->reason : ""),
				     "%s is %s%s%s%s%s%s", id, kiln_health_name(worst), bad ? " in '" : "",
				     bad ? e->lbs[bad_lb].info.name : "", bad ? "'" : "",
				     bad && bad->reason[0] ? ": " : "", bad ? bad->reason : "");
			}
			if (worst == KILN_HEALTH_UNHEALTHY) {
				if (!tr->unhealthy_since)
					tr->unhealthy_since = t;
				if (t - tr->unhealthy_since > grace) {
					set_failure(e, id, "unhealthy", bad->reason,
						    "instance '%s' has been unhealthy in '%s' for %llu s (longer than health_grace_s %d): %s",
						    id, e->lbs[bad_lb].info.name,
						    (unsigned long long)((t - tr->unhealthy_since) / 1000),
						    e->f->health_grace_s, bad->reason[0] ? bad->reason : "no reason given");
					error = KILN_ERROR;
					kiln_strings_release(&ids);
					goto done;
				}
			} else {
				tr->unhealthy_since = 0;
			}
			if (worst == KILN_HEALTH_HEALTHY)
				ok++;
			else
				laggard = laggard ? laggard : id;
		}
		for (l = 0; l < e->n_lbs; l++) {
			error = m_register(e, l, &reg[l], false);
			kiln_strings_release(&reg[l]);
			if (error < 0) {
				if (!e->fatal && !is_restore)
					set_failure(e, NULL, NULL, NULL, "%s", kiln_error_last()->message);
				kiln_strings_release(&ids);
				goto done;
			}
		}
		if (ok == ids.n && ok >= want) {
			if (!healthy_since) {
				healthy_since = t;
				emit(e, "info", KILN_LEVEL_INFO, json_object(), "%s: %u instance%s healthy%s", what,
				     ok, ok == 1 ? "" : "s", warm ? "; warming up" : "");
			}
			if (t - healthy_since >= warm) {
				kiln_strings_release(&ids);
				error = 0;
				goto done;
			}
		} else {
			healthy_since = 0;
		}
		if (t >= deadline) {
			const char *id = laggard ? laggard : "";
			const kiln_target *tg = NULL;
			for (l = 0; id[0] && !tg && l < e->n_lbs; l++)
				if ((tg = target_in(&e->lbs[l], id)) && tg->health == KILN_HEALTH_HEALTHY)
					tg = NULL;
			set_failure(e, id, tg ? kiln_health_name(tg->health) : "pending",
				    tg ? tg->reason : "",
				    "%s: not healthy within health_timeout_s (%d s): instance '%s' is %s%s%s", what,
				    e->f->health_timeout_s, id[0] ? id : "(not listed)",
				    tg ? kiln_health_name(tg->health) : "not registered",
				    tg && tg->reason[0] ? ": " : "", tg ? tg->reason : "");
			kiln_strings_release(&ids);
			error = KILN_ERROR;
			goto done;
		}
		kiln_strings_release(&ids);
		until = healthy_since ? healthy_since + warm : deadline;
		if ((error = nap(e, changed, KILN_MIN(until, deadline))) < 0)
			goto done;
	}
done:
	for (size_t l = 0; l < e->n_lbs; l++)
		kiln_strings_release(&reg[l]);
	free(reg);
	return error;
}

/* ---- draining and removing ----------------------------------------------------------- */

/*
 * Waits until none of ids is draining in any balancer: unused or gone
 * (target groups, local), or its drain timeout passed. Classic ELBs do not
 * report connection draining reliably, so for them the full drain timeout
 * is waited.
 */
static int drain_wait(struct engine *e, const kiln_strings *ids)
{
	uint64_t start = now_ms();
	int error;

	if (!ids->n)
		return 0;
	poll_reset(e);
	for (;;) {
		uint64_t t, next = UINT64_MAX;
		bool pending = false;
		size_t i, l;

		if ((error = observe(e, 0)) < 0)
			return error;
		t = now_ms();
		for (l = 0; l < e->n_lbs; l++) {
			const struct lbstate *lb = &e->lbs[l];
			uint64_t limit = start + (uint64_t)lb->drain_s * 1000;
			if (lb->lb->kind == KILN_LB_CLASSIC) {
				if (t < limit) {
					pending = true;
					next = KILN_MIN(next, limit);
				}
				continue;
			}
			limit += DRAIN_SLACK_MS;
			for (i = 0; i < ids->n && t < limit; i++)
				if (health_in(lb, ids->items[i]) == KILN_HEALTH_DRAINING) {
					pending = true;
					next = KILN_MIN(next, limit);
					break;
				}
		}
		if (!pending)
			return 0;
		if ((error = nap(e, false, next)) < 0)
			return error;
	}
}

/*
 * Takes instances out of service and terminates them: deregistered from
 * every balancer that has them, drained, terminated.
 */
static int remove_instances(struct engine *e, const kiln_strings *ids)
{
	kiln_strings drain = { 0 }, term = { 0 };
	size_t i, l;
	int error = 0;

	if (!ids->n)
		return 0;
	if ((error = observe(e, 0)) < 0)
		return error;
	for (l = 0; l < e->n_lbs && error == 0; l++) {
		kiln_strings out = { 0 };
		for (i = 0; i < ids->n && error == 0; i++)
			if (active_in(&e->lbs[l], ids->items[i]))
				error = add_unique(&out, ids->items[i]);
		if (error == 0)
			error = m_register(e, l, &out, true);
		kiln_strings_release(&out);
	}
	for (i = 0; i < ids->n && error == 0; i++) {
		const kiln_instance *inst = find_inst(e, ids->items[i]);
		if (draining_anywhere(e, ids->items[i]) || active_anywhere(e, ids->items[i]))
			error = add_unique(&drain, ids->items[i]);
		if (error == 0 && (!inst || !inst_gone(inst)))
			error = add_unique(&term, ids->items[i]);
	}
	if (error == 0)
		error = drain_wait(e, &drain);
	if (error == 0)
		error = m_terminate(e, &term);
	kiln_strings_release(&drain);
	kiln_strings_release(&term);
	return error;
}

/* ---- restore --------------------------------------------------------------------- */

static int expect_old(struct engine *e, void *ctx, kiln_strings *out)
{
	const kiln_strings *relaunched = ctx;
	size_t i;
	int error;
	for (i = 0; i < e->insts.n; i++) {
		const kiln_instance *inst = &e->insts.items[i];
		if (is_old(e, inst) && inst_alive(inst) && (error = add_unique(out, inst->id)) < 0)
			return error;
	}
	/* a relaunch not listed yet is still waited for; one that died fails the restore */
	for (i = 0; i < relaunched->n; i++) {
		const kiln_instance *inst = find_inst(e, relaunched->items[i]);
		if ((!inst || !inst_alive(inst)) && (error = add_unique(out, relaunched->items[i])) < 0)
			return error;
	}
	return 0;
}

static int collect_new(struct engine *e, kiln_strings *out, bool only_unhealthy)
{
	size_t i;
	int error;
	for (i = 0; i < e->insts.n; i++) {
		const kiln_instance *inst = &e->insts.items[i];
		if (!is_ours_new(e, inst) || inst_gone(inst))
			continue;
		if (only_unhealthy && healthy_everywhere(e, inst->id))
			continue;
		if ((error = add_unique(out, inst->id)) < 0)
			return error;
	}
	return 0;
}

static int finish_lock(struct engine *e, const char *result, const char *message)
{
	kiln_state_entry se = { 0 };
	int error;

	se.rollout_id = e->lock.rollout_id;
	se.kind = e->lock.kind;
	se.result = result;
	se.from_image_id = e->lock.from_image_id;
	se.from_image = e->lock.from_image;
	se.to_image_id = e->lock.to_image_id;
	se.to_image = e->lock.to_image;
	se.started_ms = e->lock.started_ms;
	se.message = message;
	if ((error = jbefore(e, "state", json_pack("{s:s}", "result", result))) < 0)
		return error;
	error = kiln_fleet_state_put(e->c, e->f->name, &se);
	if ((error = jafter(e, "state", error, NULL)) < 0)
		return error;
	if ((error = jbefore(e, "unlock", NULL)) < 0)
		return error;
	error = kiln_fleet_lock_delete(e->c, e->f->name);
	if ((error = jafter(e, "unlock", error, NULL)) < 0)
		return error;
	e->locked = false;
	kiln_fleet_lock_claims_delete(e->c, e->f->name);
	return jmark(e, "end", json_pack("{s:s}", "result", result));
}

/*
 * The restore failed: keep every healthy instance serving, remove the new
 * and relaunched instances that are not healthy (they serve nothing), and
 * say which instances are left.
 */
static int restore_failed(struct engine *e, const char *why)
{
	kiln_strings drop = { 0 };
	kiln_buf kept = KILN_BUF_INIT;
	char msg[1024];
	size_t i;
	int error = 0;

	kiln_cancel_shield_push();
	emit(e, "warning", KILN_LEVEL_ERROR, json_object(), "restore failed: %s", why);
	/*
	 * New ones, then old ones (two calls, neither the whole fleet twice):
	 * the healthy stay and are named, the rest of what this rollout
	 * launched goes. Removal never touches a healthy instance, so what was
	 * seen healthy here is what is left serving.
	 */
	for (int pass = 0; pass < 2 && !e->fatal; pass++) {
		if (observe(e, pass ? SEE_OLD : SEE_NEW) < 0)
			break;
		for (i = 0; i < e->insts.n; i++) {
			const kiln_instance *inst = &e->insts.items[i];
			if (!inst_alive(inst))
				continue;
			if (healthy_everywhere(e, inst->id)) {
				kiln_strings_add(&e->res->kept, inst->id);
				if (e->res->kept.n <= 10)
					kiln_buf_printf(&kept, "%s%s (%s)", kept.len ? ", " : "", inst->id,
							label(e, inst->image_id));
			} else if (pass ? is_relaunched(e, inst) : is_ours_new(e, inst)) {
				add_unique(&drop, inst->id);
			}
		}
	}
	if (e->res->kept.n > 10)
		kiln_buf_printf(&kept, " and %zu more", e->res->kept.n - 10);
	if (!e->fatal && remove_instances(e, &drop) < 0)
		emit(e, "warning", KILN_LEVEL_WARN, json_object(), "%s", kiln_error_last()->message);
	snprintf(msg, sizeof(msg), "%s", why);
	if (!e->fatal && finish_lock(e, "restore-failed", msg) < 0)
		emit(e, "warning", KILN_LEVEL_WARN, json_object(), "%s", kiln_error_last()->message);
	kiln_cancel_shield_pop();
	e->res->outcome = KILN_ROLLOUT_RESTORE_FAILED;
	error = kiln_error_set(KILN_ERROR,
			       "rollout %s of fleet '%s' failed (%s) and restoring the old fleet failed too (%s); kept serving %zu healthy instance%s: %s",
			       e->lock.rollout_id, e->f->name, e->fail.message[0] ? e->fail.message : e->lock.reason,
			       why, e->res->kept.n, e->res->kept.n == 1 ? "" : "s",
			       kept.len ? kept.ptr : "none");
	kiln_strings_release(&drop);
	kiln_buf_release(&kept);
	return error;
}

/*
 * Puts the old fleet back: re-registers the old instances still running,
 * relaunches the previous image for old ones already terminated (per_batch),
 * waits until all are healthy in every balancer, then drains and
 * terminates every new instance of this rollout. undo: `kiln rollback` of
 * an interrupted rollout (success is exit 0, not 3).
 */
static int restore(struct engine *e, const char *reason, bool undo)
{
	kiln_strings relaunched = { 0 }, news = { 0 };
	char why[1024];
	int error;

	if (e->lock.phase != KILN_PHASE_RESTORE) {
		unsigned alive = 0;
		size_t i;
		if ((error = observe(e, SEE_OLD)) < 0)
			goto stop;
		for (i = 0; i < e->insts.n; i++)
			alive += is_old(e, &e->insts.items[i]) && inst_alive(&e->insts.items[i]);
		e->lock.phase = KILN_PHASE_RESTORE;
		e->lock.restore_attempt = 1;
		e->lock.restore_relaunch = e->lock.old_count > alive ? e->lock.old_count - alive : 0;
		snprintf(e->lock.reason, sizeof(e->lock.reason), "%s", reason);
		if ((error = jbefore(e, "lock-update", json_pack("{s:s,s:I}", "phase", "restore", "relaunch",
								 (json_int_t)e->lock.restore_relaunch))) < 0)
			goto stop;
		error = kiln_fleet_lock_update(e->c, e->f->name, &e->lock);
		if ((error = jafter(e, "lock-update", error, NULL)) < 0) {
			if (error == KILN_EBUSY)
				e->fatal = true;
			goto stop;
		}
		e->renewed_ms = kiln_clock_wall_ms();
	}
	if ((error = jmark(e, "restore", json_pack("{s:s,s:I}", "reason", reason, "relaunch",
						   (json_int_t)e->lock.restore_relaunch))) < 0)
		goto stop;
	if (e->lock.old_count)
		step(e, "restore", "restoring fleet '%s' to %s (%u instance%s%s): %s", e->f->name,
		     from_label(e), e->lock.old_count, e->lock.old_count == 1 ? "" : "s",
		     e->lock.restore_relaunch ? ", relaunching some" : "", reason);
	else
		/* nothing served before: "restoring" is removing what this rollout launched */
		step(e, "restore", "restoring fleet '%s' to no instance serving, as before: %s", e->f->name,
		     reason);

	if (e->lock.restore_relaunch) {
		size_t s, n = e->lock.subnet_ids.n ? e->lock.subnet_ids.n : 1;
		unsigned j;
		if (!e->lock.from_image_id[0]) {
			snprintf(why, sizeof(why), "no previous image to relaunch");
			goto failed;
		}
		for (s = 0; s < n; s++) {
			unsigned count = 0;
			for (j = 0; j < e->lock.restore_relaunch; j++)
				count += j % n == s;
			if (!count)
				continue;
			if ((error = m_launch(e, 0, e->lock.restore_attempt, s, count, e->lock.from_image_id,
					      "old", &relaunched)) < 0) {
				if (e->fatal)
					goto stop;
				snprintf(why, sizeof(why), "%s", kiln_error_last()->message);
				goto failed;
			}
		}
	}
	{
		struct failure saved = e->fail;
		memset(&e->fail, 0, sizeof(e->fail));
		error = wait_healthy(e, expect_old, &relaunched, e->lock.old_count, "restore", true);
		if (error == KILN_ERROR && e->fail.set && !e->fatal) {
			snprintf(why, sizeof(why), "%s", e->fail.message);
			e->fail = saved;
			goto failed;
		}
		e->fail = saved;
		if (error < 0)
			goto stop;
	}
	/* the old fleet serves again: now the new instances can go */
	if ((error = observe(e, SEE_NEW)) < 0 || (error = collect_new(e, &news, false)) < 0)
		goto stop;
	if (news.n)
		step(e, "remove", "removing %zu new instance%s", news.n, news.n == 1 ? "" : "s");
	kiln_cancel_shield_push();
	error = remove_instances(e, &news);
	if (error == 0)
		error = finish_lock(e, undo ? "undone" : "restored", reason);
	kiln_cancel_shield_pop();
	if (error < 0)
		goto stop;
	kiln_strings_release(&relaunched);
	kiln_strings_release(&news);
	if (undo) {
		e->res->outcome = KILN_ROLLOUT_DONE;
		if (e->lock.old_count)
			step(e, "done", "rollout %s undone: fleet '%s' runs %s again", e->lock.rollout_id,
			     e->f->name, from_label(e));
		else
			step(e, "done", "rollout %s undone: fleet '%s' has no instance serving, as before",
			     e->lock.rollout_id, e->f->name);
		return 0;
	}
	e->res->outcome = KILN_ROLLOUT_RESTORED;
	return kiln_error_set(KILN_ERROR, "rollout %s of fleet '%s' to %s failed: %s; the fleet was restored to %s (%u instance%s)",
			      e->lock.rollout_id, e->f->name, e->lock.to_image, reason,
			      e->lock.old_count ? from_label(e) : "no instances",
			      e->lock.old_count, e->lock.old_count == 1 ? "" : "s");
failed:
	kiln_strings_release(&relaunched);
	kiln_strings_release(&news);
	return restore_failed(e, why);
stop:
	kiln_strings_release(&relaunched);
	kiln_strings_release(&news);
	return error;
}

/* ---- going forward ----------------------------------------------------------------- */

struct batch_ctx {
	unsigned k;
	const kiln_strings *launched;
};

static int expect_new(struct engine *e, void *ctx, kiln_strings *out)
{
	const struct batch_ctx *b = ctx;
	size_t i;
	int error;
	for (i = 0; i < e->insts.n; i++) {
		const kiln_instance *inst = &e->insts.items[i];
		if (is_valid_new(e, inst) && tag_uint(inst, KILN_TAG_BATCH) <= b->k &&
		    (error = add_unique(out, inst->id)) < 0)
			return error;
	}
	for (i = 0; i < b->launched->n; i++)
		if ((error = add_unique(out, b->launched->items[i])) < 0)
			return error;
	for (i = 0; i < e->known_new.n; i++)
		if ((error = add_unique(out, e->known_new.items[i])) < 0)
			return error;
	return 0;
}

/*
 * After batch k is healthy: deregister old instances until at most
 * old_left(k) are in service, unserving ones first, never letting healthy
 * capacity drop below desired; wait until drained; with per_batch,
 * terminate the old instances out of service.
 */
static int retire(struct engine *e, unsigned k)
{
	const kiln_plan_batch *b = &e->plan.batches[k - 1];
	kiln_plan_old *olds = NULL;
	kiln_strings chosen = { 0 }, drain = { 0 }, term = { 0 };
	unsigned n_active = 0, new_healthy = 0, old_serving = 0, need;
	size_t i, l;
	int error;

	/*
	 * The new ones are the batches known healthy; the old ones are those
	 * remembered from the start, followed through the balancers alone (an
	 * old instance that died is no longer active in any of them).
	 */
	if ((error = observe(e, 0)) < 0)
		return error;
	for (i = 0; i < e->known_new.n; i++)
		new_healthy += healthy_everywhere(e, e->known_new.items[i]);
	if (!(olds = calloc(e->n_olds + 1, sizeof(*olds))))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	for (i = 0; i < e->n_olds; i++) {
		const struct old *o = &e->olds[i];
		if (o->terminated)
			continue;
		if (draining_anywhere(e, o->id) && (error = add_unique(&drain, o->id)) < 0)
			goto done;
		if (!active_anywhere(e, o->id))
			continue;
		olds[n_active].id = o->id;
		olds[n_active].launch_time = o->launch_time;
		olds[n_active].serving = healthy_everywhere(e, o->id);
		old_serving += olds[n_active].serving;
		n_active++;
	}
	kiln_plan_sort_old(olds, n_active);
	need = n_active > b->old_left ? n_active - b->old_left : 0;
	for (i = 0; i < n_active && chosen.n < need; i++) {
		if (olds[i].serving) {
			/* capacity first: a serving old one goes only if desired stays served */
			if (new_healthy + old_serving - 1 < e->lock.desired)
				break;
			old_serving--;
		}
		if ((error = add_unique(&chosen, olds[i].id)) < 0)
			goto done;
	}
	if (chosen.n)
		emit(e, "info", KILN_LEVEL_INFO, json_pack("{s:I}", "batch", (json_int_t)k),
		     "batch %u/%zu: deregistering %zu old instance%s", k, e->plan.n_batches, chosen.n,
		     chosen.n == 1 ? "" : "s");
	for (l = 0; l < e->n_lbs; l++) {
		kiln_strings out = { 0 };
		for (i = 0; i < chosen.n && error == 0; i++)
			if (active_in(&e->lbs[l], chosen.items[i]))
				error = add_unique(&out, chosen.items[i]);
		if (error == 0)
			error = m_register(e, l, &out, true);
		kiln_strings_release(&out);
		if (error < 0)
			goto done;
	}
	for (i = 0; i < chosen.n; i++)
		if ((error = add_unique(&drain, chosen.items[i])) < 0)
			goto done;
	if ((error = drain_wait(e, &drain)) < 0)
		goto done;
	if (e->lock.retire == KILN_RETIRE_PER_BATCH) {
		for (i = 0; i < e->n_olds; i++) {
			const struct old *o = &e->olds[i];
			if (!o->terminated && !o->stopped && !active_anywhere(e, o->id) &&
			    !draining_anywhere(e, o->id) && (error = add_unique(&term, o->id)) < 0)
				goto done;
		}
		if ((error = m_terminate(e, &term)) < 0)
			goto done;
		olds_terminated(e, &term);
	}
	error = jmark(e, "retired", json_pack("{s:I,s:I}", "batch", (json_int_t)k, "deregistered",
					       (json_int_t)chosen.n));
done:
	free(olds);
	kiln_strings_release(&chosen);
	kiln_strings_release(&drain);
	kiln_strings_release(&term);
	return error;
}

/* Removes new instances of cancelled batches (earlier epochs), left by a crash mid-removal. */
static int remove_strays(struct engine *e)
{
	kiln_strings strays = { 0 };
	size_t i;
	int error = 0;
	for (i = 0; i < e->insts.n && error == 0; i++) {
		const kiln_instance *inst = &e->insts.items[i];
		if (is_ours_new(e, inst) && !is_valid_new(e, inst) && !inst_gone(inst))
			error = add_unique(&strays, inst->id);
	}
	if (error == 0 && strays.n) {
		emit(e, "info", KILN_LEVEL_INFO, json_object(),
		     "removing %zu instance%s of a cancelled batch", strays.n, strays.n == 1 ? "" : "s");
		error = remove_instances(e, &strays);
	}
	kiln_strings_release(&strays);
	return error;
}

/*
 * Cancelled while batch k was not yet healthy: its instances go. The lock's
 * epoch is bumped first, so that relaunching batch k later is a new launch
 * (a new token), and a crash halfway leaves them marked as strays.
 */
static int cancel_batch(struct engine *e, unsigned k)
{
	unsigned epoch = e->lock.epoch, from = e->lock.epoch_batch;
	int error;

	e->lock.epoch = epoch + 1;
	e->lock.epoch_batch = k;
	if ((error = jbefore(e, "lock-update", json_pack("{s:I,s:I}", "epoch", (json_int_t)e->lock.epoch,
							 "epoch_batch", (json_int_t)k))) < 0)
		return error;
	error = kiln_fleet_lock_update(e->c, e->f->name, &e->lock);
	if ((error = jafter(e, "lock-update", error, NULL)) < 0) {
		/* not bumped: keep the batch; resuming finds it by its token */
		e->lock.epoch = epoch;
		e->lock.epoch_batch = from;
		return error;
	}
	e->renewed_ms = kiln_clock_wall_ms();
	if ((error = observe(e, SEE_NEW)) < 0)
		return error;
	return remove_strays(e);
}

static int interrupted(struct engine *e, unsigned k, const char *after)
{
	jmark(e, "interrupted", json_pack("{s:I}", "batch", (json_int_t)k));
	e->res->outcome = KILN_ROLLOUT_INTERRUPTED;
	emit(e, "warning", KILN_LEVEL_WARN, json_object(),
	     "interrupted %s; the fleet is serving; finish with 'kiln rollout %s --resume' or undo with 'kiln rollback %s'",
	     after, e->f->path, e->f->path);
	return kiln_error_set(KILN_ECANCELLED,
			      "rollout %s of fleet '%s' interrupted by %s %s; the fleet is consistent: finish it with 'kiln rollout %s --resume' or undo it with 'kiln rollback %s'",
			      e->lock.rollout_id, e->f->name,
			      kiln_cancel_signal() == SIGINT ? "SIGINT" : "SIGTERM", after, e->f->path, e->f->path);
}

/* A cloud or journal error while going forward: stop where we are; resumable. */
static int stopped(struct engine *e, int error)
{
	e->res->outcome = KILN_ROLLOUT_FAILED;
	if (error == KILN_ECANCELLED)
		return error;
	return kiln_error_prefix("rollout %s of fleet '%s' stopped (the fleet is serving; settle it with 'kiln rollout %s --resume' or 'kiln rollback %s')",
				 e->lock.rollout_id, e->f->name, e->f->path, e->f->path);
}

static int fail_and_restore(struct engine *e)
{
	char reason[1024];
	emit(e, "warning", KILN_LEVEL_ERROR,
	     json_pack("{s:s,s:s,s:s}", "id", e->fail.instance, "health", e->fail.health, "reason",
		       e->fail.reason),
	     "rollout failed: %s", e->fail.message);
	snprintf(e->res->failed_instance, sizeof(e->res->failed_instance), "%s", e->fail.instance);
	snprintf(e->res->failed_health, sizeof(e->res->failed_health), "%s", e->fail.health);
	snprintf(e->res->failed_reason, sizeof(e->res->failed_reason), "%s", e->fail.reason);
	fetch_console(e);
	snprintf(reason, sizeof(reason), "%s", e->fail.message);
	return restore(e, reason, false);
}

/* The rollout after its last batch: the old ones go, the state says where the fleet is. */
static int finish(struct engine *e)
{
	kiln_strings old = { 0 };
	size_t i;
	int error = 0;

	kiln_cancel_shield_push();
	/*
	 * The old ones remembered from the start, not one describe of them
	 * (terminating one already gone succeeds). A cancelled batch's
	 * leftovers were removed when this process began going forward.
	 */
	for (i = 0; i < e->n_olds && error == 0; i++)
		if (!e->olds[i].terminated)
			error = add_unique(&old, e->olds[i].id);
	if (error == 0 && old.n)
		step(e, "retire", "terminating %zu old instance%s", old.n, old.n == 1 ? "" : "s");
	if (error == 0)
		error = remove_instances(e, &old);
	if (error == 0)
		olds_terminated(e, &old);
	if (error == 0)
		error = finish_lock(e, "completed", NULL);
	kiln_cancel_shield_pop();
	kiln_strings_release(&old);
	if (error < 0)
		return stopped(e, error);
	e->res->outcome = KILN_ROLLOUT_DONE;
	step(e, "done", "fleet '%s' runs %s: %u instance%s, healthy (%s, %.1f s)", e->f->name,
	     e->lock.to_image, e->lock.desired, e->lock.desired == 1 ? "" : "s", e->lock.rollout_id,
	     (double)(now_ms() - e->t0) / 1000.0);
	return 0;
}

/*
 * The batches, from wherever the rollout stands: the first batch not yet
 * launched in this epoch, or the last one launched (its launch repeated
 * with the same tokens returns the same instances).
 */
static int forward(struct engine *e)
{
	unsigned start = e->lock.epoch_batch, k;
	size_t i;
	int error;

	if ((error = observe(e, SEE_NEW)) < 0)
		return stopped(e, error);
	for (i = 0; i < e->insts.n; i++) {
		const kiln_instance *inst = &e->insts.items[i];
		unsigned b = tag_uint(inst, KILN_TAG_BATCH);
		if (is_valid_new(e, inst) && tag_uint(inst, KILN_TAG_EPOCH) == e->lock.epoch && b > start)
			start = b;
	}
	if (start > e->plan.n_batches)
		start = (unsigned)e->plan.n_batches;
	/* batches before the first one (re)run here were healthy: followed by health alone */
	for (i = 0; i < e->insts.n && error == 0; i++) {
		const kiln_instance *inst = &e->insts.items[i];
		if (is_valid_new(e, inst) && !inst_gone(inst) && tag_uint(inst, KILN_TAG_BATCH) < start)
			error = add_unique(&e->known_new, inst->id);
	}
	if (error < 0 || (error = remove_strays(e)) < 0)
		return stopped(e, error);
	for (k = start; k <= e->plan.n_batches; k++) {
		const kiln_plan_batch *b = &e->plan.batches[k - 1];
		kiln_strings launched = { 0 };
		struct batch_ctx bc = { k, &launched };
		char what[64];
		size_t s;

		if (kiln_cancelled()) {
			if (k == 1 && e->res->launched == 0 && e->lock.epoch == 1 && start == 1) {
				/* nothing launched yet: let go of the lock, nothing to resume */
				kiln_cancel_shield_push();
				finish_lock(e, "cancelled", "cancelled before the first launch");
				kiln_cancel_shield_pop();
				e->res->outcome = KILN_ROLLOUT_INTERRUPTED;
				return kiln_error_set(KILN_ECANCELLED,
						      "rollout of fleet '%s' cancelled before it launched anything",
						      e->f->name);
			}
			return interrupted(e, k - 1, k > 1 ? "between batches" : "before its first batch");
		}
		step(e, "batch", "batch %u/%zu: launching %u instance%s of %s", k, e->plan.n_batches,
		     b->launch, b->launch == 1 ? "" : "s", e->lock.to_image);
		for (s = 0; s < e->plan.n_subnets; s++) {
			if (!b->per_subnet[s])
				continue;
			error = m_launch(e, k, e->lock.epoch, s, b->per_subnet[s], e->lock.to_image_id, "new",
					 &launched);
			if (error < 0)
				break;
		}
		e->cur_batch = k;
		e->batch_ids = s == e->plan.n_subnets ? &launched : NULL;
		snprintf(what, sizeof(what), "batch %u/%zu", k, e->plan.n_batches);
		if (error == 0)
			error = wait_healthy(e, expect_new, &bc, kiln_plan_new_after(&e->plan, k), what, false);
		if (error == 0) {
			/* healthy: from now on followed by the balancers' health */
			kiln_strings ids = { 0 };
			if ((error = expect_new(e, &bc, &ids)) == 0)
				for (i = 0; i < ids.n && error == 0; i++)
					error = add_unique(&e->known_new, ids.items[i]);
			kiln_strings_release(&ids);
		}
		e->batch_ids = NULL;
		kiln_strings_release(&launched);
		if (error < 0 && e->fatal)
			return stopped(e, error);
		if (error == KILN_ECANCELLED) {
			kiln_cancel_shield_push();
			step(e, "cancel", "interrupted: removing batch %u's instances", k);
			error = cancel_batch(e, k);
			kiln_cancel_shield_pop();
			if (error < 0)
				return stopped(e, error);
			return interrupted(e, k - 1, "while a batch was starting (its instances were removed)");
		}
		if (error < 0) {
			if (!e->fail.set) {
				/* a launch error is a failure of the rollout, not of kiln */
				if (kiln_error_last()->message[0] && !e->fatal && s < e->plan.n_subnets)
					set_failure(e, NULL, NULL, NULL, "%s", kiln_error_last()->message);
				else
					return stopped(e, error);
			}
			return fail_and_restore(e);
		}
		if ((error = jmark(e, "healthy", json_pack("{s:I}", "batch", (json_int_t)k))) < 0)
			return stopped(e, error);
		/* healthy: retiring this batch's old ones completes even if cancelled now */
		kiln_cancel_shield_push();
		error = retire(e, k);
		kiln_cancel_shield_pop();
		if (error < 0)
			return stopped(e, error);
		e->res->batches_done = k;
	}
	if (kiln_cancelled() && e->plan.n_batches > 0)
		return interrupted(e, (unsigned)e->plan.n_batches, "after its last batch");
	return finish(e);
}

/* ---- setting up -------------------------------------------------------------------- */

static int engine_init(struct engine *e, const kiln_rollout_opts *o, kiln_rollout_result *res)
{
	int error;
	memset(e, 0, sizeof(*e));
	memset(res, 0, sizeof(*res));
	res->outcome = KILN_ROLLOUT_FAILED;
	e->o = o;
	e->c = o->cloud;
	e->f = o->fleet;
	e->ev = o->events;
	e->res = res;
	e->t0 = now_ms();
	e->flock = (kiln_lock)KILN_LOCK_INIT;
	kiln_buf_init(&e->state_dir, 4096);
	if (o->state_dir)
		error = kiln_buf_puts(&e->state_dir, o->state_dir);
	else
		error = kiln_state_dir(&e->state_dir);
	if (error < 0)
		return error;
	if (o->host)
		snprintf(e->host, sizeof(e->host), "%s", o->host);
	else if (gethostname(e->host, sizeof(e->host) - 1) < 0)
		snprintf(e->host, sizeof(e->host), "localhost");
	e->pid = o->pid ? o->pid : (long)getpid();
	poll_reset(e);
	return 0;
}

static void engine_release(struct engine *e)
{
	size_t i;
	if (e->res && e->lock.rollout_id[0])
		snprintf(e->res->rollout_id, sizeof(e->res->rollout_id), "%s", e->lock.rollout_id);
	kiln_journal_close(e->j);
	kiln_lock_release(&e->flock);
	kiln_fleet_lock_release(&e->lock);
	kiln_plan_release(&e->plan);
	for (i = 0; i < e->n_lbs; i++)
		kiln_target_list_release(&e->lbs[i].t);
	free(e->lbs);
	kiln_instance_list_release(&e->insts);
	kiln_image_list_release(&e->labels);
	kiln_strings_release(&e->known_new);
	free(e->olds);
	free(e->tr);
	kiln_buf_release(&e->state_dir);
}

static int new_rollout_id(char out[KILN_ID_MAX])
{
	unsigned char r[4];
	char when[21];
	kiln_format_iso8601(when, kiln_clock_wall_s());
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		return kiln_error_set_os(KILN_ERROR, errno, "cannot read random bytes");
	/* "r20261125T213744-0a1b2c3d": sorts by start time, short enough for tokens */
	snprintf(out, KILN_ID_MAX, "r%.4s%.2s%.2s%.2s%.2s%.2s-%02x%02x%02x%02x", when, when + 5,
		 when + 8, when + 11, when + 14, when + 17, r[0], r[1], r[2], r[3]);
	return 0;
}

static int open_journal(struct engine *e)
{
	int error;
	if ((error = kiln_journal_open(&e->j, e->state_dir.ptr, e->f->name, e->lock.rollout_id)) < 0)
		return error;
	if (e->o->journal_hook)
		kiln_journal_set_hook(e->j, e->o->journal_hook, e->o->journal_hook_ctx);
	return 0;
}

static int take_flock(struct engine *e)
{
	kiln_buf path = KILN_BUF_INIT;
	int error;
	if ((error = kiln_fleet_lock_flock_path(&path, e->state_dir.ptr, e->f->name,
						e->lock.rollout_id)) == 0)
		error = kiln_lock_acquire(&e->flock, path.ptr, 0);
	kiln_buf_release(&path);
	return error;
}

/*
 * Journals of this fleet this machine left unfinished, with no lock in the
 * cloud for them: either another machine settled the rollout (the state's
 * history names it) or it never took the lock and changed nothing. Either
 * way the journal gets its end. *abandoned counts the second kind.
 */
static int settle_journals(struct engine *e, const char *locked_id, unsigned *abandoned)
{
	kiln_strings ids = { 0 };
	kiln_fleet_state st;
	size_t i;
	int error;

	*abandoned = 0;
	if ((error = kiln_journal_unfinished(&ids, e->state_dir.ptr, e->f->name)) < 0 || !ids.n) {
		kiln_strings_release(&ids);
		return error;
	}
	if ((error = kiln_fleet_state_get(e->c, e->f->name, &st)) < 0) {
		kiln_strings_release(&ids);
		return error;
	}
	for (i = 0; i < ids.n; i++) {
		kiln_journal *j = NULL;
		bool known = kiln_fleet_state_knows(&st, ids.items[i]);
		json_t *end;
		if (locked_id && !strcmp(locked_id, ids.items[i]))
			continue;
		if (kiln_journal_open(&j, e->state_dir.ptr, e->f->name, ids.items[i]) < 0)
			continue;
		end = json_pack("{s:s,s:s}", "op", "end", "result", known ? "settled-elsewhere" : "abandoned");
		kiln_journal_append(j, end);
		json_decref(end);
		kiln_journal_close(j);
		if (!known) {
			(*abandoned)++;
			emit(e, "info", KILN_LEVEL_INFO, json_object(),
			     "rollout %s was interrupted before it took the fleet's lock; it changed nothing",
			     ids.items[i]);
		}
	}
	kiln_error_clear();
	kiln_fleet_state_release(&st);
	kiln_strings_release(&ids);
	return 0;
}

static int plan_from_lock(struct engine *e)
{
	return kiln_plan_compute(&e->plan, e->lock.desired, e->lock.batch_size, e->lock.old_count,
				 e->lock.subnet_ids.n);
}

static void image_label(char *out, size_t size, const kiln_image *img)
{
	if (kiln_image_version(img))
		snprintf(out, size, "%s@%lld", kiln_image_kiln_name(img), (long long)kiln_image_version(img));
	else
		snprintf(out, size, "%s", img->id);
}

/*
 * The image most old instances run, and every image they run (stopped ones
 * too: they still need theirs); n_old counts those that can serve. A fleet
 * whose instances are all stopped (`kiln local down`) still ran an image:
 * that is the one it is rolled from, and back to.
 */
static int old_images(struct engine *e, kiln_strings *ids, char most[KILN_ID_MAX], unsigned *n_old)
{
	size_t i, k, best = 0;
	unsigned *counts = NULL;
	bool any_alive = false;
	int error = 0;

	*n_old = 0;
	most[0] = '\0';
	for (i = 0; i < e->insts.n && error == 0; i++) {
		const kiln_instance *inst = &e->insts.items[i];
		if (inst_alive(inst)) {
			(*n_old)++;
			any_alive = true;
		}
		if (inst_alive(inst) || inst_stopped(inst))
			error = add_unique(ids, inst->image_id);
	}
	if (error < 0 || !ids->n)
		return error;
	if (!(counts = calloc(ids->n, sizeof(*counts))))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	for (i = 0; i < e->insts.n; i++) {
		const kiln_instance *inst = &e->insts.items[i];
		if (any_alive ? !inst_alive(inst) : !inst_stopped(inst))
			continue;
		for (k = 0; k < ids->n; k++)
			counts[k] += !strcmp(ids->items[k], inst->image_id);
	}
	for (k = 1; k < ids->n; k++)
		if (counts[k] > counts[best])
			best = k;
	snprintf(most, KILN_ID_MAX, "%s", ids->items[best]);
	free(counts);
	return 0;
}

/* A lock already there: refuse, naming its holder (live) or how to settle it (dead). */
static int refuse_locked(struct engine *e, const kiln_fleet_lock *held)
{
	char who[1024];
	kiln_fleet_lock_describe(who, sizeof(who), held);
	if (kiln_fleet_lock_dead(held, e->host, e->state_dir.ptr))
		return kiln_error_set(KILN_ECONFLICT,
				      "fleet '%s' has an interrupted rollout (%s; its holder is gone): finish it with 'kiln rollout %s --resume' or undo it with 'kiln rollback %s'",
				      e->f->name, who, e->f->path, e->f->path);
	return kiln_error_set(KILN_EBUSY, "fleet '%s' is being rolled out by %s", e->f->name, who);
}

static bool fleet_is_on(const struct engine *e, const char *image_id, unsigned desired)
{
	unsigned n = 0;
	size_t i;
	for (i = 0; i < e->insts.n; i++) {
		const kiln_instance *inst = &e->insts.items[i];
		/* a stopped one is left over: only a rollout terminates it (safely, at its end) */
		if (inst_stopped(inst))
			return false;
		if (!inst_alive(inst))
			continue;
		if (strcmp(inst->image_id, image_id) || !healthy_everywhere(e, inst->id))
			return false;
		n++;
	}
	return n == desired;
}

int kiln_rollout_start(kiln_rollout_result *out, const kiln_rollout_opts *o,
		       const kiln_image *target, const char *kind)
{
	struct engine e;
	kiln_fleet_lock held;
	kiln_strings from_ids = { 0 }, old = { 0 };
	char from[KILN_ID_MAX], to_label[KILN_NAME_MAX];
	unsigned n_old = 0, abandoned;
	size_t i;
	int error;

	if ((error = engine_init(&e, o, out)) < 0)
		goto done;
	error = kiln_fleet_lock_get(e.c, e.f->name, &held);
	if (error == 0) {
		error = refuse_locked(&e, &held);
		kiln_fleet_lock_release(&held);
		goto done;
	}
	if (error != KILN_ENOTFOUND)
		goto done;
	if ((error = settle_journals(&e, NULL, &abandoned)) < 0 || (error = open_lbs(&e)) < 0 ||
	    (error = observe(&e, SEE_FLEET)) < 0)
		goto done;
	/* the rollout's own classification needs an id; none of these is new yet */
	if ((error = old_images(&e, &from_ids, from, &n_old)) < 0)
		goto done;
	image_label(to_label, sizeof(to_label), target);
	if (fleet_is_on(&e, target->id, e.f->desired)) {
		out->outcome = KILN_ROLLOUT_NOTHING;
		step(&e, "done", "fleet '%s' already runs %s: %u instance%s, healthy", e.f->name, to_label,
		     e.f->desired, e.f->desired == 1 ? "" : "s");
		error = 0;
		goto done;
	}
	if ((error = kiln_image_list_add(&e.labels, target)) < 0)
		goto done;
	learn_labels(&e, &from_ids);

	if ((error = new_rollout_id(e.lock.rollout_id)) < 0)
		goto done;
	snprintf(e.lock.fleet, sizeof(e.lock.fleet), "%s", e.f->name);
	snprintf(e.lock.kind, sizeof(e.lock.kind), "%s", kind ? kind : "rollout");
	snprintf(e.lock.host, sizeof(e.lock.host), "%s", e.host);
	e.lock.pid = e.pid;
	e.lock.started_ms = kiln_clock_wall_ms();
	snprintf(e.lock.from_image_id, sizeof(e.lock.from_image_id), "%s", from);
	snprintf(e.lock.from_image, sizeof(e.lock.from_image), "%s", from[0] ? label(&e, from) : "");
	snprintf(e.lock.to_image_id, sizeof(e.lock.to_image_id), "%s", target->id);
	snprintf(e.lock.to_image, sizeof(e.lock.to_image), "%s", to_label);
	for (i = 0; i < from_ids.n; i++)
		if ((error = kiln_strings_add(&e.lock.old_image_ids, from_ids.items[i])) < 0)
			goto done;
	for (i = 0; i < e.f->subnet_ids.n; i++)
		if ((error = kiln_strings_add(&e.lock.subnet_ids, e.f->subnet_ids.items[i])) < 0)
			goto done;
	e.lock.desired = e.f->desired;
	e.lock.batch_size = e.f->batch_size;
	e.lock.old_count = n_old;
	e.lock.retire = e.f->retire;
	e.lock.epoch = 1;
	e.lock.epoch_batch = 1;
	if ((error = plan_from_lock(&e)) < 0 || (error = open_journal(&e)) < 0)
		goto done;
	if ((error = jmark(&e, "begin",
			   json_pack("{s:s,s:s,s:s,s:s,s:s,s:o}", "kind", e.lock.kind, "fleet", e.f->name,
				     "rollout_id", e.lock.rollout_id, "from_image_id", from, "to_image_id",
				     target->id, "plan", kiln_plan_to_json(&e.plan, &e.lock.subnet_ids)))) < 0)
		goto done;
	if ((error = jbefore(&e, "lock", NULL)) < 0)
		goto done;
	error = kiln_fleet_lock_create(e.c, e.f->name, &e.lock, &held);
	if (error == KILN_EBUSY || error == KILN_ECONFLICT) {
		/* lost a race for the lock: refuse as if it had been there from the start */
		error = refuse_locked(&e, &held);
		kiln_fleet_lock_release(&held);
	}
	if ((error = jafter(&e, "lock", error, NULL)) < 0) {
		kiln_error saved;
		kiln_error_save(&saved);
		jmark(&e, "end", json_pack("{s:s}", "result", "not-started"));
		kiln_error_restore(&saved);
		goto done;
	}
	e.locked = true;
	e.renewed_ms = kiln_clock_wall_ms();
	if ((error = take_flock(&e)) < 0)
		goto stop;
	{
		char stopped[96] = "";
		unsigned n_stopped = 0;
		for (i = 0; i < e.insts.n; i++)
			n_stopped += inst_stopped(&e.insts.items[i]);
		if (n_stopped)
			snprintf(stopped, sizeof(stopped), " (and %u stopped, terminated at the end)", n_stopped);
		step(&e, "plan", "%s %s of fleet '%s': %s -> %s, %u instance%s now%s, %u desired, %zu batch%s of up to %u (retire %s)",
		     e.lock.kind, e.lock.rollout_id, e.f->name, from[0] ? e.lock.from_image : "nothing",
		     to_label, n_old, n_old == 1 ? "" : "s", stopped, e.f->desired, e.plan.n_batches,
		     e.plan.n_batches == 1 ? "" : "es", e.plan.batch_size, kiln_retire_name(e.f->retire));
	}
	/*
	 * The old ones, marked as such: the rollout's polls find them by these
	 * tags (not by describing the whole fleet), and so do kiln status and
	 * another machine settling the rollout.
	 */
	if ((error = remember_olds(&e)) < 0)
		goto stop;
	for (i = 0; i < e.n_olds; i++)
		if ((error = kiln_strings_add(&old, e.olds[i].id)) < 0)
			goto stop;
	if (old.n) {
		kiln_tags t = KILN_TAGS_INIT;
		if ((error = kiln_tags_set(&t, KILN_TAG_ROLLOUT_ID, e.lock.rollout_id)) == 0 &&
		    (error = kiln_tags_set(&t, KILN_TAG_ROLE, "old")) == 0)
			error = m_tag(&e, &old, &t);
		kiln_tags_release(&t);
		/* the rollout finds its old instances by these tags from now on */
		if (error < 0)
			goto stop;
	}
	error = forward(&e);
	goto done;
stop:
	error = stopped(&e, error);
done:
	kiln_strings_release(&from_ids);
	kiln_strings_release(&old);
	engine_release(&e);
	return error;
}

/*
 * Instances of the fleet that are neither new nor tagged old for this
 * rollout (its holder died before tagging them, or they joined since) are
 * tagged old now, so the scoped polls see them.
 */
static int tag_untagged_old(struct engine *e)
{
	kiln_strings ids = { 0 };
	kiln_tags t = KILN_TAGS_INIT;
	size_t i;
	int error;

	if ((error = observe(e, SEE_FLEET)) < 0)
		return error;
	for (i = 0; i < e->insts.n; i++) {
		const kiln_instance *inst = &e->insts.items[i];
		const char *role = kiln_tags_get(&inst->tags, KILN_TAG_ROLE);
		const char *rid = kiln_tags_get(&inst->tags, KILN_TAG_ROLLOUT_ID);
		if (is_ours_new(e, inst) || (role && rid && !strcmp(role, "old") &&
					     !strcmp(rid, e->lock.rollout_id)))
			continue;
		if ((error = kiln_strings_add(&ids, inst->id)) < 0)
			goto done;
	}
	if (!ids.n)
		goto done;
	if ((error = kiln_tags_set(&t, KILN_TAG_ROLLOUT_ID, e->lock.rollout_id)) < 0 ||
	    (error = kiln_tags_set(&t, KILN_TAG_ROLE, "old")) < 0)
		goto done;
	error = m_tag(e, &ids, &t);
done:
	kiln_strings_release(&ids);
	kiln_tags_release(&t);
	return error;
}

/* Takes over the fleet's interrupted rollout; KILN_ENOTFOUND (no message) if there is none. */
static int take_over(struct engine *e, const char *kind, unsigned *abandoned)
{
	kiln_journal_state js;
	kiln_buf path = KILN_BUF_INIT;
	unsigned ignored;
	int error;

	*abandoned = 0;
	error = kiln_fleet_lock_get(e->c, e->f->name, &e->lock);
	if (error == KILN_ENOTFOUND) {
		if ((error = settle_journals(e, NULL, abandoned)) < 0)
			return error;
		return KILN_ENOTFOUND;
	}
	if (error < 0)
		return error;
	if (strcmp(e->lock.fleet, e->f->name) && e->lock.fleet[0])
		return kiln_error_set(KILN_ERROR, "the lock of fleet '%s' names fleet '%s'", e->f->name,
				      e->lock.fleet);
	snprintf(e->lock.fleet, sizeof(e->lock.fleet), "%s", e->f->name);
	if ((error = kiln_fleet_lock_takeover(e->c, e->f->name, &e->lock, e->host, e->pid,
					      e->state_dir.ptr)) < 0)
		return error;
	e->locked = true;
	e->renewed_ms = kiln_clock_wall_ms();
	settle_journals(e, e->lock.rollout_id, &ignored);
	if ((error = open_journal(e)) < 0)
		return error;
	/* what this machine's journal knows of where it stopped */
	if (kiln_journal_path(&path, e->state_dir.ptr, e->f->name, e->lock.rollout_id) == 0 &&
	    kiln_journal_read(&js, path.ptr) == 0) {
		if (js.entries)
			emit(e, "info", KILN_LEVEL_INFO, json_object(),
			     "the journal of %s stops at '%s'%s%s (batch %u launched, %u healthy)",
			     e->lock.rollout_id, js.last_op, js.in_flight[0] ? ", in flight: " : "",
			     js.in_flight, js.last_launched_batch, js.last_healthy_batch);
		kiln_journal_state_release(&js);
	}
	kiln_error_clear();
	kiln_buf_release(&path);
	if ((error = jmark(e, "begin",
			   json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:I}", "kind", kind, "fleet", e->f->name,
				     "rollout_id", e->lock.rollout_id, "from_image_id", e->lock.from_image_id,
				     "to_image_id", e->lock.to_image_id, "host", e->host, "pid",
				     (json_int_t)e->pid))) < 0)
		return error;
	if ((error = take_flock(e)) < 0 || (error = plan_from_lock(e)) < 0 || (error = open_lbs(e)) < 0 ||
	    (error = tag_untagged_old(e)) < 0 || (error = remember_olds(e)) < 0)
		return error;
	{
		kiln_strings ids = { 0 };
		if (kiln_strings_add(&ids, e->lock.to_image_id) == 0 &&
		    kiln_strings_add(&ids, e->lock.from_image_id) == 0)
			learn_labels(e, &ids);
		kiln_strings_release(&ids);
	}
	return 0;
}

int kiln_rollout_resume(kiln_rollout_result *out, const kiln_rollout_opts *o)
{
	struct engine e;
	unsigned abandoned;
	int error;

	if ((error = engine_init(&e, o, out)) < 0)
		goto done;
	error = take_over(&e, "resume", &abandoned);
	if (error == KILN_ENOTFOUND) {
		out->outcome = KILN_ROLLOUT_NOTHING;
		step(&e, "done", "fleet '%s' has no interrupted rollout to resume", e.f->name);
		error = 0;
		goto done;
	}
	if (error < 0) {
		if (e.locked)
			error = stopped(&e, error);
		goto done;
	}
	step(&e, "resume", "resuming %s %s of fleet '%s': %s -> %s%s", e.lock.kind, e.lock.rollout_id,
	     e.f->name, e.lock.from_image[0] ? e.lock.from_image : "nothing", e.lock.to_image,
	     e.lock.phase == KILN_PHASE_RESTORE ? " (restoring the old fleet)" : "");
	if (e.lock.phase == KILN_PHASE_RESTORE) {
		char reason[512];
		snprintf(reason, sizeof(reason), "%s", e.lock.reason);
		error = restore(&e, reason, false);
	} else {
		error = forward(&e);
	}
done:
	engine_release(&e);
	return error;
}

static int resolve_id(kiln_cloud *c, const char *id, kiln_image *out)
{
	kiln_image_ref ref;
	memset(&ref, 0, sizeof(ref));
	snprintf(ref.id, sizeof(ref.id), "%s", id);
	return kiln_registry_resolve(c, &ref, out);
}

int kiln_rollout_rollback(kiln_rollout_result *out, const kiln_rollout_opts *o,
			  const kiln_image *target)
{
	struct engine e;
	kiln_fleet_state st;
	kiln_image prev;
	unsigned abandoned = 0;
	int error;

	memset(&prev, 0, sizeof(prev));
	memset(&st, 0, sizeof(st));
	if ((error = engine_init(&e, o, out)) < 0)
		goto done;
	error = take_over(&e, "rollback", &abandoned);
	if (error == 0) {
		step(&e, "rollback", "undoing %s %s of fleet '%s': back to %s", e.lock.kind,
		     e.lock.rollout_id, e.f->name, e.lock.from_image[0] ? e.lock.from_image : "no instances");
		error = restore(&e, "rolled back by 'kiln rollback'", true);
		goto done;
	}
	if (error != KILN_ENOTFOUND) {
		if (e.locked)
			error = stopped(&e, error);
		goto done;
	}
	if (abandoned) {
		out->outcome = KILN_ROLLOUT_NOTHING;
		step(&e, "done", "fleet '%s': its interrupted rollout never changed it; nothing to undo",
		     e.f->name);
		error = 0;
		goto done;
	}
	if (!target) {
		if ((error = kiln_fleet_state_get(e.c, e.f->name, &st)) < 0)
			goto done;
		if (!st.previous_image_id[0]) {
			error = kiln_error_set(KILN_ENOTFOUND,
					       "fleet '%s' has no image to roll back to (no completed rollout replaced one); name one with --to",
					       e.f->name);
			goto done;
		}
		if ((error = resolve_id(e.c, st.previous_image_id, &prev)) < 0) {
			kiln_error_prefix("the previous image of fleet '%s' (%s)", e.f->name,
					  st.previous_image[0] ? st.previous_image : st.previous_image_id);
			goto done;
		}
		target = &prev;
	}
	engine_release(&e);
	error = kiln_rollout_start(out, o, target, "rollback");
	kiln_fleet_state_release(&st);
	kiln_image_release(&prev);
	return error;
done:
	kiln_fleet_state_release(&st);
	kiln_image_release(&prev);
	engine_release(&e);
	return error;
}

/* ---- reading only: --dry-run and status ---------------------------------------------------- */

static json_t *lock_json(const struct engine *e, const kiln_fleet_lock *l)
{
	char started[21], expires[21], resume[4200], rollback[4200];
	bool dead = kiln_fleet_lock_dead(l, e->host, e->state_dir.ptr);
	kiln_format_iso8601(started, l->started_ms / 1000);
	kiln_format_iso8601(expires, l->expires_ms / 1000);
	snprintf(resume, sizeof(resume), "kiln rollout %s --resume", e->f->path);
	snprintf(rollback, sizeof(rollback), "kiln rollback %s", e->f->path);
	return json_pack("{s:s,s:s,s:s,s:I,s:b,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:[s,s]}", "rollout_id",
			 l->rollout_id, "kind", l->kind, "host", l->host, "pid", (json_int_t)l->pid,
			 "alive", !dead, "phase", l->phase == KILN_PHASE_RESTORE ? "restore" : "rollout",
			 "from_image_id", l->from_image_id, "from_image", l->from_image, "to_image_id",
			 l->to_image_id, "to_image", l->to_image, "started_at", started, "expires_at",
			 expires, "reason", l->reason, "settle", resume, rollback);
}

int kiln_rollout_dry_run(json_t **out, const kiln_rollout_opts *o, const kiln_image *target)
{
	kiln_rollout_result res;
	struct engine e;
	kiln_fleet_lock held;
	kiln_plan_old *olds = NULL;
	kiln_strings from_ids = { 0 };
	json_t *doc = NULL, *from, *batches, *replaced;
	char from_most[KILN_ID_MAX], to_label[KILN_NAME_MAX];
	unsigned n_old = 0, n = 0;
	size_t i, k, next = 0;
	int error;

	*out = NULL;
	if ((error = engine_init(&e, o, &res)) < 0 || (error = open_lbs(&e)) < 0 ||
	    (error = observe(&e, SEE_FLEET)) < 0 || (error = old_images(&e, &from_ids, from_most, &n_old)) < 0)
		goto done;
	if ((error = kiln_image_list_add(&e.labels, target)) < 0)
		goto done;
	learn_labels(&e, &from_ids);
	image_label(to_label, sizeof(to_label), target);
	if (!(olds = calloc(e.insts.n + 1, sizeof(*olds)))) {
		error = kiln_error_set(KILN_ENOMEM, "out of memory");
		goto done;
	}
	for (i = 0; i < e.insts.n; i++) {
		const kiln_instance *inst = &e.insts.items[i];
		if (!inst_alive(inst))
			continue;
		olds[n].id = inst->id;
		olds[n].launch_time = inst->launch_time;
		olds[n].serving = healthy_everywhere(&e, inst->id);
		n++;
	}
	kiln_plan_sort_old(olds, n);
	if ((error = kiln_plan_compute(&e.plan, e.f->desired, e.f->batch_size, n_old,
				       e.f->subnet_ids.n)) < 0)
		goto done;
	doc = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:s,s:b}", "fleet", e.f->name, "provider",
			kiln_cloud_name(e.c), "to_image_id", target->id, "to_image", to_label, "current",
			(json_int_t)n_old, "desired", (json_int_t)e.f->desired, "batch_size",
			(json_int_t)e.plan.batch_size, "retire", kiln_retire_name(e.f->retire),
			"nothing_to_do", fleet_is_on(&e, target->id, e.f->desired));
	from = json_array();
	replaced = json_array();
	if (!doc || !from || !replaced) {
		json_decref(from);
		json_decref(replaced);
		error = kiln_error_set(KILN_ENOMEM, "out of memory");
		goto done;
	}
	for (k = 0; k < from_ids.n; k++) {
		unsigned count = 0, stopped = 0;
		for (i = 0; i < e.insts.n; i++) {
			const kiln_instance *inst = &e.insts.items[i];
			if (strcmp(inst->image_id, from_ids.items[k]))
				continue;
			count += inst_alive(inst);
			stopped += inst_stopped(inst);
		}
		json_array_append_new(from, json_pack("{s:s,s:s,s:I,s:I}", "image_id", from_ids.items[k],
						      "image", label(&e, from_ids.items[k]), "count",
						      (json_int_t)count, "stopped", (json_int_t)stopped));
	}
	for (i = 0; i < n; i++)
		json_array_append_new(replaced, json_string(olds[i].id));
	json_object_set_new(doc, "from", from);
	json_object_set_new(doc, "replaced", replaced);
	{
		/* terminated once the new fleet is complete */
		json_t *stopped = json_array();
		for (i = 0; stopped && i < e.insts.n; i++)
			if (inst_stopped(&e.insts.items[i]))
				json_array_append_new(stopped, json_string(e.insts.items[i].id));
		json_object_set_new(doc, "stopped", stopped ? stopped : json_array());
	}
	/* which old instances each batch deregisters, in the order the engine picks them */
	{
		json_t *plan = kiln_plan_to_json(&e.plan, &e.f->subnet_ids);
		batches = json_incref(json_object_get(plan, "batches"));
		json_decref(plan);
		for (k = 0; batches && k < e.plan.n_batches; k++) {
			json_t *ids = json_array();
			for (i = 0; i < e.plan.batches[k].retire && next < n; i++)
				json_array_append_new(ids, json_string(olds[next++].id));
			json_object_set_new(json_array_get(batches, k), "deregisters", ids);
		}
		json_object_set_new(doc, "batches", batches ? batches : json_array());
	}
	error = kiln_fleet_lock_get(e.c, e.f->name, &held);
	if (error == 0) {
		json_object_set_new(doc, "lock", lock_json(&e, &held));
		kiln_fleet_lock_release(&held);
	} else if (error != KILN_ENOTFOUND) {
		goto done;
	}
	error = 0;
	*out = doc;
	doc = NULL;
done:
	json_decref(doc);
	free(olds);
	kiln_strings_release(&from_ids);
	engine_release(&e);
	kiln_rollout_result_release(&res);
	return error;
}

int kiln_rollout_status(json_t **out, const kiln_rollout_opts *o)
{
	kiln_rollout_result res;
	struct engine e;
	kiln_fleet_state st;
	kiln_fleet_lock held;
	kiln_strings images = { 0 }, unfinished = { 0 };
	json_t *doc = NULL, *insts, *lbs, *counts;
	json_int_t n_serving = 0, n_stopped = 0;
	size_t i, l;
	int error;

	*out = NULL;
	memset(&st, 0, sizeof(st));
	if ((error = engine_init(&e, o, &res)) < 0 || (error = open_lbs(&e)) < 0 ||
	    (error = observe(&e, SEE_FLEET)) < 0 || (error = kiln_fleet_state_get(e.c, e.f->name, &st)) < 0)
		goto done;
	for (i = 0; i < e.insts.n; i++)
		if (!inst_gone(&e.insts.items[i]))
			add_unique(&images, e.insts.items[i].image_id);
	learn_labels(&e, &images);
	doc = json_pack("{s:s,s:s,s:I}", "fleet", e.f->name, "provider", kiln_cloud_name(e.c), "desired",
			(json_int_t)e.f->desired);
	insts = json_array();
	lbs = json_array();
	counts = json_object();
	if (!doc || !insts || !lbs || !counts) {
		json_decref(insts);
		json_decref(lbs);
		json_decref(counts);
		error = kiln_error_set(KILN_ENOMEM, "out of memory");
		goto done;
	}
	json_object_set_new(doc, "instances", insts);
	json_object_set_new(doc, "load_balancers", lbs);
	json_object_set_new(doc, "images", counts);
	for (i = 0; i < e.insts.n; i++) {
		const kiln_instance *inst = &e.insts.items[i];
		const char *role = kiln_tags_get(&inst->tags, KILN_TAG_ROLE);
		const char *rid = kiln_tags_get(&inst->tags, KILN_TAG_ROLLOUT_ID);
		const char *img = label(&e, inst->image_id);
		json_t *h, *j;
		char when[21];
		if (inst_gone(inst))
			continue;
		h = json_object();
		for (l = 0; h && l < e.n_lbs; l++) {
			const kiln_target *t = target_in(&e.lbs[l], inst->id);
			json_object_set_new(h, e.lbs[l].info.name,
					    json_pack("{s:s,s:s}", "health",
						      kiln_health_name(t ? t->health : KILN_HEALTH_UNUSED),
						      "reason", t ? t->reason : ""));
		}
		kiln_format_iso8601(when, inst->launch_time);
		j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:b}", "id", inst->id, "state",
			      kiln_instance_state_name(inst->state), "image_id", inst->image_id, "image",
			      img, "role", role ? role : "", "rollout_id", rid ? rid : "", "launched", when,
			      "private_ip", inst->private_ip, "health", h ? h : json_object(), "serving",
			      healthy_everywhere(&e, inst->id));
		json_array_append_new(insts, j);
		json_object_set_new(counts, img,
				    json_integer(json_integer_value(json_object_get(counts, img)) + 1));
		n_serving += healthy_everywhere(&e, inst->id);
		n_stopped += inst_stopped(inst);
	}
	/* a stopped instance is the fleet's but serves nothing: the next rollout terminates it */
	json_object_set_new(doc, "serving", json_integer(n_serving));
	json_object_set_new(doc, "stopped", json_integer(n_stopped));
	for (l = 0; l < e.n_lbs; l++) {
		unsigned healthy = 0;
		for (i = 0; i < e.lbs[l].t.n; i++)
			healthy += e.lbs[l].t.items[i].health == KILN_HEALTH_HEALTHY;
		json_array_append_new(lbs, json_pack("{s:s,s:s,s:I,s:I,s:I}", "ref", e.lbs[l].lb->ref, "name",
						     e.lbs[l].info.name, "targets",
						     (json_int_t)e.lbs[l].t.n, "healthy", (json_int_t)healthy,
						     "drain_timeout_s", (json_int_t)e.lbs[l].drain_s));
	}
	if (st.exists)
		json_object_set_new(doc, "state",
				    json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:O}", "current_image_id",
					      st.current_image_id, "current_image", st.current_image,
					      "previous_image_id", st.previous_image_id, "previous_image",
					      st.previous_image, "last_rollout_id", st.last_rollout_id,
					      "last_result", st.last_result, "history", st.history));
	error = kiln_fleet_lock_get(e.c, e.f->name, &held);
	if (error == 0) {
		json_object_set_new(doc, "rollout", lock_json(&e, &held));
		kiln_fleet_lock_release(&held);
	} else if (error != KILN_ENOTFOUND) {
		goto done;
	}
	if (kiln_journal_unfinished(&unfinished, e.state_dir.ptr, e.f->name) == 0 && unfinished.n) {
		json_t *a = json_array();
		for (i = 0; a && i < unfinished.n; i++)
			json_array_append_new(a, json_string(unfinished.items[i]));
		json_object_set_new(doc, "unfinished_journals", a);
	}
	kiln_error_clear();
	error = 0;
	*out = doc;
	doc = NULL;
done:
	json_decref(doc);
	kiln_fleet_state_release(&st);
	kiln_strings_release(&images);
	kiln_strings_release(&unfinished);
	engine_release(&e);
	kiln_rollout_result_release(&res);
	return error;
}

void kiln_rollout_result_release(kiln_rollout_result *r)
{
	free(r->console_tail);
	r->console_tail = NULL;
	kiln_strings_release(&r->kept);
}

int kiln_rollout_exit_code(int error, const kiln_rollout_result *r)
{
	switch (r->outcome) {
	case KILN_ROLLOUT_DONE:
	case KILN_ROLLOUT_NOTHING:
		return error < 0 ? 1 : 0;
	case KILN_ROLLOUT_RESTORED:
		return 3;
	case KILN_ROLLOUT_RESTORE_FAILED:
		return 1;
	case KILN_ROLLOUT_INTERRUPTED:
		return 4;
	case KILN_ROLLOUT_FAILED:
		break;
	}
	switch (error) {
	case 0: return 0;
	case KILN_EINVALID: return 2;
	case KILN_ECANCELLED: return 4;
	case KILN_EBUSY: return 5;
	default: return 1;
	}
}
