/*
 * memcloud.h: the in-memory provider, for unit-testing engines.
 *
 * A complete cloud.h provider held in memory, with behaviour the tests
 * script: how long instances stay pending, images stay pending, targets
 * stay initial and draining; which instances or images turn unhealthy;
 * which calls fail, and how. Time is kiln_clock_now_ms(), so with the
 * virtual clock (tests/support/test.h) minutes of waiting cost nothing.
 *
 * States advance lazily: every call first brings every object up to the
 * current time, so what a test sees is what a real cloud would show at
 * that moment.
 *
 * Usage:
 *	memcloud *mc = memcloud_new();
 *	kiln_cloud *c = memcloud_cloud(mc);
 *	memcloud_add_image(mc, "web", 1, NULL);  // an available kiln image
 *	mc->cfg.health_initial_ms = 5000;
 *	memcloud_fail(mc, "instances_launch", 2, KILN_ERROR, "InsufficientInstanceCapacity");
 *	... run the engine against c ...
 *	assert_int_equal(memcloud_count_instances(mc, KILN_INSTANCE_RUNNING, NULL), 3);
 *	kiln_cloud_free(c);  // frees mc too
 */
#ifndef KILN_TEST_MEMCLOUD_H
#define KILN_TEST_MEMCLOUD_H

#include "core/cloud.h"

typedef struct memcloud memcloud;

typedef struct memcloud_config {
	uint64_t pending_ms;        /* launch -> running (default 2000) */
	uint64_t stopping_ms;       /* stop -> stopped (default 1000) */
	uint64_t shutting_down_ms;  /* terminate -> terminated (default 1000) */
	uint64_t image_pending_ms;  /* create -> available (default 5000) */
	uint64_t health_initial_ms; /* registered running target -> healthy (default 3000) */
	uint64_t drain_ms;          /* deregistered -> gone (default 2000) */
	uint64_t firewall_busy_ms;  /* delete says in use this long after its instances end (0) */
	int drain_timeout_s;        /* what lb_open reports (default 30) */
	int health_interval_s;      /* what lb_open reports (default 5) */
	bool token_idempotency;     /* client_token returns the same instances (default true) */
} memcloud_config;

memcloud *memcloud_new(void);
/* The provider; kiln_cloud_free() on it frees the memcloud. */
kiln_cloud *memcloud_cloud(memcloud *mc);
memcloud *memcloud_from(kiln_cloud *c);
memcloud_config *memcloud_cfg(memcloud *mc);

/* ---- scripting ---- */

/*
 * The nth call (1 = the next one) of op fails with code and message (a
 * cloud error code such as "InsufficientInstanceCapacity"); nth 0: every
 * call from now on until memcloud_clear_faults. op is a member name of
 * kiln_cloud_ops ("instances_launch", "lb_register", ...).
 */
void memcloud_fail(memcloud *mc, const char *op, unsigned nth, int code, const char *message);
/* As memcloud_fail, but the operation takes effect before failing (a lost response). */
void memcloud_fail_after(memcloud *mc, const char *op, unsigned nth, int code, const char *message);
void memcloud_clear_faults(memcloud *mc);

/*
 * Called before every operation with its name; a negative return fails
 * the operation with that code (message "injected"). Tests use it to stop
 * an engine at an exact point. NULL clears.
 */
void memcloud_on_call(memcloud *mc, int (*fn)(void *ctx, const char *op), void *ctx);

/* Targets of instances running this image (or this instance) turn <h> after health_initial_ms. */
void memcloud_image_health(memcloud *mc, const char *image_id, kiln_health h);
void memcloud_instance_health(memcloud *mc, const char *instance_id, kiln_health h);
/* Images created from now on become failed instead of available. */
void memcloud_fail_images(memcloud *mc, bool fail);
/* The instance dies: terminated at once with the reason given. */
void memcloud_kill_instance(memcloud *mc, const char *id, const char *reason);
void memcloud_set_console(memcloud *mc, const char *instance_id, const char *text);
/* Instances launched from image_id from now on get this console output. */
void memcloud_image_console(memcloud *mc, const char *image_id, const char *text);

/* ---- fixtures ---- */

/* An available image with kiln:image / kiln:version tags (name NULL: a plain image); id out. */
const char *memcloud_add_image(memcloud *mc, const char *kiln_name, int64_t version,
			       const kiln_tags *extra_tags);
/* A running instance registered nowhere; id out. */
const char *memcloud_add_instance(memcloud *mc, const char *image_id, const kiln_tags *tags);

/*
 * The memcloud of another region (made on first use; region_open gives
 * the same one), to script and inspect it. Owned by mc. Ids are unique
 * across regions.
 */
memcloud *memcloud_region(memcloud *mc, const char *region);

/* ---- inspection ---- */

/* What memcloud knows of an image (borrowed until the next call). */
typedef struct memcloud_image_info {
	const kiln_image *img;
	bool deleted;
	const char *copy_token;     /* "" unless made by image_copy */
	const char *source_region;  /* "" unless made by image_copy */
	bool encrypted;             /* image_copy's */
	const char *kms_key_id;     /* "" when none */
	const char *imds_support;   /* "" when not set */
	const kiln_strings *launch_users, *launch_groups, *snapshot_users, *snapshot_groups;
	int64_t deprecate_at;       /* 0: not set */
} memcloud_image_info;

/* False if mc (this region) never had the image. */
bool memcloud_image_get(memcloud *mc, const char *id, memcloud_image_info *out);
/* The options of the last instances_launch (NULL if none). */
const json_t *memcloud_last_launch_options(const memcloud *mc);


/* Calls made to op so far (all ops when op is NULL). */
unsigned memcloud_calls(const memcloud *mc, const char *op);
/* Instances in state (KILN_INSTANCE_UNKNOWN: any not terminated) matching tags (NULL: any). */
size_t memcloud_count_instances(memcloud *mc, kiln_instance_state state, const kiln_tags *tags);
/* Registered targets of lb in health h (KILN_HEALTH_UNKNOWN: any still registered or draining). */
size_t memcloud_count_targets(memcloud *mc, const char *lb_ref, kiln_health h);
bool memcloud_is_registered(memcloud *mc, const char *lb_ref, const char *instance_id);
size_t memcloud_count_keypairs(const memcloud *mc);
size_t memcloud_count_firewalls(const memcloud *mc);
size_t memcloud_count_images(const memcloud *mc);
size_t memcloud_count_records(const memcloud *mc);
/* Launches that carried this client token and actually created instances. */
unsigned memcloud_launches_with_token(const memcloud *mc, const char *token);
/* The most launches any one client token made (1 when no token launched twice). */
unsigned memcloud_max_launches_per_token(const memcloud *mc);
/*
 * Appends the ids of instances in state (KILN_INSTANCE_UNKNOWN: any not
 * terminated) matching tags (NULL: any) to out; returns how many. Not a
 * provider call: not counted, no hook, no faults.
 */
size_t memcloud_find_instances(memcloud *mc, kiln_instance_state state, const kiln_tags *tags,
			       kiln_strings *out);

#endif
