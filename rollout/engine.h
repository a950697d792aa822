/*
 * engine.h: the rollout engine: health-gated rolling replacement of a
 * fleet's instances, which never lets healthy registered capacity fall
 * below desired, restores the old fleet when the new one fails, and can be
 * settled from any machine after it was killed.
 *
 * It speaks only core/cloud.h. Per batch (rollout/plan.h): launch with an
 * idempotency token -> running -> register in every load balancer -> healthy
 * in every one (+ warmup_s) -> deregister as many old -> drained ->
 * terminate them now (retire per_batch) or after the last batch (at_end).
 * Every poll round is one instances_describe and one lb_health per load
 * balancer, whatever the fleet's size; the interval starts fast and backs
 * off, and is reset by any change seen. The fleet is described whole once,
 * at the start (or a take-over); after that a round describes the batch
 * coming up, and old instances are followed through the balancers.
 *
 * Failure (a launch error, a new instance gone, unhealthy past
 * health_grace_s, not healthy within health_timeout_s) restores the old
 * fleet (re-registers kept old instances, relaunches the previous image
 * for old ones already terminated, waits until they are healthy), then
 * drains and terminates every new instance. If the restore fails too,
 * every healthy instance stays registered and the result says which.
 *
 * SIGINT/SIGTERM (kiln_sleep_ms returns KILN_ECANCELLED): no new launch; a
 * batch already healthy is retired to the end, one not yet healthy is
 * removed; the lock stays, so `--resume` carries on.
 *
 * What survives a crash: the journal in the state dir (rollout/journal.h),
 * the tags on instances (kiln:fleet, kiln:rollout-id, kiln:role new|old,
 * kiln:batch, kiln:epoch) and the lock record (rollout/lock.h), which
 * holds the plan. Resume and rollback rebuild everything from those.
 *
 * The engine prints nothing: it emits events (core/event.h) and returns
 * an outcome the CLI turns into an exit code.
 */
#ifndef KILN_ROLLOUT_ENGINE_H
#define KILN_ROLLOUT_ENGINE_H

#include <sys/types.h>

#include "core/cloud.h"
#include "rollout/fleet.h"
#include "rollout/journal.h"

#define KILN_TAG_BATCH "kiln:batch"
#define KILN_TAG_EPOCH "kiln:epoch"

typedef enum kiln_rollout_outcome {
	KILN_ROLLOUT_DONE,           /* exit 0: the fleet runs the target, healthy */
	KILN_ROLLOUT_NOTHING,        /* exit 0: nothing to do (already there, nothing to resume) */
	KILN_ROLLOUT_RESTORED,       /* exit 3: it failed; the old fleet is back */
	KILN_ROLLOUT_RESTORE_FAILED, /* exit 1: it failed, and so did the restore */
	KILN_ROLLOUT_INTERRUPTED,    /* exit 4: cancelled, left consistent, resumable */
	KILN_ROLLOUT_FAILED,         /* exit by error code: refused, or stopped (resumable) */
} kiln_rollout_outcome;

typedef struct kiln_rollout_result {
	kiln_rollout_outcome outcome;
	char rollout_id[KILN_ID_MAX];
	/* the instance that failed the rollout, with its health and console */
	char failed_instance[KILN_ID_MAX];
	char failed_health[32];
	char failed_reason[KILN_NAME_MAX];
	char *console_tail;        /* heap, may be NULL: the last lines of its console */
	kiln_strings kept;         /* restore failed: the healthy instances left serving */
	unsigned batches_done;
	unsigned launched;
	unsigned terminated;
	unsigned poll_rounds;
} kiln_rollout_result;

void kiln_rollout_result_release(kiln_rollout_result *r);

/* Exit code (DESIGN.md) for an engine's return value and result. */
int kiln_rollout_exit_code(int error, const kiln_rollout_result *r);

typedef struct kiln_rollout_opts {
	kiln_cloud *cloud;
	const kiln_fleet *fleet;
	const kiln_events *events;  /* may be NULL */
	const char *state_dir;      /* NULL: kiln_state_dir() */
	/* seams for tests; leave zero otherwise */
	const char *host;           /* the lock's holder name; NULL: gethostname() */
	long pid;                   /* the lock's holder pid; 0: getpid() */
	kiln_journal_hook journal_hook;
	void *journal_hook_ctx;
	uint64_t poll_first_ms;     /* 0: 1000 */
	uint64_t poll_max_ms;       /* 0: 5000 */
} kiln_rollout_opts;

/*
 * `kiln rollout`: rolls the fleet onto target (a resolved image). kind is
 * "rollout" or "rollback" (recorded in the state's history). Refused
 * with KILN_EBUSY if another live rollout holds the lock, KILN_ECONFLICT if
 * an interrupted one does (settle it first).
 */
int kiln_rollout_start(kiln_rollout_result *out, const kiln_rollout_opts *o,
		       const kiln_image *target, const char *kind);

/* `kiln rollout --resume`: finishes the fleet's interrupted rollout (or its restore). */
int kiln_rollout_resume(kiln_rollout_result *out, const kiln_rollout_opts *o);

/*
 * `kiln rollback`: undoes the fleet's interrupted rollout if it has one;
 * otherwise rolls it onto target, or (target NULL) onto the image it ran
 * before its last completed rollout.
 */
int kiln_rollout_rollback(kiln_rollout_result *out, const kiln_rollout_opts *o,
			  const kiln_image *target);

/* `kiln rollout --dry-run`: the plan as JSON; reads only. */
int kiln_rollout_dry_run(json_t **out, const kiln_rollout_opts *o, const kiln_image *target);

/*
 * `kiln status`: instances, their images, health in every load balancer,
 * the fleet's state record, and any interrupted rollout; reads only.
 */
int kiln_rollout_status(json_t **out, const kiln_rollout_opts *o);

#endif
