/*
 * cleanup.h: removing what builds left behind.
 *
 * Who calls: `kiln cleanup` (cli/cmd_cleanup.c); the build engine, for its
 * own cleanup (the same code path, driven by its journal, so what a normal
 * failure and a crash leave behind are removed the same way); and
 * `kiln build` at start, to report leftovers.
 *
 * Two sources, both needed:
 *  - journals in STATE_DIR/builds: builds of this machine. One whose lock
 *    is held is running and never touched; a journal written on another
 *    host (a shared state dir) is treated like the cloud's, below.
 *  - the cloud: every resource tagged kiln:build-id (resources_find), so
 *    builds of other machines, or whose journal is lost, are found too.
 *    Those are touched only once their kiln:expires-at has passed, because
 *    from here nobody can tell whether that build still runs. Images are
 *    products, not temporary: only a failed one is removed this way.
 */
#ifndef KILN_BUILDER_CLEANUP_H
#define KILN_BUILDER_CLEANUP_H

#include "builder/journal.h"
#include "core/cloud.h"

typedef struct kiln_cleanup_options {
	bool dry_run;                        /* say what would go, change nothing */
	const kiln_events *events;           /* may be NULL */
	uint64_t firewall_delete_timeout_ms; /* 0: 5 minutes */
	/* each removal as a debug event (the build's own cleanup sums them up instead) */
	bool quiet;
} kiln_cleanup_options;

typedef struct kiln_cleanup_result {
	unsigned builds;   /* builds whose resources were (or would be) removed */
	unsigned removed;  /* resources removed (or that would be) */
	unsigned running;  /* builds left alone: running here, or not yet expired elsewhere */
	unsigned other;    /* journals of another provider or region, left for that one */
} kiln_cleanup_result;

/* `kiln cleanup`: removes the temporary resources of every build no longer running. */
int kiln_cleanup_run(kiln_cloud *c, const kiln_cleanup_options *opts, kiln_cleanup_result *out);

/*
 * Removes, in reverse order of creation, what journal j lists as created
 * or being created (an image, and its copies in other regions, reached
 * through region_open, only while not yet "recorded"), marks
 * each "deleted" in the journal, and removes the journal file (and a kept
 * key file) once nothing is left. Best effort: goes on past a failure and
 * returns the first one. *removed counts what went (may be NULL).
 */
int kiln_cleanup_journal(kiln_cloud *c, kiln_journal *j, const kiln_cleanup_options *opts,
			 unsigned *removed);

/*
 * Warns (a "warning" event each) about unfinished builds in the state dir
 * other than skip_build_id: journals nobody holds the lock of, pointing to
 * `kiln cleanup`. *out is how many.
 */
int kiln_cleanup_report_leftovers(const kiln_events *events, const char *skip_build_id,
				  unsigned *out);

#endif
