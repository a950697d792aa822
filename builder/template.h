/*
 * template.h: build templates (JSON, Packer-like names), parsed and checked.
 *
 * Who calls: `kiln build` and `kiln validate` (cli/), then the build engine
 * (builder/build.c), which only ever sees a kiln_template that passed every
 * check here. Everything that can be known without a cloud is checked at
 * load time, so a bad template fails with KILN_EINVALID and
 * "web.json:12:7: ..." before anything is created:
 *  - unknown keys (with "did you mean"), wrong types, out-of-range numbers,
 *    a missing required key, both or neither of source_image and
 *    source_image_filter, a shell provisioner with both inline and script;
 *  - missing local files (scripts, file sources), resolved against the
 *    template's directory;
 *  - template expressions: {{var NAME}} (declared in "variables", set by
 *    --var / --var-file, or defaulted), {{env NAME}} (must be set),
 *    {{timestamp}} (Unix seconds, one value per load), {{version}} (only
 *    where it can be known: after the version is reserved; it stays
 *    literal until kiln_template_set_version);
 *  - CIDRs of temporary_cidrs (and host bits set in them);
 *  - the aws image and instance options, which only the "aws" block may
 *    hold (IMDS, volumes, encryption, copies, sharing, deprecation), and
 *    the combinations AWS refuses (sharing an image encrypted with the
 *    default key, making an encrypted image public ...).
 *
 * Provider blocks: "aws": {...} and "local": {...} override top-level keys
 * for that provider. The provider is --provider, else the file's
 * "provider", else KILN_PROVIDER, else "aws" (DESIGN.md).
 */
#ifndef KILN_BUILDER_TEMPLATE_H
#define KILN_BUILDER_TEMPLATE_H

#include "core/cloud.h"
#include "provisioners/provision.h"

typedef enum kiln_ssh_interface {
	KILN_SSH_PUBLIC_IP,
	KILN_SSH_PRIVATE_IP,
} kiln_ssh_interface;

typedef struct kiln_template_options {
	const char *provider;        /* --provider, or NULL */
	const char *const *vars;     /* --var "KEY=VALUE", in order (later wins) */
	size_t n_vars;
	const char *var_file;        /* --var-file, or NULL */
} kiln_template_options;

#define KILN_TEMPLATE_OPTIONS_INIT { NULL, NULL, 0, NULL }

/* At most this many ami_regions (EC2 has fewer regions). */
#define KILN_TEMPLATE_MAX_REGIONS 32

typedef struct kiln_template {
	char *path;            /* as given */
	char *dir;             /* the template's directory: relative paths start here */
	char *provider;        /* "aws" or "local": the one chosen */
	char *file_provider;   /* the file's "provider" key, or NULL */
	/* which provider blocks the file has: `kiln validate` checks it for each */
	bool has_aws_block, has_local_block;
	char sha256[65];       /* of the template's text, lowercase hex */
	int64_t timestamp;     /* what {{timestamp}} expanded to */

	char *name;
	char *description;     /* the image's description; may hold {{version}} */

	/* exactly one of source_image / the filter */
	char *source_image;
	bool has_source_filter;
	kiln_strings filter_owners;
	char *filter_name;     /* may hold * and ? */
	kiln_tags filter_tags;

	char *instance_type;   /* NULL on local when not given */
	char *subnet_id;
	char *region;
	char *iam_instance_profile;
	char *user_data;
	/*
	 * What kiln_launch.options carries to the provider (owned; NULL: none):
	 * the provider block's "launch_options", plus on aws the instance
	 * options of core/instance_options.h and, with encrypt_boot,
	 * "encrypt_volumes": {"kms_key_id": ...} (aws/provider.h).
	 */
	json_t *launch_options;

	char *ssh_username;
	int ssh_port;
	kiln_ssh_interface ssh_interface;
	char *ssh_host;        /* overrides the instance's address */
	int64_t ssh_timeout_s;

	kiln_strings temporary_cidrs; /* empty: the caller's address, found at build time */

	int64_t launch_timeout_s;  /* waiting for running */
	int64_t image_timeout_s;   /* waiting for available */
	int64_t build_timeout_s;   /* kiln:expires-at = start + this */

	kiln_tags tags;        /* user tags for the image and its snapshots */
	int64_t keep_versions; /* 0: keep all */
	char *ssm_parameter;   /* NULL: none */

	/* aws image options, from the "aws" block only (docs/templates.md, "AWS options") */
	char *imds_support;           /* "v2.0" or NULL */
	bool encrypt_boot;            /* the instance's EBS volumes, hence the image, encrypted */
	char *kms_key_id;             /* NULL: the account's default EBS key */
	kiln_strings ami_regions;     /* copies go there; never the build's own region */
	kiln_tags region_kms_key_ids; /* region -> key for the copies (with kms_key_id) */
	kiln_strings ami_users, ami_groups;           /* launch permission */
	kiln_strings snapshot_users, snapshot_groups; /* create-volume permission */
	int64_t deprecate_at;         /* Unix seconds, or 0 */
	int64_t deprecate_after_s;    /* "90d": from when the image is made, or 0 */

	kiln_provisioner *provisioners;
	size_t n_provisioners;
	int64_t version;       /* 0 until kiln_template_set_version */
} kiln_template;

/*
 * Reads, parses and checks path for the provider the options and the file
 * choose. On success *out is owned by the caller (kiln_template_free).
 * Errors are KILN_EINVALID with a positioned message, or I/O errors.
 */
int kiln_template_load(kiln_template **out, const char *path, const kiln_template_options *opts);

/* As kiln_template_load, from text; name stands for the path in messages and for the directory. */
int kiln_template_parse(kiln_template **out, const char *name, const char *text, size_t len,
			const kiln_template_options *opts);

/* Expands {{version}} everywhere it may appear; once, after the version is reserved. */
int kiln_template_set_version(kiln_template *t, int64_t version);

void kiln_template_free(kiln_template *t);

/*
 * Checks an IPv4 or IPv6 CIDR ("203.0.113.7/32"); 0 or KILN_EINVALID with
 * a message saying what is wrong (no prefix, bad address, host bits set).
 */
int kiln_cidr_check(const char *cidr);

/* True for 127.0.0.0/8, ::1 and "localhost": where the default CIDR is 127.0.0.1/32. */
bool kiln_host_is_loopback(const char *host);

#endif
