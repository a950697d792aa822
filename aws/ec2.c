#include <openssl/evp.h>

#include "aws/ec2.h"
#include "aws/query.h"
#include "aws/xml.h"
#include "core/clock.h"
#include "core/error.h"

/* A runaway nextToken loop ends here rather than never. */
#define MAX_PAGES 1000

/* ---- building requests ---------------------------------------------------------- */

static void add_tag_spec(kiln_query *q, unsigned spec, const char *type, const kiln_tags *tags)
{
	size_t i;
	if (!tags || !tags->n)
		return;
	kiln_query_addf(q, type, "TagSpecification.%u.ResourceType", spec);
	for (i = 0; i < tags->n; i++) {
		kiln_query_addf(q, tags->items[i].key, "TagSpecification.%u.Tag.%zu.Key", spec, i + 1);
		kiln_query_addf(q, tags->items[i].value, "TagSpecification.%u.Tag.%zu.Value", spec, i + 1);
	}
}

static void add_filter(kiln_query *q, unsigned *n, const char *name, const char *const *values,
		       size_t n_values)
{
	size_t i;
	(*n)++;
	kiln_query_addf(q, name, "Filter.%u.Name", *n);
	for (i = 0; i < n_values; i++)
		kiln_query_addf(q, values[i], "Filter.%u.Value.%zu", *n, i + 1);
}

static void add_select(kiln_query *q, const kiln_ec2_select *sel, const char *id_filter)
{
	unsigned n = 0;
	size_t i;

	if (!sel)
		return;
	if (sel->ids)
		add_filter(q, &n, id_filter, sel->ids, sel->n_ids);
	for (i = 0; sel->tags && i < sel->tags->n; i++) {
		const kiln_tag *t = &sel->tags->items[i];
		if (!strcmp(t->value, "*")) {
			const char *key = t->key;
			add_filter(q, &n, "tag-key", &key, 1);
		} else {
			char name[KILN_NAME_MAX + 8];
			const char *value = t->value;
			snprintf(name, sizeof(name), "tag:%s", t->key);
			add_filter(q, &n, name, &value, 1);
		}
	}
	for (i = 0; i < sel->n_filters; i++)
		add_filter(q, &n, sel->filters[i].name, sel->filters[i].values, sel->filters[i].n_values);
	for (i = 0; i < sel->n_owners; i++)
		kiln_query_addf(q, sel->owners[i], "Owner.%zu", i + 1);
}

static int call(kiln_aws_client *c, kiln_query *q, unsigned flags, kiln_xml **out)
{
	int error = kiln_query_call(c, KILN_AWS_EC2, q, flags, out);
	kiln_query_release(q);
	return error;
}

/* ---- reading replies ------------------------------------------------------------- */

/* Descriptive text (a state reason) may be cut; ids may not (kiln_xml_copy). */
static void copy_cut(char *out, size_t size, const kiln_xml_node *n, const char *path)
{
	char *s = kiln_xml_text(n, path);
	snprintf(out, size, "%s", s ? s : "");
	free(s);
}

static int read_tags(kiln_tags *tags, const kiln_xml_node *n)
{
	const kiln_xml_node *it;
	int error;

	for (it = kiln_xml_first(n, "tagSet", "item"); it; it = kiln_xml_next(it)) {
		char *k = kiln_xml_text(it, "key"), *v = kiln_xml_text(it, "value");
		error = k ? kiln_tags_set(tags, k, v ? v : "") : 0;
		free(k);
		free(v);
		if (error < 0)
			return error;
	}
	return 0;
}

static int64_t read_time(const kiln_xml_node *n, const char *path)
{
	char s[64];
	int64_t t = 0;
	if (kiln_xml_copy(s, sizeof(s), n, path) < 0 || !s[0] || kiln_parse_iso8601(&t, s) < 0)
		return 0;
	return t;
}

