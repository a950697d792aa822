#include <fnmatch.h>

#include "core/clock.h"
#include "core/error.h"
#include "tests/support/memcloud.h"

struct m_instance {
	kiln_instance inst;
	uint64_t changed_ms; /* when the current transition started */
	char token[80];
	kiln_buf console;
	kiln_health forced; /* UNKNOWN: none */
};

struct m_image {
	kiln_image img;
	uint64_t created_ms;
	bool will_fail;
	bool deleted;
	/* copies (image_copy) and settings (image_configure) */
	char copy_token[80];
	char source_region[KILN_ID_MAX];
	bool encrypted;
	char kms_key_id[KILN_NAME_MAX];
	char imds_support[16];
	kiln_strings launch_users, launch_groups, snapshot_users, snapshot_groups;
	int64_t deprecate_at;
};

struct m_target {
	char lb[KILN_NAME_MAX];
	char id[KILN_ID_MAX];
	uint64_t registered_ms;
	uint64_t deregistered_ms; /* 0: registered */
};

struct m_named {
	char name[KILN_NAME_MAX];
	char id[KILN_ID_MAX];
	char *value;
	int64_t version;
	int64_t modified_ms;
	kiln_tags tags;
	uint64_t busy_until_ms;
};

struct m_fault {
	char op[64];
	unsigned at;   /* absolute call number at which to fail; 0: every call */
	bool after;    /* act, then fail */
	int code;
	char message[256];
	bool used;
};

struct m_health_rule {
	char id[KILN_ID_MAX];
	bool image;
	kiln_health h;
};

struct m_console_rule {
	char image_id[KILN_ID_MAX];
	char *text;
};

#define VEC(T) struct { T *v; size_t n, cap; }
#define VEC_PUSH(vec, item)                                                        \
	do {                                                                       \
		if ((vec).n == (vec).cap) {                                        \
			(vec).cap = (vec).cap ? (vec).cap * 2 : 16;                \
			(vec).v = realloc((vec).v, (vec).cap * sizeof(*(vec).v));  \
			if (!(vec).v)                                              \
				abort();                                           \
		}                                                                  \
		(vec).v[(vec).n++] = (item);                                       \
	} while (0)

struct op_count {
	char op[64];
	unsigned n;
};

struct memcloud {
	kiln_cloud base;
	memcloud_config cfg;
	unsigned next_id;
	VEC(struct m_instance *) instances;
	VEC(struct m_image *) images;
	VEC(struct m_target) targets;
	VEC(struct m_named) keypairs;
	VEC(struct m_named) firewalls;
	VEC(struct m_named) records;
	VEC(struct m_fault) faults;
	VEC(struct m_health_rule) health_rules;
	VEC(struct m_console_rule) console_rules;
	VEC(struct op_count) counts;
	VEC(struct m_named) tokens; /* name = token, value = launch count */
	bool fail_images;
	int (*on_call)(void *ctx, const char *op);
	void *on_call_ctx;
	unsigned total_calls;
	json_t *last_launch_options;
	/* regions: the first memcloud owns one more for every other region opened */
	memcloud *parent;          /* NULL for the first */
	VEC(memcloud *) regions;
};

static uint64_t now(void)
{
	return kiln_clock_now_ms();
}

static void new_id(memcloud *mc, char *out, const char *prefix)
{
	/* one counter for every region: ids stay unique across them, as in EC2 */
	memcloud *root = mc->parent ? mc->parent : mc;
	snprintf(out, KILN_ID_MAX, "%s-%017x", prefix, ++root->next_id);
}

/* ---- bookkeeping ---- */

static unsigned *counter(memcloud *mc, const char *op)
{
	struct op_count c;
	size_t i;
	for (i = 0; i < mc->counts.n; i++)
		if (!strcmp(mc->counts.v[i].op, op))
			return &mc->counts.v[i].n;
	memset(&c, 0, sizeof(c));
	snprintf(c.op, sizeof(c.op), "%s", op);
	VEC_PUSH(mc->counts, c);
	return &mc->counts.v[mc->counts.n - 1].n;
}

unsigned memcloud_calls(const memcloud *mc, const char *op)
{
	size_t i;
	if (!op)
		return mc->total_calls;
	for (i = 0; i < mc->counts.n; i++)
		if (!strcmp(mc->counts.v[i].op, op))
			return mc->counts.v[i].n;
	return 0;
}

static void advance(memcloud *mc);

/*
 * Every operation starts here: counts it, advances the world, runs the
 * test's hook and any scripted fault. *after is set for a fault that
 * must strike once the operation has taken effect.
 */
static int enter(memcloud *mc, const char *op, struct m_fault **after)
{
	unsigned *n = counter(mc, op);
	size_t i;
	int rc;

	(*n)++;
	mc->total_calls++;
	*after = NULL;
	advance(mc);
	if (mc->on_call && (rc = mc->on_call(mc->on_call_ctx, op)) < 0)
		return kiln_error_set(rc, "%s: injected", op);
	for (i = 0; i < mc->faults.n; i++) {
		struct m_fault *f = &mc->faults.v[i];
		if (strcmp(f->op, op) || f->used)
			continue;
		if (f->at && f->at != *n)
			continue;
		if (f->at)
			f->used = true;
		if (f->after) {
			*after = f;
			return 0;
		}
		return kiln_error_set_cloud(f->code, 400, f->message, "mem-req", "%s: %s", op,
					    f->message);
	}
	return 0;
}

static int leave(int rc, struct m_fault *after, const char *op)
{
	if (rc < 0 || !after)
		return rc;
	return kiln_error_set_cloud(after->code, 0, after->message, "mem-req",
				    "%s: %s (after it took effect)", op, after->message);
}

#define ENTER(op)                                                    \
	memcloud *mc = (memcloud *)c;                                \
	struct m_fault *after_;                                      \
	int error_;                                                  \
	if ((error_ = enter(mc, op, &after_)) < 0)                   \
		return error_
#define LEAVE(op, rc) return leave((rc), after_, op)

static void add_fault(memcloud *mc, const char *op, unsigned nth, int code, const char *message,
		      bool after)
{
	struct m_fault f;
	memset(&f, 0, sizeof(f));
	snprintf(f.op, sizeof(f.op), "%s", op);
	f.at = nth ? memcloud_calls(mc, op) + nth : 0;
	f.after = after;
	f.code = code;
	snprintf(f.message, sizeof(f.message), "%s", message ? message : "injected fault");
	VEC_PUSH(mc->faults, f);
}

void memcloud_fail(memcloud *mc, const char *op, unsigned nth, int code, const char *message)
{
	add_fault(mc, op, nth, code, message, false);
}

void memcloud_fail_after(memcloud *mc, const char *op, unsigned nth, int code, const char *message)
{
	add_fault(mc, op, nth, code, message, true);
}

void memcloud_clear_faults(memcloud *mc)
{
	mc->faults.n = 0;
}

