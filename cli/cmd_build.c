#include <getopt.h>

#include "builder/build.h"
#include "builder/template.h"
#include "cli/cli.h"
#include "core/clock.h"
#include "provisioners/ssh.h"

const char build_summary[] = "build a versioned image from a template";
const char build_usage[] =
	"usage: kiln build TEMPLATE.json [--provider aws|local] [--var KEY=VALUE]...\n"
	"                  [--var-file FILE] [--on-error cleanup|abort] [--manifest PATH] [--json]\n"
	"\n"
	"Launches a temporary instance from the template's source image, provisions it\n"
	"over SSH, snapshots it into the next version of the image (NAME-vVERSION,\n"
	"tagged kiln:*), records it, and removes every temporary resource, also on\n"
	"failure and Ctrl-C. Progress goes to stderr; the last line on stdout is\n"
	"NAME@VERSION IMAGE_ID. After a crash, 'kiln cleanup' removes what was left.\n"
	"\n"
	"options:\n"
	"  --provider P        aws or local (default: the template's, else KILN_PROVIDER, else aws)\n"
	"  --var KEY=VALUE     set a template variable (repeatable; wins over --var-file)\n"
	"  --var-file FILE     a JSON object of variables\n"
	"  --on-error MODE     cleanup (default) or abort: keep the instance after a failure,\n"
	"                      with its key in the state dir, to ssh in and look\n"
	"  --manifest PATH     the Packer-style manifest (default: kiln-manifest.json beside\n"
	"                      the template)\n"
	"  --json              events on stdout, one JSON object a line, the last one\n"
	"                      {\"event\":\"result\",\"name\":...,\"version\":...,\"image_id\":...}\n"
	"  -v, --verbose       show debug events\n"
	"\n"
	"exit: 0 built, 1 failed (temporary resources removed), 2 bad template or usage\n"
	"(nothing created), 4 interrupted (temporary resources removed)\n";

/* A template that does not load is bad input, whatever failed underneath (exit 2). */
static int template_failed(const cli_opts *opts)
{
	const kiln_error *e = kiln_error_last();
	if (e->code != KILN_EINVALID && e->code != KILN_ENOMEM) {
		/* the message lives in the error being replaced: copy it first */
		char msg[sizeof(e->message)];
		snprintf(msg, sizeof(msg), "%s", e->message);
		kiln_error_set(KILN_EINVALID, "%s", msg);
	}
	return cli_fail(opts);
}

