/*
 * The aws provider's own decisions, through the transport seam: which
 * calls an operation makes, and how it settles a create whose first
 * attempt may have gone through, a delete of something gone, a security
 * group still in use, a record someone else holds.
 */
#include "aws/provider.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/registry.h"
#include "tests/support/awsmock.h"
#include "tests/support/test.h"

static kiln_awsmock mock;
static kiln_cloud *cloud;

static kiln_cloud *open_cloud(const char *endpoint)
{
	kiln_aws_client_options o = KILN_AWS_CLIENT_OPTIONS_INIT;
	kiln_cloud *c = NULL;
	setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
	setenv("AWS_SECRET_ACCESS_KEY", KILN_MOCK_SECRET, 1);
	setenv("AWS_REGION", "eu-west-1", 1);
	setenv("AWS_ENDPOINT_URL", endpoint, 1);
	unsetenv("AWS_PROFILE");
	setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials", 1);
	setenv("AWS_CONFIG_FILE", "/nonexistent/config", 1);
	/* no instance metadata service (tests talk to loopback only), no client-side rate limit */
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	setenv("KILN_AWS_RATE_LIMIT", "off", 1);
	o.transport = &mock.transport;
	o.max_attempts = 1;
	if (kiln_aws_cloud_new_ex(&c, NULL, NULL, &o) < 0)
		fail_msg("%s", kiln_error_last()->message);
	return c;
}

static int setup(void **state)
{
	(void)state;
	kiln_test_clock_install(1795643532000LL);
	kiln_awsmock_init(&mock);
	cloud = open_cloud("https://aws.example.com");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	kiln_cloud_free(cloud);
	cloud = NULL;
	kiln_awsmock_release(&mock);
	kiln_test_clock_uninstall();
	return 0;
}

#define REQ(i) kiln_awsmock_request(&mock, (i))
#define ACTION(i) kiln_mock_param(REQ(i), "Action")

static void assert_action(size_t i, const char *want)
{
	const kiln_mock_request *r = REQ(i);
	const char *a = kiln_mock_param(r, "Action");
	const char *target = kiln_mock_header(r, "X-Amz-Target");
	if (!a && target)
		a = strchr(target, '.') + 1;
	if (!a || strcmp(a, want))
		fail_msg("request %zu is %s, expected %s", i, a ? a : "(none)", want);
}

static void test_construction(void **state)
{
	kiln_identity id;
	(void)state;
	assert_string_equal(kiln_cloud_name(cloud), "aws");
	assert_string_equal(cloud->region, "eu-west-1");
	assert_non_null(kiln_aws_cloud_client(cloud));
	kiln_awsmock_push_file(&mock, 200, "sts-get-caller-identity.xml");
	assert_int_equal(cloud->ops->whoami(cloud, &id), 0);
	assert_string_equal(id.account, "123456789012");
	assert_string_equal(id.region, "eu-west-1");
	assert_string_equal(id.endpoint, "https://aws.example.com/");
	assert_string_equal(id.credential_source, "environment");
	assert_non_null(strstr(kiln_mock_header(REQ(0), "Authorization"), "/eu-west-1/sts/aws4_request"));
	/* the region argument wins over the environment */
	{
		kiln_aws_client_options o = KILN_AWS_CLIENT_OPTIONS_INIT;
		kiln_cloud *c = NULL;
		o.transport = &mock.transport;
		assert_int_equal(kiln_aws_cloud_new_ex(&c, "ap-south-1", NULL, &o), 0);
		assert_string_equal(c->region, "ap-south-1");
		kiln_cloud_free(c);
	}
	/* missing credentials: one line naming what to set, exit 2 */
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	{
		kiln_cloud *c = NULL;
		assert_error(kiln_aws_cloud_new(&c, NULL, NULL), KILN_EINVALID, "AWS_ACCESS_KEY_ID");
		assert_null(c);
	}
}

static void test_launch_always_has_a_token(void **state)
{
	kiln_launch spec = { .image_id = "ami-1", .instance_type = "t3.micro", .count = 1 };
	kiln_instance_list list = { 0 };
	const char *t1;
	(void)state;
	kiln_awsmock_push_file(&mock, 200, "ec2-run-instances.xml");
	kiln_awsmock_push_file(&mock, 200, "ec2-run-instances.xml");
	assert_int_equal(cloud->ops->instances_launch(cloud, &spec, &list), 0);
	assert_int_equal(list.n, 2);
	kiln_instance_list_release(&list);
	assert_int_equal(cloud->ops->instances_launch(cloud, &spec, &list), 0);
	kiln_instance_list_release(&list);
	t1 = kiln_mock_param(REQ(0), "ClientToken");
	assert_non_null(t1);
	assert_true(strlen(t1) <= 64);
	assert_true(!strncmp(t1, "kiln-", 5));
	/* a fresh one per launch */
	assert_string_not_equal(t1, kiln_mock_param(REQ(1), "ClientToken"));
	/* the caller's when given */
	spec.client_token = "rollout-7-batch-2";
	kiln_awsmock_push(&mock, 400, NULL);
	free(mock.replies[mock.n_replies - 1].body);
	mock.replies[mock.n_replies - 1].body = kiln_awsmock_fixture("ec2-error-instance-not-found.xml");
	assert_error(cloud->ops->instances_launch(cloud, &spec, &list), KILN_ENOTFOUND, "cannot launch from 'ami-1'");
	assert_string_equal(kiln_mock_param(REQ(2), "ClientToken"), "rollout-7-batch-2");
}

