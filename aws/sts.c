#include <openssl/crypto.h>

#include "aws/query.h"
#include "aws/sts.h"
#include "aws/xml.h"
#include "core/clock.h"
#include "core/error.h"

int kiln_sts_get_caller_identity(kiln_aws_client *c, kiln_identity *out)
{
	const kiln_xml_node *r;
	kiln_xml *x = NULL;
	kiln_query q;
	int error;

	kiln_query_init(&q, "GetCallerIdentity", KILN_STS_API_VERSION);
	error = kiln_query_call(c, KILN_AWS_STS, &q, 0, &x);
	kiln_query_release(&q);
	if (error < 0)
		return error;
	r = kiln_xml_child(kiln_xml_root(x), "GetCallerIdentityResult");
	if ((error = kiln_xml_copy(out->account, sizeof(out->account), r, "Account")) == 0 &&
	    (error = kiln_xml_copy(out->arn, sizeof(out->arn), r, "Arn")) == 0 &&
	    (error = kiln_xml_copy(out->user_id, sizeof(out->user_id), r, "UserId")) == 0 &&
	    !out->account[0])
		error = kiln_error_set(KILN_ERROR, "sts GetCallerIdentity: the reply has no account");
	kiln_xml_free(x);
	return error;
}

static void free_secret(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

/* AssumeRoleResult or AssumeRoleWithWebIdentityResult */
static const kiln_xml_node *result_of(const kiln_xml_node *root)
{
	const kiln_xml_node *r = kiln_xml_child(root, "AssumeRoleResult");
	return r ? r : kiln_xml_child(root, "AssumeRoleWithWebIdentityResult");
}

int kiln_sts_parse_credentials(kiln_aws_credentials *out, const char *xml, size_t len)
{
	const kiln_xml_node *creds;
	char *id = NULL, *secret = NULL, *token = NULL, *expiration = NULL;
	const char *missing = NULL;
	kiln_xml *x = NULL;
	int64_t expires;
	int error;

	if (kiln_xml_parse(&x, xml, len) < 0)
		/* never the parser's words: they could quote the reply, which holds secrets */
		return kiln_error_set(KILN_ERROR, "the STS reply is not XML");
	creds = kiln_xml_child(result_of(kiln_xml_root(x)), "Credentials");
	if (!creds) {
		error = kiln_error_set(KILN_ERROR, "the STS reply has no Credentials");
		goto done;
	}
	id = kiln_xml_text(creds, "AccessKeyId");
	secret = kiln_xml_text(creds, "SecretAccessKey");
	token = kiln_xml_text(creds, "SessionToken");
	expiration = kiln_xml_text(creds, "Expiration");
	if (!id || !*id)
		missing = "AccessKeyId";
	else if (!secret || !*secret)
		missing = "SecretAccessKey";
	else if (!token || !*token)
		missing = "SessionToken";
	else if (!expiration || !*expiration)
		missing = "Expiration";
	if (missing) {
		error = kiln_error_set(KILN_ERROR, "the STS reply's Credentials have no %s", missing);
		goto done;
	}
	if (kiln_parse_iso8601(&expires, expiration) < 0) {
		error = kiln_error_set(KILN_ERROR, "the STS reply's Expiration is not an ISO 8601 time");
		goto done;
	}
	kiln_aws_credentials_release(out);
	out->access_key_id = id;
	out->secret_access_key = secret;
	out->session_token = token;
	out->expires_at = expires;
	id = secret = token = NULL;
	error = 0;
done:
	free(id);
	free_secret(secret);
	free_secret(token);
	free(expiration);
	kiln_xml_free(x);
	return error;
}

int kiln_sts_assume_role(kiln_aws_client *c, const kiln_sts_role_request *req,
			 kiln_aws_credentials *out)
{
	bool web = req->web_identity_token != NULL;
	kiln_aws_request r = { 0 };
	kiln_aws_credentials got;
	kiln_buf body;
	kiln_query q;
	char source[sizeof(out->source)];
	int error;

	kiln_query_init(&q, web ? "AssumeRoleWithWebIdentity" : "AssumeRole", KILN_STS_API_VERSION);
	kiln_query_add(&q, "RoleArn", req->role_arn);
	kiln_query_add(&q, "RoleSessionName", req->session_name);
	if (web)
		kiln_query_add(&q, "WebIdentityToken", req->web_identity_token);
	else
		kiln_query_add(&q, "ExternalId", req->external_id);
	if (req->duration_s)
		kiln_query_add_int(&q, "DurationSeconds", req->duration_s);
	if ((error = kiln_query_error(&q)) < 0)
		goto wipe;
	r.service = KILN_AWS_STS;
	r.protocol = KILN_AWS_QUERY;
	r.action = q.action;
	r.body = kiln_query_view(&q);
	r.flags = web ? KILN_AWS_UNSIGNED : 0;
	if ((error = kiln_aws_call(c, &r, &body)) == 0) {
		memset(&got, 0, sizeof(got));
		if ((error = kiln_sts_parse_credentials(&got, body.ptr, body.len)) < 0) {
			kiln_error_prefix("sts %s", q.action);
		} else {
			snprintf(source, sizeof(source), "%s", out->source);
			kiln_aws_credentials_release(out);
			*out = got;
			snprintf(out->source, sizeof(out->source), "%s", source);
		}
	}
	if (body.alloc)
		OPENSSL_cleanse(body.ptr, body.alloc);
	kiln_buf_release(&body);
wipe:
	/* the body holds the web identity token */
	if (q.body.alloc)
		OPENSSL_cleanse(q.body.ptr, q.body.alloc);
	kiln_query_release(&q);
	return error;
}
