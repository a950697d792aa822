/*
 * ssm.h: the Systems Manager Parameter Store calls kiln makes, over the
 * JSON 1.1 protocol (X-Amz-Target: AmazonSSM.<Action>), with jansson.
 * Who calls: aws/provider.c, whose records are String parameters in the
 * standard tier (values up to 4 KB), and the e2e driver.
 */
#ifndef KILN_AWS_SSM_H
#define KILN_AWS_SSM_H

#include "aws/http.h"
#include "core/cloud.h"

/* The standard tier's limit on a value, in bytes. */
#define KILN_SSM_VALUE_MAX 4096

/*
 * PutParameter, Type String, Tier Standard. overwrite false fails with
 * KILN_ECONFLICT (ParameterAlreadyExists) if the name exists.
 * out_version may be NULL.
 */
int kiln_ssm_put_parameter(kiln_aws_client *c, const char *name, const char *value, bool overwrite,
			   int64_t *out_version);
/* KILN_ENOTFOUND (ParameterNotFound) if absent; out released with kiln_record_release. */
int kiln_ssm_get_parameter(kiln_aws_client *c, const char *name, kiln_record *out);
/* KILN_ENOTFOUND (ParameterNotFound) if absent. */
int kiln_ssm_delete_parameter(kiln_aws_client *c, const char *name);
/* Appends the names of the parameters under path (recursively if asked), page by page. */
int kiln_ssm_get_parameters_by_path(kiln_aws_client *c, const char *path, bool recursive,
				    kiln_strings *out);

#endif
