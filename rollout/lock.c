#include <signal.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/fs.h"
#include "rollout/lock.h"

void kiln_fleet_lock_release(kiln_fleet_lock *lock)
{
	kiln_strings_release(&lock->old_image_ids);
	kiln_strings_release(&lock->subnet_ids);
}

static json_t *strings_json(const kiln_strings *s)
{
	json_t *a = json_array();
	size_t i;
	for (i = 0; a && i < s->n; i++)
		json_array_append_new(a, json_string(s->items[i]));
	return a;
}

json_t *kiln_fleet_lock_to_json(const kiln_fleet_lock *l)
{
	char started[21], expires[21];
	kiln_format_iso8601(started, l->started_ms / 1000);
	kiln_format_iso8601(expires, l->expires_ms / 1000);
	return json_pack("{s:s,s:s,s:s,s:s,s:I,s:s,s:I,s:s,s:I,s:s,s:s,s:s,s:s,s:o,"
			 "s:I,s:I,s:I,s:o,s:s,s:I,s:I,s:s,s:I,s:I,s:s}",
			 "rollout_id", l->rollout_id, "fleet", l->fleet, "kind", l->kind, "host", l->host, "pid",
			 (json_int_t)l->pid, "started_at", started, "started_ms",
			 (json_int_t)l->started_ms, "expires_at", expires, "expires_ms",
			 (json_int_t)l->expires_ms, "from_image_id", l->from_image_id, "from_image",
			 l->from_image, "to_image_id", l->to_image_id, "to_image", l->to_image,
			 "old_image_ids", strings_json(&l->old_image_ids), "desired",
			 (json_int_t)l->desired, "batch_size", (json_int_t)l->batch_size, "old_count",
			 (json_int_t)l->old_count, "subnet_ids", strings_json(&l->subnet_ids), "retire",
			 kiln_retire_name(l->retire), "epoch", (json_int_t)l->epoch, "epoch_batch", (json_int_t)l->epoch_batch, "phase",
			 l->phase == KILN_PHASE_RESTORE ? "restore" : "rollout", "restore_attempt",
			 (json_int_t)l->restore_attempt, "restore_relaunch",
			 (json_int_t)l->restore_relaunch, "reason", l->reason);
}

static void copy_str(char *dst, size_t size, const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	snprintf(dst, size, "%s", s ? s : "");
}

static unsigned get_uint(const json_t *o, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(o, key));
	return v > 0 && v <= UINT32_MAX ? (unsigned)v : 0;
}

static int get_strings(kiln_strings *out, const json_t *o, const char *key)
{
	size_t i;
	json_t *v;
	int error;
	json_array_foreach(json_object_get(o, key), i, v)
		if (json_is_string(v) && (error = kiln_strings_add(out, json_string_value(v))) < 0)
			return error;
	return 0;
}

int kiln_fleet_lock_from_json(kiln_fleet_lock *out, const char *text)
{
	json_t *o = json_loads(text, 0, NULL);
	kiln_fleet_lock l;
	char tmp[32];
	int error;

	memset(&l, 0, sizeof(l));
	if (!json_is_object(o) || !json_is_string(json_object_get(o, "rollout_id"))) {
		json_decref(o);
		return kiln_error_set(KILN_ERROR, "the fleet's lock record is not one kiln wrote");
	}
	copy_str(l.rollout_id, sizeof(l.rollout_id), o, "rollout_id");
	copy_str(l.fleet, sizeof(l.fleet), o, "fleet");
	copy_str(l.kind, sizeof(l.kind), o, "kind");
	copy_str(l.host, sizeof(l.host), o, "host");
	l.pid = (long)json_integer_value(json_object_get(o, "pid"));
	l.started_ms = json_integer_value(json_object_get(o, "started_ms"));
	l.expires_ms = json_integer_value(json_object_get(o, "expires_ms"));
	copy_str(l.from_image_id, sizeof(l.from_image_id), o, "from_image_id");
	copy_str(l.from_image, sizeof(l.from_image), o, "from_image");
	copy_str(l.to_image_id, sizeof(l.to_image_id), o, "to_image_id");
	copy_str(l.to_image, sizeof(l.to_image), o, "to_image");
	l.desired = get_uint(o, "desired");
	l.batch_size = get_uint(o, "batch_size");
	l.old_count = get_uint(o, "old_count");
	copy_str(tmp, sizeof(tmp), o, "retire");
	l.retire = !strcmp(tmp, "per_batch") ? KILN_RETIRE_PER_BATCH : KILN_RETIRE_AT_END;
	l.epoch = get_uint(o, "epoch");
	if (!l.epoch)
		l.epoch = 1;
	l.epoch_batch = get_uint(o, "epoch_batch");
	if (!l.epoch_batch)
		l.epoch_batch = 1;
	copy_str(tmp, sizeof(tmp), o, "phase");
	l.phase = !strcmp(tmp, "restore") ? KILN_PHASE_RESTORE : KILN_PHASE_ROLLOUT;
	l.restore_attempt = get_uint(o, "restore_attempt");
	l.restore_relaunch = get_uint(o, "restore_relaunch");
	copy_str(l.reason, sizeof(l.reason), o, "reason");
	if ((error = get_strings(&l.old_image_ids, o, "old_image_ids")) < 0 ||
	    (error = get_strings(&l.subnet_ids, o, "subnet_ids")) < 0) {
		kiln_fleet_lock_release(&l);
		json_decref(o);
		return error;
	}
	json_decref(o);
	*out = l;
	return 0;
}

