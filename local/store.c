#include <sys/stat.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "local/local.h"

/*
 * Small things kept as files: named records (records/...), key pairs
 * (keys/NAME.pub + NAME.json), firewall rules (firewalls/sg-....json).
 *
 * Firewalls: there is no packet filter on these machines (no iptables or
 * nft), so a rule is recorded, listed and deleted but not enforced. What
 * protects instances instead is the topology: their addresses live on a
 * bridge with no NAT and no forwarding, so nothing but the host (and other
 * instances) can reach them, which is narrower than any rule a build
 * asks for (it admits the host, see caller_cidr). docs/local-provider.md
 * says the same.
 */

/* ---- records ---- */

bool kiln_local_record_name_valid(const char *name)
{
	const char *p = name;
	size_t len = name ? strlen(name) : 0;

	if (len < 2 || len > 1024 || name[0] != '/' || name[len - 1] == '/')
		return false;
	while (*p == '/') {
		const char *seg = ++p;
		size_t n;
		while (*p && *p != '/') {
			char ch = *p;
			if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
			      ch == '-' || ch == '_' || ch == '.' || ch == '@' || ch == ':'))
				return false;
			p++;
		}
		n = (size_t)(p - seg);
		if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
			return false;
	}
	return *p == '\0';
}

/* "/kiln/images/web/versions/3" -> records/kiln/images/web/versions/3.rec: no file/dir clash */
static int record_path(kiln_buf *out, const kiln_local *l, const char *name)
{
	if (!kiln_local_record_name_valid(name))
		return kiln_error_set(KILN_EINVALID,
				      "record name '%s' must be /SEGMENT/... of letters, digits and -_.@:",
				      name ? name : "");
	return kiln_local_path(out, l, "records%s.rec", name);
}

static int records_lock(kiln_lock *lock, const kiln_local *l)
{
	kiln_buf p = KILN_BUF_INIT;
	int error;
	if ((error = kiln_local_path(&p, l, "records")) == 0 && (error = kiln_mkdir_p(p.ptr, 0700)) == 0 &&
	    (error = kiln_local_path(&p, l, "records/.lock")) == 0)
		error = kiln_lock_acquire(lock, p.ptr, 30000);
	kiln_buf_release(&p);
	return error;
}

static int record_write(const char *path, const char *value, int64_t version)
{
	kiln_buf dir = KILN_BUF_INIT;
	json_t *doc;
	int error;

	if ((error = kiln_dirname(&dir, path)) < 0 || (error = kiln_mkdir_p(dir.ptr, 0700)) < 0)
		goto done;
	doc = json_pack("{s:s,s:I,s:I}", "value", value, "version", (json_int_t)version, "modified_ms",
			(json_int_t)kiln_clock_wall_ms());
	if (!doc) {
		error = kiln_error_set(KILN_EINVALID, "a record's value must be UTF-8 text");
		goto done;
	}
	error = kiln_local_json_save(path, doc, 0600);
	json_decref(doc);
done:
	kiln_buf_release(&dir);
	return error;
}

static int record_read(const char *path, const char *name, kiln_record *out)
{
	json_t *doc = NULL;
	int error = kiln_local_json_load(&doc, path);
	if (error == KILN_ENOTFOUND)
		return kiln_error_set(KILN_ENOTFOUND, "no record '%s'", name);
	if (error < 0)
		return error;
	memset(out, 0, sizeof(*out));
	if (!(out->value = kiln_strdup(kiln_local_jstr(doc, "value"))))
		error = KILN_ENOMEM;
	out->version = kiln_local_jint(doc, "version");
	out->modified_ms = kiln_local_jint(doc, "modified_ms");
	json_decref(doc);
	return error;
}

int kiln_local_record_create(kiln_cloud *c, const char *name, const char *value)
{
	kiln_local *l = KILN_LOCAL(c);
	kiln_lock lock = KILN_LOCK_INIT;
	kiln_buf p = KILN_BUF_INIT;
	int error;

	if ((error = record_path(&p, l, name)) < 0 || (error = records_lock(&lock, l)) < 0)
		goto done;
	if (kiln_path_exists(p.ptr))
		error = kiln_error_set_cloud(KILN_ECONFLICT, 400, "ParameterAlreadyExists", NULL,
					     "record '%s' exists already", name);
	else
		error = record_write(p.ptr, value, 1);
done:
	kiln_lock_release(&lock);
	kiln_buf_release(&p);
	return error;
}

