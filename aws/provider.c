#include <arpa/inet.h>
#include <sys/random.h>

#include "aws/config.h"
#include "aws/ec2.h"
#include "aws/elb.h"
#include "aws/elbv2.h"
#include "aws/provider.h"
#include "aws/ssm.h"
#include "aws/sts.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/registry.h"

/*
 * Classic ELB has no draining state to ask for: an instance leaves the
 * load balancer's list at once and ELB drains its connections in the
 * background for the ConnectionDraining timeout. The provider remembers
 * when it deregistered each instance and reports it draining until then,
 * as cloud.h promises (health says draining, then unused).
 */
struct drain {
	char lb[KILN_NAME_MAX];
	char id[KILN_ID_MAX];
	uint64_t until_ms;
};

struct lb_timeout {
	char lb[KILN_NAME_MAX];
	int drain_s;
};

/* An image's block devices, learnt once per image for launches that change them. */
struct devices {
	char image_id[KILN_ID_MAX];
	kiln_ec2_image_devices d;
};

typedef struct aws_cloud {
	kiln_cloud base; /* first: cloud.h's contract */
	kiln_aws_config cfg;
	kiln_aws_client *client;
	kiln_aws_client_options opts; /* for region_open: the same transport */
	struct devices *devices;
	size_t n_devices;
	struct drain *drains;
	size_t n_drains;
	struct lb_timeout *timeouts;
	size_t n_timeouts;
} aws_cloud;

static aws_cloud *AWS(kiln_cloud *c)
{
	return (aws_cloud *)c;
}

static const char *cloud_code(void)
{
	return kiln_error_last()->cloud_code;
}

/* ---- identity ------------------------------------------------------------------- */

static int aws_whoami(kiln_cloud *c, kiln_identity *out)
{
	aws_cloud *a = AWS(c);
	kiln_identity id;
	int error;

	memset(&id, 0, sizeof(id));
	if ((error = kiln_sts_get_caller_identity(a->client, &id)) < 0)
		return error;
	snprintf(id.region, sizeof(id.region), "%s", a->cfg.region);
	snprintf(id.endpoint, sizeof(id.endpoint), "%s", kiln_aws_client_endpoint(a->client, KILN_AWS_EC2));
	/* after the call: an instance profile's role is known once its keys were fetched */
	kiln_aws_client_credential_source(a->client, id.credential_source, sizeof(id.credential_source));
	*out = id;
	return 0;
}

/* ---- instances --------------------------------------------------------------------- */

static const char *const live_states[] = { "pending", "running", "stopping", "stopped" };
static const kiln_ec2_filter live_filter = { "instance-state-name", live_states,
					     KILN_ARRAY_SIZE(live_states) };

/* The image's devices, from the cache or DescribeImages (borrowed: lives as long as a). */
static int image_devices(aws_cloud *a, const char *image_id, const kiln_ec2_image_devices **out)
{
	struct devices *p;
	size_t i;
	int error;

	for (i = 0; i < a->n_devices; i++)
		if (!strcmp(a->devices[i].image_id, image_id)) {
			*out = &a->devices[i].d;
			return 0;
		}
	if (!(p = realloc(a->devices, (a->n_devices + 1) * sizeof(*p))))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	a->devices = p;
	p = &a->devices[a->n_devices];
	memset(p, 0, sizeof(*p));
	if ((error = kiln_ec2_describe_image_devices(a->client, image_id, &p->d)) < 0)
		return error;
	if (!p->d.root_device_name[0]) {
		kiln_ec2_image_devices_release(&p->d);
		return kiln_error_set(KILN_EINVALID, "image '%s' names no root device", image_id);
	}
	snprintf(p->image_id, sizeof(p->image_id), "%s", image_id);
	*out = &a->devices[a->n_devices++].d;
	return 0;
}

/* A member of the options that must be a string from a set, an integer, or an object. */
static int opt_string(const json_t *obj, const char *key, const char *const *allowed, const char **out)
{
	json_t *v = json_object_get(obj, key);
	size_t i;
	if (!v)
		return 0;
	for (i = 0; json_is_string(v) && allowed[i]; i++)
		if (!strcmp(json_string_value(v), allowed[i])) {
			*out = allowed[i];
			return 0;
		}
	return kiln_error_set(KILN_EINVALID, "bad launch option '%s'", key);
}

static int opt_int(const json_t *obj, const char *key, int64_t min, int64_t max, int64_t *out)
{
	json_t *v = json_object_get(obj, key);
	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
		return kiln_error_set(KILN_EINVALID, "bad launch option '%s'", key);
	*out = json_integer_value(v);
	return 0;
}

static int opt_object(const json_t *obj, const char *key, json_t **out)
{
	json_t *v = json_object_get(obj, key);
	*out = NULL;
	if (v && !json_is_object(v))
		return kiln_error_set(KILN_EINVALID, "bad launch option '%s': not an object", key);
	*out = v;
	return 0;
}

/*
 * kiln_launch.options (core/instance_options.h's form, checked there; the
 * checks here only keep garbage from reaching EC2) into RunInstances'
 * MetadataOptions and BlockDeviceMappings. devs holds one slot for every
 * device of the image plus one; *x points into it.
 */
