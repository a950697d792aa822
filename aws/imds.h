/*
 * imds.h: the EC2 instance metadata service, IMDSv2 only.
 *
 * Who calls: aws/credentials.c, for the instance role's credentials (the
 * last link of the chain) and for the region when nothing else names one.
 *
 * Every request carries a session token, got by
 *   PUT /latest/api/token   X-aws-ec2-metadata-token-ttl-seconds: 21600
 * and sent back as X-aws-ec2-metadata-token; a 401 gets a new token once.
 * IMDSv1 (requests without a token) is never used: an instance that does
 * not offer tokens gets an error that says so. Requests are short
 * (AWS_METADATA_SERVICE_TIMEOUT, 1 s) and tried twice
 * (AWS_METADATA_SERVICE_NUM_ATTEMPTS), so that kiln on a laptop, where
 * nothing answers at 169.254.169.254, is not held up; replies are capped
 * at 64 KiB.
 *
 * Not thread-safe: the credentials provider serialises its use.
 */
#ifndef KILN_AWS_IMDS_H
#define KILN_AWS_IMDS_H

#include "aws/config.h"
#include "aws/http.h"

typedef struct kiln_imds kiln_imds;

/* cfg is copied; transport NULL: libcurl (borrowed, must outlive the client). */
int kiln_imds_new(kiln_imds **out, const kiln_aws_imds_config *cfg,
		  const kiln_aws_transport *transport);
void kiln_imds_free(kiln_imds *m);

/* The endpoint, for messages ("http://169.254.169.254"). */
const char *kiln_imds_endpoint(const kiln_imds *m);

/*
 * GETs path ("/latest/meta-data/placement/region") into out (initialised
 * here, released by the caller). KILN_ENOTFOUND on 404; KILN_ETIMEOUT or
 * KILN_ETRANSIENT when nothing answered; the message names the endpoint.
 */
int kiln_imds_get(kiln_imds *m, const char *path, kiln_buf *out);

/* placement/region; *out is a heap string. */
int kiln_imds_region(kiln_imds *m, char **out);

/*
 * The instance role's credentials: the role's name from
 * iam/security-credentials/, then its keys. role (may be NULL) gets the
 * name. KILN_ENOTFOUND when the instance has no role.
 */
int kiln_imds_credentials(kiln_imds *m, kiln_aws_credentials *out, char *role, size_t role_size);

/*
 * Reads the JSON IMDS answers with a role's keys:
 *   {"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": ..., "SecretAccessKey": ...,
 *    "Token": ..., "Expiration": "2026-11-25T22:52:12Z", ...}
 * Code, when present, must be "Success"; the keys, Token and Expiration are
 * required. Fills out's keys and expires_at; KILN_ERROR naming what is
 * wrong, never quoting a value. Who calls: kiln_imds_credentials and
 * tests/fuzz/fuzz_imds_credentials.c.
 */
int kiln_imds_parse_credentials(kiln_aws_credentials *out, const char *json, size_t len);

#endif