void memcloud_on_call(memcloud *mc, int (*fn)(void *ctx, const char *op), void *ctx)
{
	mc->on_call = fn;
	mc->on_call_ctx = ctx;
}

/* ---- the world's clock ---- */

static void advance(memcloud *mc)
{
	uint64_t t = now();
	size_t i;

	for (i = 0; i < mc->instances.n; i++) {
		struct m_instance *m = mc->instances.v[i];
		kiln_instance_state s = m->inst.state;
		if (s == KILN_INSTANCE_PENDING && t - m->changed_ms >= mc->cfg.pending_ms) {
			m->inst.state = KILN_INSTANCE_RUNNING;
			m->changed_ms = m->changed_ms + mc->cfg.pending_ms;
		} else if (s == KILN_INSTANCE_STOPPING && t - m->changed_ms >= mc->cfg.stopping_ms) {
			m->inst.state = KILN_INSTANCE_STOPPED;
			m->changed_ms = m->changed_ms + mc->cfg.stopping_ms;
		} else if (s == KILN_INSTANCE_SHUTTING_DOWN &&
			   t - m->changed_ms >= mc->cfg.shutting_down_ms) {
			m->inst.state = KILN_INSTANCE_TERMINATED;
			m->changed_ms = m->changed_ms + mc->cfg.shutting_down_ms;
		}
	}
	for (i = 0; i < mc->images.n; i++) {
		struct m_image *m = mc->images.v[i];
		if (m->img.state == KILN_IMAGE_PENDING && t - m->created_ms >= mc->cfg.image_pending_ms) {
			m->img.state = m->will_fail ? KILN_IMAGE_FAILED : KILN_IMAGE_AVAILABLE;
			if (m->will_fail)
				snprintf(m->img.state_reason, sizeof(m->img.state_reason),
					 "Client.InternalError: snapshot failed");
		}
	}
	/* drained targets leave */
	for (i = 0; i < mc->targets.n;) {
		struct m_target *tg = &mc->targets.v[i];
		if (tg->deregistered_ms && t - tg->deregistered_ms >= mc->cfg.drain_ms) {
			mc->targets.v[i] = mc->targets.v[--mc->targets.n];
			continue;
		}
		i++;
	}
}

/* ---- lookups ---- */

static struct m_instance *find_instance(memcloud *mc, const char *id)
{
	size_t i;
	for (i = 0; i < mc->instances.n; i++)
		if (!strcmp(mc->instances.v[i]->inst.id, id))
			return mc->instances.v[i];
	return NULL;
}

static struct m_image *find_image(memcloud *mc, const char *id)
{
	size_t i;
	for (i = 0; i < mc->images.n; i++)
		if (!mc->images.v[i]->deleted && !strcmp(mc->images.v[i]->img.id, id))
			return mc->images.v[i];
	return NULL;
}

static struct m_named *find_named(struct m_named *v, size_t n, const char *name, const char *id)
{
	size_t i;
	for (i = 0; i < n; i++)
		if ((name && !strcmp(v[i].name, name)) || (id && !strcmp(v[i].id, id)))
			return &v[i];
	return NULL;
}

static void remove_named(struct m_named *v, size_t *n, struct m_named *e)
{
	free(e->value);
	kiln_tags_release(&e->tags);
	*e = v[--*n];
}

static bool in_ids(const char *const *ids, size_t n, const char *id)
{
	size_t i;
	if (!ids)
		return true;
	for (i = 0; i < n; i++)
		if (!strcmp(ids[i], id))
			return true;
	return false;
}

/* ---- ops: identity ---- */

static int m_whoami(kiln_cloud *c, kiln_identity *out)
{
	ENTER("whoami");
	memset(out, 0, sizeof(*out));
	snprintf(out->account, sizeof(out->account), "123456789012");
	snprintf(out->arn, sizeof(out->arn), "arn:aws:iam::123456789012:user/memcloud");
	snprintf(out->region, sizeof(out->region), "%s", c->region);
	snprintf(out->endpoint, sizeof(out->endpoint), "memory");
	snprintf(out->credential_source, sizeof(out->credential_source), "none");
	LEAVE("whoami", 0);
}

/* ---- ops: instances ---- */

static int m_launch(kiln_cloud *c, const kiln_launch *spec, kiln_instance_list *out)
{
	struct m_named *tok = NULL;
	kiln_instance_list made = { 0 };
	unsigned i;
	int error = 0;
	ENTER("instances_launch");

	if (spec->client_token && mc->cfg.token_idempotency &&
	    (tok = find_named(mc->tokens.v, mc->tokens.n, spec->client_token, NULL))) {
		/* the same token: the same instances, whatever their state now */
		size_t k;
		for (k = 0; k < mc->instances.n; k++)
			if (!strcmp(mc->instances.v[k]->token, spec->client_token) &&
			    (error = kiln_instance_list_add(&made, &mc->instances.v[k]->inst)) < 0)
				break;
		if (error == 0 && !after_)
			*out = made;
		else
			kiln_instance_list_release(&made);
		LEAVE("instances_launch", error);
	}
	json_decref(mc->last_launch_options);
	mc->last_launch_options = spec->options ? json_deep_copy(spec->options) : NULL;
	if (!spec->image_id || !find_image(mc, spec->image_id) ||
	    find_image(mc, spec->image_id)->img.state != KILN_IMAGE_AVAILABLE)
		return kiln_error_set_cloud(KILN_ENOTFOUND, 400, "InvalidAMIID.NotFound", "mem-req",
					    "image '%s' does not exist or is not available",
					    spec->image_id ? spec->image_id : "(none)");
	for (i = 0; i < (spec->count ? spec->count : 1); i++) {
		struct m_instance *m = calloc(1, sizeof(*m));
		if (!m)
			abort();
		new_id(mc, m->inst.id, "i");
		snprintf(m->inst.image_id, sizeof(m->inst.image_id), "%s", spec->image_id);
		snprintf(m->inst.instance_type, sizeof(m->inst.instance_type), "%s",
			 spec->instance_type ? spec->instance_type : "t3.micro");
		snprintf(m->inst.subnet_id, sizeof(m->inst.subnet_id), "%s",
			 spec->subnet_id ? spec->subnet_id : "subnet-default");
		snprintf(m->inst.private_ip, sizeof(m->inst.private_ip), "10.0.%u.%u",
			 (mc->next_id / 250) % 250, mc->next_id % 250 + 1);
		snprintf(m->inst.public_ip, sizeof(m->inst.public_ip), "203.0.113.%u",
			 mc->next_id % 250 + 1);
		snprintf(m->inst.key_name, sizeof(m->inst.key_name), "%s",
			 spec->key_name ? spec->key_name : "");
		m->inst.state = KILN_INSTANCE_PENDING;
		m->inst.launch_time = kiln_clock_wall_s();
		m->changed_ms = now();
		kiln_buf_init(&m->console, 1 << 20);
		{
			size_t r;
			for (r = 0; r < mc->console_rules.n; r++)
				if (!strcmp(mc->console_rules.v[r].image_id, spec->image_id))
					kiln_buf_puts(&m->console, mc->console_rules.v[r].text);
		}
		if (spec->tags && kiln_tags_copy(&m->inst.tags, spec->tags) < 0)
			abort();
		if (spec->client_token)
			snprintf(m->token, sizeof(m->token), "%s", spec->client_token);
		VEC_PUSH(mc->instances, m);
		if ((error = kiln_instance_list_add(&made, &m->inst)) < 0)
			break;
	}
	if (spec->client_token) {
		struct m_named t;
		memset(&t, 0, sizeof(t));
		snprintf(t.name, sizeof(t.name), "%s", spec->client_token);
		VEC_PUSH(mc->tokens, t);
	}
	if (error == 0 && !after_)
		*out = made;
	else
		kiln_instance_list_release(&made);
	LEAVE("instances_launch", error);
}