static int read_instance(kiln_instance_list *out, const kiln_xml_node *n)
{
	kiln_instance inst;
	char state[KILN_ID_MAX];
	int error;

	memset(&inst, 0, sizeof(inst));
	if ((error = kiln_xml_copy(inst.id, sizeof(inst.id), n, "instanceId")) < 0 ||
	    (error = kiln_xml_copy(inst.image_id, sizeof(inst.image_id), n, "imageId")) < 0 ||
	    (error = kiln_xml_copy(inst.instance_type, sizeof(inst.instance_type), n, "instanceType")) < 0 ||
	    (error = kiln_xml_copy(inst.subnet_id, sizeof(inst.subnet_id), n, "subnetId")) < 0 ||
	    (error = kiln_xml_copy(inst.private_ip, sizeof(inst.private_ip), n, "privateIpAddress")) < 0 ||
	    (error = kiln_xml_copy(inst.public_ip, sizeof(inst.public_ip), n, "ipAddress")) < 0 ||
	    (error = kiln_xml_copy(inst.key_name, sizeof(inst.key_name), n, "keyName")) < 0 ||
	    (error = kiln_xml_copy(state, sizeof(state), n, "instanceState/name")) < 0)
		return error;
	if (!inst.id[0])
		return 0;
	inst.state = kiln_instance_state_parse(state);
	copy_cut(inst.state_reason, sizeof(inst.state_reason), n, "stateReason/message");
	inst.launch_time = read_time(n, "launchTime");
	if ((error = read_tags(&inst.tags, n)) == 0)
		error = kiln_instance_list_add(out, &inst);
	kiln_tags_release(&inst.tags);
	return error;
}

static int read_image(kiln_image_list *out, const kiln_xml_node *n)
{
	const kiln_xml_node *bdm;
	kiln_image img;
	char state[KILN_ID_MAX];
	int error;

	memset(&img, 0, sizeof(img));
	if ((error = kiln_xml_copy(img.id, sizeof(img.id), n, "imageId")) < 0 ||
	    (error = kiln_xml_copy(img.owner, sizeof(img.owner), n, "imageOwnerId")) < 0 ||
	    (error = kiln_xml_copy(state, sizeof(state), n, "imageState")) < 0)
		return error;
	copy_cut(img.name, sizeof(img.name), n, "name");
	img.state = kiln_image_state_parse(state);
	copy_cut(img.state_reason, sizeof(img.state_reason), n, "stateReason/message");
	img.created = read_time(n, "creationDate");
	for (bdm = kiln_xml_first(n, "blockDeviceMapping", "item"); bdm; bdm = kiln_xml_next(bdm)) {
		char snap[KILN_ID_MAX];
		if ((error = kiln_xml_copy(snap, sizeof(snap), bdm, "ebs/snapshotId")) < 0)
			goto done;
		if (snap[0] && (error = kiln_strings_add(&img.snapshots, snap)) < 0)
			goto done;
		img.size_bytes += (uint64_t)KILN_MAX(kiln_xml_int(bdm, "ebs/volumeSize", 0), 0) << 30;
	}
	if ((error = read_tags(&img.tags, n)) == 0)
		error = kiln_image_list_add(out, &img);
done:
	kiln_image_release(&img);
	return error;
}

void kiln_ec2_resource_list_release(kiln_ec2_resource_list *list)
{
	size_t i;
	for (i = 0; i < list->n; i++) {
		kiln_tags_release(&list->items[i].tags);
		kiln_strings_release(&list->items[i].ingress);
	}
	free(list->items);
	list->items = NULL;
	list->n = 0;
}

/* Appends r, taking over its tags and ingress list. */
static int resource_add(kiln_ec2_resource_list *list, kiln_ec2_resource *r)
{
	kiln_ec2_resource *p = realloc(list->items, (list->n + 1) * sizeof(*p));
	if (!p) {
		kiln_tags_release(&r->tags);
		kiln_strings_release(&r->ingress);
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	}
	list->items = p;
	list->items[list->n++] = *r;
	return 0;
}

typedef enum { RES_SNAPSHOT, RES_KEYPAIR, RES_GROUP, RES_SUBNET, RES_VPC } res_kind;

static int read_ingress(kiln_ec2_resource *r, const kiln_xml_node *n)
{
	const kiln_xml_node *perm, *range;
	int error;

	for (perm = kiln_xml_first(n, "ipPermissions", "item"); perm; perm = kiln_xml_next(perm)) {
		char proto[16], rule[160];
		if ((error = kiln_xml_copy(proto, sizeof(proto), perm, "ipProtocol")) < 0)
			return error;
		for (range = kiln_xml_first(perm, "ipRanges", "item"); range; range = kiln_xml_next(range)) {
			char cidr[64];
			if ((error = kiln_xml_copy(cidr, sizeof(cidr), range, "cidrIp")) < 0)
				return error;
			snprintf(rule, sizeof(rule), "%s:%lld-%lld:%s", proto,
				 (long long)kiln_xml_int(perm, "fromPort", -1),
				 (long long)kiln_xml_int(perm, "toPort", -1), cidr);
			if ((error = kiln_strings_add(&r->ingress, rule)) < 0)
				return error;
		}
	}
	return 0;
}

