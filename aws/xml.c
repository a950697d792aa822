/*
 * xml.c: a small, strict reader for the XML that AWS answers with.
 *
 * Why not libxml2: kiln used it for exactly this (parse a reply, walk
 * child elements by local name, read text), and linking it cost every kiln
 * process ~2.2 MB of resident memory before main() (libxml2 pulls in ICU
 * and, through ICU, libstdc++, whose load-time initialisation touches
 * their pages) plus ~0.7 MB more once it parsed: a quarter of `kiln
 * build`'s peak RSS (bench/packer-vs-kiln.sh). The subset AWS uses is
 * small, so it is read here instead.
 *
 * What is accepted (XML 1.0, UTF-8 only): an optional UTF-8 BOM; the XML
 * declaration (its encoding, if named, must be UTF-8 or US-ASCII);
 * comments and processing instructions anywhere markup may be; one root
 * element; attributes (checked for form, not kept: no caller reads them);
 * text with the five predefined entities and character references;
 * CDATA sections (read as text, like XML_PARSE_NOCDATA did); line ends
 * normalised to "\n". Names keep only their local part (after the last
 * ':'), which is how lookups ignore namespaces.
 *
 * What is refused: a DOCTYPE or ENTITY declaration anywhere (before any
 * parsing, so no "billion laughs" and no external entity); any other
 * entity reference; mismatched or unclosed tags; text outside the root;
 * invalid UTF-8, NUL and other control characters; nesting deeper than
 * XML_DEPTH_MAX. The tree lives in arena blocks freed together; a reply
 * is at most what the HTTP layer's capped buffer let in, and the tree is
 * a small multiple of it.
 */
#include "aws/xml.h"

#include <strings.h>

#include "aws/http.h"
#include "core/error.h"

#define XML_DEPTH_MAX 256          /* AWS replies nest ~10 deep */
#define ARENA_BLOCK ((size_t)16384) /* most replies fit in one or two */

struct kiln_xml_node {
	const char *name;           /* local name; NULL for a text node */
	const char *text;           /* a text node's characters */
	size_t text_len;
	struct kiln_xml_node *parent;
	struct kiln_xml_node *children, *last_child;
	struct kiln_xml_node *next;
};

typedef struct arena_block {
	struct arena_block *prev;
	size_t used, size;
	void *data[]; /* size bytes; nodes hold only pointers and sizes */
} arena_block;

struct kiln_xml {
	arena_block *blocks;
	kiln_xml_node *root;
};

typedef struct parser {
	kiln_xml *doc;
	const char *start, *p, *end;
	const char *why; /* the first error, a static string */
	const char *err_at;
} parser;

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

static void *arena_alloc(kiln_xml *doc, size_t size)
{
	arena_block *b = doc->blocks;
	void *p;

	size = (size + sizeof(void *) - 1) & ~(sizeof(void *) - 1);
	if (!b || b->size - b->used < size) {
		size_t bsize = size > ARENA_BLOCK ? size : ARENA_BLOCK;
		if (!(b = malloc(sizeof(*b) + bsize)))
			return NULL;
		b->prev = doc->blocks;
		b->used = 0;
		b->size = bsize;
		doc->blocks = b;
	}
	p = (char *)b->data + b->used;
	b->used += size;
	return p;
}

static int fail(parser *ps, const char *why)
{
	if (!ps->why) {
		ps->why = why;
		ps->err_at = ps->p;
	}
	return -1;
}

static bool at(const parser *ps, const char *s)
{
	size_t n = strlen(s);
	return (size_t)(ps->end - ps->p) >= n && !memcmp(ps->p, s, n);
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void skip_space(parser *ps)
{
	while (ps->p < ps->end && is_space(*ps->p))
		ps->p++;
}

/*
 * The length of the UTF-8 sequence at p (at most n bytes available) if it
 * is a well-formed character XML allows, else 0 (overlong forms,
 * surrogates, > U+10FFFF, controls other than tab/LF/CR, U+FFFE/U+FFFF).
 * *cp gets the code point.
 */
static size_t utf8_char(const char *p, size_t n, uint32_t *cp)
{
	const unsigned char *s = (const unsigned char *)p;
	uint32_t c;
	size_t len, i;

	if (!n)
		return 0;
	if (s[0] < 0x80) {
		c = s[0];
		len = 1;
	} else if ((s[0] & 0xE0) == 0xC0) {
		c = s[0] & 0x1F;
		len = 2;
	} else if ((s[0] & 0xF0) == 0xE0) {
		c = s[0] & 0x0F;
		len = 3;
	} else if ((s[0] & 0xF8) == 0xF0) {
		c = s[0] & 0x07;
		len = 4;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3F);
	}
	if ((len == 2 && c < 0x80) || (len == 3 && c < 0x800) || (len == 4 && c < 0x10000))
		return 0;
	if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
		return 0;
	if ((c >= 0xD800 && c <= 0xDFFF) || c == 0xFFFE || c == 0xFFFF || c > 0x10FFFF)
		return 0;
	*cp = c;
	return len;
}

