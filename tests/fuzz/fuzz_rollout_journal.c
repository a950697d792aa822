/*
 * fuzz_rollout_journal: the rollout journal's reader (rollout/journal.c,
 * kiln_journal_read_text and kiln_journal_read) and what an append after
 * whatever a crash left does to it (kiln_journal_open, _append).
 *
 * Input: a journal's bytes (NULs included), as
 * STATE/rollouts/FLEET/ROLLOUT.journal holds them.
 *
 * Checked beyond "no crash, no leak":
 *  - a failure is KILN_ERROR with one line of message "NAME:LINE: ...",
 *    LINE a newline-terminated line of the input that is not its last;
 *  - a journal read counts exactly its complete lines up to `length`,
 *    which ends at a newline; what follows (a torn or garbled tail) adds
 *    no record: the journal cut at `length` reads the same, and so does
 *    the journal without its last entry but for that entry (one fewer);
 *  - the state's strings are terminated, its id lists hold no repeats;
 *  - an append after any readable journal, whatever its tail (the next
 *    rollout's "end" after a crash mid-write): the file, opened with
 *    kiln_journal_open, continues the sequence, and reads back as before
 *    plus exactly that entry; kiln_journal_unfinished lists it unless it
 *    has an "end".
 */
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/fs.h"
#include "rollout/journal.h"
#include "tests/fuzz/fuzz.h"

#define NAME "j.journal"

static char scratch[64];
static char path[160];

static void remove_scratch(void)
{
	kiln_remove_tree(scratch);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");
	char dir[128];
	(void)argc;
	(void)argv;
	/* tmpfs when there is one: every input is written and fsync'ed */
	if (!(tmp && *tmp))
		tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(scratch, sizeof(scratch), "%.40s/kiln-fuzz-XXXXXX", tmp);
	if (!mkdtemp(scratch))
		abort();
	atexit(remove_scratch);
	snprintf(dir, sizeof(dir), "%s/rollouts/web", scratch);
	if (kiln_mkdir_p(dir, 0700) < 0)
		abort();
	snprintf(path, sizeof(path), "%s/r1.journal", dir);
	return 0;
}

static unsigned newlines(const uint8_t *p, size_t n)
{
	unsigned c = 0;
	size_t i;
	for (i = 0; i < n; i++)
		c += p[i] == '\n';
	return c;
}

static void terminated(const char *s, size_t size)
{
	FUZZ_CHECK(memchr(s, '\0', size) != NULL);
}

static void no_repeats(const kiln_strings *l)
{
	size_t i, j;
	for (i = 0; i < l->n; i++)
		for (j = 0; j < i; j++)
			FUZZ_CHECK(strcmp(l->items[i], l->items[j]));
}

static void same_strings(const kiln_strings *a, const kiln_strings *b)
{
	size_t i;
	FUZZ_CHECK(a->n == b->n);
	for (i = 0; i < a->n; i++)
		FUZZ_CHECK(!strcmp(a->items[i], b->items[i]));
}

/* Equal but for what the last entry changes (entries, last_op, length). */
static void same_records(const kiln_journal_state *a, const kiln_journal_state *b)
{
	FUZZ_CHECK(!strcmp(a->rollout_id, b->rollout_id) && !strcmp(a->fleet, b->fleet));
	FUZZ_CHECK(!strcmp(a->kind, b->kind));
	FUZZ_CHECK(!strcmp(a->to_image_id, b->to_image_id));
	FUZZ_CHECK(!strcmp(a->from_image_id, b->from_image_id));
	FUZZ_CHECK(a->ended == b->ended && !strcmp(a->result, b->result));
	FUZZ_CHECK(a->epoch == b->epoch && a->last_launched_batch == b->last_launched_batch);
	FUZZ_CHECK(a->last_retired_batch == b->last_retired_batch);
	FUZZ_CHECK(a->restoring == b->restoring && !strcmp(a->in_flight, b->in_flight));
	same_strings(&a->launched_ids, &b->launched_ids);
	same_strings(&a->terminated_ids, &b->terminated_ids);
}

static void same_state(const kiln_journal_state *a, const kiln_journal_state *b)
{
	same_records(a, b);
	FUZZ_CHECK(a->entries == b->entries && a->length == b->length);
	FUZZ_CHECK(a->last_healthy_batch == b->last_healthy_batch);
	FUZZ_CHECK(!strcmp(a->last_op, b->last_op));
}