static int read_resource(kiln_ec2_resource_list *out, const kiln_xml_node *n, res_kind kind)
{
	kiln_ec2_resource r;
	int error = 0;

	memset(&r, 0, sizeof(r));
	switch (kind) {
	case RES_SNAPSHOT:
		if ((error = kiln_xml_copy(r.id, sizeof(r.id), n, "snapshotId")) < 0 ||
		    (error = kiln_xml_copy(r.state, sizeof(r.state), n, "status")) < 0 ||
		    (error = kiln_xml_copy(r.owner, sizeof(r.owner), n, "ownerId")) < 0)
			break;
		r.size_gib = (uint64_t)KILN_MAX(kiln_xml_int(n, "volumeSize", 0), 0);
		r.created = read_time(n, "startTime");
		break;
	case RES_KEYPAIR:
		if ((error = kiln_xml_copy(r.id, sizeof(r.id), n, "keyPairId")) < 0 ||
		    (error = kiln_xml_copy(r.name, sizeof(r.name), n, "keyName")) < 0 ||
		    (error = kiln_xml_copy(r.fingerprint, sizeof(r.fingerprint), n, "keyFingerprint")) < 0)
			break;
		r.created = read_time(n, "createTime");
		break;
	case RES_GROUP:
		if ((error = kiln_xml_copy(r.id, sizeof(r.id), n, "groupId")) < 0 ||
		    (error = kiln_xml_copy(r.name, sizeof(r.name), n, "groupName")) < 0 ||
		    (error = kiln_xml_copy(r.vpc_id, sizeof(r.vpc_id), n, "vpcId")) < 0 ||
		    (error = kiln_xml_copy(r.owner, sizeof(r.owner), n, "ownerId")) < 0)
			break;
		error = read_ingress(&r, n);
		break;
	case RES_SUBNET:
		if ((error = kiln_xml_copy(r.id, sizeof(r.id), n, "subnetId")) < 0 ||
		    (error = kiln_xml_copy(r.vpc_id, sizeof(r.vpc_id), n, "vpcId")) < 0 ||
		    (error = kiln_xml_copy(r.cidr, sizeof(r.cidr), n, "cidrBlock")) < 0 ||
		    (error = kiln_xml_copy(r.state, sizeof(r.state), n, "state")) < 0 ||
		    (error = kiln_xml_copy(r.zone, sizeof(r.zone), n, "availabilityZone")) < 0)
			break;
		r.is_default = kiln_xml_bool(n, "defaultForAz");
		break;
	case RES_VPC:
		if ((error = kiln_xml_copy(r.id, sizeof(r.id), n, "vpcId")) < 0 ||
		    (error = kiln_xml_copy(r.cidr, sizeof(r.cidr), n, "cidrBlock")) < 0 ||
		    (error = kiln_xml_copy(r.state, sizeof(r.state), n, "state")) < 0)
			break;
		r.is_default = kiln_xml_bool(n, "isDefault");
		break;
	}
	if (error == 0)
		error = read_tags(&r.tags, n);
	if (error < 0) {
		kiln_tags_release(&r.tags);
		kiln_strings_release(&r.ingress);
		return error;
	}
	return resource_add(out, &r);
}

/*
 * Runs a Describe call page by page. build adds the selection; each page's
 * items at set/item go to read(out, item, kind).
 */
typedef int (*read_fn)(void *out, const kiln_xml_node *item, int kind);

static int describe(kiln_aws_client *c, const char *action, const kiln_ec2_select *sel,
		    const char *id_filter, const char *set, read_fn read, void *out, int kind)
{
	char *token = NULL;
	int pages, error = 0;

	for (pages = 0; pages < MAX_PAGES; pages++) {
		const kiln_xml_node *root, *it;
		kiln_query q;
		kiln_xml *x = NULL;

		kiln_query_init(&q, action, KILN_EC2_API_VERSION);
		add_select(&q, sel, id_filter);
		kiln_query_add(&q, "NextToken", token);
		free(token);
		token = NULL;
		if ((error = call(c, &q, 0, &x)) < 0)
			return error;
		root = kiln_xml_root(x);
		for (it = kiln_xml_first(root, set, "item"); it && error == 0; it = kiln_xml_next(it))
			error = read(out, it, kind);
		if (error == 0) {
			token = kiln_xml_text(root, "nextToken");
			if (token && !*token) {
				free(token);
				token = NULL;
			}
		}
		kiln_xml_free(x);
		if (error < 0 || !token)
			return error;
	}
	free(token);
	return kiln_error_set(KILN_ERROR, "ec2 %s: more than %d pages of results", action, MAX_PAGES);
}

static int read_reservation(void *out, const kiln_xml_node *res, int kind)
{
	const kiln_xml_node *it;
	int error = 0;
	(void)kind;
	for (it = kiln_xml_first(res, "instancesSet", "item"); it && error == 0; it = kiln_xml_next(it))
		error = read_instance(out, it);
	return error;
}

