#include <getopt.h>

#include "cli/fleet_cli.h"

const char rollout_summary[] = "roll a fleet onto an image, batch by batch, without downtime";
const char rollout_usage[] =
	"usage: kiln rollout FLEET.json [--image REF] [--dry-run] [--resume] [--provider P] [--json]\n"
	"\n"
	"Launches instances of the image in batches, registers them with the fleet's\n"
	"load balancers, waits until they are healthy in every one, and only then\n"
	"deregisters, drains and retires as many old instances. Healthy registered\n"
	"capacity never drops below the fleet's desired count. If the new instances\n"
	"do not become healthy, the old fleet is restored and the new ones removed\n"
	"(exit 3). Interrupted (Ctrl-C, SIGTERM) it stops launching and leaves the\n"
	"fleet consistent (exit 4); --resume finishes it, 'kiln rollback' undoes it.\n"
	"\n"
	"options:\n"
	"  --image REF    NAME, NAME@N, N (a version of the fleet's image) or an image\n"
	"                 id (default: the newest version of the fleet's image)\n"
	"  --dry-run      print the plan (instances replaced, batches, from and to)\n"
	"                 and change nothing\n"
	"  --resume       finish the fleet's interrupted rollout, from this or any\n"
	"                 other machine (its holder must be gone)\n"
	"  --provider P   aws or local (default: the file's \"provider\", KILN_PROVIDER, aws)\n"
	"  --json         events and the result as JSON lines on stdout\n"
	"  -v, --verbose  show every instance and health change\n"
	"\n"
	"exit codes: 0 done, 1 failed (or the restore failed too), 2 bad input,\n"
	"3 failed and the fleet was restored, 4 interrupted, 5 another rollout holds\n"
	"the fleet's lock.\n";

static void print_plan(const json_t *p)
{
	const json_t *from = json_object_get(p, "from"), *b, *lock;
	size_t i;
	json_t *v;

	printf("fleet '%s' (%s): ", json_string_value(json_object_get(p, "fleet")),
	       json_string_value(json_object_get(p, "provider")));
	if (!json_array_size(from))
		printf("no instances");
	json_array_foreach(from, i, v) {
		json_int_t stopped = json_integer_value(json_object_get(v, "stopped"));
		printf("%s%s x%lld", i ? " + " : "", json_string_value(json_object_get(v, "image")),
		       (long long)json_integer_value(json_object_get(v, "count")));
		if (stopped)
			printf(" (+%lld stopped)", (long long)stopped);
	}
	printf(" -> %s x%lld\n", json_string_value(json_object_get(p, "to_image")),
	       (long long)json_integer_value(json_object_get(p, "desired")));
	if (json_is_true(json_object_get(p, "nothing_to_do"))) {
		printf("nothing to do: the fleet already runs it, healthy\n");
		return;
	}
	printf("batches of up to %lld, retire %s\n",
	       (long long)json_integer_value(json_object_get(p, "batch_size")),
	       json_string_value(json_object_get(p, "retire")));
	json_array_foreach(json_object_get(p, "batches"), i, b) {
		const char *k;
		json_t *n, *id;
		size_t j;
		printf("  batch %lld: launch %lld (", (long long)json_integer_value(json_object_get(b, "number")),
		       (long long)json_integer_value(json_object_get(b, "launch")));
		j = 0;
		json_object_foreach(json_object_get(b, "subnets"), k, n)
			printf("%s%s %lld", j++ ? ", " : "", k, (long long)json_integer_value(n));
		printf(")");
		if (json_integer_value(json_object_get(b, "retire"))) {
			printf(", then retire %lld:", (long long)json_integer_value(json_object_get(b, "retire")));
			json_array_foreach(json_object_get(b, "deregisters"), j, id)
				printf(" %s", json_string_value(id));
		}
		printf("\n");
	}
	if (json_array_size(json_object_get(p, "stopped"))) {
		printf("  then terminate %zu stopped instance%s (they serve nothing):",
		       json_array_size(json_object_get(p, "stopped")),
		       json_array_size(json_object_get(p, "stopped")) == 1 ? "" : "s");
		json_array_foreach(json_object_get(p, "stopped"), i, v)
			printf(" %s", json_string_value(v));
		printf("\n");
	}
	if ((lock = json_object_get(p, "lock")))
		printf("note: the fleet is locked by rollout %s (host %s, %s); a rollout now would be refused\n",
		       json_string_value(json_object_get(lock, "rollout_id")),
		       json_string_value(json_object_get(lock, "host")),
		       json_is_true(json_object_get(lock, "alive")) ? "running" : "gone: resume or roll back first");
}

int cmd_rollout(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "image", required_argument, NULL, 'i' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "resume", no_argument, NULL, 'r' },
		{ "provider", required_argument, NULL, 'p' },
		{ "json", no_argument, NULL, 'j' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	fleet_cli fc;
	kiln_rollout_result res;
	kiln_rollout_opts ro;
	kiln_image img;
	const char *image = NULL, *path;
	bool dry = false, resume = false, have_img = false;
	int c, rc, error;

	memset(&fc, 0, sizeof(fc));
	memset(&res, 0, sizeof(res));
	memset(&img, 0, sizeof(img));
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "v", longopts, NULL)) != -1) {
		switch (c) {
		case 'i': image = optarg; break;
		case 'n': dry = true; break;
		case 'r': resume = true; break;
		case 'p': fc.opts.provider = optarg; break;
		case 'j': fc.opts.json = true; break;
		case 'v': fc.opts.verbose = true; break;
		default:
			return cli_usage_error("rollout", "unknown option or missing value: '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return cli_usage_error("rollout", "which fleet? give FLEET.json");
	path = argv[optind++];
	if (optind < argc)
		return cli_usage_error("rollout", "unexpected argument '%s'", argv[optind]);
	if (resume && (image || dry))
		return cli_usage_error("rollout", "--resume finishes the interrupted rollout as planned: no --image or --dry-run");

	if ((rc = fleet_cli_open(&fc, path)) != 0)
		goto done;
	memset(&ro, 0, sizeof(ro));
	ro.cloud = fc.cloud;
	ro.fleet = fc.fleet;
	ro.events = &fc.ev;
	if (resume) {
		error = kiln_rollout_resume(&res, &ro);
		rc = fleet_cli_report(&fc, "rollout", error, &res);
		goto done;
	}
	if (fleet_cli_resolve(&fc, image, &img) < 0) {
		rc = cli_fail(&fc.opts);
		goto done;
	}
	have_img = true;
	if (dry) {
		json_t *plan = NULL;
		if (kiln_rollout_dry_run(&plan, &ro, &img) < 0) {
			rc = cli_fail(&fc.opts);
			goto done;
		}
		if (fc.opts.json)
			json_object_set_new(plan, "event", json_string("plan"));
		if (fc.opts.json)
			fleet_cli_print_json(plan);
		else {
			print_plan(plan);
			json_decref(plan);
		}
		rc = KILN_EXIT_OK;
		goto done;
	}
	error = kiln_rollout_start(&res, &ro, &img, "rollout");
	rc = fleet_cli_report(&fc, "rollout", error, &res);
done:
	if (have_img)
		kiln_image_release(&img);
	kiln_rollout_result_release(&res);
	fleet_cli_close(&fc);
	return rc;
}