static void test_describe_skips_terminated(void **state)
{
	static const char *const ids[] = { "i-1" };
	kiln_instance_query q = { .ids = ids, .n_ids = 1 };
	kiln_instance_list list = { 0 };
	(void)state;
	kiln_awsmock_push_file(&mock, 200, "ec2-describe-instances.xml");
	kiln_awsmock_push_file(&mock, 200, "ec2-describe-instances.xml");
	assert_int_equal(cloud->ops->instances_describe(cloud, &q, &list), 0);
	kiln_instance_list_release(&list);
	assert_string_equal(kiln_mock_param(REQ(0), "Filter.2.Name"), "instance-state-name");
	assert_string_equal(kiln_mock_param(REQ(0), "Filter.2.Value.4"), "stopped");
	q.include_terminated = true;
	assert_int_equal(cloud->ops->instances_describe(cloud, &q, &list), 0);
	kiln_instance_list_release(&list);
	assert_null(kiln_mock_param(REQ(1), "Filter.2.Name"));
	/* an empty id list selects nothing, without a call */
	q.n_ids = 0;
	assert_int_equal(cloud->ops->instances_describe(cloud, &q, &list), 0);
	assert_int_equal(list.n, 0);
	assert_int_equal(mock.n_requests, 2);
}

static void test_terminate_skips_the_gone(void **state)
{
	static const char *const ids[] = { "i-0123456789abcdef0", "i-live" };
	(void)state;
	kiln_awsmock_push_file(&mock, 400, "ec2-error-instance-not-found.xml");
	kiln_awsmock_push(&mock, 200,
			  "<DescribeInstancesResponse><reservationSet><item><instancesSet><item>"
			  "<instanceId>i-live</instanceId><instanceState><name>running</name></instanceState>"
			  "</item></instancesSet></item></reservationSet></DescribeInstancesResponse>");
	kiln_awsmock_push_file(&mock, 200, "ec2-terminate-instances.xml");
	assert_int_equal(cloud->ops->instances_terminate(cloud, ids, 2), 0);
	assert_action(1, "DescribeInstances");
	assert_action(2, "TerminateInstances");
	assert_string_equal(kiln_mock_param(REQ(2), "InstanceId.1"), "i-live");
	assert_null(kiln_mock_param(REQ(2), "InstanceId.2"));
}

static const char image_reply[] =
	"<DescribeImagesResponse><imagesSet><item><imageId>ami-made</imageId><name>web-v3</name>"
	"<imageState>pending</imageState><blockDeviceMapping><item><ebs><snapshotId>snap-1</snapshotId>"
	"</ebs></item></blockDeviceMapping><tagSet><item><key>kiln:build-id</key><value>%s</value></item>"
	"</tagSet></item></imagesSet></DescribeImagesResponse>";

static void push_image(const char *build_id)
{
	char body[1024];
	snprintf(body, sizeof(body), image_reply, build_id);
	kiln_awsmock_push(&mock, 200, body);
}

static void test_image_create_after_a_lost_reply(void **state)
{
	kiln_tags tags = KILN_TAGS_INIT;
	char id[KILN_ID_MAX] = "";
	(void)state;
	kiln_tags_set(&tags, KILN_TAG_BUILD_ID, "b-3");
	/* EC2 made the image but the reply never came: not sent again, found by name */
	kiln_awsmock_push_fail(&mock, KILN_ETIMEOUT, true);
	push_image("b-3");
	assert_int_equal(cloud->ops->image_create(cloud, "i-1", "web-v3", "d", &tags, id), 0);
	assert_string_equal(id, "ami-made");
	assert_int_equal(mock.n_requests, 2);
	assert_action(1, "DescribeImages");
	assert_string_equal(kiln_mock_param(REQ(1), "Filter.1.Name"), "name");
	assert_string_equal(kiln_mock_param(REQ(1), "Filter.1.Value.1"), "web-v3");
	assert_string_equal(kiln_mock_param(REQ(1), "Owner.1"), "self");

	/* a 500 before EC2 did anything: nothing found, so it is created again */
	kiln_awsmock_push_ec2_error(&mock, 500, "InternalError", "oops");
	kiln_awsmock_push(&mock, 200, "<DescribeImagesResponse><imagesSet/></DescribeImagesResponse>");
	kiln_awsmock_push_file(&mock, 200, "ec2-create-image.xml");
	assert_int_equal(cloud->ops->image_create(cloud, "i-1", "web-v3", "d", &tags, id), 0);
	assert_action(4, "CreateImage");
	assert_true(!strncmp(id, "ami-", 4));
	assert_int_equal(mock.n_requests, 5);
	kiln_tags_release(&tags);
}

static void test_image_create_duplicate_name(void **state)
{
	kiln_tags tags = KILN_TAGS_INIT;
	char id[KILN_ID_MAX] = "";
	(void)state;
	kiln_tags_set(&tags, KILN_TAG_BUILD_ID, "b-3");
	/* real EC2 refuses the name; ours (an earlier attempt) is returned */
	kiln_awsmock_push_ec2_error(&mock, 400, "InvalidAMIName.Duplicate", "AMI name web-v3 is already in use by AMI ami-made");
	push_image("b-3");
	assert_int_equal(cloud->ops->image_create(cloud, "i-1", "web-v3", NULL, &tags, id), 0);
	assert_string_equal(id, "ami-made");
	/* someone else's: a conflict */
	kiln_awsmock_push_ec2_error(&mock, 400, "InvalidAMIName.Duplicate", "AMI name web-v3 is already in use by AMI ami-made");
	push_image("b-other");
	assert_error(cloud->ops->image_create(cloud, "i-1", "web-v3", NULL, &tags, id), KILN_ECONFLICT,
		     "cannot create image 'web-v3': an image of that name exists");
	assert_string_equal(kiln_error_last()->cloud_code, "InvalidAMIName.Duplicate");
	kiln_tags_release(&tags);
}