static int read_image_item(void *out, const kiln_xml_node *item, int kind)
{
	(void)kind;
	return read_image(out, item);
}

static int read_resource_item(void *out, const kiln_xml_node *item, int kind)
{
	return read_resource(out, item, (res_kind)kind);
}

/* ---- base64 (user data in, console output out) --------------------------------- */

static int base64_encode(char **out, const char *data, size_t len)
{
	size_t n = 4 * ((len + 2) / 3) + 1;
	char *s;
	if (len > INT32_MAX / 2)
		return kiln_error_set(KILN_ENOMEM, "%zu bytes are too many to encode", len);
	if (!(s = malloc(n)))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	EVP_EncodeBlock((unsigned char *)s, (const unsigned char *)data, (int)len);
	*out = s;
	return 0;
}

static int base64_decode(kiln_buf *out, const char *text)
{
	kiln_buf clean = KILN_BUF_INIT;
	unsigned char *bin = NULL;
	size_t i, pad = 0;
	int n, error;

	for (i = 0; text[i]; i++)
		if (text[i] != '\n' && text[i] != '\r' && text[i] != ' ' && text[i] != '\t' &&
		    (error = kiln_buf_putc(&clean, text[i])) < 0)
			goto done;
	error = kiln_error_set(KILN_ERROR, "the console output is not base64");
	if (clean.len % 4)
		goto done;
	if (clean.len && clean.ptr[clean.len - 1] == '=')
		pad++;
	if (clean.len > 1 && clean.ptr[clean.len - 2] == '=')
		pad++;
	if (!(bin = malloc(clean.len / 4 * 3 + 1))) {
		error = kiln_error_set(KILN_ENOMEM, "out of memory");
		goto done;
	}
	if ((n = EVP_DecodeBlock(bin, (const unsigned char *)clean.ptr, (int)clean.len)) < 0)
		goto done;
	kiln_error_clear();
	error = kiln_buf_put(out, bin, (size_t)n - pad);
done:
	free(bin);
	kiln_buf_release(&clean);
	return error;
}

/* ---- instances -------------------------------------------------------------------- */

int kiln_ec2_run_instances(kiln_aws_client *c, const kiln_launch *spec, kiln_instance_list *out)
{
	return kiln_ec2_run_instances_ex(c, spec, NULL, out);
}

/* prefix.field = value, for the nested members of a list element. */
static void add_field(kiln_query *q, const char *prefix, const char *field, const char *value)
{
	char name[96];
	if (!value)
		return;
	snprintf(name, sizeof(name), "%s.%s", prefix, field);
	kiln_query_add(q, name, value);
}

static void add_field_int(kiln_query *q, const char *prefix, const char *field, int64_t value)
{
	char v[32];
	snprintf(v, sizeof(v), "%lld", (long long)value);
	add_field(q, prefix, field, v);
}

static void add_launch_extra(kiln_query *q, const kiln_ec2_launch_extra *x)
{
	size_t i;

	if (!x)
		return;
	kiln_query_add(q, "MetadataOptions.HttpTokens", x->http_tokens);
	if (x->http_hop_limit)
		kiln_query_add_int(q, "MetadataOptions.HttpPutResponseHopLimit", x->http_hop_limit);
	kiln_query_add(q, "MetadataOptions.HttpEndpoint", x->http_endpoint);
	for (i = 0; i < x->n_devices; i++) {
		const kiln_ec2_block_device *d = &x->devices[i];
		char p[48], e[64];
		snprintf(p, sizeof(p), "BlockDeviceMapping.%zu", i + 1);
		snprintf(e, sizeof(e), "%s.Ebs", p);
		add_field(q, p, "DeviceName", d->device_name);
		if (d->size_gb)
			add_field_int(q, e, "VolumeSize", d->size_gb);
		add_field(q, e, "VolumeType", d->type);
		if (d->iops)
			add_field_int(q, e, "Iops", d->iops);
		if (d->throughput)
			add_field_int(q, e, "Throughput", d->throughput);
		if (d->encrypted) {
			add_field(q, e, "Encrypted", "true");
			add_field(q, e, "KmsKeyId", d->kms_key_id);
		}
		if (d->delete_on_termination)
			add_field(q, e, "DeleteOnTermination", "true");
	}
}

