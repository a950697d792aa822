/*
 * state.h: a fleet's rollout state, kept in the cloud.
 *
 * The record "/kiln/fleets/FLEET/state" says which image the fleet runs,
 * which it ran before (what `kiln rollback` returns to), and how its last
 * few rollouts ended. It lives in the cloud, not in the state dir, because
 * the next rollout may start on another machine (CI runners come and go).
 *
 * Keys naming image ids end in "image_id" (the registry's convention), so
 * `kiln images prune` keeps the current image, the rollback target and
 * every image in the history. The history is short (the record must fit
 * an SSM standard parameter, 4 KiB).
 */
#ifndef KILN_ROLLOUT_STATE_H
#define KILN_ROLLOUT_STATE_H

#include "core/cloud.h"

#define KILN_STATE_HISTORY 5

typedef struct kiln_fleet_state {
	bool exists;
	char current_image_id[KILN_ID_MAX];
	char current_image[KILN_NAME_MAX];   /* "web@3" or the id */
	char previous_image_id[KILN_ID_MAX]; /* the rollback target; "" if none */
	char previous_image[KILN_NAME_MAX];
	char last_rollout_id[KILN_ID_MAX];
	char last_result[32];
	json_t *history;                     /* array, newest first; owned */
} kiln_fleet_state;

void kiln_fleet_state_release(kiln_fleet_state *st);

/* The state of fleet; a fleet never rolled out gives exists = false and 0. */
int kiln_fleet_state_get(kiln_cloud *c, const char *fleet, kiln_fleet_state *out);

/* How a rollout ended, for kiln_fleet_state_put. */
typedef struct kiln_state_entry {
	const char *rollout_id;
	const char *kind;        /* "rollout", "rollback" */
	const char *result;      /* "completed", "restored", "restore-failed", "undone" */
	const char *from_image_id, *from_image;
	const char *to_image_id, *to_image;
	int64_t started_ms;
	const char *message;     /* one line, cut to 100 characters; may be NULL */
} kiln_state_entry;

/*
 * Records the end of a rollout: a completed one makes its target current
 * and what it replaced the previous image; any other result leaves the
 * images as they were. Read, change, write: the fleet's lock is held.
 */
int kiln_fleet_state_put(kiln_cloud *c, const char *fleet, const kiln_state_entry *e);

/* True if the history (or last_rollout_id) mentions rollout_id: it was settled. */
bool kiln_fleet_state_knows(const kiln_fleet_state *st, const char *rollout_id);

#endif