int kiln_local_record_get(kiln_cloud *c, const char *name, kiln_record *out)
{
	kiln_buf p = KILN_BUF_INIT;
	int error;
	if ((error = record_path(&p, KILN_LOCAL(c), name)) == 0)
		error = record_read(p.ptr, name, out);
	kiln_buf_release(&p);
	return error;
}

int kiln_local_record_put(kiln_cloud *c, const char *name, const char *value)
{
	kiln_local *l = KILN_LOCAL(c);
	kiln_lock lock = KILN_LOCK_INIT;
	kiln_buf p = KILN_BUF_INIT;
	kiln_record old = { 0 };
	int64_t version = 1;
	int error;

	if ((error = record_path(&p, l, name)) < 0 || (error = records_lock(&lock, l)) < 0)
		goto done;
	error = record_read(p.ptr, name, &old);
	if (error == 0)
		version = old.version + 1;
	else if (error == KILN_ENOTFOUND)
		kiln_error_clear();
	else
		goto done;
	error = record_write(p.ptr, value, version);
done:
	kiln_record_release(&old);
	kiln_lock_release(&lock);
	kiln_buf_release(&p);
	return error;
}

int kiln_local_record_delete(kiln_cloud *c, const char *name)
{
	kiln_local *l = KILN_LOCAL(c);
	kiln_lock lock = KILN_LOCK_INIT;
	kiln_buf p = KILN_BUF_INIT;
	int error;

	if ((error = record_path(&p, l, name)) < 0 || (error = records_lock(&lock, l)) < 0)
		goto done;
	if (unlink(p.ptr) < 0 && errno != ENOENT)
		error = kiln_error_set_os(KILN_ERROR, errno, "cannot delete record '%s'", name);
done:
	kiln_lock_release(&lock);
	kiln_buf_release(&p);
	return error;
}

static int walk_records(kiln_strings *out, const char *dir, const char *name_prefix, const char *want)
{
	kiln_strings names = { 0 };
	size_t i;
	int error;

	if ((error = kiln_local_list_dir(&names, dir, "")) < 0)
		return error;
	for (i = 0; i < names.n && error == 0; i++) {
		char path[4096], name[2048];
		size_t len = strlen(names.items[i]);
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", dir, names.items[i]);
		if (lstat(path, &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			snprintf(name, sizeof(name), "%s/%s", name_prefix, names.items[i]);
			error = walk_records(out, path, name, want);
		} else if (S_ISREG(st.st_mode) && len > 4 && !strcmp(names.items[i] + len - 4, ".rec")) {
			snprintf(name, sizeof(name), "%s/%.*s", name_prefix, (int)(len - 4), names.items[i]);
			if (!strncmp(name, want, strlen(want)))
				error = kiln_strings_add(out, name);
		}
	}
	kiln_strings_release(&names);
	return error;
}

int kiln_local_record_list(kiln_cloud *c, const char *prefix, kiln_strings *out)
{
	kiln_buf dir = KILN_BUF_INIT;
	kiln_strings list = { 0 };
	int error;

	if ((error = kiln_local_path(&dir, KILN_LOCAL(c), "records")) == 0 &&
	    (error = walk_records(&list, dir.ptr, "", prefix ? prefix : "")) == 0) {
		*out = list;
		memset(&list, 0, sizeof(list));
	}
	kiln_strings_release(&list);
	kiln_buf_release(&dir);
	return error;
}

/* ---- key pairs ---- */

static bool keypair_name_valid(const char *name)
{
	size_t i, len = name ? strlen(name) : 0;
	if (len == 0 || len > 128 || name[0] == '.')
		return false;
	for (i = 0; i < len; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
		      (name[i] >= '0' && name[i] <= '9') || strchr("-_.@:+=,", name[i])))
			return false;
	return true;
}

static bool public_key_valid(const char *k)
{
	size_t len = strlen(k);
	const char *nl = strchr(k, '\n');
	/* one line: a newline may only end it */
	if (len < 20 || len > 16384 || (nl && nl[1] != '\0') || strchr(k, '\r'))
		return false;
	return !strncmp(k, "ssh-ed25519 ", 12) || !strncmp(k, "ssh-rsa ", 8) || !strncmp(k, "ecdsa-sha2-", 11) ||
	       !strncmp(k, "sk-", 3);
}

