/*
 * fuzz.h: what every tests/fuzz/fuzz_NAME.c target shares.
 *
 * A target is one function, LLVMFuzzerTestOneInput(data, size), that feeds
 * the bytes to one parser and then checks what the parser promised about
 * its result. It must never crash, leak or read out of bounds whatever the
 * bytes; a broken promise is a bug too, reported with FUZZ_CHECK, which
 * aborts (so libFuzzer saves the input, and the corpus replay fails). It
 * must not print, sleep, touch the network or write files outside a
 * scratch dir, and must free everything before it returns: the leak check
 * runs after every input.
 */
#ifndef KILN_FUZZ_H
#define KILN_FUZZ_H

#include "core/common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* assert() that survives NDEBUG (the fuzz build is RelWithDebInfo). */
#define FUZZ_CHECK(cond)                                                              \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
				#cond);                                               \
			abort();                                                      \
		}                                                                     \
	} while (0)

/*
 * The input as a NUL-terminated heap string (free() it), for parsers that
 * take C strings: it ends at the first NUL byte, as a C caller's would.
 * Exactly strlen + 1 bytes, so ASan sees a read past the terminator.
 */
static inline char *fuzz_cstring(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t n = nul ? (size_t)(nul - data) : size;
	char *s = malloc(n + 1);
	if (!s)
		abort();
	memcpy(s, data, n);
	s[n] = '\0';
	return s;
}

#endif