int kiln_ec2_run_instances_ex(kiln_aws_client *c, const kiln_launch *spec,
			      const kiln_ec2_launch_extra *extra, kiln_instance_list *out)
{
	const kiln_xml_node *it;
	kiln_xml *x = NULL;
	kiln_query q;
	char *user_data = NULL;
	int error;

	kiln_query_init(&q, "RunInstances", KILN_EC2_API_VERSION);
	kiln_query_add(&q, "ImageId", spec->image_id);
	kiln_query_add(&q, "InstanceType", spec->instance_type);
	kiln_query_add_int(&q, "MinCount", spec->count ? spec->count : 1);
	kiln_query_add_int(&q, "MaxCount", spec->count ? spec->count : 1);
	kiln_query_add(&q, "SubnetId", spec->subnet_id);
	kiln_query_add_list(&q, "SecurityGroupId", NULL, spec->security_group_ids, spec->n_security_groups);
	kiln_query_add(&q, "KeyName", spec->key_name);
	if (spec->iam_instance_profile)
		kiln_query_add(&q, !strncmp(spec->iam_instance_profile, "arn:", 4) ? "IamInstanceProfile.Arn"
										    : "IamInstanceProfile.Name",
			       spec->iam_instance_profile);
	if (spec->user_data) {
		if ((error = base64_encode(&user_data, spec->user_data, strlen(spec->user_data))) < 0) {
			kiln_query_release(&q);
			return error;
		}
		kiln_query_add(&q, "UserData", user_data);
		free(user_data);
	}
	kiln_query_add(&q, "ClientToken", spec->client_token);
	add_launch_extra(&q, extra);
	add_tag_spec(&q, 1, "instance", spec->tags);
	if ((error = call(c, &q, 0, &x)) < 0)
		return error;
	for (it = kiln_xml_first(kiln_xml_root(x), "instancesSet", "item"); it && error == 0;
	     it = kiln_xml_next(it))
		error = read_instance(out, it);
	kiln_xml_free(x);
	return error;
}

int kiln_ec2_describe_instances(kiln_aws_client *c, const kiln_ec2_select *sel,
				kiln_instance_list *out)
{
	return describe(c, "DescribeInstances", sel, "instance-id", "reservationSet", read_reservation,
			out, 0);
}

static int instances_action(kiln_aws_client *c, const char *action, const char *const *ids, size_t n)
{
	kiln_xml *x = NULL;
	kiln_query q;
	int error;

	if (!n)
		return 0;
	kiln_query_init(&q, action, KILN_EC2_API_VERSION);
	kiln_query_add_list(&q, "InstanceId", NULL, ids, n);
	error = call(c, &q, 0, &x);
	kiln_xml_free(x);
	return error;
}

int kiln_ec2_stop_instances(kiln_aws_client *c, const char *const *ids, size_t n)
{
	return instances_action(c, "StopInstances", ids, n);
}

int kiln_ec2_terminate_instances(kiln_aws_client *c, const char *const *ids, size_t n)
{
	return instances_action(c, "TerminateInstances", ids, n);
}

int kiln_ec2_get_console_output(kiln_aws_client *c, const char *id, kiln_buf *out)
{
	kiln_xml *x = NULL;
	kiln_query q;
	char *text;
	int error;

	kiln_query_init(&q, "GetConsoleOutput", KILN_EC2_API_VERSION);
	kiln_query_add(&q, "InstanceId", id);
	if ((error = call(c, &q, 0, &x)) < 0)
		return error;
	text = kiln_xml_text(kiln_xml_root(x), "output");
	if (text)
		error = base64_decode(out, text);
	free(text);
	kiln_xml_free(x);
	return error;
}

/* ---- images and snapshots ----------------------------------------------------------- */

int kiln_ec2_describe_images(kiln_aws_client *c, const kiln_ec2_select *sel, kiln_image_list *out)
{
	return describe(c, "DescribeImages", sel, "image-id", "imagesSet", read_image_item, out, 0);
}

int kiln_ec2_create_image(kiln_aws_client *c, const char *instance_id, const char *name,
			  const char *description, const kiln_tags *tags, char out_id[KILN_ID_MAX])
{
	kiln_xml *x = NULL;
	kiln_query q;
	int error;

	kiln_query_init(&q, "CreateImage", KILN_EC2_API_VERSION);
	kiln_query_add(&q, "InstanceId", instance_id);
	kiln_query_add(&q, "Name", name);
	kiln_query_add(&q, "Description", description);
	/*
	 * Tags go on the image only: moto fails the whole call (HTTP 500) when
	 * TagSpecifications also name ResourceType=snapshot, so the caller tags
	 * the snapshots afterwards with CreateTags.
	 */
	add_tag_spec(&q, 1, "image", tags);
	if ((error = call(c, &q, KILN_AWS_NOT_IDEMPOTENT, &x)) < 0)
		return error;
	error = kiln_xml_copy(out_id, KILN_ID_MAX, kiln_xml_root(x), "imageId");
	if (error == 0 && !out_id[0])
		error = kiln_error_set(KILN_ERROR, "ec2 CreateImage: the reply has no imageId");
	kiln_xml_free(x);
	return error;
}