int kiln_fleet_lock_get(kiln_cloud *c, const char *fleet, kiln_fleet_lock *out)
{
	char name[KILN_NAME_MAX];
	kiln_record rec = { 0 };
	int error;

	kiln_fleet_lock_record(name, sizeof(name), fleet);
	if ((error = c->ops->record_get(c, name, &rec)) < 0) {
		if (error == KILN_ENOTFOUND)
			kiln_error_clear();
		return error;
	}
	error = kiln_fleet_lock_from_json(out, rec.value);
	kiln_record_release(&rec);
	return error;
}

void kiln_fleet_lock_describe(char *out, size_t size, const kiln_fleet_lock *l)
{
	char started[21];
	kiln_format_iso8601(started, l->started_ms / 1000);
	snprintf(out, size, "host '%s' pid %ld (%s %s, %s -> %s, started %s)", l->host, l->pid,
		 l->kind[0] ? l->kind : "rollout", l->rollout_id,
		 l->from_image[0] ? l->from_image : l->from_image_id[0] ? l->from_image_id : "nothing",
		 l->to_image[0] ? l->to_image : l->to_image_id, started);
}

int kiln_fleet_lock_flock_path(kiln_buf *out, const char *state_dir, const char *fleet,
			       const char *rollout_id)
{
	return kiln_buf_printf(out, "%s/rollouts/%s/%s.lock", state_dir, fleet, rollout_id);
}

bool kiln_fleet_lock_dead(const kiln_fleet_lock *l, const char *host, const char *state_dir)
{
	kiln_buf path = KILN_BUF_INIT;
	bool dead = false;

	if (kiln_clock_wall_ms() >= l->expires_ms)
		return true;
	if (!host || strcmp(host, l->host))
		return false; /* another machine's, still renewed: alive as far as we can tell */
	if (l->pid <= 0 || (kill((pid_t)l->pid, 0) < 0 && errno == ESRCH))
		return true;
	/* the pid lives: is it still the holder, or a reused pid? */
	if (state_dir && l->fleet[0] &&
	    kiln_fleet_lock_flock_path(&path, state_dir, l->fleet, l->rollout_id) == 0 &&
	    kiln_path_exists(path.ptr))
		dead = kiln_lock_is_held(path.ptr, NULL) == 0;
	kiln_buf_release(&path);
	return dead;
}

static void fill_holder(kiln_fleet_lock *l)
{
	l->expires_ms = kiln_clock_wall_ms() + KILN_LOCK_TTL_MS;
}

int kiln_fleet_lock_create(kiln_cloud *c, const char *fleet, kiln_fleet_lock *lock,
			   kiln_fleet_lock *held)
{
	char name[KILN_NAME_MAX], who[1024];
	kiln_fleet_lock cur;
	json_t *o;
	char *text;
	int error;

	kiln_fleet_lock_record(name, sizeof(name), fleet);
	fill_holder(lock);
	if (!(o = kiln_fleet_lock_to_json(lock)) || !(text = json_dumps(o, JSON_COMPACT))) {
		json_decref(o);
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	}
	json_decref(o);
	error = c->ops->record_create(c, name, text);
	free(text);
	if (error != KILN_ECONFLICT)
		return error < 0 ? kiln_error_prefix("cannot take the lock of fleet '%s'", fleet) : 0;
	if ((error = kiln_fleet_lock_get(c, fleet, &cur)) < 0) {
		if (error == KILN_ENOTFOUND)
			return kiln_error_set(KILN_EBUSY,
					      "the lock of fleet '%s' changed hands while taking it; try again",
					      fleet);
		return error;
	}
	kiln_fleet_lock_describe(who, sizeof(who), &cur);
	if (kiln_fleet_lock_dead(&cur, lock->host, NULL))
		error = kiln_error_set(KILN_ECONFLICT,
				       "fleet '%s' has an interrupted rollout: %s is gone; finish it with 'kiln rollout --resume' or undo it with 'kiln rollback'",
				       fleet, who);
	else
		error = kiln_error_set(KILN_EBUSY, "fleet '%s' is locked by another rollout: %s", fleet,
				       who);
	if (held)
		*held = cur;
	else
		kiln_fleet_lock_release(&cur);
	return error;
}

