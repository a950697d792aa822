/*
 * cloud.h: the provider interface, the one seam between kiln's engines and
 * a cloud.
 *
 * The builder and the rollout engine speak only this. Providers implement
 * it: aws/ (EC2, AMIs, ELBv2 and classic ELB, SSM), local/ (nspawn
 * containers, overlayfs layers, HAProxy) and, for unit tests, the
 * in-memory provider in tests/support/memcloud.c. Only cli/ picks and
 * constructs a provider; engines never include a provider's header.
 *
 * Contract for every operation:
 *  - returns 0 or a negative KILN_E* code with kiln_error_last() set; the
 *    provider has already retried what is worth retrying (throttling,
 *    5xx, resets), so a failure here is final for the caller's purposes;
 *  - creates are idempotent where the cloud allows: a launch repeated
 *    with the same client_token returns the same instances; a key pair or
 *    firewall re-created under the same name with kiln's tags is
 *    recognised as ours and returned instead of failing;
 *  - deletes of something already gone succeed;
 *  - out-parameters are filled only on success and owned by the caller,
 *    released with the matching *_release function;
 *  - strings passed in are borrowed for the call.
 *
 * Tags are the source of truth: everything kiln creates carries
 * kiln:* tags (see DESIGN.md), so another machine can find and settle it.
 */
#ifndef KILN_CLOUD_H
#define KILN_CLOUD_H

#include <jansson.h>

#include "core/buf.h"
#include "core/event.h"

#define KILN_ID_MAX 64
#define KILN_NAME_MAX 256

/* ---- tags ---------------------------------------------------------------- */

typedef struct kiln_tag {
	char *key;
	char *value;
} kiln_tag;

typedef struct kiln_tags {
	kiln_tag *items;
	size_t n;
} kiln_tags;

#define KILN_TAGS_INIT { NULL, 0 }

/* Adds key=value, replacing an existing key's value. */
int kiln_tags_set(kiln_tags *tags, const char *key, const char *value);
/* The value of key, or NULL. */
const char *kiln_tags_get(const kiln_tags *tags, const char *key);
int kiln_tags_copy(kiln_tags *dst, const kiln_tags *src);
/* Adds every tag of src to dst (src wins). */
int kiln_tags_merge(kiln_tags *dst, const kiln_tags *src);
/* Adds every member of a JSON object of strings. */
int kiln_tags_from_json(kiln_tags *dst, const json_t *obj);
json_t *kiln_tags_to_json(const kiln_tags *tags);
/* Every tag of want is in have (a want value of "*" matches any value). */
bool kiln_tags_match(const kiln_tags *have, const kiln_tags *want);
void kiln_tags_release(kiln_tags *tags);

/* A list of strings (names, ids) returned by find operations. */
typedef struct kiln_strings {
	char **items;
	size_t n;
} kiln_strings;

int kiln_strings_add(kiln_strings *s, const char *v);
bool kiln_strings_has(const kiln_strings *s, const char *v);
void kiln_strings_release(kiln_strings *s);

/* ---- instances ----------------------------------------------------------- */

typedef enum kiln_instance_state {
	KILN_INSTANCE_UNKNOWN = 0,
	KILN_INSTANCE_PENDING,
	KILN_INSTANCE_RUNNING,
	KILN_INSTANCE_STOPPING,
	KILN_INSTANCE_STOPPED,
	KILN_INSTANCE_SHUTTING_DOWN,
	KILN_INSTANCE_TERMINATED,
} kiln_instance_state;

const char *kiln_instance_state_name(kiln_instance_state s);
kiln_instance_state kiln_instance_state_parse(const char *s);

typedef struct kiln_instance {
	char id[KILN_ID_MAX];
	char image_id[KILN_ID_MAX];
	char instance_type[KILN_ID_MAX];
	char subnet_id[KILN_ID_MAX];
	char private_ip[KILN_ID_MAX];
	char public_ip[KILN_ID_MAX];
	char key_name[KILN_NAME_MAX];
	kiln_instance_state state;
	char state_reason[KILN_NAME_MAX];
	int64_t launch_time; /* Unix seconds */
	kiln_tags tags;
} kiln_instance;

typedef struct kiln_instance_list {
	kiln_instance *items;
	size_t n;
} kiln_instance_list;

void kiln_instance_list_release(kiln_instance_list *list);
/* Appends a copy of inst (tags copied). */
int kiln_instance_list_add(kiln_instance_list *list, const kiln_instance *inst);
const kiln_instance *kiln_instance_list_find(const kiln_instance_list *list, const char *id);

typedef struct kiln_instance_query {
	const char *const *ids; /* NULL: any */
	size_t n_ids;
	const kiln_tags *tags;  /* NULL: any; all must match, "*" = key present */
	bool include_terminated; /* default: skip shutting-down and terminated */
} kiln_instance_query;