static int m_describe(kiln_cloud *c, const kiln_instance_query *q, kiln_instance_list *out)
{
	kiln_instance_list list = { 0 };
	size_t i;
	int error = 0;
	ENTER("instances_describe");

	for (i = 0; i < mc->instances.n; i++) {
		const kiln_instance *inst = &mc->instances.v[i]->inst;
		bool gone = inst->state == KILN_INSTANCE_TERMINATED ||
			    inst->state == KILN_INSTANCE_SHUTTING_DOWN;
		if (!in_ids(q->ids, q->n_ids, inst->id) || !kiln_tags_match(&inst->tags, q->tags))
			continue;
		if (gone && !q->include_terminated)
			continue;
		if ((error = kiln_instance_list_add(&list, inst)) < 0)
			break;
	}
	if (q->ids && error == 0) {
		/* EC2 fails the whole call when an asked-for id does not exist */
		for (i = 0; i < q->n_ids; i++)
			if (!find_instance(mc, q->ids[i])) {
				error = kiln_error_set_cloud(KILN_ENOTFOUND, 400, "InvalidInstanceID.NotFound",
							     "mem-req", "instance '%s' does not exist", q->ids[i]);
				break;
			}
	}
	if (error == 0 && !after_)
		*out = list;
	else
		kiln_instance_list_release(&list);
	LEAVE("instances_describe", error);
}

static int change_state(memcloud *mc, const char *const *ids, size_t n, bool terminate)
{
	size_t i;
	for (i = 0; i < n; i++)
		if (!find_instance(mc, ids[i]))
			return kiln_error_set_cloud(KILN_ENOTFOUND, 400, "InvalidInstanceID.NotFound",
						    "mem-req", "instance '%s' does not exist", ids[i]);
	for (i = 0; i < n; i++) {
		struct m_instance *m = find_instance(mc, ids[i]);
		kiln_instance_state s = m->inst.state;
		if (terminate) {
			if (s == KILN_INSTANCE_TERMINATED || s == KILN_INSTANCE_SHUTTING_DOWN)
				continue;
			m->inst.state = KILN_INSTANCE_SHUTTING_DOWN;
			snprintf(m->inst.state_reason, sizeof(m->inst.state_reason),
				 "Client.UserInitiatedShutdown: User initiated shutdown");
		} else {
			if (s == KILN_INSTANCE_STOPPED || s == KILN_INSTANCE_STOPPING)
				continue;
			if (s != KILN_INSTANCE_RUNNING && s != KILN_INSTANCE_PENDING)
				return kiln_error_set_cloud(KILN_ERROR, 400, "IncorrectInstanceState",
							    "mem-req", "instance '%s' is %s", m->inst.id,
							    kiln_instance_state_name(s));
			m->inst.state = KILN_INSTANCE_STOPPING;
		}
		m->changed_ms = now();
	}
	return 0;
}

static int m_stop(kiln_cloud *c, const char *const *ids, size_t n)
{
	ENTER("instances_stop");
	LEAVE("instances_stop", change_state(mc, ids, n, false));
}

static int m_terminate(kiln_cloud *c, const char *const *ids, size_t n)
{
	size_t i, k;
	int error;
	ENTER("instances_terminate");
	error = change_state(mc, ids, n, true);
	/* a terminated instance leaves its load balancers */
	for (i = 0; error == 0 && i < n; i++)
		for (k = 0; k < mc->targets.n;) {
			if (!strcmp(mc->targets.v[k].id, ids[i])) {
				mc->targets.v[k] = mc->targets.v[--mc->targets.n];
				continue;
			}
			k++;
		}
	/* security groups stay busy for a while after their instances go */
	for (i = 0; error == 0 && i < mc->firewalls.n; i++)
		mc->firewalls.v[i].busy_until_ms = KILN_MAX(mc->firewalls.v[i].busy_until_ms,
							    now() + mc->cfg.firewall_busy_ms);
	LEAVE("instances_terminate", error);
}

static int m_console(kiln_cloud *c, const char *id, kiln_buf *out)
{
	struct m_instance *m;
	ENTER("console_output");
	if (!(m = find_instance(mc, id)))
		return kiln_error_set(KILN_ENOTFOUND, "instance '%s' does not exist", id);
	LEAVE("console_output", kiln_buf_put(out, m->console.ptr, m->console.len));
}

/* ---- ops: images ---- */

static bool owner_match(const kiln_image_query *q, const kiln_image *img)
{
	size_t i;
	if (!q->owners)
		return true;
	for (i = 0; i < q->n_owners; i++)
		if (!strcmp(q->owners[i], img->owner) ||
		    (!strcmp(q->owners[i], "self") && !strcmp(img->owner, "123456789012")))
			return true;
	return false;
}

static int m_images_describe(kiln_cloud *c, const kiln_image_query *q, kiln_image_list *out)
{
	kiln_image_list list = { 0 };
	size_t i;
	int error = 0;
	ENTER("images_describe");
	for (i = 0; i < mc->images.n; i++) {
		const kiln_image *img = &mc->images.v[i]->img;
		if (mc->images.v[i]->deleted || !in_ids(q->ids, q->n_ids, img->id) ||
		    !kiln_tags_match(&img->tags, q->tags) || !owner_match(q, img))
			continue;
		if (q->name && fnmatch(q->name, img->name, 0) != 0)
			continue;
		if ((error = kiln_image_list_add(&list, img)) < 0)
			break;
	}
	if (error == 0 && !after_)
		*out = list;
	else
		kiln_image_list_release(&list);
	LEAVE("images_describe", error);
}

