#include <getopt.h>

#include "cli/cli.h"
#include "core/clock.h"
#ifdef KILN_HAVE_LOCAL
#include "local/provider.h"
#endif

/*
 * kiln local up|status|down: the local cloud's lifecycle (the provider
 * does the work; this parses, renders and maps errors to exit codes).
 */

int cmd_local(int argc, char **argv);

const char local_summary[] = "bring the local cloud (containers, HAProxy) up, show it, take it down";
const char local_usage[] =
	"usage: kiln local up [--subnet CIDR] [--bridge NAME] [--no-base] [--json]\n"
	"   or: kiln local status [--json]\n"
	"   or: kiln local down [--purge] [--json]\n"
	"\n"
	"The local provider runs instances as systemd-nspawn containers on a bridge, images as\n"
	"overlayfs layers over a Debian 12 base, load balancers as HAProxy. Needs root.\n"
	"\n"
	"  up        create the bridge with the host's address on the subnet, start the apt\n"
	"            proxy, build the base image if missing (about a minute, once); idempotent,\n"
	"            and repairs what a crash left behind\n"
	"    --subnet CIDR   the instances' subnet (default: the configured one, else\n"
	"                    $KILN_LOCAL_SUBNET, else 10.231.0.0/24); refused if in use on the host\n"
	"    --bridge NAME   the bridge's name, starting with 'kiln' (default kiln0)\n"
	"    --no-base       do not build the base image now (the first launch will)\n"
	"  status    instances, images, balancers, the apt proxy and every name kiln created\n"
	"  down      stop every container, HAProxy and the apt proxy kiln started; remove its\n"
	"            namespaces, veths, mounts and bridge. Images, the base and the apt cache\n"
	"            stay\n"
	"    --purge         also remove all local state (images, base image, apt cache)\n"
	"\n"
	"docs/local-provider.md lists what kiln creates on the host.\n";

#ifdef KILN_HAVE_LOCAL

static double mib(json_t *v)
{
	return (double)json_integer_value(v) / (1024.0 * 1024.0);
}

