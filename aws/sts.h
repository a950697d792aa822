/*
 * sts.h: the STS calls kiln makes (Query protocol, API version 2011-06-15).
 *
 *  - GetCallerIdentity, the one call that needs no permission: `kiln whoami`
 *    and a cheap check that the credentials work (aws/provider.c);
 *  - AssumeRole and AssumeRoleWithWebIdentity, which turn a profile's
 *    role_arn or a CI system's OIDC token into temporary keys
 *    (aws/credentials.c).
 */
#ifndef KILN_AWS_STS_H
#define KILN_AWS_STS_H

#include "aws/http.h"
#include "core/cloud.h"

#define KILN_STS_API_VERSION "2011-06-15"

/* Fills out's account, arn and user_id (the rest is the caller's). */
int kiln_sts_get_caller_identity(kiln_aws_client *c, kiln_identity *out);

typedef struct kiln_sts_role_request {
	const char *role_arn;
	const char *session_name;       /* RoleSessionName, required */
	const char *external_id;        /* AssumeRole only; NULL: none */
	int duration_s;                 /* 0: STS's default (one hour) */
	/*
	 * Non-NULL: AssumeRoleWithWebIdentity with this token, sent unsigned
	 * (the token is the proof; no keys are needed), else AssumeRole signed
	 * with the client's credentials.
	 */
	const char *web_identity_token;
} kiln_sts_role_request;

/*
 * Assumes the role; fills out's keys and expires_at (out->source is left
 * as it was). The reply holds secrets: it is wiped once read.
 */
int kiln_sts_assume_role(kiln_aws_client *c, const kiln_sts_role_request *req,
			 kiln_aws_credentials *out);

/*
 * Reads the <Credentials> of an AssumeRole* reply (the element under the
 * root's *Result child): AccessKeyId, SecretAccessKey, SessionToken and
 * Expiration, all required. Fills out's keys and expires_at on success;
 * KILN_ERROR naming what is missing otherwise, never quoting a value.
 * Who calls: kiln_sts_assume_role, and tests/fuzz/fuzz_sts_credentials.c.
 */
int kiln_sts_parse_credentials(kiln_aws_credentials *out, const char *xml, size_t len);

#endif
