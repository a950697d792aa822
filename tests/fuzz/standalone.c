/*
 * standalone.c: replays a fuzz target's corpus without libFuzzer.
 *
 * Under gcc (and any build without -DKILN_FUZZ=ON) each tests/fuzz/fuzz_NAME.c
 * is linked with this file instead of libFuzzer, and ctest runs it as
 * "fuzz/NAME" over tests/fuzz/corpus/NAME/ in the ASan+UBSan build, so every
 * input the fuzzer ever kept (and every crash reproducer committed with its
 * fix) is checked by `make unit` on a machine without clang (libgit2's
 * fuzzers/standalone_driver.c does the same).
 *
 *	fuzz_NAME DIR|FILE...
 *
 * Each argument is a corpus directory (every regular file in it, in name
 * order, not recursing) or a single input, e.g. a crash file to replay
 * under gdb. Each input is handed over in a heap block of exactly its size,
 * as libFuzzer does, so a read one past the end is caught by ASan. A
 * crash, leak or UB report aborts the process (the sanitizer options of
 * the build); an empty or unreadable corpus fails, so a target whose
 * corpus went missing cannot pass by testing nothing.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional in a target, as with libFuzzer. */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* Corpus files are small; anything past this is not an input we wrote. */
#define INPUT_MAX ((size_t)16 << 20)

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *data = NULL;
	struct stat st;
	size_t got;

	if (!f || fstat(fileno(f), &st) < 0) {
		fprintf(stderr, "cannot read '%s': %s\n", path, strerror(errno));
		if (f)
			fclose(f);
		return -1;
	}
	if ((size_t)st.st_size > INPUT_MAX) {
		fprintf(stderr, "'%s' is larger than %zu bytes\n", path, INPUT_MAX);
		fclose(f);
		return -1;
	}
	/* malloc(0) may be NULL; libFuzzer passes a valid pointer even then */
	if (!(data = malloc(st.st_size ? (size_t)st.st_size : 1))) {
		fclose(f);
		return -1;
	}
	got = fread(data, 1, (size_t)st.st_size, f);
	fclose(f);
	if (got != (size_t)st.st_size) {
		fprintf(stderr, "short read of '%s'\n", path);
		free(data);
		return -1;
	}
	LLVMFuzzerTestOneInput(data, got);
	free(data);
	return 0;
}

static int only_files(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

/* Runs every file of dir in name order; the number run, or -1. */
static long run_dir(const char *dir)
{
	struct dirent **names = NULL;
	long runs = 0;
	int n, i;

	if ((n = scandir(dir, &names, only_files, alphasort)) < 0) {
		fprintf(stderr, "cannot list corpus '%s': %s\n", dir, strerror(errno));
		return -1;
	}
	for (i = 0; i < n; i++) {
		char path[4096];
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		if (runs >= 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode))
			runs = run_file(path) < 0 ? -1 : runs + 1;
		free(names[i]);
	}
	free(names);
	return runs;
}

int main(int argc, char **argv)
{
	long total = 0;
	int i;

	if (argc < 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR|INPUT...\n", argv[0]);
		return 2;
	}
	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	for (i = 1; i < argc; i++) {
		struct stat st;
		long runs;
		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "cannot read '%s': %s\n", argv[i], strerror(errno));
			return 1;
		}
		runs = S_ISDIR(st.st_mode) ? run_dir(argv[i]) : run_file(argv[i]) < 0 ? -1 : 1;
		if (runs < 0)
			return 1;
		if (runs == 0) {
			fprintf(stderr, "corpus '%s' is empty\n", argv[i]);
			return 1;
		}
		total += runs;
	}
	printf("%s: %ld inputs replayed\n", argv[0], total);
	return 0;
}
