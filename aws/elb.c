#include "aws/elb.h"
#include "aws/query.h"
#include "aws/xml.h"
#include "core/error.h"

#define MAX_PAGES 100

static int call(kiln_aws_client *c, kiln_query *q, kiln_xml **out)
{
	int error = kiln_query_call(c, KILN_AWS_ELB, q, 0, out);
	kiln_query_release(q);
	return error;
}

static const kiln_xml_node *result(const kiln_xml *x, const char *action)
{
	char name[96];
	snprintf(name, sizeof(name), "%sResult", action);
	return kiln_xml_child(kiln_xml_root(x), name);
}

void kiln_elb_load_balancer_release(kiln_elb_load_balancer *lb)
{
	kiln_strings_release(&lb->instances);
}

int kiln_elb_describe_load_balancer(kiln_aws_client *c, const char *name, kiln_elb_load_balancer *out)
{
	char *marker = NULL;
	bool found = false;
	int pages, error = 0;

	memset(out, 0, sizeof(*out));
	for (pages = 0; pages < MAX_PAGES && !found; pages++) {
		const kiln_xml_node *res, *lb, *inst;
		kiln_xml *x = NULL;
		kiln_query q;

		kiln_query_init(&q, "DescribeLoadBalancers", KILN_ELB_API_VERSION);
		kiln_query_add(&q, "LoadBalancerNames.member.1", name);
		kiln_query_add(&q, "Marker", marker);
		free(marker);
		marker = NULL;
		if ((error = call(c, &q, &x)) < 0)
			break;
		res = result(x, "DescribeLoadBalancers");
		for (lb = kiln_xml_first(res, "LoadBalancerDescriptions", "member"); lb && !found && error == 0;
		     lb = kiln_xml_next(lb)) {
			if ((error = kiln_xml_copy(out->name, sizeof(out->name), lb, "LoadBalancerName")) < 0)
				break;
			if (strcmp(out->name, name))
				continue;
			found = true;
			if ((error = kiln_xml_copy(out->vpc_id, sizeof(out->vpc_id), lb, "VPCId")) < 0)
				break;
			out->health_interval_s = (int)kiln_xml_int(lb, "HealthCheck/Interval", 0);
			for (inst = kiln_xml_first(lb, "Instances", "member"); inst && error == 0;
			     inst = kiln_xml_next(inst)) {
				char id[KILN_ID_MAX];
				if ((error = kiln_xml_copy(id, sizeof(id), inst, "InstanceId")) == 0 && id[0])
					error = kiln_strings_add(&out->instances, id);
			}
		}
		if (error == 0 && !found)
			marker = kiln_xml_text(res, "NextMarker");
		kiln_xml_free(x);
		if (error < 0)
			break;
		if (!found && (!marker || !*marker)) {
			error = kiln_error_set(KILN_ENOTFOUND, "no load balancer '%s'", name);
			break;
		}
	}
	free(marker);
	if (error == 0 && !found)
		error = kiln_error_set(KILN_ERROR, "elb DescribeLoadBalancers: more than %d pages", MAX_PAGES);
	if (error < 0)
		kiln_elb_load_balancer_release(out);
	return error;
}

int kiln_elb_connection_draining(kiln_aws_client *c, const char *name, int *out_timeout_s)
{
	const kiln_xml_node *cd;
	kiln_xml *x = NULL;
	kiln_query q;
	int error;

	*out_timeout_s = 0;
	kiln_query_init(&q, "DescribeLoadBalancerAttributes", KILN_ELB_API_VERSION);
	kiln_query_add(&q, "LoadBalancerName", name);
	if ((error = call(c, &q, &x)) < 0)
		return error;
	cd = kiln_xml_path(result(x, "DescribeLoadBalancerAttributes"),
			   "LoadBalancerAttributes/ConnectionDraining");
	if (kiln_xml_bool(cd, "Enabled"))
		*out_timeout_s = (int)kiln_xml_int(cd, "Timeout", 300);
	kiln_xml_free(x);
	return 0;
}

