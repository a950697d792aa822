#include "builder/cleanup.h"

#include <dirent.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/registry.h"

#define FIREWALL_DELETE_TIMEOUT_MS (5 * 60 * 1000)

static uint64_t fw_timeout(const kiln_cleanup_options *opts)
{
	return opts && opts->firewall_delete_timeout_ms ? opts->firewall_delete_timeout_ms
							: FIREWALL_DELETE_TIMEOUT_MS;
}

static void say_removed(const kiln_cleanup_options *opts, const char *kind, const char *id,
			const char *build_id)
{
	bool dry = opts && opts->dry_run;
	kiln_emit(opts ? opts->events : NULL, "resource",
		  opts && opts->quiet ? KILN_LEVEL_DEBUG : KILN_LEVEL_INFO,
		  json_pack("{s:s,s:s,s:s,s:s}", "kind", kind, "id", id, "action",
			    dry ? "would-delete" : "deleted", "build_id", build_id),
		  "%s %s %s (build %s)", dry ? "would remove" : "removed", kind, id, build_id);
}

/* Keeps the first error of a best-effort sequence, with its message. */
static void keep_first(int *first, kiln_error *saved, int error)
{
	if (error < 0 && *first == 0) {
		*first = error;
		kiln_error_save(saved);
	}
}

static int build_tag(kiln_tags *tags, const char *build_id)
{
	return kiln_tags_set(tags, KILN_TAG_BUILD_ID, build_id);
}

/* ---- one journal ---- */

static int clean_image(kiln_cloud *c, kiln_journal *j, const kiln_cleanup_options *opts,
		       unsigned *removed)
{
	const char *state = kiln_journal_res(j, "image", "state");
	const char *id = kiln_journal_res(j, "image", "id");
	const char *name = kiln_journal_res(j, "image", "name");
	const char *bid = kiln_journal_str(j, "build_id");
	kiln_image_list found = { 0 };
	kiln_tags mine = KILN_TAGS_INIT;
	size_t i;
	int error = 0;

	/* a recorded image is the build's product, never a leftover */
	if (!state || !strcmp(state, "recorded") || !strcmp(state, "deleted"))
		return 0;
	if (!id || !*id) {
		/* died between asking for it and hearing its id: find it by name and tag */
		const char *self[] = { "self" };
		kiln_image_query q = { .name = name, .owners = self, .n_owners = 1 };
		if (!name)
			return opts && opts->dry_run ? 0 : kiln_journal_res_set(j, "image", "state", "deleted");
		if ((error = build_tag(&mine, bid)) < 0)
			goto done;
		q.tags = &mine;
		if ((error = c->ops->images_describe(c, &q, &found)) < 0)
			goto done;
	}
	for (i = 0; i < (id && *id ? 1 : found.n); i++) {
		const char *x = id && *id ? id : found.items[i].id;
		if (!(opts && opts->dry_run)) {
			error = c->ops->image_delete(c, x);
			if (error == KILN_ENOTFOUND)
				error = 0;
			if (error < 0) {
				kiln_error_prefix("cannot delete image '%s'", x);
				goto done;
			}
		}
		say_removed(opts, "image", x, bid);
		if (removed)
			(*removed)++;
	}
	if (!(opts && opts->dry_run))
		error = kiln_journal_res_set(j, "image", "state", "deleted");
done:
	kiln_image_list_release(&found);
	kiln_tags_release(&mine);
	return error;
}

/*
 * One copy in another region ("copy:REGION" in the journal), not yet
 * recorded: deregistered with its snapshots. Without an id (the build died
 * inside CopyImage) it is looked for by name and kiln:build-id there.
 */
