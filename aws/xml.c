#include <libxml/parser.h>
#include <libxml/tree.h>

#include "aws/http.h"
#include "aws/xml.h"
#include "core/error.h"

struct kiln_xml {
	xmlDocPtr doc;
};

/* Case-insensitive search in a body that need not be NUL-terminated. */
static bool contains_ci(const char *data, size_t len, const char *needle)
{
	size_t n = strlen(needle), i, j;
	for (i = 0; n <= len && i <= len - n; i++) {
		for (j = 0; j < n; j++) {
			char a = data[i + j], b = needle[j];
			if (a >= 'A' && a <= 'Z')
				a = (char)(a - 'A' + 'a');
			if (a != b)
				break;
		}
		if (j == n)
			return true;
	}
	return false;
}

/*
 * libxml2 prints some errors (encoding ones: "input conversion failed")
 * through its generic handler even with XML_PARSE_NOERROR, and nothing
 * below cli/ prints: kiln reads them from xmlGetLastError instead.
 */
static void silent(void *ctx, const char *fmt, ...)
{
	(void)ctx;
	(void)fmt;
}

int kiln_xml_parse(kiln_xml **out, const char *data, size_t len)
{
	/*
	 * No XML_PARSE_NOENT (no entity substitution), no XML_PARSE_DTDLOAD,
	 * no XML_PARSE_HUGE (libxml2's own size limits stay on).
	 */
	const int opts = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
			 XML_PARSE_NOCDATA;
	kiln_xml *x;
	xmlDocPtr doc;

	*out = NULL;
	if (len > INT32_MAX)
		return kiln_error_set(KILN_ENOMEM, "cannot parse a reply of %zu bytes", len);
	/* AWS never sends a DTD; one in a reply can only be trouble */
	if (contains_ci(data, len, "<!doctype") || contains_ci(data, len, "<!entity"))
		return kiln_error_set(KILN_ERROR, "cannot parse the reply: it declares a DOCTYPE or an ENTITY");
	if (len == 0)
		return kiln_error_set(KILN_ERROR, "cannot parse the reply as XML: it is empty");
	/*
	 * The last error is libxml2's (per thread), not this parse's: a parse
	 * that fails without setting one would report the one before, from
	 * another reply, quoting its bytes (found by tests/fuzz/fuzz_aws_reply:
	 * an empty body's message quoted the previous reply).
	 */
	xmlResetLastError();
	xmlSetGenericErrorFunc(NULL, silent);
	doc = xmlReadMemory(data, (int)len, "reply.xml", NULL, opts);
	if (!doc || !xmlDocGetRootElement(doc)) {
		const xmlError *e = xmlGetLastError();
		char msg[200] = "not XML";
		if (e && e->message) {
			snprintf(msg, sizeof(msg), "%s", e->message);
			msg[strcspn(msg, "\r\n")] = '\0';
		}
		xmlFreeDoc(doc);
		return kiln_error_set(KILN_ERROR, "cannot parse the reply as XML: %s (line %d)", msg,
				      e ? e->line : 0);
	}
	if (!(x = calloc(1, sizeof(*x)))) {
		xmlFreeDoc(doc);
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	}
	x->doc = doc;
	*out = x;
	return 0;
}

void kiln_xml_free(kiln_xml *x)
{
	if (!x)
		return;
	xmlFreeDoc(x->doc);
	free(x);
}

const kiln_xml_node *kiln_xml_root(const kiln_xml *x)
{
	return x ? xmlDocGetRootElement(x->doc) : NULL;
}

const char *kiln_xml_name(const kiln_xml_node *n)
{
	return n ? (const char *)n->name : "";
}

static bool is_named(const xmlNode *n, const char *name, size_t len)
{
	return n->type == XML_ELEMENT_NODE &&
	       (!name || (strlen((const char *)n->name) == len && !memcmp(n->name, name, len)));
}

static const xmlNode *child_n(const xmlNode *n, const char *name, size_t len)
{
	const xmlNode *c;
	if (!n)
		return NULL;
	for (c = n->children; c; c = c->next)
		if (is_named(c, name, len))
			return c;
	return NULL;
}

const kiln_xml_node *kiln_xml_child(const kiln_xml_node *n, const char *name)
{
	return child_n(n, name, name ? strlen(name) : 0);
}

const kiln_xml_node *kiln_xml_path(const kiln_xml_node *n, const char *path)
{
	const char *p = path, *slash;
	if (!path || !*path)
		return n;
	while (n && *p) {
		slash = strchr(p, '/');
		n = child_n(n, p, slash ? (size_t)(slash - p) : strlen(p));
		if (!slash)
			break;
		p = slash + 1;
	}
	return n;
}