static int instances_action(kiln_aws_client *c, const char *action, const char *name,
			    const char *const *ids, size_t n)
{
	kiln_xml *x = NULL;
	kiln_query q;
	int error;

	if (!n)
		return 0;
	kiln_query_init(&q, action, KILN_ELB_API_VERSION);
	kiln_query_add(&q, "LoadBalancerName", name);
	kiln_query_add_list(&q, "Instances.member", ".InstanceId", ids, n);
	error = call(c, &q, &x);
	kiln_xml_free(x);
	return error;
}

int kiln_elb_register_instances(kiln_aws_client *c, const char *name, const char *const *ids, size_t n)
{
	return instances_action(c, "RegisterInstancesWithLoadBalancer", name, ids, n);
}

int kiln_elb_deregister_instances(kiln_aws_client *c, const char *name, const char *const *ids,
				  size_t n)
{
	return instances_action(c, "DeregisterInstancesFromLoadBalancer", name, ids, n);
}

kiln_health kiln_elb_health_of(const kiln_elb_instance_state *s)
{
	/*
	 * Classic ELB tells draining and "not registered" apart only in the
	 * description: with connection draining on, a deregistered instance
	 * stays InService "Instance deregistration currently in progress."
	 * until the timeout, then reads OutOfService (reason ELB) "Instance is
	 * not currently registered with the LoadBalancer."
	 */
	if (!strcmp(s->state, "InService"))
		return strstr(s->description, "deregistration currently in progress") ? KILN_HEALTH_DRAINING
										       : KILN_HEALTH_HEALTHY;
	if (!strcmp(s->state, "OutOfService")) {
		if (strstr(s->description, "not currently registered"))
			return KILN_HEALTH_UNUSED;
		return !strcmp(s->reason_code, "ELB") ? KILN_HEALTH_INITIAL : KILN_HEALTH_UNHEALTHY;
	}
	if (!strcmp(s->state, "Unknown"))
		return KILN_HEALTH_UNUSED;
	return KILN_HEALTH_UNKNOWN;
}

int kiln_elb_describe_instance_health(kiln_aws_client *c, const char *name, const char *const *ids,
				      size_t n, kiln_target_list *out)
{
	const kiln_xml_node *m;
	kiln_xml *x = NULL;
	kiln_query q;
	int error;

	kiln_query_init(&q, "DescribeInstanceHealth", KILN_ELB_API_VERSION);
	kiln_query_add(&q, "LoadBalancerName", name);
	if (ids)
		kiln_query_add_list(&q, "Instances.member", ".InstanceId", ids, n);
	if ((error = call(c, &q, &x)) < 0)
		return error;
	for (m = kiln_xml_first(result(x, "DescribeInstanceHealth"), "InstanceStates", "member");
	     m && error == 0; m = kiln_xml_next(m)) {
		kiln_elb_instance_state s;
		kiln_target t;
		char *desc;

		memset(&s, 0, sizeof(s));
		memset(&t, 0, sizeof(t));
		if ((error = kiln_xml_copy(s.instance_id, sizeof(s.instance_id), m, "InstanceId")) < 0 ||
		    (error = kiln_xml_copy(s.state, sizeof(s.state), m, "State")) < 0 ||
		    (error = kiln_xml_copy(s.reason_code, sizeof(s.reason_code), m, "ReasonCode")) < 0)
			break;
		desc = kiln_xml_text(m, "Description");
		snprintf(s.description, sizeof(s.description), "%s", desc ? desc : "");
		free(desc);
		memcpy(t.instance_id, s.instance_id, sizeof(t.instance_id));
		t.health = kiln_elb_health_of(&s);
		if (strcmp(s.reason_code, "N/A") && s.reason_code[0])
			snprintf(t.reason, sizeof(t.reason), "%s: %s", s.reason_code, s.description);
		else if (strcmp(s.state, "InService"))
			snprintf(t.reason, sizeof(t.reason), "%s", s.state);
		error = kiln_target_list_add(out, &t);
	}
	kiln_xml_free(x);
	return error;
}
