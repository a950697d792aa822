/*
 * elbv2.h: the Elastic Load Balancing v2 calls kiln makes on target groups
 * (Query protocol, API version 2015-12-01). Who calls: aws/provider.c for
 * KILN_LB_TARGET_GROUP, and the e2e driver.
 */
#ifndef KILN_AWS_ELBV2_H
#define KILN_AWS_ELBV2_H

#include "aws/http.h"
#include "core/cloud.h"

#define KILN_ELBV2_API_VERSION "2015-12-01"

typedef struct kiln_elbv2_target_group {
	char arn[KILN_NAME_MAX];
	char name[KILN_NAME_MAX];
	char vpc_id[KILN_ID_MAX];
	char target_type[KILN_ID_MAX]; /* "instance", "ip", "lambda" */
	int port;
	int health_interval_s;
	int healthy_threshold;
	int unhealthy_threshold;
} kiln_elbv2_target_group;

/* The target group arn names; KILN_ENOTFOUND (TargetGroupNotFound) if it does not exist. */
int kiln_elbv2_describe_target_group(kiln_aws_client *c, const char *arn,
				     kiln_elbv2_target_group *out);
/* deregistration_delay.timeout_seconds; -1 if the reply does not say. */
int kiln_elbv2_deregistration_delay(kiln_aws_client *c, const char *arn, int *out_s);
int kiln_elbv2_register_targets(kiln_aws_client *c, const char *arn, const char *const *ids, size_t n);
int kiln_elbv2_deregister_targets(kiln_aws_client *c, const char *arn, const char *const *ids,
				  size_t n);
/*
 * Health of the given targets (ids NULL: every registered one), the target
 * group's states mapped 1:1 to kiln_health; reason is "Reason: Description".
 */
int kiln_elbv2_describe_target_health(kiln_aws_client *c, const char *arn, const char *const *ids,
				      size_t n, kiln_target_list *out);

#endif
