#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/cloud.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/registry.h"
#include "tests/support/test.h"

static void test_buf_cap(void **state)
{
	kiln_buf b;
	(void)state;
	kiln_buf_init(&b, 8);
	assert_string_equal(b.ptr, "");
	assert_int_equal(kiln_buf_puts(&b, "abcd"), 0);
	assert_int_equal(kiln_buf_printf(&b, "%d", 123), 0);
	assert_string_equal(b.ptr, "abcd123");
	/* one past the cap fails and leaves the buffer as it was */
	assert_error(kiln_buf_puts(&b, "xy"), KILN_ENOMEM, "cap of 8");
	assert_string_equal(b.ptr, "abcd123");
	assert_int_equal(kiln_buf_putc(&b, 'z'), 0);
	assert_int_equal(b.len, 8);
	kiln_buf_truncate(&b, 2);
	assert_string_equal(b.ptr, "ab");
	kiln_buf_release(&b);
	assert_string_equal(b.ptr, "");
}

static void test_view_and_parse(void **state)
{
	int64_t v = 7;
	(void)state;
	assert_true(kiln_view_eq(kiln_view_of("abc"), "abc"));
	assert_false(kiln_view_eq(kiln_view_of("abc"), "ab"));
	assert_true(kiln_view_starts_with(kiln_view_of("abc"), "ab"));
	assert_int_equal(kiln_parse_i64(&v, "42", 0, 100), 0);
	assert_int_equal(v, 42);
	assert_int_equal(kiln_parse_i64(&v, "42x", 0, 100), KILN_EINVALID);
	assert_int_equal(kiln_parse_i64(&v, "", 0, 100), KILN_EINVALID);
	assert_int_equal(kiln_parse_i64(&v, "101", 0, 100), KILN_EINVALID);
	assert_int_equal(v, 42);
}

/* whatever a message quotes, it stays one printable line */
static void test_error_one_line(void **state)
{
	(void)state;
	kiln_error_set(KILN_ERROR, "reply \"%s\"", "a\nb\r\tc\x1b[31md\x7f");
	assert_string_equal(kiln_error_last()->message, "reply \"a b  c?[31md?\"");
	kiln_error_prefix("at %s", "x\ny");
	assert_string_equal(kiln_error_last()->message, "at x y: reply \"a b  c?[31md?\"");
	kiln_error_clear();
}

static void test_error_prefix_keeps_cloud_fields(void **state)
{
	const kiln_error *e;
	(void)state;
	kiln_error_set_cloud(KILN_EAUTH, 401, "AuthFailure", "req-1", "signature rejected");
	assert_int_equal(kiln_error_prefix("describe images"), KILN_EAUTH);
	e = kiln_error_last();
	assert_string_equal(e->message, "describe images: signature rejected");
	assert_string_equal(e->cloud_code, "AuthFailure");
	assert_string_equal(e->request_id, "req-1");
	assert_int_equal(e->http_status, 401);
}

static const char doc_text[] =
	"{\n"
	"  \"name\": \"web\",\n"
	"  \"count\": \"3\",\n"
	"  \"instnace_type\": \"t3.micro\",\n"
	"  \"list\": [1, \"two\", {\"deep\": true}],\n"
	"  \"ünï\": {\"k\": null}\n"
	"}\n";

static void test_json_positions(void **state)
{
	kiln_jdoc *doc;
	json_t *root, *list;
	kiln_pos p;
	const char *s = NULL;
	int64_t n = 0;
	static const char *const allowed[] = { "name", "count", "instance_type", "list", "ünï", NULL };
	(void)state;

	assert_int_equal(kiln_jdoc_parse(&doc, "t.json", doc_text, strlen(doc_text)), 0);
	root = kiln_jdoc_root(doc);
	p = kiln_jdoc_key_pos(doc, root, "count");
	assert_int_equal(p.line, 3);
	assert_int_equal(p.col, 3);
	p = kiln_jdoc_value_pos(doc, root, "count", 0);
	assert_int_equal(p.line, 3);
	assert_int_equal(p.col, 12);
	list = json_object_get(root, "list");
	p = kiln_jdoc_value_pos(doc, list, NULL, 2);
	assert_int_equal(p.line, 5);
	assert_int_equal(p.col, 22);
	p = kiln_jdoc_value_pos(doc, json_array_get(list, 2), "deep", 0);
	assert_int_equal(p.col, 31);
	/* columns count characters, not bytes */
	p = kiln_jdoc_value_pos(doc, json_object_get(root, "ünï"), "k", 0);
	assert_int_equal(p.line, 6);
	assert_int_equal(p.col, 16);

	assert_int_equal(kiln_jdoc_get_string(doc, root, "name", true, &s), 0);
	assert_string_equal(s, "web");
	assert_error(kiln_jdoc_get_int(doc, root, "count", true, 1, 10, &n), KILN_EINVALID,
		     "t.json:3:12: \"count\" must be an integer, not a string");
	assert_error(kiln_jdoc_get_string(doc, root, "missing", true, &s), KILN_EINVALID,
		     "t.json:1:1: missing required key \"missing\"");
	assert_error(kiln_jdoc_check_keys(doc, root, "template", allowed), KILN_EINVALID,
		     "t.json:4:3: unknown key \"instnace_type\" in template (did you mean \"instance_type\"?)");
	kiln_jdoc_free(doc);
}