static struct m_image *new_image(memcloud *mc, const char *name, const kiln_tags *tags)
{
	struct m_image *m = calloc(1, sizeof(*m));
	char snap[KILN_ID_MAX];
	if (!m)
		abort();
	new_id(mc, m->img.id, "ami");
	snprintf(m->img.name, sizeof(m->img.name), "%s", name);
	snprintf(m->img.owner, sizeof(m->img.owner), "123456789012");
	m->img.created = kiln_clock_wall_s();
	m->created_ms = now();
	new_id(mc, snap, "snap");
	if (kiln_strings_add(&m->img.snapshots, snap) < 0 ||
	    (tags && kiln_tags_copy(&m->img.tags, tags) < 0))
		abort();
	VEC_PUSH(mc->images, m);
	return m;
}

static int m_image_create(kiln_cloud *c, const char *instance_id, const char *name,
			  const char *description, const kiln_tags *tags, char out_id[KILN_ID_MAX])
{
	struct m_instance *inst;
	struct m_image *m;
	size_t i;
	(void)description;
	ENTER("image_create");
	if (!(inst = find_instance(mc, instance_id)))
		return kiln_error_set_cloud(KILN_ENOTFOUND, 400, "InvalidInstanceID.NotFound", "mem-req",
					    "instance '%s' does not exist", instance_id);
	if (inst->inst.state != KILN_INSTANCE_STOPPED && inst->inst.state != KILN_INSTANCE_RUNNING)
		return kiln_error_set_cloud(KILN_ERROR, 400, "IncorrectInstanceState", "mem-req",
					    "instance '%s' is %s", instance_id,
					    kiln_instance_state_name(inst->inst.state));
	for (i = 0; i < mc->images.n; i++)
		if (!mc->images.v[i]->deleted && !strcmp(mc->images.v[i]->img.name, name))
			return kiln_error_set_cloud(KILN_ECONFLICT, 400, "InvalidAMIName.Duplicate",
						    "mem-req", "an image named '%s' exists", name);
	m = new_image(mc, name, tags);
	m->img.state = KILN_IMAGE_PENDING;
	m->will_fail = mc->fail_images;
	snprintf(out_id, KILN_ID_MAX, "%s", m->img.id);
	LEAVE("image_create", 0);
}

static int m_image_delete(kiln_cloud *c, const char *image_id)
{
	struct m_image *m;
	ENTER("image_delete");
	if ((m = find_image(mc, image_id)))
		m->deleted = true;
	LEAVE("image_delete", 0);
}

static int m_tags_create(kiln_cloud *c, const char *const *ids, size_t n, const kiln_tags *tags)
{
	size_t i, k;
	int error = 0;
	ENTER("tags_create");
	for (i = 0; i < n && error == 0; i++) {
		struct m_instance *inst = find_instance(mc, ids[i]);
		struct m_image *img = find_image(mc, ids[i]);
		struct m_named *fw = find_named(mc->firewalls.v, mc->firewalls.n, NULL, ids[i]);
		bool found = false;
		if (inst)
			error = kiln_tags_merge(&inst->inst.tags, tags), found = true;
		else if (img)
			error = kiln_tags_merge(&img->img.tags, tags), found = true;
		else if (fw)
			error = kiln_tags_merge(&fw->tags, tags), found = true;
		for (k = 0; !found && k < mc->images.n; k++)
			if (kiln_strings_has(&mc->images.v[k]->img.snapshots, ids[i]))
				found = true; /* snapshot tags are not modelled */
		if (!found)
			error = kiln_error_set_cloud(KILN_ENOTFOUND, 400, "InvalidID", "mem-req",
						     "no resource '%s'", ids[i]);
	}
	LEAVE("tags_create", error);
}

static memcloud *region_of(memcloud *mc, const char *region, bool create);

static int m_image_copy(kiln_cloud *c, const kiln_image_copy_spec *spec, char out_id[KILN_ID_MAX])
{
	memcloud *src;
	struct m_image *from, *m;
	size_t i;
	ENTER("image_copy");
	/* the same token: the same copy */
	for (i = 0; spec->client_token && i < mc->images.n; i++)
		if (!strcmp(mc->images.v[i]->copy_token, spec->client_token)) {
			snprintf(out_id, KILN_ID_MAX, "%s", mc->images.v[i]->img.id);
			LEAVE("image_copy", 0);
		}
	src = region_of(mc, spec->source_region, false);
	from = src ? find_image(src, spec->source_id) : NULL;
	if (!from || from->deleted || from->img.state != KILN_IMAGE_AVAILABLE)
		return kiln_error_set_cloud(KILN_ENOTFOUND, 400, "InvalidAMIID.NotFound", "mem-req",
					    "no available image '%s' in '%s'", spec->source_id,
					    spec->source_region);
	m = new_image(mc, spec->name, spec->tags);
	m->img.state = KILN_IMAGE_PENDING;
	m->will_fail = mc->fail_images;
	snprintf(m->copy_token, sizeof(m->copy_token), "%s", spec->client_token ? spec->client_token : "");
	snprintf(m->source_region, sizeof(m->source_region), "%s", spec->source_region);
	m->encrypted = spec->encrypted;
	snprintf(m->kms_key_id, sizeof(m->kms_key_id), "%s", spec->kms_key_id ? spec->kms_key_id : "");
	snprintf(out_id, KILN_ID_MAX, "%s", m->img.id);
	LEAVE("image_copy", 0);
}

static int add_all(kiln_strings *dst, const char *const *v, size_t n)
{
	size_t i;
	int error;
	for (i = 0; i < n; i++)
		if (!kiln_strings_has(dst, v[i]) && (error = kiln_strings_add(dst, v[i])) < 0)
			return error;
	return 0;
}

static int m_image_configure(kiln_cloud *c, const char *image_id, const kiln_image_settings *s)
{
	struct m_image *m;
	int error;
	ENTER("image_configure");
	if (!(m = find_image(mc, image_id)) || m->deleted)
		return kiln_error_set_cloud(KILN_ENOTFOUND, 400, "InvalidAMIID.NotFound", "mem-req",
					    "no image '%s'", image_id);
	if (s->imds_support)
		snprintf(m->imds_support, sizeof(m->imds_support), "%s", s->imds_support);
	if ((error = add_all(&m->launch_users, s->launch_users, s->n_launch_users)) < 0 ||
	    (error = add_all(&m->launch_groups, s->launch_groups, s->n_launch_groups)) < 0 ||
	    (error = add_all(&m->snapshot_users, s->snapshot_users, s->n_snapshot_users)) < 0 ||
	    (error = add_all(&m->snapshot_groups, s->snapshot_groups, s->n_snapshot_groups)) < 0)
		return error;
	if (s->deprecate_at)
		m->deprecate_at = s->deprecate_at;
	LEAVE("image_configure", 0);
}

static int m_region_open(kiln_cloud *c, const char *region, kiln_cloud **out)
{
	memcloud *r;
	ENTER("region_open");
	if (!(r = region_of(mc, region, true)))
		return kiln_error_set(KILN_EINVALID, "memcloud: bad region '%s'", region);
	*out = &r->base;
	LEAVE("region_open", 0);
}