static void test_image_delete(void **state)
{
	(void)state;
	push_image("b-3");
	kiln_awsmock_push(&mock, 200, "<DeregisterImageResponse/>");
	kiln_awsmock_push_ec2_error(&mock, 400, "InvalidSnapshot.InUse", "The snapshot snap-1 is currently in use by ami-made");
	kiln_awsmock_push(&mock, 200, "<DeleteSnapshotResponse/>");
	assert_int_equal(cloud->ops->image_delete(cloud, "ami-made"), 0);
	assert_action(0, "DescribeImages");
	assert_action(1, "DeregisterImage");
	assert_action(2, "DeleteSnapshot");
	assert_action(3, "DeleteSnapshot");
	assert_string_equal(kiln_mock_param(REQ(3), "SnapshotId"), "snap-1");
	/* an image already gone: nothing to do, and that is success */
	kiln_awsmock_push(&mock, 200, "<DescribeImagesResponse><imagesSet/></DescribeImagesResponse>");
	assert_int_equal(cloud->ops->image_delete(cloud, "ami-gone"), 0);
	assert_int_equal(mock.n_requests, 5);
}

/* A source image with a root EBS device, a second EBS device and an instance store. */
static const char devices_reply[] =
	"<DescribeImagesResponse><imagesSet><item><imageId>ami-src</imageId>"
	"<rootDeviceName>/dev/xvda</rootDeviceName><blockDeviceMapping>"
	"<item><deviceName>/dev/xvda</deviceName><ebs><snapshotId>snap-root</snapshotId><volumeSize>8</volumeSize></ebs></item>"
	"<item><deviceName>/dev/xvdb</deviceName><ebs><snapshotId>snap-data</snapshotId></ebs></item>"
	"<item><deviceName>/dev/xvdc</deviceName><virtualName>ephemeral0</virtualName></item>"
	"</blockDeviceMapping></item></imagesSet></DescribeImagesResponse>";

static void test_launch_options(void **state)
{
	kiln_launch spec = { .image_id = "ami-src", .instance_type = "t3.micro", .count = 1,
			     .client_token = "tok" };
	kiln_instance_list list = { 0 };
	json_t *opts = json_pack("{s:{s:s,s:i,s:s},s:{s:i,s:s,s:i,s:i},s:{s:s},s:b}", "metadata_options",
				 "http_tokens", "required", "http_put_response_hop_limit", 2,
				 "http_endpoint", "enabled", "root_volume", "size_gb", 40, "type", "gp3",
				 "iops", 4000, "throughput", 250, "encrypt_volumes", "kms_key_id",
				 "alias/kiln", "ebs_optimized", 1);
	const kiln_mock_request *r;
	(void)state;

	spec.options = opts;
	kiln_awsmock_push(&mock, 200, devices_reply);
	kiln_awsmock_push_file(&mock, 200, "ec2-run-instances.xml");
	assert_int_equal(cloud->ops->instances_launch(cloud, &spec, &list), 0);
	kiln_instance_list_release(&list);
	assert_action(0, "DescribeImages");
	assert_string_equal(kiln_mock_param(REQ(0), "ImageId.1"), "ami-src");
	assert_action(1, "RunInstances");
	r = REQ(1);
	assert_string_equal(kiln_mock_param(r, "MetadataOptions.HttpTokens"), "required");
	assert_string_equal(kiln_mock_param(r, "MetadataOptions.HttpPutResponseHopLimit"), "2");
	assert_string_equal(kiln_mock_param(r, "MetadataOptions.HttpEndpoint"), "enabled");
	/* the root device: resized, retyped, encrypted, gone with the instance */
	assert_string_equal(kiln_mock_param(r, "BlockDeviceMapping.1.DeviceName"), "/dev/xvda");
	assert_string_equal(kiln_mock_param(r, "BlockDeviceMapping.1.Ebs.VolumeSize"), "40");
	assert_string_equal(kiln_mock_param(r, "BlockDeviceMapping.1.Ebs.VolumeType"), "gp3");
	assert_string_equal(kiln_mock_param(r, "BlockDeviceMapping.1.Ebs.Iops"), "4000");
	assert_string_equal(kiln_mock_param(r, "BlockDeviceMapping.1.Ebs.Throughput"), "250");
	assert_string_equal(kiln_mock_param(r, "BlockDeviceMapping.1.Ebs.Encrypted"), "true");
	assert_string_equal(kiln_mock_param(r, "BlockDeviceMapping.1.Ebs.KmsKeyId"), "alias/kiln");
	assert_string_equal(kiln_mock_param(r, "BlockDeviceMapping.1.Ebs.DeleteOnTermination"), "true");
	/* the other EBS device: only encrypted; the instance store: left alone */
	assert_string_equal(kiln_mock_param(r, "BlockDeviceMapping.2.DeviceName"), "/dev/xvdb");
	assert_string_equal(kiln_mock_param(r, "BlockDeviceMapping.2.Ebs.Encrypted"), "true");
	assert_string_equal(kiln_mock_param(r, "BlockDeviceMapping.2.Ebs.KmsKeyId"), "alias/kiln");
	assert_null(kiln_mock_param(r, "BlockDeviceMapping.2.Ebs.VolumeSize"));
	assert_null(kiln_mock_param(r, "BlockDeviceMapping.2.Ebs.DeleteOnTermination"));
	assert_null(kiln_mock_param(r, "BlockDeviceMapping.3.DeviceName"));
	/* keys kiln does not know are not its business */
	assert_null(kiln_mock_param(r, "EbsOptimized"));

	/* the devices of an image are asked once; no encryption: only the root mapping */
	json_object_del(opts, "encrypt_volumes");
	json_object_del(opts, "metadata_options");
	kiln_awsmock_push_file(&mock, 200, "ec2-run-instances.xml");
	assert_int_equal(cloud->ops->instances_launch(cloud, &spec, &list), 0);
	kiln_instance_list_release(&list);
	assert_int_equal(mock.n_requests, 3);
	r = REQ(2);
	assert_string_equal(kiln_mock_param(r, "BlockDeviceMapping.1.DeviceName"), "/dev/xvda");
	assert_null(kiln_mock_param(r, "BlockDeviceMapping.1.Ebs.Encrypted"));
	assert_null(kiln_mock_param(r, "BlockDeviceMapping.2.DeviceName"));
	assert_null(kiln_mock_param(r, "MetadataOptions.HttpTokens"));

	/* metadata options alone need no DescribeImages */
	json_decref(opts);
	opts = json_pack("{s:{s:s}}", "metadata_options", "http_tokens", "required");
	spec.options = opts;
	spec.image_id = "ami-other";
	kiln_awsmock_push_file(&mock, 200, "ec2-run-instances.xml");
	assert_int_equal(cloud->ops->instances_launch(cloud, &spec, &list), 0);
	kiln_instance_list_release(&list);
	assert_action(3, "RunInstances");
	assert_null(kiln_mock_param(REQ(3), "BlockDeviceMapping.1.DeviceName"));

	/* garbage never reaches EC2 */
	json_decref(opts);
	opts = json_pack("{s:{s:s}}", "metadata_options", "http_tokens", "sometimes");
	spec.options = opts;
	assert_error(cloud->ops->instances_launch(cloud, &spec, &list), KILN_EINVALID,
		     "bad launch option 'http_tokens'");
	json_decref(opts);
	opts = json_pack("{s:{s:i}}", "root_volume", "size_gb", 20);
	spec.options = opts;
	spec.image_id = "ami-gone";
	kiln_awsmock_push(&mock, 200, "<DescribeImagesResponse><imagesSet/></DescribeImagesResponse>");
	assert_error(cloud->ops->instances_launch(cloud, &spec, &list), KILN_ENOTFOUND,
		     "cannot launch from 'ami-gone': cannot read the block devices of 'ami-gone': no image 'ami-gone'");
	assert_int_equal(mock.n_requests, 5);
	json_decref(opts);
}