typedef struct kiln_launch {
	const char *image_id;
	const char *instance_type;
	const char *subnet_id;          /* NULL: the provider's default */
	const char *const *security_group_ids;
	size_t n_security_groups;
	const char *key_name;           /* a key pair imported with keypair_import */
	const char *iam_instance_profile;
	const char *user_data;          /* raw text; the provider encodes it */
	unsigned count;
	/*
	 * Idempotency token (<= 64 ASCII): the same token returns the instances
	 * launched with it instead of launching again.
	 */
	const char *client_token;
	const kiln_tags *tags;          /* applied at launch, atomically */
	/*
	 * Provider-specific launch options from the template's or fleet's
	 * provider block (metadata_options, block devices, ...); borrowed,
	 * may be NULL. Providers ignore keys they do not know.
	 */
	const json_t *options;
} kiln_launch;

/* ---- images -------------------------------------------------------------- */

typedef enum kiln_image_state {
	KILN_IMAGE_UNKNOWN = 0,
	KILN_IMAGE_PENDING,
	KILN_IMAGE_AVAILABLE,
	KILN_IMAGE_FAILED,
	KILN_IMAGE_DEREGISTERED,
} kiln_image_state;

const char *kiln_image_state_name(kiln_image_state s);
kiln_image_state kiln_image_state_parse(const char *s);

typedef struct kiln_image {
	char id[KILN_ID_MAX];
	char name[KILN_NAME_MAX];
	char owner[KILN_ID_MAX];
	kiln_image_state state;
	char state_reason[KILN_NAME_MAX];
	int64_t created;         /* Unix seconds */
	uint64_t size_bytes;     /* 0 when unknown */
	kiln_strings snapshots;  /* EBS snapshot ids, or local layer ids */
	kiln_tags tags;
} kiln_image;

typedef struct kiln_image_list {
	kiln_image *items;
	size_t n;
} kiln_image_list;

void kiln_image_list_release(kiln_image_list *list);
int kiln_image_list_add(kiln_image_list *list, const kiln_image *img);
void kiln_image_release(kiln_image *img);
int kiln_image_copy(kiln_image *dst, const kiln_image *src);

typedef struct kiln_image_query {
	const char *const *ids;
	size_t n_ids;
	const char *name;        /* may hold * and ? wildcards */
	const char *const *owners; /* "self", an account id, "amazon"; NULL: self + public */
	size_t n_owners;
	const kiln_tags *tags;
} kiln_image_query;

/*
 * What an image may be made to do after it exists: the instance metadata
 * version it insists on, who may launch it or create volumes from its
 * snapshots, when it is deprecated. Lists are borrowed; empty leaves that
 * setting alone. Applying settings again is harmless.
 */
typedef struct kiln_image_settings {
	const char *imds_support;             /* "v2.0": instances from it need IMDSv2; NULL: leave */
	const char *const *launch_users;      /* accounts that may launch it */
	size_t n_launch_users;
	const char *const *launch_groups;     /* "all": public */
	size_t n_launch_groups;
	const char *const *snapshot_users;    /* accounts that may create volumes from its snapshots */
	size_t n_snapshot_users;
	const char *const *snapshot_groups;
	size_t n_snapshot_groups;
	int64_t deprecate_at;                 /* Unix seconds; 0: not deprecated */
} kiln_image_settings;

/* A copy of an image of another region into the provider's own region. */
typedef struct kiln_image_copy_spec {
	const char *source_region;
	const char *source_id;
	const char *name;
	const char *description;
	bool encrypted;            /* encrypt the copy's snapshots ... */
	const char *kms_key_id;    /* ... with this key of the destination region (NULL: its default) */
	/* Idempotency token (<= 64 ASCII): the same token returns the same copy. */
	const char *client_token;
	const kiln_tags *tags;     /* on the copy (and its snapshots where the cloud can) at creation */
} kiln_image_copy_spec;

/* ---- load balancers ------------------------------------------------------ */

typedef enum kiln_lb_kind {
	KILN_LB_TARGET_GROUP, /* aws ELBv2: ref is the target group ARN */
	KILN_LB_CLASSIC,      /* aws classic ELB: ref is the load balancer name */
	KILN_LB_LOCAL,        /* local HAProxy: ref is the balancer's name */
} kiln_lb_kind;

typedef struct kiln_lb {
	kiln_lb_kind kind;
	const char *ref;
	/* KILN_LB_LOCAL only: how to bring the balancer up */
	const char *listen;       /* "127.0.0.1:8080" */
	const char *health_path;  /* "/healthz" */
	int interval_s, rise, fall;
	int target_port;          /* the port instances serve on (80) */
} kiln_lb;

