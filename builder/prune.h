/*
 * prune.h: removing old versions of an image.
 *
 * Who calls: `kiln images prune NAME --keep N` (cli/cmd_images.c) and the
 * build engine after a successful build whose template sets
 * keep_versions: one rule for both.
 *
 * The rule: the newest `keep` available versions stay; so does every
 * pending image (a build may be finishing it) and every image
 * kiln_registry_protected_images names (a fleet runs it, a rollout record
 * or lock names it, a fleet's rollback target). Everything else of NAME,
 * older available versions and failed ones, is deleted: deregistered with
 * its snapshots (cloud.h image_delete) and dropped from the local cache.
 * Version records stay, so a version number is never reused.
 */
#ifndef KILN_BUILDER_PRUNE_H
#define KILN_BUILDER_PRUNE_H

#include "core/cloud.h"

typedef struct kiln_prune_options {
	int64_t keep;              /* >= 1 */
	bool dry_run;              /* say what would go, change nothing */
	const kiln_events *events; /* may be NULL */
} kiln_prune_options;

typedef struct kiln_prune_result {
	kiln_strings deleted;      /* image ids deleted (or that would be) */
	unsigned kept;             /* versions kept as the newest, or pending */
	unsigned protected_images; /* older versions kept because something uses them */
} kiln_prune_result;

/* Prunes NAME; *out is filled as far as it got (release it either way). */
int kiln_prune(kiln_cloud *c, const char *name, const kiln_prune_options *opts,
	       kiln_prune_result *out);
void kiln_prune_result_release(kiln_prune_result *r);

#endif
