/*
 * fuzz_credential_process: what a credential_process writes and how its
 * command line is split (aws/credentials.c).
 *
 * The input is the process's stdout for kiln_aws_parse_process_output, and
 * the same bytes as a C string for kiln_aws_split_words (a profile's
 * credential_process value). Checked:
 *  - on success: both keys non-empty, printable ASCII (they go into HTTP
 *    headers), the token absent or so too, and an Expiration the input
 *    really had (0 otherwise);
 *  - on failure: KILN_ERROR with a one-line message that quotes neither
 *    the SecretAccessKey nor the SessionToken the input held, and out
 *    untouched;
 *  - the splitter: on success at least one word, words as C strings whose
 *    total length never exceeds the line's; on failure KILN_EINVALID and
 *    nothing to free.
 */
#include <jansson.h>

#include "aws/credentials.h"
#include "core/error.h"
#include "tests/fuzz/fuzz.h"

static bool printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return false;
	return true;
}

/* The input's string member key, if it parses as JSON (NULL otherwise); borrowed from doc. */
static const char *secret_of(json_t *doc, const char *key)
{
	const char *v = json_string_value(json_object_get(doc, key));
	/* short values may match words of a message by chance */
	return v && strlen(v) >= 8 ? v : NULL;
}

static void check_parse(const uint8_t *data, size_t size)
{
	kiln_aws_credentials c = { 0 };
	int rc = kiln_aws_parse_process_output(&c, (const char *)data, size);

	if (rc == 0) {
		FUZZ_CHECK(c.access_key_id && *c.access_key_id && printable(c.access_key_id));
		FUZZ_CHECK(c.secret_access_key && *c.secret_access_key && printable(c.secret_access_key));
		FUZZ_CHECK(!c.session_token || (*c.session_token && printable(c.session_token)));
		FUZZ_CHECK(c.expires_at == 0 || memmem(data, size, "Expiration", 10));
	} else {
		const char *msg = kiln_error_last()->message;
		json_t *doc = json_loadb((const char *)data, size, 0, NULL);
		const char *s;
		FUZZ_CHECK(rc == KILN_ERROR && kiln_error_last()->code == rc);
		FUZZ_CHECK(msg[0] && !strchr(msg, '\n'));
		FUZZ_CHECK(!c.access_key_id && !c.secret_access_key && !c.session_token);
		if (doc) {
			if ((s = secret_of(doc, "SecretAccessKey")))
				FUZZ_CHECK(!strstr(msg, s));
			if ((s = secret_of(doc, "SessionToken")))
				FUZZ_CHECK(!strstr(msg, s));
			json_decref(doc);
		}
	}
	kiln_aws_credentials_release(&c);
}

static void check_split(const uint8_t *data, size_t size)
{
	char *line = fuzz_cstring(data, size), **words = NULL;
	size_t i, total = 0;

	if (kiln_aws_split_words(&words, line) == 0) {
		FUZZ_CHECK(words && words[0]);
		for (i = 0; words[i]; i++)
			total += strlen(words[i]);
		FUZZ_CHECK(total <= strlen(line));
		kiln_aws_free_words(words);
	} else {
		FUZZ_CHECK(kiln_error_last()->code == KILN_EINVALID && !words);
	}
	free(line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_parse(data, size);
	check_split(data, size);
	return 0;
}