typedef struct kiln_lb_info {
	char name[KILN_NAME_MAX];  /* for messages */
	int drain_timeout_s;       /* deregistration delay / connection draining */
	int health_interval_s;     /* how often the balancer checks */
} kiln_lb_info;

typedef enum kiln_health {
	KILN_HEALTH_UNKNOWN = 0,
	KILN_HEALTH_INITIAL,    /* registered, checks not yet passed */
	KILN_HEALTH_HEALTHY,
	KILN_HEALTH_UNHEALTHY,
	KILN_HEALTH_DRAINING,   /* deregistering, connections draining */
	KILN_HEALTH_UNUSED,     /* not registered (or instance stopped) */
	KILN_HEALTH_UNAVAILABLE,
} kiln_health;

const char *kiln_health_name(kiln_health h);
kiln_health kiln_health_parse(const char *s);

typedef struct kiln_target {
	char instance_id[KILN_ID_MAX];
	kiln_health health;
	char reason[KILN_NAME_MAX]; /* "Target.FailedHealthChecks: ..." */
} kiln_target;

typedef struct kiln_target_list {
	kiln_target *items;
	size_t n;
} kiln_target_list;

void kiln_target_list_release(kiln_target_list *list);
int kiln_target_list_add(kiln_target_list *list, const kiln_target *t);
const kiln_target *kiln_target_list_find(const kiln_target_list *list, const char *id);

/* ---- temporary access ---------------------------------------------------- */

typedef struct kiln_firewall {
	const char *name;
	const char *description;
	const char *subnet_id;     /* the rule's network (VPC); NULL: default */
	int port;                  /* tcp */
	const char *const *cidrs;  /* never widened by the provider */
	size_t n_cidrs;
	const kiln_tags *tags;
} kiln_firewall;

/* ---- anything kiln tagged, for cleanup ------------------------------------ */

typedef enum kiln_resource_kind {
	KILN_RES_INSTANCE,
	KILN_RES_KEYPAIR,
	KILN_RES_FIREWALL,
	KILN_RES_IMAGE,
	KILN_RES_SNAPSHOT,
} kiln_resource_kind;

const char *kiln_resource_kind_name(kiln_resource_kind k);

typedef struct kiln_resource {
	kiln_resource_kind kind;
	char id[KILN_NAME_MAX];    /* key pairs: their name */
	char state[KILN_ID_MAX];   /* instances: their state, else "" */
	kiln_tags tags;
} kiln_resource;

typedef struct kiln_resource_list {
	kiln_resource *items;
	size_t n;
} kiln_resource_list;

void kiln_resource_list_release(kiln_resource_list *list);
int kiln_resource_list_add(kiln_resource_list *list, const kiln_resource *r);

/* ---- named records --------------------------------------------------------- */

/*
 * Small named documents with create-if-absent: version reservations, the
 * rollout lock, a fleet's rollout state. On AWS SSM parameters (names
 * like "/kiln/images/web/versions/3"), on local files under a lock.
 */
typedef struct kiln_record {
	char *value;
	int64_t version;     /* bumped by every write */
	int64_t modified_ms; /* Unix milliseconds, 0 if unknown */
} kiln_record;

void kiln_record_release(kiln_record *r);

/* ---- identity -------------------------------------------------------------- */

typedef struct kiln_identity {
	char account[KILN_ID_MAX];
	char arn[KILN_NAME_MAX];
	char user_id[KILN_NAME_MAX];
	char region[KILN_ID_MAX];
	char endpoint[KILN_NAME_MAX];
	char credential_source[KILN_NAME_MAX];
} kiln_identity;

/* ---- the provider ------------------------------------------------------------ */

typedef struct kiln_cloud kiln_cloud;

