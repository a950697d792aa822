/*
 * event.h: what engines say while they work.
 *
 * Nothing below cli/ prints. Engines, providers and provisioners report
 * progress by emitting events to a sink the CLI gives them; the CLI renders
 * them as human progress lines on stderr, or with --json as one JSON object
 * a line on stdout: {"event":NAME,"time":...,"level":...,"message":...,
 * plus the event's fields}.
 *
 * Event names in use (fields in brackets), so renderers and tests agree:
 *   step      a phase begins or ends           [phase]
 *   info      something worth a line           []
 *   warning   something the user should see    []
 *   output    a line from a remote command     [stream, line, provisioner]
 *   resource  created or removed something     [kind, id, action]
 *   instance  an instance changed state        [id, state]
 *   health    a target's health changed        [id, lb, health, reason]
 *   result    the command's outcome, last      [command-specific]
 */
#ifndef KILN_EVENT_H
#define KILN_EVENT_H

#include <jansson.h>

#include "core/common.h"

typedef enum kiln_level {
	KILN_LEVEL_DEBUG,
	KILN_LEVEL_INFO,
	KILN_LEVEL_WARN,
	KILN_LEVEL_ERROR,
} kiln_level;

typedef struct kiln_event {
	const char *name;
	kiln_level level;
	const char *message; /* one line, no newline */
	json_t *fields;      /* an object; borrowed for the call */
} kiln_event;

typedef struct kiln_events {
	void (*emit)(void *ctx, const kiln_event *ev);
	void *ctx;
} kiln_events;

/*
 * Emits to sink (NULL sink: dropped). fields is stolen (NULL: none); the
 * message is formatted. Safe to call from any module.
 */
void kiln_emit(const kiln_events *sink, const char *name, kiln_level level, json_t *fields,
	       const char *fmt, ...) KILN_PRINTF(5, 6);

/* Shorthands for the common cases. */
#define kiln_info(sink, ...) kiln_emit((sink), "info", KILN_LEVEL_INFO, NULL, __VA_ARGS__)
#define kiln_warn(sink, ...) kiln_emit((sink), "warning", KILN_LEVEL_WARN, NULL, __VA_ARGS__)
#define kiln_step(sink, phase, ...) \
	kiln_emit((sink), "step", KILN_LEVEL_INFO, json_pack("{s:s}", "phase", (phase)), __VA_ARGS__)

/* The JSON form of an event (a new reference), as --json prints it. */
json_t *kiln_event_to_json(const kiln_event *ev, int64_t wall_ms);

const char *kiln_level_name(kiln_level level);

#endif
