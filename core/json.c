#include "core/json.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/fs.h"

struct entry {
	const json_t *parent;
	const char *key; /* jansson's own key storage, or NULL for arrays */
	size_t index;
	const json_t *value; /* for finding a container's own position */
	kiln_pos key_pos;
	kiln_pos val_pos;
};

struct kiln_jdoc {
	char *name;
	char *text;
	size_t len;
	json_t *root;
	kiln_pos root_pos;
	struct entry *entries;
	size_t n, cap;
};

struct scanner {
	const char *p, *end;
	int line, col;
};

static void sc_advance(struct scanner *sc)
{
	if (sc->p >= sc->end)
		return;
	if (*sc->p == '\n') {
		sc->line++;
		sc->col = 1;
	} else if (((unsigned char)sc->p[1] & 0xC0) != 0x80 || sc->p + 1 >= sc->end) {
		/* count a character when its last byte is passed */
		sc->col++;
	}
	sc->p++;
}

static void sc_ws(struct scanner *sc)
{
	while (sc->p < sc->end && (*sc->p == ' ' || *sc->p == '\t' || *sc->p == '\n' || *sc->p == '\r'))
		sc_advance(sc);
}

static void sc_string(struct scanner *sc)
{
	sc_advance(sc); /* opening quote */
	while (sc->p < sc->end && *sc->p != '"') {
		if (*sc->p == '\\')
			sc_advance(sc);
		sc_advance(sc);
	}
	sc_advance(sc);
}

static kiln_pos sc_pos(const struct scanner *sc)
{
	kiln_pos pos = { sc->line, sc->col };
	return pos;
}

static int add_entry(kiln_jdoc *doc, const json_t *parent, const char *key, size_t index,
		     const json_t *value, kiln_pos key_pos, kiln_pos val_pos)
{
	if (doc->n == doc->cap) {
		size_t cap = doc->cap ? doc->cap * 2 : 64;
		struct entry *e = realloc(doc->entries, cap * sizeof(*e));
		if (!e)
			return kiln_error_set(KILN_ENOMEM, "out of memory");
		doc->entries = e;
		doc->cap = cap;
	}
	doc->entries[doc->n].parent = parent;
	doc->entries[doc->n].key = key;
	doc->entries[doc->n].index = index;
	doc->entries[doc->n].value = value;
	doc->entries[doc->n].key_pos = key_pos;
	doc->entries[doc->n].val_pos = val_pos;
	doc->n++;
	return 0;
}

/* Walks the text of v (sc is at its first character) in step with jansson's tree. */
static int walk(kiln_jdoc *doc, struct scanner *sc, json_t *v, int depth)
{
	int error;

	if (depth > 256)
		return kiln_error_set(KILN_EINVALID, "%s: nested too deeply", doc->name);
	if (json_is_object(v)) {
		void *it = json_object_iter(v);
		sc_advance(sc); /* { */
		for (; it; it = json_object_iter_next(v, it)) {
			kiln_pos kp, vp;
			sc_ws(sc);
			if (*sc->p == ',') {
				sc_advance(sc);
				sc_ws(sc);
			}
			kp = sc_pos(sc);
			sc_string(sc);
			sc_ws(sc);
			sc_advance(sc); /* : */
			sc_ws(sc);
			vp = sc_pos(sc);
			if ((error = add_entry(doc, v, json_object_iter_key(it), 0,
					       json_object_iter_value(it), kp, vp)) < 0)
				return error;
			if ((error = walk(doc, sc, json_object_iter_value(it), depth + 1)) < 0)
				return error;
		}
		sc_ws(sc);
		sc_advance(sc); /* } */
	} else if (json_is_array(v)) {
		size_t i;
		sc_advance(sc); /* [ */
		for (i = 0; i < json_array_size(v); i++) {
			kiln_pos vp;
			sc_ws(sc);
			if (*sc->p == ',') {
				sc_advance(sc);
				sc_ws(sc);
			}
			vp = sc_pos(sc);
			if ((error = add_entry(doc, v, NULL, i, json_array_get(v, i), vp, vp)) < 0)
				return error;
			if ((error = walk(doc, sc, json_array_get(v, i), depth + 1)) < 0)
				return error;
		}
		sc_ws(sc);
		sc_advance(sc); /* ] */
	} else if (json_is_string(v)) {
		sc_string(sc);
	} else {
		while (sc->p < sc->end && !strchr(",]} \t\r\n", *sc->p))
			sc_advance(sc);
	}
	return 0;
}

