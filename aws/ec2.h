/*
 * ec2.h: the EC2 calls kiln makes (Query protocol, API version 2016-11-15),
 * typed: requests from C values, replies into cloud.h's lists or
 * kiln_ec2_resource.
 *
 * Who calls: aws/provider.c, and the e2e driver in tests/ that exercises
 * every call against moto.
 *
 * Every call returns 0 or a KILN_E* code with the error set by
 * kiln_aws_call (the service's code is in kiln_error_last()->cloud_code,
 * which callers test for codes like "InvalidGroup.Duplicate").
 * Describe calls follow nextToken to the last page; out lists are
 * appended to and owned by the caller, also when a later page fails.
 */
#ifndef KILN_AWS_EC2_H
#define KILN_AWS_EC2_H

#include "aws/http.h"
#include "core/cloud.h"

#define KILN_EC2_API_VERSION "2016-11-15"

typedef struct kiln_ec2_filter {
	const char *name; /* "instance-state-name", "vpc-id", ... */
	const char *const *values;
	size_t n_values;
} kiln_ec2_filter;

/*
 * What a Describe call selects. Ids go as a filter on the id ("instance-id",
 * "image-id" ...), so an id that does not exist (yet: EC2 is eventually
 * consistent) is left out instead of failing the whole call. Tags become
 * "tag:KEY" filters, or "tag-key" for a value of "*".
 */
typedef struct kiln_ec2_select {
	const char *const *ids;
	size_t n_ids;
	const kiln_tags *tags;
	const kiln_ec2_filter *filters;
	size_t n_filters;
	const char *const *owners; /* images and snapshots: "self", account ids */
	size_t n_owners;
} kiln_ec2_select;

/* Snapshots, key pairs, security groups, subnets and VPCs, in one shape. */
typedef struct kiln_ec2_resource {
	char id[KILN_ID_MAX];            /* snap-, key-, sg-, subnet-, vpc- */
	char name[KILN_NAME_MAX];        /* key pairs: key name; groups: group name */
	char vpc_id[KILN_ID_MAX];        /* groups, subnets */
	char cidr[KILN_ID_MAX];          /* subnets, VPCs */
	char state[KILN_ID_MAX];         /* snapshots: status; subnets, VPCs: state */
	char zone[KILN_ID_MAX];          /* subnets: availability zone */
	char fingerprint[KILN_NAME_MAX]; /* key pairs */
	char owner[KILN_ID_MAX];         /* snapshots, groups */
	bool is_default;                 /* VPCs: isDefault; subnets: defaultForAz */
	uint64_t size_gib;               /* snapshots: volumeSize */
	int64_t created;                 /* snapshots: startTime; key pairs: createTime */
	kiln_strings ingress;            /* groups: "tcp:22-22:203.0.113.7/32" per range */
	kiln_tags tags;
} kiln_ec2_resource;

typedef struct kiln_ec2_resource_list {
	kiln_ec2_resource *items;
	size_t n;
} kiln_ec2_resource_list;

void kiln_ec2_resource_list_release(kiln_ec2_resource_list *list);

/* instances */
int kiln_ec2_run_instances(kiln_aws_client *c, const kiln_launch *spec, kiln_instance_list *out);

/* One BlockDeviceMapping of RunInstances: what it changes of the image's mapping of that device. */
typedef struct kiln_ec2_block_device {
	const char *device_name;   /* "/dev/xvda" */
	int64_t size_gb;           /* 0: the image's */
	const char *type;          /* "gp3"; NULL: the image's */
	int64_t iops;              /* 0: none */
	int64_t throughput;        /* MiB/s; 0: none */
	bool encrypted;            /* Encrypted=true (false: the image's) */
	const char *kms_key_id;    /* with encrypted; NULL: the account's default EBS key */
	bool delete_on_termination; /* DeleteOnTermination=true (false: the image's) */
} kiln_ec2_block_device;

/* What RunInstances takes beyond cloud.h's kiln_launch (aws/provider.c fills it from spec->options). */
typedef struct kiln_ec2_launch_extra {
	const char *http_tokens;    /* MetadataOptions.HttpTokens; NULL: EC2's default */
	int64_t http_hop_limit;     /* MetadataOptions.HttpPutResponseHopLimit; 0: default */
	const char *http_endpoint;  /* MetadataOptions.HttpEndpoint; NULL: default */
	const kiln_ec2_block_device *devices;
	size_t n_devices;
} kiln_ec2_launch_extra;

/* RunInstances with the extras (extra may be NULL: kiln_ec2_run_instances). */
int kiln_ec2_run_instances_ex(kiln_aws_client *c, const kiln_launch *spec,
			      const kiln_ec2_launch_extra *extra, kiln_instance_list *out);
int kiln_ec2_describe_instances(kiln_aws_client *c, const kiln_ec2_select *sel,
				kiln_instance_list *out);
