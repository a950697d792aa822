/*
 * config.h: where kiln's AWS settings come from, resolved the way the AWS
 * CLI resolves them (docs/aws-configuration.md is the user-facing account).
 *
 *  credentials: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN),
 *               else the profile (AWS_PROFILE, else "default") in
 *               AWS_SHARED_CREDENTIALS_FILE (~/.aws/credentials), then in
 *               AWS_CONFIG_FILE (~/.aws/config, "[profile NAME]" sections);
 *               the hardening issue adds role, process and instance sources.
 *  region:      the caller's (a template's or fleet file's "region"),
 *               else AWS_REGION, else AWS_DEFAULT_REGION, else the profile's.
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

typedef struct kiln_aws_config {
	char *profile;
	char *region;
	char *endpoints[KILN_AWS_SERVICE_COUNT]; /* "https://ec2.us-east-1.amazonaws.com" */
	char *ca_bundle;                          /* NULL: the system's */
	kiln_aws_credentials credentials;
} kiln_aws_config;

/* "ec2", "elasticloadbalancing", "elasticloadbalancing", "ssm", "sts": the signing name. */
const char *kiln_aws_service_signing_name(kiln_aws_service s);
/* "EC2", "ELASTIC_LOAD_BALANCING_V2", ...: the AWS_ENDPOINT_URL_<this> suffix, for hints. */
const char *kiln_aws_service_env_suffix(kiln_aws_service s);

/*
 * Resolves everything from the environment and the shared files.
 * region may be NULL (then the chain decides). On failure nothing is held.
 */
int kiln_aws_config_load(kiln_aws_config *out, const char *region);
void kiln_aws_config_release(kiln_aws_config *cfg);

/*
 * As kiln_aws_config_load, with the texts of the shared credentials and
 * config files given instead of read (a view with a NULL ptr: that file
 * does not exist). The environment is consulted as usual, and messages
 * still name the files' paths. Who calls: tests and the fuzz target
 * tests/fuzz/fuzz_aws_config.c, which feed the INI parser from memory.
 */
int kiln_aws_config_load_text(kiln_aws_config *out, const char *region, kiln_view credentials,
			      kiln_view config);

#endif
