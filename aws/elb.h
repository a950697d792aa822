/*
 * elb.h: the classic Elastic Load Balancing calls kiln makes (Query
 * protocol, API version 2012-06-01). Who calls: aws/provider.c for
 * KILN_LB_CLASSIC, and the e2e driver.
 */
#ifndef KILN_AWS_ELB_H
#define KILN_AWS_ELB_H

#include "aws/http.h"
#include "core/cloud.h"

#define KILN_ELB_API_VERSION "2012-06-01"

typedef struct kiln_elb_load_balancer {
	char name[KILN_NAME_MAX];
	char vpc_id[KILN_ID_MAX];
	int health_interval_s;  /* HealthCheck.Interval, 0 if absent */
	kiln_strings instances; /* registered instance ids */
} kiln_elb_load_balancer;

void kiln_elb_load_balancer_release(kiln_elb_load_balancer *lb);

/* KILN_ENOTFOUND (LoadBalancerNotFound) if there is no such load balancer. */
int kiln_elb_describe_load_balancer(kiln_aws_client *c, const char *name, kiln_elb_load_balancer *out);
/* ConnectionDraining: its timeout when enabled, else 0. */
int kiln_elb_connection_draining(kiln_aws_client *c, const char *name, int *out_timeout_s);
int kiln_elb_register_instances(kiln_aws_client *c, const char *name, const char *const *ids, size_t n);
int kiln_elb_deregister_instances(kiln_aws_client *c, const char *name, const char *const *ids,
				  size_t n);

/* One instance's state as DescribeInstanceHealth reports it. */
typedef struct kiln_elb_instance_state {
	char instance_id[KILN_ID_MAX];
	char state[32];        /* "InService", "OutOfService", "Unknown" */
	char reason_code[32];  /* "ELB", "Instance", "N/A" */
	char description[KILN_NAME_MAX];
} kiln_elb_instance_state;

/*
 * The classic states in kiln's terms: InService -> healthy, or draining
 * while "Instance deregistration currently in progress."; OutOfService
 * with reason "ELB" (registration still in progress) -> initial, with
 * reason "Instance" (failed health checks) -> unhealthy, "not currently
 * registered" -> unused; Unknown -> unused (what moto says of an instance
 * not registered).
 */
kiln_health kiln_elb_health_of(const kiln_elb_instance_state *s);

/* Health of the given instances (ids NULL: every registered one). */
int kiln_elb_describe_instance_health(kiln_aws_client *c, const char *name, const char *const *ids,
				      size_t n, kiln_target_list *out);

#endif