static int simple(kiln_aws_client *c, const char *action, const char *name, const char *value)
{
	kiln_xml *x = NULL;
	kiln_query q;
	int error;

	kiln_query_init(&q, action, KILN_EC2_API_VERSION);
	kiln_query_add(&q, name, value);
	error = call(c, &q, 0, &x);
	kiln_xml_free(x);
	return error;
}

int kiln_ec2_deregister_image(kiln_aws_client *c, const char *image_id)
{
	return simple(c, "DeregisterImage", "ImageId", image_id);
}

void kiln_ec2_image_devices_release(kiln_ec2_image_devices *d)
{
	free(d->items);
	memset(d, 0, sizeof(*d));
}

int kiln_ec2_describe_image_devices(kiln_aws_client *c, const char *image_id,
				    kiln_ec2_image_devices *out)
{
	const kiln_xml_node *img, *bdm;
	kiln_xml *x = NULL;
	kiln_query q;
	int error;

	memset(out, 0, sizeof(*out));
	kiln_query_init(&q, "DescribeImages", KILN_EC2_API_VERSION);
	kiln_query_add(&q, "ImageId.1", image_id);
	if ((error = call(c, &q, 0, &x)) < 0)
		return error;
	for (img = kiln_xml_first(kiln_xml_root(x), "imagesSet", "item"); img; img = kiln_xml_next(img)) {
		char id[KILN_ID_MAX];
		if ((error = kiln_xml_copy(id, sizeof(id), img, "imageId")) < 0)
			goto done;
		if (!strcmp(id, image_id))
			break;
	}
	if (!img) {
		error = kiln_error_set(KILN_ENOTFOUND, "no image '%s'", image_id);
		goto done;
	}
	if ((error = kiln_xml_copy(out->root_device_name, sizeof(out->root_device_name), img,
				   "rootDeviceName")) < 0)
		goto done;
	for (bdm = kiln_xml_first(img, "blockDeviceMapping", "item"); bdm; bdm = kiln_xml_next(bdm)) {
		kiln_ec2_device d, *p;
		memset(&d, 0, sizeof(d));
		if ((error = kiln_xml_copy(d.name, sizeof(d.name), bdm, "deviceName")) < 0 ||
		    (error = kiln_xml_copy(d.snapshot_id, sizeof(d.snapshot_id), bdm, "ebs/snapshotId")) < 0)
			goto done;
		d.ebs = kiln_xml_child(bdm, "ebs") != NULL;
		if (!d.name[0])
			continue;
		if (!(p = realloc(out->items, (out->n + 1) * sizeof(*p)))) {
			error = kiln_error_set(KILN_ENOMEM, "out of memory");
			goto done;
		}
		out->items = p;
		out->items[out->n++] = d;
	}
	error = 0;
done:
	kiln_xml_free(x);
	if (error < 0)
		kiln_ec2_image_devices_release(out);
	return error;
}

int kiln_ec2_copy_image(kiln_aws_client *c, const kiln_image_copy_spec *spec, char out_id[KILN_ID_MAX])
{
	kiln_xml *x = NULL;
	kiln_query q;
	int error;

	kiln_query_init(&q, "CopyImage", KILN_EC2_API_VERSION);
	kiln_query_add(&q, "SourceImageId", spec->source_id);
	kiln_query_add(&q, "SourceRegion", spec->source_region);
	kiln_query_add(&q, "Name", spec->name);
	kiln_query_add(&q, "Description", spec->description);
	if (spec->encrypted) {
		kiln_query_add_bool(&q, "Encrypted", true);
		kiln_query_add(&q, "KmsKeyId", spec->kms_key_id);
	}
	kiln_query_add(&q, "ClientToken", spec->client_token);
	add_tag_spec(&q, 1, "image", spec->tags);
	add_tag_spec(&q, 2, "snapshot", spec->tags);
	/* with a ClientToken a repeat returns the first copy: retries are safe */
	if ((error = call(c, &q, 0, &x)) < 0)
		return error;
	error = kiln_xml_copy(out_id, KILN_ID_MAX, kiln_xml_root(x), "imageId");
	if (error == 0 && !out_id[0])
		error = kiln_error_set(KILN_ERROR, "ec2 CopyImage: the reply has no imageId");
	kiln_xml_free(x);
	return error;
}

