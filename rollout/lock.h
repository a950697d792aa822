/*
 * lock.h: one rollout per fleet at a time, across machines.
 *
 * The lock is a cloud record, "/kiln/fleets/FLEET/lock", created only if
 * absent (on AWS an SSM parameter), so two machines racing to roll out the
 * same fleet cannot both win. It holds who holds it (rollout id, host,
 * pid), the from and to images, an expiry the holder renews while it runs
 * (a few minutes ahead), and the small facts another machine needs to
 * settle the rollout if its holder dies: the plan's four numbers and the
 * subnets (rollout/plan.h), the launch epoch, and the restore in progress.
 * The lock record is, in effect, the cloud side of the journal.
 *
 * A holder is dead when its expiry has passed, or when it ran on this host
 * and its pid is gone (or the pid lives but no longer holds the rollout's
 * local flock, i.e. was reused). Only `rollout --resume` and `rollback`
 * take a dead holder's lock over; everything else is refused.
 *
 * JSON keys follow the registry's convention (names of image ids end in
 * "image_id" or "image_ids") so `kiln images prune` never removes an image
 * a rollout in progress needs.
 */
#ifndef KILN_ROLLOUT_LOCK_H
#define KILN_ROLLOUT_LOCK_H

#include <sys/types.h>

#include "core/cloud.h"
#include "rollout/fleet.h"

#define KILN_LOCK_TTL_MS (300 * 1000)       /* how far ahead an expiry is set */
#define KILN_LOCK_RENEW_MS (60 * 1000)      /* how often a holder renews it */
#define KILN_CLAIM_TTL_MS (60 * 1000)       /* a take-over claim older than this was abandoned */
#define KILN_CLAIM_ATTEMPTS 16

typedef enum kiln_lock_phase {
	KILN_PHASE_ROLLOUT, /* batches going forward */
	KILN_PHASE_RESTORE, /* putting the old fleet back */
} kiln_lock_phase;

typedef struct kiln_fleet_lock {
	char rollout_id[KILN_ID_MAX];
	char fleet[KILN_FLEET_NAME_MAX + 1];
	char kind[16];               /* "rollout" or "rollback" */
	char host[KILN_NAME_MAX];
	long pid;
	int64_t started_ms;          /* Unix ms */
	int64_t expires_ms;          /* Unix ms */
	char from_image_id[KILN_ID_MAX]; /* what most old instances ran: the restore's image */
	char to_image_id[KILN_ID_MAX];
	char to_image[KILN_NAME_MAX];    /* "web@3", for messages */
	char from_image[KILN_NAME_MAX];
	kiln_strings old_image_ids;  /* every image the old instances ran */
	/* the plan (rollout/plan.h) */
	unsigned desired, batch_size, old_count;
	kiln_strings subnet_ids;
	kiln_retire retire;
	/*
	 * Launch epoch: bumped when a cancelled batch's instances are removed,
	 * so relaunching that batch is a new launch (a new token). Batches from
	 * epoch_batch on launch in this epoch; earlier ones were completed in
	 * earlier epochs. New instances of an earlier epoch from epoch_batch on
	 * are strays, to be removed.
	 */
	unsigned epoch;
	unsigned epoch_batch;
	kiln_lock_phase phase;
	unsigned restore_attempt;    /* the token epoch of restore launches */
	unsigned restore_relaunch;   /* old instances to relaunch (per_batch) */
	char reason[512];            /* why a restore began */
} kiln_fleet_lock;

void kiln_fleet_lock_release(kiln_fleet_lock *lock);

json_t *kiln_fleet_lock_to_json(const kiln_fleet_lock *lock);
int kiln_fleet_lock_from_json(kiln_fleet_lock *out, const char *text);

/* The current lock of fleet; KILN_ENOTFOUND (no message) when there is none. */
int kiln_fleet_lock_get(kiln_cloud *c, const char *fleet, kiln_fleet_lock *out);

/*
 * Creates the lock (expiry set from now). If it exists: KILN_EBUSY naming
 * a live holder, or KILN_ECONFLICT for a dead one, saying how to settle its
 * rollout; held (may be NULL) then receives the holder's record.
 */
int kiln_fleet_lock_create(kiln_cloud *c, const char *fleet, kiln_fleet_lock *lock,
			   kiln_fleet_lock *held);

/* Writes lock (renewing its expiry) after checking it is still ours; KILN_EBUSY if taken over. */
int kiln_fleet_lock_update(kiln_cloud *c, const char *fleet, kiln_fleet_lock *lock);
int kiln_fleet_lock_delete(kiln_cloud *c, const char *fleet);

/*
 * Whether the holder is dead. host is this machine's name; state_dir is
 * where holders on this host keep their rollout's flock.
 */
bool kiln_fleet_lock_dead(const kiln_fleet_lock *lock, const char *host, const char *state_dir);

/*
 * Takes over a dead holder's lock: claims that holder with a record created
 * only if absent ("/kiln/fleets/FLEET/takeovers/ROLLOUT-EXPIRY-PID-N"), so
 * that of two machines taking it over at once only one goes on (a claim
 * older than KILN_CLAIM_TTL_MS was abandoned: claim N+1 then); checks the
 * lock is still the record judged dead; rewrites it with host/pid as
 * holder and a fresh expiry, and reads it back. KILN_EBUSY if the holder
 * is alive, or a rival won.
 */
int kiln_fleet_lock_takeover(kiln_cloud *c, const char *fleet, kiln_fleet_lock *lock,
			     const char *host, long pid, const char *state_dir);

/* Deletes the fleet's take-over claims (when its rollout ends); best effort, never fails. */
void kiln_fleet_lock_claims_delete(kiln_cloud *c, const char *fleet);

/* "host 'ci-3' pid 4242 (rollout r..., web@2 -> web@3, started 2026-...Z)" */
void kiln_fleet_lock_describe(char *out, size_t size, const kiln_fleet_lock *lock);

/* The local flock a running holder keeps: STATE_DIR/rollouts/FLEET/ROLLOUT_ID.lock. */
int kiln_fleet_lock_flock_path(kiln_buf *out, const char *state_dir, const char *fleet,
			       const char *rollout_id);

#endif