static void test_json_syntax_error(void **state)
{
	kiln_jdoc *doc = NULL;
	static const char bad[] = "{\n  \"a\": 1,\n  \"b\": }\n";
	static const char dup[] = "{\"a\": 1, \"a\": 2}";
	(void)state;
	assert_error(kiln_jdoc_parse(&doc, "bad.json", bad, strlen(bad)), KILN_EINVALID, "bad.json:3:");
	assert_null(doc);
	assert_error(kiln_jdoc_parse(&doc, "dup.json", dup, strlen(dup)), KILN_EINVALID, "duplicate");
	assert_error(kiln_jdoc_load(&doc, "/nonexistent/x.json"), KILN_ENOTFOUND, "/nonexistent/x.json");
	/* jansson 2.14 would skip this NUL and the positions would drift */
	static const char nul[] = "[1E+2\0, true]";
	assert_error(kiln_jdoc_parse(&doc, "nul.json", nul, sizeof(nul) - 1), KILN_EINVALID,
		     "nul.json:1:6: NUL byte in the text");
	assert_null(doc);
	/* an escaped NUL in a string is JSON */
	assert_int_equal(kiln_jdoc_parse(&doc, "ok.json", "[\"a\\u0000b\"]", 12), 0);
	kiln_jdoc_free(doc);
}

/* A message quoting the file stays one line: control characters as JSON writes them. */
static void test_json_error_one_line(void **state)
{
	static const char text[] = "{\"na\\nme\": 1, \"b\": \"x\\u001by\"}";
	static const char *const allowed[] = { "name", "b", NULL };
	kiln_jdoc *doc = NULL;
	json_t *root;
	(void)state;
	assert_int_equal(kiln_jdoc_parse(&doc, "t.json", text, strlen(text)), 0);
	root = kiln_jdoc_root(doc);
	assert_int_equal(kiln_jdoc_check_keys(doc, root, "template", allowed), KILN_EINVALID);
	assert_string_equal(kiln_error_last()->message,
			    "t.json:1:2: unknown key \"na\\nme\" in template (did you mean \"name\"?)");
	kiln_jdoc_error(doc, root, "b", 0, "bad \"%s\"", json_string_value(json_object_get(root, "b")));
	assert_string_equal(kiln_error_last()->message, "t.json:1:20: bad \"x\\u001by\"");
	kiln_jdoc_free(doc);
	/* jansson quotes a bad token as it stood, here across a line break */
	assert_error(kiln_jdoc_parse(&doc, "t.json", "{\"a\\\\\\\n\x01", 8), KILN_EINVALID,
		     "t.json:2:1: invalid escape near '\"a\\\\\\\\n'");
	assert_null(strchr(kiln_error_last()->message, '\n'));
}

/* "\u0000" parses, but a string read as a C string would end there: refused, positioned */
static void test_json_string_with_nul(void **state)
{
	static const char text[] = "{\"image\": \"web\\u0000x\", \"tags\": {\"a\": \"b\\u0000\"},\n \"ids\": [\"i-1\", \"\\u0000\"]}";
	kiln_jdoc *doc = NULL;
	json_t *root, *m, *a;
	const char *s;
	(void)state;
	assert_int_equal(kiln_jdoc_parse(&doc, "f.json", text, strlen(text)), 0);
	root = kiln_jdoc_root(doc);
	assert_error(kiln_jdoc_get_string(doc, root, "image", true, &s), KILN_EINVALID,
		     "f.json:1:11: \"image\" must not contain a NUL character");
	assert_error(kiln_jdoc_get_string_map(doc, root, "tags", &m), KILN_EINVALID,
		     "\"a\" in \"tags\" must not contain a NUL character");
	assert_error(kiln_jdoc_get_string_array(doc, root, "ids", true, &a), KILN_EINVALID,
		     "f.json:2:17: element 2 of \"ids\" must not contain a NUL character");
	kiln_jdoc_free(doc);
}