static int clean_copy(kiln_cloud *c, kiln_journal *j, const char *kind,
		      const kiln_cleanup_options *opts, unsigned *removed)
{
	const char *state = kiln_journal_res(j, kind, "state");
	const char *id = kiln_journal_res(j, kind, "id");
	const char *name = kiln_journal_res(j, kind, "name");
	const char *region = kiln_journal_res(j, kind, "region");
	const char *bid = kiln_journal_str(j, "build_id");
	kiln_cloud *rc = NULL;
	kiln_image_list found = { 0 };
	kiln_tags mine = KILN_TAGS_INIT;
	size_t i, n;
	int error = 0;

	if (!state || !strcmp(state, "recorded") || !strcmp(state, "deleted"))
		return 0;
	if (!region || (!(id && *id) && !name))
		return opts && opts->dry_run ? 0 : kiln_journal_res_set(j, kind, "state", "deleted");
	if (!c->ops->region_open)
		return kiln_error_set(KILN_EUNSUPPORTED, "the %s provider cannot reach region '%s'",
				      kiln_cloud_name(c), region);
	if ((error = c->ops->region_open(c, region, &rc)) < 0)
		goto done;
	if (!(id && *id)) {
		const char *self[] = { "self" };
		kiln_image_query q = { .name = name, .owners = self, .n_owners = 1 };
		if ((error = build_tag(&mine, bid)) < 0)
			goto done;
		q.tags = &mine;
		if ((error = rc->ops->images_describe(rc, &q, &found)) < 0)
			goto done;
	}
	n = id && *id ? 1 : found.n;
	for (i = 0; i < n; i++) {
		const char *x = id && *id ? id : found.items[i].id;
		char what[KILN_NAME_MAX];
		if (!(opts && opts->dry_run)) {
			/* a pending copy too: deregistering it stops the copy */
			error = rc->ops->image_delete(rc, x);
			if (error == KILN_ENOTFOUND)
				error = 0;
			if (error < 0) {
				kiln_error_prefix("cannot delete image '%s' in %s", x, region);
				goto done;
			}
		}
		snprintf(what, sizeof(what), "%s in %s", x, region);
		say_removed(opts, "image", what, bid);
		if (removed)
			(*removed)++;
	}
	if (!(opts && opts->dry_run))
		error = kiln_journal_res_set(j, kind, "state", "deleted");
done:
	kiln_cloud_free(rc);
	kiln_image_list_release(&found);
	kiln_tags_release(&mine);
	return error;
}

/* Every copy of the journal, the last one made first. */
static int clean_copies(kiln_cloud *c, kiln_journal *j, const kiln_cleanup_options *opts,
			unsigned *removed)
{
	json_t *all = json_object_get(j->doc, "resources");
	kiln_strings kinds = { 0 };
	const char *k;
	json_t *v;
	size_t i;
	int first = 0, error;
	kiln_error saved;

	/* names first: cleaning edits the object being walked */
	json_object_foreach(all, k, v) {
		if (!strncmp(k, "copy:", 5) && (error = kiln_strings_add(&kinds, k)) < 0) {
			kiln_strings_release(&kinds);
			return error;
		}
	}
	for (i = kinds.n; i-- > 0;)
		keep_first(&first, &saved, clean_copy(c, j, kinds.items[i], opts, removed));
	kiln_strings_release(&kinds);
	if (first < 0)
		kiln_error_restore(&saved);
	return first;
}

static int clean_instance(kiln_cloud *c, kiln_journal *j, const kiln_cleanup_options *opts,
			  unsigned *removed)
{
	const char *state = kiln_journal_res(j, "instance", "state");
	const char *id = kiln_journal_res(j, "instance", "id");
	const char *bid = kiln_journal_str(j, "build_id");
	kiln_instance_list found = { 0 };
	kiln_tags mine = KILN_TAGS_INIT;
	const char **ids = NULL;
	size_t n = 0, i;
	int error = 0;

	if (!state || !strcmp(state, "deleted"))
		return 0;
	if (id && *id) {
		ids = calloc(1, sizeof(*ids));
		if (!ids)
			return kiln_error_set(KILN_ENOMEM, "out of memory");
		ids[n++] = id;
	} else {
		/* launched with the tags, atomically: if it exists, it carries them */
		kiln_instance_query q = { 0 };
		if ((error = build_tag(&mine, bid)) < 0)
			goto done;
		q.tags = &mine;
		if ((error = c->ops->instances_describe(c, &q, &found)) < 0)
			goto done;
		if (found.n && !(ids = calloc(found.n, sizeof(*ids)))) {
			error = kiln_error_set(KILN_ENOMEM, "out of memory");
			goto done;
		}
		for (i = 0; i < found.n; i++)
			ids[n++] = found.items[i].id;
	}
	if (n && !(opts && opts->dry_run)) {
		error = c->ops->instances_terminate(c, ids, n);
		if (error == KILN_ENOTFOUND)
			error = 0; /* gone already */
		if (error < 0) {
			kiln_error_prefix("cannot terminate instance '%s'", ids[0]);
			goto done;
		}
	}
	for (i = 0; i < n; i++) {
		say_removed(opts, "instance", ids[i], bid);
		if (removed)
			(*removed)++;
	}
	if (!(opts && opts->dry_run))
		error = kiln_journal_res_set(j, "instance", "state", "deleted");
done:
	free(ids);
	kiln_instance_list_release(&found);
	kiln_tags_release(&mine);
	return error;
}

