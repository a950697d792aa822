/*
 * sts.h: STS GetCallerIdentity (Query protocol, API version 2011-06-15),
 * the one call that needs no permission: `kiln whoami` and a cheap check
 * that the credentials work. Who calls: aws/provider.c.
 */
#ifndef KILN_AWS_STS_H
#define KILN_AWS_STS_H

#include "aws/http.h"
#include "core/cloud.h"

#define KILN_STS_API_VERSION "2011-06-15"

/* Fills out's account, arn and user_id (the rest is the caller's). */
int kiln_sts_get_caller_identity(kiln_aws_client *c, kiln_identity *out);

#endif