static void test_atomic_write_and_mode(void **state)
{
	char *dir = kiln_test_mktmp(), *path = kiln_strdupf("%s/a/b/key", dir);
	kiln_buf sub = KILN_BUF_INIT, b = KILN_BUF_INIT;
	struct stat st;
	mode_t old = umask(077);
	(void)state;

	assert_int_equal(kiln_dirname(&sub, path), 0);
	assert_int_equal(kiln_mkdir_p(sub.ptr, 0700), 0);
	umask(0);
	assert_int_equal(kiln_write_file_atomic(path, "one", 3, 0600), 0);
	assert_int_equal(kiln_write_file_atomic(path, "second", 6, 0600), 0);
	umask(old);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(kiln_read_file(&b, path), 0);
	assert_string_equal(b.ptr, "second");
	kiln_buf_release(&b);
	kiln_buf_release(&sub);
	free(path);
	kiln_test_rmtmp(dir);
}

static void test_lock_excludes_and_dies_with_holder(void **state)
{
	char *dir = kiln_test_mktmp(), *path = kiln_strdupf("%s/x.lock", dir);
	kiln_lock a = KILN_LOCK_INIT, b = KILN_LOCK_INIT;
	int fds[2], status;
	pid_t pid, holder = 0;
	char c;
	(void)state;

	assert_int_equal(kiln_lock_acquire(&a, path, 0), 0);
	assert_int_equal(kiln_lock_is_held(path, &holder), 1);
	assert_int_equal(holder, getpid());
	kiln_lock_release(&a);
	assert_int_equal(kiln_lock_is_held(path, NULL), 0);

	/* a child holds it; we cannot take it; it dies; we can */
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	if (pid == 0) {
		kiln_lock l = KILN_LOCK_INIT;
		if (kiln_lock_acquire(&l, path, 0) < 0)
			_exit(1);
		if (write(fds[1], "x", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	assert_int_equal(read(fds[0], &c, 1), 1);
	assert_error(kiln_lock_acquire(&b, path, 0), KILN_EBUSY, "locked by pid");
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	assert_int_equal(kiln_lock_acquire(&b, path, 0), 0);
	kiln_lock_release(&b);
	close(fds[0]);
	close(fds[1]);
	free(path);
	kiln_test_rmtmp(dir);
}

static void test_sleep_cancel(void **state)
{
	uint64_t t0;
	(void)state;
	kiln_cancel_reset();
	t0 = kiln_clock_now_ms();
	assert_int_equal(kiln_sleep_ms(20), 0);
	assert_true(kiln_clock_now_ms() - t0 >= 20);
	kiln_cancel_set(SIGTERM);
	assert_error(kiln_sleep_ms(10000), KILN_ECANCELLED, "SIGTERM");
	/* a shield lets cleanup wait */
	kiln_cancel_shield_push();
	assert_int_equal(kiln_sleep_ms(1), 0);
	kiln_cancel_shield_pop();
	assert_int_equal(kiln_sleep_ms(1), KILN_ECANCELLED);
	kiln_cancel_reset();
}

static void test_virtual_clock_and_backoff(void **state)
{
	kiln_backoff bo;
	uint64_t t0;
	(void)state;
	kiln_test_clock_install(1700000000000LL);
	t0 = kiln_clock_now_ms();
	assert_int_equal(kiln_sleep_ms(600000), 0);
	assert_int_equal(kiln_clock_now_ms() - t0, 600000);
	assert_int_equal(kiln_clock_wall_s(), 1700000600);
	kiln_test_clock_uninstall();

	kiln_backoff_init(&bo, 100, 300);
	assert_int_equal(kiln_backoff_next(&bo), 100);
	assert_int_equal(kiln_backoff_next(&bo), 150);
	assert_int_equal(kiln_backoff_next(&bo), 225);
	assert_int_equal(kiln_backoff_next(&bo), 300);
	assert_int_equal(kiln_backoff_next(&bo), 300);
}

static void test_iso8601(void **state)
{
	char s[21];
	int64_t t = 0;
	(void)state;
	kiln_format_iso8601(s, 1764106664);
	assert_string_equal(s, "2025-11-25T21:37:44Z");
	assert_int_equal(kiln_parse_iso8601(&t, "2025-11-25T21:37:44.000Z"), 0);
	assert_int_equal(t, 1764106664);
	assert_int_equal(kiln_parse_iso8601(&t, "2025-11-25T21:37:44+00:00"), 0);
	assert_int_equal(kiln_parse_iso8601(&t, "yesterday"), KILN_EINVALID);
	/* years outside 0000-9999 clamp rather than overrun or read an unset tm */
	kiln_format_iso8601(s, INT64_MAX);
	assert_string_equal(s, "9999-12-31T23:59:59Z");
	kiln_format_iso8601(s, 253402300800LL);
	assert_string_equal(s, "9999-12-31T23:59:59Z");
	kiln_format_iso8601(s, INT64_MIN);
	assert_string_equal(s, "0000-01-01T00:00:00Z");
	kiln_format_iso8601(s, -1);
	assert_string_equal(s, "1969-12-31T23:59:59Z");
	assert_int_equal(kiln_parse_iso8601(&t, "0000-01-01T00:00:00Z"), 0);
	assert_int_equal(t, -62167219200LL);
}

static void test_image_refs(void **state)
{
	kiln_image_ref r;
	char s[64];
	(void)state;
	assert_int_equal(kiln_image_ref_parse(&r, "web"), 0);
	assert_string_equal(r.name, "web");
	assert_int_equal(r.version, 0);
	assert_int_equal(kiln_image_ref_parse(&r, "web@12"), 0);
	assert_int_equal(r.version, 12);
	kiln_image_ref_format(s, sizeof(s), &r);
	assert_string_equal(s, "web@12");
	assert_int_equal(kiln_image_ref_parse(&r, "ami-0123456789abcdef0"), 0);
	assert_string_equal(r.id, "ami-0123456789abcdef0");
	assert_int_equal(kiln_image_ref_parse(&r, "img-7"), 0);
	assert_error(kiln_image_ref_parse(&r, "web@"), KILN_EINVALID, "positive integer");
	assert_error(kiln_image_ref_parse(&r, "web@0"), KILN_EINVALID, "positive integer");
	assert_error(kiln_image_ref_parse(&r, "we b"), KILN_EINVALID, "NAME@VERSION");
	assert_error(kiln_image_ref_parse(&r, ""), KILN_EINVALID, "empty");
}

static void test_tags(void **state)
{
	kiln_tags t = KILN_TAGS_INIT, want = KILN_TAGS_INIT;
	(void)state;
	assert_int_equal(kiln_tags_set(&t, "a", "1"), 0);
	assert_int_equal(kiln_tags_set(&t, "b", "2"), 0);
	assert_int_equal(kiln_tags_set(&t, "a", "3"), 0);
	assert_int_equal(t.n, 2);
	assert_string_equal(kiln_tags_get(&t, "a"), "3");
	assert_int_equal(kiln_tags_set(&want, "a", "*"), 0);
	assert_true(kiln_tags_match(&t, &want));
	assert_int_equal(kiln_tags_set(&want, "b", "9"), 0);
	assert_false(kiln_tags_match(&t, &want));
	kiln_tags_release(&t);
	kiln_tags_release(&want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_cap),
		cmocka_unit_test(test_view_and_parse),
		cmocka_unit_test(test_error_one_line),
		cmocka_unit_test(test_json_string_with_nul),
		cmocka_unit_test(test_error_prefix_keeps_cloud_fields),
		cmocka_unit_test(test_json_positions),
		cmocka_unit_test(test_json_syntax_error),
		cmocka_unit_test(test_json_error_one_line),
		cmocka_unit_test(test_atomic_write_and_mode),
		cmocka_unit_test(test_lock_excludes_and_dies_with_holder),
		cmocka_unit_test(test_sleep_cancel),
		cmocka_unit_test(test_virtual_clock_and_backoff),
		cmocka_unit_test(test_iso8601),
		cmocka_unit_test(test_image_refs),
		cmocka_unit_test(test_tags),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