int kiln_local_keypair_public(kiln_buf *out, const kiln_local *l, const char *name)
{
	kiln_buf p = KILN_BUF_INIT;
	int error;

	if (!keypair_name_valid(name))
		return kiln_error_set(KILN_EINVALID, "key pair name '%s' is not valid", name ? name : "");
	if ((error = kiln_local_path(&p, l, "keys/%s.pub", name)) == 0) {
		kiln_buf_reset(out);
		error = kiln_read_file(out, p.ptr);
		if (error == KILN_ENOTFOUND)
			error = kiln_error_set_cloud(KILN_ENOTFOUND, 400, "InvalidKeyPair.NotFound", NULL,
						     "no key pair '%s'", name);
	}
	kiln_buf_release(&p);
	return error;
}

int kiln_local_keypair_import(kiln_cloud *c, const char *name, const char *public_key,
			      const kiln_tags *tags)
{
	kiln_local *l = KILN_LOCAL(c);
	kiln_buf p = KILN_BUF_INIT, have = KILN_BUF_INIT, key = KILN_BUF_INIT;
	kiln_lock lock = KILN_LOCK_INIT;
	json_t *doc = NULL;
	int error;

	if (!keypair_name_valid(name))
		return kiln_error_set(KILN_EINVALID,
				      "key pair name '%s' must be 1-128 letters, digits or -_.@:+=,",
				      name ? name : "");
	if (!public_key || !public_key_valid(public_key))
		return kiln_error_set(KILN_EINVALID, "key pair '%s': not one OpenSSH public key line", name);
	if ((error = kiln_buf_puts(&key, public_key)) < 0)
		goto done;
	kiln_buf_rtrim(&key);
	kiln_buf_putc(&key, '\n');
	if ((error = kiln_local_path(&p, l, "keys")) < 0 || (error = kiln_mkdir_p(p.ptr, 0700)) < 0 ||
	    (error = kiln_local_path(&p, l, "keys/.lock")) < 0 || (error = kiln_lock_acquire(&lock, p.ptr, 30000)) < 0)
		goto done;
	kiln_buf_init(&have, 64 << 10);
	error = kiln_local_keypair_public(&have, l, name);
	if (error == 0) {
		/* the same name and key again (a retried import): ours, not a conflict */
		if (strcmp(have.ptr, key.ptr))
			error = kiln_error_set_cloud(KILN_ECONFLICT, 400, "InvalidKeyPair.Duplicate", NULL,
						     "key pair '%s' exists already with another key", name);
		goto done;
	}
	if (error != KILN_ENOTFOUND)
		goto done;
	kiln_error_clear();
	doc = json_pack("{s:s,s:I,s:o}", "name", name, "created", (json_int_t)kiln_clock_wall_s(), "tags",
			tags ? kiln_tags_to_json(tags) : json_object());
	if ((error = kiln_local_path(&p, l, "keys/%s.json", name)) < 0 || !doc ||
	    (error = kiln_local_json_save(p.ptr, doc, 0600)) < 0 ||
	    (error = kiln_local_path(&p, l, "keys/%s.pub", name)) < 0 ||
	    (error = kiln_write_file_atomic(p.ptr, key.ptr, key.len, 0600)) < 0)
		goto done;
	kiln_emit(c->events, "resource", KILN_LEVEL_DEBUG,
		  json_pack("{s:s,s:s,s:s}", "kind", "key pair", "id", name, "action", "created"),
		  "imported key pair '%s'", name);
done:
	json_decref(doc);
	kiln_lock_release(&lock);
	kiln_buf_release(&p);
	kiln_buf_release(&have);
	kiln_buf_release(&key);
	return error;
}

int kiln_local_keypair_delete(kiln_cloud *c, const char *name)
{
	kiln_local *l = KILN_LOCAL(c);
	kiln_buf p = KILN_BUF_INIT;
	int error;

	if (!keypair_name_valid(name))
		return kiln_error_set(KILN_EINVALID, "key pair name '%s' is not valid", name ? name : "");
	if ((error = kiln_local_path(&p, l, "keys/%s.pub", name)) == 0 && (error = kiln_remove_tree(p.ptr)) == 0 &&
	    (error = kiln_local_path(&p, l, "keys/%s.json", name)) == 0)
		error = kiln_remove_tree(p.ptr);
	kiln_buf_release(&p);
	return error;
}