static void check_error(int rc, const uint8_t *data, size_t size)
{
	const kiln_error *e = kiln_error_last();
	size_t n = strlen(NAME);
	unsigned long line;
	char *end;

	FUZZ_CHECK(rc == KILN_ERROR && e->code == KILN_ERROR);
	FUZZ_CHECK(!strchr(e->message, '\n') && !strchr(e->message, '\r'));
	FUZZ_CHECK(!strncmp(e->message, NAME ":", n + 1));
	line = strtoul(e->message + n + 1, &end, 10);
	FUZZ_CHECK(end > e->message + n + 1 && !strncmp(end, ": ", 2));
	/* a newline-terminated line that is not the last: a torn one is no error */
	FUZZ_CHECK(size > 0 && line >= 1 && line < newlines(data, size) + (data[size - 1] != '\n'));
}

/* The input as the journal file, an append after it, read back. */
static void check_append(const uint8_t *data, size_t size, const kiln_journal_state *st)
{
	kiln_journal *j = NULL;
	kiln_journal_state after;
	kiln_strings unfinished = { 0 };
	unsigned batch = st ? st->last_healthy_batch + 1 : 1;
	json_t *e;
	int rc;

	FUZZ_CHECK(kiln_write_file_atomic(path, data, size, 0600) == 0);
	FUZZ_CHECK(kiln_journal_open(&j, scratch, "web", "r1") == 0);
	if (st)
		FUZZ_CHECK(kiln_journal_seq(j) == st->entries);
	if (batch >= 1000000)
		batch = 1;
	FUZZ_CHECK((e = json_pack("{s:s,s:i}", "op", "healthy", "batch", (int)batch)));
	FUZZ_CHECK(kiln_journal_append(j, e) == 0);
	json_decref(e);
	kiln_journal_close(j);

	kiln_error_clear();
	rc = kiln_journal_read(&after, path);
	if (st) {
		if (rc < 0)
			fprintf(stderr, "after an append: %s\n", kiln_error_last()->message);
		FUZZ_CHECK(rc == 0);
		FUZZ_CHECK(after.entries == st->entries + 1);
		FUZZ_CHECK(!strcmp(after.last_op, "healthy"));
		FUZZ_CHECK(after.last_healthy_batch == KILN_MAX(st->last_healthy_batch, batch));
		same_records(st, &after);
		/* and `kiln status` lists it as interrupted unless it ended */
		FUZZ_CHECK(kiln_journal_unfinished(&unfinished, scratch, "web") == 0);
		FUZZ_CHECK(unfinished.n == (after.ended ? 0u : 1u));
		FUZZ_CHECK(!unfinished.n || !strcmp(unfinished.items[0], "r1"));
		kiln_strings_release(&unfinished);
		kiln_journal_state_release(&after);
	} else if (rc == 0) {
		kiln_journal_state_release(&after);
	}
	FUZZ_CHECK(unlink(path) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	kiln_journal_state st, cut;
	unsigned lines;
	size_t prev;
	int rc;

	kiln_error_clear();
	rc = kiln_journal_read_text(&st, NAME, text, size);
	if (rc < 0) {
		check_error(rc, data, size);
		/* whatever it holds, an append must not fail or crash */
		check_append(data, size, NULL);
		kiln_error_clear();
		return 0;
	}
	FUZZ_CHECK(rc == 0);
	FUZZ_CHECK(st.length <= size && (st.length == 0 || text[st.length - 1] == '\n'));
	lines = newlines(data, st.length);
	FUZZ_CHECK(st.entries == lines);
	terminated(st.rollout_id, sizeof(st.rollout_id));
	terminated(st.fleet, sizeof(st.fleet));
	terminated(st.kind, sizeof(st.kind));
	terminated(st.result, sizeof(st.result));
	terminated(st.in_flight, sizeof(st.in_flight));
	terminated(st.last_op, sizeof(st.last_op));
	FUZZ_CHECK(!st.ended || st.entries);
	no_repeats(&st.launched_ids);
	no_repeats(&st.terminated_ids);

	/* the torn tail adds nothing */
	FUZZ_CHECK(kiln_journal_read_text(&cut, NAME, text, st.length) == 0);
	same_state(&st, &cut);
	kiln_journal_state_release(&cut);
	/* nor does the last entry, once torn, count */
	if (st.entries) {
		prev = st.length - 1;
		while (prev > 0 && text[prev - 1] != '\n')
			prev--;
		FUZZ_CHECK(kiln_journal_read_text(&cut, NAME, text, st.length - 1) == 0);
		FUZZ_CHECK(cut.entries == st.entries - 1 && cut.length == prev);
		kiln_journal_state_release(&cut);
	}

	check_append(data, size, &st);
	kiln_journal_state_release(&st);
	kiln_error_clear();
	return 0;
}
