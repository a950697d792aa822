/*
 * fuzz_aws_reply: every reply parser of aws/: the EC2, ELBv2, classic ELB
 * and STS XML replies (aws/xml.c under ec2.c, elbv2.c, elb.c, sts.c) and
 * SSM's JSON ones (ssm.c), each reached through the typed call that reads
 * it, as the provider makes it, over the real client (tests/fuzz/fuzz_aws.h).
 *
 * Input: the first byte picks the call (its value modulo the number of
 * calls below, in that order); the rest is the body of an HTTP 200 reply.
 * The corpus holds moto's real replies (tests/data/aws/) behind the byte
 * of the call that reads them.
 *
 * Checked beyond "no crash, no leak": a call either succeeds with every
 * string of its result NUL-terminated inside its field (ids are never cut:
 * a reply too long for a field is an error), states parsed into their
 * enums' range, lists consistent with their counts; or fails with one
 * error line that names no secret (fuzz_check_error).
 */
#include "aws/ec2.h"
#include "aws/elb.h"
#include "aws/elbv2.h"
#include "aws/ssm.h"
#include "aws/sts.h"
#include "tests/fuzz/fuzz_aws.h"

static void check_tags(const kiln_tags *t)
{
	size_t i;
	FUZZ_CHECK(t->n == 0 || t->items);
	for (i = 0; i < t->n; i++)
		FUZZ_CHECK(t->items[i].key && t->items[i].value);
}

static void check_strings(const kiln_strings *s)
{
	size_t i;
	FUZZ_CHECK(s->n == 0 || s->items);
	for (i = 0; i < s->n; i++)
		FUZZ_CHECK(s->items[i] != NULL);
}

static void check_instances(const kiln_instance_list *l)
{
	size_t i;
	for (i = 0; i < l->n; i++) {
		const kiln_instance *x = &l->items[i];
		FUZZ_CHECK_CSTR(x->id);
		FUZZ_CHECK(x->id[0]); /* items without an id are skipped */
		FUZZ_CHECK_CSTR(x->image_id);
		FUZZ_CHECK_CSTR(x->instance_type);
		FUZZ_CHECK_CSTR(x->subnet_id);
		FUZZ_CHECK_CSTR(x->private_ip);
		FUZZ_CHECK_CSTR(x->public_ip);
		FUZZ_CHECK_CSTR(x->key_name);
		FUZZ_CHECK_CSTR(x->state_reason);
		FUZZ_CHECK(x->state >= KILN_INSTANCE_UNKNOWN && x->state <= KILN_INSTANCE_TERMINATED);
		check_tags(&x->tags);
	}
}

static void check_images(const kiln_image_list *l)
{
	size_t i;
	for (i = 0; i < l->n; i++) {
		const kiln_image *x = &l->items[i];
		FUZZ_CHECK_CSTR(x->id);
		FUZZ_CHECK_CSTR(x->name);
		FUZZ_CHECK_CSTR(x->owner);
		FUZZ_CHECK_CSTR(x->state_reason);
		FUZZ_CHECK(x->state >= KILN_IMAGE_UNKNOWN && x->state <= KILN_IMAGE_DEREGISTERED);
		check_strings(&x->snapshots);
		check_tags(&x->tags);
	}
}

static void check_resources(const kiln_ec2_resource_list *l)
{
	size_t i;
	for (i = 0; i < l->n; i++) {
		const kiln_ec2_resource *x = &l->items[i];
		FUZZ_CHECK_CSTR(x->id);
		FUZZ_CHECK_CSTR(x->name);
		FUZZ_CHECK_CSTR(x->vpc_id);
		FUZZ_CHECK_CSTR(x->cidr);
		FUZZ_CHECK_CSTR(x->state);
		FUZZ_CHECK_CSTR(x->zone);
		FUZZ_CHECK_CSTR(x->fingerprint);
		FUZZ_CHECK_CSTR(x->owner);
		check_strings(&x->ingress);
		check_tags(&x->tags);
	}
}

static void check_targets(const kiln_target_list *l)
{
	size_t i;
	for (i = 0; i < l->n; i++) {
		FUZZ_CHECK_CSTR(l->items[i].instance_id);
		FUZZ_CHECK_CSTR(l->items[i].reason);
		FUZZ_CHECK(l->items[i].health >= KILN_HEALTH_UNKNOWN &&
			   l->items[i].health <= KILN_HEALTH_UNAVAILABLE);
	}
}

/* ---- the calls ---- */

static const char *const some_ids[] = { "i-0123456789abcdef0", "i-0fedcba9876543210" };
static const kiln_ec2_select by_tag = { 0 };

static int describe_instances(kiln_aws_client *c)
{
	kiln_instance_list l = { 0 };
	int rc = kiln_ec2_describe_instances(c, &by_tag, &l);
	check_instances(&l); /* appended to as far as it got, also on failure */
	kiln_instance_list_release(&l);
	return rc;
}