static void test_image_copy(void **state)
{
	kiln_tags tags = KILN_TAGS_INIT;
	kiln_image_copy_spec spec = { .source_region = "eu-west-1", .source_id = "ami-made",
				      .name = "web-v3", .description = "web 3", .encrypted = true,
				      .kms_key_id = "alias/west", .client_token = "kiln-copy-abc",
				      .tags = &tags };
	kiln_cloud *west = NULL;
	char id[KILN_ID_MAX] = "";
	const kiln_mock_request *r;
	(void)state;

	kiln_tags_set(&tags, KILN_TAG_IMAGE, "web");
	kiln_tags_set(&tags, KILN_TAG_VERSION, "3");
	assert_non_null(cloud->ops->region_open);
	assert_int_equal(cloud->ops->region_open(cloud, "us-west-2", &west), 0);
	assert_string_equal(west->region, "us-west-2");
	assert_string_equal(kiln_cloud_name(west), "aws");
	kiln_awsmock_push_file(&mock, 200, "ec2-copy-image.xml");
	kiln_awsmock_push_file(&mock, 200, "ec2-create-tags.xml");
	assert_int_equal(west->ops->image_copy(west, &spec, id), 0);
	assert_string_equal(id, "ami-5adcefedcf7d31d5b");
	r = REQ(0);
	/* sent to, and signed for, the destination region */
	assert_non_null(strstr(kiln_mock_header(r, "Authorization"), "/us-west-2/ec2/aws4_request"));
	assert_string_equal(kiln_mock_param(r, "Action"), "CopyImage");
	assert_string_equal(kiln_mock_param(r, "SourceImageId"), "ami-made");
	assert_string_equal(kiln_mock_param(r, "SourceRegion"), "eu-west-1");
	assert_string_equal(kiln_mock_param(r, "Name"), "web-v3");
	assert_string_equal(kiln_mock_param(r, "Description"), "web 3");
	assert_string_equal(kiln_mock_param(r, "Encrypted"), "true");
	assert_string_equal(kiln_mock_param(r, "KmsKeyId"), "alias/west");
	assert_string_equal(kiln_mock_param(r, "ClientToken"), "kiln-copy-abc");
	assert_string_equal(kiln_mock_param(r, "TagSpecification.1.ResourceType"), "image");
	assert_string_equal(kiln_mock_param(r, "TagSpecification.1.Tag.1.Key"), "kiln:image");
	assert_string_equal(kiln_mock_param(r, "TagSpecification.2.ResourceType"), "snapshot");
	assert_string_equal(kiln_mock_param(r, "TagSpecification.2.Tag.2.Value"), "3");
	/* and tagged again by CreateTags, for clouds that ignore TagSpecifications */
	r = REQ(1);
	assert_string_equal(kiln_mock_param(r, "Action"), "CreateTags");
	assert_string_equal(kiln_mock_param(r, "ResourceId.1"), "ami-5adcefedcf7d31d5b");
	assert_string_equal(kiln_mock_param(r, "Tag.2.Key"), "kiln:version");
	assert_non_null(strstr(kiln_mock_header(r, "Authorization"), "/us-west-2/ec2/aws4_request"));

	/* unencrypted: neither Encrypted nor KmsKeyId */
	spec.encrypted = false;
	kiln_awsmock_push_file(&mock, 200, "ec2-copy-image.xml");
	kiln_awsmock_push_file(&mock, 200, "ec2-create-tags.xml");
	assert_int_equal(west->ops->image_copy(west, &spec, id), 0);
	assert_null(kiln_mock_param(REQ(2), "Encrypted"));
	assert_null(kiln_mock_param(REQ(2), "KmsKeyId"));

	/* a failure names both regions */
	kiln_awsmock_push_ec2_error(&mock, 400, "InvalidRegion", "bad source region");
	assert_error(west->ops->image_copy(west, &spec, id), KILN_ERROR,
		     "cannot copy image 'ami-made' from eu-west-1 to us-west-2");
	kiln_cloud_free(west);
	kiln_tags_release(&tags);
}