/* ---- ops: load balancers ---- */

static struct m_target *find_target(memcloud *mc, const char *lb, const char *id)
{
	size_t i;
	for (i = 0; i < mc->targets.n; i++)
		if (!strcmp(mc->targets.v[i].lb, lb) && !strcmp(mc->targets.v[i].id, id))
			return &mc->targets.v[i];
	return NULL;
}

static int m_lb_open(kiln_cloud *c, const kiln_lb *lb, kiln_lb_info *out)
{
	ENTER("lb_open");
	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "%s", lb->ref);
	out->drain_timeout_s = mc->cfg.drain_timeout_s;
	out->health_interval_s = mc->cfg.health_interval_s;
	LEAVE("lb_open", 0);
}

static int m_lb_register(kiln_cloud *c, const kiln_lb *lb, const char *const *ids, size_t n)
{
	size_t i;
	ENTER("lb_register");
	for (i = 0; i < n; i++) {
		struct m_instance *inst = find_instance(mc, ids[i]);
		if (!inst || inst->inst.state == KILN_INSTANCE_TERMINATED ||
		    inst->inst.state == KILN_INSTANCE_SHUTTING_DOWN)
			return kiln_error_set_cloud(KILN_ERROR, 400, "InvalidTarget", "mem-req",
						    "instance '%s' cannot be registered", ids[i]);
	}
	for (i = 0; i < n; i++) {
		struct m_target t, *old = find_target(mc, lb->ref, ids[i]);
		if (old) {
			if (old->deregistered_ms) {
				old->deregistered_ms = 0;
				old->registered_ms = now();
			}
			continue;
		}
		memset(&t, 0, sizeof(t));
		snprintf(t.lb, sizeof(t.lb), "%s", lb->ref);
		snprintf(t.id, sizeof(t.id), "%s", ids[i]);
		t.registered_ms = now();
		VEC_PUSH(mc->targets, t);
	}
	LEAVE("lb_register", 0);
}

static int m_lb_deregister(kiln_cloud *c, const kiln_lb *lb, const char *const *ids, size_t n)
{
	size_t i;
	ENTER("lb_deregister");
	for (i = 0; i < n; i++) {
		struct m_target *t = find_target(mc, lb->ref, ids[i]);
		if (t && !t->deregistered_ms)
			t->deregistered_ms = now();
	}
	LEAVE("lb_deregister", 0);
}

static kiln_health rule_for(memcloud *mc, const struct m_instance *inst)
{
	size_t i;
	kiln_health h = KILN_HEALTH_UNKNOWN;
	for (i = 0; i < mc->health_rules.n; i++) {
		const struct m_health_rule *r = &mc->health_rules.v[i];
		if (!strcmp(r->id, r->image ? inst->inst.image_id : inst->inst.id))
			h = r->h; /* later rules win; instance rules are usually set later */
	}
	return h;
}

static void target_health(memcloud *mc, const struct m_target *t, kiln_target *out)
{
	struct m_instance *inst = find_instance(mc, t->id);
	kiln_health rule;

	memset(out, 0, sizeof(*out));
	snprintf(out->instance_id, sizeof(out->instance_id), "%s", t->id);
	if (t->deregistered_ms) {
		out->health = KILN_HEALTH_DRAINING;
		snprintf(out->reason, sizeof(out->reason), "Target.DeregistrationInProgress");
		return;
	}
	if (!inst || inst->inst.state != KILN_INSTANCE_RUNNING) {
		out->health = inst && (inst->inst.state == KILN_INSTANCE_STOPPED ||
				       inst->inst.state == KILN_INSTANCE_STOPPING) ?
			KILN_HEALTH_UNUSED : KILN_HEALTH_UNHEALTHY;
		snprintf(out->reason, sizeof(out->reason), "Target.InvalidState: instance is %s",
			 inst ? kiln_instance_state_name(inst->inst.state) : "gone");
		return;
	}
	/* checks start once both registration and boot are done */
	if (now() - KILN_MAX(t->registered_ms, inst->changed_ms) < mc->cfg.health_initial_ms) {
		out->health = KILN_HEALTH_INITIAL;
		snprintf(out->reason, sizeof(out->reason), "Elb.RegistrationInProgress");
		return;
	}
	rule = rule_for(mc, inst);
	out->health = rule == KILN_HEALTH_UNKNOWN ? KILN_HEALTH_HEALTHY : rule;
	if (out->health == KILN_HEALTH_UNHEALTHY)
		snprintf(out->reason, sizeof(out->reason),
			 "Target.FailedHealthChecks: Health checks failed with these codes: [500]");
	else if (out->health == KILN_HEALTH_INITIAL)
		snprintf(out->reason, sizeof(out->reason), "Elb.InitialHealthChecking");
}

static int m_lb_health(kiln_cloud *c, const kiln_lb *lb, const char *const *ids, size_t n,
		       kiln_target_list *out)
{
	kiln_target_list list = { 0 };
	size_t i;
	int error = 0;
	ENTER("lb_health");
	if (ids) {
		for (i = 0; i < n && error == 0; i++) {
			struct m_target *t = find_target(mc, lb->ref, ids[i]);
			kiln_target kt;
			if (t) {
				target_health(mc, t, &kt);
			} else {
				memset(&kt, 0, sizeof(kt));
				snprintf(kt.instance_id, sizeof(kt.instance_id), "%s", ids[i]);
				kt.health = KILN_HEALTH_UNUSED;
				snprintf(kt.reason, sizeof(kt.reason), "Target.NotRegistered");
			}
			error = kiln_target_list_add(&list, &kt);
		}
	} else {
		for (i = 0; i < mc->targets.n && error == 0; i++) {
			kiln_target kt;
			if (strcmp(mc->targets.v[i].lb, lb->ref))
				continue;
			target_health(mc, &mc->targets.v[i], &kt);
			error = kiln_target_list_add(&list, &kt);
		}
	}
	if (error == 0 && !after_)
		*out = list;
	else
		kiln_target_list_release(&list);
	LEAVE("lb_health", error);
}

/* ---- ops: temporary access ---- */

static int m_keypair_import(kiln_cloud *c, const char *name, const char *public_key,
			    const kiln_tags *tags)
{
	struct m_named k;
	ENTER("keypair_import");
	if (find_named(mc->keypairs.v, mc->keypairs.n, name, NULL))
		return kiln_error_set_cloud(KILN_ECONFLICT, 400, "InvalidKeyPair.Duplicate", "mem-req",
					    "the key pair '%s' already exists", name);
	memset(&k, 0, sizeof(k));
	snprintf(k.name, sizeof(k.name), "%s", name);
	new_id(mc, k.id, "key");
	k.value = kiln_strdup(public_key);
	if (tags && kiln_tags_copy(&k.tags, tags) < 0)
		abort();
	VEC_PUSH(mc->keypairs, k);
	LEAVE("keypair_import", 0);
}