static int run_instances(kiln_aws_client *c)
{
	kiln_launch spec = { .image_id = "ami-12345678", .instance_type = "t3.micro", .count = 2,
			     .client_token = "kiln-fuzz" };
	kiln_instance_list l = { 0 };
	int rc = kiln_ec2_run_instances(c, &spec, &l);
	check_instances(&l);
	kiln_instance_list_release(&l);
	return rc;
}

static int describe_images(kiln_aws_client *c)
{
	kiln_image_list l = { 0 };
	int rc = kiln_ec2_describe_images(c, &by_tag, &l);
	check_images(&l);
	kiln_image_list_release(&l);
	return rc;
}

static int resources(kiln_aws_client *c, int (*fn)(kiln_aws_client *, const kiln_ec2_select *,
						   kiln_ec2_resource_list *))
{
	kiln_ec2_resource_list l = { 0 };
	int rc = fn(c, &by_tag, &l);
	check_resources(&l);
	kiln_ec2_resource_list_release(&l);
	return rc;
}

static int describe_snapshots(kiln_aws_client *c) { return resources(c, kiln_ec2_describe_snapshots); }
static int describe_key_pairs(kiln_aws_client *c) { return resources(c, kiln_ec2_describe_key_pairs); }
static int describe_groups(kiln_aws_client *c) { return resources(c, kiln_ec2_describe_security_groups); }
static int describe_subnets(kiln_aws_client *c) { return resources(c, kiln_ec2_describe_subnets); }
static int describe_vpcs(kiln_aws_client *c) { return resources(c, kiln_ec2_describe_vpcs); }

static int console_output(kiln_aws_client *c)
{
	kiln_buf b = KILN_BUF_INIT;
	int rc;
	kiln_buf_init(&b, 1 << 20);
	rc = kiln_ec2_get_console_output(c, some_ids[0], &b);
	FUZZ_CHECK(b.len <= b.max && b.ptr[b.len] == '\0');
	kiln_buf_release(&b);
	return rc;
}

static int create_image(kiln_aws_client *c)
{
	char id[KILN_ID_MAX] = "";
	int rc = kiln_ec2_create_image(c, some_ids[0], "web-v1", "web", NULL, id);
	FUZZ_CHECK_CSTR(id);
	if (rc == 0)
		FUZZ_CHECK(id[0]);
	return rc;
}

static int copy_image(kiln_aws_client *c)
{
	kiln_image_copy_spec spec = { .source_region = "us-east-1", .source_id = "ami-12345678",
				      .name = "web-v1", .client_token = "kiln-copy-fuzz" };
	char id[KILN_ID_MAX] = "";
	int rc = kiln_ec2_copy_image(c, &spec, id);
	FUZZ_CHECK_CSTR(id);
	if (rc == 0)
		FUZZ_CHECK(id[0]);
	return rc;
}

static int image_devices(kiln_aws_client *c)
{
	kiln_ec2_image_devices d;
	size_t i;
	int rc = kiln_ec2_describe_image_devices(c, "ami-12345678", &d);
	if (rc == 0) {
		FUZZ_CHECK_CSTR(d.root_device_name);
		FUZZ_CHECK(d.n == 0 || d.items);
		for (i = 0; i < d.n; i++) {
			FUZZ_CHECK_CSTR(d.items[i].name);
			FUZZ_CHECK(d.items[i].name[0]);
			FUZZ_CHECK_CSTR(d.items[i].snapshot_id);
		}
		kiln_ec2_image_devices_release(&d);
	} else {
		FUZZ_CHECK(d.n == 0 && d.items == NULL);
	}
	return rc;
}

static int import_key_pair(kiln_aws_client *c)
{
	kiln_ec2_resource r;
	int rc;
	memset(&r, 0, sizeof(r));
	rc = kiln_ec2_import_key_pair(c, "kiln-fuzz", "ssh-ed25519 AAAA fuzz", NULL, &r);
	if (rc == 0 || r.tags.n) {
		FUZZ_CHECK_CSTR(r.id);
		FUZZ_CHECK_CSTR(r.name);
		FUZZ_CHECK_CSTR(r.fingerprint);
		check_tags(&r.tags);
	}
	kiln_tags_release(&r.tags);
	return rc;
}

static int create_group(kiln_aws_client *c)
{
	char id[KILN_ID_MAX] = "";
	int rc = kiln_ec2_create_security_group(c, "kiln-fuzz", "kiln", "vpc-1", NULL, id);
	FUZZ_CHECK_CSTR(id);
	return rc;
}

static int terminate(kiln_aws_client *c)
{
	return kiln_ec2_terminate_instances(c, some_ids, 2);
}

static int target_group(kiln_aws_client *c)
{
	kiln_elbv2_target_group tg;
	int rc = kiln_elbv2_describe_target_group(c, "arn:aws:elasticloadbalancing:tg/web", &tg);
	if (rc == 0) {
		FUZZ_CHECK_CSTR(tg.arn);
		FUZZ_CHECK_CSTR(tg.name);
		FUZZ_CHECK_CSTR(tg.vpc_id);
		FUZZ_CHECK_CSTR(tg.target_type);
	}
	return rc;
}

