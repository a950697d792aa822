/*
 * json.h: JSON documents that remember where every key and value stood.
 *
 * jansson parses; a small scanner of ours walks the same text in the same
 * order and records the line and column of every key and value, so that a
 * template or fleet-file check can say "web.json:12:7: unknown key ...".
 * Objects keep insertion order (jansson >= 2.8) and duplicate keys are
 * rejected, so the two walks agree.
 *
 * Positions are looked up by (container, key) for object members and by
 * (container, index) for array elements; the root is (NULL, NULL, 0).
 * Lines and columns are 1-based; columns count characters, not bytes.
 *
 * The typed getters below check a member's type and range and fail with a
 * positioned KILN_EINVALID message; absent optional members leave *out as
 * the caller initialised it.
 */
#ifndef KILN_JSON_H
#define KILN_JSON_H

#include <jansson.h>

#include "core/common.h"

typedef struct kiln_pos {
	int line;
	int col;
} kiln_pos;

typedef struct kiln_jdoc kiln_jdoc;

/* Reads and parses a file (capped at 16 MiB); errors are "path:line:col: ...". */
int kiln_jdoc_load(kiln_jdoc **out, const char *path);
/* Parses text; name is what messages call it (a path, "--var-file x", ...). */
int kiln_jdoc_parse(kiln_jdoc **out, const char *name, const char *text, size_t len);
void kiln_jdoc_free(kiln_jdoc *doc);

/* Borrowed: valid while doc lives. */
json_t *kiln_jdoc_root(const kiln_jdoc *doc);
const char *kiln_jdoc_name(const kiln_jdoc *doc);
/* The raw text, e.g. for hashing a template. */
const char *kiln_jdoc_text(const kiln_jdoc *doc, size_t *len);

/* Where the value of container[key] (key != NULL) or container[index] starts. */
kiln_pos kiln_jdoc_value_pos(const kiln_jdoc *doc, const json_t *container,
			     const char *key, size_t index);
/* Where the key itself starts (its opening quote). */
kiln_pos kiln_jdoc_key_pos(const kiln_jdoc *doc, const json_t *object, const char *key);

/*
 * Records KILN_EINVALID "name:line:col: message" for the value of
 * container[key] (or container[index] when key is NULL) and returns it.
 */
int kiln_jdoc_error(const kiln_jdoc *doc, const json_t *container, const char *key,
		    size_t index, const char *fmt, ...) KILN_PRINTF(5, 6);
int kiln_jdoc_error_at(const kiln_jdoc *doc, kiln_pos pos, const char *fmt, ...)
	KILN_PRINTF(3, 4);

/*
 * Fails on the first key of obj not in allowed (NULL-terminated), naming
 * what obj is ("template", "provisioner 2") and the nearest allowed key.
 */
int kiln_jdoc_check_keys(const kiln_jdoc *doc, const json_t *obj, const char *what,
			 const char *const *allowed);

/* Typed member getters; *out is borrowed from the document. */
int kiln_jdoc_get_string(const kiln_jdoc *doc, const json_t *obj, const char *key,
			 bool required, const char **out);
int kiln_jdoc_get_int(const kiln_jdoc *doc, const json_t *obj, const char *key,
		      bool required, int64_t min, int64_t max, int64_t *out);
int kiln_jdoc_get_bool(const kiln_jdoc *doc, const json_t *obj, const char *key,
		       bool required, bool *out);
int kiln_jdoc_get_object(const kiln_jdoc *doc, const json_t *obj, const char *key,
			 bool required, json_t **out);
int kiln_jdoc_get_array(const kiln_jdoc *doc, const json_t *obj, const char *key,
			bool required, json_t **out);
/* An object whose values must all be strings (tags, environment_vars). */
int kiln_jdoc_get_string_map(const kiln_jdoc *doc, const json_t *obj, const char *key,
			     json_t **out);
/* An array whose elements must all be strings. */
int kiln_jdoc_get_string_array(const kiln_jdoc *doc, const json_t *obj, const char *key,
			       bool required, json_t **out);

/* "string", "integer", ... for messages. */
const char *kiln_json_type_name(const json_t *v);

/* Levenshtein distance, for "did you mean" hints. */
size_t kiln_edit_distance(const char *a, const char *b);

#endif
