/*
 * fuzz_imds_credentials: the instance role's keys as the instance metadata
 * service sends them (aws/imds.c, kiln_imds_parse_credentials), a peer's
 * JSON.
 *
 * Checked: on success both keys, the Token and an Expiration are there,
 * printable ASCII (they go into HTTP headers) and the time is one
 * kiln_aws_parse_time accepts; a Code, if present, was "Success". On
 * failure: KILN_ERROR, one line, out untouched, and neither the
 * SecretAccessKey nor the Token of the input quoted.
 */
#include <jansson.h>

#include "aws/credentials.h"
#include "aws/imds.h"
#include "core/error.h"
#include "tests/fuzz/fuzz.h"

static bool printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	kiln_aws_credentials c = { 0 };
	json_t *doc = json_loadb((const char *)data, size, 0, NULL);
	int rc = kiln_imds_parse_credentials(&c, (const char *)data, size);

	if (rc == 0) {
		const char *code = json_string_value(json_object_get(doc, "Code"));
		int64_t t;
		FUZZ_CHECK(doc);
		FUZZ_CHECK(c.access_key_id && *c.access_key_id && printable(c.access_key_id));
		FUZZ_CHECK(c.secret_access_key && *c.secret_access_key && printable(c.secret_access_key));
		FUZZ_CHECK(c.session_token && *c.session_token && printable(c.session_token));
		FUZZ_CHECK(!json_object_get(doc, "Code") || (code && !strcmp(code, "Success")));
		FUZZ_CHECK(kiln_aws_parse_time(&t, json_string_value(json_object_get(doc, "Expiration"))) == 0);
		FUZZ_CHECK(t == c.expires_at);
	} else {
		const char *msg = kiln_error_last()->message;
		const char *s;
		FUZZ_CHECK(rc == KILN_ERROR && kiln_error_last()->code == rc);
		FUZZ_CHECK(msg[0] && !strchr(msg, '\n'));
		FUZZ_CHECK(!c.access_key_id && !c.secret_access_key && !c.session_token);
		if ((s = json_string_value(json_object_get(doc, "SecretAccessKey"))) && strlen(s) >= 8)
			FUZZ_CHECK(!strstr(msg, s));
		if ((s = json_string_value(json_object_get(doc, "Token"))) && strlen(s) >= 8)
			FUZZ_CHECK(!strstr(msg, s));
	}
	json_decref(doc);
	kiln_aws_credentials_release(&c);
	return 0;
}
