/*
 * Every typed call: the exact request it builds (through the transport
 * seam) and what it makes of moto's real reply (tests/data/aws/).
 */
#include "aws/ec2.h"
#include "aws/elb.h"
#include "aws/elbv2.h"
#include "aws/ssm.h"
#include "aws/sts.h"
#include "core/clock.h"
#include "core/error.h"
#include "tests/support/awsmock.h"
#include "tests/support/test.h"

static kiln_awsmock mock;
static kiln_aws_config cfg;
static kiln_aws_client *client;

static int setup(void **state)
{
	kiln_aws_client_options o = KILN_AWS_CLIENT_OPTIONS_INIT;
	(void)state;
	kiln_test_clock_install(1795643532000LL);
	kiln_awsmock_init(&mock);
	kiln_awsmock_config(&cfg);
	/* the virtual clock restarts with every test; the process's limiter would not (test_aws_ratelimit has it) */
	setenv("KILN_AWS_RATE_LIMIT", "off", 1);
	o.transport = &mock.transport;
	o.max_attempts = 1;
	assert_int_equal(kiln_aws_client_new(&client, &cfg, &o), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	kiln_aws_client_free(client);
	kiln_aws_config_release(&cfg);
	kiln_awsmock_release(&mock);
	kiln_test_clock_uninstall();
	return 0;
}

#define REQ(i) kiln_awsmock_request(&mock, (i))
#define PARAM(i, name) kiln_mock_param(REQ(i), (name))

static void assert_param(size_t i, const char *name, const char *want)
{
	const char *have = PARAM(i, name);
	if (!want && have)
		fail_msg("request %zu: %s=%s, expected none", i, name, have);
	if (want && (!have || strcmp(have, want)))
		fail_msg("request %zu: %s=%s, expected %s", i, name, have ? have : "(none)", want);
}

/* ---- EC2 ---- */

static void test_run_instances(void **state)
{
	static const char *const groups[] = { "sg-1", "sg-2" };
	kiln_tags tags = KILN_TAGS_INIT;
	kiln_instance_list list = { 0 };
	kiln_launch spec = { 0 };
	(void)state;
	kiln_tags_set(&tags, "kiln:build-id", "b-1");
	kiln_tags_set(&tags, "Name", "web build");
	spec.image_id = "ami-03cf127a";
	spec.instance_type = "t3.micro";
	spec.subnet_id = "subnet-1";
	spec.security_group_ids = groups;
	spec.n_security_groups = 2;
	spec.key_name = "kiln-b-1";
	spec.iam_instance_profile = "arn:aws:iam::123456789012:instance-profile/web";
	spec.user_data = "#!/bin/sh\necho hi\n";
	spec.count = 2;
	spec.client_token = "tok-1";
	spec.tags = &tags;
	kiln_awsmock_push_file(&mock, 200, "ec2-run-instances.xml");
	assert_int_equal(kiln_ec2_run_instances(client, &spec, &list), 0);

	assert_param(0, "Action", "RunInstances");
	assert_param(0, "Version", "2016-11-15");
	assert_param(0, "ImageId", "ami-03cf127a");
	assert_param(0, "InstanceType", "t3.micro");
	assert_param(0, "MinCount", "2");
	assert_param(0, "MaxCount", "2");
	assert_param(0, "SubnetId", "subnet-1");
	assert_param(0, "SecurityGroupId.1", "sg-1");
	assert_param(0, "SecurityGroupId.2", "sg-2");
	assert_param(0, "KeyName", "kiln-b-1");
	assert_param(0, "IamInstanceProfile.Arn", "arn:aws:iam::123456789012:instance-profile/web");
	assert_param(0, "UserData", "IyEvYmluL3NoCmVjaG8gaGkK");
	assert_param(0, "ClientToken", "tok-1");
	assert_param(0, "TagSpecification.1.ResourceType", "instance");
	assert_param(0, "TagSpecification.1.Tag.1.Key", "kiln:build-id");
	assert_param(0, "TagSpecification.1.Tag.1.Value", "b-1");
	assert_param(0, "TagSpecification.1.Tag.2.Key", "Name");
	assert_param(0, "TagSpecification.1.Tag.2.Value", "web build");

	assert_int_equal(list.n, 2);
	assert_true(!strncmp(list.items[0].id, "i-", 2));
	assert_string_equal(list.items[0].image_id, "ami-03cf127a");
	assert_string_equal(list.items[0].instance_type, "t3.micro");
	assert_int_equal(list.items[0].state, KILN_INSTANCE_PENDING);
	assert_true(!strncmp(list.items[0].subnet_id, "subnet-", 7));
	assert_true(list.items[0].private_ip[0]);
	assert_true(list.items[0].launch_time > 1700000000);
	assert_string_equal(kiln_tags_get(&list.items[0].tags, "kiln:build-id"), "b-1");
	assert_string_equal(kiln_tags_get(&list.items[1].tags, "kiln:role"), "build");
	kiln_instance_list_release(&list);
	kiln_tags_release(&tags);
}

static void test_describe_instances_pages_and_filters(void **state)
{
	static const char *const ids[] = { "i-1", "i-2" };
	static const char *const states[] = { "running" };
	kiln_ec2_filter f = { "instance-state-name", states, 1 };
	kiln_tags tags = KILN_TAGS_INIT;
	kiln_instance_list list = { 0 };
	kiln_ec2_select sel = { .ids = ids, .n_ids = 2, .tags = &tags, .filters = &f, .n_filters = 1 };
	char *page1 = kiln_awsmock_fixture("ec2-describe-instances.xml");
	char *cut;
	(void)state;
	kiln_tags_set(&tags, "kiln:build-id", "b-1");
	kiln_tags_set(&tags, "kiln:role", "*");
	/* page 1 is moto's reply with a nextToken added; page 2 is empty */
	cut = strstr(page1, "<requestId>");
	assert_non_null(cut);
	{
		kiln_buf b = KILN_BUF_INIT;
		kiln_buf_put(&b, page1, (size_t)(cut - page1));
		kiln_buf_puts(&b, "<nextToken>tok/2+=</nextToken>");
		kiln_buf_puts(&b, cut);
		kiln_awsmock_push(&mock, 200, b.ptr);
		kiln_buf_release(&b);
	}
	kiln_awsmock_push(&mock, 200,
			  "<DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">"
			  "<requestId>r</requestId><reservationSet/></DescribeInstancesResponse>");
	assert_int_equal(kiln_ec2_describe_instances(client, &sel, &list), 0);
	assert_string_equal(REQ(0)->body,
			    "Action=DescribeInstances&Version=2016-11-15"
			    "&Filter.1.Name=instance-id&Filter.1.Value.1=i-1&Filter.1.Value.2=i-2"
			    "&Filter.2.Name=tag%3Akiln%3Abuild-id&Filter.2.Value.1=b-1"
			    "&Filter.3.Name=tag-key&Filter.3.Value.1=kiln%3Arole"
			    "&Filter.4.Name=instance-state-name&Filter.4.Value.1=running");
	assert_param(0, "NextToken", NULL);
	assert_param(1, "NextToken", "tok/2+=");
	assert_int_equal(mock.n_requests, 2);
	assert_int_equal(list.n, 2);
	{
		/* one running, one stopped by the capture, in moto's order */
		const kiln_instance *stopped = list.items[0].state == KILN_INSTANCE_STOPPED ? &list.items[0] : &list.items[1];
		const kiln_instance *running = stopped == &list.items[0] ? &list.items[1] : &list.items[0];
		assert_int_equal(stopped->state, KILN_INSTANCE_STOPPED);
		assert_int_equal(running->state, KILN_INSTANCE_RUNNING);
		assert_true(stopped->state_reason[0]);
	}
	kiln_instance_list_release(&list);
	kiln_tags_release(&tags);
	free(page1);
}

static void test_instance_actions(void **state)
{
	static const char *const ids[] = { "i-1", "i-2" };
	kiln_buf out = KILN_BUF_INIT;
	(void)state;
	kiln_awsmock_push_file(&mock, 200, "ec2-stop-instances.xml");
	kiln_awsmock_push_file(&mock, 200, "ec2-terminate-instances.xml");
	kiln_awsmock_push_file(&mock, 400, "ec2-error-instance-not-found.xml");
	kiln_awsmock_push_file(&mock, 200, "ec2-get-console-output.xml");
	assert_int_equal(kiln_ec2_stop_instances(client, ids, 2), 0);
	assert_string_equal(REQ(0)->body, "Action=StopInstances&Version=2016-11-15&InstanceId.1=i-1&InstanceId.2=i-2");
	assert_int_equal(kiln_ec2_terminate_instances(client, ids, 1), 0);
	assert_string_equal(REQ(1)->body, "Action=TerminateInstances&Version=2016-11-15&InstanceId.1=i-1");
	assert_error(kiln_ec2_terminate_instances(client, ids, 1), KILN_ENOTFOUND,
		     "ec2 TerminateInstances: The instance ID 'i-0123456789abcdef0' does not exist "
		     "(InvalidInstanceID.NotFound)");
	assert_string_equal(kiln_error_last()->cloud_code, "InvalidInstanceID.NotFound");
	/* nothing to do: no call at all */
	assert_int_equal(kiln_ec2_stop_instances(client, ids, 0), 0);
	assert_int_equal(mock.n_requests, 3);
	/* console output comes base64-encoded */
	assert_int_equal(kiln_ec2_get_console_output(client, "i-1", &out), 0);
	assert_param(3, "InstanceId", "i-1");
	assert_non_null(strstr(out.ptr, "Linux version"));
	kiln_buf_release(&out);
}

static void test_images_and_snapshots(void **state)
{
	static const char *const self[] = { "self" };
	kiln_tags want = KILN_TAGS_INIT, tags = KILN_TAGS_INIT;
	kiln_image_list imgs = { 0 };
	kiln_ec2_resource_list snaps = { 0 };
	kiln_ec2_select sel = { .tags = &want, .owners = self, .n_owners = 1 };
	char id[KILN_ID_MAX];
	const char *snap_ids[1];
	(void)state;
	kiln_tags_set(&want, "kiln:image", "*");
	kiln_tags_set(&tags, "kiln:image", "web");
	kiln_tags_set(&tags, "kiln:version", "1");

	kiln_awsmock_push_file(&mock, 200, "ec2-create-image.xml");
	assert_int_equal(kiln_ec2_create_image(client, "i-1", "web-v1", "kiln web 1", &tags, id), 0);
	assert_string_equal(REQ(0)->body,
			    "Action=CreateImage&Version=2016-11-15&InstanceId=i-1&Name=web-v1"
			    "&Description=kiln%20web%201&TagSpecification.1.ResourceType=image"
			    "&TagSpecification.1.Tag.1.Key=kiln%3Aimage&TagSpecification.1.Tag.1.Value=web"
			    "&TagSpecification.1.Tag.2.Key=kiln%3Aversion&TagSpecification.1.Tag.2.Value=1");
	assert_true(!strncmp(id, "ami-", 4));

	kiln_awsmock_push_file(&mock, 200, "ec2-describe-images.xml");
	assert_int_equal(kiln_ec2_describe_images(client, &sel, &imgs), 0);
	assert_param(1, "Owner.1", "self");
	assert_param(1, "Filter.1.Name", "tag-key");
	assert_param(1, "Filter.1.Value.1", "kiln:image");
	assert_int_equal(imgs.n, 1);
	assert_string_equal(imgs.items[0].id, id);
	assert_string_equal(imgs.items[0].name, "web-v1");
	assert_int_equal(imgs.items[0].state, KILN_IMAGE_AVAILABLE);
	assert_string_equal(imgs.items[0].owner, "123456789012");
	assert_true(imgs.items[0].created > 1700000000);
	assert_int_equal(imgs.items[0].snapshots.n, 1);
	assert_true(!strncmp(imgs.items[0].snapshots.items[0], "snap-", 5));
	assert_int_equal(imgs.items[0].size_bytes, (uint64_t)15 << 30);
	assert_string_equal(kiln_tags_get(&imgs.items[0].tags, "kiln:image"), "web");
	assert_string_equal(kiln_tags_get(&imgs.items[0].tags, "kiln:version"), "1");

	kiln_awsmock_push_file(&mock, 200, "ec2-create-tags.xml");
	snap_ids[0] = imgs.items[0].snapshots.items[0];
	assert_int_equal(kiln_ec2_create_tags(client, snap_ids, 1, &tags), 0);
	assert_param(2, "ResourceId.1", snap_ids[0]);
	assert_param(2, "Tag.1.Key", "kiln:image");
	assert_param(2, "Tag.2.Value", "1");

	kiln_awsmock_push_file(&mock, 200, "ec2-describe-snapshots.xml");
	assert_int_equal(kiln_ec2_describe_snapshots(client, &sel, &snaps), 0);
	assert_int_equal(snaps.n, 1);
	assert_string_equal(snaps.items[0].id, snap_ids[0]);
	assert_string_equal(snaps.items[0].state, "completed");
	assert_int_equal(snaps.items[0].size_gib, 15);
	assert_string_equal(kiln_tags_get(&snaps.items[0].tags, "kiln:image"), "web");

	kiln_awsmock_push(&mock, 200, "<DeregisterImageResponse><return>true</return></DeregisterImageResponse>");
	kiln_awsmock_push(&mock, 200, "<DeleteSnapshotResponse><return>true</return></DeleteSnapshotResponse>");
	assert_int_equal(kiln_ec2_deregister_image(client, id), 0);
	assert_param(4, "Action", "DeregisterImage");
	assert_param(4, "ImageId", id);
	assert_int_equal(kiln_ec2_delete_snapshot(client, snap_ids[0]), 0);
	assert_param(5, "Action", "DeleteSnapshot");
	assert_param(5, "SnapshotId", snap_ids[0]);

	kiln_image_list_release(&imgs);
	kiln_ec2_resource_list_release(&snaps);
	kiln_tags_release(&want);
	kiln_tags_release(&tags);
}

static void test_key_pairs(void **state)
{
	static const char pub[] = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGqd4WCXyWVycIxKFlOYk5FtoCf7eIMGZgeA6srZPXK3 test";
	kiln_tags tags = KILN_TAGS_INIT;
	kiln_ec2_resource kp;
	kiln_ec2_resource_list list = { 0 };
	const char *names[] = { "kiln-b-1" };
	kiln_ec2_select sel = { .ids = names, .n_ids = 1 };
	(void)state;
	kiln_tags_set(&tags, "kiln:build-id", "b-1");
	kiln_awsmock_push_file(&mock, 200, "ec2-import-key-pair.xml");
	assert_int_equal(kiln_ec2_import_key_pair(client, "kiln-b-1", pub, &tags, &kp), 0);
	assert_param(0, "KeyName", "kiln-b-1");
	/* the material is the public key line, base64-encoded */
	assert_param(0, "PublicKeyMaterial",
		     "c3NoLWVkMjU1MTkgQUFBQUMzTnphQzFsWkRJMU5URTVBQUFBSUdxZDRXQ1h5V1Z5Y0l4S0ZsT1lrNUZ0b0NmN2VJTUdaZ2VBNnNyWlBYSzMgdGVzdA==");
	assert_param(0, "TagSpecification.1.ResourceType", "key-pair");
	assert_string_equal(kp.name, "kiln-b-1");
	assert_true(!strncmp(kp.id, "key-", 4));
	assert_true(kp.fingerprint[0]);
	assert_string_equal(kiln_tags_get(&kp.tags, "kiln:build-id"), "b-1");
	kiln_tags_release(&kp.tags);

	kiln_awsmock_push_file(&mock, 400, "ec2-error-key-pair-duplicate.xml");
	assert_error(kiln_ec2_import_key_pair(client, "kiln-b-1", pub, NULL, NULL), KILN_ECONFLICT,
		     "InvalidKeyPair.Duplicate");

	kiln_awsmock_push_file(&mock, 200, "ec2-describe-key-pairs.xml");
	assert_int_equal(kiln_ec2_describe_key_pairs(client, &sel, &list), 0);
	assert_param(2, "Filter.1.Name", "key-name");
	assert_param(2, "Filter.1.Value.1", "kiln-b-1");
	assert_int_equal(list.n, 1);
	assert_string_equal(list.items[0].name, "kiln-b-1");
	assert_true(list.items[0].created > 0);
	assert_string_equal(kiln_tags_get(&list.items[0].tags, "kiln:build-id"), "b-1");

	kiln_awsmock_push(&mock, 200, "<DeleteKeyPairResponse><return>true</return></DeleteKeyPairResponse>");
	assert_int_equal(kiln_ec2_delete_key_pair(client, "kiln-b-1"), 0);
	assert_string_equal(REQ(3)->body, "Action=DeleteKeyPair&Version=2016-11-15&KeyName=kiln-b-1");
	kiln_ec2_resource_list_release(&list);
	kiln_tags_release(&tags);
}

static void test_security_groups_and_networks(void **state)
{
	static const char *const cidrs[] = { "203.0.113.7/32", "198.51.100.0/24" };
	static const char *const yes[] = { "true" };
	kiln_ec2_filter is_default = { "is-default", yes, 1 };
	kiln_ec2_select vpc_sel = { .filters = &is_default, .n_filters = 1 };
	kiln_ec2_resource_list groups = { 0 }, vpcs = { 0 }, subnets = { 0 };
	kiln_tags tags = KILN_TAGS_INIT;
	char id[KILN_ID_MAX];
	(void)state;
	kiln_tags_set(&tags, "kiln:build-id", "b-1");

	kiln_awsmock_push_file(&mock, 200, "ec2-describe-vpcs.xml");
	assert_int_equal(kiln_ec2_describe_vpcs(client, &vpc_sel, &vpcs), 0);
	assert_int_equal(vpcs.n, 1);
	assert_true(vpcs.items[0].is_default);
	assert_string_equal(vpcs.items[0].cidr, "172.31.0.0/16");
	assert_string_equal(vpcs.items[0].state, "available");

	kiln_awsmock_push_file(&mock, 200, "ec2-describe-subnets.xml");
	assert_int_equal(kiln_ec2_describe_subnets(client, NULL, &subnets), 0);
	assert_string_equal(REQ(1)->body, "Action=DescribeSubnets&Version=2016-11-15");
	assert_int_equal(subnets.n, 1);
	assert_string_equal(subnets.items[0].vpc_id, vpcs.items[0].id);
	assert_string_equal(subnets.items[0].zone, "us-east-1a");
	assert_true(subnets.items[0].is_default);

	kiln_awsmock_push_file(&mock, 200, "ec2-create-security-group.xml");
	assert_int_equal(kiln_ec2_create_security_group(client, "kiln-b-1", "", vpcs.items[0].id, &tags, id), 0);
	assert_param(2, "GroupName", "kiln-b-1");
	assert_param(2, "GroupDescription", "kiln-b-1"); /* EC2 wants one: the name stands in */
	assert_param(2, "VpcId", vpcs.items[0].id);
	assert_param(2, "TagSpecification.1.ResourceType", "security-group");
	assert_true(!strncmp(id, "sg-", 3));

	kiln_awsmock_push_file(&mock, 200, "ec2-authorize-ingress.xml");
	assert_int_equal(kiln_ec2_authorize_ingress(client, id, 22, cidrs, 2, "kiln"), 0);
	assert_param(3, "Action", "AuthorizeSecurityGroupIngress");
	assert_param(3, "GroupId", id);
	assert_param(3, "IpPermissions.1.IpRanges.1.Description", "kiln");
	assert_param(3, "IpPermissions.1.IpProtocol", "tcp");
	assert_param(3, "IpPermissions.1.FromPort", "22");
	assert_param(3, "IpPermissions.1.ToPort", "22");
	assert_param(3, "IpPermissions.1.IpRanges.1.CidrIp", "203.0.113.7/32");
	assert_param(3, "IpPermissions.1.IpRanges.2.CidrIp", "198.51.100.0/24");
	assert_param(3, "IpPermissions.1.IpRanges.3.CidrIp", NULL);

	kiln_awsmock_push_file(&mock, 200, "ec2-describe-security-groups.xml");
	assert_int_equal(kiln_ec2_describe_security_groups(client, NULL, &groups), 0);
	assert_int_equal(groups.n, 1);
	assert_string_equal(groups.items[0].id, id);
	assert_string_equal(groups.items[0].name, "kiln-b-1");
	assert_string_equal(groups.items[0].vpc_id, vpcs.items[0].id);
	assert_int_equal(groups.items[0].ingress.n, 1);
	assert_string_equal(groups.items[0].ingress.items[0], "tcp:22-22:203.0.113.7/32");
	assert_string_equal(kiln_tags_get(&groups.items[0].tags, "kiln:build-id"), "b-1");

	kiln_awsmock_push_file(&mock, 400, "ec2-error-group-duplicate.xml");
	assert_error(kiln_ec2_create_security_group(client, "kiln-b-1", "d", "vpc-1", NULL, id),
		     KILN_ECONFLICT, "InvalidGroup.Duplicate");
	kiln_awsmock_push(&mock, 200, "<DeleteSecurityGroupResponse><return>true</return></DeleteSecurityGroupResponse>");
	assert_int_equal(kiln_ec2_delete_security_group(client, "sg-1"), 0);
	assert_string_equal(REQ(6)->body, "Action=DeleteSecurityGroup&Version=2016-11-15&GroupId=sg-1");

	kiln_ec2_resource_list_release(&groups);
	kiln_ec2_resource_list_release(&vpcs);
	kiln_ec2_resource_list_release(&subnets);
	kiln_tags_release(&tags);
}

static void test_empty_id_list_and_bad_reply(void **state)
{
	kiln_instance_list list = { 0 };
	(void)state;
	/* a success whose body is not XML is an error naming the action */
	kiln_awsmock_push(&mock, 200, "this is not xml");
	assert_error(kiln_ec2_describe_instances(client, NULL, &list), KILN_ERROR,
		     "DescribeInstances: cannot parse the reply as XML");
	assert_int_equal(list.n, 0);
}

/* ---- ELBv2 and ELB ---- */

static void test_elbv2(void **state)
{
	const char *arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/4d9dcc664eab292e";
	static const char *const ids[] = { "i-1", "i-2" };
	kiln_elbv2_target_group tg;
	kiln_target_list health = { 0 };
	int delay = 0;
	(void)state;
	{
		/* the fixture's ARN is whatever moto made; read it from there */
		char *text = kiln_awsmock_fixture("elbv2-describe-target-groups.xml");
		char *s = strstr(text, "<TargetGroupArn>"), *e;
		assert_non_null(s);
		s += strlen("<TargetGroupArn>");
		e = strchr(s, '<');
		*e = '\0';
		arn = kiln_strdup(s);
		free(text);
	}
	kiln_awsmock_push_file(&mock, 200, "elbv2-describe-target-groups.xml");
	assert_int_equal(kiln_elbv2_describe_target_group(client, arn, &tg), 0);
	assert_string_equal(REQ(0)->url, "https://elasticloadbalancing.us-east-1.amazonaws.com/");
	assert_param(0, "Version", "2015-12-01");
	assert_param(0, "TargetGroupArns.member.1", arn);
	assert_string_equal(tg.name, "web");
	assert_int_equal(tg.port, 80);
	assert_int_equal(tg.health_interval_s, 30);
	assert_int_equal(tg.healthy_threshold, 5);
	assert_string_equal(tg.target_type, "instance");

	kiln_awsmock_push_file(&mock, 200, "elbv2-describe-target-group-attributes.xml");
	assert_int_equal(kiln_elbv2_deregistration_delay(client, arn, &delay), 0);
	assert_int_equal(delay, 300);

	kiln_awsmock_push_file(&mock, 200, "elbv2-register-targets.xml");
	assert_int_equal(kiln_elbv2_register_targets(client, arn, ids, 2), 0);
	assert_param(2, "Action", "RegisterTargets");
	assert_param(2, "TargetGroupArn", arn);
	assert_param(2, "Targets.member.1.Id", "i-1");
	assert_param(2, "Targets.member.2.Id", "i-2");

	kiln_awsmock_push_file(&mock, 200, "elbv2-describe-target-health.xml");
	assert_int_equal(kiln_elbv2_describe_target_health(client, arn, ids, 2, &health), 0);
	assert_param(3, "Targets.member.2.Id", "i-2");
	assert_int_equal(health.n, 2);
	assert_int_equal(health.items[0].health, KILN_HEALTH_HEALTHY);
	assert_int_equal(health.items[1].health, KILN_HEALTH_UNUSED);
	assert_string_equal(health.items[1].reason,
			    "Target.NotRegistered: Target is not registered to the target group");
	kiln_target_list_release(&health);

	/* ids NULL: every registered target, no Targets in the request */
	kiln_awsmock_push(&mock, 200,
			  "<DescribeTargetHealthResponse><DescribeTargetHealthResult><TargetHealthDescriptions>"
			  "<member><Target><Id>i-9</Id></Target><TargetHealth><State>unhealthy.draining</State>"
			  "</TargetHealth></member><member><Target><Id>i-8</Id></Target><TargetHealth>"
			  "<State>initial</State><Reason>Elb.RegistrationInProgress</Reason></TargetHealth>"
			  "</member></TargetHealthDescriptions></DescribeTargetHealthResult>"
			  "</DescribeTargetHealthResponse>");
	assert_int_equal(kiln_elbv2_describe_target_health(client, arn, NULL, 0, &health), 0);
	assert_param(4, "Targets.member.1.Id", NULL);
	assert_int_equal(health.items[0].health, KILN_HEALTH_DRAINING);
	assert_int_equal(health.items[1].health, KILN_HEALTH_INITIAL);
	assert_string_equal(health.items[1].reason, "Elb.RegistrationInProgress");
	kiln_target_list_release(&health);

	kiln_awsmock_push_file(&mock, 400, "elbv2-error-target-group-not-found.xml");
	assert_error(kiln_elbv2_describe_target_group(client, arn, &tg), KILN_ENOTFOUND, "TargetGroupNotFound");
	kiln_awsmock_push(&mock, 200, "<DeregisterTargetsResponse/>");
	assert_int_equal(kiln_elbv2_deregister_targets(client, arn, ids, 1), 0);
	assert_param(6, "Action", "DeregisterTargets");
	free((char *)arn);
}

static void test_elb_classic(void **state)
{
	static const char *const ids[] = { "i-1" };
	kiln_elb_load_balancer lb;
	kiln_target_list health = { 0 };
	int drain = -1;
	static const struct {
		const char *state, *reason, *description;
		kiln_health want;
	} map[] = {
		{ "InService", "N/A", "N/A", KILN_HEALTH_HEALTHY },
		{ "InService", "N/A", "Instance deregistration currently in progress.", KILN_HEALTH_DRAINING },
		{ "OutOfService", "ELB", "Instance registration is still in progress.", KILN_HEALTH_INITIAL },
		{ "OutOfService", "ELB", "Instance is not currently registered with the LoadBalancer.", KILN_HEALTH_UNUSED },
		{ "OutOfService", "Instance", "Instance has failed at least the UnhealthyThreshold number of health checks consecutively.", KILN_HEALTH_UNHEALTHY },
		{ "Unknown", "N/A", "N/A", KILN_HEALTH_UNUSED },
		{ "Bogus", "", "", KILN_HEALTH_UNKNOWN },
	};
	size_t i;
	(void)state;
	for (i = 0; i < KILN_ARRAY_SIZE(map); i++) {
		kiln_elb_instance_state s;
		memset(&s, 0, sizeof(s));
		snprintf(s.state, sizeof(s.state), "%s", map[i].state);
		snprintf(s.reason_code, sizeof(s.reason_code), "%s", map[i].reason);
		snprintf(s.description, sizeof(s.description), "%s", map[i].description);
		assert_int_equal(kiln_elb_health_of(&s), map[i].want);
	}

	kiln_awsmock_push_file(&mock, 200, "elb-describe-load-balancers.xml");
	assert_int_equal(kiln_elb_describe_load_balancer(client, "classic", &lb), 0);
	assert_param(0, "Version", "2012-06-01");
	assert_param(0, "LoadBalancerNames.member.1", "classic");
	assert_string_equal(lb.name, "classic");
	assert_int_equal(lb.instances.n, 1);
	assert_true(!strncmp(lb.instances.items[0], "i-", 2));
	kiln_elb_load_balancer_release(&lb);

	kiln_awsmock_push_file(&mock, 200, "elb-describe-load-balancer-attributes.xml");
	assert_int_equal(kiln_elb_connection_draining(client, "classic", &drain), 0);
	assert_int_equal(drain, 0); /* moto's default: draining off */
	kiln_awsmock_push(&mock, 200,
			  "<DescribeLoadBalancerAttributesResponse><DescribeLoadBalancerAttributesResult>"
			  "<LoadBalancerAttributes><ConnectionDraining><Enabled>true</Enabled>"
			  "<Timeout>45</Timeout></ConnectionDraining></LoadBalancerAttributes>"
			  "</DescribeLoadBalancerAttributesResult></DescribeLoadBalancerAttributesResponse>");
	assert_int_equal(kiln_elb_connection_draining(client, "classic", &drain), 0);
	assert_int_equal(drain, 45);

	kiln_awsmock_push_file(&mock, 200, "elb-register-instances.xml");
	assert_int_equal(kiln_elb_register_instances(client, "classic", ids, 1), 0);
	assert_string_equal(REQ(3)->body,
			    "Action=RegisterInstancesWithLoadBalancer&Version=2012-06-01"
			    "&LoadBalancerName=classic&Instances.member.1.InstanceId=i-1");

	kiln_awsmock_push_file(&mock, 200, "elb-describe-instance-health.xml");
	assert_int_equal(kiln_elb_describe_instance_health(client, "classic", NULL, 0, &health), 0);
	assert_int_equal(health.n, 1);
	assert_int_equal(health.items[0].health, KILN_HEALTH_HEALTHY);
	assert_string_equal(health.items[0].reason, "");
	kiln_target_list_release(&health);

	kiln_awsmock_push_file(&mock, 400, "elb-error-load-balancer-not-found.xml");
	assert_error(kiln_elb_describe_load_balancer(client, "nope", &lb), KILN_ENOTFOUND, "LoadBalancerNotFound");
}

/* ---- SSM and STS ---- */

static void test_ssm(void **state)
{
	kiln_record rec = { 0 };
	kiln_strings names = { 0 };
	int64_t version = 0;
	char big[KILN_SSM_VALUE_MAX + 2];
	(void)state;
	kiln_awsmock_push_file(&mock, 200, "ssm-put-parameter.json");
	assert_int_equal(kiln_ssm_put_parameter(client, "/kiln/images/web/versions/1", "{\"owner\":\"b-1\"}",
						false, &version), 0);
	assert_int_equal(version, 1);
	assert_string_equal(kiln_mock_header(REQ(0), "X-Amz-Target"), "AmazonSSM.PutParameter");
	assert_param(0, "Name", "/kiln/images/web/versions/1");
	assert_param(0, "Value", "{\"owner\":\"b-1\"}");
	assert_param(0, "Type", "String");
	assert_param(0, "Overwrite", "false");
	assert_param(0, "Tier", "Standard");

	kiln_awsmock_push_file(&mock, 400, "ssm-error-parameter-exists.json");
	assert_error(kiln_ssm_put_parameter(client, "/kiln/x", "v", false, NULL), KILN_ECONFLICT,
		     "ParameterAlreadyExists");
	kiln_awsmock_push(&mock, 200, "{\"Version\":2,\"Tier\":\"Standard\"}");
	assert_int_equal(kiln_ssm_put_parameter(client, "/kiln/x", "v", true, NULL), 0);
	assert_param(2, "Overwrite", "true");

	kiln_awsmock_push_file(&mock, 200, "ssm-get-parameter.json");
	assert_int_equal(kiln_ssm_get_parameter(client, "/kiln/images/web/versions/1", &rec), 0);
	assert_string_equal(kiln_mock_header(REQ(3), "X-Amz-Target"), "AmazonSSM.GetParameter");
	assert_string_equal(rec.value, "{\"owner\":\"b-1\"}");
	assert_int_equal(rec.version, 1);
	assert_true(rec.modified_ms > 1700000000000LL);
	kiln_record_release(&rec);

	kiln_awsmock_push_file(&mock, 400, "ssm-error-parameter-not-found.json");
	assert_error(kiln_ssm_get_parameter(client, "/kiln/nope", &rec), KILN_ENOTFOUND, "ParameterNotFound");
	kiln_awsmock_push(&mock, 200, "{}");
	assert_int_equal(kiln_ssm_delete_parameter(client, "/kiln/x"), 0);
	assert_param(5, "Name", "/kiln/x");

	/* two pages */
	kiln_awsmock_push(&mock, 200, "{\"Parameters\":[{\"Name\":\"/kiln/fleets/a/lock\"}],\"NextToken\":\"n2\"}");
	kiln_awsmock_push_file(&mock, 200, "ssm-get-parameters-by-path.json");
	assert_int_equal(kiln_ssm_get_parameters_by_path(client, "/kiln", true, &names), 0);
	assert_param(6, "Path", "/kiln");
	assert_param(6, "Recursive", "true");
	assert_param(6, "NextToken", NULL);
	assert_param(7, "NextToken", "n2");
	assert_int_equal(names.n, 2);
	assert_string_equal(names.items[0], "/kiln/fleets/a/lock");
	assert_string_equal(names.items[1], "/kiln/images/web/versions/1");
	kiln_strings_release(&names);

	/* the standard tier's 4 KB, checked before sending */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_error(kiln_ssm_put_parameter(client, "/kiln/big", big, true, NULL), KILN_EINVALID, "4096");
	assert_int_equal(mock.n_requests, 8);
}

static void test_sts(void **state)
{
	kiln_identity id;
	(void)state;
	memset(&id, 0, sizeof(id));
	kiln_awsmock_push_file(&mock, 200, "sts-get-caller-identity.xml");
	assert_int_equal(kiln_sts_get_caller_identity(client, &id), 0);
	assert_string_equal(REQ(0)->url, "https://sts.us-east-1.amazonaws.com/");
	assert_string_equal(REQ(0)->body, "Action=GetCallerIdentity&Version=2011-06-15");
	assert_non_null(strstr(kiln_mock_header(REQ(0), "Authorization"), "/us-east-1/sts/aws4_request"));
	assert_string_equal(id.account, "123456789012");
	assert_true(!strncmp(id.arn, "arn:aws:", 8));
	assert_true(id.user_id[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_run_instances, setup, teardown),
		cmocka_unit_test_setup_teardown(test_describe_instances_pages_and_filters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_instance_actions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_images_and_snapshots, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_pairs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_security_groups_and_networks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_id_list_and_bad_reply, setup, teardown),
		cmocka_unit_test_setup_teardown(test_elbv2, setup, teardown),
		cmocka_unit_test_setup_teardown(test_elb_classic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ssm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sts, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