int kiln_ec2_set_image_imds_support(kiln_aws_client *c, const char *image_id, const char *value)
{
	kiln_xml *x = NULL;
	kiln_query q;
	int error;

	kiln_query_init(&q, "ModifyImageAttribute", KILN_EC2_API_VERSION);
	kiln_query_add(&q, "ImageId", image_id);
	kiln_query_add(&q, "ImdsSupport.Value", value);
	error = call(c, &q, 0, &x);
	kiln_xml_free(x);
	return error;
}

/* PREFIX.Add.N.UserId / PREFIX.Add.N.Group, numbered on across both lists. */
static void add_permissions(kiln_query *q, const char *prefix, const char *const *users, size_t n_users,
			    const char *const *groups, size_t n_groups)
{
	size_t i, n = 0;
	for (i = 0; i < n_users; i++)
		kiln_query_addf(q, users[i], "%s.Add.%zu.UserId", prefix, ++n);
	for (i = 0; i < n_groups; i++)
		kiln_query_addf(q, groups[i], "%s.Add.%zu.Group", prefix, ++n);
}

int kiln_ec2_add_launch_permission(kiln_aws_client *c, const char *image_id,
				   const char *const *users, size_t n_users,
				   const char *const *groups, size_t n_groups)
{
	kiln_xml *x = NULL;
	kiln_query q;
	int error;

	if (!n_users && !n_groups)
		return 0;
	kiln_query_init(&q, "ModifyImageAttribute", KILN_EC2_API_VERSION);
	kiln_query_add(&q, "ImageId", image_id);
	add_permissions(&q, "LaunchPermission", users, n_users, groups, n_groups);
	error = call(c, &q, 0, &x);
	kiln_xml_free(x);
	return error;
}

int kiln_ec2_add_create_volume_permission(kiln_aws_client *c, const char *snapshot_id,
					  const char *const *users, size_t n_users,
					  const char *const *groups, size_t n_groups)
{
	kiln_xml *x = NULL;
	kiln_query q;
	int error;

	if (!n_users && !n_groups)
		return 0;
	kiln_query_init(&q, "ModifySnapshotAttribute", KILN_EC2_API_VERSION);
	kiln_query_add(&q, "SnapshotId", snapshot_id);
	kiln_query_add(&q, "Attribute", "createVolumePermission");
	add_permissions(&q, "CreateVolumePermission", users, n_users, groups, n_groups);
	error = call(c, &q, 0, &x);
	kiln_xml_free(x);
	return error;
}

int kiln_ec2_enable_image_deprecation(kiln_aws_client *c, const char *image_id, int64_t at)
{
	kiln_xml *x = NULL;
	kiln_query q;
	char when[21];
	int error;

	kiln_format_iso8601(when, at);
	kiln_query_init(&q, "EnableImageDeprecation", KILN_EC2_API_VERSION);
	kiln_query_add(&q, "ImageId", image_id);
	kiln_query_add(&q, "DeprecateAt", when);
	error = call(c, &q, 0, &x);
	kiln_xml_free(x);
	return error;
}

int kiln_ec2_describe_snapshots(kiln_aws_client *c, const kiln_ec2_select *sel,
				kiln_ec2_resource_list *out)
{
	return describe(c, "DescribeSnapshots", sel, "snapshot-id", "snapshotSet", read_resource_item,
			out, RES_SNAPSHOT);
}

int kiln_ec2_delete_snapshot(kiln_aws_client *c, const char *snapshot_id)
{
	return simple(c, "DeleteSnapshot", "SnapshotId", snapshot_id);
}

int kiln_ec2_create_tags(kiln_aws_client *c, const char *const *ids, size_t n, const kiln_tags *tags)
{
	kiln_xml *x = NULL;
	kiln_query q;
	size_t i;
	int error;

	if (!n || !tags || !tags->n)
		return 0;
	kiln_query_init(&q, "CreateTags", KILN_EC2_API_VERSION);
	kiln_query_add_list(&q, "ResourceId", NULL, ids, n);
	for (i = 0; i < tags->n; i++) {
		kiln_query_addf(&q, tags->items[i].key, "Tag.%zu.Key", i + 1);
		kiln_query_addf(&q, tags->items[i].value, "Tag.%zu.Value", i + 1);
	}
	error = call(c, &q, 0, &x);
	kiln_xml_free(x);
	return error;
}

/* ---- key pairs ------------------------------------------------------------------------- */