int cmd_build(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "provider", required_argument, NULL, 'p' },
		{ "var", required_argument, NULL, 'V' },
		{ "var-file", required_argument, NULL, 'F' },
		{ "on-error", required_argument, NULL, 'e' },
		{ "manifest", required_argument, NULL, 'm' },
		{ "json", no_argument, NULL, 'j' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	cli_opts opts = { 0 };
	kiln_template_options topts = KILN_TEMPLATE_OPTIONS_INIT;
	kiln_build_options bopts = KILN_BUILD_OPTIONS_INIT;
	kiln_build_result res;
	kiln_template *t = NULL;
	kiln_cloud *cloud = NULL;
	kiln_events ev = { 0 };
	const char **vars = NULL;
	const char *path;
	uint64_t t0 = kiln_clock_now_ms();
	size_t n_vars = 0;
	int c, rc = KILN_EXIT_OK;

	if (!(vars = calloc((size_t)argc, sizeof(*vars))))
		return KILN_EXIT_FAILED;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "v", longopts, NULL)) != -1) {
		switch (c) {
		case 'p': opts.provider = optarg; break;
		case 'V': vars[n_vars++] = optarg; break;
		case 'F': topts.var_file = optarg; break;
		case 'm': bopts.manifest_path = optarg; break;
		case 'j': opts.json = true; break;
		case 'v': opts.verbose = true; break;
		case 'e':
			if (!strcmp(optarg, "cleanup"))
				bopts.on_error = KILN_ON_ERROR_CLEANUP;
			else if (!strcmp(optarg, "abort"))
				bopts.on_error = KILN_ON_ERROR_ABORT;
			else {
				free(vars);
				return cli_usage_error("build", "--on-error must be cleanup or abort, not '%s'",
						       optarg);
			}
			break;
		default:
			free(vars);
			return cli_usage_error("build", "unknown or incomplete option '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc) {
		free(vars);
		return cli_usage_error("build", "which template? kiln build TEMPLATE.json");
	}
	if (optind + 1 < argc) {
		free(vars);
		return cli_usage_error("build", "unexpected argument '%s'", argv[optind + 1]);
	}
	path = argv[optind];
	topts.provider = opts.provider;
	topts.vars = vars;
	topts.n_vars = n_vars;

	cli_events_init(&ev, &opts);
	/* every check that needs no cloud, before anything is created */
	if (kiln_template_load(&t, path, &topts) < 0) {
		rc = template_failed(&opts);
		goto done;
	}
	if (cli_cloud_open(&cloud, t->provider, t->region, &ev) < 0) {
		rc = cli_fail(&opts);
		goto done;
	}
	bopts.comm = &kiln_ssh_communicator;
	bopts.events = &ev;
	if (kiln_build_run(cloud, t, &bopts, &res) < 0) {
		if (res.kept && !opts.json) {
			fprintf(stderr,
				"kiln: the build instance %s was kept for debugging (--on-error abort):\n"
				"kiln:   ssh -i %s -p %d %s@%s\n"
				"kiln: remove it, its key pair and its firewall with: kiln cleanup%s%s\n",
				res.kept_instance_id, res.kept_key_path, res.kept_port, res.kept_user,
				res.kept_address, opts.provider ? " --provider " : "",
				opts.provider ? opts.provider : "");
		}
		rc = cli_fail(&opts);
		goto done;
	}
	{
		uint64_t ms = kiln_clock_now_ms() - t0;
		double rate = res.upload_ms ? (double)res.bytes_uploaded / 1048576.0 /
						      ((double)res.upload_ms / 1000.0)
					    : 0;
		json_t *fields = json_pack("{s:s,s:I,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:s,s:s,s:b}", "name",
					   t->name, "version", (json_int_t)res.version, "image_id",
					   res.image_id, "image_name", res.image_name, "source_image",
					   res.source_image_id, "build_id", res.build_id, "duration_ms",
					   (json_int_t)ms, "bytes_uploaded", (json_int_t)res.bytes_uploaded,
					   "upload_ms", (json_int_t)res.upload_ms, "manifest",
					   res.manifest_path, "host_key", res.host_key, "host_key_verified",
					   res.host_key_verified);
		if (res.n_copies) {
			/* ami_regions: REGION -> image id */
			json_t *copies = json_object();
			for (size_t i = 0; i < res.n_copies; i++)
				json_object_set_new(copies, res.copies[i].region,
						    json_string(res.copies[i].image_id));
			json_object_set_new(fields, "copies", copies);
		}
		if (opts.json) {
			kiln_emit(&ev, "result", KILN_LEVEL_INFO, fields, "built %s@%lld", t->name,
				  (long long)res.version);
		} else {
			json_decref(fields);
			fprintf(stderr, "kiln: built %s@%lld (%s) in %.1fs", t->name,
				(long long)res.version, res.image_id, (double)ms / 1000.0);
			if (res.bytes_uploaded >= 1048576)
				fprintf(stderr, "; uploaded %.1f MiB at %.1f MiB/s",
					(double)res.bytes_uploaded / 1048576.0, rate);
			fputc('\n', stderr);
			for (size_t i = 0; i < res.n_copies; i++)
				fprintf(stderr, "kiln: copy in %s: %s\n", res.copies[i].region,
					res.copies[i].image_id);
			/* the line scripts read: last on stdout, TTY or not */
			printf("%s@%lld %s\n", t->name, (long long)res.version, res.image_id);
			fflush(stdout);
		}
	}
done:
	kiln_cloud_free(cloud);
	kiln_template_free(t);
	cli_events_release(&ev);
	free(vars);
	return rc;
}
