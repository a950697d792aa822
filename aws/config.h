/*
 * config.h: where kiln's AWS settings come from, resolved the way the AWS
 * CLI resolves them (docs/aws-configuration.md is the user-facing account).
 *
 *  credentials: the AWS CLI's chain (botocore's create_credential_resolver),
 *               first match wins:
 *                 1. AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN);
 *                 2. the profile's role_arn with source_profile or
 *                    credential_source: STS AssumeRole (chains allowed);
 *                 3. AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN (or the
 *                    profile's web_identity_token_file + role_arn):
 *                    STS AssumeRoleWithWebIdentity;
 *                 4. (a profile with sso_* settings: not supported, an error);
 *                 5. the profile's keys in the credentials file;
 *                 6. the profile's credential_process;
 *                 7. the profile's keys in the config file;
 *                 8. (ECS container credentials: not supported, skipped and said so);
 *                 9. the EC2 instance metadata service (IMDSv2), unless
 *                    AWS_EC2_METADATA_DISABLED=true.
 *               The profile is AWS_PROFILE, else "default"; the files are
 *               AWS_SHARED_CREDENTIALS_FILE (~/.aws/credentials) and
 *               AWS_CONFIG_FILE (~/.aws/config, "[profile NAME]" sections).
 *               Keys that expire are refreshed before they do
 *               (aws/credentials.h).
 *  region:      the caller's (a template's or fleet file's "region"),
 *               else AWS_REGION, else AWS_DEFAULT_REGION, else the profile's,
 *               else the instance metadata service's placement/region.
 *               Note: a file's region wins over the environment, because
 *               the file names where its fleet lives.
 *  endpoints:   AWS_ENDPOINT_URL_<SERVICE> (EC2, ELASTIC_LOAD_BALANCING_V2,
 *               ELASTIC_LOAD_BALANCING, SSM, STS), else AWS_ENDPOINT_URL,
 *               else the profile's endpoint_url, else https://SERVICE.REGION.amazonaws.com.
 *  TLS:         AWS_CA_BUNDLE (else the profile's ca_bundle) for verification,
 *               which is never turned off. Proxies: libcurl's own variables.
 *
 * Missing credentials or region fail with KILN_EINVALID and one line naming
 * what to set.
 */
#ifndef KILN_AWS_CONFIG_H
#define KILN_AWS_CONFIG_H

#include "aws/sigv4.h"

typedef enum kiln_aws_service {
	KILN_AWS_EC2,
	KILN_AWS_ELBV2,
	KILN_AWS_ELB,
	KILN_AWS_SSM,
	KILN_AWS_STS,
	KILN_AWS_SERVICE_COUNT,
} kiln_aws_service;

/* ---- where the credentials come from ------------------------------------------- */

typedef enum kiln_aws_source_kind {
	KILN_AWS_SOURCE_STATIC,       /* keys from the environment or a profile */
	KILN_AWS_SOURCE_ASSUME_ROLE,  /* STS AssumeRole with the keys of `from` */
	KILN_AWS_SOURCE_WEB_IDENTITY, /* STS AssumeRoleWithWebIdentity with a token file */
	KILN_AWS_SOURCE_PROCESS,      /* a profile's credential_process */
	KILN_AWS_SOURCE_IMDS,         /* the instance's role, from IMDSv2 */
} kiln_aws_source_kind;

/*
 * One link of the chain that was picked: what to ask, not yet asked.
 * Resolving it touches neither the network nor a process; building a
 * provider from it (aws/credentials.h) does.
 */
typedef struct kiln_aws_source {
	kiln_aws_source_kind kind;
	/* for `kiln whoami`: "environment", "assume-role ARN via profile dev", ... */
	char description[256];
	char *profile;                /* the profile that named this source; NULL: the environment */
	kiln_aws_credentials keys;    /* STATIC */
	char *role_arn;               /* ASSUME_ROLE, WEB_IDENTITY */
	char *session_name;           /* ASSUME_ROLE, WEB_IDENTITY; NULL: "kiln-<unix time>" */
	char *external_id;            /* ASSUME_ROLE; NULL: none */
	int duration_s;               /* ASSUME_ROLE; 0: STS's default (one hour) */
	struct kiln_aws_source *from; /* ASSUME_ROLE: where the keys that assume the role come from */
	char *token_file;             /* WEB_IDENTITY */
	char *command;                /* PROCESS: the command line, split without a shell */
} kiln_aws_source;

void kiln_aws_source_free(kiln_aws_source *s);

