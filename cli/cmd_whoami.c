#include <getopt.h>

#include "cli/cli.h"

const char whoami_summary[] = "show the account, identity and endpoint kiln would use";
const char whoami_usage[] =
	"usage: kiln whoami [--provider aws|local] [--json]\n"
	"\n"
	"Asks the provider who the configured credentials belong to (on aws: STS\n"
	"GetCallerIdentity, which needs no permission) and prints the account, ARN,\n"
	"user id, region, endpoint and where the credentials came from.\n"
	"\n"
	"options:\n"
	"  --provider P   aws or local (default: KILN_PROVIDER, else aws)\n"
	"  --json         print one JSON object\n"
	"  -v, --verbose  show debug events (retries)\n";

int cmd_whoami(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "provider", required_argument, NULL, 'p' },
		{ "json", no_argument, NULL, 'j' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	cli_opts opts = { 0 };
	kiln_events ev;
	kiln_cloud *cloud = NULL;
	kiln_identity id;
	int c, rc = KILN_EXIT_OK;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+v", longopts, NULL)) != -1) {
		switch (c) {
		case 'p': opts.provider = optarg; break;
		case 'j': opts.json = true; break;
		case 'v': opts.verbose = true; break;
		default:
			return cli_usage_error("whoami", "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return cli_usage_error("whoami", "unexpected argument '%s'", argv[optind]);

	cli_events_init(&ev, &opts);
	if (cli_cloud_open(&cloud, cli_provider_name(&opts, NULL), NULL, &ev) < 0 ||
	    cloud->ops->whoami(cloud, &id) < 0) {
		rc = cli_fail(&opts);
		goto done;
	}
	if (opts.json) {
		json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "provider", kiln_cloud_name(cloud),
				      "account", id.account, "arn", id.arn, "user_id", id.user_id,
				      "region", id.region, "endpoint", id.endpoint, "credential_source",
				      id.credential_source);
		if (o) {
			json_dumpf(o, stdout, JSON_COMPACT);
			fputc('\n', stdout);
			json_decref(o);
		}
	} else {
		printf("provider     %s\n", kiln_cloud_name(cloud));
		printf("account      %s\n", id.account);
		printf("arn          %s\n", id.arn);
		printf("user id      %s\n", id.user_id);
		printf("region       %s\n", id.region);
		printf("endpoint     %s\n", id.endpoint);
		printf("credentials  %s\n", id.credential_source);
	}
done:
	kiln_cloud_free(cloud);
	cli_events_release(&ev);
	return rc;
}