static int clean_keypair(kiln_cloud *c, kiln_journal *j, const kiln_cleanup_options *opts,
			 unsigned *removed)
{
	const char *state = kiln_journal_res(j, "keypair", "state");
	const char *name = kiln_journal_res(j, "keypair", "name");
	int error;

	if (!state || !strcmp(state, "deleted") || !name)
		return 0;
	if (!(opts && opts->dry_run)) {
		/* deleting a key pair that never got made succeeds: no lookup needed */
		if ((error = c->ops->keypair_delete(c, name)) < 0 && error != KILN_ENOTFOUND)
			return kiln_error_prefix("cannot delete key pair '%s'", name);
	}
	say_removed(opts, "keypair", name, kiln_journal_str(j, "build_id"));
	if (removed)
		(*removed)++;
	return opts && opts->dry_run ? 0 : kiln_journal_res_set(j, "keypair", "state", "deleted");
}

static int clean_firewall(kiln_cloud *c, kiln_journal *j, const kiln_cleanup_options *opts,
			  unsigned *removed)
{
	const char *state = kiln_journal_res(j, "firewall", "state");
	const char *id = kiln_journal_res(j, "firewall", "id");
	const char *bid = kiln_journal_str(j, "build_id");
	kiln_resource_list found = { 0 };
	kiln_tags mine = KILN_TAGS_INIT;
	size_t i;
	int error = 0;

	if (!state || !strcmp(state, "deleted"))
		return 0;
	if (!id || !*id) {
		if ((error = build_tag(&mine, bid)) < 0 ||
		    (error = c->ops->resources_find(c, &mine, &found)) < 0)
			goto done;
	}
	for (i = 0; i < (id && *id ? 1 : found.n); i++) {
		const char *x = id && *id ? id : found.items[i].id;
		if (!(id && *id) && found.items[i].kind != KILN_RES_FIREWALL)
			continue;
		if (!(opts && opts->dry_run)) {
			/* the provider retries while the cloud still sees the instance using it */
			error = c->ops->firewall_delete(c, x, fw_timeout(opts));
			if (error == KILN_ENOTFOUND)
				error = 0;
			if (error < 0) {
				kiln_error_prefix("cannot delete firewall '%s'", x);
				goto done;
			}
		}
		say_removed(opts, "firewall", x, bid);
		if (removed)
			(*removed)++;
	}
	if (!(opts && opts->dry_run))
		error = kiln_journal_res_set(j, "firewall", "state", "deleted");
done:
	kiln_resource_list_release(&found);
	kiln_tags_release(&mine);
	return error;
}

int kiln_cleanup_journal(kiln_cloud *c, kiln_journal *j, const kiln_cleanup_options *opts,
			 unsigned *removed)
{
	kiln_error saved;
	const char *key_file;
	int first = 0;
	bool dry = opts && opts->dry_run;

	/* waits in here (a group still in use) must run even after a Ctrl-C */
	kiln_cancel_shield_push();
	if (!dry)
		keep_first(&first, &saved, kiln_journal_set_str(j, "state", "cleaning"));
	/* reverse order of creation; each step goes ahead whatever the one before did */
	keep_first(&first, &saved, clean_copies(c, j, opts, removed));
	keep_first(&first, &saved, clean_image(c, j, opts, removed));
	keep_first(&first, &saved, clean_instance(c, j, opts, removed));
	keep_first(&first, &saved, clean_keypair(c, j, opts, removed));
	keep_first(&first, &saved, clean_firewall(c, j, opts, removed));
	kiln_cancel_shield_pop();
	if (first < 0) {
		kiln_error_restore(&saved);
		return first;
	}
	if (dry)
		return 0;
	if ((key_file = kiln_journal_str(j, "key_file")) && unlink(key_file) < 0 && errno != ENOENT)
		return kiln_error_set_os(KILN_ERROR, errno, "cannot remove '%s'", key_file);
	return kiln_journal_remove(j);
}

