/*
 * fuzz_aws_error: how aws/http.c reads a failed reply: EC2's
 * <Response><Errors><Error>, ELB's and STS's <ErrorResponse><Error>
 * (aws/xml.c kiln_xml_parse_fault), the JSON protocol's
 * {"__type": ..., "message": ...} with its x-amzn-ErrorType header (SSM),
 * and bodies that are neither (moto's HTML 500 page, a proxy's text).
 *
 * Input: byte 0 chooses the HTTP status (low 3 bits: 400 401 403 404 409
 * 500 502 503) and the protocol (bit 3: JSON, through an SSM call; else
 * Query, through an EC2 one); with bit 4 set, the bytes up to the first
 * NUL are the x-amzn-ErrorType header. The rest is the body. One attempt
 * (no retry, no sleep), over the real client (tests/fuzz/fuzz_aws.h).
 *
 * Checked: the call fails with a KILN_E* code matching kiln_error_last(),
 * one line of message naming the service and the action, no secret in it,
 * the service's code and request id inside their fields and on one line
 * too; kiln_xml_parse_fault on the same body agrees with
 * itself when run twice and never leaves the caller's error changed.
 */
#include "aws/ec2.h"
#include "aws/ssm.h"
#include "aws/xml.h"
#include "tests/fuzz/fuzz_aws.h"

static const int statuses[] = { 400, 401, 403, 404, 409, 500, 502, 503 };

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_aws_client();
	return 0;
}

static void check_one_line(const char *s)
{
	FUZZ_CHECK(!strchr(s, '\n') && !strchr(s, '\r'));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char header[256] = "";
	const kiln_error *e;
	kiln_aws_fault f1, f2;
	bool json;
	int status, rc, r1, r2;

	if (size < 1)
		return 0;
	status = statuses[data[0] & 7];
	json = (data[0] & 8) != 0;
	if (data[0] & 16) {
		const uint8_t *nul = memchr(data + 1, 0, size - 1);
		size_t n = nul ? (size_t)(nul - data - 1) : size - 1;
		snprintf(header, sizeof(header), "%.*s", (int)KILN_MIN(n, sizeof(header) - 1), data + 1);
		data += nul ? n + 1 : size - 1;
		size -= nul ? n + 1 : size - 1;
	}
	data++;
	size--;

	fuzz_aws_reply(status, data, size, header, json);
	kiln_error_clear();
	if (json) {
		kiln_record r = { 0 };
		rc = kiln_ssm_get_parameter(fuzz_aws_client(), "/kiln/fuzz", &r);
		FUZZ_CHECK(r.value == NULL);
	} else {
		rc = kiln_ec2_delete_key_pair(fuzz_aws_client(), "kiln-fuzz");
	}
	FUZZ_CHECK(fuzz_reply.calls == 1);
	fuzz_check_error(rc);
	e = kiln_error_last();
	FUZZ_CHECK(e->http_status == status);
	FUZZ_CHECK(strstr(e->message, json ? "ssm GetParameter" : "ec2 DeleteKeyPair") != NULL);
	check_one_line(e->cloud_code);
	check_one_line(e->request_id);

	/* the XML reader alone: deterministic, and silent about bodies that are not errors */
	kiln_error_clear();
	kiln_error_set(KILN_ETIMEOUT, "before");
	memset(&f1, 0, sizeof(f1));
	memset(&f2, 0, sizeof(f2));
	r1 = kiln_xml_parse_fault(&f1, (const char *)data, size);
	r2 = kiln_xml_parse_fault(&f2, (const char *)data, size);
	FUZZ_CHECK(r1 == r2 && (r1 == 0 || r1 == KILN_ENOTFOUND));
	FUZZ_CHECK(!memcmp(&f1, &f2, sizeof(f1)));
	FUZZ_CHECK_CSTR(f1.code);
	FUZZ_CHECK_CSTR(f1.message);
	FUZZ_CHECK_CSTR(f1.request_id);
	FUZZ_CHECK(!strchr(f1.message, '\n') && !strchr(f1.code, '\n'));
	FUZZ_CHECK(kiln_error_last()->code == KILN_ETIMEOUT &&
		   !strcmp(kiln_error_last()->message, "before"));
	kiln_error_clear();
	return 0;
}