static int m_keypair_delete(kiln_cloud *c, const char *name)
{
	struct m_named *k;
	ENTER("keypair_delete");
	if ((k = find_named(mc->keypairs.v, mc->keypairs.n, name, NULL)))
		remove_named(mc->keypairs.v, &mc->keypairs.n, k);
	LEAVE("keypair_delete", 0);
}

static int m_firewall_create(kiln_cloud *c, const kiln_firewall *spec, char out_id[KILN_ID_MAX])
{
	struct m_named f;
	kiln_buf rules = KILN_BUF_INIT;
	size_t i;
	ENTER("firewall_create");
	if (find_named(mc->firewalls.v, mc->firewalls.n, spec->name, NULL))
		return kiln_error_set_cloud(KILN_ECONFLICT, 400, "InvalidGroup.Duplicate", "mem-req",
					    "the security group '%s' already exists", spec->name);
	memset(&f, 0, sizeof(f));
	snprintf(f.name, sizeof(f.name), "%s", spec->name);
	new_id(mc, f.id, "sg");
	for (i = 0; i < spec->n_cidrs; i++)
		kiln_buf_printf(&rules, "%stcp/%d from %s", i ? "," : "", spec->port, spec->cidrs[i]);
	f.value = kiln_buf_detach(&rules);
	if (spec->tags && kiln_tags_copy(&f.tags, spec->tags) < 0)
		abort();
	VEC_PUSH(mc->firewalls, f);
	snprintf(out_id, KILN_ID_MAX, "%s", f.id);
	LEAVE("firewall_create", 0);
}

static int m_firewall_delete(kiln_cloud *c, const char *id, uint64_t timeout_ms)
{
	struct m_named *f;
	uint64_t deadline = now() + timeout_ms;
	int error = 0;
	ENTER("firewall_delete");
	while ((f = find_named(mc->firewalls.v, mc->firewalls.n, NULL, id)) &&
	       now() < f->busy_until_ms) {
		if (now() >= deadline) {
			error = kiln_error_set_cloud(KILN_ETIMEOUT, 400, "DependencyViolation", "mem-req",
						     "security group '%s' is still in use", id);
			break;
		}
		if ((error = kiln_sleep_ms(1000)) < 0)
			break;
	}
	if (error == 0 && (f = find_named(mc->firewalls.v, mc->firewalls.n, NULL, id)))
		remove_named(mc->firewalls.v, &mc->firewalls.n, f);
	LEAVE("firewall_delete", error);
}

static int m_resources_find(kiln_cloud *c, const kiln_tags *match, kiln_resource_list *out)
{
	kiln_resource_list list = { 0 };
	kiln_resource r;
	size_t i;
	int error = 0;
	ENTER("resources_find");

#define ADD(kind_, id_, state_, tags_)                                                   \
	do {                                                                             \
		if (!kiln_tags_match((tags_), match))                                    \
			break;                                                           \
		memset(&r, 0, sizeof(r));                                                \
		r.kind = (kind_);                                                        \
		snprintf(r.id, sizeof(r.id), "%s", (id_));                               \
		snprintf(r.state, sizeof(r.state), "%s", (state_));                      \
		r.tags = *(tags_);                                                       \
		if ((error = kiln_resource_list_add(&list, &r)) < 0)                     \
			goto done;                                                       \
	} while (0)

	for (i = 0; i < mc->instances.n; i++) {
		const kiln_instance *inst = &mc->instances.v[i]->inst;
		if (inst->state != KILN_INSTANCE_TERMINATED)
			ADD(KILN_RES_INSTANCE, inst->id, kiln_instance_state_name(inst->state), &inst->tags);
	}
	for (i = 0; i < mc->keypairs.n; i++)
		ADD(KILN_RES_KEYPAIR, mc->keypairs.v[i].name, "", &mc->keypairs.v[i].tags);
	for (i = 0; i < mc->firewalls.n; i++)
		ADD(KILN_RES_FIREWALL, mc->firewalls.v[i].id, "", &mc->firewalls.v[i].tags);
	for (i = 0; i < mc->images.n; i++)
		if (!mc->images.v[i]->deleted)
			ADD(KILN_RES_IMAGE, mc->images.v[i]->img.id,
			    kiln_image_state_name(mc->images.v[i]->img.state), &mc->images.v[i]->img.tags);
#undef ADD
done:
	if (error == 0 && !after_)
		*out = list;
	else
		kiln_resource_list_release(&list);
	LEAVE("resources_find", error);
}

/* ---- ops: records ---- */

static int m_record_create(kiln_cloud *c, const char *name, const char *value)
{
	struct m_named r;
	ENTER("record_create");
	if (find_named(mc->records.v, mc->records.n, name, NULL))
		return kiln_error_set_cloud(KILN_ECONFLICT, 400, "ParameterAlreadyExists", "mem-req",
					    "record '%s' exists", name);
	memset(&r, 0, sizeof(r));
	snprintf(r.name, sizeof(r.name), "%s", name);
	r.value = kiln_strdup(value);
	r.version = 1;
	r.modified_ms = kiln_clock_wall_ms();
	VEC_PUSH(mc->records, r);
	LEAVE("record_create", 0);
}

static int m_record_get(kiln_cloud *c, const char *name, kiln_record *out)
{
	struct m_named *r;
	ENTER("record_get");
	if (!(r = find_named(mc->records.v, mc->records.n, name, NULL)))
		return kiln_error_set_cloud(KILN_ENOTFOUND, 400, "ParameterNotFound", "mem-req",
					    "no record '%s'", name);
	if (after_)
		LEAVE("record_get", 0);
	out->value = kiln_strdup(r->value);
	out->version = r->version;
	out->modified_ms = r->modified_ms;
	LEAVE("record_get", out->value ? 0 : KILN_ENOMEM);
}

static int m_record_put(kiln_cloud *c, const char *name, const char *value)
{
	struct m_named *r;
	ENTER("record_put");
	if (!(r = find_named(mc->records.v, mc->records.n, name, NULL))) {
		struct m_named n;
		memset(&n, 0, sizeof(n));
		snprintf(n.name, sizeof(n.name), "%s", name);
		VEC_PUSH(mc->records, n);
		r = &mc->records.v[mc->records.n - 1];
	}
	free(r->value);
	r->value = kiln_strdup(value);
	r->version++;
	r->modified_ms = kiln_clock_wall_ms();
	LEAVE("record_put", 0);
}

static int m_record_delete(kiln_cloud *c, const char *name)
{
	struct m_named *r;
	ENTER("record_delete");
	if ((r = find_named(mc->records.v, mc->records.n, name, NULL)))
		remove_named(mc->records.v, &mc->records.n, r);
	LEAVE("record_delete", 0);
}