/* ---- firewalls ---- */

static int firewall_path(kiln_buf *out, const kiln_local *l, const char *id)
{
	return kiln_local_path(out, l, "firewalls/%s.json", id);
}

int kiln_local_firewall_create(kiln_cloud *c, const kiln_firewall *spec, char out_id[KILN_ID_MAX])
{
	kiln_local *l = KILN_LOCAL(c);
	kiln_buf p = KILN_BUF_INIT;
	kiln_strings files = { 0 };
	kiln_lock lock = KILN_LOCK_INIT;
	json_t *doc = NULL, *cidrs = NULL;
	char id[KILN_ID_MAX];
	size_t i;
	int error;

	if (!spec->name || !*spec->name || strlen(spec->name) > 255)
		return kiln_error_set(KILN_EINVALID, "a firewall needs a name of 1-255 characters");
	if (spec->port < 1 || spec->port > 65535)
		return kiln_error_set(KILN_EINVALID, "firewall '%s': port %d is out of range", spec->name, spec->port);
	if ((error = kiln_local_path(&p, l, "firewalls")) < 0 || (error = kiln_mkdir_p(p.ptr, 0700)) < 0 ||
	    (error = kiln_local_path(&p, l, "firewalls/.lock")) < 0 ||
	    (error = kiln_lock_acquire(&lock, p.ptr, 30000)) < 0 || (error = kiln_local_path(&p, l, "firewalls")) < 0 ||
	    (error = kiln_local_list_dir(&files, p.ptr, ".json")) < 0)
		goto done;
	for (i = 0; i < files.n; i++) {
		json_t *have = NULL;
		kiln_tags tags = KILN_TAGS_INIT;
		bool ours;
		kiln_buf_reset(&p);
		kiln_buf_printf(&p, "%s/firewalls/%s", l->dir, files.items[i]);
		if (kiln_local_json_load(&have, p.ptr) < 0) {
			kiln_error_clear();
			continue;
		}
		if (strcmp(kiln_local_jstr(have, "name"), spec->name)) {
			json_decref(have);
			continue;
		}
		/* the same name with kiln's tags: a retried create, return it */
		kiln_tags_from_json(&tags, json_object_get(have, "tags"));
		ours = kiln_tags_match(&tags, spec->tags);
		if (ours)
			snprintf(out_id, KILN_ID_MAX, "%s", kiln_local_jstr(have, "id"));
		else
			error = kiln_error_set_cloud(KILN_ECONFLICT, 400, "InvalidGroup.Duplicate", NULL,
						     "firewall '%s' exists already ('%s')", spec->name,
						     kiln_local_jstr(have, "id"));
		kiln_tags_release(&tags);
		json_decref(have);
		goto done;
	}
	cidrs = json_array();
	for (i = 0; cidrs && i < spec->n_cidrs; i++)
		json_array_append_new(cidrs, json_string(spec->cidrs[i]));
	if ((error = kiln_local_new_id(id, "sg-")) < 0)
		goto done;
	doc = json_pack("{s:s,s:s,s:s,s:s,s:i,s:O,s:o,s:s,s:I}", "id", id, "name", spec->name, "description",
			spec->description ? spec->description : "", "subnet", spec->subnet_id ? spec->subnet_id : "",
			"port", spec->port, "cidrs", cidrs, "tags",
			spec->tags ? kiln_tags_to_json(spec->tags) : json_object(), "enforced",
			"no: no packet filter here; instances are reachable only from this host", "created",
			(json_int_t)kiln_clock_wall_s());
	if (!doc || (error = firewall_path(&p, l, id)) < 0 || (error = kiln_local_json_save(p.ptr, doc, 0600)) < 0)
		goto done;
	memcpy(out_id, id, KILN_ID_MAX);
done:
	json_decref(doc);
	json_decref(cidrs);
	kiln_lock_release(&lock);
	kiln_strings_release(&files);
	kiln_buf_release(&p);
	return error;
}