static int launch_extra(aws_cloud *a, const kiln_launch *spec, kiln_ec2_launch_extra *x,
			kiln_ec2_block_device **devs)
{
	static const char *const tokens[] = { "required", "optional", NULL };
	static const char *const endpoints[] = { "enabled", "disabled", NULL };
	static const char *const types[] = { "gp3", "gp2", "io1", "io2", "st1", "sc1", "standard", NULL };
	const kiln_ec2_image_devices *img = NULL;
	json_t *md = NULL, *rv = NULL, *enc = NULL;
	kiln_ec2_block_device root;
	const char *kms = NULL;
	size_t i, n = 0;
	bool root_seen = false;
	int error;

	memset(x, 0, sizeof(*x));
	memset(&root, 0, sizeof(root));
	*devs = NULL;
	if (!spec->options)
		return 0;
	if (!json_is_object(spec->options))
		return kiln_error_set(KILN_EINVALID, "launch options must be an object");
	if ((error = opt_object(spec->options, "metadata_options", &md)) < 0 ||
	    (error = opt_object(spec->options, "root_volume", &rv)) < 0 ||
	    (error = opt_object(spec->options, "encrypt_volumes", &enc)) < 0)
		return error;
	if (md && ((error = opt_string(md, "http_tokens", tokens, &x->http_tokens)) < 0 ||
		   (error = opt_int(md, "http_put_response_hop_limit", 1, 64, &x->http_hop_limit)) < 0 ||
		   (error = opt_string(md, "http_endpoint", endpoints, &x->http_endpoint)) < 0))
		return error;
	if (rv && ((error = opt_int(rv, "size_gb", 1, 65536, &root.size_gb)) < 0 ||
		   (error = opt_string(rv, "type", types, &root.type)) < 0 ||
		   (error = opt_int(rv, "iops", 1, INT32_MAX, &root.iops)) < 0 ||
		   (error = opt_int(rv, "throughput", 1, INT32_MAX, &root.throughput)) < 0))
		return error;
	if (enc) {
		json_t *k = json_object_get(enc, "kms_key_id");
		if (k && (!json_is_string(k) || !*json_string_value(k)))
			return kiln_error_set(KILN_EINVALID, "bad launch option 'kms_key_id'");
		kms = json_string_value(k);
	}
	if (!rv && !enc)
		return 0;
	/* a mapping names its device: the image's, which only the image can say */
	if ((error = image_devices(a, spec->image_id, &img)) < 0)
		return kiln_error_prefix("cannot read the block devices of '%s'", spec->image_id);
	if (!(*devs = calloc(img->n + 1, sizeof(**devs))))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	for (i = 0; i <= img->n; i++) {
		const kiln_ec2_device *dev = i < img->n ? &img->items[i] : NULL;
		bool is_root = !dev || !strcmp(dev->name, img->root_device_name);
		kiln_ec2_block_device d;

		if (!dev && root_seen)
			break; /* the last slot is for an image whose root is not among its mappings */
		if (is_root)
			root_seen = true;
		if (dev && !dev->ebs) {
			/* instance stores hold nothing to encrypt, and cannot be resized */
			if (is_root && rv) {
				free(*devs);
				*devs = NULL;
				return kiln_error_set(KILN_EINVALID,
						      "the root device of image '%s' is not an EBS volume",
						      spec->image_id);
			}
			continue;
		}
		if (!is_root && !enc)
			continue;
		memset(&d, 0, sizeof(d));
		if (is_root) {
			d = root;
			/* kiln's instances are disposable: their volumes go with them */
			d.delete_on_termination = true;
		}
		d.device_name = dev ? dev->name : img->root_device_name;
		if (enc) {
			d.encrypted = true;
			d.kms_key_id = kms;
		}
		(*devs)[n++] = d;
	}
	x->devices = *devs;
	x->n_devices = n;
	return 0;
}

static int aws_instances_launch(kiln_cloud *c, const kiln_launch *spec, kiln_instance_list *out)
{
	kiln_instance_list list = { 0 };
	kiln_ec2_launch_extra extra;
	kiln_ec2_block_device *devs = NULL;
	kiln_launch s = *spec;
	char token[40];
	int error;

	if (!s.client_token || !*s.client_token) {
		/* a token of our own still makes the client's retries idempotent */
		uint64_t r[2] = { 0, 0 };
		if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
			r[0] = (uint64_t)kiln_clock_wall_ms();
		snprintf(token, sizeof(token), "kiln-%016llx%016llx", (unsigned long long)r[0],
			 (unsigned long long)r[1]);
		s.client_token = token;
	}
	if ((error = launch_extra(AWS(c), spec, &extra, &devs)) < 0 ||
	    (error = kiln_ec2_run_instances_ex(AWS(c)->client, &s, &extra, &list)) < 0) {
		free(devs);
		kiln_instance_list_release(&list);
		return kiln_error_prefix("cannot launch from '%s'", spec->image_id ? spec->image_id : "");
	}
	free(devs);
	*out = list;
	return 0;
}

static int aws_instances_describe(kiln_cloud *c, const kiln_instance_query *q, kiln_instance_list *out)
{
	kiln_instance_list list = { 0 };
	kiln_ec2_select sel = { 0 };
	int error;

	if (q && q->ids && !q->n_ids) {
		memset(out, 0, sizeof(*out));
		return 0;
	}
	if (q) {
		sel.ids = q->ids;
		sel.n_ids = q->n_ids;
		sel.tags = q->tags;
		if (!q->include_terminated) {
			sel.filters = &live_filter;
			sel.n_filters = 1;
		}
	} else {
		sel.filters = &live_filter;
		sel.n_filters = 1;
	}
	if ((error = kiln_ec2_describe_instances(AWS(c)->client, &sel, &list)) < 0) {
		kiln_instance_list_release(&list);
		return error;
	}
	*out = list;
	return 0;
}

static int aws_instances_stop(kiln_cloud *c, const char *const *ids, size_t n)
{
	return kiln_ec2_stop_instances(AWS(c)->client, ids, n);
}

static int aws_instances_terminate(kiln_cloud *c, const char *const *ids, size_t n)
{
	kiln_instance_list live = { 0 };
	kiln_instance_query q = { .ids = ids, .n_ids = n, .include_terminated = true };
	const char **left = NULL;
	size_t i, n_left = 0;
	int error;

	error = kiln_ec2_terminate_instances(AWS(c)->client, ids, n);
	if (error != KILN_ENOTFOUND)
		return error;
	/* some are gone already (deletes of absent things succeed): terminate the rest */
	if ((error = aws_instances_describe(c, &q, &live)) < 0)
		return error;
	if (live.n && !(left = calloc(live.n, sizeof(*left)))) {
		kiln_instance_list_release(&live);
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	}
	for (i = 0; i < live.n; i++)
		if (live.items[i].state != KILN_INSTANCE_TERMINATED)
			left[n_left++] = live.items[i].id;
	error = n_left ? kiln_ec2_terminate_instances(AWS(c)->client, left, n_left) : 0;
	if (error == KILN_ENOTFOUND)
		error = 0; /* went between the two calls */
	free(left);
	kiln_instance_list_release(&live);
	return error;
}

static int aws_console_output(kiln_cloud *c, const char *id, kiln_buf *out)
{
	return kiln_ec2_get_console_output(AWS(c)->client, id, out);
}

/* ---- images -------------------------------------------------------------------------- */