static int put(kiln_cloud *c, const char *fleet, const kiln_fleet_lock *lock)
{
	char name[KILN_NAME_MAX];
	json_t *o = kiln_fleet_lock_to_json(lock);
	char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	int error;

	json_decref(o);
	if (!text)
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	kiln_fleet_lock_record(name, sizeof(name), fleet);
	error = c->ops->record_put(c, name, text);
	free(text);
	return error;
}

static bool same_holder(const kiln_fleet_lock *a, const kiln_fleet_lock *b)
{
	return !strcmp(a->rollout_id, b->rollout_id) && !strcmp(a->host, b->host) && a->pid == b->pid;
}

int kiln_fleet_lock_update(kiln_cloud *c, const char *fleet, kiln_fleet_lock *lock)
{
	kiln_fleet_lock cur;
	char who[1024];
	int error;

	if ((error = kiln_fleet_lock_get(c, fleet, &cur)) < 0) {
		if (error == KILN_ENOTFOUND)
			return kiln_error_set(KILN_EBUSY, "the lock of fleet '%s' was removed by someone else",
					      fleet);
		return error;
	}
	if (!same_holder(&cur, lock)) {
		kiln_fleet_lock_describe(who, sizeof(who), &cur);
		kiln_fleet_lock_release(&cur);
		return kiln_error_set(KILN_EBUSY, "the lock of fleet '%s' was taken over by %s", fleet, who);
	}
	kiln_fleet_lock_release(&cur);
	fill_holder(lock);
	return put(c, fleet, lock);
}

int kiln_fleet_lock_delete(kiln_cloud *c, const char *fleet)
{
	char name[KILN_NAME_MAX];
	kiln_fleet_lock_record(name, sizeof(name), fleet);
	return c->ops->record_delete(c, name);
}

/* "/kiln/fleets/FLEET/takeovers/": the claims, one per dead holder taken over */
static void claims_prefix(char *out, size_t size, const char *fleet)
{
	snprintf(out, size, "/kiln/fleets/%s/takeovers/", fleet);
}

/*
 * A dead holder is named by its rollout, pid and last expiry: every
 * renewal moves the expiry, so a claim names one record, never the next.
 */
static void claim_name(char *out, size_t size, const char *fleet, const kiln_fleet_lock *dead,
		       unsigned attempt)
{
	claims_prefix(out, size, fleet);
	snprintf(out + strlen(out), size - strlen(out), "%s-%lld-%ld-%u", dead->rollout_id,
		 (long long)dead->expires_ms, dead->pid, attempt);
}

/*
 * Claims a dead holder: creates claim 1 of it, or, while the existing ones
 * are stale (their taker died halfway; a take-over takes seconds), the
 * next; each is created only if absent, so one taker wins each attempt.
 * A fresh claim of someone else is KILN_EBUSY naming them.
 */
