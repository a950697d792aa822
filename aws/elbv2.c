#include "aws/elbv2.h"
#include "aws/query.h"
#include "aws/xml.h"
#include "core/error.h"

#define MAX_PAGES 100

static int call(kiln_aws_client *c, kiln_query *q, kiln_xml **out)
{
	int error = kiln_query_call(c, KILN_AWS_ELBV2, q, 0, out);
	kiln_query_release(q);
	return error;
}

/* The <ActionResult> element every ELBv2 reply wraps its fields in. */
static const kiln_xml_node *result(const kiln_xml *x, const char *action)
{
	char name[96];
	snprintf(name, sizeof(name), "%sResult", action);
	return kiln_xml_child(kiln_xml_root(x), name);
}

static void add_targets(kiln_query *q, const char *const *ids, size_t n)
{
	kiln_query_add_list(q, "Targets.member", ".Id", ids, n);
}

int kiln_elbv2_describe_target_group(kiln_aws_client *c, const char *arn,
				     kiln_elbv2_target_group *out)
{
	char *marker = NULL;
	int pages, error = 0;

	memset(out, 0, sizeof(*out));
	/* one ARN fits one page, but follow NextMarker as the API allows */
	for (pages = 0; pages < MAX_PAGES; pages++) {
		const kiln_xml_node *res, *tg;
		kiln_xml *x = NULL;
		kiln_query q;

		kiln_query_init(&q, "DescribeTargetGroups", KILN_ELBV2_API_VERSION);
		kiln_query_add(&q, "TargetGroupArns.member.1", arn);
		kiln_query_add(&q, "Marker", marker);
		free(marker);
		marker = NULL;
		if ((error = call(c, &q, &x)) < 0)
			return error;
		res = result(x, "DescribeTargetGroups");
		for (tg = kiln_xml_first(res, "TargetGroups", "member"); tg; tg = kiln_xml_next(tg)) {
			char this_arn[KILN_NAME_MAX];
			if ((error = kiln_xml_copy(this_arn, sizeof(this_arn), tg, "TargetGroupArn")) < 0)
				break;
			if (strcmp(this_arn, arn))
				continue;
			memcpy(out->arn, this_arn, sizeof(out->arn));
			if ((error = kiln_xml_copy(out->name, sizeof(out->name), tg, "TargetGroupName")) < 0 ||
			    (error = kiln_xml_copy(out->vpc_id, sizeof(out->vpc_id), tg, "VpcId")) < 0 ||
			    (error = kiln_xml_copy(out->target_type, sizeof(out->target_type), tg, "TargetType")) < 0)
				break;
			out->port = (int)kiln_xml_int(tg, "Port", 0);
			out->health_interval_s = (int)kiln_xml_int(tg, "HealthCheckIntervalSeconds", 0);
			out->healthy_threshold = (int)kiln_xml_int(tg, "HealthyThresholdCount", 0);
			out->unhealthy_threshold = (int)kiln_xml_int(tg, "UnhealthyThresholdCount", 0);
		}
		if (error == 0 && !out->arn[0])
			marker = kiln_xml_text(res, "NextMarker");
		kiln_xml_free(x);
		if (error < 0 || out->arn[0])
			break;
		if (!marker || !*marker) {
			error = kiln_error_set(KILN_ENOTFOUND, "no target group '%s'", arn);
			break;
		}
	}
	free(marker);
	if (error == 0 && !out->arn[0])
		error = kiln_error_set(KILN_ERROR, "elbv2 DescribeTargetGroups: more than %d pages", MAX_PAGES);
	return error;
}

int kiln_elbv2_deregistration_delay(kiln_aws_client *c, const char *arn, int *out_s)
{
	const kiln_xml_node *a;
	kiln_xml *x = NULL;
	kiln_query q;
	int error;

	*out_s = -1;
	kiln_query_init(&q, "DescribeTargetGroupAttributes", KILN_ELBV2_API_VERSION);
	kiln_query_add(&q, "TargetGroupArn", arn);
	if ((error = call(c, &q, &x)) < 0)
		return error;
	for (a = kiln_xml_first(result(x, "DescribeTargetGroupAttributes"), "Attributes", "member"); a;
	     a = kiln_xml_next(a)) {
		char key[128];
		if (kiln_xml_copy(key, sizeof(key), a, "Key") == 0 &&
		    !strcmp(key, "deregistration_delay.timeout_seconds"))
			*out_s = (int)kiln_xml_int(a, "Value", -1);
	}
	kiln_xml_free(x);
	return 0;
}

static int targets_action(kiln_aws_client *c, const char *action, const char *arn,
			  const char *const *ids, size_t n)
{
	kiln_xml *x = NULL;
	kiln_query q;
	int error;

	if (!n)
		return 0;
	kiln_query_init(&q, action, KILN_ELBV2_API_VERSION);
	kiln_query_add(&q, "TargetGroupArn", arn);
	add_targets(&q, ids, n);
	error = call(c, &q, &x);
	kiln_xml_free(x);
	return error;
}

int kiln_elbv2_register_targets(kiln_aws_client *c, const char *arn, const char *const *ids, size_t n)
{
	return targets_action(c, "RegisterTargets", arn, ids, n);
}

int kiln_elbv2_deregister_targets(kiln_aws_client *c, const char *arn, const char *const *ids,
				  size_t n)
{
	return targets_action(c, "DeregisterTargets", arn, ids, n);
}

int kiln_elbv2_describe_target_health(kiln_aws_client *c, const char *arn, const char *const *ids,
				      size_t n, kiln_target_list *out)
{
	const kiln_xml_node *d;
	kiln_xml *x = NULL;
	kiln_query q;
	int error;

	kiln_query_init(&q, "DescribeTargetHealth", KILN_ELBV2_API_VERSION);
	kiln_query_add(&q, "TargetGroupArn", arn);
	if (ids)
		add_targets(&q, ids, n);
	if ((error = call(c, &q, &x)) < 0)
		return error;
	for (d = kiln_xml_first(result(x, "DescribeTargetHealth"), "TargetHealthDescriptions", "member");
	     d && error == 0; d = kiln_xml_next(d)) {
		kiln_target t;
		char state[32], reason[96], desc[KILN_NAME_MAX];
		char *s;

		memset(&t, 0, sizeof(t));
		if ((error = kiln_xml_copy(t.instance_id, sizeof(t.instance_id), d, "Target/Id")) < 0 ||
		    (error = kiln_xml_copy(state, sizeof(state), d, "TargetHealth/State")) < 0 ||
		    (error = kiln_xml_copy(reason, sizeof(reason), d, "TargetHealth/Reason")) < 0)
			break;
		s = kiln_xml_text(d, "TargetHealth/Description");
		snprintf(desc, sizeof(desc), "%s", s ? s : "");
		free(s);
		/* "unhealthy.draining" (a draining target that also fails checks) is still draining */
		t.health = !strcmp(state, "unhealthy.draining") ? KILN_HEALTH_DRAINING : kiln_health_parse(state);
		if (reason[0] || desc[0])
			snprintf(t.reason, sizeof(t.reason), "%s%s%s", reason, reason[0] && desc[0] ? ": " : "", desc);
		error = kiln_target_list_add(out, &t);
	}
	kiln_xml_free(x);
	return error;
}