static void one_line(char *out, size_t size, const char *in);

int kiln_jdoc_parse(kiln_jdoc **out, const char *name, const char *text, size_t len)
{
	kiln_jdoc *doc;
	json_error_t jerr;
	struct scanner sc;
	const char *nul;
	int error = KILN_ENOMEM;

	*out = NULL;
	if (!(doc = calloc(1, sizeof(*doc))))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	if (!(doc->name = kiln_strdup(name)) || !(doc->text = malloc(len + 1)))
		goto fail;
	memcpy(doc->text, text, len);
	doc->text[len] = '\0';
	doc->len = len;

	/*
	 * A raw NUL byte is never JSON ("\u0000" is, and JSON_ALLOW_NUL takes
	 * it), but jansson 2.14 skips one that follows a number, and then the
	 * positions below would not match the tree (found by tests/fuzz/fuzz_jdoc).
	 */
	if ((nul = memchr(doc->text, '\0', len))) {
		sc.p = doc->text;
		sc.end = nul;
		sc.line = sc.col = 1;
		while (sc.p < sc.end)
			sc_advance(&sc);
		error = kiln_error_set(KILN_EINVALID, "%s:%d:%d: NUL byte in the text", name, sc.line,
				       sc.col);
		goto fail;
	}

	doc->root = json_loadb(doc->text, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	if (!doc->root) {
		/*
		 * jansson quotes the bad token as it stood, which may run across
		 * a line break ("near '"a\\<newline>'"; found by fuzz/fleet)
		 */
		char why[6 * JSON_ERROR_TEXT_LENGTH];
		one_line(why, sizeof(why), jerr.text);
		error = kiln_error_set(KILN_EINVALID, "%s:%d:%d: %s", name,
				       jerr.line > 0 ? jerr.line : 1,
				       jerr.column > 0 ? jerr.column : 1, why);
		goto fail;
	}
	sc.p = doc->text;
	sc.end = doc->text + len;
	sc.line = sc.col = 1;
	sc_ws(&sc);
	doc->root_pos = sc_pos(&sc);
	if ((error = walk(doc, &sc, doc->root, 0)) < 0)
		goto fail;
	*out = doc;
	return 0;
fail:
	if (error == KILN_ENOMEM)
		kiln_error_set(KILN_ENOMEM, "out of memory reading %s", name);
	kiln_jdoc_free(doc);
	return error;
}

int kiln_jdoc_load(kiln_jdoc **out, const char *path)
{
	kiln_buf b = KILN_BUF_INIT;
	int error;

	*out = NULL;
	kiln_buf_init(&b, 16 << 20);
	if ((error = kiln_read_file(&b, path)) < 0)
		return error;
	error = kiln_jdoc_parse(out, path, b.ptr, b.len);
	kiln_buf_release(&b);
	return error;
}

void kiln_jdoc_free(kiln_jdoc *doc)
{
	if (!doc)
		return;
	json_decref(doc->root);
	free(doc->entries);
	free(doc->text);
	free(doc->name);
	free(doc);
}

json_t *kiln_jdoc_root(const kiln_jdoc *doc)
{
	return doc->root;
}

const char *kiln_jdoc_name(const kiln_jdoc *doc)
{
	return doc->name;
}

const char *kiln_jdoc_text(const kiln_jdoc *doc, size_t *len)
{
	if (len)
		*len = doc->len;
	return doc->text;
}

static const struct entry *find(const kiln_jdoc *doc, const json_t *container, const char *key,
				size_t index)
{
	size_t i;
	for (i = 0; i < doc->n; i++) {
		const struct entry *e = &doc->entries[i];
		if (e->parent != container)
			continue;
		if (key ? (e->key && !strcmp(e->key, key)) : (!e->key && e->index == index))
			return e;
	}
	return NULL;
}

kiln_pos kiln_jdoc_value_pos(const kiln_jdoc *doc, const json_t *container, const char *key,
			     size_t index)
{
	const struct entry *e;
	kiln_pos none = { 1, 1 };
	if (!container)
		return doc->root_pos;
	e = find(doc, container, key, index);
	if (!e) {
		/* a missing member: point at its would-be container */
		size_t i;
		if (container == doc->root)
			return doc->root_pos;
		for (i = 0; i < doc->n; i++)
			if (doc->entries[i].value == container)
				return doc->entries[i].val_pos;
		return none;
	}
	return e->val_pos;
}

kiln_pos kiln_jdoc_key_pos(const kiln_jdoc *doc, const json_t *object, const char *key)
{
	const struct entry *e = find(doc, object, key, 0);
	if (!e)
		return kiln_jdoc_value_pos(doc, object, key, 0);
	return e->key_pos;
}

/*
 * Messages quote the file's keys and values, which may hold any character
 * JSON can escape: control characters are written as JSON would write them
 * ("\n", "\u001b"), so a message stays one line (error.h) and says what the
 * file says.
 */
static void one_line(char *out, size_t size, const char *in)
{
	size_t o = 0;
	for (; *in && o + 1 < size; in++) {
		unsigned char c = (unsigned char)*in;
		char esc[8];
		size_t n;
		if (c >= 0x20 && c != 0x7f) {
			out[o++] = (char)c;
			continue;
		}
		if (c == '\n' || c == '\r' || c == '\t')
			snprintf(esc, sizeof(esc), "\\%c", c == '\n' ? 'n' : c == '\r' ? 'r' : 't');
		else
			snprintf(esc, sizeof(esc), "\\u%04x", c);
		n = strlen(esc);
		if (o + n + 1 > size)
			break;
		memcpy(out + o, esc, n);
		o += n;
	}
	out[o] = '\0';
}

int kiln_jdoc_error_at(const kiln_jdoc *doc, kiln_pos pos, const char *fmt, ...)
{
	char msg[768], line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	one_line(line, sizeof(line), msg);
	return kiln_error_set(KILN_EINVALID, "%s:%d:%d: %s", doc->name, pos.line, pos.col, line);
}

int kiln_jdoc_error(const kiln_jdoc *doc, const json_t *container, const char *key, size_t index,
		    const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return kiln_jdoc_error_at(doc, kiln_jdoc_value_pos(doc, container, key, index), "%s", msg);
}

size_t kiln_edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i, j;
	size_t row[65];

	if (lb > 64 || la > 64)
		return SIZE_MAX;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		size_t diag = row[0], tmp;
		row[0] = i;
		for (j = 1; j <= lb; j++) {
			size_t best = diag + (a[i - 1] != b[j - 1]);
			best = KILN_MIN(best, row[j] + 1);
			best = KILN_MIN(best, row[j - 1] + 1);
			tmp = row[j];
			row[j] = best;
			diag = tmp;
		}
	}
	return row[lb];
}

