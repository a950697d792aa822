/*
 * fuzz_template: the template reader (builder/template.c,
 * kiln_template_parse) for both providers, and kiln_template_set_version.
 *
 * Input: a template's text. It is read as SCRATCH/fuzz.json, a directory
 * made once that holds the files the seeds name (setup.sh, two.sh,
 * scripts/install.sh, app/, files/...), so provisioners can pass their
 * file checks.
 *
 * Checked beyond "no crash, no leak": a failure is KILN_EINVALID (or an
 * I/O or memory error) with one line of message; a template accepted
 * keeps every promise of template.h: a valid image name, exactly one
 * source, ports and timeouts in range, no kiln:/aws: tag keys, CIDRs that
 * kiln_cidr_check accepts, the aws options only on aws and consistent
 * (a KMS key only with encrypt_boot, deprecate_at absolute or relative,
 * never both), launch options an object; the same text hashes the same;
 * after kiln_template_set_version no "{{version}}" is left anywhere it may
 * appear.
 */
#include <stdlib.h>
#include <sys/stat.h>

#include "builder/template.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/registry.h"
#include "tests/fuzz/fuzz.h"

static char scratch[64];
static char name[128];

static void put(const char *rel, const char *text)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", scratch, rel);
	if (kiln_write_file_atomic(p, text, strlen(text), 0644) < 0)
		abort();
}

