#include <getopt.h>

#include "cli/cli.h"
#include "core/clock.h"
#include "core/registry.h"

const char images_summary[] = "list, show and prune the images kiln built";
const char images_usage[] =
	"usage: kiln images list [NAME] [--provider P] [--json]\n"
	"   or: kiln images show NAME[@VERSION]|ID [--provider P] [--json]\n"
	"   or: kiln images prune NAME --keep N [--dry-run] [--provider P] [--json]\n"
	"\n"
	"list: the images kiln built (those tagged kiln:image and kiln:version), by\n"
	"name, newest version first; with NAME only that image's versions. --json\n"
	"prints a JSON array.\n"
	"show: one image: NAME is its newest available version, NAME@N version N,\n"
	"or a provider image id (ami-..., img-...). --json prints a JSON object.\n"
	"prune: deletes older versions of NAME with their snapshots, keeping the newest\n"
	"N available ones, any still pending, and every image a fleet runs, a rollout\n"
	"record or lock names, or a fleet would roll back to. --dry-run only says which.\n"
	"\n"
	"options:\n"
	"  --provider P   aws or local (default: KILN_PROVIDER, else aws)\n"
	"  --json         JSON on stdout instead of a table\n"
	"  -v, --verbose  show debug events (retries)\n";

/* Parses the common options; positional arguments are left in argv[optind..]. */
static int parse(int argc, char **argv, cli_opts *opts)
{
	static const struct option longopts[] = {
		{ "provider", required_argument, NULL, 'p' },
		{ "json", no_argument, NULL, 'j' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	opterr = 0;
	optind = 1;
	/* no '+': options may follow the positional arguments ("images list web --json") */
	while ((c = getopt_long(argc, argv, "v", longopts, NULL)) != -1) {
		switch (c) {
		case 'p': opts->provider = optarg; break;
		case 'j': opts->json = true; break;
		case 'v': opts->verbose = true; break;
		default:
			return cli_usage_error("images", "unknown option '%s'", argv[optind - 1]);
		}
	}
	return 0;
}

static json_t *image_json(const kiln_image *img)
{
	json_t *snaps = json_array();
	char created[21] = "";
	size_t i;

	for (i = 0; snaps && i < img->snapshots.n; i++)
		json_array_append_new(snaps, json_string(img->snapshots.items[i]));
	if (img->created)
		kiln_format_iso8601(created, img->created);
	return json_pack("{s:s,s:I,s:s,s:s,s:s,s:s,s:s,s:I,s:o,s:o}", "name", kiln_image_kiln_name(img),
			 "version", (json_int_t)kiln_image_version(img), "id", img->id, "image_name",
			 img->name, "state", kiln_image_state_name(img->state), "created", created,
			 "owner", img->owner, "size_bytes", (json_int_t)img->size_bytes, "snapshots",
			 snaps ? snaps : json_array(), "tags", kiln_tags_to_json(&img->tags));
}

static void print_json(json_t *v)
{
	if (!v)
		return;
	json_dumpf(v, stdout, JSON_COMPACT);
	fputc('\n', stdout);
	json_decref(v);
}

/* The cache is a record, not a dependency: failing to write it only warns. */
static void cache(kiln_cloud *cloud, const kiln_image_list *list, const kiln_events *ev)
{
	char scope[2 * KILN_ID_MAX];
	if (!list->n)
		return;
	kiln_registry_scope(scope, sizeof(scope), cloud);
	if (kiln_registry_cache_put(scope, list) < 0)
		kiln_warn(ev, "cannot update the local image registry: %s", kiln_error_last()->message);
}

static int images_list(cli_opts *opts, kiln_cloud *cloud, const char *name, const kiln_events *ev)
{
	kiln_image_list list = { 0 };
	size_t i;

	if (kiln_registry_list(cloud, name, &list) < 0)
		return cli_fail(opts);
	cache(cloud, &list, ev);
	if (opts->json) {
		json_t *arr = json_array();
		for (i = 0; arr && i < list.n; i++)
			json_array_append_new(arr, image_json(&list.items[i]));
		print_json(arr);
	} else if (!list.n) {
		fprintf(stderr, name ? "kiln: no image named '%s' (build one with 'kiln build')\n"
				     : "kiln: no images built by kiln yet%s\n",
			name ? name : "");
	} else {
		printf("%-24s %7s  %-21s  %-10s  %s\n", "NAME", "VERSION", "ID", "STATE", "CREATED");
		for (i = 0; i < list.n; i++) {
			const kiln_image *img = &list.items[i];
			char created[21] = "-";
			if (img->created)
				kiln_format_iso8601(created, img->created);
			printf("%-24s %7lld  %-21s  %-10s  %s\n", kiln_image_kiln_name(img),
			       (long long)kiln_image_version(img), img->id,
			       kiln_image_state_name(img->state), created);
		}
	}
	kiln_image_list_release(&list);
	return KILN_EXIT_OK;
}

static int images_show(cli_opts *opts, kiln_cloud *cloud, const char *ref_text)
{
	kiln_image_ref ref;
	kiln_image img;
	char created[21] = "-";
	size_t i;

	if (kiln_image_ref_parse(&ref, ref_text) < 0 || kiln_registry_resolve(cloud, &ref, &img) < 0)
		return cli_fail(opts);
	if (opts->json) {
		print_json(image_json(&img));
	} else {
		if (img.created)
			kiln_format_iso8601(created, img.created);
		printf("name        %s\n", kiln_image_kiln_name(&img)[0] ? kiln_image_kiln_name(&img) : "-");
		printf("version     %lld\n", (long long)kiln_image_version(&img));
		printf("id          %s\n", img.id);
		printf("image name  %s\n", img.name);
		printf("state       %s%s%s\n", kiln_image_state_name(img.state),
		       img.state_reason[0] ? ": " : "", img.state_reason);
		printf("created     %s\n", created);
		printf("owner       %s\n", img.owner[0] ? img.owner : "-");
		if (img.size_bytes)
			printf("size        %llu GiB\n", (unsigned long long)(img.size_bytes >> 30));
		for (i = 0; i < img.snapshots.n; i++)
			printf("%-11s %s\n", i ? "" : "snapshots", img.snapshots.items[i]);
		for (i = 0; i < img.tags.n; i++)
			printf("%-11s %s=%s\n", i ? "" : "tags", img.tags.items[i].key, img.tags.items[i].value);
	}
	kiln_image_release(&img);
	return KILN_EXIT_OK;
}

int cmd_images(int argc, char **argv)
{
	cli_opts opts = { 0 };
	kiln_events ev;
	kiln_cloud *cloud = NULL;
	const char *sub, *arg = NULL;
	int rc;

	/* prune has options of its own (--keep, --dry-run) */
	for (rc = 1; rc < argc; rc++) {
		if (!strcmp(argv[rc], "--provider") || !strcmp(argv[rc], "--keep")) {
			rc++;
			continue;
		}
		if (argv[rc][0] != '-')
			break;
	}
	if (rc < argc && !strcmp(argv[rc], "prune"))
		return cli_images_prune(argc, argv);
	if ((rc = parse(argc, argv, &opts)) != 0)
		return rc;
	if (optind >= argc)
		return cli_usage_error("images", "say what to do: list, show or prune");
	sub = argv[optind++];
	if (strcmp(sub, "list") && strcmp(sub, "show"))
		return cli_usage_error("images", "unknown subcommand '%s'", sub);
	if (optind < argc)
		arg = argv[optind++];
	if (optind < argc)
		return cli_usage_error("images", "unexpected argument '%s'", argv[optind]);
	if (!strcmp(sub, "show") && !arg)
		return cli_usage_error("images", "'images show' needs an image: NAME, NAME@VERSION or an id");
	if (arg && !strcmp(sub, "list") && !kiln_image_name_valid(arg))
		return cli_usage_error("images", "'%s' is not an image name", arg);

	cli_events_init(&ev, &opts);
	if (cli_cloud_open(&cloud, cli_provider_name(&opts, NULL), NULL, &ev) < 0)
		rc = cli_fail(&opts);
	else if (!strcmp(sub, "list"))
		rc = images_list(&opts, cloud, arg, &ev);
	else
		rc = images_show(&opts, cloud, arg);
	kiln_cloud_free(cloud);
	cli_events_release(&ev);
	return rc;
}