static void test_image_configure(void **state)
{
	const char *users[] = { "111122223333", "444455556666" };
	const char *all[] = { "all" };
	kiln_image_settings s = { 0 };
	const kiln_mock_request *r;
	(void)state;

	s.imds_support = "v2.0";
	s.launch_users = users;
	s.n_launch_users = 2;
	s.launch_groups = all;
	s.n_launch_groups = 1;
	s.snapshot_users = users;
	s.n_snapshot_users = 1;
	s.deprecate_at = 1801353600; /* 2027-01-31T00:00:00Z */
	kiln_awsmock_push_file(&mock, 200, "ec2-modify-image-attribute.xml");
	kiln_awsmock_push_file(&mock, 200, "ec2-modify-image-attribute.xml");
	push_image("b-3");
	kiln_awsmock_push_file(&mock, 200, "ec2-modify-snapshot-attribute.xml");
	kiln_awsmock_push_file(&mock, 200, "ec2-enable-image-deprecation.xml");
	assert_int_equal(cloud->ops->image_configure(cloud, "ami-made", &s), 0);
	assert_int_equal(mock.n_requests, 5);
	/* one attribute a call */
	r = REQ(0);
	assert_string_equal(kiln_mock_param(r, "Action"), "ModifyImageAttribute");
	assert_string_equal(kiln_mock_param(r, "ImageId"), "ami-made");
	assert_string_equal(kiln_mock_param(r, "ImdsSupport.Value"), "v2.0");
	assert_null(kiln_mock_param(r, "LaunchPermission.Add.1.UserId"));
	r = REQ(1);
	assert_string_equal(kiln_mock_param(r, "Action"), "ModifyImageAttribute");
	assert_string_equal(kiln_mock_param(r, "LaunchPermission.Add.1.UserId"), "111122223333");
	assert_string_equal(kiln_mock_param(r, "LaunchPermission.Add.2.UserId"), "444455556666");
	assert_string_equal(kiln_mock_param(r, "LaunchPermission.Add.3.Group"), "all");
	assert_null(kiln_mock_param(r, "ImdsSupport.Value"));
	assert_action(2, "DescribeImages");
	r = REQ(3);
	assert_string_equal(kiln_mock_param(r, "Action"), "ModifySnapshotAttribute");
	assert_string_equal(kiln_mock_param(r, "SnapshotId"), "snap-1");
	assert_string_equal(kiln_mock_param(r, "Attribute"), "createVolumePermission");
	assert_string_equal(kiln_mock_param(r, "CreateVolumePermission.Add.1.UserId"), "111122223333");
	assert_null(kiln_mock_param(r, "CreateVolumePermission.Add.2.UserId"));
	r = REQ(4);
	assert_string_equal(kiln_mock_param(r, "Action"), "EnableImageDeprecation");
	assert_string_equal(kiln_mock_param(r, "ImageId"), "ami-made");
	assert_string_equal(kiln_mock_param(r, "DeprecateAt"), "2027-01-31T00:00:00Z");

	/* nothing asked: nothing sent */
	memset(&s, 0, sizeof(s));
	assert_int_equal(cloud->ops->image_configure(cloud, "ami-made", &s), 0);
	assert_int_equal(mock.n_requests, 5);

	/* moto has no EnableImageDeprecation: its HTML 500 fails the call, naming the image */
	s.deprecate_at = 1801353600;
	kiln_awsmock_push_file(&mock, 500, "html-500.html");
	assert_error(cloud->ops->image_configure(cloud, "ami-made", &s), KILN_ETRANSIENT,
		     "cannot set the deprecation time of image 'ami-made'");
}

static void test_keypair_recognised_by_build_id(void **state)
{
	kiln_tags tags = KILN_TAGS_INIT;
	(void)state;
	kiln_tags_set(&tags, KILN_TAG_BUILD_ID, "b-1");
	/* the fixture's key pair carries kiln:build-id=b-1 */
	kiln_awsmock_push_file(&mock, 400, "ec2-error-key-pair-duplicate.xml");
	kiln_awsmock_push_file(&mock, 200, "ec2-describe-key-pairs.xml");
	assert_int_equal(cloud->ops->keypair_import(cloud, "kiln-b-1", "ssh-ed25519 AAAA k", &tags), 0);
	assert_int_equal(kiln_error_last()->code, 0);
	kiln_tags_set(&tags, KILN_TAG_BUILD_ID, "b-2");
	kiln_awsmock_push_file(&mock, 400, "ec2-error-key-pair-duplicate.xml");
	kiln_awsmock_push_file(&mock, 200, "ec2-describe-key-pairs.xml");
	assert_error(cloud->ops->keypair_import(cloud, "kiln-b-1", "ssh-ed25519 AAAA k", &tags),
		     KILN_ECONFLICT, "not this build's");
	/* deleting an absent key pair succeeds */
	kiln_awsmock_push_ec2_error(&mock, 400, "InvalidKeyPair.NotFound", "The key pair 'x' does not exist");
	assert_int_equal(cloud->ops->keypair_delete(cloud, "x"), 0);
	kiln_tags_release(&tags);
}

