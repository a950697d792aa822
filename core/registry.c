#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/registry.h"

bool kiln_image_name_valid(const char *name)
{
	size_t i, n = strlen(name);
	if (n == 0 || n > 100)
		return false;
	for (i = 0; i < n; i++) {
		char c = name[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
		if (!alnum && (i == 0 || !strchr("._-", c)))
			return false;
	}
	return true;
}

static bool looks_like_id(const char *s)
{
	return !strncmp(s, "ami-", 4) || !strncmp(s, "img-", 4);
}

int kiln_image_ref_parse(kiln_image_ref *out, const char *s)
{
	const char *at;

	memset(out, 0, sizeof(*out));
	if (!s || !*s)
		return kiln_error_set(KILN_EINVALID, "empty image reference");
	if (looks_like_id(s) && !strchr(s, '@'))
		return kiln_strlcpy(out->id, sizeof(out->id), s) < 0 ?
			kiln_error_set(KILN_EINVALID, "image id '%s' is too long", s) : 0;
	at = strchr(s, '@');
	if (at) {
		if ((size_t)(at - s) >= sizeof(out->name))
			return kiln_error_set(KILN_EINVALID, "image name in '%s' is too long", s);
		memcpy(out->name, s, (size_t)(at - s));
		if (kiln_parse_i64(&out->version, at + 1, 1, INT32_MAX) < 0)
			return kiln_error_set(KILN_EINVALID,
					      "bad image reference '%s': the version after '@' must be a positive integer",
					      s);
	} else if (kiln_strlcpy(out->name, sizeof(out->name), s) < 0) {
		return kiln_error_set(KILN_EINVALID, "image name '%s' is too long", s);
	}
	if (!kiln_image_name_valid(out->name))
		return kiln_error_set(KILN_EINVALID,
				      "bad image reference '%s': expected NAME, NAME@VERSION or an image id",
				      s);
	return 0;
}

void kiln_image_ref_format(char *out, size_t size, const kiln_image_ref *ref)
{
	if (ref->id[0])
		snprintf(out, size, "%s", ref->id);
	else if (ref->version)
		snprintf(out, size, "%s@%lld", ref->name, (long long)ref->version);
	else
		snprintf(out, size, "%s", ref->name);
}

int64_t kiln_image_version(const kiln_image *img)
{
	int64_t v;
	const char *s = kiln_tags_get(&img->tags, KILN_TAG_VERSION);
	if (!s || kiln_parse_i64(&v, s, 1, INT32_MAX) < 0)
		return 0;
	return v;
}

const char *kiln_image_kiln_name(const kiln_image *img)
{
	const char *s = kiln_tags_get(&img->tags, KILN_TAG_IMAGE);
	return s ? s : "";
}

static int cmp_images(const void *a, const void *b)
{
	const kiln_image *x = a, *y = b;
	int c = strcmp(kiln_image_kiln_name(x), kiln_image_kiln_name(y));
	int64_t vx, vy;
	if (c)
		return c;
	vx = kiln_image_version(x);
	vy = kiln_image_version(y);
	return vx < vy ? 1 : vx > vy ? -1 : 0;
}

int kiln_registry_list(kiln_cloud *c, const char *name, kiln_image_list *out)
{
	kiln_tags want = KILN_TAGS_INIT;
	kiln_image_list all = { 0 }, keep = { 0 };
	const char *self[] = { "self" };
	kiln_image_query q = { .owners = self, .n_owners = 1 };
	size_t i;
	int error;

	if ((error = kiln_tags_set(&want, KILN_TAG_IMAGE, name ? name : "*")) < 0)
		goto done;
	q.tags = &want;
	if ((error = c->ops->images_describe(c, &q, &all)) < 0)
		goto done;
	for (i = 0; i < all.n; i++) {
		if (!kiln_image_version(&all.items[i]) ||
		    all.items[i].state == KILN_IMAGE_DEREGISTERED)
			continue;
		if ((error = kiln_image_list_add(&keep, &all.items[i])) < 0)
			goto done;
	}
	if (keep.n > 1)
		qsort(keep.items, keep.n, sizeof(*keep.items), cmp_images);
	*out = keep;
	keep.items = NULL;
	keep.n = 0;
done:
	kiln_image_list_release(&all);
	kiln_image_list_release(&keep);
	kiln_tags_release(&want);
	return error;
}

int kiln_registry_resolve(kiln_cloud *c, const kiln_image_ref *ref, kiln_image *out)
{
	kiln_image_list list = { 0 };
	char what[KILN_NAME_MAX + 32];
	size_t i;
	int error;

	kiln_image_ref_format(what, sizeof(what), ref);
	if (ref->id[0]) {
		const char *ids[1] = { ref->id };
		kiln_image_query q = { .ids = ids, .n_ids = 1 };
		error = c->ops->images_describe(c, &q, &list);
		if (error == 0 && list.n == 0)
			error = KILN_ENOTFOUND;
		if (error == KILN_ENOTFOUND)
			error = kiln_error_set(KILN_ENOTFOUND, "no image '%s'", ref->id);
		if (error == 0)
			error = kiln_image_copy(out, &list.items[0]);
		kiln_image_list_release(&list);
		return error;
	}
	if ((error = kiln_registry_list(c, ref->name, &list)) < 0)
		return error;
	error = kiln_error_set(KILN_ENOTFOUND,
			       ref->version ? "no image '%s' (see 'kiln images list %s')"
					    : "no available image named '%s' (build one with 'kiln build'; see 'kiln images list %s')",
			       what, ref->name);
	for (i = 0; i < list.n; i++) {
		const kiln_image *img = &list.items[i];
		if (img->state != KILN_IMAGE_AVAILABLE && !ref->version)
			continue;
		if (ref->version && kiln_image_version(img) != ref->version)
			continue;
		if (img->state != KILN_IMAGE_AVAILABLE) {
			error = kiln_error_set(KILN_ERROR, "image '%s' (%s) is %s, not available", what,
					       img->id, kiln_image_state_name(img->state));
			break;
		}
		kiln_error_clear();
		error = kiln_image_copy(out, img);
		break;
	}
	kiln_image_list_release(&list);
	return error;
}

void kiln_registry_version_record(char *out, size_t size, const char *name, int64_t version)
{
	snprintf(out, size, "/kiln/images/%s/versions/%lld", name, (long long)version);
}

int kiln_registry_reserve_version(kiln_cloud *c, const char *name, const char *owner,
				  int64_t *out)
{
	kiln_image_list list = { 0 };
	char record[KILN_NAME_MAX + 64], host[256] = "", when[21];
	int64_t v = 1;
	json_t *cached = NULL, *versions;
	char scope[2 * KILN_ID_MAX];
	int error, tries;

	if ((error = kiln_registry_list(c, name, &list)) < 0)
		return error;
	if (list.n)
		v = kiln_image_version(&list.items[0]) + 1;
	kiln_image_list_release(&list);
	/* the cache may know of versions whose images are still pending */
	kiln_registry_scope(scope, sizeof(scope), c);
	if (kiln_registry_cache_get(scope, &cached) == 0 &&
	    (versions = json_object_get(cached, name))) {
		const char *k;
		json_t *ignored;
		json_object_foreach(versions, k, ignored) {
			int64_t cv;
			if (kiln_parse_i64(&cv, k, 1, INT32_MAX) == 0 && cv >= v)
				v = cv + 1;
		}
	}
	json_decref(cached);
	gethostname(host, sizeof(host) - 1);
	kiln_format_iso8601(when, kiln_clock_wall_s());
	for (tries = 0; tries < 1000; tries++, v++) {
		char *value;
		kiln_registry_version_record(record, sizeof(record), name, v);
		value = kiln_strdupf("{\"image\":\"%s\",\"version\":%lld,\"owner\":\"%s\",\"host\":\"%s\",\"reserved_at\":\"%s\"}",
				     name, (long long)v, owner, host, when);
		if (!value)
			return KILN_ENOMEM;
		error = c->ops->record_create(c, record, value);
		free(value);
		if (error == 0) {
			*out = v;
			return 0;
		}
		if (error != KILN_ECONFLICT)
			return kiln_error_prefix("cannot reserve version %lld of '%s'", (long long)v, name);
	}
	return kiln_error_set(KILN_ERROR, "cannot reserve a version of '%s': 1000 taken in a row", name);
}

/* ---- the local cache ---- */

void kiln_registry_scope(char *out, size_t size, const kiln_cloud *c)
{
	snprintf(out, size, "%s/%s", kiln_cloud_name(c), c->region[0] ? c->region : "-");
}

static int cache_paths(kiln_buf *file, kiln_buf *lock)
{
	int error;
	if ((error = kiln_state_dir(file)) < 0)
		return error;
	if ((error = kiln_buf_printf(lock, "%s/registry.lock", file->ptr)) < 0)
		return error;
	return kiln_buf_puts(file, "/registry.json");
}

static json_t *cache_load(const char *path)
{
	kiln_buf b = KILN_BUF_INIT;
	json_t *root = NULL;
	if (kiln_read_file(&b, path) == 0)
		root = json_loadb(b.ptr, b.len, 0, NULL);
	kiln_buf_release(&b);
	if (!json_is_object(root)) {
		json_decref(root);
		root = json_object();
	}
	kiln_error_clear();
	return root;
}

static int cache_save(const char *path, json_t *root)
{
	char *text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
	int error;
	if (!text)
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	error = kiln_write_file_atomic(path, text, strlen(text), 0600);
	free(text);
	return error;
}

int kiln_registry_cache_put(const char *scope, const kiln_image_list *images)
{
	kiln_buf file = KILN_BUF_INIT, lockp = KILN_BUF_INIT;
	kiln_lock lock = KILN_LOCK_INIT;
	json_t *root = NULL, *s;
	size_t i;
	int error;

	if ((error = cache_paths(&file, &lockp)) < 0 ||
	    (error = kiln_lock_acquire(&lock, lockp.ptr, 10000)) < 0)
		goto done;
	root = cache_load(file.ptr);
	if (!(s = json_object_get(root, scope)))
		json_object_set_new(root, scope, s = json_object());
	for (i = 0; i < images->n; i++) {
		const kiln_image *img = &images->items[i];
		const char *name = kiln_image_kiln_name(img);
		char ver[32], when[21];
		json_t *byname;
		if (!*name || !kiln_image_version(img))
			continue;
		if (!(byname = json_object_get(s, name)))
			json_object_set_new(s, name, byname = json_object());
		snprintf(ver, sizeof(ver), "%lld", (long long)kiln_image_version(img));
		kiln_format_iso8601(when, img->created);
		json_object_set_new(byname, ver,
				    json_pack("{s:s,s:s,s:s,s:o}", "id", img->id, "state",
					      kiln_image_state_name(img->state), "created", when,
					      "tags", kiln_tags_to_json(&img->tags)));
	}
	error = cache_save(file.ptr, root);
done:
	json_decref(root);
	kiln_lock_release(&lock);
	kiln_buf_release(&file);
	kiln_buf_release(&lockp);
	return error;
}

int kiln_registry_cache_remove(const char *scope, const char *image_id)
{
	kiln_buf file = KILN_BUF_INIT, lockp = KILN_BUF_INIT;
	kiln_lock lock = KILN_LOCK_INIT;
	json_t *root = NULL, *s, *byname;
	const char *name;
	int error;

	if ((error = cache_paths(&file, &lockp)) < 0 ||
	    (error = kiln_lock_acquire(&lock, lockp.ptr, 10000)) < 0)
		goto done;
	root = cache_load(file.ptr);
	if ((s = json_object_get(root, scope))) {
		json_object_foreach(s, name, byname) {
			const char *ver;
			json_t *e;
			void *it;
			json_object_foreach_safe(byname, it, ver, e) {
				if (json_is_string(json_object_get(e, "id")) &&
				    !strcmp(json_string_value(json_object_get(e, "id")), image_id))
					json_object_del(byname, ver);
			}
		}
	}
	error = cache_save(file.ptr, root);
done:
	json_decref(root);
	kiln_lock_release(&lock);
	kiln_buf_release(&file);
	kiln_buf_release(&lockp);
	return error;
}

int kiln_registry_cache_get(const char *scope, json_t **out)
{
	kiln_buf file = KILN_BUF_INIT, lockp = KILN_BUF_INIT;
	json_t *root, *s;
	int error;

	*out = NULL;
	if ((error = cache_paths(&file, &lockp)) < 0)
		goto done;
	root = cache_load(file.ptr);
	s = json_object_get(root, scope);
	*out = s ? json_incref(s) : json_object();
	json_decref(root);
done:
	kiln_buf_release(&file);
	kiln_buf_release(&lockp);
	return error;
}

static int collect_image_ids(const json_t *v, const char *key, kiln_strings *out)
{
	size_t klen = key ? strlen(key) : 0;
	bool named = key && ((klen >= 8 && !strcmp(key + klen - 8, "image_id")) ||
			     (klen >= 9 && !strcmp(key + klen - 9, "image_ids")));
	int error;

	if (json_is_string(v)) {
		if (named && !kiln_strings_has(out, json_string_value(v)))
			return kiln_strings_add(out, json_string_value(v));
	} else if (json_is_array(v)) {
		size_t i;
		json_t *e;
		json_array_foreach(v, i, e)
			if ((error = collect_image_ids(e, named ? key : NULL, out)) < 0)
				return error;
	} else if (json_is_object(v)) {
		const char *k;
		json_t *e;
		json_object_foreach((json_t *)v, k, e)
			if ((error = collect_image_ids(e, k, out)) < 0)
				return error;
	}
	return 0;
}

int kiln_registry_protected_images(kiln_cloud *c, kiln_strings *out)
{
	kiln_strings names = { 0 };
	kiln_tags fleet = KILN_TAGS_INIT;
	kiln_instance_list insts = { 0 };
	kiln_instance_query q = { 0 };
	size_t i;
	int error;

	if ((error = c->ops->record_list(c, "/kiln/fleets/", &names)) < 0)
		goto done;
	for (i = 0; i < names.n; i++) {
		kiln_record rec = { 0 };
		json_t *doc;
		error = c->ops->record_get(c, names.items[i], &rec);
		if (error == KILN_ENOTFOUND)
			continue;
		if (error < 0)
			goto done;
		doc = json_loads(rec.value, 0, NULL);
		kiln_record_release(&rec);
		error = doc ? collect_image_ids(doc, NULL, out) : 0;
		json_decref(doc);
		if (error < 0)
			goto done;
	}
	if ((error = kiln_tags_set(&fleet, KILN_TAG_FLEET, "*")) < 0)
		goto done;
	q.tags = &fleet;
	if ((error = c->ops->instances_describe(c, &q, &insts)) < 0)
		goto done;
	for (i = 0; i < insts.n; i++)
		if (insts.items[i].image_id[0] && !kiln_strings_has(out, insts.items[i].image_id) &&
		    (error = kiln_strings_add(out, insts.items[i].image_id)) < 0)
			goto done;
done:
	kiln_strings_release(&names);
	kiln_tags_release(&fleet);
	kiln_instance_list_release(&insts);
	return error;
}
