/*
 * fuzz_jdoc: core/json.c, the positioned JSON documents that templates and
 * fleet files are read into.
 *
 * jansson parses; json.c's own scanner walks the same text to record where
 * every key and value starts. The scanner is the part that can go wrong
 * on odd input (escapes, multi-byte characters, nesting), so beyond "no
 * crash" this checks that every recorded position points at the first
 * character of the value it belongs to ('{' for an object, '"' for a
 * string and for a key ...). Then every typed getter and check_keys run
 * over every member of the tree, as the template and fleet checks will.
 */
#include "core/error.h"
#include "core/json.h"
#include "tests/fuzz/fuzz.h"

#define NAME "fuzz.json"

/* Keys of templates and fleet files, so check_keys both passes and fails. */
static const char *const allowed[] = {
	"name", "source", "provisioners", "type", "inline", "tags", "aws", "local", "region",
	"instance_type", "desired", "batch_size", "retire", "health_timeout_s", NULL,
};

/* The byte offset of a 1-based line and column (columns count UTF-8 characters). */
static size_t offset_of(const char *text, size_t len, kiln_pos pos)
{
	size_t off = 0;
	int line = 1, col = 1;

	FUZZ_CHECK(pos.line >= 1 && pos.col >= 1);
	while (line < pos.line) {
		const char *nl = memchr(text + off, '\n', len - off);
		FUZZ_CHECK(nl != NULL);
		off = (size_t)(nl - text) + 1;
		line++;
	}
	while (col < pos.col) {
		FUZZ_CHECK(off < len && text[off] != '\n');
		off++;
		while (off < len && ((unsigned char)text[off] & 0xC0) == 0x80)
			off++;
		col++;
	}
	FUZZ_CHECK(off < len);
	return off;
}

static void check_value_at(const kiln_jdoc *doc, kiln_pos pos, const json_t *v)
{
	size_t len;
	const char *text = kiln_jdoc_text(doc, &len);
	char c = text[offset_of(text, len, pos)];

	switch (json_typeof(v)) {
	case JSON_OBJECT: FUZZ_CHECK(c == '{'); break;
	case JSON_ARRAY: FUZZ_CHECK(c == '['); break;
	case JSON_STRING: FUZZ_CHECK(c == '"'); break;
	case JSON_TRUE: FUZZ_CHECK(c == 't'); break;
	case JSON_FALSE: FUZZ_CHECK(c == 'f'); break;
	case JSON_NULL: FUZZ_CHECK(c == 'n'); break;
	case JSON_INTEGER:
	case JSON_REAL: FUZZ_CHECK(c == '-' || (c >= '0' && c <= '9')); break;
	}
}

/* A getter either succeeds or fails with a positioned message naming the document. */
static void check_rc(int rc, bool ok)
{
	if (ok) {
		FUZZ_CHECK(rc == 0);
	} else {
		FUZZ_CHECK(rc == KILN_EINVALID && kiln_error_last()->code == KILN_EINVALID);
		FUZZ_CHECK(strncmp(kiln_error_last()->message, NAME ":", strlen(NAME ":")) == 0);
		FUZZ_CHECK(!strchr(kiln_error_last()->message, '\n'));
	}
}

/* a string the getters hand out: no NUL inside ("\u0000" is refused, positioned) */
static bool c_string(const json_t *v)
{
	return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v);
}

static bool all_strings(const json_t *v)
{
	const char *k;
	json_t *m;
	size_t i;

	if (json_is_object(v)) {
		json_object_foreach((json_t *)v, k, m)
			if (!c_string(m))
				return false;
	} else {
		json_array_foreach(v, i, m)
			if (!c_string(m))
				return false;
	}
	return true;
}

static void check_getters(const kiln_jdoc *doc, const json_t *obj, const char *key, const json_t *m)
{
	const char *s = NULL;
	int64_t i = -7;
	bool b = false;
	json_t *o = NULL;

	check_rc(kiln_jdoc_get_string(doc, obj, key, true, &s), c_string(m));
	FUZZ_CHECK(!c_string(m) || s == json_string_value(m));
	check_rc(kiln_jdoc_get_int(doc, obj, key, true, -1000, 1000, &i),
		 json_is_integer(m) && json_integer_value(m) >= -1000 && json_integer_value(m) <= 1000);
	FUZZ_CHECK(i == -7 || (i >= -1000 && i <= 1000));
	check_rc(kiln_jdoc_get_bool(doc, obj, key, true, &b), json_is_boolean(m));
	check_rc(kiln_jdoc_get_object(doc, obj, key, true, &o), json_is_object(m));
	check_rc(kiln_jdoc_get_array(doc, obj, key, true, &o), json_is_array(m));
	check_rc(kiln_jdoc_get_string_map(doc, obj, key, &o), json_is_object(m) && all_strings(m));
	check_rc(kiln_jdoc_get_string_array(doc, obj, key, false, &o),
		 json_is_array(m) && all_strings(m));
}

static void walk(const kiln_jdoc *doc, const json_t *v)
{
	const char *key;
	json_t *m;
	size_t i;

	if (json_is_object(v)) {
		const char *s = "untouched";
		size_t len;
		const char *text = kiln_jdoc_text(doc, &len);
		int rc = kiln_jdoc_check_keys(doc, v, "object", allowed);

		check_rc(rc, rc == 0);
		json_object_foreach((json_t *)v, key, m) {
			kiln_pos kp = kiln_jdoc_key_pos(doc, v, key);
			FUZZ_CHECK(text[offset_of(text, len, kp)] == '"');
			check_value_at(doc, kiln_jdoc_value_pos(doc, v, key, 0), m);
			check_getters(doc, v, key, m);
			walk(doc, m);
		}
		/* an absent key: optional leaves *out alone, required fails */
		check_rc(kiln_jdoc_get_string(doc, v, "\x01 absent", false, &s), true);
		FUZZ_CHECK(strcmp(s, "untouched") == 0);
		check_rc(kiln_jdoc_get_object(doc, v, "\x01 absent", true, &m), false);
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, m) {
			check_value_at(doc, kiln_jdoc_value_pos(doc, v, NULL, i), m);
			walk(doc, m);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	kiln_jdoc *doc = NULL;
	size_t len;

	if (kiln_jdoc_parse(&doc, NAME, (const char *)data, size) < 0) {
		FUZZ_CHECK(doc == NULL);
		check_rc(kiln_error_last()->code, false);
		return 0;
	}
	FUZZ_CHECK(memcmp(kiln_jdoc_text(doc, &len), data, size) == 0 && len == size);
	FUZZ_CHECK(strcmp(kiln_jdoc_name(doc), NAME) == 0);
	check_value_at(doc, kiln_jdoc_value_pos(doc, NULL, NULL, 0), kiln_jdoc_root(doc));
	check_rc(kiln_jdoc_error(doc, NULL, NULL, 0, "%s", "the root"), false);
	walk(doc, kiln_jdoc_root(doc));
	kiln_jdoc_free(doc);
	return 0;
}
