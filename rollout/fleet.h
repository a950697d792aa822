/*
 * fleet.h: the fleet file, read and checked.
 *
 * A fleet is a named set of instances (tag kiln:fleet) behind one or more
 * load balancers, with a launch spec and the knobs of a rollout. The file
 * is JSON (docs/rollout.md lists every key); per-provider blocks "aws" and
 * "local" override top-level keys for that provider, so one file can
 * describe the fleet on both clouds.
 *
 * Every error is positioned: "web.json:7:3: unknown key ...". Nothing is
 * checked against the cloud here (subnets, target groups): lb_open and the
 * launch do that, before anything changes.
 */
#ifndef KILN_ROLLOUT_FLEET_H
#define KILN_ROLLOUT_FLEET_H

#include "core/cloud.h"

typedef enum kiln_retire {
	KILN_RETIRE_AT_END,    /* old instances terminated after the last batch (default) */
	KILN_RETIRE_PER_BATCH, /* terminated as soon as each batch's old ones are drained */
} kiln_retire;

const char *kiln_retire_name(kiln_retire r);

#define KILN_FLEET_NAME_MAX 64

typedef struct kiln_fleet {
	char name[KILN_FLEET_NAME_MAX + 1];
	char provider[16];       /* "aws" or "local": the provider the file was resolved for */
	char *path;              /* the file, as given */
	char *region;            /* NULL: the provider's default */
	char *image;             /* an image NAME (the registry's) */
	unsigned desired;
	unsigned batch_size;     /* resolved: 1..desired */
	char batch_spec[32];     /* as written: "2", "25%" (for messages) */
	kiln_retire retire;
	char *instance_type;     /* NULL: the provider's default */
	kiln_strings subnet_ids; /* launches spread across them; empty: the default */
	kiln_strings security_group_ids;
	char *key_name;
	char *iam_instance_profile;
	char *user_data_file;    /* resolved against the fleet file's directory */
	char *user_data;         /* its content (capped at 16 KiB, EC2's limit) */
	kiln_tags tags;          /* user tags; never kiln:* */
	/*
	 * The aws block's instance options (core/instance_options.h: IMDS,
	 * root volume), as kiln_launch.options carries them; NULL: none. Owned.
	 */
	json_t *launch_options;
	/* the load balancers: refs and local settings point into this struct */
	kiln_lb *lbs;
	size_t n_lbs;
	int health_timeout_s;    /* 600 */
	int health_grace_s;      /* 30 */
	int warmup_s;            /* 0 */
	int drain_timeout_s;     /* -1: each balancer's own (lb_open) */
} kiln_fleet;

/*
 * Reads and checks a fleet file for a provider. provider is --provider's
 * value or NULL; then the file's "provider" key, else KILN_PROVIDER, else
 * "aws" decides (the precedence of DESIGN.md). Fails with KILN_EINVALID
 * and a positioned message; *out is the caller's (kiln_fleet_free).
 */
int kiln_fleet_load(kiln_fleet **out, const char *path, const char *provider);
/* As kiln_fleet_load, from text (name is what messages call it). */
int kiln_fleet_parse(kiln_fleet **out, const char *name, const char *text, const char *provider);
void kiln_fleet_free(kiln_fleet *fleet);

/* Fleet names: 1-64 of [A-Za-z0-9._-], starting with a letter or digit. */
bool kiln_fleet_name_valid(const char *name);

/* The record names of a fleet: "/kiln/fleets/NAME/lock" and ".../state". */
void kiln_fleet_lock_record(char *out, size_t size, const char *fleet);
void kiln_fleet_state_record(char *out, size_t size, const char *fleet);

#endif