static bool name_start(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c == ':' || c >= 0x80;
}

static bool name_char(unsigned char c)
{
	return name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

/* A Name: ASCII by XML's rules, any non-ASCII character allowed (valid UTF-8). */
static int read_name(parser *ps, kiln_view *out)
{
	const char *s = ps->p;
	uint32_t cp;
	size_t n;

	if (ps->p >= ps->end || !name_start((unsigned char)*ps->p))
		return fail(ps, "a name was expected");
	while (ps->p < ps->end && name_char((unsigned char)*ps->p)) {
		if ((unsigned char)*ps->p < 0x80) {
			ps->p++;
			continue;
		}
		if (!(n = utf8_char(ps->p, (size_t)(ps->end - ps->p), &cp)))
			return fail(ps, "invalid UTF-8");
		ps->p += n;
	}
	out->ptr = s;
	out->len = (size_t)(ps->p - s);
	return 0;
}

static size_t utf8_put(char *out, uint32_t c)
{
	if (c < 0x80) {
		out[0] = (char)c;
		return 1;
	}
	if (c < 0x800) {
		out[0] = (char)(0xC0 | (c >> 6));
		out[1] = (char)(0x80 | (c & 0x3F));
		return 2;
	}
	if (c < 0x10000) {
		out[0] = (char)(0xE0 | (c >> 12));
		out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
		out[2] = (char)(0x80 | (c & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (c >> 18));
	out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
	out[3] = (char)(0x80 | (c & 0x3F));
	return 4;
}

/*
 * Reads a reference after '&' up to and including ';' into out (at most 4
 * bytes), returning its length, or -1.
 */
static int read_reference(parser *ps, char *out)
{
	static const struct {
		const char *name;
		char c;
	} predefined[] = { { "lt;", '<' }, { "gt;", '>' }, { "amp;", '&' }, { "quot;", '"' },
			   { "apos;", '\'' } };
	uint32_t c = 0, dummy;
	char enc[4];
	size_t i, digits = 0;

	ps->p++; /* '&' */
	if (ps->p < ps->end && *ps->p == '#') {
		bool hex = ps->p + 1 < ps->end && ps->p[1] == 'x';
		ps->p += hex ? 2 : 1;
		while (ps->p < ps->end && *ps->p != ';') {
			char d = *ps->p;
			unsigned v;
			if (d >= '0' && d <= '9')
				v = (unsigned)(d - '0');
			else if (hex && d >= 'a' && d <= 'f')
				v = (unsigned)(d - 'a' + 10);
			else if (hex && d >= 'A' && d <= 'F')
				v = (unsigned)(d - 'A' + 10);
			else
				return fail(ps, "a bad character reference");
			c = c * (hex ? 16 : 10) + v;
			if (c > 0x10FFFF)
				return fail(ps, "a character reference out of range");
			digits++;
			ps->p++;
		}
		if (ps->p >= ps->end || !digits)
			return fail(ps, "a bad character reference");
		ps->p++; /* ';' */
		/* the referenced character must itself be one XML allows */
		i = utf8_put(enc, c);
		if (utf8_char(enc, i, &dummy) != i)
			return fail(ps, "a character reference to a character XML forbids");
		memcpy(out, enc, i);
		return (int)i;
	}
	for (i = 0; i < KILN_ARRAY_SIZE(predefined); i++)
		if (at(ps, predefined[i].name)) {
			ps->p += strlen(predefined[i].name);
			out[0] = predefined[i].c;
			return 1;
		}
	return fail(ps, "an undefined entity");
}

static kiln_xml_node *new_node(parser *ps, kiln_xml_node *parent)
{
	kiln_xml_node *n = arena_alloc(ps->doc, sizeof(*n));
	if (!n) {
		fail(ps, "out of memory");
		return NULL;
	}
	memset(n, 0, sizeof(*n));
	n->parent = parent;
	if (parent) {
		if (parent->last_child)
			parent->last_child->next = n;
		else
			parent->children = n;
		parent->last_child = n;
	}
	return n;
}

/*
 * Character data up to the next '<' (or the end) as a text node of parent
 * (none is made for an empty run). Outside the root (parent NULL) only
 * white space is allowed.
 */
static int read_text(parser *ps, kiln_xml_node *parent)
{
	const char *s = ps->p;
	size_t raw = 0;
	char *out;
	size_t len = 0;
	uint32_t cp;
	kiln_xml_node *t;

	while (s + raw < ps->end && s[raw] != '<')
		raw++;
	if (!raw)
		return 0;
	if (!parent) {
		skip_space(ps);
		if (ps->p != s + raw)
			return fail(ps, "text outside the root element");
		return 0;
	}
	/* decoding never makes text longer: references shrink, CR LF becomes LF */
	if (!(out = arena_alloc(ps->doc, raw + 1)))
		return fail(ps, "out of memory");
	while (ps->p < s + raw) {
		char c = *ps->p;
		size_t n;
		if (c == '&') {
			int r = read_reference(ps, out + len);
			if (r < 0)
				return -1;
			if (ps->p > s + raw)
				return fail(ps, "a bad reference");
			len += (size_t)r;
		} else if (c == '\r') {
			out[len++] = '\n';
			ps->p++;
			if (ps->p < s + raw && *ps->p == '\n')
				ps->p++;
		} else if (c == '>' && ps->p - s >= 2 && ps->p[-1] == ']' && ps->p[-2] == ']') {
			return fail(ps, "']]>' in text");
		} else {
			if (!(n = utf8_char(ps->p, (size_t)(s + raw - ps->p), &cp)))
				return fail(ps, "invalid UTF-8 or a forbidden character");
			memcpy(out + len, ps->p, n);
			len += n;
			ps->p += n;
		}
	}
	out[len] = '\0';
	if (!(t = new_node(ps, parent)))
		return -1;
	t->text = out;
	t->text_len = len;
	return 0;
}

/* Checks characters (UTF-8, no control characters) from p up to stop. */
static int check_chars(parser *ps, const char *stop)
{
	uint32_t cp;
	size_t n;
	while (ps->p < stop) {
		if (!(n = utf8_char(ps->p, (size_t)(stop - ps->p), &cp)))
			return fail(ps, "invalid UTF-8 or a forbidden character");
		ps->p += n;
	}
	return 0;
}

/* Finds term from ps->p; NULL if absent. */
static const char *find(const parser *ps, const char *term)
{
	size_t n = strlen(term);
	const char *q;
	for (q = ps->p; (size_t)(ps->end - q) >= n; q++)
		if (*q == term[0] && !memcmp(q, term, n))
			return q;
	return NULL;
}

/*
 * "<!--" ... "-->", or a processing instruction "<?" Name (S ...)? "?>"
 * whose Name is not "xml" (ps->p at '<').
 */
static int skip_comment_or_pi(parser *ps)
{
	bool comment = at(ps, "<!--");
	const char *close;

	ps->p += comment ? 4 : 2;
	if (!comment) {
		kiln_view target;
		if (read_name(ps, &target) < 0)
			return -1;
		if (target.len == 3 && !strncasecmp(target.ptr, "xml", 3))
			return fail(ps, "an XML declaration not at the start");
		if (!at(ps, "?>") && (ps->p >= ps->end || !is_space(*ps->p)))
			return fail(ps, "a bad processing instruction");
	}
	if (!(close = find(ps, comment ? "--" : "?>")))
		return fail(ps, comment ? "an unterminated comment" : "an unterminated processing instruction");
	if (comment && (close + 2 >= ps->end || close[2] != '>'))
		return fail(ps, "'--' inside a comment");
	if (check_chars(ps, close) < 0)
		return -1;
	ps->p = close + (comment ? 3 : 2);
	return 0;
}

/* Attributes up to '>' or '/>'; *empty says which. */
static int read_attributes(parser *ps, bool *empty)
{
	kiln_view name;
	char quote, ref[4];

	for (;;) {
		bool spaced = ps->p < ps->end && is_space(*ps->p);
		skip_space(ps);
		if (ps->p >= ps->end)
			return fail(ps, "an unterminated start tag");
		if (*ps->p == '>' || at(ps, "/>")) {
			*empty = *ps->p == '/';
			ps->p += *empty ? 2 : 1;
			return 0;
		}
		if (!spaced)
			return fail(ps, "attributes must be separated by white space");
		if (read_name(ps, &name) < 0)
			return -1;
		skip_space(ps);
		if (ps->p >= ps->end || *ps->p != '=')
			return fail(ps, "'=' was expected after an attribute name");
		ps->p++;
		skip_space(ps);
		if (ps->p >= ps->end || (*ps->p != '"' && *ps->p != '\''))
			return fail(ps, "a quoted attribute value was expected");
		quote = *ps->p++;
		while (ps->p < ps->end && *ps->p != quote) {
			uint32_t cp;
			size_t n;
			if (*ps->p == '<')
				return fail(ps, "'<' in an attribute value");
			if (*ps->p == '&') {
				if (read_reference(ps, ref) < 0)
					return -1;
				continue;
			}
			if (!(n = utf8_char(ps->p, (size_t)(ps->end - ps->p), &cp)))
				return fail(ps, "invalid UTF-8 or a forbidden character");
			ps->p += n;
		}
		if (ps->p >= ps->end)
			return fail(ps, "an unterminated attribute value");
		ps->p++;
	}
}

static const char *local_part(kiln_view name, size_t *len)
{
	size_t i = name.len;
	while (i > 0 && name.ptr[i - 1] != ':')
		i--;
	*len = name.len - i;
	return name.ptr + i;
}

/* The root element and everything in it (ps->p at its '<'). */
static int read_element_tree(parser *ps)
{
	kiln_xml_node *cur = NULL;
	unsigned depth = 0;
	/* each open element's full name, to match its end tag */
	kiln_view open[XML_DEPTH_MAX];

	for (;;) {
		if (ps->p >= ps->end)
			return fail(ps, cur ? "an element is not closed" : "no root element");
		if (*ps->p != '<') {
			if (!cur)
				return fail(ps, "no root element");
			if (read_text(ps, cur) < 0)
				return -1;
			continue;
		}
		if (at(ps, "<!--") || at(ps, "<?")) {
			if (skip_comment_or_pi(ps) < 0)
				return -1;
		} else if (at(ps, "<![CDATA[")) {
			const char *close;
			kiln_xml_node *t;
			size_t len;
			if (!cur)
				return fail(ps, "CDATA outside the root element");
			ps->p += 9;
			if (!(close = find(ps, "]]>")))
				return fail(ps, "an unterminated CDATA section");
			{
				const char *s = ps->p;
				char *out;
				if (check_chars(ps, close) < 0)
					return -1;
				len = (size_t)(close - s);
				if (!(out = arena_alloc(ps->doc, len + 1)))
					return fail(ps, "out of memory");
				/* line ends are normalised in CDATA too */
				{
					size_t i, o = 0;
					for (i = 0; i < len; i++) {
						if (s[i] == '\r') {
							out[o++] = '\n';
							if (i + 1 < len && s[i + 1] == '\n')
								i++;
						} else {
							out[o++] = s[i];
						}
					}
					out[o] = '\0';
					len = o;
				}
				if (!(t = new_node(ps, cur)))
					return -1;
				t->text = out;
				t->text_len = len;
			}
			ps->p = close + 3;
		} else if (at(ps, "<!")) {
			return fail(ps, "a declaration is not allowed here");
		} else if (at(ps, "</")) {
			kiln_view name;
			if (!cur)
				return fail(ps, "an end tag without a start tag");
			ps->p += 2;
			if (read_name(ps, &name) < 0)
				return -1;
			if (name.len != open[depth - 1].len || memcmp(name.ptr, open[depth - 1].ptr, name.len))
				return fail(ps, "an end tag does not match its start tag");
			skip_space(ps);
			if (ps->p >= ps->end || *ps->p != '>')
				return fail(ps, "'>' was expected");
			ps->p++;
			depth--;
			cur = cur->parent;
			if (!cur)
				return 0;
		} else {
			kiln_view name;
			kiln_xml_node *n;
			const char *local;
			size_t local_len;
			char *copy;
			bool empty;
			ps->p++;
			if (read_name(ps, &name) < 0)
				return -1;
			if (depth == XML_DEPTH_MAX)
				return fail(ps, "elements nest too deep");
			local = local_part(name, &local_len);
			if (!local_len)
				return fail(ps, "an element name ends with ':'");
			if (!(copy = arena_alloc(ps->doc, local_len + 1)))
				return fail(ps, "out of memory");
			memcpy(copy, local, local_len);
			copy[local_len] = '\0';
			if (!(n = new_node(ps, cur)))
				return -1;
			n->name = copy;
			if (!cur)
				ps->doc->root = n;
			if (read_attributes(ps, &empty) < 0)
				return -1;
			if (empty) {
				if (!cur)
					return 0;
			} else {
				open[depth++] = name;
				cur = n;
			}
		}
	}
}

/* Eq and a quoted value of ASCII letters, digits, '.', '_', '-' (ps->p after the name). */
static int decl_value(parser *ps, kiln_view *out)
{
	char quote;
	skip_space(ps);
	if (ps->p >= ps->end || *ps->p != '=')
		return fail(ps, "a bad XML declaration");
	ps->p++;
	skip_space(ps);
	if (ps->p >= ps->end || (*ps->p != '"' && *ps->p != '\''))
		return fail(ps, "a bad XML declaration");
	quote = *ps->p++;
	out->ptr = ps->p;
	while (ps->p < ps->end && *ps->p != quote) {
		char c = *ps->p;
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return fail(ps, "a bad XML declaration");
		ps->p++;
	}
	if (ps->p >= ps->end)
		return fail(ps, "a bad XML declaration");
	out->len = (size_t)(ps->p - out->ptr);
	ps->p++;
	return 0;
}

static bool view_is(kiln_view v, const char *s)
{
	return v.len == strlen(s) && !strncasecmp(v.ptr, s, v.len);
}

/*
 * The XML declaration, as XML 1.0 writes it: version, then optionally
 * encoding (UTF-8 or its ASCII subset only) and standalone, in that order.
 */
static int read_declaration(parser *ps)
{
	static const char *const names[] = { "version", "encoding", "standalone" };
	kiln_view v;
	size_t i = 0;

	ps->p += 5; /* "<?xml" */
	for (;;) {
		bool spaced = ps->p < ps->end && is_space(*ps->p);
		skip_space(ps);
		if (at(ps, "?>")) {
			if (i == 0)
				return fail(ps, "an XML declaration without a version");
			ps->p += 2;
			return 0;
		}
		if (!spaced)
			return fail(ps, "a bad XML declaration");
		while (i < KILN_ARRAY_SIZE(names) && !at(ps, names[i]))
			if (i++ == 0)
				return fail(ps, "an XML declaration without a version");
		if (i == KILN_ARRAY_SIZE(names))
			return fail(ps, "a bad XML declaration");
		ps->p += strlen(names[i]);
		if (decl_value(ps, &v) < 0)
			return -1;
		if (i == 0 && (v.len < 2 || strncmp(v.ptr, "1.", 2) ||
			       strspn(v.ptr + 2, "0123456789") != v.len - 2))
			return fail(ps, "an XML version other than 1.x");
		if (i == 1 && !view_is(v, "utf-8") && !view_is(v, "utf8") && !view_is(v, "us-ascii"))
			return fail(ps, "an encoding other than UTF-8");
		if (i == 2 && !view_is(v, "yes") && !view_is(v, "no"))
			return fail(ps, "a bad XML declaration");
		i++;
	}
}

static int parse_document(parser *ps)
{
	if (at(ps, "\xEF\xBB\xBF"))
		ps->p += 3;
	if (at(ps, "<?xml") && ps->p + 5 < ps->end && (is_space(ps->p[5]) || ps->p[5] == '?') &&
	    read_declaration(ps) < 0)
		return -1;
	/* the prolog: white space, comments, processing instructions */
	for (;;) {
		skip_space(ps);
		if (at(ps, "<!--") || at(ps, "<?")) {
			if (skip_comment_or_pi(ps) < 0)
				return -1;
			continue;
		}
		break;
	}
	if (ps->p >= ps->end || *ps->p != '<' || at(ps, "<!") || at(ps, "</"))
		return fail(ps, "no root element");
	if (read_element_tree(ps) < 0)
		return -1;
	/* after the root: white space, comments, processing instructions */
	for (;;) {
		skip_space(ps);
		if (ps->p >= ps->end)
			return 0;
		if (at(ps, "<!--") || at(ps, "<?")) {
			if (skip_comment_or_pi(ps) < 0)
				return -1;
			continue;
		}
		return fail(ps, "extra content after the root element");
	}
}

static int line_of(const char *start, const char *pos)
{
	int line = 1;
	for (; start < pos; start++)
		if (*start == '\n')
			line++;
	return line;
}

int kiln_xml_parse(kiln_xml **out, const char *data, size_t len)
{
	parser ps;
	kiln_xml *x;

	*out = NULL;
	if (len > INT32_MAX)
		return kiln_error_set(KILN_ENOMEM, "cannot parse a reply of %zu bytes", len);
	/* AWS never sends a DTD; one in a reply can only be trouble */
	if (contains_ci(data, len, "<!doctype") || contains_ci(data, len, "<!entity"))
		return kiln_error_set(KILN_ERROR, "cannot parse the reply: it declares a DOCTYPE or an ENTITY");
	if (!(x = calloc(1, sizeof(*x))))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	memset(&ps, 0, sizeof(ps));
	ps.doc = x;
	ps.start = ps.p = data;
	ps.end = data + len;
	if (parse_document(&ps) < 0 || !x->root) {
		int line = line_of(data, ps.err_at ? ps.err_at : ps.p);
		bool oom = ps.why && !strcmp(ps.why, "out of memory");
		kiln_xml_free(x);
		if (oom)
			return kiln_error_set(KILN_ENOMEM, "out of memory");
		return kiln_error_set(KILN_ERROR, "cannot parse the reply as XML: %s (line %d)",
				      ps.why ? ps.why : "no root element", line);
	}
	*out = x;
	return 0;
}

void kiln_xml_free(kiln_xml *x)
{
	arena_block *b, *prev;
	if (!x)
		return;
	for (b = x->blocks; b; b = prev) {
		prev = b->prev;
		free(b);
	}
	free(x);
}

const kiln_xml_node *kiln_xml_root(const kiln_xml *x)
{
	return x ? x->root : NULL;
}

const char *kiln_xml_name(const kiln_xml_node *n)
{
	return n && n->name ? n->name : "";
}

static bool is_named(const kiln_xml_node *n, const char *name, size_t len)
{
	return n->name && (!name || (strlen(n->name) == len && !memcmp(n->name, name, len)));
}

static const kiln_xml_node *child_n(const kiln_xml_node *n, const char *name, size_t len)
{
	const kiln_xml_node *c;
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
	const kiln_xml_node *s;
	if (!n || !n->name)
		return NULL;
	for (s = n->next; s; s = s->next)
		if (is_named(s, n->name, strlen(n->name)))
			return s;
	return NULL;
}

const kiln_xml_node *kiln_xml_first(const kiln_xml_node *n, const char *path, const char *item)
{
	return kiln_xml_child(kiln_xml_path(n, path), item);
}

/*
 * The text of n and all its descendants in document order (libxml2's
 * xmlNodeGetContent), written to out when it is not NULL; returns the
 * length. Walks without recursion: the tree is at most XML_DEPTH_MAX deep,
 * but a loop needs no stack at all.
 */
static size_t content(const kiln_xml_node *n, char *out)
{
	const kiln_xml_node *c = n->children;
	size_t len = 0;

	if (!n->name) {
		if (out)
			memcpy(out, n->text, n->text_len);
		return n->text_len;
	}
	while (c) {
		if (!c->name) {
			if (out)
				memcpy(out + len, c->text, c->text_len);
			len += c->text_len;
		} else if (c->children) {
			c = c->children;
			continue;
		}
		while (!c->next && c->parent != n)
			c = c->parent;
		c = c->next;
	}
	return len;
}

char *kiln_xml_text(const kiln_xml_node *n, const char *path)
{
	const kiln_xml_node *at_node = kiln_xml_path(n, path);
	size_t len;
	char *s;

	if (!at_node)
		return NULL;
	len = content(at_node, NULL);
	if (!(s = malloc(len + 1))) {
		kiln_error_set(KILN_ENOMEM, "out of memory");
		return NULL;
	}
	content(at_node, s);
	s[len] = '\0';
	return s;
}

int kiln_xml_copy(char *out, size_t size, const kiln_xml_node *n, const char *path)
{
	const kiln_xml_node *at_node = kiln_xml_path(n, path);
	size_t len;

	out[0] = '\0';
	if (!at_node)
		return 0;
	len = content(at_node, NULL);
	if (len >= size)
		return kiln_error_set(KILN_ERROR, "reply field '%s' is %zu bytes long, more than %zu",
				      path && *path ? path : kiln_xml_name(at_node), len, size - 1);
	content(at_node, out);
	out[len] = '\0';
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
