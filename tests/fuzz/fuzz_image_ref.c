/*
 * fuzz_image_ref: core/registry.c's image reference parser.
 *
 * References come from the command line and from template and fleet files
 * ("web", "web@3", "ami-0abc..."). The input is one C string. A reference
 * that parses must be either a name (valid, version >= 0) or an id, and must
 * format to text that parses back to the same reference; one that fails
 * must say why with KILN_EINVALID.
 */
#include "core/error.h"
#include "core/registry.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_cstring(data, size);
	char text[KILN_NAME_MAX + KILN_ID_MAX + 32];
	kiln_image_ref ref, again;

	if (kiln_image_ref_parse(&ref, s) == 0) {
		FUZZ_CHECK(!ref.id[0] != !ref.name[0]);
		FUZZ_CHECK(memchr(ref.name, '\0', sizeof(ref.name)) && memchr(ref.id, '\0', sizeof(ref.id)));
		if (ref.name[0]) {
			FUZZ_CHECK(kiln_image_name_valid(ref.name));
			FUZZ_CHECK(ref.version >= 0 && ref.version <= INT32_MAX);
		} else {
			FUZZ_CHECK(ref.version == 0);
		}
		kiln_image_ref_format(text, sizeof(text), &ref);
		FUZZ_CHECK(kiln_image_ref_parse(&again, text) == 0);
		FUZZ_CHECK(strcmp(again.name, ref.name) == 0 && strcmp(again.id, ref.id) == 0 &&
			   again.version == ref.version);
	} else {
		FUZZ_CHECK(kiln_error_last()->code == KILN_EINVALID);
		FUZZ_CHECK(kiln_error_last()->message[0] != '\0');
		/* a plain valid name that is not id-shaped is always a reference */
		FUZZ_CHECK(!(kiln_image_name_valid(s) && strncmp(s, "ami-", 4) &&
			     strncmp(s, "img-", 4) && strlen(s) < KILN_NAME_MAX));
	}
	free(s);
	return 0;
}
