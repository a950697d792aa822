#include "aws/query.h"
#include "aws/sts.h"
#include "aws/xml.h"
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