typedef struct kiln_cloud_ops {
	const char *name; /* "aws", "local", "memory" */

	int (*whoami)(kiln_cloud *c, kiln_identity *out);

	/* instances */
	int (*instances_launch)(kiln_cloud *c, const kiln_launch *spec, kiln_instance_list *out);
	int (*instances_describe)(kiln_cloud *c, const kiln_instance_query *q, kiln_instance_list *out);
	int (*instances_stop)(kiln_cloud *c, const char *const *ids, size_t n);
	int (*instances_terminate)(kiln_cloud *c, const char *const *ids, size_t n);
	/* The console log (cloud-init's host key fingerprints, boot errors); may be empty. */
	int (*console_output)(kiln_cloud *c, const char *id, kiln_buf *out);

	/* images */
	int (*images_describe)(kiln_cloud *c, const kiln_image_query *q, kiln_image_list *out);
	/* Snapshots the (stopped) instance; tags go on the image at creation. */
	int (*image_create)(kiln_cloud *c, const char *instance_id, const char *name,
			    const char *description, const kiln_tags *tags, char out_id[KILN_ID_MAX]);
	/* Deregisters the image and deletes its snapshots (or unused layers). */
	int (*image_delete)(kiln_cloud *c, const char *image_id);

	/* tags on any resource id (instances, images, snapshots, firewalls) */
	int (*tags_create)(kiln_cloud *c, const char *const *ids, size_t n, const kiln_tags *tags);

	/* load balancers */
	/* Checks the balancer exists (local: brings it up); fills info. */
	int (*lb_open)(kiln_cloud *c, const kiln_lb *lb, kiln_lb_info *out);
	int (*lb_register)(kiln_cloud *c, const kiln_lb *lb, const char *const *ids, size_t n);
	/* Starts draining; returns at once. Health then says draining, then unused. */
	int (*lb_deregister)(kiln_cloud *c, const kiln_lb *lb, const char *const *ids, size_t n);
	/* Health of every registered target (ids NULL) or of the ids given, in one call. */
	int (*lb_health)(kiln_cloud *c, const kiln_lb *lb, const char *const *ids, size_t n,
			 kiln_target_list *out);

	/* temporary access for builds */
	int (*keypair_import)(kiln_cloud *c, const char *name, const char *public_key,
			      const kiln_tags *tags);
	int (*keypair_delete)(kiln_cloud *c, const char *name);
	/* Creates a firewall (security group) admitting port from cidrs only. */
	int (*firewall_create)(kiln_cloud *c, const kiln_firewall *spec, char out_id[KILN_ID_MAX]);
	/* Retries while the cloud says it is still in use, up to timeout_ms. */
	int (*firewall_delete)(kiln_cloud *c, const char *id, uint64_t timeout_ms);

	/* everything carrying all of the tags in match (instances not terminated) */
	int (*resources_find)(kiln_cloud *c, const kiln_tags *match, kiln_resource_list *out);

	/* records */
	int (*record_create)(kiln_cloud *c, const char *name, const char *value);
	int (*record_get)(kiln_cloud *c, const char *name, kiln_record *out);
	int (*record_put)(kiln_cloud *c, const char *name, const char *value);
	int (*record_delete)(kiln_cloud *c, const char *name);
	/* Names of the records under prefix ("/kiln/fleets/"), recursively. */
	int (*record_list)(kiln_cloud *c, const char *prefix, kiln_strings *out);

	/* The address builds should admit by default, e.g. "203.0.113.7/32"; ENOTFOUND if unknowable. */
	int (*caller_cidr)(kiln_cloud *c, const char *subnet_id, kiln_buf *out);

	/*
	 * Images in other regions and image settings; NULL where a provider
	 * has no such thing (the engines then fail with KILN_EUNSUPPORTED).
	 *
	 * region_open: the same provider (credentials, configuration) for
	 * another region; *out is the caller's (kiln_cloud_free), and sees the
	 * same cloud as any other provider opened for that region.
	 * image_copy: starts a copy into c's region and returns its id at
	 * once; the copy is pending until kiln_cloud_wait_image says otherwise.
	 * image_configure: applies s to the image (and its snapshots).
	 */
	int (*region_open)(kiln_cloud *c, const char *region, kiln_cloud **out);
	int (*image_copy)(kiln_cloud *c, const kiln_image_copy_spec *spec, char out_id[KILN_ID_MAX]);
	int (*image_configure)(kiln_cloud *c, const char *image_id, const kiln_image_settings *s);

	void (*free)(kiln_cloud *c);
} kiln_cloud_ops;

/*
 * Providers embed this as their first member and point ops at a static
 * table; kiln_cloud_free calls ops->free.
 */
struct kiln_cloud {
	const kiln_cloud_ops *ops;
	const kiln_events *events; /* where providers report what they do; may be NULL */
	char region[KILN_ID_MAX];
};

void kiln_cloud_free(kiln_cloud *c);
const char *kiln_cloud_name(const kiln_cloud *c);

/* ---- waiters, shared by the engines ---------------------------------------- */

/*
 * Polls instances_describe (one call per round for all ids) until every id
 * is in state want, with a backoff from 250 ms to 5 s. Fails at once if an
 * instance goes terminated (or, waiting for running, stopped) with its
 * state reason. KILN_ETIMEOUT after timeout_ms; honours cancellation.
 */
int kiln_cloud_wait_instances(kiln_cloud *c, const char *const *ids, size_t n,
			      kiln_instance_state want, uint64_t timeout_ms,
			      kiln_instance_list *out);

/* Polls until the image is available; fails if it becomes failed. */
int kiln_cloud_wait_image(kiln_cloud *c, const char *image_id, uint64_t timeout_ms,
			  kiln_image *out);

#endif
