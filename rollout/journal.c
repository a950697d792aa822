#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/fs.h"
#include "rollout/journal.h"

#define JOURNAL_MAX ((size_t)64 << 20)
#define LINE_MAX_BYTES ((size_t)1 << 20)

struct kiln_journal {
	int fd;
	char *path;
	unsigned seq;
	bool broken;
	kiln_journal_hook hook;
	void *hook_ctx;
};

int kiln_journal_path(kiln_buf *out, const char *state_dir, const char *fleet,
		      const char *rollout_id)
{
	return kiln_buf_printf(out, "%s/rollouts/%s/%s.journal", state_dir, fleet, rollout_id);
}

/*
 * An existing journal, before appending: the number of entries (appends
 * continue its sequence), and its torn tail cut off. A crash mid-append
 * leaves a last line without its newline (or, on some file systems, NULs);
 * the reader ignores it, but an append after it would glue the new entry
 * onto it, and that garbled line, once no longer the last, would make the
 * whole journal unreadable. A journal that does not read is left as it is.
 */
static int repair_tail(int fd, const char *path, unsigned *entries)
{
	kiln_journal_state st;
	struct stat sb;
	int error = 0;

	*entries = 0;
	if (kiln_journal_read(&st, path) < 0) {
		kiln_error_clear();
		return 0;
	}
	*entries = st.entries;
	if (fstat(fd, &sb) == 0 && (off_t)st.length < sb.st_size) {
		if (ftruncate(fd, (off_t)st.length) < 0 || fdatasync(fd) < 0)
			error = kiln_error_set_os(KILN_ERROR, errno,
						  "cannot cut the torn end of journal '%s'", path);
	}
	kiln_journal_state_release(&st);
	return error;
}

