#include <getopt.h>
#include <unistd.h>

#include "builder/build.h"
#include "builder/template.h"
#include "cli/fleet_cli.h"
#include "core/fs.h"
#include "provisioners/ssh.h"
#include "rollout/lock.h"

const char release_summary[] = "build an image, then roll the fleet onto it";
const char release_usage[] =
	"usage: kiln release FLEET.json --template TEMPLATE.json [--var KEY=VALUE]...\n"
	"                    [--var-file FILE] [--provider aws|local] [--json]\n"
	"\n"
	"The one-command upgrade: 'kiln build TEMPLATE.json', then 'kiln rollout\n"
	"FLEET.json' onto exactly the image that was built. A build that fails changes\n"
	"nothing in the fleet. Both files are read, and the fleet's lock checked, before\n"
	"anything is built. The template must build the fleet's image (its \"name\" is the\n"
	"fleet's \"image\"); both use the fleet's provider and region.\n"
	"\n"
	"options:\n"
	"  --template FILE     the build template (required)\n"
	"  --var KEY=VALUE     set a template variable (repeatable)\n"
	"  --var-file FILE     a JSON object of template variables\n"
	"  --provider P        aws or local (default: the fleet file's, KILN_PROVIDER, aws)\n"
	"  --json              events and the result as JSON lines on stdout\n"
	"  -v, --verbose       show debug events\n"
	"\n"
	"exit codes: as 'kiln build' while building (1 failed, 2 bad input, 4\n"
	"interrupted: the fleet untouched), then as 'kiln rollout' (3 restored, 4\n"
	"interrupted, 5 locked).\n";

/* Bad templates are bad input, whatever failed underneath (as kiln build says). */
static int template_failed(const cli_opts *opts)
{
	const kiln_error *e = kiln_error_last();
	if (e->code != KILN_EINVALID && e->code != KILN_ENOMEM) {
		char msg[sizeof(e->message)];
		snprintf(msg, sizeof(msg), "%s", e->message);
		kiln_error_set(KILN_EINVALID, "%s", msg);
	}
	return cli_fail(opts);
}

/* Nothing is built for a fleet that could not take the rollout anyway. */
static int check_unlocked(fleet_cli *fc)
{
	kiln_fleet_lock held;
	kiln_buf dir = KILN_BUF_INIT;
	char who[1024], host[256] = "";
	bool dead;
	int error = kiln_fleet_lock_get(fc->cloud, fc->fleet->name, &held);
	if (error == KILN_ENOTFOUND)
		return 0;
	if (error < 0)
		return error;
	kiln_fleet_lock_describe(who, sizeof(who), &held);
	gethostname(host, sizeof(host) - 1);
	dead = kiln_fleet_lock_dead(&held, host, kiln_state_dir(&dir) == 0 ? dir.ptr : NULL);
	kiln_buf_release(&dir);
	if (dead)
		error = kiln_error_set(KILN_ECONFLICT,
				       "fleet '%s' has an interrupted rollout (%s): settle it with 'kiln rollout %s --resume' or 'kiln rollback %s' before releasing",
				       fc->fleet->name, who, fc->fleet->path, fc->fleet->path);
	else
		error = kiln_error_set(KILN_EBUSY,
				       "fleet '%s' is locked by %s (if that rollout is dead, settle it with 'kiln rollout %s --resume' or 'kiln rollback %s')",
				       fc->fleet->name, who, fc->fleet->path, fc->fleet->path);
	kiln_fleet_lock_release(&held);
	return error;
}

