/*
 * The journal: appends survive reopening, the reader reconstructs where a
 * rollout stopped, a torn last line is ignored, the hook stops a writer.
 */
#include <fcntl.h>
#include <unistd.h>

#include "core/error.h"
#include "core/fs.h"
#include "rollout/journal.h"
#include "tests/support/test.h"

static void append(kiln_journal *j, const char *json)
{
	json_t *e = json_loads(json, 0, NULL);
	assert_non_null(e);
	assert_int_equal(kiln_journal_append(j, e), 0);
	json_decref(e);
}

static void test_write_read(void **state)
{
	char *dir = kiln_test_mktmp();
	kiln_journal *j = NULL;
	kiln_journal_state st;
	kiln_buf path = KILN_BUF_INIT;
	kiln_strings unfinished = { 0 };
	(void)state;

	assert_int_equal(kiln_journal_open(&j, dir, "web", "r1"), 0);
	append(j, "{\"op\":\"begin\",\"kind\":\"rollout\",\"fleet\":\"web\",\"rollout_id\":\"r1\","
		  "\"from_image_id\":\"ami-1\",\"to_image_id\":\"ami-2\"}");
	append(j, "{\"op\":\"launch\",\"stage\":\"before\",\"batch\":1,\"epoch\":1}");
	append(j, "{\"op\":\"launch\",\"stage\":\"after\",\"result\":\"ok\",\"batch\":1,\"epoch\":1,"
		  "\"instance_ids\":[\"i-1\",\"i-2\"]}");
	append(j, "{\"op\":\"healthy\",\"batch\":1}");
	kiln_journal_close(j);
	/* reopened: the sequence continues */
	assert_int_equal(kiln_journal_open(&j, dir, "web", "r1"), 0);
	assert_int_equal(kiln_journal_seq(j), 4);
	append(j, "{\"op\":\"launch\",\"stage\":\"before\",\"batch\":2,\"epoch\":1}");
	kiln_journal_close(j);

	assert_int_equal(kiln_journal_path(&path, dir, "web", "r1"), 0);
	assert_int_equal(kiln_journal_read(&st, path.ptr), 0);
	assert_int_equal(st.entries, 5);
	assert_string_equal(st.rollout_id, "r1");
	assert_string_equal(st.to_image_id, "ami-2");
	assert_int_equal(st.last_launched_batch, 1);
	assert_int_equal(st.last_healthy_batch, 1);
	assert_string_equal(st.in_flight, "launch");
	assert_int_equal(st.launched_ids.n, 2);
	assert_false(st.ended);
	kiln_journal_state_release(&st);
	assert_int_equal(kiln_journal_unfinished(&unfinished, dir, "web"), 0);
	assert_int_equal(unfinished.n, 1);
	assert_string_equal(unfinished.items[0], "r1");
	kiln_strings_release(&unfinished);

	/* a torn last line (a crash mid-write) is ignored */
	{
		int fd = open(path.ptr, O_WRONLY | O_APPEND);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, "{\"seq\":6,\"op\":\"end\",\"res", 24), 24);
		close(fd);
	}
	assert_int_equal(kiln_journal_read(&st, path.ptr), 0);
	assert_int_equal(st.entries, 5);
	assert_false(st.ended);
	kiln_journal_state_release(&st);

	/* but a bad line in the middle is an error */
	{
		int fd = open(path.ptr, O_WRONLY | O_APPEND);
		const char *more = "\n{\"op\":\"end\",\"result\":\"completed\"}\n";
		assert_int_equal(write(fd, more, strlen(more)), (ssize_t)strlen(more));
		close(fd);
	}
	assert_error(kiln_journal_read(&st, path.ptr), KILN_ERROR, "bad journal entry");

	kiln_buf_release(&path);
	kiln_test_rmtmp(dir);
}

/*
 * A crash mid-append leaves a torn last line; whoever opens the journal
 * next (a resumed rollout, or settle_journals appending the "end") must
 * not glue its entry onto it: that garbled line, once not the last, made
 * the whole journal unreadable (fuzz/rollout_journal found it).
 */
