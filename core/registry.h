/*
 * registry.h: kiln's images, their names and versions.
 *
 * An image has a NAME ("web") and a VERSION (1, 2, 3 ...). The cloud is the
 * source of truth: every image kiln builds carries the tags below, so the
 * list of versions can always be rebuilt from the cloud. A JSON file in
 * the state dir (registry.json) caches what this machine built and saw,
 * as a record; nothing depends on it being complete.
 *
 * Versions are reserved, before a build starts, with a cloud record
 * created only if absent ("/kiln/images/NAME/versions/N"): two builds
 * racing never share a version, and a failed build's version is never
 * reused (it stays a gap), so NAME@N always means one image.
 *
 * Image references, wherever an image is named: "NAME" (its newest
 * available version), "NAME@N", or a provider image id ("ami-...",
 * "img-...").
 */
#ifndef KILN_REGISTRY_H
#define KILN_REGISTRY_H

#include "core/cloud.h"

#define KILN_TAG_IMAGE "kiln:image"
#define KILN_TAG_VERSION "kiln:version"
#define KILN_TAG_SOURCE_IMAGE "kiln:source-image"
#define KILN_TAG_TEMPLATE_SHA256 "kiln:template-sha256"
#define KILN_TAG_BUILT_AT "kiln:built-at"
#define KILN_TAG_BUILD_ID "kiln:build-id"
#define KILN_TAG_EXPIRES_AT "kiln:expires-at"
#define KILN_TAG_FLEET "kiln:fleet"
#define KILN_TAG_ROLLOUT_ID "kiln:rollout-id"
#define KILN_TAG_ROLE "kiln:role"

typedef struct kiln_image_ref {
	char name[KILN_NAME_MAX]; /* "" when id is set */
	int64_t version;          /* 0: the newest */
	char id[KILN_ID_MAX];     /* "" unless the reference is an image id */
} kiln_image_ref;

/* Image names: 1-100 of [A-Za-z0-9._-], starting with a letter or digit. */
bool kiln_image_name_valid(const char *name);
/* KILN_EINVALID (with a message) for a malformed reference. */
int kiln_image_ref_parse(kiln_image_ref *out, const char *s);
/* "web@3", or the id. */
void kiln_image_ref_format(char *out, size_t size, const kiln_image_ref *ref);

/* The version in an image's kiln:version tag, or 0. */
int64_t kiln_image_version(const kiln_image *img);
/* The name in its kiln:image tag, or "". */
const char *kiln_image_kiln_name(const kiln_image *img);

/*
 * The available kiln images in the cloud (all names when name is NULL),
 * sorted by name, newest version first. Images without a valid kiln:version
 * tag are left out.
 */
int kiln_registry_list(kiln_cloud *c, const char *name, kiln_image_list *out);

/*
 * The image a reference names. NAME resolves to its newest available
 * version; KILN_ENOTFOUND with a message naming the reference otherwise.
 */
int kiln_registry_resolve(kiln_cloud *c, const kiln_image_ref *ref, kiln_image *out);

/*
 * Reserves the next version of name for owner (a build id): tries
 * newest-known + 1 and counts up past versions already reserved.
 */
int kiln_registry_reserve_version(kiln_cloud *c, const char *name, const char *owner,
				  int64_t *out);
/* The record name of a reservation: "/kiln/images/NAME/versions/N". */
void kiln_registry_version_record(char *out, size_t size, const char *name, int64_t version);

/*
 * Images that must never be pruned: every image id named in a record under
 * "/kiln/fleets/" (the rollout lock, a fleet's state: by convention every
 * member whose key ends in "image_id" or "image_ids", at any depth), and
 * every image that a running or stopped instance tagged kiln:fleet runs.
 * Record writers (rollout/) follow the naming convention.
 */
int kiln_registry_protected_images(kiln_cloud *c, kiln_strings *out);

/*
 * The local cache: records images under "PROVIDER/REGION" in
 * STATE_DIR/registry.json (written atomically, under a lock), or drops
 * ids that no longer exist (remove).
 */
void kiln_registry_scope(char *out, size_t size, const kiln_cloud *c);
int kiln_registry_cache_put(const char *scope, const kiln_image_list *images);
int kiln_registry_cache_remove(const char *scope, const char *image_id);
/* The cached entries of scope as a JSON object NAME -> VERSION -> {...} (new reference). */
int kiln_registry_cache_get(const char *scope, json_t **out);

#endif
