#include "core/clock.h"
#include "core/error.h"
#include "rollout/fleet.h"
#include "rollout/state.h"

void kiln_fleet_state_release(kiln_fleet_state *st)
{
	json_decref(st->history);
	st->history = NULL;
}

static void copy_str(char *dst, size_t size, const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	snprintf(dst, size, "%s", s ? s : "");
}

int kiln_fleet_state_get(kiln_cloud *c, const char *fleet, kiln_fleet_state *out)
{
	char name[KILN_NAME_MAX];
	kiln_record rec = { 0 };
	json_t *o;
	int error;

	memset(out, 0, sizeof(*out));
	kiln_fleet_state_record(name, sizeof(name), fleet);
	if ((error = c->ops->record_get(c, name, &rec)) < 0) {
		if (error != KILN_ENOTFOUND)
			return kiln_error_prefix("cannot read the state of fleet '%s'", fleet);
		kiln_error_clear();
		out->history = json_array();
		return 0;
	}
	o = json_loads(rec.value, 0, NULL);
	kiln_record_release(&rec);
	if (!json_is_object(o)) {
		json_decref(o);
		return kiln_error_set(KILN_ERROR, "the state record of fleet '%s' is not one kiln wrote",
				      fleet);
	}
	out->exists = true;
	copy_str(out->current_image_id, sizeof(out->current_image_id), o, "current_image_id");
	copy_str(out->current_image, sizeof(out->current_image), o, "current_image");
	copy_str(out->previous_image_id, sizeof(out->previous_image_id), o, "previous_image_id");
	copy_str(out->previous_image, sizeof(out->previous_image), o, "previous_image");
	copy_str(out->last_rollout_id, sizeof(out->last_rollout_id), o, "last_rollout_id");
	copy_str(out->last_result, sizeof(out->last_result), o, "last_result");
	out->history = json_incref(json_object_get(o, "history"));
	if (!json_is_array(out->history)) {
		json_decref(out->history);
		out->history = json_array();
	}
	json_decref(o);
	return 0;
}

bool kiln_fleet_state_knows(const kiln_fleet_state *st, const char *rollout_id)
{
	size_t i;
	json_t *e;
	if (!strcmp(st->last_rollout_id, rollout_id))
		return true;
	json_array_foreach(st->history, i, e) {
		const char *id = json_string_value(json_object_get(e, "rollout_id"));
		if (id && !strcmp(id, rollout_id))
			return true;
	}
	return false;
}

int kiln_fleet_state_put(kiln_cloud *c, const char *fleet, const kiln_state_entry *e)
{
	kiln_fleet_state st;
	char name[KILN_NAME_MAX], started[21], finished[21], msg[101];
	json_t *o = NULL, *entry, *hist;
	char *text = NULL;
	int error;

	if ((error = kiln_fleet_state_get(c, fleet, &st)) < 0)
		return error;
	if (!strcmp(e->result, "completed")) {
		if (e->from_image_id && *e->from_image_id && strcmp(e->from_image_id, e->to_image_id)) {
			snprintf(st.previous_image_id, sizeof(st.previous_image_id), "%s", e->from_image_id);
			snprintf(st.previous_image, sizeof(st.previous_image), "%s",
				 e->from_image && *e->from_image ? e->from_image : e->from_image_id);
		}
		snprintf(st.current_image_id, sizeof(st.current_image_id), "%s", e->to_image_id);
		snprintf(st.current_image, sizeof(st.current_image), "%s",
			 e->to_image && *e->to_image ? e->to_image : e->to_image_id);
	} else if (!st.current_image_id[0] && e->from_image_id && *e->from_image_id) {
		/* a fleet kiln never completed a rollout of: it runs what it ran */
		snprintf(st.current_image_id, sizeof(st.current_image_id), "%s", e->from_image_id);
		snprintf(st.current_image, sizeof(st.current_image), "%s",
			 e->from_image && *e->from_image ? e->from_image : e->from_image_id);
	}
	kiln_format_iso8601(started, e->started_ms / 1000);
	kiln_format_iso8601(finished, kiln_clock_wall_s());
	snprintf(msg, sizeof(msg), "%s", e->message ? e->message : "");
	entry = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "rollout_id", e->rollout_id,
			  "kind", e->kind, "result", e->result, "from_image_id",
			  e->from_image_id ? e->from_image_id : "", "to_image_id", e->to_image_id,
			  "to_image", e->to_image ? e->to_image : "", "started_at", started,
			  "finished_at", finished, "message", msg);
	if (!entry) {
		error = kiln_error_set(KILN_ENOMEM, "out of memory");
		goto done;
	}
	hist = json_array();
	json_array_append_new(hist, entry);
	{
		size_t i;
		json_t *h;
		json_array_foreach(st.history, i, h) {
			if (json_array_size(hist) >= KILN_STATE_HISTORY)
				break;
			json_array_append(hist, h);
		}
	}
	o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o}", "fleet", fleet, "current_image_id",
		      st.current_image_id, "current_image", st.current_image, "previous_image_id",
		      st.previous_image_id, "previous_image", st.previous_image, "last_rollout_id",
		      e->rollout_id, "last_result", e->result, "history", hist);
	if (!o || !(text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER))) {
		error = kiln_error_set(KILN_ENOMEM, "out of memory");
		goto done;
	}
	kiln_fleet_state_record(name, sizeof(name), fleet);
	if ((error = c->ops->record_put(c, name, text)) < 0)
		kiln_error_prefix("cannot write the state of fleet '%s'", fleet);
done:
	free(text);
	json_decref(o);
	kiln_fleet_state_release(&st);
	return error;
}
