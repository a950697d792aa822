/*
 * xml.h: reading the XML that EC2, ELB, ELBv2 and STS answer with.
 *
 * Who calls: aws/http.c (error replies), and the typed calls in ec2.c,
 * elbv2.c, elb.c and sts.c (result documents).
 *
 * xml.c reads them itself (a strict subset of XML 1.0, UTF-8 only; it says
 * why libxml2 is no longer used): a document that declares a DOCTYPE or an
 * ENTITY is refused before any parsing and no entity other than XML's five
 * predefined ones is known, so neither a "billion laughs" body nor an
 * external entity can come from a peer; nesting is capped.
 *
 * Lookups go by local name and ignore namespaces: EC2 replies carry a
 * default namespace ("http://ec2.amazonaws.com/doc/2016-11-15/"), ELB
 * replies another or none, and kiln does not care which.
 *
 * Nodes are borrowed from their document and live as long as it does.
 */
#ifndef KILN_AWS_XML_H
#define KILN_AWS_XML_H

#include "core/buf.h"

typedef struct kiln_xml kiln_xml;
typedef struct kiln_xml_node kiln_xml_node; /* opaque; borrowed from its document */

struct kiln_aws_fault;

/* Parses a reply body; KILN_ERROR "cannot parse ...: ..." if it is not XML. */
int kiln_xml_parse(kiln_xml **out, const char *data, size_t len);
void kiln_xml_free(kiln_xml *doc);

const kiln_xml_node *kiln_xml_root(const kiln_xml *doc);
/* The element's local name ("DescribeInstancesResponse"). */
const char *kiln_xml_name(const kiln_xml_node *n);

/* The first child element named name (any element when name is NULL). */
const kiln_xml_node *kiln_xml_child(const kiln_xml_node *n, const char *name);
/* Follows a path of child names, "instancesSet/item"; NULL if any step is missing. */
const kiln_xml_node *kiln_xml_path(const kiln_xml_node *n, const char *path);
/* The next sibling element with the same local name as n. */
const kiln_xml_node *kiln_xml_next(const kiln_xml_node *n);

/*
 * Iterates the elements named item under the path in n:
 *   for (it = kiln_xml_first(r, "reservationSet", "item"); it; it = kiln_xml_next(it))
 */
const kiln_xml_node *kiln_xml_first(const kiln_xml_node *n, const char *path, const char *item);

/*
 * The text of the element at path under n (path NULL or "": n itself).
 * kiln_xml_text: a heap copy or NULL when absent (KILN_ENOMEM is recorded
 * if it could not be copied, so check kiln_error_last on NULL only when it
 * matters). kiln_xml_copy: into a fixed array, "" when absent; fails
 * with KILN_ERROR if the text does not fit (a reply is never cut short
 * silently).
 */
char *kiln_xml_text(const kiln_xml_node *n, const char *path);
int kiln_xml_copy(char *out, size_t size, const kiln_xml_node *n, const char *path);
/* "true" -> true; absent or anything else -> false. */
bool kiln_xml_bool(const kiln_xml_node *n, const char *path);
/* The integer at path, or def when absent or not an integer. */
int64_t kiln_xml_int(const kiln_xml_node *n, const char *path, int64_t def);

/*
 * Reads an AWS error reply of either shape:
 *   EC2: <Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>
 *   ELB/ELBv2/STS: <ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/></ErrorResponse>
 *   (and moto's authentication failures, <ErrorResponse><Errors><Error>...)
 * Fills out's code, message and request id (those it finds). Returns 0 if
 * body is such a document, KILN_ENOTFOUND (no message set) if it is not.
 */
int kiln_xml_parse_fault(struct kiln_aws_fault *out, const char *body, size_t len);

#endif