static int aws_images_describe(kiln_cloud *c, const kiln_image_query *q, kiln_image_list *out)
{
	kiln_image_list list = { 0 };
	kiln_ec2_select sel = { 0 };
	kiln_ec2_filter name = { "name", NULL, 1 };
	int error;

	if (q->ids && !q->n_ids) {
		memset(out, 0, sizeof(*out));
		return 0;
	}
	sel.ids = q->ids;
	sel.n_ids = q->n_ids;
	sel.tags = q->tags;
	sel.owners = q->owners;
	sel.n_owners = q->n_owners;
	if (q->name) {
		name.values = &q->name;
		sel.filters = &name;
		sel.n_filters = 1;
	}
	if ((error = kiln_ec2_describe_images(AWS(c)->client, &sel, &list)) < 0) {
		kiln_image_list_release(&list);
		return error;
	}
	*out = list;
	return 0;
}

/* The image of this name owned by us, if it carries every tag of want (NULL: any). */
static int find_own_image(aws_cloud *a, const char *name, const kiln_tags *want, char out_id[KILN_ID_MAX],
			  bool *tags_match)
{
	static const char *const self[] = { "self" };
	kiln_image_query q = { .name = name, .owners = self, .n_owners = 1 };
	kiln_image_list list = { 0 };
	size_t i;
	int error;

	out_id[0] = '\0';
	*tags_match = false;
	if ((error = aws_images_describe(&a->base, &q, &list)) < 0)
		return error;
	for (i = 0; i < list.n; i++) {
		if (strcmp(list.items[i].name, name) || list.items[i].state == KILN_IMAGE_DEREGISTERED)
			continue;
		snprintf(out_id, KILN_ID_MAX, "%s", list.items[i].id);
		*tags_match = kiln_tags_match(&list.items[i].tags, want);
		if (*tags_match)
			break;
	}
	kiln_image_list_release(&list);
	return 0;
}

static int aws_image_create(kiln_cloud *c, const char *instance_id, const char *name,
			    const char *description, const kiln_tags *tags, char out_id[KILN_ID_MAX])
{
	aws_cloud *a = AWS(c);
	kiln_backoff bo;
	char found[KILN_ID_MAX];
	bool ours;
	int error, tries;

	kiln_backoff_init(&bo, 1000, 8000);
	for (tries = 0;; tries++) {
		kiln_error saved;

		error = kiln_ec2_create_image(a->client, instance_id, name, description, tags, out_id);
		if (error == 0)
			return 0;
		if (error == KILN_ECONFLICT && !strcmp(cloud_code(), "InvalidAMIName.Duplicate")) {
			/* ours if it carries our tags: an earlier attempt of this very call */
			kiln_error_save(&saved);
			if (tags && tags->n && find_own_image(a, name, tags, found, &ours) == 0 && ours) {
				snprintf(out_id, KILN_ID_MAX, "%s", found);
				return 0;
			}
			kiln_error_restore(&saved);
			return kiln_error_prefix("cannot create image '%s': an image of that name exists", name);
		}
		if (error != KILN_ETRANSIENT && error != KILN_ETIMEOUT)
			return kiln_error_prefix("cannot create image '%s' from '%s'", name, instance_id);
		/* EC2 may have made it before the reply was lost: look before trying again */
		kiln_error_save(&saved);
		if (find_own_image(a, name, tags, found, &ours) == 0 && found[0] && ours) {
			snprintf(out_id, KILN_ID_MAX, "%s", found);
			return 0;
		}
		kiln_error_restore(&saved);
		if (tries >= 4)
			return kiln_error_prefix("cannot create image '%s' from '%s'", name, instance_id);
		kiln_emit(c->events, "info", KILN_LEVEL_DEBUG, NULL,
			  "create image '%s': %s; trying again", name, kiln_error_last()->message);
		if ((error = kiln_sleep_ms(kiln_backoff_next(&bo))) < 0)
			return error;
	}
}

/* Deletes a snapshot, waiting while EC2 still counts it in use by the image just deregistered. */
static int delete_snapshot(aws_cloud *a, const char *id)
{
	uint64_t deadline = kiln_clock_now_ms() + 120000;
	kiln_backoff bo;
	int error;

	kiln_backoff_init(&bo, 1000, 10000);
	for (;;) {
		error = kiln_ec2_delete_snapshot(a->client, id);
		if (error == 0 || error == KILN_ENOTFOUND)
			return 0;
		if (strcmp(cloud_code(), "InvalidSnapshot.InUse") || kiln_clock_now_ms() >= deadline)
			return kiln_error_prefix("cannot delete snapshot '%s'", id);
		if ((error = kiln_sleep_ms(kiln_backoff_next(&bo))) < 0)
			return error;
	}
}

static int aws_image_delete(kiln_cloud *c, const char *image_id)
{
	aws_cloud *a = AWS(c);
	const char *ids[1] = { image_id };
	kiln_image_query q = { .ids = ids, .n_ids = 1 };
	kiln_image_list list = { 0 };
	kiln_strings snaps = { 0 };
	size_t i;
	int error;

	if ((error = aws_images_describe(c, &q, &list)) < 0)
		return kiln_error_prefix("cannot delete image '%s'", image_id);
	for (i = 0; i < list.n; i++) {
		size_t j;
		if (strcmp(list.items[i].id, image_id))
			continue;
		for (j = 0; j < list.items[i].snapshots.n; j++)
			if ((error = kiln_strings_add(&snaps, list.items[i].snapshots.items[j])) < 0)
				goto done;
	}
	if (list.n) {
		error = kiln_ec2_deregister_image(a->client, image_id);
		if (error == KILN_ENOTFOUND)
			error = 0;
		if (error < 0) {
			kiln_error_prefix("cannot deregister image '%s'", image_id);
			goto done;
		}
	}
	for (i = 0; i < snaps.n; i++)
		if ((error = delete_snapshot(a, snaps.items[i])) < 0)
			goto done;
	error = 0;
done:
	kiln_strings_release(&snaps);
	kiln_image_list_release(&list);
	return error;
}

static int aws_tags_create(kiln_cloud *c, const char *const *ids, size_t n, const kiln_tags *tags)
{
	return kiln_ec2_create_tags(AWS(c)->client, ids, n, tags);
}

