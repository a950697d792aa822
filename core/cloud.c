#include "core/clock.h"
#include "core/cloud.h"
#include "core/error.h"

/* ---- tags ---- */

int kiln_tags_set(kiln_tags *tags, const char *key, const char *value)
{
	kiln_tag *items;
	char *k, *v;
	size_t i;

	for (i = 0; i < tags->n; i++) {
		if (strcmp(tags->items[i].key, key))
			continue;
		if (!(v = kiln_strdup(value)))
			return KILN_ENOMEM;
		free(tags->items[i].value);
		tags->items[i].value = v;
		return 0;
	}
	if (!(items = realloc(tags->items, (tags->n + 1) * sizeof(*items))))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	tags->items = items;
	k = kiln_strdup(key);
	v = kiln_strdup(value);
	if (!k || !v) {
		free(k);
		free(v);
		return KILN_ENOMEM;
	}
	items[tags->n].key = k;
	items[tags->n].value = v;
	tags->n++;
	return 0;
}

const char *kiln_tags_get(const kiln_tags *tags, const char *key)
{
	size_t i;
	if (!tags)
		return NULL;
	for (i = 0; i < tags->n; i++)
		if (!strcmp(tags->items[i].key, key))
			return tags->items[i].value;
	return NULL;
}

int kiln_tags_merge(kiln_tags *dst, const kiln_tags *src)
{
	size_t i;
	int error;
	if (!src)
		return 0;
	for (i = 0; i < src->n; i++)
		if ((error = kiln_tags_set(dst, src->items[i].key, src->items[i].value)) < 0)
			return error;
	return 0;
}

int kiln_tags_copy(kiln_tags *dst, const kiln_tags *src)
{
	dst->items = NULL;
	dst->n = 0;
	return kiln_tags_merge(dst, src);
}

int kiln_tags_from_json(kiln_tags *dst, const json_t *obj)
{
	const char *k;
	json_t *v;
	int error;

	json_object_foreach((json_t *)obj, k, v) {
		if (!json_is_string(v))
			return kiln_error_set(KILN_EINVALID, "tag '%s' must be a string", k);
		if ((error = kiln_tags_set(dst, k, json_string_value(v))) < 0)
			return error;
	}
	return 0;
}

json_t *kiln_tags_to_json(const kiln_tags *tags)
{
	json_t *o = json_object();
	size_t i;
	for (i = 0; o && tags && i < tags->n; i++)
		json_object_set_new(o, tags->items[i].key, json_string(tags->items[i].value));
	return o;
}

bool kiln_tags_match(const kiln_tags *have, const kiln_tags *want)
{
	size_t i;
	if (!want)
		return true;
	for (i = 0; i < want->n; i++) {
		const char *v = kiln_tags_get(have, want->items[i].key);
		if (!v || (strcmp(want->items[i].value, "*") && strcmp(want->items[i].value, v)))
			return false;
	}
	return true;
}

void kiln_tags_release(kiln_tags *tags)
{
	size_t i;
	for (i = 0; i < tags->n; i++) {
		free(tags->items[i].key);
		free(tags->items[i].value);
	}
	free(tags->items);
	tags->items = NULL;
	tags->n = 0;
}

int kiln_strings_add(kiln_strings *s, const char *v)
{
	char **items, *d;
	if (!(d = kiln_strdup(v)))
		return KILN_ENOMEM;
	if (!(items = realloc(s->items, (s->n + 1) * sizeof(*items)))) {
		free(d);
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	}
	items[s->n++] = d;
	s->items = items;
	return 0;
}

bool kiln_strings_has(const kiln_strings *s, const char *v)
{
	size_t i;
	for (i = 0; i < s->n; i++)
		if (!strcmp(s->items[i], v))
			return true;
	return false;
}

void kiln_strings_release(kiln_strings *s)
{
	size_t i;
	for (i = 0; i < s->n; i++)
		free(s->items[i]);
	free(s->items);
	s->items = NULL;
	s->n = 0;
}

/* ---- enums ---- */

static const char *const instance_states[] = {
	[KILN_INSTANCE_UNKNOWN] = "unknown",
	[KILN_INSTANCE_PENDING] = "pending",
	[KILN_INSTANCE_RUNNING] = "running",
	[KILN_INSTANCE_STOPPING] = "stopping",
	[KILN_INSTANCE_STOPPED] = "stopped",
	[KILN_INSTANCE_SHUTTING_DOWN] = "shutting-down",
	[KILN_INSTANCE_TERMINATED] = "terminated",
};

static const char *const image_states[] = {
	[KILN_IMAGE_UNKNOWN] = "unknown",
	[KILN_IMAGE_PENDING] = "pending",
	[KILN_IMAGE_AVAILABLE] = "available",
	[KILN_IMAGE_FAILED] = "failed",
	[KILN_IMAGE_DEREGISTERED] = "deregistered",
};

