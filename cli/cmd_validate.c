#include <getopt.h>

#include "builder/template.h"
#include "cli/cli.h"

const char validate_summary[] = "check a template without touching any cloud";
const char validate_usage[] =
	"usage: kiln validate TEMPLATE.json [--provider aws|local] [--var KEY=VALUE]...\n"
	"                     [--var-file FILE] [--json]\n"
	"\n"
	"Runs every check 'kiln build' runs before its first cloud call: keys and types\n"
	"(with file:line:column), variables, files the provisioners need, CIDRs. Without\n"
	"--provider the template is checked for its own provider and for every provider\n"
	"it has a block for.\n"
	"\n"
	"options:\n"
	"  --provider P      check for this provider only (aws or local)\n"
	"  --var KEY=VALUE   set a template variable (repeatable)\n"
	"  --var-file FILE   a JSON object of variables\n"
	"  --json            print one JSON object\n"
	"\n"
	"exit: 0 valid, 2 not\n";

int cmd_validate(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "provider", required_argument, NULL, 'p' },
		{ "var", required_argument, NULL, 'V' },
		{ "var-file", required_argument, NULL, 'F' },
		{ "json", no_argument, NULL, 'j' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	cli_opts opts = { 0 };
	kiln_template_options topts = KILN_TEMPLATE_OPTIONS_INIT;
	kiln_template *t = NULL, *other = NULL;
	const char **vars = NULL, *checked[2];
	size_t n_vars = 0, n_checked = 0, i;
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
		case 'j': opts.json = true; break;
		case 'v': opts.verbose = true; break;
		default:
			free(vars);
			return cli_usage_error("validate", "unknown or incomplete option '%s'",
					       argv[optind - 1]);
		}
	}
	if (optind + 1 != argc) {
		free(vars);
		return cli_usage_error("validate", optind >= argc ? "which template? kiln validate TEMPLATE.json"
								  : "too many arguments");
	}
	topts.provider = opts.provider;
	topts.vars = vars;
	topts.n_vars = n_vars;
	if (kiln_template_load(&t, argv[optind], &topts) < 0)
		goto bad;
	checked[n_checked++] = t->provider;
	/* one template, two clouds: each block must hold up for its provider */
	if (!opts.provider) {
		const char *others[2] = { t->has_aws_block ? "aws" : NULL,
					  t->has_local_block ? "local" : NULL };
		for (i = 0; i < 2; i++) {
			if (!others[i] || !strcmp(others[i], t->provider))
				continue;
			topts.provider = others[i];
			if (kiln_template_load(&other, argv[optind], &topts) < 0) {
				kiln_error_prefix("for provider %s", others[i]);
				goto bad;
			}
			kiln_template_free(other);
			other = NULL;
			checked[n_checked++] = others[i];
		}
	}
	if (opts.json) {
		json_t *o = json_pack("{s:s,s:s,s:s,s:[],s:I,s:s}", "event", "result", "template",
				      argv[optind], "name", t->name, "providers", "provisioners",
				      (json_int_t)t->n_provisioners, "template_sha256", t->sha256);
		for (i = 0; o && i < n_checked; i++)
			json_array_append_new(json_object_get(o, "providers"), json_string(checked[i]));
		if (o) {
			json_dumpf(o, stdout, JSON_COMPACT);
			fputc('\n', stdout);
			json_decref(o);
		}
	} else {
		printf("%s: ok: image '%s', %zu provisioner%s, checked for %s%s%s\n", argv[optind],
		       t->name, t->n_provisioners, t->n_provisioners == 1 ? "" : "s", checked[0],
		       n_checked > 1 ? " and " : "", n_checked > 1 ? checked[1] : "");
	}
	goto done;
bad:
	/* a template that does not load is bad input, whatever failed underneath */
	if (kiln_error_last()->code != KILN_EINVALID) {
		/* the message lives in the error being replaced: copy it first */
		char msg[sizeof(kiln_error_last()->message)];
		snprintf(msg, sizeof(msg), "%s", kiln_error_last()->message);
		kiln_error_set(KILN_EINVALID, "%s", msg);
	}
	rc = cli_fail(&opts);
done:
	kiln_template_free(t);
	kiln_template_free(other);
	free(vars);
	return rc;
}