const kiln_xml_node *kiln_xml_next(const kiln_xml_node *n)
{
	const xmlNode *s;
	if (!n)
		return NULL;
	for (s = n->next; s; s = s->next)
		if (is_named(s, (const char *)n->name, strlen((const char *)n->name)))
			return s;
	return NULL;
}

const kiln_xml_node *kiln_xml_first(const kiln_xml_node *n, const char *path, const char *item)
{
	return kiln_xml_child(kiln_xml_path(n, path), item);
}

char *kiln_xml_text(const kiln_xml_node *n, const char *path)
{
	const xmlNode *at = kiln_xml_path(n, path);
	xmlChar *content;
	char *s;

	if (!at)
		return NULL;
	if (!(content = xmlNodeGetContent(at))) {
		kiln_error_set(KILN_ENOMEM, "out of memory");
		return NULL;
	}
	s = kiln_strdup((const char *)content);
	xmlFree(content);
	return s;
}

int kiln_xml_copy(char *out, size_t size, const kiln_xml_node *n, const char *path)
{
	const xmlNode *at = kiln_xml_path(n, path);
	xmlChar *content;
	size_t len;

	out[0] = '\0';
	if (!at)
		return 0;
	if (!(content = xmlNodeGetContent(at)))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	len = strlen((const char *)content);
	if (len >= size) {
		xmlFree(content);
		return kiln_error_set(KILN_ERROR, "reply field '%s' is %zu bytes long, more than %zu",
				      path && *path ? path : (const char *)at->name, len, size - 1);
	}
	memcpy(out, content, len + 1);
	xmlFree(content);
	return 0;
}

bool kiln_xml_bool(const kiln_xml_node *n, const char *path)
{
	char v[8];
	if (kiln_xml_copy(v, sizeof(v), n, path) < 0)
		return false;
	return !strcmp(v, "true");
}

int64_t kiln_xml_int(const kiln_xml_node *n, const char *path, int64_t def)
{
	char v[32];
	int64_t x;
	if (kiln_xml_copy(v, sizeof(v), n, path) < 0 || !v[0] ||
	    kiln_parse_i64(&x, v, INT64_MIN, INT64_MAX) < 0)
		return def;
	return x;
}

/* Copies text, cutting at the field's size: an error's words are for people. */
static void copy_cut(char *out, size_t size, const kiln_xml_node *n, const char *path)
{
	char *s = kiln_xml_text(n, path);
	size_t i;
	snprintf(out, size, "%s", s ? s : "");
	free(s);
	/* one line: a message with newlines would break the CLI's one-line errors */
	for (i = 0; out[i]; i++)
		if (out[i] == '\n' || out[i] == '\r' || out[i] == '\t')
			out[i] = ' ';
}

int kiln_xml_parse_fault(struct kiln_aws_fault *out, const char *body, size_t len)
{
	kiln_error saved;
	kiln_xml *x = NULL;
	const kiln_xml_node *root, *err;
	int error = KILN_ENOTFOUND;

	/* a body that is not XML is not an error: keep the caller's error state */
	kiln_error_save(&saved);
	if (kiln_xml_parse(&x, body, len) < 0) {
		kiln_error_restore(&saved);
		return KILN_ENOTFOUND;
	}
	root = kiln_xml_root(x);
	/*
	 * EC2 wraps its errors in <Errors>, ELB and STS do not; moto's
	 * authentication failures mix the two (<ErrorResponse><Errors><Error>),
	 * so either root takes either nesting.
	 */
	if (!strcmp(kiln_xml_name(root), "Response") || !strcmp(kiln_xml_name(root), "ErrorResponse")) {
		err = kiln_xml_child(root, "Error");
		if (!err)
			err = kiln_xml_path(root, "Errors/Error");
	} else {
		err = NULL;
	}
	if (err && kiln_xml_child(err, "Code")) {
		copy_cut(out->code, sizeof(out->code), err, "Code");
		copy_cut(out->message, sizeof(out->message), err, "Message");
		if (kiln_xml_child(root, "RequestID"))
			copy_cut(out->request_id, sizeof(out->request_id), root, "RequestID");
		else if (kiln_xml_child(root, "RequestId"))
			copy_cut(out->request_id, sizeof(out->request_id), root, "RequestId");
		error = 0;
	}
	kiln_xml_free(x);
	kiln_error_restore(&saved);
	return error;
}
