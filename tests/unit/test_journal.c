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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