static int m_record_list(kiln_cloud *c, const char *prefix, kiln_strings *out)
{
	kiln_strings names = { 0 };
	size_t i, n = strlen(prefix);
	int error = 0;
	ENTER("record_list");
	for (i = 0; i < mc->records.n && error == 0; i++)
		if (!strncmp(mc->records.v[i].name, prefix, n))
			error = kiln_strings_add(&names, mc->records.v[i].name);
	if (error == 0 && !after_)
		*out = names;
	else
		kiln_strings_release(&names);
	LEAVE("record_list", error);
}

static int m_caller_cidr(kiln_cloud *c, const char *subnet_id, kiln_buf *out)
{
	(void)subnet_id;
	ENTER("caller_cidr");
	LEAVE("caller_cidr", kiln_buf_puts(out, "198.51.100.7/32"));
}

static void image_free(struct m_image *m)
{
	kiln_image_release(&m->img);
	kiln_strings_release(&m->launch_users);
	kiln_strings_release(&m->launch_groups);
	kiln_strings_release(&m->snapshot_users);
	kiln_strings_release(&m->snapshot_groups);
	free(m);
}

static void memcloud_free(memcloud *mc);

static void m_free(kiln_cloud *c)
{
	memcloud *mc = (memcloud *)c;
	/* another region's lives as long as the first, which others may still open it from */
	if (!mc->parent)
		memcloud_free(mc);
}

static void memcloud_free(memcloud *mc)
{
	size_t i;
	for (i = 0; i < mc->instances.n; i++) {
		kiln_tags_release(&mc->instances.v[i]->inst.tags);
		kiln_buf_release(&mc->instances.v[i]->console);
		free(mc->instances.v[i]);
	}
	for (i = 0; i < mc->images.n; i++)
		image_free(mc->images.v[i]);
	for (i = 0; i < mc->regions.n; i++)
		memcloud_free(mc->regions.v[i]);
	free(mc->regions.v);
	json_decref(mc->last_launch_options);
	while (mc->keypairs.n)
		remove_named(mc->keypairs.v, &mc->keypairs.n, &mc->keypairs.v[0]);
	while (mc->firewalls.n)
		remove_named(mc->firewalls.v, &mc->firewalls.n, &mc->firewalls.v[0]);
	while (mc->records.n)
		remove_named(mc->records.v, &mc->records.n, &mc->records.v[0]);
	while (mc->tokens.n)
		remove_named(mc->tokens.v, &mc->tokens.n, &mc->tokens.v[0]);
	free(mc->instances.v);
	free(mc->images.v);
	free(mc->targets.v);
	free(mc->keypairs.v);
	free(mc->firewalls.v);
	free(mc->records.v);
	free(mc->faults.v);
	free(mc->health_rules.v);
	for (i = 0; i < mc->console_rules.n; i++)
		free(mc->console_rules.v[i].text);
	free(mc->console_rules.v);
	free(mc->counts.v);
	free(mc->tokens.v);
	free(mc);
}

static const kiln_cloud_ops memcloud_ops = {
	.name = "memory",
	.whoami = m_whoami,
	.instances_launch = m_launch,
	.instances_describe = m_describe,
	.instances_stop = m_stop,
	.instances_terminate = m_terminate,
	.console_output = m_console,
	.images_describe = m_images_describe,
	.image_create = m_image_create,
	.image_delete = m_image_delete,
	.tags_create = m_tags_create,
	.lb_open = m_lb_open,
	.lb_register = m_lb_register,
	.lb_deregister = m_lb_deregister,
	.lb_health = m_lb_health,
	.keypair_import = m_keypair_import,
	.keypair_delete = m_keypair_delete,
	.firewall_create = m_firewall_create,
	.firewall_delete = m_firewall_delete,
	.resources_find = m_resources_find,
	.record_create = m_record_create,
	.record_get = m_record_get,
	.record_put = m_record_put,
	.record_delete = m_record_delete,
	.record_list = m_record_list,
	.caller_cidr = m_caller_cidr,
	.region_open = m_region_open,
	.image_copy = m_image_copy,
	.image_configure = m_image_configure,
	.free = m_free,
};

/* The memcloud of region (the first's own, or another, made on first use if create). */
static memcloud *region_of(memcloud *mc, const char *region, bool create)
{
	memcloud *root = mc->parent ? mc->parent : mc, *r;
	size_t i;

	if (!region || !*region)
		return NULL;
	if (!strcmp(root->base.region, region))
		return root;
	for (i = 0; i < root->regions.n; i++)
		if (!strcmp(root->regions.v[i]->base.region, region))
			return root->regions.v[i];
	if (!create)
		return NULL;
	r = memcloud_new();
	r->parent = root;
	r->cfg = root->cfg;
	r->base.events = root->base.events;
	snprintf(r->base.region, sizeof(r->base.region), "%s", region);
	VEC_PUSH(root->regions, r);
	return r;
}

memcloud *memcloud_region(memcloud *mc, const char *region)
{
	return region_of(mc, region, true);
}

bool memcloud_image_get(memcloud *mc, const char *id, memcloud_image_info *out)
{
	struct m_image *m = find_image(mc, id);
	if (!m)
		return false;
	memset(out, 0, sizeof(*out));
	out->img = &m->img;
	out->deleted = m->deleted;
	out->copy_token = m->copy_token;
	out->source_region = m->source_region;
	out->encrypted = m->encrypted;
	out->kms_key_id = m->kms_key_id;
	out->imds_support = m->imds_support;
	out->launch_users = &m->launch_users;
	out->launch_groups = &m->launch_groups;
	out->snapshot_users = &m->snapshot_users;
	out->snapshot_groups = &m->snapshot_groups;
	out->deprecate_at = m->deprecate_at;
	return true;
}

const json_t *memcloud_last_launch_options(const memcloud *mc)
{
	return mc->last_launch_options;
}

memcloud *memcloud_new(void)
{
	memcloud *mc = calloc(1, sizeof(*mc));
	if (!mc)
		abort();
	mc->base.ops = &memcloud_ops;
	snprintf(mc->base.region, sizeof(mc->base.region), "mem-1");
	mc->cfg.pending_ms = 2000;
	mc->cfg.stopping_ms = 1000;
	mc->cfg.shutting_down_ms = 1000;
	mc->cfg.image_pending_ms = 5000;
	mc->cfg.health_initial_ms = 3000;
	mc->cfg.drain_ms = 2000;
	mc->cfg.drain_timeout_s = 30;
	mc->cfg.health_interval_s = 5;
	mc->cfg.token_idempotency = true;
	return mc;
}

kiln_cloud *memcloud_cloud(memcloud *mc)
{
	return &mc->base;
}

memcloud *memcloud_from(kiln_cloud *c)
{
	return (memcloud *)c;
}

memcloud_config *memcloud_cfg(memcloud *mc)
{
	return &mc->cfg;
}

/* ---- scripting and fixtures ---- */