static void test_firewall_create(void **state)
{
	static const char *const cidrs[] = { "203.0.113.7/32" };
	kiln_tags tags = KILN_TAGS_INIT;
	kiln_firewall fw = { .name = "kiln-b-1", .description = "kiln build b-1", .port = 22,
			     .cidrs = cidrs, .n_cidrs = 1 };
	char id[KILN_ID_MAX];
	(void)state;
	kiln_tags_set(&tags, KILN_TAG_BUILD_ID, "b-1");
	fw.tags = &tags;
	kiln_awsmock_push_file(&mock, 200, "ec2-describe-vpcs.xml");
	kiln_awsmock_push_file(&mock, 200, "ec2-create-security-group.xml");
	kiln_awsmock_push_file(&mock, 200, "ec2-authorize-ingress.xml");
	assert_int_equal(cloud->ops->firewall_create(cloud, &fw, id), 0);
	assert_true(!strncmp(id, "sg-", 3));
	assert_action(0, "DescribeVpcs");
	assert_string_equal(kiln_mock_param(REQ(0), "Filter.1.Name"), "is-default");
	assert_action(1, "CreateSecurityGroup");
	assert_true(!strncmp(kiln_mock_param(REQ(1), "VpcId"), "vpc-", 4));
	assert_string_equal(kiln_mock_param(REQ(1), "TagSpecification.1.Tag.1.Value"), "b-1");
	assert_action(2, "AuthorizeSecurityGroupIngress");
	assert_string_equal(kiln_mock_param(REQ(2), "GroupId"), id);
	assert_string_equal(kiln_mock_param(REQ(2), "IpPermissions.1.IpRanges.1.CidrIp"), "203.0.113.7/32");
	assert_null(kiln_mock_param(REQ(2), "IpPermissions.1.IpRanges.2.CidrIp"));

	/* created again (a retry, a resumed build): the group and its rule are there, nothing to add */
	kiln_awsmock_push_file(&mock, 200, "ec2-describe-vpcs.xml");
	kiln_awsmock_push_file(&mock, 400, "ec2-error-group-duplicate.xml");
	kiln_awsmock_push_file(&mock, 200, "ec2-describe-security-groups.xml");
	assert_int_equal(cloud->ops->firewall_create(cloud, &fw, id), 0);
	assert_action(5, "DescribeSecurityGroups");
	assert_int_equal(mock.n_requests, 6);

	/* in a subnet's VPC, a second CIDR missing from the group: only that one is added */
	{
		static const char *const two[] = { "203.0.113.7/32", "198.51.100.0/24" };
		fw.subnet_id = "subnet-1";
		fw.cidrs = two;
		fw.n_cidrs = 2;
	}
	kiln_awsmock_push_file(&mock, 200, "ec2-describe-subnets.xml");
	kiln_awsmock_push_file(&mock, 400, "ec2-error-group-duplicate.xml");
	kiln_awsmock_push_file(&mock, 200, "ec2-describe-security-groups.xml");
	kiln_awsmock_push_file(&mock, 200, "ec2-authorize-ingress.xml");
	assert_int_equal(cloud->ops->firewall_create(cloud, &fw, id), 0);
	assert_action(6, "DescribeSubnets");
	assert_string_equal(kiln_mock_param(REQ(6), "Filter.1.Value.1"), "subnet-1");
	assert_string_equal(kiln_mock_param(REQ(9), "IpPermissions.1.IpRanges.1.CidrIp"), "198.51.100.0/24");
	assert_null(kiln_mock_param(REQ(9), "IpPermissions.1.IpRanges.2.CidrIp"));

	/* a group of that name that is not ours */
	kiln_tags_set(&tags, KILN_TAG_BUILD_ID, "b-9");
	kiln_awsmock_push_file(&mock, 200, "ec2-describe-subnets.xml");
	kiln_awsmock_push_file(&mock, 400, "ec2-error-group-duplicate.xml");
	kiln_awsmock_push_file(&mock, 200, "ec2-describe-security-groups.xml");
	assert_error(cloud->ops->firewall_create(cloud, &fw, id), KILN_ECONFLICT, "not this build's");
	kiln_tags_release(&tags);
}

static void test_firewall_delete_waits_while_in_use(void **state)
{
	uint64_t start;
	(void)state;
	kiln_awsmock_push_ec2_error(&mock, 400, "DependencyViolation", "resource sg-1 has a dependent object");
	kiln_awsmock_push_ec2_error(&mock, 400, "DependencyViolation", "resource sg-1 has a dependent object");
	kiln_awsmock_push(&mock, 200, "<DeleteSecurityGroupResponse/>");
	start = kiln_clock_now_ms();
	assert_int_equal(cloud->ops->firewall_delete(cloud, "sg-1", 60000), 0);
	assert_int_equal(mock.n_requests, 3);
	assert_int_equal(kiln_clock_now_ms() - start, 1000 + 1500);

	/* still in use when the time is up */
	kiln_awsmock_repeat(&mock, 400,
			    "<Response><Errors><Error><Code>DependencyViolation</Code><Message>in use</Message>"
			    "</Error></Errors></Response>");
	start = kiln_clock_now_ms();
	assert_error(cloud->ops->firewall_delete(cloud, "sg-1", 10000), KILN_ETIMEOUT,
		     "security group 'sg-1' is still in use after 10 s");
	assert_int_equal(kiln_clock_now_ms() - start, 10000);
	assert_string_equal(kiln_error_last()->cloud_code, "DependencyViolation");

	/* gone already */
	mock.has_repeat = false;
	kiln_awsmock_push_ec2_error(&mock, 400, "InvalidGroup.NotFound", "The security group 'sg-1' does not exist");
	assert_int_equal(cloud->ops->firewall_delete(cloud, "sg-1", 10000), 0);
}

