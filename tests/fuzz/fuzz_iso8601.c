/*
 * fuzz_iso8601: core/clock.c's timestamp parser and formatter.
 *
 * kiln_parse_iso8601 reads times that peers send (EC2's launchTime and
 * creationDate, SSM's LastModifiedDate, the records' expiry), so any bytes
 * may reach it. The input is parsed as a C string; when it parses, the time
 * must format and parse back to itself. The first eight bytes are also
 * taken as any 64-bit time for kiln_format_iso8601, whose output must be
 * 20 characters that parse back to the time (clamped to years 0000-9999).
 */
#include "core/clock.h"
#include "core/error.h"
#include "tests/fuzz/fuzz.h"

/* 0000-01-01T00:00:00Z .. 9999-12-31T23:59:59Z: what four-digit years can say */
#define YEAR_0_S (-62167219200LL)
#define YEAR_9999_END_S 253402300799LL

static void check_format(int64_t t)
{
	char out[21];
	int64_t back;

	memset(out, 'x', sizeof(out));
	kiln_format_iso8601(out, t);
	FUZZ_CHECK(memchr(out, '\0', sizeof(out)) == out + 20);
	FUZZ_CHECK(kiln_parse_iso8601(&back, out) == 0);
	/* outside four-digit years the time is clamped (clock.h) */
	FUZZ_CHECK(back == KILN_MAX(YEAR_0_S, KILN_MIN(t, YEAR_9999_END_S)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_cstring(data, size);
	int64_t t = 0;

	if (kiln_parse_iso8601(&t, s) == 0)
		check_format(t);
	else
		FUZZ_CHECK(t == 0); /* a failed parse leaves *out alone */
	free(s);

	if (size >= 8) {
		memcpy(&t, data, sizeof(t));
		check_format(t);
	}
	return 0;
}