/* The instance metadata service (IMDSv2), for credentials and the region. */
typedef struct kiln_aws_imds_config {
	bool disabled;       /* AWS_EC2_METADATA_DISABLED=true */
	char *endpoint;      /* AWS_EC2_METADATA_SERVICE_ENDPOINT, the profile's ec2_metadata_service_endpoint,
	                        else http://169.254.169.254 (http://[fd00:ec2::254] in IPv6 mode) */
	uint64_t timeout_ms; /* AWS_METADATA_SERVICE_TIMEOUT (seconds), else 1 s */
	unsigned attempts;   /* AWS_METADATA_SERVICE_NUM_ATTEMPTS, else 2 (one retry) */
} kiln_aws_imds_config;

struct kiln_aws_creds_provider;
struct kiln_aws_transport;
struct kiln_events;

typedef struct kiln_aws_config {
	char *profile;
	char *region;
	char *endpoints[KILN_AWS_SERVICE_COUNT]; /* "https://ec2.us-east-1.amazonaws.com" */
	char *ca_bundle;                          /* NULL: the system's */
	/*
	 * Static keys are here (with source the description); for every other
	 * source only credentials.source is set and provider supplies the keys,
	 * refreshing them (aws/credentials.h). aws/http.c asks the provider
	 * when there is one.
	 */
	kiln_aws_credentials credentials;
	kiln_aws_source *source;                  /* the chain's pick (owned) */
	struct kiln_aws_creds_provider *provider; /* NULL for static keys and offline loads (owned) */
	kiln_aws_imds_config imds;
	/* What the chain passed over and the user should hear (ECS container credentials); NULL: nothing. */
	char *notes;
} kiln_aws_config;

/* "ec2", "elasticloadbalancing", "elasticloadbalancing", "ssm", "sts": the signing name. */
const char *kiln_aws_service_signing_name(kiln_aws_service s);
/* "EC2", "ELASTIC_LOAD_BALANCING_V2", ...: the AWS_ENDPOINT_URL_<this> suffix, for hints. */
const char *kiln_aws_service_env_suffix(kiln_aws_service s);

/*
 * Resolves everything from the environment and the shared files, asks the
 * instance metadata service for the region if nothing else names one, and
 * fetches the first credentials from the chosen source (assume the role,
 * run the process, ...), so that a bad setup fails here, before any work.
 * region may be NULL (then the chain decides). On failure nothing is held.
 * Implemented in aws/credentials.c.
 */
int kiln_aws_config_load(kiln_aws_config *out, const char *region);

typedef struct kiln_aws_load_options {
	/* STS and IMDS requests go through this (tests); NULL: libcurl. Borrowed, must outlive cfg. */
	const struct kiln_aws_transport *transport;
	/* warnings (a refresh that failed, a source skipped); may be NULL. Borrowed, must outlive cfg. */
	const struct kiln_events *events;
	/*
	 * Resolve only: no network and no process. The region is not asked of
	 * the instance metadata service and no credentials are fetched
	 * (provider stays NULL); for validation, tests and fuzzing.
	 */
	bool offline;
} kiln_aws_load_options;

#define KILN_AWS_LOAD_OPTIONS_INIT { NULL, NULL, false }

int kiln_aws_config_load_ex(kiln_aws_config *out, const char *region,
			    const kiln_aws_load_options *opts);
void kiln_aws_config_release(kiln_aws_config *cfg);

/*
 * As kiln_aws_config_load_ex with offline set, with the texts of the
 * shared credentials and config files given instead of read (a view with a
 * NULL ptr: that file does not exist). The environment is consulted as
 * usual, and messages still name the files' paths. Who calls: tests and
 * the fuzz target tests/fuzz/fuzz_aws_config.c, which feed the INI parser
 * from memory.
 */
int kiln_aws_config_load_text(kiln_aws_config *out, const char *region, kiln_view credentials,
			      kiln_view config);

/*
 * The resolution alone (config.c), for aws/credentials.c: everything but
 * the provider; with region_hook set, it is asked for the region when
 * nothing else names one (the instance metadata service). creds_text and
 * config_text as kiln_aws_config_load_text (NULL: read the files).
 */
typedef int (*kiln_aws_region_hook)(void *ctx, const kiln_aws_config *partial, char **out);
int kiln_aws_config_resolve(kiln_aws_config *out, const char *region, const kiln_view *creds_text,
			    const kiln_view *config_text, kiln_aws_region_hook region_hook,
			    void *hook_ctx);

#endif
