#include "cli/fleet_cli.h"
#include "core/registry.h"

void fleet_cli_print_json(json_t *v)
{
	if (!v)
		return;
	json_dumpf(v, stdout, JSON_COMPACT);
	fputc('\n', stdout);
	fflush(stdout);
	json_decref(v);
}

int fleet_cli_open(fleet_cli *fc, const char *path)
{
	cli_events_init(&fc->ev, &fc->opts);
	fc->ev_open = true;
	if (kiln_fleet_load(&fc->fleet, path, fc->opts.provider) < 0)
		return cli_fail(&fc->opts);
	if (cli_cloud_open(&fc->cloud, fc->fleet->provider, fc->fleet->region, &fc->ev) < 0)
		return cli_fail(&fc->opts);
	return 0;
}

void fleet_cli_close(fleet_cli *fc)
{
	kiln_cloud_free(fc->cloud);
	fc->cloud = NULL;
	kiln_fleet_free(fc->fleet);
	fc->fleet = NULL;
	if (fc->ev_open)
		cli_events_release(&fc->ev);
	fc->ev_open = false;
}

int fleet_cli_resolve(fleet_cli *fc, const char *text, kiln_image *out)
{
	kiln_image_ref ref;
	int64_t v;
	int error;

	if (!text) {
		error = kiln_image_ref_parse(&ref, fc->fleet->image);
	} else if (kiln_parse_i64(&v, text, 1, INT32_MAX) == 0) {
		/* a bare version: of the fleet's own image */
		error = kiln_image_ref_parse(&ref, fc->fleet->image);
		ref.version = v;
	} else {
		error = kiln_image_ref_parse(&ref, text);
	}
	if (error < 0)
		return error;
	if (!ref.id[0] && strcmp(ref.name, fc->fleet->image))
		kiln_warn(&fc->ev, "image '%s' is not the fleet's image '%s'", ref.name, fc->fleet->image);
	return kiln_registry_resolve(fc->cloud, &ref, out);
}

int fleet_cli_report(fleet_cli *fc, const char *command, int error, const kiln_rollout_result *res)
{
	static const char *const outcomes[] = {
		[KILN_ROLLOUT_DONE] = "done",
		[KILN_ROLLOUT_NOTHING] = "nothing to do",
		[KILN_ROLLOUT_RESTORED] = "restored",
		[KILN_ROLLOUT_RESTORE_FAILED] = "restore failed",
		[KILN_ROLLOUT_INTERRUPTED] = "interrupted",
		[KILN_ROLLOUT_FAILED] = "failed",
	};
	const kiln_error *e = kiln_error_last();
	int code = kiln_rollout_exit_code(error, res);
	const char *outcome = outcomes[res->outcome];

	if (error < 0) {
		fprintf(stderr, "kiln: error: %s\n", e->message[0] ? e->message : "unknown error");
		if (res->console_tail) {
			const char *p = res->console_tail;
			fprintf(stderr, "kiln: console output of %s ends:\n", res->failed_instance);
			while (*p) {
				size_t n = strcspn(p, "\n");
				fprintf(stderr, "    %.*s\n", (int)n, p);
				p += n + (p[n] == '\n');
			}
		}
		if (res->outcome == KILN_ROLLOUT_RESTORE_FAILED)
			fprintf(stderr, "kiln: hint: 'kiln status %s' shows what serves; roll out a fixed image, or 'kiln rollback %s --to N'\n",
				fc->fleet->path, fc->fleet->path);
	}
	if (fc->opts.json) {
		json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:i,s:I,s:I,s:I,s:I}", "event",
				      error < 0 ? "error" : "result", "command", command, "outcome", outcome,
				      "rollout_id", res->rollout_id, "exit_code", code, "batches_done",
				      (json_int_t)res->batches_done, "launched", (json_int_t)res->launched,
				      "terminated", (json_int_t)res->terminated, "poll_rounds",
				      (json_int_t)res->poll_rounds);
		if (o && error < 0) {
			json_object_set_new(o, "message", json_string(e->message));
			json_object_set_new(o, "kind", json_string(kiln_error_name(e->code)));
			if (e->cloud_code[0])
				json_object_set_new(o, "cloud_code", json_string(e->cloud_code));
		}
		if (o && res->failed_instance[0])
			json_object_set_new(o, "failed",
					    json_pack("{s:s,s:s,s:s,s:s?}", "instance", res->failed_instance,
						      "health", res->failed_health, "reason", res->failed_reason,
						      "console", res->console_tail));
		if (o && res->kept.n) {
			json_t *a = json_array();
			size_t i;
			for (i = 0; a && i < res->kept.n; i++)
				json_array_append_new(a, json_string(res->kept.items[i]));
			json_object_set_new(o, "kept", a);
		}
		fleet_cli_print_json(o);
	}
	return code;
}