static int deregistration_delay(kiln_aws_client *c)
{
	int s = 12345;
	return kiln_elbv2_deregistration_delay(c, "arn:aws:elasticloadbalancing:tg/web", &s);
}

static int target_health(kiln_aws_client *c)
{
	kiln_target_list l = { 0 };
	int rc = kiln_elbv2_describe_target_health(c, "arn:aws:elasticloadbalancing:tg/web", NULL, 0, &l);
	check_targets(&l);
	kiln_target_list_release(&l);
	return rc;
}

static int load_balancer(kiln_aws_client *c)
{
	kiln_elb_load_balancer lb;
	int rc = kiln_elb_describe_load_balancer(c, "classic", &lb);
	if (rc == 0) {
		FUZZ_CHECK_CSTR(lb.name);
		FUZZ_CHECK_CSTR(lb.vpc_id);
		check_strings(&lb.instances);
		kiln_elb_load_balancer_release(&lb);
	}
	return rc;
}

static int connection_draining(kiln_aws_client *c)
{
	int s = 12345;
	return kiln_elb_connection_draining(c, "classic", &s);
}

static int instance_health(kiln_aws_client *c)
{
	kiln_target_list l = { 0 };
	int rc = kiln_elb_describe_instance_health(c, "classic", some_ids, 2, &l);
	check_targets(&l);
	kiln_target_list_release(&l);
	return rc;
}

static int caller_identity(kiln_aws_client *c)
{
	kiln_identity id;
	int rc;
	memset(&id, 0, sizeof(id));
	rc = kiln_sts_get_caller_identity(c, &id);
	FUZZ_CHECK_CSTR(id.account);
	FUZZ_CHECK_CSTR(id.arn);
	FUZZ_CHECK_CSTR(id.user_id);
	return rc;
}

static int ssm_get(kiln_aws_client *c)
{
	kiln_record r = { 0 };
	int rc = kiln_ssm_get_parameter(c, "/kiln/images/web/versions/1", &r);
	if (rc == 0) {
		FUZZ_CHECK(r.value != NULL);
		kiln_record_release(&r);
	}
	return rc;
}

static int ssm_put(kiln_aws_client *c)
{
	int64_t v = 0;
	return kiln_ssm_put_parameter(c, "/kiln/images/web/versions/1", "{}", false, &v);
}

static int ssm_by_path(kiln_aws_client *c)
{
	kiln_strings names = { 0 };
	int rc = kiln_ssm_get_parameters_by_path(c, "/kiln", true, &names);
	check_strings(&names);
	kiln_strings_release(&names);
	return rc;
}

static const struct call {
	const char *name;
	int (*fn)(kiln_aws_client *c);
	bool json;
} calls[] = {
	{ "DescribeInstances", describe_instances, false },     /* 0 */
	{ "RunInstances", run_instances, false },               /* 1 */
	{ "DescribeImages", describe_images, false },           /* 2 */
	{ "DescribeSnapshots", describe_snapshots, false },     /* 3 */
	{ "DescribeKeyPairs", describe_key_pairs, false },      /* 4 */
	{ "DescribeSecurityGroups", describe_groups, false },   /* 5 */
	{ "DescribeSubnets", describe_subnets, false },         /* 6 */
	{ "DescribeVpcs", describe_vpcs, false },               /* 7 */
	{ "GetConsoleOutput", console_output, false },          /* 8 */
	{ "CreateImage", create_image, false },                 /* 9 */
	{ "CopyImage", copy_image, false },                     /* 10 */
	{ "DescribeImages (devices)", image_devices, false },   /* 11 */
	{ "ImportKeyPair", import_key_pair, false },            /* 12 */
	{ "CreateSecurityGroup", create_group, false },         /* 13 */
	{ "TerminateInstances", terminate, false },             /* 14 */
	{ "DescribeTargetGroups", target_group, false },        /* 15 */
	{ "DescribeTargetGroupAttributes", deregistration_delay, false }, /* 16 */
	{ "DescribeTargetHealth", target_health, false },       /* 17 */
	{ "DescribeLoadBalancers", load_balancer, false },      /* 18 */
	{ "DescribeLoadBalancerAttributes", connection_draining, false }, /* 19 */
	{ "DescribeInstanceHealth", instance_health, false },   /* 20 */
	{ "GetCallerIdentity", caller_identity, false },        /* 21 */
	{ "GetParameter", ssm_get, true },                      /* 22 */
	{ "PutParameter", ssm_put, true },                      /* 23 */
	{ "GetParametersByPath", ssm_by_path, true },           /* 24 */
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_aws_client();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct call *call;
	int rc;

	if (size < 1)
		return 0;
	call = &calls[data[0] % KILN_ARRAY_SIZE(calls)];
	fuzz_aws_reply(200, data + 1, size - 1, NULL, call->json);
	kiln_error_clear();
	rc = call->fn(fuzz_aws_client());
	FUZZ_CHECK(fuzz_reply.calls >= 1);
	if (rc < 0)
		fuzz_check_error(rc);
	kiln_error_clear();
	return 0;
}