/* Instances not terminated that were launched into the firewall. */
static int firewall_users(const kiln_local *l, const char *id, size_t *n)
{
	kiln_strings ids = { 0 };
	size_t i, j;
	int error;

	*n = 0;
	if ((error = kiln_local_instance_ids(&ids, l)) < 0)
		return error;
	for (i = 0; i < ids.n; i++) {
		json_t *doc = NULL, *sg;
		if (kiln_local_instance_load(&doc, l, ids.items[i]) < 0) {
			kiln_error_clear();
			continue;
		}
		if (strcmp(kiln_local_jstr(doc, "state"), "terminated"))
			json_array_foreach(json_object_get(doc, "security_group_ids"), j, sg)
				if (!strcmp(json_string_value(sg) ? json_string_value(sg) : "", id))
					(*n)++;
		json_decref(doc);
	}
	kiln_strings_release(&ids);
	return 0;
}

int kiln_local_firewall_delete(kiln_cloud *c, const char *id, uint64_t timeout_ms)
{
	kiln_local *l = KILN_LOCAL(c);
	uint64_t deadline = kiln_clock_now_ms() + timeout_ms;
	kiln_buf p = KILN_BUF_INIT;
	kiln_backoff bo;
	int error;

	if (!kiln_local_id_valid(id, "sg-"))
		return kiln_error_set(KILN_EINVALID, "'%s' is not a local firewall id", id);
	if ((error = firewall_path(&p, l, id)) < 0)
		goto done;
	kiln_backoff_init(&bo, 250, 5000);
	for (;;) {
		size_t users;
		if (!kiln_path_exists(p.ptr))
			goto done;
		if ((error = firewall_users(l, id, &users)) < 0)
			goto done;
		if (users == 0)
			break;
		/* as EC2's DependencyViolation: an instance still uses it */
		if (kiln_clock_now_ms() >= deadline) {
			error = kiln_error_set_cloud(KILN_EBUSY, 400, "DependencyViolation", NULL,
						     "firewall '%s' is still used by %zu instances", id, users);
			goto done;
		}
		if ((error = kiln_sleep_ms(KILN_MIN(kiln_backoff_next(&bo), deadline - kiln_clock_now_ms()))) < 0)
			goto done;
	}
	error = kiln_remove_tree(p.ptr);
done:
	kiln_buf_release(&p);
	return error;
}

/* ---- tags and resources ---- */

static int tag_file(const char *path, const kiln_tags *tags, const char *id)
{
	json_t *doc = NULL, *have;
	size_t i;
	int error;

	if ((error = kiln_local_json_load(&doc, path)) < 0) {
		if (error == KILN_ENOTFOUND)
			error = kiln_error_set(KILN_ENOTFOUND, "no resource '%s'", id);
		return error;
	}
	if (!json_is_object(have = json_object_get(doc, "tags"))) {
		json_object_set_new(doc, "tags", json_object());
		have = json_object_get(doc, "tags");
	}
	for (i = 0; tags && i < tags->n; i++)
		json_object_set_new(have, tags->items[i].key, json_string(tags->items[i].value));
	error = kiln_local_json_save(path, doc, 0600);
	json_decref(doc);
	return error;
}

int kiln_local_tags_create(kiln_cloud *c, const char *const *ids, size_t n, const kiln_tags *tags)
{
	kiln_local *l = KILN_LOCAL(c);
	kiln_buf p = KILN_BUF_INIT, lockp = KILN_BUF_INIT;
	size_t i;
	int error = 0;

	for (i = 0; i < n && error == 0; i++) {
		kiln_lock lock = KILN_LOCK_INIT;
		const char *id = ids[i];
		if (kiln_local_id_valid(id, "i-")) {
			/* under the instance's lock: its state is written there too */
			if ((error = kiln_local_path(&lockp, l, "instances/%s/lock", id)) == 0 &&
			    (error = kiln_local_path(&p, l, "instances/%s/instance.json", id)) == 0 &&
			    kiln_path_exists(p.ptr) && (error = kiln_lock_acquire(&lock, lockp.ptr, 60000)) == 0)
				error = tag_file(p.ptr, tags, id);
			else if (error == 0)
				error = kiln_error_set(KILN_ENOTFOUND, "no instance '%s'", id);
		} else if (kiln_local_id_valid(id, "img-")) {
			if ((error = kiln_local_path(&lockp, l, "images.lock")) == 0 &&
			    (error = kiln_lock_acquire(&lock, lockp.ptr, 300000)) == 0 &&
			    (error = kiln_local_path(&p, l, "images/%s.json", id)) == 0)
				error = tag_file(p.ptr, tags, id);
		} else if (kiln_local_id_valid(id, "layer-")) {
			if ((error = kiln_local_path(&p, l, "layers/%s.json", id)) == 0)
				error = tag_file(p.ptr, tags, id);
		} else if (kiln_local_id_valid(id, "sg-")) {
			if ((error = kiln_local_path(&lockp, l, "firewalls/.lock")) == 0 &&
			    (error = kiln_lock_acquire(&lock, lockp.ptr, 30000)) == 0 &&
			    (error = kiln_local_path(&p, l, "firewalls/%s.json", id)) == 0)
				error = tag_file(p.ptr, tags, id);
		} else {
			error = kiln_error_set(KILN_ENOTFOUND, "no resource '%s' (not a local id)", id);
		}
		kiln_lock_release(&lock);
	}
	kiln_buf_release(&p);
	kiln_buf_release(&lockp);
	return error;
}