/* ---- liveness ---- */

static void this_host(char *out, size_t size)
{
	if (gethostname(out, size - 1) < 0)
		snprintf(out, size, "localhost");
	out[size - 1] = '\0';
}

/*
 * Whether the build of j may still be running: on this host its lock
 * says so for certain; for another host's journal, only its expiry.
 */
static bool journal_alive(const kiln_journal *j, const char *dir, const char *host, char *why,
			  size_t why_size)
{
	const char *jhost = kiln_journal_str(j, "host");
	const char *exp = kiln_journal_str(j, "expires_at");
	int64_t expires = 0;

	if (jhost && !strcmp(jhost, host)) {
		char lock[4096];
		pid_t pid = 0;
		snprintf(lock, sizeof(lock), "%s/%s.lock", dir, kiln_journal_str(j, "build_id"));
		if (kiln_lock_is_held(lock, &pid) == 1) {
			snprintf(why, why_size, "is running (pid %ld)", (long)pid);
			return true;
		}
		return false;
	}
	if (!exp || kiln_parse_iso8601(&expires, exp) < 0 || kiln_clock_wall_s() < expires) {
		snprintf(why, why_size, "belongs to host '%s' and may run until %s",
			 jhost ? jhost : "?", exp ? exp : "?");
		return true;
	}
	return false;
}

typedef int (*journal_fn)(void *ctx, kiln_journal *j, const char *dir, const char *path);

