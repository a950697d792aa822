#include "core/clock.h"
#include "core/event.h"

void kiln_emit(const kiln_events *sink, const char *name, kiln_level level, json_t *fields,
	       const char *fmt, ...)
{
	char msg[2048];
	kiln_event ev;
	va_list ap;

	if (!sink || !sink->emit) {
		json_decref(fields);
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ev.name = name;
	ev.level = level;
	ev.message = msg;
	ev.fields = fields;
	sink->emit(sink->ctx, &ev);
	json_decref(fields);
}

const char *kiln_level_name(kiln_level level)
{
	switch (level) {
	case KILN_LEVEL_DEBUG: return "debug";
	case KILN_LEVEL_INFO: return "info";
	case KILN_LEVEL_WARN: return "warning";
	case KILN_LEVEL_ERROR: return "error";
	}
	return "info";
}

json_t *kiln_event_to_json(const kiln_event *ev, int64_t wall_ms)
{
	char when[21], stamp[32];
	json_t *o = json_object();

	if (!o)
		return NULL;
	kiln_format_iso8601(when, wall_ms / 1000);
	/* millisecond resolution: "2026-11-25T21:37:44.123Z" */
	snprintf(stamp, sizeof(stamp), "%.19s.%03dZ", when, (int)(wall_ms % 1000));
	json_object_set_new(o, "event", json_string(ev->name));
	json_object_set_new(o, "time", json_string(stamp));
	json_object_set_new(o, "level", json_string(kiln_level_name(ev->level)));
	if (ev->message && *ev->message)
		json_object_set_new(o, "message", json_string(ev->message));
	if (ev->fields)
		json_object_update_missing(o, ev->fields);
	return o;
}
