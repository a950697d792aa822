/*
 * journal.h: the write-ahead journal of a rollout.
 *
 * One file per rollout, STATE_DIR/rollouts/FLEET/ROLLOUT_ID.journal, one
 * JSON object a line. Every mutation the engine makes is written (and
 * fsync'ed) before the call that makes it ("stage":"before") and again
 * after, with its result ("stage":"after", "result":"ok" or "error"), so
 * that after a crash at any point the journal says what was in flight.
 * Milestones without a call (a batch healthy, the end) are single lines.
 *
 * Appends are single write(2)s to an O_APPEND file followed by fdatasync:
 * a crash leaves at most a torn last line, which the reader ignores and
 * kiln_journal_open cuts off before appending after it.
 *
 * The journal is this machine's record. The cloud carries what another
 * machine needs (instance tags, the lock record), so the engine reads
 * both when it settles a rollout; the journal adds the instance ids of
 * launches that describe calls may not list yet, and where it stopped.
 */
#ifndef KILN_ROLLOUT_JOURNAL_H
#define KILN_ROLLOUT_JOURNAL_H

#include <jansson.h>

#include "core/buf.h"
#include "core/cloud.h"

typedef struct kiln_journal kiln_journal;

/*
 * Called after every durable append with its sequence number (1-based)
 * and the entry. A negative return is returned by the append (the line is
 * written): tests use it to stop an engine exactly after each write.
 */
typedef int (*kiln_journal_hook)(void *ctx, unsigned seq, const json_t *entry);

/* The journal's path: STATE_DIR/rollouts/FLEET/ROLLOUT_ID.journal. */
int kiln_journal_path(kiln_buf *out, const char *state_dir, const char *fleet,
		      const char *rollout_id);

/* Opens (creating it and its directories, 0700/0600) for appending. */
int kiln_journal_open(kiln_journal **out, const char *state_dir, const char *fleet,
		      const char *rollout_id);
void kiln_journal_close(kiln_journal *j);
void kiln_journal_set_hook(kiln_journal *j, kiln_journal_hook hook, void *ctx);
unsigned kiln_journal_seq(const kiln_journal *j);

/*
 * Appends entry (borrowed; "seq" and "time" are added) and makes it
 * durable. After a failed append the journal refuses further appends:
 * an engine that cannot journal must stop changing things.
 */
int kiln_journal_append(kiln_journal *j, json_t *entry);

/* What a journal says, read back. */
typedef struct kiln_journal_state {
	char rollout_id[KILN_ID_MAX];
	char fleet[KILN_ID_MAX + 8];
	char kind[16];                /* "rollout" or "rollback" */
	char to_image_id[KILN_ID_MAX];
	char from_image_id[KILN_ID_MAX];
	unsigned entries;
	bool ended;                   /* an "end" entry: settled, nothing to do */
	char result[32];              /* the end's result, or "" */
	unsigned epoch;               /* the highest epoch launched in */
	unsigned last_launched_batch; /* highest batch with a successful launch (that epoch) */
	unsigned last_healthy_batch;  /* highest batch recorded healthy */
	unsigned last_retired_batch;  /* highest batch whose old ones were retired */
	bool restoring;               /* a restore began */
	char in_flight[32];           /* the op of a "before" never followed by its "after" */
	char last_op[32];             /* the op of the last entry */
	kiln_strings launched_ids;    /* every instance a launch returned */
	kiln_strings terminated_ids;  /* every instance a terminate was asked for (ok) */
	size_t length;                /* bytes up to the end of the last entry read */
} kiln_journal_state;

/*
 * Reads a journal; a torn last line (no newline, or not a JSON object) is
 * ignored, a bad line before it is an error "PATH:LINE: ...". Release with
 * kiln_journal_state_release.
 */
int kiln_journal_read(kiln_journal_state *out, const char *path);
/* The same, from text (len bytes, NULs included); name is what messages call it. */
int kiln_journal_read_text(kiln_journal_state *out, const char *name, const char *text,
			   size_t len);
void kiln_journal_state_release(kiln_journal_state *st);

/* Ids of this fleet's rollouts whose journals have no "end" entry, oldest first. */
int kiln_journal_unfinished(kiln_strings *out, const char *state_dir, const char *fleet);

#endif