static const char *const health_states[] = {
	[KILN_HEALTH_UNKNOWN] = "unknown",
	[KILN_HEALTH_INITIAL] = "initial",
	[KILN_HEALTH_HEALTHY] = "healthy",
	[KILN_HEALTH_UNHEALTHY] = "unhealthy",
	[KILN_HEALTH_DRAINING] = "draining",
	[KILN_HEALTH_UNUSED] = "unused",
	[KILN_HEALTH_UNAVAILABLE] = "unavailable",
};

static const char *const resource_kinds[] = {
	[KILN_RES_INSTANCE] = "instance",
	[KILN_RES_KEYPAIR] = "key pair",
	[KILN_RES_FIREWALL] = "security group",
	[KILN_RES_IMAGE] = "image",
	[KILN_RES_SNAPSHOT] = "snapshot",
};

static int lookup(const char *const *names, size_t n, const char *s)
{
	size_t i;
	for (i = 0; s && i < n; i++)
		if (names[i] && !strcmp(names[i], s))
			return (int)i;
	return 0;
}

#define NAME_OF(table, v) ((size_t)(v) < KILN_ARRAY_SIZE(table) ? table[(v)] : table[0])

const char *kiln_instance_state_name(kiln_instance_state s) { return NAME_OF(instance_states, s); }
kiln_instance_state kiln_instance_state_parse(const char *s)
{
	return (kiln_instance_state)lookup(instance_states, KILN_ARRAY_SIZE(instance_states), s);
}
const char *kiln_image_state_name(kiln_image_state s) { return NAME_OF(image_states, s); }
kiln_image_state kiln_image_state_parse(const char *s)
{
	return (kiln_image_state)lookup(image_states, KILN_ARRAY_SIZE(image_states), s);
}
const char *kiln_health_name(kiln_health h) { return NAME_OF(health_states, h); }
kiln_health kiln_health_parse(const char *s)
{
	return (kiln_health)lookup(health_states, KILN_ARRAY_SIZE(health_states), s);
}
const char *kiln_resource_kind_name(kiln_resource_kind k) { return NAME_OF(resource_kinds, k); }

/* ---- lists ---- */

#define LIST_ADD(list, item, copy_fn)                                                    \
	do {                                                                             \
		void *p_ = realloc((list)->items, ((list)->n + 1) * sizeof(*(list)->items)); \
		if (!p_)                                                                 \
			return kiln_error_set(KILN_ENOMEM, "out of memory");             \
		(list)->items = p_;                                                      \
	} while (0)

void kiln_instance_list_release(kiln_instance_list *list)
{
	size_t i;
	for (i = 0; i < list->n; i++)
		kiln_tags_release(&list->items[i].tags);
	free(list->items);
	list->items = NULL;
	list->n = 0;
}

int kiln_instance_list_add(kiln_instance_list *list, const kiln_instance *inst)
{
	kiln_instance *dst;
	LIST_ADD(list, inst, );
	dst = &list->items[list->n];
	*dst = *inst;
	if (kiln_tags_copy(&dst->tags, &inst->tags) < 0) {
		kiln_tags_release(&dst->tags);
		return KILN_ENOMEM;
	}
	list->n++;
	return 0;
}

const kiln_instance *kiln_instance_list_find(const kiln_instance_list *list, const char *id)
{
	size_t i;
	for (i = 0; i < list->n; i++)
		if (!strcmp(list->items[i].id, id))
			return &list->items[i];
	return NULL;
}

void kiln_image_release(kiln_image *img)
{
	kiln_tags_release(&img->tags);
	kiln_strings_release(&img->snapshots);
}

int kiln_image_copy(kiln_image *dst, const kiln_image *src)
{
	size_t i;
	*dst = *src;
	dst->tags.items = NULL;
	dst->tags.n = 0;
	dst->snapshots.items = NULL;
	dst->snapshots.n = 0;
	if (kiln_tags_copy(&dst->tags, &src->tags) < 0)
		goto fail;
	for (i = 0; i < src->snapshots.n; i++)
		if (kiln_strings_add(&dst->snapshots, src->snapshots.items[i]) < 0)
			goto fail;
	return 0;
fail:
	kiln_image_release(dst);
	return KILN_ENOMEM;
}

void kiln_image_list_release(kiln_image_list *list)
{
	size_t i;
	for (i = 0; i < list->n; i++)
		kiln_image_release(&list->items[i]);
	free(list->items);
	list->items = NULL;
	list->n = 0;
}

int kiln_image_list_add(kiln_image_list *list, const kiln_image *img)
{
	int error;
	LIST_ADD(list, img, );
	if ((error = kiln_image_copy(&list->items[list->n], img)) < 0)
		return error;
	list->n++;
	return 0;
}

void kiln_target_list_release(kiln_target_list *list)
{
	free(list->items);
	list->items = NULL;
	list->n = 0;
}

int kiln_target_list_add(kiln_target_list *list, const kiln_target *t)
{
	LIST_ADD(list, t, );
	list->items[list->n++] = *t;
	return 0;
}

const kiln_target *kiln_target_list_find(const kiln_target_list *list, const char *id)
{
	size_t i;
	for (i = 0; i < list->n; i++)
		if (!strcmp(list->items[i].instance_id, id))
			return &list->items[i];
	return NULL;
}