static void test_records(void **state)
{
	kiln_record rec = { 0 };
	kiln_strings names = { 0 };
	(void)state;
	/* a lost reply: the parameter exists with our very value */
	kiln_awsmock_push_file(&mock, 400, "ssm-error-parameter-exists.json");
	kiln_awsmock_push_file(&mock, 200, "ssm-get-parameter.json");
	assert_int_equal(cloud->ops->record_create(cloud, "/kiln/images/web/versions/1", "{\"owner\":\"b-1\"}"), 0);
	assert_string_equal(kiln_mock_param(REQ(0), "Overwrite"), "false");
	/* someone else's value */
	kiln_awsmock_push_file(&mock, 400, "ssm-error-parameter-exists.json");
	kiln_awsmock_push_file(&mock, 200, "ssm-get-parameter.json");
	assert_error(cloud->ops->record_create(cloud, "/kiln/images/web/versions/1", "{\"owner\":\"b-2\"}"),
		     KILN_ECONFLICT, "record '/kiln/images/web/versions/1' exists already");
	assert_string_equal(kiln_error_last()->cloud_code, "ParameterAlreadyExists");

	kiln_awsmock_push_file(&mock, 400, "ssm-error-parameter-not-found.json");
	assert_error(cloud->ops->record_get(cloud, "/kiln/nope", &rec), KILN_ENOTFOUND, "no record '/kiln/nope'");
	kiln_awsmock_push(&mock, 200, "{\"Version\":2}");
	assert_int_equal(cloud->ops->record_put(cloud, "/kiln/x", "v2"), 0);
	assert_string_equal(kiln_mock_param(REQ(5), "Overwrite"), "true");
	kiln_awsmock_push_file(&mock, 400, "ssm-error-parameter-not-found.json");
	assert_int_equal(cloud->ops->record_delete(cloud, "/kiln/x"), 0);

	/* SSM refused: say why kiln needs it */
	kiln_awsmock_push(&mock, 400, "{\"__type\":\"AccessDeniedException\",\"message\":\"User: u is not authorized to perform: ssm:PutParameter\"}");
	assert_error(cloud->ops->record_create(cloud, "/kiln/images/web/versions/2", "v"), KILN_EAUTH,
		     "kiln keeps version reservations and rollout locks in SSM Parameter Store");

	kiln_awsmock_push_file(&mock, 200, "ssm-get-parameters-by-path.json");
	assert_int_equal(cloud->ops->record_list(cloud, "/kiln/images/", &names), 0);
	assert_string_equal(kiln_mock_param(REQ(8), "Path"), "/kiln/images");
	assert_int_equal(names.n, 1);
	kiln_strings_release(&names);
}

static void test_classic_lb_drains(void **state)
{
	static const char *const ids[] = { "i-1" };
	kiln_lb lb = { .kind = KILN_LB_CLASSIC, .ref = "classic" };
	kiln_lb_info info;
	kiln_target_list health = { 0 };
	static const char unknown[] =
		"<DescribeInstanceHealthResponse><DescribeInstanceHealthResult><InstanceStates><member>"
		"<InstanceId>i-1</InstanceId><State>Unknown</State><ReasonCode>N/A</ReasonCode>"
		"<Description>N/A</Description></member></InstanceStates></DescribeInstanceHealthResult>"
		"</DescribeInstanceHealthResponse>";
	(void)state;
	kiln_awsmock_push_file(&mock, 200, "elb-describe-load-balancers.xml");
	kiln_awsmock_push(&mock, 200,
			  "<DescribeLoadBalancerAttributesResponse><DescribeLoadBalancerAttributesResult>"
			  "<LoadBalancerAttributes><ConnectionDraining><Enabled>true</Enabled>"
			  "<Timeout>30</Timeout></ConnectionDraining></LoadBalancerAttributes>"
			  "</DescribeLoadBalancerAttributesResult></DescribeLoadBalancerAttributesResponse>");
	assert_int_equal(cloud->ops->lb_open(cloud, &lb, &info), 0);
	assert_string_equal(info.name, "classic");
	assert_int_equal(info.drain_timeout_s, 30);

	kiln_awsmock_push(&mock, 200, "<DeregisterInstancesFromLoadBalancerResponse/>");
	assert_int_equal(cloud->ops->lb_deregister(cloud, &lb, ids, 1), 0);
	assert_int_equal(mock.n_requests, 3); /* the timeout came from lb_open */
	kiln_awsmock_push(&mock, 200, unknown);
	assert_int_equal(cloud->ops->lb_health(cloud, &lb, ids, 1, &health), 0);
	assert_int_equal(health.items[0].health, KILN_HEALTH_DRAINING);
	assert_non_null(strstr(health.items[0].reason, "30 s left"));
	kiln_target_list_release(&health);
	kiln_test_clock_advance(30000);
	kiln_awsmock_push(&mock, 200, unknown);
	assert_int_equal(cloud->ops->lb_health(cloud, &lb, ids, 1, &health), 0);
	assert_int_equal(health.items[0].health, KILN_HEALTH_UNUSED);
	kiln_target_list_release(&health);
}

