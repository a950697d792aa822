#include "builder/journal.h"

#include <unistd.h>

#include "core/error.h"
#include "core/fs.h"

int kiln_journal_dir(kiln_buf *out)
{
	int error;
	if ((error = kiln_state_dir(out)) < 0 || (error = kiln_buf_puts(out, "/builds")) < 0)
		return error;
	return kiln_mkdir_p(out->ptr, 0700);
}

int kiln_journal_create(kiln_journal *j, const char *dir, const char *build_id, const json_t *header)
{
	j->path = kiln_strdupf("%s/%s.json", dir, build_id);
	j->doc = json_object();
	if (!j->path || !j->doc) {
		kiln_journal_release(j);
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	}
	if (header)
		json_object_update(j->doc, (json_t *)header);
	json_object_set_new(j->doc, "build_id", json_string(build_id));
	json_object_set_new(j->doc, "resources", json_object());
	return kiln_journal_save(j);
}

int kiln_journal_parse(kiln_journal *j, const char *path, const char *text, size_t len)
{
	json_error_t jerr;
	int error = 0;

	j->path = NULL;
	j->doc = json_loadb(text, len, 0, &jerr);
	if (!json_is_object(j->doc) || !json_is_string(json_object_get(j->doc, "build_id"))) {
		error = kiln_error_set(KILN_EINVALID, "'%s' is not a build journal: %s", path,
				       j->doc ? "no build_id" : jerr.text);
		goto done;
	}
	if (!json_is_object(json_object_get(j->doc, "resources")))
		json_object_set_new(j->doc, "resources", json_object());
	if (!(j->path = kiln_strdup(path)))
		error = KILN_ENOMEM;
done:
	if (error < 0)
		kiln_journal_release(j);
	return error;
}

int kiln_journal_load(kiln_journal *j, const char *path)
{
	kiln_buf b = KILN_BUF_INIT;
	int error;

	j->path = NULL;
	j->doc = NULL;
	kiln_buf_init(&b, 1 << 20);
	if ((error = kiln_read_file(&b, path)) == 0)
		error = kiln_journal_parse(j, path, b.ptr, b.len);
	kiln_buf_release(&b);
	return error;
}

int kiln_journal_save(kiln_journal *j)
{
	char *text = json_dumps(j->doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	int error;
	if (!text)
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	error = kiln_write_file_atomic(j->path, text, strlen(text), 0600);
	free(text);
	if (error < 0)
		return kiln_error_prefix("cannot write the build journal");
	return 0;
}

int kiln_journal_remove(kiln_journal *j)
{
	if (j->path && unlink(j->path) < 0 && errno != ENOENT)
		return kiln_error_set_os(KILN_ERROR, errno, "cannot remove '%s'", j->path);
	return 0;
}

void kiln_journal_release(kiln_journal *j)
{
	free(j->path);
	json_decref(j->doc);
	j->path = NULL;
	j->doc = NULL;
}

const char *kiln_journal_str(const kiln_journal *j, const char *key)
{
	return json_string_value(json_object_get(j->doc, key));
}

int64_t kiln_journal_int(const kiln_journal *j, const char *key)
{
	return json_integer_value(json_object_get(j->doc, key));
}

int kiln_journal_set_str(kiln_journal *j, const char *key, const char *value)
{
	json_object_set_new(j->doc, key, json_string(value));
	return kiln_journal_save(j);
}

int kiln_journal_set_int(kiln_journal *j, const char *key, int64_t value)
{
	json_object_set_new(j->doc, key, json_integer(value));
	return kiln_journal_save(j);
}

const char *kiln_journal_res(const kiln_journal *j, const char *kind, const char *field)
{
	json_t *r = json_object_get(json_object_get(j->doc, "resources"), kind);
	return json_string_value(json_object_get(r, field));
}

int kiln_journal_res_set(kiln_journal *j, const char *kind, const char *field, const char *value)
{
	json_t *all = json_object_get(j->doc, "resources"), *r;
	if (!(r = json_object_get(all, kind))) {
		r = json_object();
		json_object_set_new(all, kind, r);
	}
	json_object_set_new(r, field, json_string(value));
	return kiln_journal_save(j);
}