int kiln_ec2_import_key_pair(kiln_aws_client *c, const char *name, const char *public_key,
			     const kiln_tags *tags, kiln_ec2_resource *out)
{
	kiln_xml *x = NULL;
	kiln_query q;
	char *material = NULL;
	int error;

	if ((error = base64_encode(&material, public_key, strlen(public_key))) < 0)
		return error;
	kiln_query_init(&q, "ImportKeyPair", KILN_EC2_API_VERSION);
	kiln_query_add(&q, "KeyName", name);
	kiln_query_add(&q, "PublicKeyMaterial", material);
	free(material);
	add_tag_spec(&q, 1, "key-pair", tags);
	if ((error = call(c, &q, 0, &x)) < 0)
		return error;
	if (out) {
		const kiln_xml_node *root = kiln_xml_root(x);
		memset(out, 0, sizeof(*out));
		if ((error = kiln_xml_copy(out->id, sizeof(out->id), root, "keyPairId")) == 0 &&
		    (error = kiln_xml_copy(out->name, sizeof(out->name), root, "keyName")) == 0 &&
		    (error = kiln_xml_copy(out->fingerprint, sizeof(out->fingerprint), root, "keyFingerprint")) == 0)
			error = read_tags(&out->tags, root);
	}
	kiln_xml_free(x);
	return error;
}

int kiln_ec2_describe_key_pairs(kiln_aws_client *c, const kiln_ec2_select *sel,
				kiln_ec2_resource_list *out)
{
	return describe(c, "DescribeKeyPairs", sel, "key-name", "keySet", read_resource_item, out,
			RES_KEYPAIR);
}

int kiln_ec2_delete_key_pair(kiln_aws_client *c, const char *name)
{
	return simple(c, "DeleteKeyPair", "KeyName", name);
}

/* ---- security groups -------------------------------------------------------------------- */

int kiln_ec2_create_security_group(kiln_aws_client *c, const char *name, const char *description,
				   const char *vpc_id, const kiln_tags *tags, char out_id[KILN_ID_MAX])
{
	kiln_xml *x = NULL;
	kiln_query q;
	int error;

	kiln_query_init(&q, "CreateSecurityGroup", KILN_EC2_API_VERSION);
	kiln_query_add(&q, "GroupName", name);
	kiln_query_add(&q, "GroupDescription", description && *description ? description : name);
	kiln_query_add(&q, "VpcId", vpc_id);
	add_tag_spec(&q, 1, "security-group", tags);
	if ((error = call(c, &q, 0, &x)) < 0)
		return error;
	error = kiln_xml_copy(out_id, KILN_ID_MAX, kiln_xml_root(x), "groupId");
	if (error == 0 && !out_id[0])
		error = kiln_error_set(KILN_ERROR, "ec2 CreateSecurityGroup: the reply has no groupId");
	kiln_xml_free(x);
	return error;
}

int kiln_ec2_authorize_ingress(kiln_aws_client *c, const char *group_id, int port,
			       const char *const *cidrs, size_t n, const char *description)
{
	kiln_xml *x = NULL;
	kiln_query q;
	size_t i;
	int error;

	kiln_query_init(&q, "AuthorizeSecurityGroupIngress", KILN_EC2_API_VERSION);
	kiln_query_add(&q, "GroupId", group_id);
	kiln_query_add(&q, "IpPermissions.1.IpProtocol", "tcp");
	kiln_query_add_int(&q, "IpPermissions.1.FromPort", port);
	kiln_query_add_int(&q, "IpPermissions.1.ToPort", port);
	for (i = 0; i < n; i++) {
		kiln_query_addf(&q, cidrs[i], "IpPermissions.1.IpRanges.%zu.CidrIp", i + 1);
		kiln_query_addf(&q, description, "IpPermissions.1.IpRanges.%zu.Description", i + 1);
	}
	error = call(c, &q, 0, &x);
	kiln_xml_free(x);
	return error;
}

int kiln_ec2_describe_security_groups(kiln_aws_client *c, const kiln_ec2_select *sel,
				      kiln_ec2_resource_list *out)
{
	return describe(c, "DescribeSecurityGroups", sel, "group-id", "securityGroupInfo",
			read_resource_item, out, RES_GROUP);
}

int kiln_ec2_delete_security_group(kiln_aws_client *c, const char *group_id)
{
	return simple(c, "DeleteSecurityGroup", "GroupId", group_id);
}

/* ---- networks ------------------------------------------------------------------------------- */

int kiln_ec2_describe_subnets(kiln_aws_client *c, const kiln_ec2_select *sel,
			      kiln_ec2_resource_list *out)
{
	return describe(c, "DescribeSubnets", sel, "subnet-id", "subnetSet", read_resource_item, out,
			RES_SUBNET);
}

int kiln_ec2_describe_vpcs(kiln_aws_client *c, const kiln_ec2_select *sel,
			   kiln_ec2_resource_list *out)
{
	return describe(c, "DescribeVpcs", sel, "vpc-id", "vpcSet", read_resource_item, out, RES_VPC);
}