static int add_resource(kiln_resource_list *out, kiln_resource_kind kind, const char *id,
			const char *state, const json_t *tags_json, const kiln_tags *match)
{
	kiln_resource r;
	int error;

	memset(&r, 0, sizeof(r));
	r.kind = kind;
	snprintf(r.id, sizeof(r.id), "%s", id);
	snprintf(r.state, sizeof(r.state), "%s", state ? state : "");
	if ((error = kiln_tags_from_json(&r.tags, tags_json)) == 0 && kiln_tags_match(&r.tags, match))
		error = kiln_resource_list_add(out, &r);
	kiln_tags_release(&r.tags);
	return error;
}

static int find_in_dir(kiln_resource_list *out, const kiln_local *l, const char *dir, kiln_resource_kind kind,
		       const char *id_key, const kiln_tags *match)
{
	kiln_strings files = { 0 };
	kiln_buf p = KILN_BUF_INIT;
	size_t i;
	int error;

	if ((error = kiln_local_path(&p, l, "%s", dir)) < 0 || (error = kiln_local_list_dir(&files, p.ptr, ".json")) < 0)
		goto done;
	for (i = 0; i < files.n && error == 0; i++) {
		json_t *doc = NULL;
		if (kiln_local_path(&p, l, "%s/%s", dir, files.items[i]) < 0 || kiln_local_json_load(&doc, p.ptr) < 0) {
			kiln_error_clear();
			continue;
		}
		if (kind != KILN_RES_IMAGE || !strcmp(kiln_local_jstr(doc, "owner"), "self"))
			error = add_resource(out, kind, kiln_local_jstr(doc, id_key),
					     kind == KILN_RES_IMAGE ? kiln_local_jstr(doc, "state") : "",
					     json_object_get(doc, "tags"), match);
		json_decref(doc);
	}
done:
	kiln_strings_release(&files);
	kiln_buf_release(&p);
	return error;
}

int kiln_local_resources_find(kiln_cloud *c, const kiln_tags *match, kiln_resource_list *out)
{
	kiln_local *l = KILN_LOCAL(c);
	kiln_resource_list list = { 0 };
	kiln_instance_list insts = { 0 };
	kiln_instance_query q = { 0 };
	size_t i;
	int error;

	q.tags = match;
	if ((error = kiln_local_instances_describe(c, &q, &insts)) < 0)
		goto done;
	for (i = 0; i < insts.n && error == 0; i++) {
		kiln_resource r;
		memset(&r, 0, sizeof(r));
		r.kind = KILN_RES_INSTANCE;
		snprintf(r.id, sizeof(r.id), "%s", insts.items[i].id);
		snprintf(r.state, sizeof(r.state), "%s", kiln_instance_state_name(insts.items[i].state));
		if ((error = kiln_tags_copy(&r.tags, &insts.items[i].tags)) == 0)
			error = kiln_resource_list_add(&list, &r);
		kiln_tags_release(&r.tags);
	}
	if (error < 0 || (error = find_in_dir(&list, l, "keys", KILN_RES_KEYPAIR, "name", match)) < 0 ||
	    (error = find_in_dir(&list, l, "firewalls", KILN_RES_FIREWALL, "id", match)) < 0 ||
	    (error = find_in_dir(&list, l, "images", KILN_RES_IMAGE, "id", match)) < 0)
		goto done;
	*out = list;
	memset(&list, 0, sizeof(list));
done:
	kiln_instance_list_release(&insts);
	kiln_resource_list_release(&list);
	return error;
}