static int aws_image_copy(kiln_cloud *c, const kiln_image_copy_spec *spec, char out_id[KILN_ID_MAX])
{
	aws_cloud *a = AWS(c);
	int error;

	if ((error = kiln_ec2_copy_image(a->client, spec, out_id)) < 0)
		return kiln_error_prefix("cannot copy image '%s' from %s to %s", spec->source_id,
					 spec->source_region, a->cfg.region);
	/*
	 * The copy's own tags again: not every EC2 (moto, for one) applies
	 * CopyImage's TagSpecifications, and the registry finds images by tag.
	 */
	if (spec->tags && spec->tags->n) {
		const char *ids[1] = { out_id };
		if ((error = kiln_ec2_create_tags(a->client, ids, 1, spec->tags)) < 0)
			return kiln_error_prefix("cannot tag image '%s' in %s", out_id, a->cfg.region);
	}
	return 0;
}

static int aws_image_configure(kiln_cloud *c, const char *image_id, const kiln_image_settings *s)
{
	aws_cloud *a = AWS(c);
	const char *ids[1] = { image_id };
	kiln_image_query q = { .ids = ids, .n_ids = 1 };
	kiln_image_list list = { 0 };
	size_t i, j;
	int error = 0;

	/* one attribute a call: ModifyImageAttribute takes no more */
	if (s->imds_support &&
	    (error = kiln_ec2_set_image_imds_support(a->client, image_id, s->imds_support)) < 0)
		return kiln_error_prefix("cannot require IMDSv2 of image '%s'", image_id);
	if ((error = kiln_ec2_add_launch_permission(a->client, image_id, s->launch_users,
						    s->n_launch_users, s->launch_groups,
						    s->n_launch_groups)) < 0)
		return kiln_error_prefix("cannot share image '%s'", image_id);
	if (s->n_snapshot_users || s->n_snapshot_groups) {
		if ((error = aws_images_describe(c, &q, &list)) < 0)
			return kiln_error_prefix("cannot share the snapshots of image '%s'", image_id);
		for (i = 0; i < list.n && error == 0; i++) {
			if (strcmp(list.items[i].id, image_id))
				continue;
			for (j = 0; j < list.items[i].snapshots.n && error == 0; j++)
				if ((error = kiln_ec2_add_create_volume_permission(
					     a->client, list.items[i].snapshots.items[j], s->snapshot_users,
					     s->n_snapshot_users, s->snapshot_groups, s->n_snapshot_groups)) < 0)
					kiln_error_prefix("cannot share snapshot '%s' of image '%s'",
							  list.items[i].snapshots.items[j], image_id);
		}
		kiln_image_list_release(&list);
		if (error < 0)
			return error;
	}
	if (s->deprecate_at &&
	    (error = kiln_ec2_enable_image_deprecation(a->client, image_id, s->deprecate_at)) < 0)
		return kiln_error_prefix("cannot set the deprecation time of image '%s'", image_id);
	return 0;
}

/* ---- load balancers ----------------------------------------------------------------------- */

static int lb_drain_timeout(aws_cloud *a, const kiln_lb *lb, int *out_s)
{
	struct lb_timeout *p;
	size_t i;
	int error, s = 0;

	for (i = 0; i < a->n_timeouts; i++)
		if (!strcmp(a->timeouts[i].lb, lb->ref)) {
			*out_s = a->timeouts[i].drain_s;
			return 0;
		}
	if (lb->kind == KILN_LB_CLASSIC)
		error = kiln_elb_connection_draining(a->client, lb->ref, &s);
	else
		error = kiln_elbv2_deregistration_delay(a->client, lb->ref, &s);
	if (error < 0)
		return error;
	if (s < 0)
		s = 300; /* ELBv2's documented default */
	if (!(p = realloc(a->timeouts, (a->n_timeouts + 1) * sizeof(*p))))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	a->timeouts = p;
	snprintf(p[a->n_timeouts].lb, sizeof(p->lb), "%s", lb->ref);
	p[a->n_timeouts++].drain_s = s;
	*out_s = s;
	return 0;
}

static int check_kind(const kiln_lb *lb)
{
	if (lb->kind == KILN_LB_TARGET_GROUP || lb->kind == KILN_LB_CLASSIC)
		return 0;
	return kiln_error_set(KILN_EUNSUPPORTED, "the aws provider has no local balancers ('%s')",
			      lb->ref ? lb->ref : "");
}

static int aws_lb_open(kiln_cloud *c, const kiln_lb *lb, kiln_lb_info *out)
{
	aws_cloud *a = AWS(c);
	kiln_lb_info info;
	int error;

	if ((error = check_kind(lb)) < 0)
		return error;
	memset(&info, 0, sizeof(info));
	if (lb->kind == KILN_LB_TARGET_GROUP) {
		kiln_elbv2_target_group tg;
		if ((error = kiln_elbv2_describe_target_group(a->client, lb->ref, &tg)) < 0)
			return kiln_error_prefix("cannot open target group");
		snprintf(info.name, sizeof(info.name), "%s", tg.name);
		info.health_interval_s = tg.health_interval_s;
	} else {
		kiln_elb_load_balancer elb;
		if ((error = kiln_elb_describe_load_balancer(a->client, lb->ref, &elb)) < 0)
			return kiln_error_prefix("cannot open load balancer");
		snprintf(info.name, sizeof(info.name), "%s", elb.name);
		info.health_interval_s = elb.health_interval_s;
		kiln_elb_load_balancer_release(&elb);
	}
	/* lb_open is where the timeout is read afresh: forget a cached one */
	for (size_t i = 0; i < a->n_timeouts; i++)
		if (!strcmp(a->timeouts[i].lb, lb->ref))
			a->timeouts[i] = a->timeouts[--a->n_timeouts];
	if ((error = lb_drain_timeout(a, lb, &info.drain_timeout_s)) < 0)
		return kiln_error_prefix("cannot read the drain timeout of '%s'", info.name);
	*out = info;
	return 0;
}

static void drain_forget(aws_cloud *a, const char *lb, const char *id)
{
	size_t i;
	for (i = 0; i < a->n_drains;) {
		if (!strcmp(a->drains[i].lb, lb) && !strcmp(a->drains[i].id, id))
			a->drains[i] = a->drains[--a->n_drains];
		else
			i++;
	}
}

static int drain_note(aws_cloud *a, const char *lb, const char *id, uint64_t until_ms)
{
	struct drain *p;
	drain_forget(a, lb, id);
	if (!(p = realloc(a->drains, (a->n_drains + 1) * sizeof(*p))))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	a->drains = p;
	snprintf(p[a->n_drains].lb, sizeof(p->lb), "%s", lb);
	snprintf(p[a->n_drains].id, sizeof(p->id), "%s", id);
	p[a->n_drains++].until_ms = until_ms;
	return 0;
}