int kiln_ec2_stop_instances(kiln_aws_client *c, const char *const *ids, size_t n);
int kiln_ec2_terminate_instances(kiln_aws_client *c, const char *const *ids, size_t n);
/* The decoded console log (EC2 keeps the last 64 KiB). */
int kiln_ec2_get_console_output(kiln_aws_client *c, const char *id, kiln_buf *out);

/* images and snapshots */
int kiln_ec2_describe_images(kiln_aws_client *c, const kiln_ec2_select *sel, kiln_image_list *out);
/*
 * Sent as not idempotent (KILN_AWS_NOT_IDEMPOTENT): a failure after which
 * EC2 may have made the image comes back at once, for the caller to look.
 */
int kiln_ec2_create_image(kiln_aws_client *c, const char *instance_id, const char *name,
			  const char *description, const kiln_tags *tags, char out_id[KILN_ID_MAX]);
int kiln_ec2_deregister_image(kiln_aws_client *c, const char *image_id);

/* An image's block devices, as DescribeImages tells them. */
typedef struct kiln_ec2_device {
	char name[KILN_ID_MAX];        /* "/dev/xvda" */
	char snapshot_id[KILN_ID_MAX]; /* "" unless an EBS snapshot backs it */
	bool ebs;                      /* EBS, not an instance store (virtualName) or NoDevice */
} kiln_ec2_device;

typedef struct kiln_ec2_image_devices {
	char root_device_name[KILN_ID_MAX]; /* "" when the image names none */
	kiln_ec2_device *items;
	size_t n;
} kiln_ec2_image_devices;

/* KILN_ENOTFOUND (with a message) when there is no such image. */
int kiln_ec2_describe_image_devices(kiln_aws_client *c, const char *image_id,
				    kiln_ec2_image_devices *out);
void kiln_ec2_image_devices_release(kiln_ec2_image_devices *d);

/*
 * CopyImage into the client's region, tagging the copy and its snapshots
 * at creation; the ClientToken makes retries of it return the same copy.
 */
int kiln_ec2_copy_image(kiln_aws_client *c, const kiln_image_copy_spec *spec, char out_id[KILN_ID_MAX]);
/* ModifyImageAttribute ImdsSupport (only "v2.0" exists; it cannot be undone). */
int kiln_ec2_set_image_imds_support(kiln_aws_client *c, const char *image_id, const char *value);
/* ModifyImageAttribute LaunchPermission.Add: users (account ids) and groups ("all"). */
int kiln_ec2_add_launch_permission(kiln_aws_client *c, const char *image_id,
				   const char *const *users, size_t n_users,
				   const char *const *groups, size_t n_groups);
/* ModifySnapshotAttribute CreateVolumePermission.Add. */
int kiln_ec2_add_create_volume_permission(kiln_aws_client *c, const char *snapshot_id,
					  const char *const *users, size_t n_users,
					  const char *const *groups, size_t n_groups);
/* EnableImageDeprecation at a Unix time (EC2 rounds it up to the minute). */
int kiln_ec2_enable_image_deprecation(kiln_aws_client *c, const char *image_id, int64_t at);
int kiln_ec2_describe_snapshots(kiln_aws_client *c, const kiln_ec2_select *sel,
				kiln_ec2_resource_list *out);
int kiln_ec2_delete_snapshot(kiln_aws_client *c, const char *snapshot_id);

int kiln_ec2_create_tags(kiln_aws_client *c, const char *const *ids, size_t n, const kiln_tags *tags);

/* key pairs: ids in kiln_ec2_select are key names */
int kiln_ec2_import_key_pair(kiln_aws_client *c, const char *name, const char *public_key,
			     const kiln_tags *tags, kiln_ec2_resource *out);
int kiln_ec2_describe_key_pairs(kiln_aws_client *c, const kiln_ec2_select *sel,
				kiln_ec2_resource_list *out);
int kiln_ec2_delete_key_pair(kiln_aws_client *c, const char *name);

/* security groups */
int kiln_ec2_create_security_group(kiln_aws_client *c, const char *name, const char *description,
				   const char *vpc_id, const kiln_tags *tags, char out_id[KILN_ID_MAX]);
/* Admits tcp port from each of cidrs (one IpPermission, one range per CIDR). */
int kiln_ec2_authorize_ingress(kiln_aws_client *c, const char *group_id, int port,
			       const char *const *cidrs, size_t n, const char *description);
int kiln_ec2_describe_security_groups(kiln_aws_client *c, const kiln_ec2_select *sel,
				      kiln_ec2_resource_list *out);
int kiln_ec2_delete_security_group(kiln_aws_client *c, const char *group_id);

/* networks */
int kiln_ec2_describe_subnets(kiln_aws_client *c, const kiln_ec2_select *sel,
			      kiln_ec2_resource_list *out);
int kiln_ec2_describe_vpcs(kiln_aws_client *c, const kiln_ec2_select *sel,
			   kiln_ec2_resource_list *out);

#endif