int kiln_journal_open(kiln_journal **out, const char *state_dir, const char *fleet,
		      const char *rollout_id)
{
	kiln_buf path = KILN_BUF_INIT, dir = KILN_BUF_INIT;
	kiln_journal *j = NULL;
	bool existed;
	unsigned seq = 0;
	int error, fd = -1;

	*out = NULL;
	if ((error = kiln_journal_path(&path, state_dir, fleet, rollout_id)) < 0 ||
	    (error = kiln_dirname(&dir, path.ptr)) < 0 || (error = kiln_mkdir_p(dir.ptr, 0700)) < 0)
		goto done;
	existed = kiln_path_exists(path.ptr);
	fd = open(path.ptr, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		error = kiln_error_set_os(KILN_ERROR, errno, "cannot open journal '%s'", path.ptr);
		goto done;
	}
	if (!existed) {
		/* the new name must survive a crash too */
		int dfd = open(dir.ptr, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
	if (existed && (error = repair_tail(fd, path.ptr, &seq)) < 0)
		goto done;
	if (!(j = calloc(1, sizeof(*j)))) {
		error = kiln_error_set(KILN_ENOMEM, "out of memory");
		goto done;
	}
	j->seq = seq;
	j->fd = fd;
	fd = -1;
	j->path = kiln_buf_detach(&path);
	*out = j;
	error = 0;
done:
	if (fd >= 0)
		close(fd);
	kiln_buf_release(&path);
	kiln_buf_release(&dir);
	return error;
}

void kiln_journal_close(kiln_journal *j)
{
	if (!j)
		return;
	if (j->fd >= 0)
		close(j->fd);
	free(j->path);
	free(j);
}

void kiln_journal_set_hook(kiln_journal *j, kiln_journal_hook hook, void *ctx)
{
	j->hook = hook;
	j->hook_ctx = ctx;
}

unsigned kiln_journal_seq(const kiln_journal *j)
{
	return j ? j->seq : 0;
}

int kiln_journal_append(kiln_journal *j, json_t *entry)
{
	char when[21], stamp[32];
	int64_t wall = kiln_clock_wall_ms();
	json_t *line;
	char *text = NULL;
	size_t len, off = 0;
	int error = KILN_ERROR;

	if (j->broken)
		return kiln_error_set(KILN_ERROR, "journal '%s' failed earlier; not writing to it",
				      j->path);
	kiln_format_iso8601(when, wall / 1000);
	snprintf(stamp, sizeof(stamp), "%.19s.%03dZ", when, (int)(wall % 1000));
	/* seq and time first, so the file reads well */
	if (!(line = json_pack("{s:I,s:s}", "seq", (json_int_t)(j->seq + 1), "time", stamp)) ||
	    json_object_update_missing(line, entry) < 0 ||
	    !(text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER))) {
		error = kiln_error_set(KILN_ENOMEM, "out of memory");
		goto done;
	}
	len = strlen(text);
	text[len++] = '\n'; /* json_dumps' NUL becomes the newline */
	while (off < len) {
		ssize_t n = write(j->fd, text + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			error = kiln_error_set_os(KILN_ERROR, errno, "cannot write journal '%s'", j->path);
			goto done;
		}
		off += (size_t)n;
	}
	if (fdatasync(j->fd) < 0) {
		error = kiln_error_set_os(KILN_ERROR, errno, "cannot sync journal '%s'", j->path);
		goto done;
	}
	j->seq++;
	error = 0;
	if (j->hook && (error = j->hook(j->hook_ctx, j->seq, line)) < 0) {
		kiln_error_set(error, "stopped after journal entry %u", j->seq);
		goto done;
	}
done:
	if (error < 0)
		j->broken = true;
	free(text);
	json_decref(line);
	return error;
}

/* ---- reading ---- */

static const char *str(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

static unsigned uint_of(const json_t *o, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(o, key));
	return v > 0 && v < UINT32_MAX ? (unsigned)v : 0;
}

static int add_ids(kiln_strings *to, const json_t *arr)
{
	size_t i;
	json_t *v;
	int error;
	json_array_foreach(arr, i, v) {
		if (!json_is_string(v) || kiln_strings_has(to, json_string_value(v)))
			continue;
		if ((error = kiln_strings_add(to, json_string_value(v))) < 0)
			return error;
	}
	return 0;
}

static int apply(kiln_journal_state *st, const json_t *e)
{
	const char *op = str(e, "op"), *stage = str(e, "stage");
	bool before = !strcmp(stage, "before"), ok = !strcmp(str(e, "result"), "ok");
	int error;

	st->entries++;
	snprintf(st->last_op, sizeof(st->last_op), "%s", op);
	if (before)
		snprintf(st->in_flight, sizeof(st->in_flight), "%s", op);
	else if (!strcmp(stage, "after") && !strcmp(st->in_flight, op))
		st->in_flight[0] = '\0';

	if (!strcmp(op, "begin")) {
		snprintf(st->rollout_id, sizeof(st->rollout_id), "%s", str(e, "rollout_id"));
		snprintf(st->fleet, sizeof(st->fleet), "%s", str(e, "fleet"));
		snprintf(st->kind, sizeof(st->kind), "%s", str(e, "kind"));
		snprintf(st->to_image_id, sizeof(st->to_image_id), "%s", str(e, "to_image_id"));
		snprintf(st->from_image_id, sizeof(st->from_image_id), "%s", str(e, "from_image_id"));
	} else if (!strcmp(op, "launch") && !before && ok) {
		unsigned epoch = uint_of(e, "epoch"), batch = uint_of(e, "batch");
		if ((error = add_ids(&st->launched_ids, json_object_get(e, "instance_ids"))) < 0)
			return error;
		if (batch && epoch >= st->epoch) {
			if (epoch > st->epoch)
				st->last_launched_batch = 0;
			st->epoch = epoch;
			st->last_launched_batch = KILN_MAX(st->last_launched_batch, batch);
		}
	} else if (!strcmp(op, "healthy")) {
		st->last_healthy_batch = KILN_MAX(st->last_healthy_batch, uint_of(e, "batch"));
	} else if (!strcmp(op, "retired")) {
		st->last_retired_batch = KILN_MAX(st->last_retired_batch, uint_of(e, "batch"));
	} else if (!strcmp(op, "terminate") && !before && ok) {
		if ((error = add_ids(&st->terminated_ids, json_object_get(e, "instance_ids"))) < 0)
			return error;
	} else if (!strcmp(op, "restore")) {
		st->restoring = true;
	} else if (!strcmp(op, "end")) {
		st->ended = true;
		snprintf(st->result, sizeof(st->result), "%s", str(e, "result"));
	}
	return 0;
}

int kiln_journal_read_text(kiln_journal_state *out, const char *name, const char *text,
			   size_t len)
{
	kiln_journal_state st;
	const char *line = text, *end, *stop = text + len;
	unsigned lineno = 0;
	int error;

	memset(&st, 0, sizeof(st));
	/*
	 * Lines are split by length, not at a NUL: a NUL inside a line makes
	 * that line bad (an error unless it is the last), it does not silently
	 * end the journal before entries that were written after it.
	 */
	for (; line < stop; line = end + 1) {
		json_error_t jerr;
		json_t *e;
		lineno++;
		if (!(end = memchr(line, '\n', (size_t)(stop - line)))) {
			/* no newline: a write torn by a crash; it never counted */
			break;
		}
		if ((size_t)(end - line) > LINE_MAX_BYTES) {
			error = kiln_error_set(KILN_ERROR, "%s:%u: journal line too long", name, lineno);
			goto done;
		}
		if (!(e = json_loadb(line, (size_t)(end - line), 0, &jerr)) || !json_is_object(e)) {
			bool parsed = e != NULL;
			json_decref(e);
			/* a torn line can only be the last one */
			if (end + 1 == stop)
				break;
			error = kiln_error_set(KILN_ERROR, "%s:%u: bad journal entry: %s", name, lineno,
					       parsed ? "not a JSON object" : jerr.text);
			goto done;
		}
		error = apply(&st, e);
		json_decref(e);
		if (error < 0)
			goto done;
		st.length = (size_t)(end + 1 - text);
	}
	*out = st;
	memset(&st, 0, sizeof(st));
	error = 0;
done:
	kiln_journal_state_release(&st);
	return error;
}

int kiln_journal_read(kiln_journal_state *out, const char *path)
{
	kiln_buf text = KILN_BUF_INIT;
	int error;

	kiln_buf_init(&text, JOURNAL_MAX);
	if ((error = kiln_read_file(&text, path)) == 0)
		error = kiln_journal_read_text(out, path, text.ptr, text.len);
	kiln_buf_release(&text);
	return error;
}

void kiln_journal_state_release(kiln_journal_state *st)
{
	kiln_strings_release(&st->launched_ids);
	kiln_strings_release(&st->terminated_ids);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int kiln_journal_unfinished(kiln_strings *out, const char *state_dir, const char *fleet)
{
	kiln_buf dir = KILN_BUF_INIT;
	kiln_strings ids = { 0 };
	struct dirent *de;
	DIR *d;
	int error = 0;

	if ((error = kiln_buf_printf(&dir, "%s/rollouts/%s", state_dir, fleet)) < 0)
		goto done;
	if (!(d = opendir(dir.ptr)))
		goto done; /* no journals */
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);
		kiln_buf path = KILN_BUF_INIT;
		kiln_journal_state st;
		if (n <= 8 || strcmp(de->d_name + n - 8, ".journal"))
			continue;
		if ((error = kiln_buf_printf(&path, "%s/%s", dir.ptr, de->d_name)) < 0) {
			kiln_buf_release(&path);
			break;
		}
		if (kiln_journal_read(&st, path.ptr) == 0) {
			if (!st.ended) {
				de->d_name[n - 8] = '\0';
				error = kiln_strings_add(&ids, de->d_name);
			}
			kiln_journal_state_release(&st);
		}
		kiln_buf_release(&path);
		if (error < 0)
			break;
	}
	closedir(d);
	/* rollout ids begin with their start time, so names sort oldest first */
	if (ids.n > 1)
		qsort(ids.items, ids.n, sizeof(*ids.items), cmp_str);
done:
	kiln_buf_release(&dir);
	if (error == 0) {
		*out = ids;
		kiln_error_clear();
	} else {
		kiln_strings_release(&ids);
	}
	return error;
}