int cmd_release(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "template", required_argument, NULL, 't' },
		{ "var", required_argument, NULL, 'V' },
		{ "var-file", required_argument, NULL, 'F' },
		{ "provider", required_argument, NULL, 'p' },
		{ "json", no_argument, NULL, 'j' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	fleet_cli fc;
	kiln_template_options topts = KILN_TEMPLATE_OPTIONS_INIT;
	kiln_build_options bopts = KILN_BUILD_OPTIONS_INIT;
	kiln_build_result built;
	kiln_rollout_result res;
	kiln_rollout_opts ro;
	kiln_template *t = NULL;
	kiln_image img;
	const char **vars = NULL, *template_path = NULL, *path;
	bool have_img = false;
	size_t n_vars = 0;
	int c, rc, error;

	memset(&fc, 0, sizeof(fc));
	memset(&res, 0, sizeof(res));
	memset(&img, 0, sizeof(img));
	memset(&built, 0, sizeof(built));
	if (!(vars = calloc((size_t)argc + 1, sizeof(*vars))))
		return KILN_EXIT_FAILED;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "v", longopts, NULL)) != -1) {
		switch (c) {
		case 't': template_path = optarg; break;
		case 'V': vars[n_vars++] = optarg; break;
		case 'F': topts.var_file = optarg; break;
		case 'p': fc.opts.provider = optarg; break;
		case 'j': fc.opts.json = true; break;
		case 'v': fc.opts.verbose = true; break;
		default:
			free(vars);
			return cli_usage_error("release", "unknown option or missing value: '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc) {
		free(vars);
		return cli_usage_error("release", "which fleet? give FLEET.json");
	}
	path = argv[optind++];
	if (optind < argc) {
		free(vars);
		return cli_usage_error("release", "unexpected argument '%s'", argv[optind]);
	}
	if (!template_path) {
		free(vars);
		return cli_usage_error("release", "--template TEMPLATE.json is required");
	}

	/* every check that needs no change, before anything is built */
	if ((rc = fleet_cli_open(&fc, path)) != 0)
		goto done;
	topts.provider = fc.fleet->provider;
	topts.vars = vars;
	topts.n_vars = n_vars;
	if (kiln_template_load(&t, template_path, &topts) < 0) {
		rc = template_failed(&fc.opts);
		goto done;
	}
	if (strcmp(t->name, fc.fleet->image)) {
		kiln_error_set(KILN_EINVALID, "template '%s' builds image '%s', but fleet '%s' runs '%s'",
			       template_path, t->name, fc.fleet->name, fc.fleet->image);
		rc = cli_fail(&fc.opts);
		goto done;
	}
	if (t->region && fc.fleet->region && strcmp(t->region, fc.fleet->region)) {
		kiln_error_set(KILN_EINVALID, "template '%s' builds in region '%s', fleet '%s' runs in '%s'",
			       template_path, t->region, fc.fleet->name, fc.fleet->region);
		rc = cli_fail(&fc.opts);
		goto done;
	}
	if (check_unlocked(&fc) < 0) {
		rc = cli_fail(&fc.opts);
		goto done;
	}

	kiln_step(&fc.ev, "release", "release of fleet '%s': building %s", fc.fleet->name, t->name);
	bopts.comm = &kiln_ssh_communicator;
	bopts.events = &fc.ev;
	if (kiln_build_run(fc.cloud, t, &bopts, &built) < 0) {
		kiln_error_prefix("the build failed, the fleet is untouched");
		rc = cli_fail(&fc.opts);
		goto done;
	}
	kiln_step(&fc.ev, "release", "built %s@%lld (%s); rolling fleet '%s' onto it", t->name,
		  (long long)built.version, built.image_id, fc.fleet->name);
	if (fleet_cli_resolve(&fc, built.image_id, &img) < 0) {
		rc = cli_fail(&fc.opts);
		goto done;
	}
	have_img = true;
	memset(&ro, 0, sizeof(ro));
	ro.cloud = fc.cloud;
	ro.fleet = fc.fleet;
	ro.events = &fc.ev;
	error = kiln_rollout_start(&res, &ro, &img, "rollout");
	rc = fleet_cli_report(&fc, "release", error, &res);
	if (!fc.opts.json && error == 0)
		printf("%s@%lld %s\n", t->name, (long long)built.version, built.image_id);
done:
	if (have_img)
		kiln_image_release(&img);
	kiln_rollout_result_release(&res);
	kiln_template_free(t);
	fleet_cli_close(&fc);
	free(vars);
	return rc;
}
