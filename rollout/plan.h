/*
 * plan.h: how a rollout is cut into batches.
 *
 * The plan is a pure function of four numbers: desired, the batch size,
 * how many instances the fleet had when the rollout began (the "old"
 * ones), and how many subnets launches spread over. The lock record keeps
 * those four, so whoever settles an interrupted rollout, on any machine,
 * computes the same batches, launches with the same tokens and so never
 * launches twice (launch tokens name the batch and the subnet).
 *
 * Capacity rule: after batch k is healthy, the old instances still
 * registered are old_left(k) = min(old, max(0, desired - new(k))), so
 * healthy registered capacity (old_left + new) never drops below desired
 * while old ones are retired as early as that allows. A fleet smaller
 * than desired keeps all its old instances until the new ones make up the
 * difference; a larger one sheds its surplus with the first batch. A
 * fleet with no instances gets one batch of desired.
 */
#ifndef KILN_ROLLOUT_PLAN_H
#define KILN_ROLLOUT_PLAN_H

#include "core/cloud.h"

typedef struct kiln_plan_batch {
	unsigned number;      /* 1-based */
	unsigned first;       /* index of its first new instance (0-based, over the rollout) */
	unsigned launch;      /* new instances */
	unsigned *per_subnet; /* launch split across subnets (n_subnets entries) */
	unsigned retire;      /* old instances deregistered once it is healthy */
	unsigned old_left;    /* old instances still registered after it */
} kiln_plan_batch;

typedef struct kiln_plan {
	unsigned desired;
	unsigned batch_size;
	unsigned old_count;
	size_t n_subnets;     /* at least 1 (the provider's default subnet) */
	kiln_plan_batch *batches;
	size_t n_batches;
} kiln_plan;

#define KILN_PLAN_INIT { 0, 0, 0, 0, NULL, 0 }

/*
 * Computes the plan; n_subnets 0 counts as 1. Fails (KILN_EINVALID) only
 * for desired or batch_size 0. kiln_plan_release frees it.
 */
int kiln_plan_compute(kiln_plan *out, unsigned desired, unsigned batch_size, unsigned old_count,
		      size_t n_subnets);
void kiln_plan_release(kiln_plan *plan);

/* Capacity after batch k (1-based) is healthy and its old ones retired: new + old left. */
unsigned kiln_plan_new_after(const kiln_plan *plan, size_t k);

/*
 * The order in which old instances are retired: those not serving
 * (unhealthy or unregistered somewhere) first, since removing them costs
 * no capacity; then the oldest launched; ties by id.
 */
typedef struct kiln_plan_old {
	const char *id;
	int64_t launch_time;
	bool serving;
} kiln_plan_old;

void kiln_plan_sort_old(kiln_plan_old *v, size_t n);

/*
 * Launch idempotency token for one launch call (<= 64 ASCII, as EC2's
 * ClientToken allows): rollout id, epoch (bumped when a cancelled batch's
 * instances are removed, so its relaunch is a new launch), batch, subnet
 * index. Restores use batch 0 and their attempt as the epoch.
 */
int kiln_plan_token(char *out, size_t size, const char *rollout_id, unsigned epoch, unsigned batch,
		    size_t subnet);

/* The plan as JSON, for --dry-run and events (a new reference). */
json_t *kiln_plan_to_json(const kiln_plan *plan, const kiln_strings *subnet_ids);

#endif
