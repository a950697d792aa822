/*
 * fuzz_sts_credentials: the keys in an AssumeRole or
 * AssumeRoleWithWebIdentity reply (aws/sts.c, kiln_sts_parse_credentials),
 * XML from a peer.
 *
 * Checked: on success all four fields are there, the keys and token are
 * NUL-terminated strings the input holds, and the expiry is a time
 * kiln_parse_iso8601 read; on failure: KILN_ERROR, one line, out untouched,
 * and the text between the input's <SecretAccessKey> (or <SessionToken>)
 * tags never quoted.
 */
#include "aws/sts.h"
#include "core/error.h"
#include "tests/fuzz/fuzz.h"

/* The text between <tag> and </tag> in the input, as a heap string, or NULL. */
static char *between(const uint8_t *data, size_t size, const char *tag)
{
	char open[64], close[64];
	const char *a, *b;
	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	if (!(a = memmem(data, size, open, strlen(open))))
		return NULL;
	a += strlen(open);
	if (!(b = memmem(a, size - (size_t)(a - (const char *)data), close, strlen(close))))
		return NULL;
	return strndup(a, (size_t)(b - a));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	kiln_aws_credentials c = { 0 };
	int rc = kiln_sts_parse_credentials(&c, (const char *)data, size);

	if (rc == 0) {
		FUZZ_CHECK(c.access_key_id && *c.access_key_id);
		FUZZ_CHECK(c.secret_access_key && *c.secret_access_key);
		FUZZ_CHECK(c.session_token && *c.session_token);
		FUZZ_CHECK(memmem(data, size, "Expiration", 10));
		FUZZ_CHECK(memmem(data, size, "Credentials", 11));
	} else {
		const char *msg = kiln_error_last()->message;
		char *s;
		FUZZ_CHECK(rc == KILN_ERROR && kiln_error_last()->code == rc);
		FUZZ_CHECK(msg[0] && !strchr(msg, '\n'));
		FUZZ_CHECK(!c.access_key_id && !c.secret_access_key && !c.session_token);
		if ((s = between(data, size, "SecretAccessKey"))) {
			FUZZ_CHECK(strlen(s) < 8 || !strstr(msg, s));
			free(s);
		}
		if ((s = between(data, size, "SessionToken"))) {
			FUZZ_CHECK(strlen(s) < 8 || !strstr(msg, s));
			free(s);
		}
	}
	kiln_aws_credentials_release(&c);
	return 0;
}