static void remove_scratch(void)
{
	kiln_remove_tree(scratch);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");
	static const char *const dirs[] = { "scripts", "app", "files", "images/web/app" };
	char p[256];
	size_t i;
	(void)argc;
	(void)argv;
	snprintf(scratch, sizeof(scratch), "%.40s/kiln-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(scratch))
		abort();
	atexit(remove_scratch); /* make check replays every run: leave no /tmp litter */
	for (i = 0; i < KILN_ARRAY_SIZE(dirs); i++) {
		snprintf(p, sizeof(p), "%s/%s", scratch, dirs[i]);
		if (kiln_mkdir_p(p, 0755) < 0)
			abort();
	}
	put("setup.sh", "#!/bin/sh\necho hi\n");
	put("two.sh", "#!/bin/sh\necho two\n");
	put("scripts/install.sh", "#!/bin/sh\ntrue\n");
	put("app/index.html", "<p>hi</p>\n");
	put("files/nginx-web.conf", "server {}\n");
	put("files/uwsgi.ini", "[uwsgi]\n");
	put("files/uwsgi.service", "[Unit]\n");
	snprintf(name, sizeof(name), "%s/fuzz.json", scratch);
	/* {{env ...}} in the seeds */
	setenv("KILN_FUZZ_REGION", "eu-west-1", 1);
	return 0;
}

static void no_version(const char *s)
{
	FUZZ_CHECK(!s || !strstr(s, "{{version}}"));
}

static void check(kiln_template *t, const char *provider, const uint8_t *data, size_t size)
{
	kiln_template *again = NULL;
	size_t i, j;

	FUZZ_CHECK(!strcmp(t->provider, provider));
	FUZZ_CHECK(kiln_image_name_valid(t->name));
	FUZZ_CHECK((t->source_image != NULL) != t->has_source_filter);
	FUZZ_CHECK(!t->source_image || *t->source_image);
	FUZZ_CHECK(!strcmp(provider, "local") || t->instance_type);
	FUZZ_CHECK(t->ssh_username && *t->ssh_username);
	FUZZ_CHECK(t->ssh_port >= 1 && t->ssh_port <= 65535);
	FUZZ_CHECK(t->ssh_timeout_s >= 1 && t->launch_timeout_s >= 1 && t->image_timeout_s >= 1);
	FUZZ_CHECK(t->build_timeout_s >= 60);
	FUZZ_CHECK(t->keep_versions >= 0);
	FUZZ_CHECK(strlen(t->sha256) == 64);
	for (i = 0; i < t->tags.n; i++)
		FUZZ_CHECK(strncmp(t->tags.items[i].key, "kiln:", 5) &&
			   strncmp(t->tags.items[i].key, "aws:", 4));
	for (i = 0; i < t->temporary_cidrs.n; i++)
		FUZZ_CHECK(kiln_cidr_check(t->temporary_cidrs.items[i]) == 0);
	FUZZ_CHECK(!t->launch_options || (json_is_object(t->launch_options) &&
					   json_object_size(t->launch_options)));
	/* the aws options */
	if (strcmp(provider, "aws")) {
		FUZZ_CHECK(!t->imds_support && !t->encrypt_boot && !t->kms_key_id);
		FUZZ_CHECK(!t->ami_regions.n && !t->ami_users.n && !t->ami_groups.n);
		FUZZ_CHECK(!t->snapshot_users.n && !t->snapshot_groups.n && !t->region_kms_key_ids.n);
		FUZZ_CHECK(!t->deprecate_at && !t->deprecate_after_s);
	}
	FUZZ_CHECK(!t->kms_key_id || t->encrypt_boot);
	FUZZ_CHECK(!t->region_kms_key_ids.n || t->encrypt_boot);
	FUZZ_CHECK(!(t->deprecate_at && t->deprecate_after_s));
	FUZZ_CHECK(t->deprecate_after_s >= 0 && t->deprecate_at >= 0);
	FUZZ_CHECK(t->ami_regions.n <= KILN_TEMPLATE_MAX_REGIONS);
	for (i = 0; i < t->ami_regions.n; i++)
		FUZZ_CHECK(!t->region || strcmp(t->region, t->ami_regions.items[i]));
	for (i = 0; i < t->ami_users.n; i++)
		FUZZ_CHECK(strlen(t->ami_users.items[i]) == 12);
	if (t->encrypt_boot) {
		FUZZ_CHECK(!t->ami_groups.n && !t->snapshot_groups.n);
		FUZZ_CHECK(t->kms_key_id || (!t->ami_users.n && !t->snapshot_users.n));
		FUZZ_CHECK(json_is_object(json_object_get(t->launch_options, "encrypt_volumes")));
	}
	for (i = 0; i < t->n_provisioners; i++) {
		const kiln_provisioner *p = &t->provisioners[i];
		FUZZ_CHECK(p->label);
		if (p->type == KILN_PROVISIONER_SHELL) {
			FUZZ_CHECK((p->n_inline > 0) != (p->n_scripts > 0));
			FUZZ_CHECK(p->execute_command && strstr(p->execute_command, "{{.Path}}"));
		} else {
			FUZZ_CHECK(p->source && p->destination && *p->destination);
		}
	}

	/* the same text, the same hash */
	FUZZ_CHECK(kiln_template_parse(&again, name, (const char *)data, size,
				       &(kiln_template_options){ .provider = provider }) == 0);
	FUZZ_CHECK(!strcmp(again->sha256, t->sha256));
	kiln_template_free(again);

	/* {{version}} is gone once known */
	FUZZ_CHECK(kiln_template_set_version(t, 7) == 0);
	FUZZ_CHECK(t->version == 7);
	no_version(t->description);
	for (i = 0; i < t->tags.n; i++)
		no_version(t->tags.items[i].value);
	for (i = 0; i < t->n_provisioners; i++) {
		const kiln_provisioner *p = &t->provisioners[i];
		for (j = 0; j < p->n_inline; j++)
			no_version(p->inline_cmds[j]);
		for (j = 0; j < p->environment.n; j++)
			no_version(p->environment.items[j].value);
		no_version(p->execute_command);
		no_version(p->destination);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const providers[] = { "aws", "local" };
	size_t i;

	for (i = 0; i < KILN_ARRAY_SIZE(providers); i++) {
		kiln_template_options opts = KILN_TEMPLATE_OPTIONS_INIT;
		kiln_template *t = NULL;
		int rc;

		opts.provider = providers[i];
		kiln_error_clear();
		rc = kiln_template_parse(&t, name, (const char *)data, size, &opts);
		if (rc < 0) {
			const kiln_error *e = kiln_error_last();
			FUZZ_CHECK(t == NULL);
			FUZZ_CHECK(rc == KILN_EINVALID || rc == KILN_ENOMEM || rc == KILN_ERROR);
			FUZZ_CHECK(e->code == rc && e->message[0]);
			FUZZ_CHECK(!strchr(e->message, '\n'));
			continue;
		}
		check(t, providers[i], data, size);
		kiln_template_free(t);
	}
	kiln_error_clear();
	return 0;
}
