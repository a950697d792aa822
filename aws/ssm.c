#include <jansson.h>

#include "aws/ssm.h"
#include "core/error.h"

#define MAX_PAGES 10000

/* Sends body (stolen) as action; *out is the parsed reply (NULL if not wanted). */
static int call(kiln_aws_client *c, const char *action, json_t *body, json_t **out)
{
	kiln_aws_request req = { 0 };
	kiln_buf reply;
	json_error_t jerr;
	char *text;
	int error;

	if (out)
		*out = NULL;
	if (!body || !(text = json_dumps(body, JSON_COMPACT))) {
		json_decref(body);
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	}
	json_decref(body);
	req.service = KILN_AWS_SSM;
	req.protocol = KILN_AWS_JSON;
	req.action = action;
	req.target_prefix = "AmazonSSM";
	req.body = kiln_view_of(text);
	error = kiln_aws_call(c, &req, &reply);
	free(text);
	if (error == 0 && out) {
		/* an empty 200 body is a valid empty result */
		*out = reply.len ? json_loadb(reply.ptr, reply.len, 0, &jerr) : json_object();
		if (!*out) {
			/* jansson quotes the reply near the fault: the peer's bytes, kept to one line */
			size_t i;
			for (i = 0; jerr.text[i]; i++)
				if ((unsigned char)jerr.text[i] < 0x20 || jerr.text[i] == 0x7f)
					jerr.text[i] = '?';
			error = kiln_error_set(KILN_ERROR, "ssm %s: the reply is not JSON: %s", action,
					       jerr.text);
		}
	}
	kiln_buf_release(&reply);
	return error;
}

int kiln_ssm_put_parameter(kiln_aws_client *c, const char *name, const char *value, bool overwrite,
			   int64_t *out_version)
{
	json_t *reply = NULL;
	int error;

	if (strlen(value) > KILN_SSM_VALUE_MAX)
		return kiln_error_set(KILN_EINVALID, "record '%s' is %zu bytes, more than SSM's %d", name,
				      strlen(value), KILN_SSM_VALUE_MAX);
	error = call(c, "PutParameter",
		     json_pack("{s:s,s:s,s:s,s:b,s:s}", "Name", name, "Value", value, "Type", "String",
			       "Overwrite", overwrite, "Tier", "Standard"),
		     &reply);
	if (error == 0 && out_version)
		*out_version = json_integer_value(json_object_get(reply, "Version"));
	json_decref(reply);
	return error;
}

int kiln_ssm_get_parameter(kiln_aws_client *c, const char *name, kiln_record *out)
{
	json_t *reply = NULL, *p, *mod;
	const char *value;
	int error;

	if ((error = call(c, "GetParameter", json_pack("{s:s}", "Name", name), &reply)) < 0)
		return error;
	p = json_object_get(reply, "Parameter");
	if (!(value = json_string_value(json_object_get(p, "Value")))) {
		error = kiln_error_set(KILN_ERROR, "ssm GetParameter: the reply for '%s' has no value", name);
		goto done;
	}
	memset(out, 0, sizeof(*out));
	if (!(out->value = kiln_strdup(value))) {
		error = KILN_ENOMEM;
		goto done;
	}
	out->version = json_integer_value(json_object_get(p, "Version"));
	/* LastModifiedDate is epoch seconds with a fraction (a JSON number) */
	mod = json_object_get(p, "LastModifiedDate");
	out->modified_ms = json_is_number(mod) ? (int64_t)(json_number_value(mod) * 1000.0) : 0;
done:
	json_decref(reply);
	return error;
}

int kiln_ssm_delete_parameter(kiln_aws_client *c, const char *name)
{
	return call(c, "DeleteParameter", json_pack("{s:s}", "Name", name), NULL);
}

int kiln_ssm_get_parameters_by_path(kiln_aws_client *c, const char *path, bool recursive,
				    kiln_strings *out)
{
	char *token = NULL;
	int pages, error = 0;

	for (pages = 0; pages < MAX_PAGES; pages++) {
		json_t *body = json_pack("{s:s,s:b,s:i}", "Path", path, "Recursive", recursive,
					 "MaxResults", 10);
		json_t *reply = NULL, *p;
		const char *next;
		size_t i;

		if (body && token)
			json_object_set_new(body, "NextToken", json_string(token));
		free(token);
		token = NULL;
		if ((error = call(c, "GetParametersByPath", body, &reply)) < 0)
			return error;
		json_array_foreach(json_object_get(reply, "Parameters"), i, p) {
			const char *name = json_string_value(json_object_get(p, "Name"));
			if (name && (error = kiln_strings_add(out, name)) < 0)
				break;
		}
		next = json_string_value(json_object_get(reply, "NextToken"));
		if (error == 0 && next && *next && !(token = kiln_strdup(next)))
			error = KILN_ENOMEM;
		json_decref(reply);
		if (error < 0 || !token)
			return error;
	}
	free(token);
	return kiln_error_set(KILN_ERROR, "ssm GetParametersByPath: more than %d pages", MAX_PAGES);
}
