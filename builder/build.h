/*
 * build.h: the build engine: temporary instance -> SSH provisioning ->
 * versioned image -> registry, with nothing left behind.
 *
 * Who calls: `kiln build` (cli/cmd_build.c) with the real provider and
 * kiln_ssh_communicator; the unit tests with the in-memory provider and a
 * scripted communicator. The steps are issue 3's "What a build does":
 *
 *  1. resolve the source image (before anything is reserved or created);
 *  2. reserve the next version of NAME (a cloud record created if absent);
 *  3. generate an ed25519 key, import it, create a firewall admitting SSH
 *     from temporary_cidrs only;
 *  4. launch with a client token derived from the build id, wait for
 *     running (a backoff from 250 ms), connect, check the host key against
 *     cloud-init's fingerprints in the console output (else record it);
 *  5. run the provisioners, their output streamed as "output" events;
 *  6. stop, create NAME-vVERSION with the kiln:* tags and the template's,
 *     wait until available (fail on failed), tag its snapshots;
 *  6a. copy it to ami_regions (all copies started, then waited for; each
 *     tagged like the original, snapshots too), then apply the image
 *     settings (IMDSv2, launch and snapshot permissions, deprecation) to
 *     the image and every copy. Only then is the image the build's
 *     product: until then a failure or a cancel removes it and its copies;
 *  7. record it: registry cache (each copy under its region), manifest,
 *     SSM parameter; keep_versions (in every region);
 *  8. clean up in reverse (terminate, delete key pair, delete firewall),
 *     also on failure and on cancellation (inside a cancel shield).
 *
 * Crash safety: every temporary resource is written to a journal
 * (STATE_DIR/builds/BUILD_ID.json, atomically) BEFORE it is created and
 * again after, and carries the tags kiln:build-id and kiln:expires-at.
 * While it runs the build holds the flock STATE_DIR/builds/BUILD_ID.lock;
 * the kernel drops it if the process dies, so `kiln cleanup` (cleanup.h)
 * can tell a dead build from a live one and finish its cleanup.
 */
#ifndef KILN_BUILDER_BUILD_H
#define KILN_BUILDER_BUILD_H

#include "builder/template.h"
#include "core/cloud.h"
#include "provisioners/ssh.h"

typedef enum kiln_on_error {
	KILN_ON_ERROR_CLEANUP, /* default: remove everything the build created */
	KILN_ON_ERROR_ABORT,   /* keep the instance (and its key and firewall) to debug it */
} kiln_on_error;

typedef struct kiln_build_options {
	const kiln_communicator *comm; /* kiln_ssh_communicator, or a test's fake */
	const kiln_events *events;     /* may be NULL */
	kiln_on_error on_error;
	/* NULL: kiln-manifest.json beside the template */
	const char *manifest_path;
	/* NULL: a fresh one (UTC time + random); tests fix it */
	const char *build_id;
	/* how long deleting the firewall may keep retrying while the cloud says it is in use */
	uint64_t firewall_delete_timeout_ms; /* 0: 5 minutes */
} kiln_build_options;

#define KILN_BUILD_OPTIONS_INIT { NULL, NULL, KILN_ON_ERROR_CLEANUP, NULL, NULL, 0 }

#define KILN_BUILD_ID_MAX 48
#define KILN_BUILD_MAX_COPIES 32

typedef struct kiln_build_copy {
	char region[KILN_ID_MAX];
	char image_id[KILN_ID_MAX];
} kiln_build_copy;

typedef struct kiln_build_result {
	char build_id[KILN_BUILD_ID_MAX];
	int64_t version;                  /* 0 if the build failed before reserving one */
	char image_id[KILN_ID_MAX];       /* "" unless it succeeded */
	char image_name[KILN_NAME_MAX];   /* "web-v3" */
	char source_image_id[KILN_ID_MAX];
	kiln_build_copy copies[KILN_BUILD_MAX_COPIES]; /* ami_regions, once the build succeeded */
	size_t n_copies;
	char host_key[128];               /* the instance's SSH host key fingerprint, as verified or recorded */
	bool host_key_verified;           /* matched the console's fingerprints */
	char manifest_path[4096];
	uint64_t bytes_uploaded;
	uint64_t upload_ms;
	unsigned commands;
	unsigned leftovers;               /* unfinished builds found in the state dir at start */
	/* --on-error abort after a failure: what was kept and how to reach it */
	bool kept;
	char kept_instance_id[KILN_ID_MAX];
	char kept_address[KILN_NAME_MAX];
	int kept_port;
	char kept_user[KILN_NAME_MAX];
	char kept_key_path[4096];
} kiln_build_result;

/*
 * Runs the build of template t (already loaded and checked) on cloud c.
 * Fills *out as far as it got, on success and failure alike. Returns 0, or
 * the error that stopped it (KILN_ECANCELLED after SIGINT/SIGTERM) once
 * everything it created is removed (or kept, with KILN_ON_ERROR_ABORT).
 * If the cleanup itself fails, the error says so and names `kiln cleanup`.
 */
int kiln_build_run(kiln_cloud *c, kiln_template *t, const kiln_build_options *opts,
		   kiln_build_result *out);

/*
 * The "SHA256:..." fingerprints in the last cloud-init block
 * "-----BEGIN SSH HOST KEY FINGERPRINTS-----" ... "-----END ...-----" of a
 * console log (lines may carry prefixes such as "ci-info: " or a kernel
 * timestamp). Appends to out; 0 found is not an error.
 */
int kiln_console_host_fingerprints(const char *text, size_t len, kiln_strings *out);

/* A fresh build id: "20261125T213744Z-1a2b3c4d" (UTC, then 32 random bits). */
int kiln_build_id_new(char out[KILN_BUILD_ID_MAX]);

#endif