static void test_target_group_deregister_skips_gone(void **state)
{
	static const char *const ids[] = { "i-gone", "i-2" };
	kiln_lb lb = { .kind = KILN_LB_TARGET_GROUP, .ref = "arn:tg" };
	kiln_target_list health = { 0 };
	static const char invalid[] =
		"<ErrorResponse><Error><Type>Sender</Type><Code>InvalidTarget</Code><Message>The specified "
		"target does not exist</Message></Error><RequestId>r</RequestId></ErrorResponse>";
	(void)state;
	kiln_awsmock_push(&mock, 400, invalid);
	kiln_awsmock_push(&mock, 400, invalid);
	kiln_awsmock_push(&mock, 200, "<DeregisterTargetsResponse/>");
	assert_int_equal(cloud->ops->lb_deregister(cloud, &lb, ids, 2), 0);
	assert_int_equal(mock.n_requests, 3);
	assert_string_equal(kiln_mock_param(REQ(2), "Targets.member.1.Id"), "i-2");

	/* health of a terminated target: unused, the others as reported */
	kiln_awsmock_push(&mock, 400, invalid);
	kiln_awsmock_push(&mock, 400, invalid);
	kiln_awsmock_push(&mock, 200,
			  "<DescribeTargetHealthResponse><DescribeTargetHealthResult><TargetHealthDescriptions>"
			  "<member><Target><Id>i-2</Id></Target><TargetHealth><State>draining</State>"
			  "</TargetHealth></member></TargetHealthDescriptions></DescribeTargetHealthResult>"
			  "</DescribeTargetHealthResponse>");
	assert_int_equal(cloud->ops->lb_health(cloud, &lb, ids, 2, &health), 0);
	assert_int_equal(health.n, 2);
	assert_int_equal(kiln_target_list_find(&health, "i-gone")->health, KILN_HEALTH_UNUSED);
	assert_int_equal(kiln_target_list_find(&health, "i-2")->health, KILN_HEALTH_DRAINING);
	kiln_target_list_release(&health);

	/* a local balancer is not the aws provider's */
	lb.kind = KILN_LB_LOCAL;
	assert_error(cloud->ops->lb_register(cloud, &lb, ids, 1), KILN_EUNSUPPORTED, "no local balancers");
}

static void test_resources_find(void **state)
{
	kiln_tags match = KILN_TAGS_INIT;
	kiln_resource_list found = { 0 };
	size_t i, kinds[5] = { 0 };
	(void)state;
	kiln_tags_set(&match, KILN_TAG_BUILD_ID, "b-1");
	kiln_awsmock_push_file(&mock, 200, "ec2-describe-instances.xml");
	kiln_awsmock_push_file(&mock, 200, "ec2-describe-key-pairs.xml");
	kiln_awsmock_push_file(&mock, 200, "ec2-describe-security-groups.xml");
	kiln_awsmock_push_file(&mock, 200, "ec2-describe-images.xml");
	kiln_awsmock_push_file(&mock, 200, "ec2-describe-snapshots.xml");
	assert_int_equal(cloud->ops->resources_find(cloud, &match, &found), 0);
	for (i = 0; i < 5; i++) {
		assert_string_equal(kiln_mock_param(REQ(i), "Filter.1.Name"), "tag:kiln:build-id");
		assert_string_equal(kiln_mock_param(REQ(i), "Filter.1.Value.1"), "b-1");
	}
	assert_string_equal(kiln_mock_param(REQ(3), "Owner.1"), "self");
	assert_string_equal(kiln_mock_param(REQ(4), "Owner.1"), "self");
	for (i = 0; i < found.n; i++)
		kinds[found.items[i].kind]++;
	assert_int_equal(kinds[KILN_RES_INSTANCE], 2);
	assert_int_equal(kinds[KILN_RES_KEYPAIR], 1);
	assert_int_equal(kinds[KILN_RES_FIREWALL], 1);
	assert_int_equal(kinds[KILN_RES_IMAGE], 1);
	assert_int_equal(kinds[KILN_RES_SNAPSHOT], 1);
	for (i = 0; i < found.n; i++)
		if (found.items[i].kind == KILN_RES_KEYPAIR)
			assert_string_equal(found.items[i].id, "kiln-b-1");
	kiln_resource_list_release(&found);
	kiln_tags_release(&match);
}

static void test_caller_cidr(void **state)
{
	kiln_buf out = KILN_BUF_INIT;
	kiln_cloud *local;
	(void)state;
	/* AWS: what checkip.amazonaws.com sees */
	kiln_awsmock_push(&mock, 200, "198.51.100.23\n");
	assert_int_equal(cloud->ops->caller_cidr(cloud, NULL, &out), 0);
	assert_string_equal(out.ptr, "198.51.100.23/32");
	assert_string_equal(REQ(0)->url, "https://checkip.amazonaws.com/");
	kiln_buf_reset(&out);
	kiln_awsmock_push(&mock, 200, "<html>captive portal</html>");
	assert_error(cloud->ops->caller_cidr(cloud, NULL, &out), KILN_ENOTFOUND, "public address");
	kiln_awsmock_push_fail(&mock, KILN_ETRANSIENT, false);
	assert_error(cloud->ops->caller_cidr(cloud, NULL, &out), KILN_ENOTFOUND,
		     "cannot tell this machine's public address: mock transport failure");
	/* an emulator on loopback: loopback, and no probe */
	local = open_cloud("http://127.0.0.1:5000");
	assert_int_equal(local->ops->caller_cidr(local, NULL, &out), 0);
	assert_string_equal(out.ptr, "127.0.0.1/32");
	assert_int_equal(mock.n_requests, 3);
	kiln_cloud_free(local);
	kiln_buf_release(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_construction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_launch_always_has_a_token, setup, teardown),
		cmocka_unit_test_setup_teardown(test_describe_skips_terminated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_terminate_skips_the_gone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_image_create_after_a_lost_reply, setup, teardown),
		cmocka_unit_test_setup_teardown(test_image_create_duplicate_name, setup, teardown),
		cmocka_unit_test_setup_teardown(test_image_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_launch_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_image_copy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_image_configure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keypair_recognised_by_build_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_firewall_create, setup, teardown),
		cmocka_unit_test_setup_teardown(test_firewall_delete_waits_while_in_use, setup, teardown),
		cmocka_unit_test_setup_teardown(test_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_classic_lb_drains, setup, teardown),
		cmocka_unit_test_setup_teardown(test_target_group_deregister_skips_gone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resources_find, setup, teardown),
		cmocka_unit_test_setup_teardown(test_caller_cidr, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
