/*
 * query.h: the AWS Query protocol's form body (EC2, ELB, ELBv2, STS).
 *
 * Who calls: aws/ec2.c, elbv2.c, elb.c and sts.c build one per call and
 * hand its text to kiln_aws_call (aws/http.h) as the POST body.
 *
 * The body is "Action=A&Version=V&Name=Value&...", every name and value
 * percent-encoded per RFC 3986 (unreserved characters A-Z a-z 0-9 - _ . ~
 * kept, everything else %XX in upper case, spaces as %20, never '+').
 * Lists are flattened the way the services expect:
 *
 *   EC2:     Filter.1.Name=tag:kiln:image  Filter.1.Value.1=web
 *            TagSpecification.1.ResourceType=instance
 *            TagSpecification.1.Tag.1.Key=k  TagSpecification.1.Tag.1.Value=v
 *            InstanceId.1=i-...  (1-based)
 *   ELB(v2): Targets.member.1.Id=i-...  Instances.member.1.InstanceId=i-...
 *
 * Errors are sticky, as in a FILE*: the add functions record the first
 * failure (out of memory, the body's cap) and later adds do nothing, so
 * a call builds its whole body and checks kiln_query_error once.
 */
#ifndef KILN_AWS_QUERY_H
#define KILN_AWS_QUERY_H

#include "core/buf.h"

typedef struct kiln_query {
	const char *action; /* borrowed: the name given to kiln_query_init */
	kiln_buf body;
	int error; /* 0, or the first add's failure (message already set) */
} kiln_query;

/* Query bodies kiln sends are small; a cap keeps a runaway list in check. */
#define KILN_QUERY_MAX ((size_t)1 << 20)

/* Starts "Action=action&Version=version". */
void kiln_query_init(kiln_query *q, const char *action, const char *version);
void kiln_query_release(kiln_query *q);

/* Adds name=value (both encoded). A NULL value adds nothing. */
void kiln_query_add(kiln_query *q, const char *name, const char *value);
/* Adds an integer or a boolean ("true"/"false"). */
void kiln_query_add_int(kiln_query *q, const char *name, int64_t value);
void kiln_query_add_bool(kiln_query *q, const char *name, bool value);
/* The name is formatted: kiln_query_addf(q, "i-1", "InstanceId.%zu", n). */
void kiln_query_addf(kiln_query *q, const char *value, const char *name_fmt, ...)
	KILN_PRINTF(3, 4);

/*
 * Adds prefix.1 ... prefix.N = values (EC2 flat lists: "InstanceId",
 * "GroupId"; ELB member lists: "Targets.member" with a suffix ".Id").
 * suffix may be NULL.
 */
void kiln_query_add_list(kiln_query *q, const char *prefix, const char *suffix,
			 const char *const *values, size_t n);

/* 0, or the first failure of an add (its message is kiln_error_last's). */
static inline int kiln_query_error(const kiln_query *q) { return q->error; }

/* The body as a view (valid until the next add or release). */
static inline kiln_view kiln_query_view(const kiln_query *q) { return kiln_view_buf(&q->body); }

struct kiln_aws_client;
struct kiln_xml;

/*
 * Sends q to service (aws/http.h's kiln_aws_call with flags) and parses
 * the reply; *out is the document, freed by the caller with kiln_xml_free.
 * Fails at once with q's sticky error if an add failed.
 */
int kiln_query_call(struct kiln_aws_client *c, int service, const kiln_query *q, unsigned flags,
		    struct kiln_xml **out);

/* RFC 3986 percent-encoding of s (unreserved kept) appended to out. */
int kiln_uri_encode(kiln_buf *out, const char *s, size_t len);

#endif