static const char *str(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

static void print_status(json_t *st)
{
	json_t *net = json_object_get(st, "network"), *apt = json_object_get(st, "apt_proxy");
	json_t *base = json_object_get(st, "base"), *names = json_object_get(st, "names"), *v, *w;
	size_t i, j;

	printf("local cloud in %s\n", str(st, "local_dir"));
	printf("network:   bridge %s, host address %s on %s (%s)\n", str(net, "bridge"), str(net, "address"),
	       str(net, "subnet"), json_is_true(json_object_get(net, "up")) ? "up" : "down");
	printf("apt proxy: %s, %s", str(apt, "address"),
	       json_is_true(json_object_get(apt, "running")) ? "running" : "stopped");
	if (json_is_integer(json_object_get(apt, "pid")))
		printf(" (pid %lld)", (long long)json_integer_value(json_object_get(apt, "pid")));
	printf(", cache %.1f MiB in %s\n", mib(json_object_get(apt, "cache_bytes")), str(apt, "cache_dir"));
	printf("base:      %s %s (%s)\n", str(base, "id"),
	       json_is_true(json_object_get(base, "present")) ? "built" : "not built yet", str(base, "path"));

	v = json_object_get(st, "instances");
	printf("\ninstances (%zu):\n", json_array_size(v));
	json_array_foreach(v, i, w) {
		printf("  %-20s %-13s %-15s %s", str(w, "id"), str(w, "state"), str(w, "private_ip"),
		       str(w, "image_id"));
		if (json_is_integer(json_object_get(w, "pid")))
			printf("  pid %lld", (long long)json_integer_value(json_object_get(w, "pid")));
		if (*str(w, "state_reason") && strcmp(str(w, "state"), "running"))
			printf("  (%s)", str(w, "state_reason"));
		putchar('\n');
	}
	v = json_object_get(st, "images");
	printf("\nimages (%zu):\n", json_array_size(v));
	json_array_foreach(v, i, w) {
		json_t *layers = json_object_get(w, "layers"), *l;
		printf("  %-22s %-24s %-10s %8.1f MiB", str(w, "id"), str(w, "name"), str(w, "state"),
		       mib(json_object_get(w, "size_bytes")));
		if (json_array_size(layers)) {
			printf("  layers");
			json_array_foreach(layers, j, l)
				printf(" %s", json_string_value(l));
		}
		putchar('\n');
	}
	v = json_object_get(st, "balancers");
	printf("\nbalancers (%zu):\n", json_array_size(v));
	json_array_foreach(v, i, w) {
		json_t *servers = json_object_get(w, "servers"), *s;
		printf("  %-16s listen %-21s %s", str(w, "name"), str(w, "listen"),
		       json_is_true(json_object_get(w, "running")) ? "running" : "stopped");
		if (json_is_true(json_object_get(w, "running")))
			printf(" (pid %lld)", (long long)json_integer_value(json_object_get(w, "pid")));
		printf(", checks GET %s every %lld s\n", str(w, "health_path"),
		       (long long)json_integer_value(json_object_get(w, "interval_s")));
		json_array_foreach(servers, j, s)
			printf("    %-20s %s:%lld  %-9s %s\n", str(s, "id"), str(s, "addr"),
			       (long long)json_integer_value(json_object_get(s, "port")), str(s, "health"),
			       str(s, "reason"));
	}
	printf("\nnames kiln created on this host:\n");
	printf("  bridge:     %s\n", str(names, "bridge"));
	printf("  netns:      ");
	json_array_foreach(json_object_get(names, "netns"), i, w)
		printf("%s ", json_string_value(w));
	printf("(%s)\n  veths:      ", str(names, "netns_pattern"));
	json_array_foreach(json_object_get(names, "veths"), i, w)
		printf("%s ", json_string_value(w));
	printf("(%s)\n  mounts:     ", str(names, "veth_pattern"));
	json_array_foreach(json_object_get(names, "mounts"), i, w)
		printf("%s%s", i ? "\n              " : "", json_string_value(w));
	printf("%s\n  processes:  ", json_array_size(json_object_get(names, "mounts")) ? "" : "(none)");
	json_array_foreach(json_object_get(names, "processes"), i, w)
		printf("%s%lld %s%s%s", i ? ", " : "", (long long)json_integer_value(json_object_get(w, "pid")),
		       str(w, "what"), *str(w, "instance") ? " " : *str(w, "balancer") ? " " : "",
		       *str(w, "instance") ? str(w, "instance") : str(w, "balancer"));
	printf("%s\n", json_array_size(json_object_get(names, "processes")) ? "" : "(none)");
}

int cmd_local(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "subnet", required_argument, NULL, 's' }, { "bridge", required_argument, NULL, 'b' },
		{ "no-base", no_argument, NULL, 'n' },      { "purge", no_argument, NULL, 'p' },
		{ "json", no_argument, NULL, 'j' },         { "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	kiln_local_up_opts up = KILN_LOCAL_UP_OPTS_INIT;
	cli_opts opts = { 0 };
	kiln_events ev;
	const char *verb;
	bool purge = false, no_base = false;
	uint64_t t0 = kiln_clock_now_ms();
	int c, error, code;

	if (argc < 2)
		return cli_usage_error("local", "say up, status or down");
	verb = argv[1];
	if (strcmp(verb, "up") && strcmp(verb, "status") && strcmp(verb, "down"))
		return cli_usage_error("local", "'%s' is not up, status or down", verb);
	optind = 2;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "v", longopts, NULL)) != -1) {
		switch (c) {
		case 's': up.subnet = optarg; break;
		case 'b': up.bridge = optarg; break;
		case 'n': no_base = true; break;
		case 'p': purge = true; break;
		case 'j': opts.json = true; break;
		case 'v': opts.verbose = true; break;
		default: return cli_usage_error("local", "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return cli_usage_error("local", "unexpected argument '%s'", argv[optind]);
	if ((up.subnet || up.bridge || no_base) && strcmp(verb, "up"))
		return cli_usage_error("local", "--subnet, --bridge and --no-base go with 'up'");
	if (purge && strcmp(verb, "down"))
		return cli_usage_error("local", "--purge goes with 'down'");
	up.build_base = !no_base;

	cli_events_init(&ev, &opts);
	if (!strcmp(verb, "status")) {
		json_t *st = NULL;
		if ((error = kiln_local_status(&st, &ev)) == 0) {
			if (opts.json) {
				json_dumpf(st, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
				putchar('\n');
			} else {
				print_status(st);
			}
		}
		json_decref(st);
	} else if (!strcmp(verb, "up")) {
		if ((error = kiln_local_up(&up, &ev)) == 0)
			kiln_emit(&ev, "result", KILN_LEVEL_INFO, json_pack("{s:s}", "command", "local up"),
				  "local cloud up in %.1f s ('kiln local status' shows it)",
				  (double)(kiln_clock_now_ms() - t0) / 1000.0);
	} else {
		if ((error = kiln_local_down(purge, &ev)) == 0)
			kiln_emit(&ev, "result", KILN_LEVEL_INFO,
				  json_pack("{s:s,s:b}", "command", "local down", "purged", purge),
				  "local cloud down in %.1f s%s", (double)(kiln_clock_now_ms() - t0) / 1000.0,
				  purge ? "; all local state removed" : "; images, base and apt cache kept");
	}
	code = error < 0 ? cli_fail(&opts) : KILN_EXIT_OK;
	cli_events_release(&ev);
	return code;
}

#else

int cmd_local(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	kiln_error_set(KILN_EUNSUPPORTED, "this kiln was built without the local provider");
	return cli_fail(NULL);
}

#endif
