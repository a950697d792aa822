/*
 * journal.h: a build's write-ahead record of its temporary resources.
 *
 * Who calls: the build engine (build.c) writes it, `kiln cleanup`
 * (cleanup.c) reads it after a build died. One JSON file a build,
 * STATE_DIR/builds/BUILD_ID.json, rewritten atomically (fs.h) on every
 * change, so a crash leaves the last complete version:
 *
 *	{"build_id": "...", "host": "...", "pid": 123, "provider": "aws",
 *	 "region": "us-east-1", "name": "web", "template": "...",
 *	 "started_at": "...", "expires_at": "...", "state": "running",
 *	 "version": 3,
 *	 "resources": {
 *	   "keypair":  {"name": "kiln-web-...", "state": "created"},
 *	   "firewall": {"name": "kiln-web-...", "id": "sg-...", "state": "created"},
 *	   "instance": {"token": "kiln-...", "id": "i-...", "state": "created"},
 *	   "image":    {"name": "web-v3", "id": "ami-...", "state": "creating"},
 *	   "copy:eu-west-1": {"region": "eu-west-1", "name": "web-v3", "token": "kiln-copy-...",
 *	                      "id": "ami-...", "state": "created"}}}
 *
 * A resource is journaled "creating" BEFORE the call that creates it (its
 * id may then be unknown: cleanup finds it by name, token or the
 * kiln:build-id tag), "created" with its id after, "deleted" once gone.
 * An image (and each copy of it in another region, "copy:REGION") is
 * "recorded" once the build has finished it, copies and settings
 * included: from then on it is a product, not a leftover. Build states: "running", "kept" (after
 * --on-error abort), "cleaning" (cleanup under way or failed).
 */
#ifndef KILN_BUILDER_JOURNAL_H
#define KILN_BUILDER_JOURNAL_H

#include <jansson.h>

#include "core/buf.h"

typedef struct kiln_journal {
	char *path;   /* STATE_DIR/builds/BUILD_ID.json */
	json_t *doc;  /* the whole record */
} kiln_journal;

#define KILN_JOURNAL_INIT { NULL, NULL }

/* STATE_DIR/builds, created 0700 if missing: journals, their locks, kept key files. */
int kiln_journal_dir(kiln_buf *out);

/* A new journal for build_id in dir, holding header's members (borrowed); written at once. */
int kiln_journal_create(kiln_journal *j, const char *dir, const char *build_id, const json_t *header);
int kiln_journal_load(kiln_journal *j, const char *path);
/*
 * As kiln_journal_load, from text; path is where the journal lives (for
 * messages and later saves). Who calls: kiln_journal_load, and the fuzz
 * target tests/fuzz/fuzz_build_journal.c.
 */
int kiln_journal_parse(kiln_journal *j, const char *path, const char *text, size_t len);
/* Writes the journal atomically (0600). */
int kiln_journal_save(kiln_journal *j);
/* Removes the file (the build left nothing behind). */
int kiln_journal_remove(kiln_journal *j);
void kiln_journal_release(kiln_journal *j);

/* Top-level string or integer members. */
const char *kiln_journal_str(const kiln_journal *j, const char *key);
int64_t kiln_journal_int(const kiln_journal *j, const char *key);
int kiln_journal_set_str(kiln_journal *j, const char *key, const char *value);
int kiln_journal_set_int(kiln_journal *j, const char *key, int64_t value);

/* resources.KIND.FIELD, or NULL. */
const char *kiln_journal_res(const kiln_journal *j, const char *kind, const char *field);
/* Sets resources.KIND.FIELD (creating the resource) and saves. */
int kiln_journal_res_set(kiln_journal *j, const char *kind, const char *field, const char *value);

#endif