static int aws_lb_register(kiln_cloud *c, const kiln_lb *lb, const char *const *ids, size_t n)
{
	aws_cloud *a = AWS(c);
	size_t i;
	int error;

	if ((error = check_kind(lb)) < 0)
		return error;
	if (lb->kind == KILN_LB_TARGET_GROUP)
		error = kiln_elbv2_register_targets(a->client, lb->ref, ids, n);
	else
		error = kiln_elb_register_instances(a->client, lb->ref, ids, n);
	if (error < 0)
		return kiln_error_prefix("cannot register with '%s'", lb->ref);
	for (i = 0; i < n; i++)
		drain_forget(a, lb->ref, ids[i]);
	return 0;
}

/* The codes that say "this target is not (or no longer) there". */
static bool absent_target(void)
{
	const char *code = cloud_code();
	return !strcmp(code, "InvalidTarget") || !strcmp(code, "InvalidInstance") ||
	       !strcmp(code, "InvalidEndPoint");
}

static int lb_deregister_some(aws_cloud *a, const kiln_lb *lb, const char *const *ids, size_t n)
{
	if (lb->kind == KILN_LB_TARGET_GROUP)
		return kiln_elbv2_deregister_targets(a->client, lb->ref, ids, n);
	return kiln_elb_deregister_instances(a->client, lb->ref, ids, n);
}

static int aws_lb_deregister(kiln_cloud *c, const kiln_lb *lb, const char *const *ids, size_t n)
{
	aws_cloud *a = AWS(c);
	uint64_t until;
	size_t i;
	int error, drain_s = 0;

	if ((error = check_kind(lb)) < 0)
		return error;
	if (lb->kind == KILN_LB_CLASSIC && (error = lb_drain_timeout(a, lb, &drain_s)) < 0)
		return kiln_error_prefix("cannot deregister from '%s'", lb->ref);
	error = lb_deregister_some(a, lb, ids, n);
	if (error < 0 && absent_target()) {
		/* one gone target fails the whole call: do them one by one, skipping the gone */
		for (i = 0, error = 0; i < n && error == 0; i++) {
			error = lb_deregister_some(a, lb, &ids[i], 1);
			if (error < 0 && absent_target())
				error = 0;
		}
	}
	if (error < 0)
		return kiln_error_prefix("cannot deregister from '%s'", lb->ref);
	until = kiln_clock_now_ms() + (uint64_t)drain_s * 1000;
	for (i = 0; lb->kind == KILN_LB_CLASSIC && i < n; i++)
		if ((error = drain_note(a, lb->ref, ids[i], until)) < 0)
			return error;
	return 0;
}

static int lb_health_some(aws_cloud *a, const kiln_lb *lb, const char *const *ids, size_t n,
			  kiln_target_list *out)
{
	if (lb->kind == KILN_LB_TARGET_GROUP)
		return kiln_elbv2_describe_target_health(a->client, lb->ref, ids, n, out);
	return kiln_elb_describe_instance_health(a->client, lb->ref, ids, n, out);
}

static int aws_lb_health(kiln_cloud *c, const kiln_lb *lb, const char *const *ids, size_t n,
			 kiln_target_list *out)
{
	aws_cloud *a = AWS(c);
	kiln_target_list list = { 0 };
	uint64_t now = kiln_clock_now_ms();
	size_t i, j;
	int error;

	if ((error = check_kind(lb)) < 0)
		return error;
	if (ids && !n) {
		memset(out, 0, sizeof(*out));
		return 0;
	}
	error = lb_health_some(a, lb, ids, n, &list);
	if (error < 0 && ids && absent_target()) {
		/* a terminated instance fails the whole call: ask one by one */
		kiln_target_list_release(&list);
		for (i = 0, error = 0; i < n && error == 0; i++) {
			error = lb_health_some(a, lb, &ids[i], 1, &list);
			if (error < 0 && absent_target()) {
				kiln_target t;
				memset(&t, 0, sizeof(t));
				snprintf(t.instance_id, sizeof(t.instance_id), "%s", ids[i]);
				t.health = KILN_HEALTH_UNUSED;
				snprintf(t.reason, sizeof(t.reason), "%s", cloud_code());
				error = kiln_target_list_add(&list, &t);
			}
		}
	}
	if (error < 0) {
		kiln_target_list_release(&list);
		return kiln_error_prefix("cannot read target health of '%s'", lb->ref);
	}
	/* classic ELB: an instance we deregistered drains until its timeout */
	for (i = 0; lb->kind == KILN_LB_CLASSIC && i < list.n; i++) {
		kiln_target *t = &list.items[i];
		for (j = 0; j < a->n_drains; j++) {
			const struct drain *d = &a->drains[j];
			if (strcmp(d->lb, lb->ref) || strcmp(d->id, t->instance_id))
				continue;
			if (now < d->until_ms && t->health == KILN_HEALTH_UNUSED) {
				t->health = KILN_HEALTH_DRAINING;
				snprintf(t->reason, sizeof(t->reason), "connection draining, %llu s left",
					 (unsigned long long)((d->until_ms - now + 999) / 1000));
			}
		}
	}
	*out = list;
	return 0;
}

/* ---- key pairs and security groups --------------------------------------------------------- */

/*
 * Is a resource found under our name ours? It is when it carries the
 * caller's kiln:build-id, or, for callers without one, all of their tags.
 */
static bool is_ours(const kiln_tags *have, const kiln_tags *want)
{
	const char *build = kiln_tags_get(want, KILN_TAG_BUILD_ID);
	const char *theirs = kiln_tags_get(have, KILN_TAG_BUILD_ID);
	if (build)
		return theirs && !strcmp(build, theirs);
	return want && want->n && kiln_tags_match(have, want);
}

