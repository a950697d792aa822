/*
 * fuzz_build_journal: the build journal reader (builder/journal.c,
 * kiln_journal_parse) and what `kiln cleanup` reads out of a journal
 * (builder/cleanup.c, kiln_cleanup_journal).
 *
 * Input: a journal's text, as STATE_DIR/builds/BUILD_ID.json holds it.
 *
 * Checked: a journal is accepted only as an object with a string
 * build_id, and then always has a "resources" object; what is read back
 * out of it (top-level strings and integers, resources.KIND.FIELD) is a
 * string or absent, never something else coerced; it dumps and parses back
 * to an equal document. Then `kiln cleanup --dry-run` over it, against a
 * cloud where everything is already gone: it must succeed, whatever the
 * journal says, and a dry run must not write (the journal's path lives in
 * a scratch directory made once; nothing may appear there). The real
 * (not dry) cleanup is not run: it unlinks the key_file a journal names.
 */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "builder/cleanup.h"
#include "builder/journal.h"
#include "core/error.h"
#include "core/fs.h"
#include "tests/fuzz/fuzz.h"

static char scratch[64];
static char path[128];

/* ---- a cloud where nothing exists any more ---- */

static int no_images(kiln_cloud *c, const kiln_image_query *q, kiln_image_list *out)
{
	(void)c;
	(void)q;
	memset(out, 0, sizeof(*out));
	return 0;
}

static int no_instances(kiln_cloud *c, const kiln_instance_query *q, kiln_instance_list *out)
{
	(void)c;
	(void)q;
	memset(out, 0, sizeof(*out));
	return 0;
}

static int no_resources(kiln_cloud *c, const kiln_tags *match, kiln_resource_list *out)
{
	(void)c;
	(void)match;
	memset(out, 0, sizeof(*out));
	return 0;
}

/* A dry run deletes nothing: these must not be called. */
static int must_not_delete(kiln_cloud *c, const char *id)
{
	(void)c;
	(void)id;
	FUZZ_CHECK(!"a dry run deleted something");
	return 0;
}

static int must_not_terminate(kiln_cloud *c, const char *const *ids, size_t n)
{
	(void)c;
	(void)ids;
	(void)n;
	FUZZ_CHECK(!"a dry run terminated something");
	return 0;
}

static int must_not_delete_fw(kiln_cloud *c, const char *id, uint64_t timeout_ms)
{
	(void)c;
	(void)id;
	(void)timeout_ms;
	FUZZ_CHECK(!"a dry run deleted a firewall");
	return 0;
}

static int open_region(kiln_cloud *c, const char *region, kiln_cloud **out);

static void free_cloud(kiln_cloud *c)
{
	free(c);
}

static const kiln_cloud_ops gone_ops = {
	.name = "gone",
	.images_describe = no_images,
	.image_delete = must_not_delete,
	.instances_describe = no_instances,
	.instances_terminate = must_not_terminate,
	.keypair_delete = must_not_delete,
	.firewall_delete = must_not_delete_fw,
	.resources_find = no_resources,
	.region_open = open_region,
	.free = free_cloud,
};

static int open_region(kiln_cloud *c, const char *region, kiln_cloud **out)
{
	kiln_cloud *r = calloc(1, sizeof(*r));
	(void)c;
	if (!r)
		abort();
	r->ops = &gone_ops;
	snprintf(r->region, sizeof(r->region), "%s", region);
	*out = r;
	return 0;
}

static void remove_scratch(void)
{
	kiln_remove_tree(scratch);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");
	(void)argc;
	(void)argv;
	snprintf(scratch, sizeof(scratch), "%.40s/kiln-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(scratch))
		abort();
	atexit(remove_scratch); /* make check replays every run: leave no /tmp litter */
	snprintf(path, sizeof(path), "%s/b-1.json", scratch);
	return 0;
}

static void check_strings_only(const kiln_journal *j)
{
	static const char *const keys[] = { "build_id", "host", "provider", "region", "name",
					    "template", "started_at", "expires_at", "state",
					    "host_key", "key_file" };
	static const char *const fields[] = { "name", "id", "state", "token", "region" };
	json_t *all = json_object_get(j->doc, "resources"), *v;
	const char *k;
	size_t i;

	for (i = 0; i < KILN_ARRAY_SIZE(keys); i++) {
		json_t *x = json_object_get(j->doc, keys[i]);
		const char *s = kiln_journal_str(j, keys[i]);
		FUZZ_CHECK(json_is_string(x) ? s == json_string_value(x) : s == NULL);
	}
	(void)kiln_journal_int(j, "version");
	(void)kiln_journal_int(j, "pid");
	json_object_foreach(all, k, v) {
		for (i = 0; i < KILN_ARRAY_SIZE(fields); i++) {
			json_t *x = json_object_get(json_object_get(all, k), fields[i]);
			const char *s = kiln_journal_res(j, k, fields[i]);
			FUZZ_CHECK(json_is_string(x) ? s == json_string_value(x) : s == NULL);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	kiln_journal j = KILN_JOURNAL_INIT, again = KILN_JOURNAL_INIT;
	kiln_cloud cloud = { &gone_ops, NULL, "us-east-1" };
	kiln_cleanup_options co = { true, NULL, 1000, true };
	unsigned removed = 0;
	struct stat st;
	char *text;
	int rc;

	kiln_error_clear();
	rc = kiln_journal_parse(&j, path, (const char *)data, size);
	if (rc < 0) {
		FUZZ_CHECK(rc == KILN_EINVALID && kiln_error_last()->code == KILN_EINVALID);
		FUZZ_CHECK(j.doc == NULL && j.path == NULL);
		return 0;
	}
	FUZZ_CHECK(json_is_string(json_object_get(j.doc, "build_id")));
	FUZZ_CHECK(json_is_object(json_object_get(j.doc, "resources")));
	FUZZ_CHECK(!strcmp(j.path, path));
	check_strings_only(&j);

	/* what is read back is what a save would write */
	text = json_dumps(j.doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	FUZZ_CHECK(text != NULL);
	FUZZ_CHECK(kiln_journal_parse(&again, path, text, strlen(text)) == 0);
	FUZZ_CHECK(json_equal(j.doc, again.doc));
	kiln_journal_release(&again);
	free(text);

	rc = kiln_cleanup_journal(&cloud, &j, &co, &removed);
	if (rc < 0)
		fprintf(stderr, "dry run failed: %s\n", kiln_error_last()->message);
	FUZZ_CHECK(rc == 0);
	FUZZ_CHECK(stat(path, &st) < 0 && errno == ENOENT);
	kiln_journal_release(&j);
	kiln_error_clear();
	return 0;
}
