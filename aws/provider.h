/*
 * provider.h: the aws provider, core/cloud.h over EC2, ELBv2, classic ELB,
 * SSM and STS.
 *
 * Who calls: cli/provider.c (kiln_aws_cloud_new), nothing else in kiln;
 * the e2e driver in tests/ and unit tests use kiln_aws_cloud_new_ex to pass
 * a transport and read the client's counters.
 *
 * How cloud.h's operations map (docs/aws-configuration.md has the long form):
 *  - tags select through EC2 filters ("tag:KEY", "tag-key" for "*");
 *  - instances_launch = RunInstances with the ClientToken (one is made up
 *    when the caller gives none, so the client's retries stay idempotent);
 *  - image_create = CreateImage with the tags on the image; a failure after
 *    which EC2 may have made it, or InvalidAMIName.Duplicate, is settled by
 *    looking the name up: an image of that name carrying the caller's tags
 *    is ours, anything else is KILN_ECONFLICT;
 *  - image_delete = DeregisterImage + DeleteSnapshot of its snapshots;
 *  - key pairs and security groups re-created under the same name are ours
 *    when they carry the caller's kiln:build-id (or all its tags);
 *  - records are SSM String parameters (standard tier, 4 KB values);
 *  - kiln_launch.options (core/instance_options.h's form): metadata_options
 *    become RunInstances' MetadataOptions; root_volume and encrypt_volumes
 *    ({"kms_key_id": K} or {}) become BlockDeviceMappings of the image's
 *    own devices (DescribeImages, once per image): the root device resized
 *    or retyped and deleted with the instance, every EBS device encrypted.
 *    Other keys are ignored (cloud.h);
 *  - region_open = the same configuration resolved for another region
 *    (its endpoint, the same credentials and transport);
 *  - image_copy = CopyImage into the provider's region with the
 *    ClientToken, the tags on the copy and its snapshots
 *    (TagSpecifications), then CreateTags on the copy (moto ignores the
 *    former);
 *  - image_configure = ModifyImageAttribute ImdsSupport, then
 *    LaunchPermission.Add, ModifySnapshotAttribute CreateVolumePermission.Add
 *    on each of its snapshots, EnableImageDeprecation (one call each: EC2
 *    takes one attribute a call).
 */
#ifndef KILN_AWS_PROVIDER_H
#define KILN_AWS_PROVIDER_H

#include "aws/http.h"
#include "core/cloud.h"

/*
 * Resolves the configuration (aws/config.h; region NULL: the chain's) and
 * constructs the provider. Fails with KILN_EINVALID naming what to set
 * when credentials or region are missing.
 */
int kiln_aws_cloud_new(kiln_cloud **out, const char *region, const kiln_events *events);

/* As above, with client options (a transport for tests; events are set here). */
int kiln_aws_cloud_new_ex(kiln_cloud **out, const char *region, const kiln_events *events,
			  const kiln_aws_client_options *opts);

/* The provider's client (borrowed), for counters; NULL if c is not an aws provider. */
kiln_aws_client *kiln_aws_cloud_client(kiln_cloud *c);

#endif