static void test_append_after_torn_line(void **state)
{
	static const char *const torn[] = {
		"{\"seq\":3,\"op\":\"launch\",\"sta",  /* a torn write */
		"\0\0\0\0\0\0\0\0",                       /* its data never reached the disk */
		"[1]\n",                                 /* a last line that is no entry */
	};
	static const size_t torn_len[] = { 27, 8, 4 };
	size_t i;
	(void)state;

	for (i = 0; i < KILN_ARRAY_SIZE(torn); i++) {
		char *dir = kiln_test_mktmp();
		kiln_journal *j = NULL;
		kiln_journal_state st;
		kiln_buf path = KILN_BUF_INIT;
		int fd;

		assert_int_equal(kiln_journal_open(&j, dir, "web", "r3"), 0);
		append(j, "{\"op\":\"begin\",\"kind\":\"rollout\",\"fleet\":\"web\",\"rollout_id\":\"r3\"}");
		append(j, "{\"op\":\"healthy\",\"batch\":1}");
		kiln_journal_close(j);
		assert_int_equal(kiln_journal_path(&path, dir, "web", "r3"), 0);
		fd = open(path.ptr, O_WRONLY | O_APPEND);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, torn[i], torn_len[i]), (ssize_t)torn_len[i]);
		close(fd);

		assert_int_equal(kiln_journal_open(&j, dir, "web", "r3"), 0);
		assert_int_equal(kiln_journal_seq(j), 2);
		append(j, "{\"op\":\"end\",\"result\":\"abandoned\"}");
		kiln_journal_close(j);
		assert_int_equal(kiln_journal_open(&j, dir, "web", "r3"), 0);
		append(j, "{\"op\":\"end\",\"result\":\"abandoned\"}");
		kiln_journal_close(j);
		assert_int_equal(kiln_journal_read(&st, path.ptr), 0);
		assert_int_equal(st.entries, 4);
		assert_true(st.ended);
		assert_string_equal(st.result, "abandoned");
		assert_int_equal(st.last_healthy_batch, 1);
		kiln_journal_state_release(&st);
		kiln_buf_release(&path);
		kiln_test_rmtmp(dir);
	}
}

/* A NUL does not end the journal early: a line holding one is a bad line. */
static void test_nul_inside(void **state)
{
	static const char text[] = "{\"op\":\"begin\"}\n{\"op\":\0\"x\"}\n{\"op\":\"end\"}\n";
	kiln_journal_state st;
	(void)state;

	assert_error(kiln_journal_read_text(&st, "j", text, sizeof(text) - 1), KILN_ERROR,
		     "j:2: bad journal entry");
	/* as the last line it is a torn one */
	assert_int_equal(kiln_journal_read_text(&st, "j", text, 26), 0);
	assert_int_equal(st.entries, 1);
	assert_int_equal(st.length, 15);
	kiln_journal_state_release(&st);
	/* not an object: said so, not an empty reason */
	assert_error(kiln_journal_read_text(&st, "j", "[1]\n{}\n", 7), KILN_ERROR,
		     "j:1: bad journal entry: not a JSON object");
}

static int stop_at_2(void *ctx, unsigned seq, const json_t *e)
{
	(void)ctx;
	(void)e;
	return seq == 2 ? KILN_ERROR : 0;
}

static void test_hook_stops_writer(void **state)
{
	char *dir = kiln_test_mktmp();
	kiln_journal *j = NULL;
	kiln_journal_state st;
	kiln_buf path = KILN_BUF_INIT;
	json_t *e = json_pack("{s:s}", "op", "x");
	(void)state;

	assert_int_equal(kiln_journal_open(&j, dir, "web", "r2"), 0);
	kiln_journal_set_hook(j, stop_at_2, NULL);
	assert_int_equal(kiln_journal_append(j, e), 0);
	assert_error(kiln_journal_append(j, e), KILN_ERROR, "stopped after journal entry 2");
	/* the second line was written; nothing after it */
	assert_error(kiln_journal_append(j, e), KILN_ERROR, "failed earlier");
	kiln_journal_close(j);
	assert_int_equal(kiln_journal_path(&path, dir, "web", "r2"), 0);
	assert_int_equal(kiln_journal_read(&st, path.ptr), 0);
	assert_int_equal(st.entries, 2);
	kiln_journal_state_release(&st);
	json_decref(e);
	kiln_buf_release(&path);
	kiln_test_rmtmp(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_read),
		cmocka_unit_test(test_hook_stops_writer),
		cmocka_unit_test(test_append_after_torn_line),
		cmocka_unit_test(test_nul_inside),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