static int aws_keypair_import(kiln_cloud *c, const char *name, const char *public_key,
			      const kiln_tags *tags)
{
	aws_cloud *a = AWS(c);
	kiln_ec2_resource created;
	kiln_ec2_resource_list found = { 0 };
	kiln_ec2_select sel = { 0 };
	const char *names[1] = { name };
	kiln_error saved;
	size_t i;
	int error;

	memset(&created, 0, sizeof(created));
	error = kiln_ec2_import_key_pair(a->client, name, public_key, tags, &created);
	kiln_tags_release(&created.tags);
	if (error == 0)
		return 0;
	if (error != KILN_ECONFLICT)
		return kiln_error_prefix("cannot import key pair '%s'", name);
	/* a retry of our own whose first reply was lost, or someone else's key pair? */
	kiln_error_save(&saved);
	sel.ids = names;
	sel.n_ids = 1;
	if ((error = kiln_ec2_describe_key_pairs(a->client, &sel, &found)) < 0) {
		kiln_ec2_resource_list_release(&found);
		return kiln_error_prefix("cannot import key pair '%s'", name);
	}
	for (i = 0; i < found.n; i++)
		if (!strcmp(found.items[i].name, name) && is_ours(&found.items[i].tags, tags))
			break;
	error = i < found.n ? 0 : KILN_ECONFLICT;
	kiln_ec2_resource_list_release(&found);
	if (error == 0) {
		kiln_error_clear();
		return 0;
	}
	kiln_error_restore(&saved);
	return kiln_error_prefix("cannot import key pair '%s': one of that name exists and is not this build's",
				 name);
}

static int aws_keypair_delete(kiln_cloud *c, const char *name)
{
	int error = kiln_ec2_delete_key_pair(AWS(c)->client, name);
	if (error == KILN_ENOTFOUND)
		return 0;
	return error < 0 ? kiln_error_prefix("cannot delete key pair '%s'", name) : 0;
}

/* The VPC a firewall goes in: the subnet's, else the default VPC. */
static int firewall_vpc(aws_cloud *a, const char *subnet_id, char out[KILN_ID_MAX])
{
	kiln_ec2_resource_list list = { 0 };
	kiln_ec2_select sel = { 0 };
	int error;

	if (subnet_id) {
		sel.ids = &subnet_id;
		sel.n_ids = 1;
		error = kiln_ec2_describe_subnets(a->client, &sel, &list);
		if (error == 0 && !list.n)
			error = kiln_error_set(KILN_ENOTFOUND, "no subnet '%s'", subnet_id);
	} else {
		static const char *const yes[] = { "true" };
		kiln_ec2_filter f = { "is-default", yes, 1 };
		sel.filters = &f;
		sel.n_filters = 1;
		error = kiln_ec2_describe_vpcs(a->client, &sel, &list);
		if (error == 0 && !list.n)
			error = kiln_error_set(KILN_ENOTFOUND,
					       "no default VPC in '%s': give the template a subnet_id",
					       a->cfg.region);
	}
	if (error == 0)
		snprintf(out, KILN_ID_MAX, "%s", subnet_id ? list.items[0].vpc_id : list.items[0].id);
	kiln_ec2_resource_list_release(&list);
	return error;
}

static int aws_firewall_create(kiln_cloud *c, const kiln_firewall *spec, char out_id[KILN_ID_MAX])
{
	aws_cloud *a = AWS(c);
	kiln_ec2_resource_list found = { 0 };
	const char **missing = NULL;
	char vpc[KILN_ID_MAX], id[KILN_ID_MAX] = "";
	const kiln_ec2_resource *mine = NULL;
	size_t i, n_missing = 0;
	int error;

	if ((error = firewall_vpc(a, spec->subnet_id, vpc)) < 0)
		return kiln_error_prefix("cannot create security group '%s'", spec->name);
	error = kiln_ec2_create_security_group(a->client, spec->name, spec->description, vpc, spec->tags, id);
	if (error == KILN_ECONFLICT) {
		/* ours (a retry whose reply was lost, or a resumed build) if it carries our tags */
		const char *const names[] = { spec->name };
		const char *const vpcs[] = { vpc };
		kiln_ec2_filter f[] = { { "group-name", names, 1 }, { "vpc-id", vpcs, 1 } };
		kiln_ec2_select sel = { .filters = f, .n_filters = 2 };
		kiln_error saved;

		kiln_error_save(&saved);
		if ((error = kiln_ec2_describe_security_groups(a->client, &sel, &found)) < 0)
			goto fail;
		for (i = 0; i < found.n && !mine; i++)
			if (!strcmp(found.items[i].name, spec->name) && is_ours(&found.items[i].tags, spec->tags))
				mine = &found.items[i];
		if (!mine) {
			kiln_error_restore(&saved);
			error = kiln_error_prefix("cannot create security group '%s': one of that name exists in '%s' and is not this build's",
						  spec->name, vpc);
			goto done;
		}
		snprintf(id, sizeof(id), "%s", mine->id);
		kiln_error_clear();
	} else if (error < 0) {
		goto fail;
	}
	/* admit the port from exactly the CIDRs asked for, skipping rules already there */
	if (spec->n_cidrs && !(missing = calloc(spec->n_cidrs, sizeof(*missing)))) {
		error = kiln_error_set(KILN_ENOMEM, "out of memory");
		goto done;
	}
	for (i = 0; i < spec->n_cidrs; i++) {
		char rule[160];
		snprintf(rule, sizeof(rule), "tcp:%d-%d:%s", spec->port, spec->port, spec->cidrs[i]);
		if (!mine || !kiln_strings_has(&mine->ingress, rule))
			missing[n_missing++] = spec->cidrs[i];
	}
	if (n_missing) {
		error = kiln_ec2_authorize_ingress(a->client, id, spec->port, missing, n_missing, "kiln");
		/* a retry of an authorisation that went through */
		if (error == KILN_ECONFLICT && !strcmp(cloud_code(), "InvalidPermission.Duplicate"))
			error = 0;
		if (error < 0) {
			kiln_error_prefix("cannot open port %d of security group '%s'", spec->port, id);
			goto done;
		}
	}
	snprintf(out_id, KILN_ID_MAX, "%s", id);
	error = 0;
	goto done;
fail:
	kiln_error_prefix("cannot create security group '%s'", spec->name);
done:
	free(missing);
	kiln_ec2_resource_list_release(&found);
	return error;
}

static int aws_firewall_delete(kiln_cloud *c, const char *id, uint64_t timeout_ms)
{
	aws_cloud *a = AWS(c);
	uint64_t start = kiln_clock_now_ms();
	kiln_backoff bo;
	int error;

	kiln_backoff_init(&bo, 1000, 10000);
	for (;;) {
		uint64_t now, wait;
		error = kiln_ec2_delete_security_group(a->client, id);
		if (error == 0 || error == KILN_ENOTFOUND)
			return 0;
		if (strcmp(cloud_code(), "DependencyViolation") && strcmp(cloud_code(), "InvalidGroup.InUse"))
			return kiln_error_prefix("cannot delete security group '%s'", id);
		now = kiln_clock_now_ms();
		if (now - start >= timeout_ms) {
			kiln_error last; /* the setter clears what it would copy from */
			kiln_error_save(&last);
			return kiln_error_set_cloud(KILN_ETIMEOUT, last.http_status, last.cloud_code,
						    last.request_id,
						    "security group '%s' is still in use after %llu s", id,
						    (unsigned long long)((now - start) / 1000));
		}
		wait = kiln_backoff_next(&bo); /* not inside KILN_MIN: it would advance twice */
		wait = KILN_MIN(wait, timeout_ms - (now - start));
		if ((error = kiln_sleep_ms(wait)) < 0)
			return error;
	}
}