/* Calls fn for every journal in the builds dir, in name (= time) order. */
static int each_journal(journal_fn fn, void *ctx)
{
	kiln_buf dir = KILN_BUF_INIT;
	struct dirent **names = NULL;
	int n = 0, i, error;

	if ((error = kiln_journal_dir(&dir)) < 0)
		goto done;
	if ((n = scandir(dir.ptr, &names, NULL, alphasort)) < 0) {
		error = kiln_error_set_os(KILN_ERROR, errno, "cannot list '%s'", dir.ptr);
		n = 0;
		goto done;
	}
	for (i = 0; i < n; i++) {
		const char *e = names[i]->d_name;
		size_t len = strlen(e);
		kiln_journal j = KILN_JOURNAL_INIT;
		char path[4096];
		if (len < 6 || strcmp(e + len - 5, ".json") || e[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir.ptr, e);
		if (kiln_journal_load(&j, path) < 0)
			continue; /* a stray file is not ours to judge */
		error = fn(ctx, &j, dir.ptr, path);
		kiln_journal_release(&j);
		if (error < 0)
			goto done;
	}
	error = 0;
done:
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	kiln_buf_release(&dir);
	return error;
}

/* ---- leftovers at build start ---- */

struct leftovers {
	const kiln_events *events;
	const char *skip;
	char host[256];
	unsigned n;
};

static int leftover_one(void *ctx, kiln_journal *j, const char *dir, const char *path)
{
	struct leftovers *l = ctx;
	const char *bid = kiln_journal_str(j, "build_id");
	char why[512];
	(void)path;

	if (l->skip && !strcmp(bid, l->skip))
		return 0;
	if (journal_alive(j, dir, l->host, why, sizeof(why)))
		return 0;
	l->n++;
	kiln_emit(l->events, "warning", KILN_LEVEL_WARN,
		  json_pack("{s:s,s:s}", "build_id", bid, "kind", "leftover"),
		  "build %s of '%s' (%s, started %s) did not finish cleaning up%s: run 'kiln cleanup'",
		  bid, kiln_journal_str(j, "name") ? kiln_journal_str(j, "name") : "?",
		  kiln_journal_str(j, "provider") ? kiln_journal_str(j, "provider") : "?",
		  kiln_journal_str(j, "started_at") ? kiln_journal_str(j, "started_at") : "?",
		  kiln_journal_str(j, "state") && !strcmp(kiln_journal_str(j, "state"), "kept") ?
			  " (its instance was kept by --on-error abort)" : "");
	return 0;
}

int kiln_cleanup_report_leftovers(const kiln_events *events, const char *skip_build_id,
				  unsigned *out)
{
	struct leftovers l = { events, skip_build_id, "", 0 };
	int error;
	this_host(l.host, sizeof(l.host));
	error = each_journal(leftover_one, &l);
	*out = l.n;
	return error;
}

/* ---- kiln cleanup ---- */

struct run {
	kiln_cloud *c;
	const kiln_cleanup_options *opts;
	kiln_cleanup_result *res;
	char host[256];
	char scope[2 * KILN_ID_MAX];
	kiln_strings seen; /* build ids settled (or left alone) through their journal */
	int first;
	kiln_error saved;
};

static int run_journal(void *ctx, kiln_journal *j, const char *dir, const char *path)
{
	struct run *r = ctx;
	const char *bid = kiln_journal_str(j, "build_id");
	const char *prov = kiln_journal_str(j, "provider"), *region = kiln_journal_str(j, "region");
	char scope[2 * KILN_ID_MAX + 2], why[512];
	kiln_lock lock = KILN_LOCK_INIT;
	unsigned removed = 0;
	int error;
	(void)path;

	snprintf(scope, sizeof(scope), "%s/%s", prov ? prov : "?", region && *region ? region : "-");
	if (strcmp(scope, r->scope)) {
		r->res->other++;
		kiln_info(r->opts->events, "build %s ran on %s, not %s: left for 'kiln cleanup' there",
			  bid, scope, r->scope);
		return kiln_strings_add(&r->seen, bid);
	}
	if ((error = kiln_strings_add(&r->seen, bid)) < 0)
		return error;
	if (journal_alive(j, dir, r->host, why, sizeof(why))) {
		r->res->running++;
		kiln_info(r->opts->events, "leaving build %s of '%s' alone: it %s", bid,
			  kiln_journal_str(j, "name") ? kiln_journal_str(j, "name") : "?", why);
		return 0;
	}
	/*
	 * Hold the build's lock while settling it: a build cannot come back
	 * under its id, a second `kiln cleanup` leaves it to us, and releasing
	 * removes the lock file the dead build left.
	 */
	if (!r->opts->dry_run && kiln_journal_str(j, "host") &&
	    !strcmp(kiln_journal_str(j, "host"), r->host)) {
		char lockp[4096];
		snprintf(lockp, sizeof(lockp), "%s/%s.lock", dir, bid);
		if (kiln_lock_acquire(&lock, lockp, 0) < 0) {
			kiln_error_clear();
			r->res->running++;
			kiln_info(r->opts->events, "leaving build %s alone: its lock was just taken", bid);
			return 0;
		}
	}
	kiln_info(r->opts->events, "%s build %s of '%s' (started %s)",
		  r->opts->dry_run ? "would clean up" : "cleaning up", bid,
		  kiln_journal_str(j, "name") ? kiln_journal_str(j, "name") : "?",
		  kiln_journal_str(j, "started_at") ? kiln_journal_str(j, "started_at") : "?");
	error = kiln_cleanup_journal(r->c, j, r->opts, &removed);
	kiln_lock_release(&lock);
	r->res->builds++;
	r->res->removed += removed;
	if (error == KILN_ENOMEM)
		return error;
	if (error < 0) {
		kiln_emit(r->opts->events, "warning", KILN_LEVEL_WARN, NULL, "build %s: %s", bid,
			  kiln_error_last()->message);
		keep_first(&r->first, &r->saved, error);
	}
	return 0;
}

/* Resources of builds with no journal here, whose expiry has passed. */
static int run_cloud(struct run *r)
{
	kiln_resource_list found = { 0 };
	kiln_tags any = KILN_TAGS_INIT;
	kiln_strings builds = { 0 };
	int64_t now = kiln_clock_wall_s();
	const kiln_resource_kind order[] = { KILN_RES_IMAGE, KILN_RES_INSTANCE, KILN_RES_KEYPAIR,
					     KILN_RES_FIREWALL };
	size_t i, k;
	int error;

	if ((error = kiln_tags_set(&any, KILN_TAG_BUILD_ID, "*")) < 0 ||
	    (error = r->c->ops->resources_find(r->c, &any, &found)) < 0)
		goto done;
	/* instances before the key pairs and groups they use */
	for (k = 0; k < KILN_ARRAY_SIZE(order); k++) {
		for (i = 0; i < found.n; i++) {
			kiln_resource *res = &found.items[i];
			const char *bid = kiln_tags_get(&res->tags, KILN_TAG_BUILD_ID);
			const char *exp = kiln_tags_get(&res->tags, KILN_TAG_EXPIRES_AT);
			const char *kind = kiln_resource_kind_name(res->kind);
			int64_t expires = 0;
			const char *ids[1] = { res->id };

			if (res->kind != order[k] || !bid || kiln_strings_has(&r->seen, bid))
				continue;
			if (res->kind == KILN_RES_IMAGE) {
				/* a product; only a failed one is of no use to anyone */
				if (strcmp(res->state, "failed"))
					continue;
			} else if (!exp || kiln_parse_iso8601(&expires, exp) < 0) {
				continue; /* not a temporary resource of a build */
			} else if (now < expires) {
				if (!kiln_strings_has(&builds, bid)) {
					r->res->running++;
					kiln_info(r->opts->events,
						  "leaving build %s alone: it has no journal here and may run until %s",
						  bid, exp);
					if ((error = kiln_strings_add(&builds, bid)) < 0)
						goto done;
				}
				continue;
			}
			if (res->kind == KILN_RES_INSTANCE && (!strcmp(res->state, "terminated") ||
							       !strcmp(res->state, "shutting-down")))
				continue;
			if (!r->opts->dry_run) {
				switch (res->kind) {
				case KILN_RES_IMAGE: error = r->c->ops->image_delete(r->c, res->id); break;
				case KILN_RES_INSTANCE: error = r->c->ops->instances_terminate(r->c, ids, 1); break;
				case KILN_RES_KEYPAIR: error = r->c->ops->keypair_delete(r->c, res->id); break;
				case KILN_RES_FIREWALL:
					error = r->c->ops->firewall_delete(r->c, res->id, fw_timeout(r->opts));
					break;
				default: error = 0; break;
				}
				if (error == KILN_ENOTFOUND)
					error = 0;
				if (error < 0) {
					kiln_error_prefix("cannot delete %s '%s'", kind, res->id);
					kiln_emit(r->opts->events, "warning", KILN_LEVEL_WARN, NULL, "%s",
						  kiln_error_last()->message);
					keep_first(&r->first, &r->saved, error);
					error = 0;
					continue;
				}
			}
			say_removed(r->opts, kind, res->id, bid);
			r->res->removed++;
			if (!kiln_strings_has(&r->seen, bid) && !kiln_strings_has(&builds, bid)) {
				r->res->builds++;
				if ((error = kiln_strings_add(&builds, bid)) < 0)
					goto done;
			}
		}
	}
done:
	kiln_resource_list_release(&found);
	kiln_tags_release(&any);
	kiln_strings_release(&builds);
	return error;
}

int kiln_cleanup_run(kiln_cloud *c, const kiln_cleanup_options *opts, kiln_cleanup_result *out)
{
	kiln_cleanup_options none = { 0 };
	struct run r;
	int error;

	memset(&r, 0, sizeof(r));
	memset(out, 0, sizeof(*out));
	r.c = c;
	r.opts = opts ? opts : &none;
	r.res = out;
	this_host(r.host, sizeof(r.host));
	kiln_registry_scope(r.scope, sizeof(r.scope), c);
	if ((error = each_journal(run_journal, &r)) < 0)
		goto done;
	if ((error = run_cloud(&r)) < 0)
		goto done;
	if (r.first < 0) {
		kiln_error_restore(&r.saved);
		error = r.first;
	}
done:
	kiln_strings_release(&r.seen);
	return error;
}