void kiln_resource_list_release(kiln_resource_list *list)
{
	size_t i;
	for (i = 0; i < list->n; i++)
		kiln_tags_release(&list->items[i].tags);
	free(list->items);
	list->items = NULL;
	list->n = 0;
}

int kiln_resource_list_add(kiln_resource_list *list, const kiln_resource *r)
{
	kiln_resource *dst;
	LIST_ADD(list, r, );
	dst = &list->items[list->n];
	*dst = *r;
	if (kiln_tags_copy(&dst->tags, &r->tags) < 0) {
		kiln_tags_release(&dst->tags);
		return KILN_ENOMEM;
	}
	list->n++;
	return 0;
}

void kiln_record_release(kiln_record *r)
{
	free(r->value);
	r->value = NULL;
}

void kiln_cloud_free(kiln_cloud *c)
{
	if (c && c->ops && c->ops->free)
		c->ops->free(c);
}

const char *kiln_cloud_name(const kiln_cloud *c)
{
	return c && c->ops ? c->ops->name : "none";
}

/* ---- waiters ---- */

int kiln_cloud_wait_instances(kiln_cloud *c, const char *const *ids, size_t n,
			      kiln_instance_state want, uint64_t timeout_ms,
			      kiln_instance_list *out)
{
	uint64_t deadline = kiln_clock_now_ms() + timeout_ms;
	kiln_backoff bo;
	int error;

	kiln_backoff_init(&bo, 250, 5000);
	for (;;) {
		kiln_instance_list list = { 0 };
		kiln_instance_query q = { .ids = ids, .n_ids = n, .include_terminated = true };
		size_t i, done = 0;

		if ((error = c->ops->instances_describe(c, &q, &list)) < 0)
			return error;
		for (i = 0; i < list.n; i++) {
			const kiln_instance *inst = &list.items[i];
			bool gone = inst->state == KILN_INSTANCE_TERMINATED ||
				    inst->state == KILN_INSTANCE_SHUTTING_DOWN;
			if (inst->state == want) {
				done++;
				continue;
			}
			if ((gone && want != KILN_INSTANCE_TERMINATED) ||
			    (want == KILN_INSTANCE_RUNNING &&
			     (inst->state == KILN_INSTANCE_STOPPED || inst->state == KILN_INSTANCE_STOPPING))) {
				error = kiln_error_set(KILN_ERROR, "instance '%s' is %s%s%s", inst->id,
						       kiln_instance_state_name(inst->state),
						       inst->state_reason[0] ? ": " : "", inst->state_reason);
				kiln_instance_list_release(&list);
				return error;
			}
		}
		if (done == n) {
			if (out)
				*out = list;
			else
				kiln_instance_list_release(&list);
			return 0;
		}
		kiln_instance_list_release(&list);
		if (kiln_clock_now_ms() >= deadline)
			return kiln_error_set(KILN_ETIMEOUT, "instances not %s after %llu s",
					      kiln_instance_state_name(want),
					      (unsigned long long)(timeout_ms / 1000));
		if ((error = kiln_sleep_ms(KILN_MIN(kiln_backoff_next(&bo),
						    deadline - kiln_clock_now_ms()))) < 0)
			return error;
	}
}

int kiln_cloud_wait_image(kiln_cloud *c, const char *image_id, uint64_t timeout_ms,
			  kiln_image *out)
{
	uint64_t deadline = kiln_clock_now_ms() + timeout_ms;
	const char *ids[1] = { image_id };
	kiln_backoff bo;
	int error;

	kiln_backoff_init(&bo, 500, 10000);
	for (;;) {
		kiln_image_list list = { 0 };
		kiln_image_query q = { .ids = ids, .n_ids = 1 };

		error = c->ops->images_describe(c, &q, &list);
		if (error == KILN_ENOTFOUND)
			error = 0; /* eventual consistency: not listed yet */
		if (error < 0)
			return error;
		if (list.n == 1 && list.items[0].state == KILN_IMAGE_AVAILABLE) {
			if (out)
				error = kiln_image_copy(out, &list.items[0]);
			kiln_image_list_release(&list);
			return error;
		}
		if (list.n == 1 && (list.items[0].state == KILN_IMAGE_FAILED ||
				    list.items[0].state == KILN_IMAGE_DEREGISTERED)) {
			error = kiln_error_set(KILN_ERROR, "image '%s' %s%s%s", image_id,
					       kiln_image_state_name(list.items[0].state),
					       list.items[0].state_reason[0] ? ": " : "",
					       list.items[0].state_reason);
			kiln_image_list_release(&list);
			return error;
		}
		kiln_image_list_release(&list);
		if (kiln_clock_now_ms() >= deadline)
			return kiln_error_set(KILN_ETIMEOUT, "image '%s' not available after %llu s",
					      image_id, (unsigned long long)(timeout_ms / 1000));
		if ((error = kiln_sleep_ms(KILN_MIN(kiln_backoff_next(&bo),
						    deadline - kiln_clock_now_ms()))) < 0)
			return error;
	}
}
