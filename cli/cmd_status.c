#include <getopt.h>

#include "cli/fleet_cli.h"

const char status_summary[] = "show a fleet: instances, images, health, interrupted rollouts";
const char status_usage[] =
	"usage: kiln status FLEET.json [--provider P] [--json]\n"
	"\n"
	"Reads only. Prints the fleet's instances with their image versions and their\n"
	"health in every load balancer, the image it runs and the one a rollback\n"
	"would return to, and any interrupted rollout with the two commands that can\n"
	"settle it.\n"
	"\n"
	"options:\n"
	"  --provider P   aws or local (default: the file's \"provider\", KILN_PROVIDER, aws)\n"
	"  --json         print one JSON object\n"
	"  -v, --verbose  show debug events\n";

static const char *str(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s && *s ? s : "-";
}

static void print_status(const json_t *st)
{
	const json_t *insts = json_object_get(st, "instances"), *lbs = json_object_get(st, "load_balancers");
	const json_t *state = json_object_get(st, "state"), *ro = json_object_get(st, "rollout"), *v, *lb;
	size_t i, l;

	json_int_t stopped = json_integer_value(json_object_get(st, "stopped"));

	printf("fleet '%s' (%s): %zu instance%s (%lld serving", str(st, "fleet"), str(st, "provider"),
	       json_array_size(insts), json_array_size(insts) == 1 ? "" : "s",
	       (long long)json_integer_value(json_object_get(st, "serving")));
	if (stopped)
		printf(", %lld stopped: the next rollout terminates %s", (long long)stopped,
		       stopped == 1 ? "it" : "them");
	printf("), %lld desired\n", (long long)json_integer_value(json_object_get(st, "desired")));
	if (state)
		printf("image: %s; rollback target: %s; last rollout %s: %s\n", str(state, "current_image"),
		       str(state, "previous_image"), str(state, "last_rollout_id"), str(state, "last_result"));
	else
		printf("image: never rolled out by kiln\n");
	json_array_foreach(lbs, l, lb)
		printf("load balancer %s: %lld healthy of %lld targets (drain %llds)\n", str(lb, "name"),
		       (long long)json_integer_value(json_object_get(lb, "healthy")),
		       (long long)json_integer_value(json_object_get(lb, "targets")),
		       (long long)json_integer_value(json_object_get(lb, "drain_timeout_s")));
	if (json_array_size(insts)) {
		printf("\n%-21s %-9s %-12s %-5s %s\n", "INSTANCE", "STATE", "IMAGE", "ROLE", "HEALTH");
		json_array_foreach(insts, i, v) {
			const char *k;
			json_t *h;
			size_t n = 0;
			printf("%-21s %-9s %-12s %-5s ", str(v, "id"), str(v, "state"), str(v, "image"),
			       str(v, "role"));
			json_object_foreach(json_object_get(v, "health"), k, h) {
				const char *reason = json_string_value(json_object_get(h, "reason"));
				printf("%s%s: %s%s%s%s", n++ ? ", " : "", k, str(h, "health"),
				       reason && *reason ? " (" : "", reason ? reason : "", reason && *reason ? ")" : "");
			}
			printf("\n");
		}
	}
	if (ro) {
		const json_t *cmds = json_object_get(ro, "settle");
		bool alive = json_is_true(json_object_get(ro, "alive"));
		printf("\n%s %s %s: %s -> %s, by host %s pid %lld, started %s%s\n",
		       alive ? "rollout in progress:" : "INTERRUPTED", str(ro, "kind"), str(ro, "rollout_id"),
		       str(ro, "from_image"), str(ro, "to_image"), str(ro, "host"),
		       (long long)json_integer_value(json_object_get(ro, "pid")), str(ro, "started_at"),
		       !strcmp(str(ro, "phase"), "restore") ? " (it was restoring the old fleet)" : "");
		if (!alive) {
			printf("  finish it:  %s\n", json_string_value(json_array_get(cmds, 0)));
			printf("  undo it:    %s\n", json_string_value(json_array_get(cmds, 1)));
		} else {
			printf("  its lock expires %s unless renewed\n", str(ro, "expires_at"));
		}
	}
}

int cmd_status(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "provider", required_argument, NULL, 'p' },
		{ "json", no_argument, NULL, 'j' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	fleet_cli fc;
	kiln_rollout_opts ro;
	json_t *st = NULL;
	const char *path;
	int c, rc;

	memset(&fc, 0, sizeof(fc));
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "v", longopts, NULL)) != -1) {
		switch (c) {
		case 'p': fc.opts.provider = optarg; break;
		case 'j': fc.opts.json = true; break;
		case 'v': fc.opts.verbose = true; break;
		default:
			return cli_usage_error("status", "unknown option or missing value: '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return cli_usage_error("status", "which fleet? give FLEET.json");
	path = argv[optind++];
	if (optind < argc)
		return cli_usage_error("status", "unexpected argument '%s'", argv[optind]);

	if ((rc = fleet_cli_open(&fc, path)) != 0)
		goto done;
	memset(&ro, 0, sizeof(ro));
	ro.cloud = fc.cloud;
	ro.fleet = fc.fleet;
	ro.events = &fc.ev;
	if (kiln_rollout_status(&st, &ro) < 0) {
		rc = cli_fail(&fc.opts);
		goto done;
	}
	if (fc.opts.json) {
		fleet_cli_print_json(st);
	} else {
		print_status(st);
		json_decref(st);
	}
	rc = KILN_EXIT_OK;
done:
	fleet_cli_close(&fc);
	return rc;
}
