/*
 * `kiln images prune NAME --keep N [--dry-run]`: dispatched from
 * cmd_images.c; the rule itself is builder/prune.h (shared with a
 * template's keep_versions).
 */
#include <getopt.h>

#include "builder/prune.h"
#include "cli/cli.h"
#include "core/registry.h"

int cli_images_prune(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "keep", required_argument, NULL, 'k' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "provider", required_argument, NULL, 'p' },
		{ "json", no_argument, NULL, 'j' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	cli_opts opts = { 0 };
	kiln_prune_options po = { 0, false, NULL };
	kiln_prune_result pr;
	kiln_cloud *cloud = NULL;
	kiln_events ev = { 0 };
	const char *name = NULL;
	bool have_keep = false;
	int c, rc = KILN_EXIT_OK;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "nv", longopts, NULL)) != -1) {
		switch (c) {
		case 'k':
			if (kiln_parse_i64(&po.keep, optarg, 1, 100000) < 0)
				return cli_usage_error("images", "--keep must be a number from 1, not '%s'", optarg);
			have_keep = true;
			break;
		case 'n': po.dry_run = true; break;
		case 'p': opts.provider = optarg; break;
		case 'j': opts.json = true; break;
		case 'v': opts.verbose = true; break;
		default:
			return cli_usage_error("images", "unknown or incomplete option '%s'", argv[optind - 1]);
		}
	}
	/* argv[optind] is "prune" itself */
	if (optind + 2 > argc)
		return cli_usage_error("images", "'images prune' needs an image NAME");
	if (optind + 2 < argc)
		return cli_usage_error("images", "unexpected argument '%s'", argv[optind + 2]);
	name = argv[optind + 1];
	if (!kiln_image_name_valid(name))
		return cli_usage_error("images", "'%s' is not an image name", name);
	if (!have_keep)
		return cli_usage_error("images", "'images prune' needs --keep N (the newest N stay)");

	cli_events_init(&ev, &opts);
	po.events = &ev;
	memset(&pr, 0, sizeof(pr));
	if (cli_cloud_open(&cloud, cli_provider_name(&opts, NULL), NULL, &ev) < 0 ||
	    kiln_prune(cloud, name, &po, &pr) < 0) {
		rc = cli_fail(&opts);
		goto done;
	}
	if (opts.json) {
		json_t *ids = json_array();
		size_t i;
		for (i = 0; ids && i < pr.deleted.n; i++)
			json_array_append_new(ids, json_string(pr.deleted.items[i]));
		kiln_emit(&ev, "result", KILN_LEVEL_INFO,
			  json_pack("{s:s,s:b,s:o,s:i,s:i}", "name", name, "dry_run", po.dry_run,
				    "deleted", ids ? ids : json_array(), "kept", (int)pr.kept,
				    "protected", (int)pr.protected_images),
			  "prune done");
	} else {
		fprintf(stderr, "kiln: %s %zu version%s of '%s'; kept %u%s\n",
			po.dry_run ? "would delete" : "deleted", pr.deleted.n,
			pr.deleted.n == 1 ? "" : "s", name, pr.kept,
			pr.protected_images ? " and every one a fleet, rollout or rollback needs" : "");
	}
done:
	kiln_prune_result_release(&pr);
	kiln_cloud_free(cloud);
	cli_events_release(&ev);
	return rc;
}