/* ---- cleanup: anything carrying the tags ------------------------------------------------------- */

static int add_resource(kiln_resource_list *out, kiln_resource_kind kind, const char *id,
			const char *state, const kiln_tags *tags)
{
	kiln_resource r;
	memset(&r, 0, sizeof(r));
	r.kind = kind;
	snprintf(r.id, sizeof(r.id), "%s", id);
	snprintf(r.state, sizeof(r.state), "%s", state ? state : "");
	r.tags = *tags; /* copied by kiln_resource_list_add */
	return kiln_resource_list_add(out, &r);
}

static int aws_resources_find(kiln_cloud *c, const kiln_tags *match, kiln_resource_list *out)
{
	static const char *const self[] = { "self" };
	aws_cloud *a = AWS(c);
	kiln_resource_list list = { 0 };
	kiln_instance_list insts = { 0 };
	kiln_image_list imgs = { 0 };
	kiln_ec2_resource_list keys = { 0 }, groups = { 0 }, snaps = { 0 };
	kiln_ec2_select sel = { .tags = match };
	kiln_ec2_select owned = { .tags = match, .owners = self, .n_owners = 1 };
	kiln_ec2_select live = { .tags = match, .filters = &live_filter, .n_filters = 1 };
	size_t i;
	int error;

	if ((error = kiln_ec2_describe_instances(a->client, &live, &insts)) < 0 ||
	    (error = kiln_ec2_describe_key_pairs(a->client, &sel, &keys)) < 0 ||
	    (error = kiln_ec2_describe_security_groups(a->client, &sel, &groups)) < 0 ||
	    (error = kiln_ec2_describe_images(a->client, &owned, &imgs)) < 0 ||
	    (error = kiln_ec2_describe_snapshots(a->client, &owned, &snaps)) < 0)
		goto done;
	for (i = 0; i < insts.n && error == 0; i++)
		error = add_resource(&list, KILN_RES_INSTANCE, insts.items[i].id,
				     kiln_instance_state_name(insts.items[i].state), &insts.items[i].tags);
	for (i = 0; i < keys.n && error == 0; i++)
		error = add_resource(&list, KILN_RES_KEYPAIR, keys.items[i].name, NULL, &keys.items[i].tags);
	for (i = 0; i < groups.n && error == 0; i++)
		error = add_resource(&list, KILN_RES_FIREWALL, groups.items[i].id, NULL, &groups.items[i].tags);
	for (i = 0; i < imgs.n && error == 0; i++)
		error = add_resource(&list, KILN_RES_IMAGE, imgs.items[i].id,
				     kiln_image_state_name(imgs.items[i].state), &imgs.items[i].tags);
	for (i = 0; i < snaps.n && error == 0; i++)
		error = add_resource(&list, KILN_RES_SNAPSHOT, snaps.items[i].id, snaps.items[i].state,
				     &snaps.items[i].tags);
	if (error == 0) {
		*out = list;
		memset(&list, 0, sizeof(list));
	}
done:
	kiln_resource_list_release(&list);
	kiln_instance_list_release(&insts);
	kiln_image_list_release(&imgs);
	kiln_ec2_resource_list_release(&keys);
	kiln_ec2_resource_list_release(&groups);
	kiln_ec2_resource_list_release(&snaps);
	return error < 0 ? kiln_error_prefix("cannot list what kiln tagged") : 0;
}

/* ---- records ------------------------------------------------------------------------------------ */

/* AccessDenied on SSM deserves to say why kiln needs it at all. */
static int record_error(const char *what, const char *name)
{
	const kiln_error *e = kiln_error_last();
	if (e->code == KILN_EAUTH && (!strcmp(e->cloud_code, "AccessDeniedException") ||
				      !strcmp(e->cloud_code, "AccessDenied")))
		return kiln_error_prefix("cannot %s record '%s': kiln keeps version reservations and "
					 "rollout locks in SSM Parameter Store, which these credentials may not use",
					 what, name);
	return kiln_error_prefix("cannot %s record '%s'", what, name);
}

static int aws_record_create(kiln_cloud *c, const char *name, const char *value)
{
	aws_cloud *a = AWS(c);
	kiln_record have = { 0 };
	kiln_error saved;
	int error;

	error = kiln_ssm_put_parameter(a->client, name, value, false, NULL);
	if (error == 0)
		return 0;
	if (error != KILN_ECONFLICT)
		return record_error("create", name);
	/* the same value is our own create whose reply was lost; anything else is someone else's */
	kiln_error_save(&saved);
	if (kiln_ssm_get_parameter(a->client, name, &have) == 0 && !strcmp(have.value, value)) {
		kiln_record_release(&have);
		kiln_error_clear();
		return 0;
	}
	kiln_record_release(&have);
	kiln_error_restore(&saved);
	return kiln_error_set_cloud(KILN_ECONFLICT, saved.http_status, saved.cloud_code, saved.request_id,
				    "record '%s' exists already", name);
}

static int aws_record_get(kiln_cloud *c, const char *name, kiln_record *out)
{
	int error = kiln_ssm_get_parameter(AWS(c)->client, name, out);
	if (error == KILN_ENOTFOUND) {
		kiln_error last;
		kiln_error_save(&last);
		return kiln_error_set_cloud(KILN_ENOTFOUND, last.http_status, last.cloud_code,
					    last.request_id, "no record '%s'", name);
	}
	return error < 0 ? record_error("read", name) : 0;
}

static int aws_record_put(kiln_cloud *c, const char *name, const char *value)
{
	int error = kiln_ssm_put_parameter(AWS(c)->client, name, value, true, NULL);
	return error < 0 ? record_error("write", name) : 0;
}

static int aws_record_delete(kiln_cloud *c, const char *name)
{
	int error = kiln_ssm_delete_parameter(AWS(c)->client, name);
	if (error == KILN_ENOTFOUND)
		return 0;
	return error < 0 ? record_error("delete", name) : 0;
}