int kiln_jdoc_check_keys(const kiln_jdoc *doc, const json_t *obj, const char *what,
			 const char *const *allowed)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)obj, key, v) {
		const char *best = NULL;
		size_t best_d = SIZE_MAX, i;
		(void)v;
		for (i = 0; allowed[i]; i++) {
			size_t d;
			if (!strcmp(allowed[i], key))
				break;
			d = kiln_edit_distance(key, allowed[i]);
			if (d < best_d) {
				best_d = d;
				best = allowed[i];
			}
		}
		if (allowed[i])
			continue;
		if (best && best_d <= 3 && best_d < strlen(key))
			return kiln_jdoc_error_at(doc, kiln_jdoc_key_pos(doc, obj, key),
						  "unknown key \"%s\" in %s (did you mean \"%s\"?)",
						  key, what, best);
		return kiln_jdoc_error_at(doc, kiln_jdoc_key_pos(doc, obj, key),
					  "unknown key \"%s\" in %s", key, what);
	}
	return 0;
}

const char *kiln_json_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	case JSON_NULL: return "null";
	}
	return "a value";
}

/* Fetches obj[key]; 1 if present, 0 if absent and optional, <0 if absent and required. */
static int member(const kiln_jdoc *doc, const json_t *obj, const char *key, bool required,
		  const char *want, json_t **v)
{
	*v = json_object_get(obj, key);
	if (*v)
		return 1;
	if (required)
		return kiln_jdoc_error(doc, obj, key, 0, "missing required key \"%s\" (%s)", key, want);
	return 0;
}

static int wrong_type(const kiln_jdoc *doc, const json_t *obj, const char *key, const json_t *v,
		      const char *want)
{
	return kiln_jdoc_error(doc, obj, key, 0, "\"%s\" must be %s, not %s", key, want,
			       kiln_json_type_name(v));
}

