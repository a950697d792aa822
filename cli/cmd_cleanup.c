#include <getopt.h>

#include "builder/cleanup.h"
#include "cli/cli.h"

const char cleanup_summary[] = "remove what interrupted builds left behind";
const char cleanup_usage[] =
	"usage: kiln cleanup [--dry-run] [--provider aws|local] [--region R] [--json]\n"
	"\n"
	"Removes the temporary instances, key pairs and firewalls of kiln builds that\n"
	"are no longer running: builds of this machine whose journal (in the state dir)\n"
	"no live process holds, and resources tagged kiln:build-id in the cloud whose\n"
	"kiln:expires-at has passed. A build still running here is never touched; one of\n"
	"another machine only after it expires. Says what it removes.\n"
	"\n"
	"options:\n"
	"  --dry-run       say what would be removed, remove nothing\n"
	"  --provider P    aws or local (default: KILN_PROVIDER, else aws)\n"
	"  --region R      the region to clean (aws; default: the configured one)\n"
	"  --json          events on stdout, one JSON object a line, then a result\n"
	"  -v, --verbose   show debug events\n";

int cmd_cleanup(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "provider", required_argument, NULL, 'p' },
		{ "region", required_argument, NULL, 'r' },
		{ "json", no_argument, NULL, 'j' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	cli_opts opts = { 0 };
	kiln_cleanup_options co = { 0 };
	kiln_cleanup_result res;
	kiln_cloud *cloud = NULL;
	kiln_events ev = { 0 };
	const char *region = NULL;
	int c, rc = KILN_EXIT_OK;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+nv", longopts, NULL)) != -1) {
		switch (c) {
		case 'n': co.dry_run = true; break;
		case 'p': opts.provider = optarg; break;
		case 'r': region = optarg; break;
		case 'j': opts.json = true; break;
		case 'v': opts.verbose = true; break;
		default:
			return cli_usage_error("cleanup", "unknown or incomplete option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return cli_usage_error("cleanup", "unexpected argument '%s'", argv[optind]);

	cli_events_init(&ev, &opts);
	co.events = &ev;
	if (cli_cloud_open(&cloud, cli_provider_name(&opts, NULL), region, &ev) < 0) {
		rc = cli_fail(&opts);
		goto done;
	}
	if (kiln_cleanup_run(cloud, &co, &res) < 0) {
		rc = cli_fail(&opts);
		goto done;
	}
	if (opts.json) {
		kiln_emit(&ev, "result", KILN_LEVEL_INFO,
			  json_pack("{s:b,s:i,s:i,s:i,s:i}", "dry_run", co.dry_run, "builds",
				    (int)res.builds, "removed", (int)res.removed, "running",
				    (int)res.running, "other", (int)res.other),
			  "cleanup done");
	} else if (!res.builds && !res.removed) {
		fprintf(stderr, "kiln: nothing to clean up%s\n",
			res.running ? " (builds still running were left alone)" : "");
	} else {
		fprintf(stderr, "kiln: %s %u resource%s of %u build%s%s\n",
			co.dry_run ? "would remove" : "removed", res.removed, res.removed == 1 ? "" : "s",
			res.builds, res.builds == 1 ? "" : "s",
			res.running ? "; builds still running were left alone" : "");
	}
done:
	kiln_cloud_free(cloud);
	cli_events_release(&ev);
	return rc;
}