static int aws_record_list(kiln_cloud *c, const char *prefix, kiln_strings *out)
{
	kiln_strings names = { 0 };
	char path[KILN_NAME_MAX * 2];
	size_t len;
	int error;

	/* SSM paths have no trailing slash ("/kiln/fleets"), except the root */
	snprintf(path, sizeof(path), "%s", prefix);
	len = strlen(path);
	while (len > 1 && path[len - 1] == '/')
		path[--len] = '\0';
	if ((error = kiln_ssm_get_parameters_by_path(AWS(c)->client, path, true, &names)) < 0) {
		kiln_strings_release(&names);
		return record_error("list", prefix);
	}
	*out = names;
	return 0;
}

/* ---- caller_cidr -------------------------------------------------------------------------------- */

static bool host_is_loopback(const char *url)
{
	const char *h = strstr(url, "://");
	char host[256];
	struct in_addr a4;

	if (!h)
		return false;
	h += 3;
	if (*h == '[')
		return !strncmp(h, "[::1]", 5);
	snprintf(host, sizeof(host), "%.*s", (int)strcspn(h, ":/"), h);
	if (!strcmp(host, "localhost"))
		return true;
	return inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

static int aws_caller_cidr(kiln_cloud *c, const char *subnet_id, kiln_buf *out)
{
	aws_cloud *a = AWS(c);
	kiln_buf body;
	struct in_addr addr;
	int error;

	(void)subnet_id;
	/* an emulator on loopback (moto): its instances are reached from here, over loopback */
	if (host_is_loopback(kiln_aws_client_endpoint(a->client, KILN_AWS_EC2)))
		return kiln_buf_puts(out, "127.0.0.1/32");
	/* AWS's own echo service, as Packer uses for its temporary security groups */
	if ((error = kiln_aws_get(a->client, "https://checkip.amazonaws.com/", 5000, &body)) < 0) {
		kiln_error why; /* the setter clears what it would quote */
		kiln_buf_release(&body);
		kiln_error_save(&why);
		return kiln_error_set(KILN_ENOTFOUND, "cannot tell this machine's public address: %s",
				      why.message);
	}
	kiln_buf_rtrim(&body);
	if (body.len > 15 || inet_pton(AF_INET, body.ptr, &addr) != 1) {
		kiln_buf_release(&body);
		return kiln_error_set(KILN_ENOTFOUND,
				      "cannot tell this machine's public address: checkip.amazonaws.com answered no IPv4 address");
	}
	error = kiln_buf_printf(out, "%s/32", body.ptr);
	kiln_buf_release(&body);
	return error;
}

/* ---- the provider --------------------------------------------------------------------------------- */

static void aws_free(kiln_cloud *c)
{
	aws_cloud *a = AWS(c);
	size_t i;
	for (i = 0; i < a->n_devices; i++)
		kiln_ec2_image_devices_release(&a->devices[i].d);
	free(a->devices);
	kiln_aws_client_free(a->client);
	kiln_aws_config_release(&a->cfg);
	free(a->drains);
	free(a->timeouts);
	free(a);
}

static int aws_region_open(kiln_cloud *c, const char *region, kiln_cloud **out);

static const kiln_cloud_ops aws_ops = {
	.name = "aws",
	.whoami = aws_whoami,
	.instances_launch = aws_instances_launch,
	.instances_describe = aws_instances_describe,
	.instances_stop = aws_instances_stop,
	.instances_terminate = aws_instances_terminate,
	.console_output = aws_console_output,
	.images_describe = aws_images_describe,
	.image_create = aws_image_create,
	.image_delete = aws_image_delete,
	.tags_create = aws_tags_create,
	.lb_open = aws_lb_open,
	.lb_register = aws_lb_register,
	.lb_deregister = aws_lb_deregister,
	.lb_health = aws_lb_health,
	.keypair_import = aws_keypair_import,
	.keypair_delete = aws_keypair_delete,
	.firewall_create = aws_firewall_create,
	.firewall_delete = aws_firewall_delete,
	.resources_find = aws_resources_find,
	.record_create = aws_record_create,
	.record_get = aws_record_get,
	.record_put = aws_record_put,
	.record_delete = aws_record_delete,
	.record_list = aws_record_list,
	.caller_cidr = aws_caller_cidr,
	.region_open = aws_region_open,
	.image_copy = aws_image_copy,
	.image_configure = aws_image_configure,
	.free = aws_free,
};

int kiln_aws_cloud_new_ex(kiln_cloud **out, const char *region, const kiln_events *events,
			  const kiln_aws_client_options *opts)
{
	kiln_aws_client_options o = KILN_AWS_CLIENT_OPTIONS_INIT;
	kiln_aws_load_options lo = KILN_AWS_LOAD_OPTIONS_INIT;
	aws_cloud *a;
	int error;

	*out = NULL;
	if (!(a = calloc(1, sizeof(*a))))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	/* STS (roles) and IMDS go through the same transport as everything else */
	lo.transport = opts ? opts->transport : NULL;
	lo.events = events;
	if ((error = kiln_aws_config_load_ex(&a->cfg, region, &lo)) < 0) {
		free(a);
		return error;
	}
	if (opts)
		o = *opts;
	o.events = events;
	a->opts = o;
	if ((error = kiln_aws_client_new(&a->client, &a->cfg, &o)) < 0) {
		kiln_aws_config_release(&a->cfg);
		free(a);
		return error;
	}
	a->base.ops = &aws_ops;
	a->base.events = events;
	snprintf(a->base.region, sizeof(a->base.region), "%s", a->cfg.region);
	*out = &a->base;
	return 0;
}

/* The configuration is resolved afresh for the region: its endpoints may differ, its credentials not. */
static int aws_region_open(kiln_cloud *c, const char *region, kiln_cloud **out)
{
	aws_cloud *a = AWS(c);
	int error = kiln_aws_cloud_new_ex(out, region, c->events, &a->opts);
	return error < 0 ? kiln_error_prefix("region '%s'", region) : 0;
}

int kiln_aws_cloud_new(kiln_cloud **out, const char *region, const kiln_events *events)
{
	return kiln_aws_cloud_new_ex(out, region, events, NULL);
}

kiln_aws_client *kiln_aws_cloud_client(kiln_cloud *c)
{
	if (!c || c->ops != &aws_ops)
		return NULL;
	return AWS(c)->client;
}