static void add_rule(memcloud *mc, const char *id, bool image, kiln_health h)
{
	struct m_health_rule r;
	memset(&r, 0, sizeof(r));
	snprintf(r.id, sizeof(r.id), "%s", id);
	r.image = image;
	r.h = h;
	VEC_PUSH(mc->health_rules, r);
}

void memcloud_image_health(memcloud *mc, const char *image_id, kiln_health h)
{
	add_rule(mc, image_id, true, h);
}

void memcloud_instance_health(memcloud *mc, const char *instance_id, kiln_health h)
{
	add_rule(mc, instance_id, false, h);
}

void memcloud_fail_images(memcloud *mc, bool fail)
{
	mc->fail_images = fail;
}

void memcloud_kill_instance(memcloud *mc, const char *id, const char *reason)
{
	struct m_instance *m = find_instance(mc, id);
	size_t k;
	if (!m)
		return;
	m->inst.state = KILN_INSTANCE_TERMINATED;
	m->changed_ms = now();
	snprintf(m->inst.state_reason, sizeof(m->inst.state_reason), "%s",
		 reason ? reason : "Server.InternalError: instance failed");
	for (k = 0; k < mc->targets.n;) {
		if (!strcmp(mc->targets.v[k].id, id)) {
			mc->targets.v[k] = mc->targets.v[--mc->targets.n];
			continue;
		}
		k++;
	}
}

void memcloud_image_console(memcloud *mc, const char *image_id, const char *text)
{
	struct m_console_rule r;
	memset(&r, 0, sizeof(r));
	snprintf(r.image_id, sizeof(r.image_id), "%s", image_id);
	if (!(r.text = kiln_strdup(text)))
		abort();
	VEC_PUSH(mc->console_rules, r);
}

void memcloud_set_console(memcloud *mc, const char *instance_id, const char *text)
{
	struct m_instance *m = find_instance(mc, instance_id);
	if (!m)
		return;
	kiln_buf_reset(&m->console);
	kiln_buf_puts(&m->console, text);
}

const char *memcloud_add_image(memcloud *mc, const char *kiln_name, int64_t version,
			       const kiln_tags *extra_tags)
{
	char name[KILN_NAME_MAX], ver[32];
	struct m_image *m;

	if (kiln_name)
		snprintf(name, sizeof(name), "%s-v%lld", kiln_name, (long long)version);
	else
		snprintf(name, sizeof(name), "base-%u", mc->next_id + 1);
	m = new_image(mc, name, extra_tags);
	m->img.state = KILN_IMAGE_AVAILABLE;
	if (kiln_name) {
		snprintf(ver, sizeof(ver), "%lld", (long long)version);
		kiln_tags_set(&m->img.tags, "kiln:image", kiln_name);
		kiln_tags_set(&m->img.tags, "kiln:version", ver);
	}
	return m->img.id;
}

const char *memcloud_add_instance(memcloud *mc, const char *image_id, const kiln_tags *tags)
{
	struct m_instance *m = calloc(1, sizeof(*m));
	if (!m)
		abort();
	new_id(mc, m->inst.id, "i");
	snprintf(m->inst.image_id, sizeof(m->inst.image_id), "%s", image_id);
	snprintf(m->inst.subnet_id, sizeof(m->inst.subnet_id), "subnet-default");
	snprintf(m->inst.private_ip, sizeof(m->inst.private_ip), "10.0.9.%u", mc->next_id % 250 + 1);
	m->inst.state = KILN_INSTANCE_RUNNING;
	m->inst.launch_time = kiln_clock_wall_s();
	/* long since booted: health checks may pass as soon as it is registered */
	m->changed_ms = 0;
	kiln_buf_init(&m->console, 1 << 20);
	if (tags && kiln_tags_copy(&m->inst.tags, tags) < 0)
		abort();
	VEC_PUSH(mc->instances, m);
	return m->inst.id;
}

/* ---- inspection ---- */

size_t memcloud_count_instances(memcloud *mc, kiln_instance_state state, const kiln_tags *tags)
{
	size_t i, n = 0;
	advance(mc);
	for (i = 0; i < mc->instances.n; i++) {
		const kiln_instance *inst = &mc->instances.v[i]->inst;
		if (!kiln_tags_match(&inst->tags, tags))
			continue;
		if (state == KILN_INSTANCE_UNKNOWN ? inst->state != KILN_INSTANCE_TERMINATED
						   : inst->state == state)
			n++;
	}
	return n;
}

size_t memcloud_count_targets(memcloud *mc, const char *lb_ref, kiln_health h)
{
	size_t i, n = 0;
	advance(mc);
	for (i = 0; i < mc->targets.n; i++) {
		kiln_target t;
		if (strcmp(mc->targets.v[i].lb, lb_ref))
			continue;
		target_health(mc, &mc->targets.v[i], &t);
		if (h == KILN_HEALTH_UNKNOWN || t.health == h)
			n++;
	}
	return n;
}

bool memcloud_is_registered(memcloud *mc, const char *lb_ref, const char *instance_id)
{
	struct m_target *t;
	advance(mc);
	t = find_target(mc, lb_ref, instance_id);
	return t && !t->deregistered_ms;
}

size_t memcloud_count_keypairs(const memcloud *mc) { return mc->keypairs.n; }
size_t memcloud_count_firewalls(const memcloud *mc) { return mc->firewalls.n; }
size_t memcloud_count_records(const memcloud *mc) { return mc->records.n; }

size_t memcloud_count_images(const memcloud *mc)
{
	size_t i, n = 0;
	for (i = 0; i < mc->images.n; i++)
		n += !mc->images.v[i]->deleted;
	return n;
}

unsigned memcloud_launches_with_token(const memcloud *mc, const char *token)
{
	size_t i;
	unsigned n = 0;
	for (i = 0; i < mc->tokens.n; i++)
		n += !strcmp(mc->tokens.v[i].name, token);
	return n;
}

unsigned memcloud_max_launches_per_token(const memcloud *mc)
{
	unsigned best = 0;
	size_t i;
	for (i = 0; i < mc->tokens.n; i++)
		best = KILN_MAX(best, memcloud_launches_with_token(mc, mc->tokens.v[i].name));
	return best;
}

size_t memcloud_find_instances(memcloud *mc, kiln_instance_state state, const kiln_tags *tags,
			       kiln_strings *out)
{
	size_t i, n = 0;
	advance(mc);
	for (i = 0; i < mc->instances.n; i++) {
		const kiln_instance *inst = &mc->instances.v[i]->inst;
		if (!kiln_tags_match(&inst->tags, tags))
			continue;
		if (state == KILN_INSTANCE_UNKNOWN ? inst->state == KILN_INSTANCE_TERMINATED
						   : inst->state != state)
			continue;
		if (kiln_strings_add(out, inst->id) < 0)
			abort();
		n++;
	}
	return n;
}