/*
 * The text takes "\u0000" (JSON_ALLOW_NUL, above), but every caller reads a
 * string as a C string, which would silently end at it ("web\u0000x" read
 * as "web"; found by tests/fuzz/fuzz_fleet): refuse it where it stands.
 */
static bool has_nul(const json_t *v)
{
	return strlen(json_string_value(v)) != json_string_length(v);
}

int kiln_jdoc_get_string(const kiln_jdoc *doc, const json_t *obj, const char *key,
			 bool required, const char **out)
{
	json_t *v;
	int rc = member(doc, obj, key, required, "a string", &v);
	if (rc <= 0)
		return rc;
	if (!json_is_string(v))
		return wrong_type(doc, obj, key, v, "a string");
	if (has_nul(v))
		return kiln_jdoc_error(doc, obj, key, 0, "\"%s\" must not contain a NUL character (\\u0000)", key);
	*out = json_string_value(v);
	return 0;
}

int kiln_jdoc_get_int(const kiln_jdoc *doc, const json_t *obj, const char *key, bool required,
		      int64_t min, int64_t max, int64_t *out)
{
	json_t *v;
	json_int_t i;
	int rc = member(doc, obj, key, required, "an integer", &v);
	if (rc <= 0)
		return rc;
	if (!json_is_integer(v))
		return wrong_type(doc, obj, key, v, "an integer");
	i = json_integer_value(v);
	if (i < min || i > max)
		return kiln_jdoc_error(doc, obj, key, 0,
				       "\"%s\" must be between %lld and %lld, not %lld", key,
				       (long long)min, (long long)max, (long long)i);
	*out = i;
	return 0;
}

int kiln_jdoc_get_bool(const kiln_jdoc *doc, const json_t *obj, const char *key, bool required,
		       bool *out)
{
	json_t *v;
	int rc = member(doc, obj, key, required, "true or false", &v);
	if (rc <= 0)
		return rc;
	if (!json_is_boolean(v))
		return wrong_type(doc, obj, key, v, "true or false");
	*out = json_is_true(v);
	return 0;
}

int kiln_jdoc_get_object(const kiln_jdoc *doc, const json_t *obj, const char *key,
			 bool required, json_t **out)
{
	json_t *v;
	int rc = member(doc, obj, key, required, "an object", &v);
	if (rc <= 0)
		return rc;
	if (!json_is_object(v))
		return wrong_type(doc, obj, key, v, "an object");
	*out = v;
	return 0;
}

int kiln_jdoc_get_array(const kiln_jdoc *doc, const json_t *obj, const char *key, bool required,
			json_t **out)
{
	json_t *v;
	int rc = member(doc, obj, key, required, "an array", &v);
	if (rc <= 0)
		return rc;
	if (!json_is_array(v))
		return wrong_type(doc, obj, key, v, "an array");
	*out = v;
	return 0;
}

int kiln_jdoc_get_string_map(const kiln_jdoc *doc, const json_t *obj, const char *key,
			     json_t **out)
{
	json_t *m = NULL, *v;
	const char *k;
	int rc;

	if ((rc = kiln_jdoc_get_object(doc, obj, key, false, &m)) < 0 || !json_object_get(obj, key))
		return rc;
	json_object_foreach(m, k, v) {
		if (!json_is_string(v))
			return kiln_jdoc_error(doc, m, k, 0, "\"%s\" in \"%s\" must be a string, not %s",
					       k, key, kiln_json_type_name(v));
		if (has_nul(v))
			return kiln_jdoc_error(doc, m, k, 0,
					       "\"%s\" in \"%s\" must not contain a NUL character (\\u0000)", k, key);
	}
	*out = m;
	return 0;
}

int kiln_jdoc_get_string_array(const kiln_jdoc *doc, const json_t *obj, const char *key,
			       bool required, json_t **out)
{
	json_t *a = NULL, *v;
	size_t i;
	int rc;

	if ((rc = kiln_jdoc_get_array(doc, obj, key, required, &a)) < 0 || !json_object_get(obj, key))
		return rc;
	json_array_foreach(a, i, v) {
		if (!json_is_string(v))
			return kiln_jdoc_error(doc, a, NULL, i,
					       "element %zu of \"%s\" must be a string, not %s", i + 1,
					       key, kiln_json_type_name(v));
		if (has_nul(v))
			return kiln_jdoc_error(doc, a, NULL, i,
					       "element %zu of \"%s\" must not contain a NUL character (\\u0000)",
					       i + 1, key);
	}
	*out = a;
	return 0;
}
