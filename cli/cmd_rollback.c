#include <getopt.h>

#include "cli/fleet_cli.h"

const char rollback_summary[] = "roll a fleet back to the image it ran before";
const char rollback_usage[] =
	"usage: kiln rollback FLEET.json [--to N | --to REF] [--provider P] [--json]\n"
	"\n"
	"If the fleet has an interrupted rollout (its holder gone), undoes it: the old\n"
	"instances are re-registered (or the old image relaunched), and once they are\n"
	"healthy the new ones are drained and terminated. Otherwise rolls the fleet,\n"
	"with the same safety as 'kiln rollout', onto the image it ran before its\n"
	"last completed rollout, or onto the one --to names.\n"
	"\n"
	"options:\n"
	"  --to N         version N of the fleet's image\n"
	"  --to REF       NAME, NAME@N or an image id\n"
	"  --provider P   aws or local (default: the file's \"provider\", KILN_PROVIDER, aws)\n"
	"  --json         events and the result as JSON lines on stdout\n"
	"  -v, --verbose  show every instance and health change\n"
	"\n"
	"exit codes: as 'kiln rollout' (see 'kiln help rollout').\n";

int cmd_rollback(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "to", required_argument, NULL, 't' },
		{ "provider", required_argument, NULL, 'p' },
		{ "json", no_argument, NULL, 'j' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	fleet_cli fc;
	kiln_rollout_result res;
	kiln_rollout_opts ro;
	kiln_image img;
	const char *to = NULL, *path;
	bool have_img = false;
	int c, rc, error;

	memset(&fc, 0, sizeof(fc));
	memset(&res, 0, sizeof(res));
	memset(&img, 0, sizeof(img));
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "v", longopts, NULL)) != -1) {
		switch (c) {
		case 't': to = optarg; break;
		case 'p': fc.opts.provider = optarg; break;
		case 'j': fc.opts.json = true; break;
		case 'v': fc.opts.verbose = true; break;
		default:
			return cli_usage_error("rollback", "unknown option or missing value: '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return cli_usage_error("rollback", "which fleet? give FLEET.json");
	path = argv[optind++];
	if (optind < argc)
		return cli_usage_error("rollback", "unexpected argument '%s'", argv[optind]);

	if ((rc = fleet_cli_open(&fc, path)) != 0)
		goto done;
	if (to) {
		if (fleet_cli_resolve(&fc, to, &img) < 0) {
			rc = cli_fail(&fc.opts);
			goto done;
		}
		have_img = true;
	}
	memset(&ro, 0, sizeof(ro));
	ro.cloud = fc.cloud;
	ro.fleet = fc.fleet;
	ro.events = &fc.ev;
	error = kiln_rollout_rollback(&res, &ro, have_img ? &img : NULL);
	rc = fleet_cli_report(&fc, "rollback", error, &res);
done:
	if (have_img)
		kiln_image_release(&img);
	kiln_rollout_result_release(&res);
	fleet_cli_close(&fc);
	return rc;
}