static int claim(kiln_cloud *c, const char *fleet, const kiln_fleet_lock *dead, const char *host,
		 long pid, char *name, size_t size)
{
	unsigned attempt, tries = 0;
	int error = 0;

	for (attempt = 1; attempt <= KILN_CLAIM_ATTEMPTS && tries++ < 2 * KILN_CLAIM_ATTEMPTS; attempt++) {
		kiln_record rec = { 0 };
		json_t *o, *r = NULL;
		char *text;
		int64_t at;

		claim_name(name, size, fleet, dead, attempt);
		o = json_pack("{s:s,s:I,s:I}", "host", host, "pid", (json_int_t)pid, "claimed_ms",
			      (json_int_t)kiln_clock_wall_ms());
		text = o ? json_dumps(o, JSON_COMPACT) : NULL;
		json_decref(o);
		if (!text)
			return kiln_error_set(KILN_ENOMEM, "out of memory");
		error = c->ops->record_create(c, name, text);
		free(text);
		if (error != KILN_ECONFLICT)
			return error < 0 ? kiln_error_prefix("cannot take over the lock of fleet '%s'", fleet) : 0;
		if ((error = c->ops->record_get(c, name, &rec)) < 0) {
			if (error != KILN_ENOTFOUND)
				return error;
			kiln_error_clear();
			attempt--; /* its taker gave it up: try the same attempt again */
			continue;
		}
		r = json_loads(rec.value, 0, NULL);
		at = json_integer_value(json_object_get(r, "claimed_ms"));
		if (kiln_clock_wall_ms() - at < KILN_CLAIM_TTL_MS) {
			const char *h = json_string_value(json_object_get(r, "host"));
			error = kiln_error_set(KILN_EBUSY,
					       "fleet '%s': its interrupted rollout %s is being taken over by host '%s' pid %lld",
					       fleet, dead->rollout_id, h ? h : "?",
					       (long long)json_integer_value(json_object_get(r, "pid")));
			json_decref(r);
			kiln_record_release(&rec);
			return error;
		}
		json_decref(r);
		kiln_record_release(&rec);
	}
	return kiln_error_set(KILN_EBUSY, "fleet '%s': %d attempts to take over rollout %s were abandoned",
			      fleet, KILN_CLAIM_ATTEMPTS, dead->rollout_id);
}

static bool same_record(const kiln_fleet_lock *a, const kiln_fleet_lock *b)
{
	return same_holder(a, b) && a->expires_ms == b->expires_ms;
}

int kiln_fleet_lock_takeover(kiln_cloud *c, const char *fleet, kiln_fleet_lock *lock,
			     const char *host, long pid, const char *state_dir)
{
	kiln_fleet_lock back, dead;
	char who[1024], claimed[KILN_NAME_MAX + 128];
	int error;

	if (!kiln_fleet_lock_dead(lock, host, state_dir)) {
		kiln_fleet_lock_describe(who, sizeof(who), lock);
		return kiln_error_set(KILN_EBUSY, "fleet '%s' is locked by a live rollout: %s", fleet, who);
	}
	/*
	 * Claim this dead holder first, with a record created only if absent:
	 * of two machines taking it over at once, one creates the claim and the
	 * other backs off. Writing the lock and reading it back alone would let
	 * both win when one reads back before the other writes.
	 */
	if ((error = claim(c, fleet, lock, host, pid, claimed, sizeof(claimed))) < 0)
		return error;
	/* the record judged dead must still be the one there (its holder may have renewed, or ended) */
	if ((error = kiln_fleet_lock_get(c, fleet, &dead)) < 0) {
		c->ops->record_delete(c, claimed);
		return error == KILN_ENOTFOUND ?
			kiln_error_set(KILN_EBUSY, "the lock of fleet '%s' vanished while taking it over", fleet) :
			error;
	}
	if (!same_record(&dead, lock)) {
		kiln_fleet_lock_describe(who, sizeof(who), &dead);
		kiln_fleet_lock_release(&dead);
		c->ops->record_delete(c, claimed);
		return kiln_error_set(KILN_EBUSY, "the lock of fleet '%s' changed while taking it over: %s",
				      fleet, who);
	}
	kiln_fleet_lock_release(&dead);
	snprintf(lock->host, sizeof(lock->host), "%s", host);
	lock->pid = pid;
	fill_holder(lock);
	if ((error = put(c, fleet, lock)) < 0)
		return kiln_error_prefix("cannot take over the lock of fleet '%s'", fleet);
	/* the holder we judged dead, renewing at the last moment, would overwrite us: read back */
	if ((error = kiln_fleet_lock_get(c, fleet, &back)) < 0)
		return error == KILN_ENOTFOUND ?
			kiln_error_set(KILN_EBUSY, "the lock of fleet '%s' vanished while taking it over", fleet) :
			error;
	if (!same_holder(&back, lock)) {
		kiln_fleet_lock_describe(who, sizeof(who), &back);
		kiln_fleet_lock_release(&back);
		return kiln_error_set(KILN_EBUSY, "fleet '%s' was taken over by %s first", fleet, who);
	}
	kiln_fleet_lock_release(&back);
	return 0;
}

void kiln_fleet_lock_claims_delete(kiln_cloud *c, const char *fleet)
{
	kiln_strings names = { 0 };
	char prefix[KILN_NAME_MAX];
	size_t i;

	claims_prefix(prefix, sizeof(prefix), fleet);
	if (c->ops->record_list(c, prefix, &names) == 0)
		for (i = 0; i < names.n; i++)
			c->ops->record_delete(c, names.items[i]);
	kiln_strings_release(&names);
	kiln_error_clear();
}
