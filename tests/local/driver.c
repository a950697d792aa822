/*
 * kiln-local-driver: calls the local provider's operations one at a time,
 * for the end-to-end suites and bench/ (an engine's view of the provider,
 * without the engines). Not a unit test: it needs root and a real host.
 *
 *   kiln-local-driver COMMAND ARGS...   (see usage() below)
 *
 * Output is plain lines for shell scripts; events go to stderr with
 * KILN_DEBUG set. Exit 0 on success, 1 on failure (message on stderr).
 */
#include "core/clock.h"
#include "core/cloud.h"
#include "core/error.h"
#include "core/fs.h"
#include "local/provider.h"

static void usage(void)
{
	fputs("usage: kiln-local-driver COMMAND ARGS\n"
	      "  launch IMAGE [key=NAME] [count=N] [token=T] [user-data=FILE] [tag:K=V]...\n"
	      "  wait-running [timeout=S] ID...        prints 'ID IP' once all are running\n"
	      "  describe [all] [ID...]                 'ID STATE IP IMAGE REASON'\n"
	      "  stop ID... | terminate ID... | console ID\n"
	      "  image-create ID NAME [tag:K=V]...      prints the image id once available\n"
	      "  image-delete ID | images [name=PATTERN] [owner=O] [tag:K=V]\n"
	      "  keypair-import NAME PUBFILE | keypair-delete NAME\n"
	      "  lb-open LB | lb-register LB ID... | lb-deregister LB ID...\n"
	      "  lb-health LB [ID...]                   'ID HEALTH REASON'\n"
	      "  lb-wait LB ID HEALTH [timeout=S]       waits, prints the seconds it took\n"
	      "     LB = NAME,LISTEN,PATH,INTERVAL_S,RISE,FALL,PORT\n"
	      "  record-create NAME VALUE | record-get NAME | record-put NAME VALUE\n"
	      "  record-delete NAME | record-list PREFIX\n"
	      "  firewall-create NAME PORT CIDR | firewall-delete ID | resources [tag:K=V]...\n"
	      "  whoami | caller-cidr\n",
	      stderr);
}

static void on_event(void *ctx, const kiln_event *ev)
{
	(void)ctx;
	if (getenv("KILN_DEBUG") || ev->level >= KILN_LEVEL_WARN)
		fprintf(stderr, "[%s] %s\n", ev->name, ev->message);
}

static int fail(const char *what)
{
	fprintf(stderr, "kiln-local-driver: %s: %s\n", what, kiln_error_last()->message);
	return 1;
}

static const char *arg_value(const char *arg, const char *key)
{
	size_t n = strlen(key);
	return !strncmp(arg, key, n) && arg[n] == '=' ? arg + n + 1 : NULL;
}

static int add_tag(kiln_tags *tags, const char *arg)
{
	char key[256];
	const char *eq;
	if (strncmp(arg, "tag:", 4) || !(eq = strchr(arg + 4, '=')))
		return 0;
	snprintf(key, sizeof(key), "%.*s", (int)(eq - arg - 4), arg + 4);
	return kiln_tags_set(tags, key, eq + 1) < 0 ? -1 : 1;
}

/* "web,127.0.0.1:18080,/healthz,1,2,2,8000" */
static int parse_lb(kiln_lb *lb, char *spec)
{
	char *f[7], *save = NULL, *t;
	int64_t v[4];
	int i = 0;

	for (t = strtok_r(spec, ",", &save); t && i < 7; t = strtok_r(NULL, ",", &save))
		f[i++] = t;
	if (i != 7 || kiln_parse_i64(&v[0], f[3], 1, 300) || kiln_parse_i64(&v[1], f[4], 1, 100) ||
	    kiln_parse_i64(&v[2], f[5], 1, 100) || kiln_parse_i64(&v[3], f[6], 1, 65535)) {
		fprintf(stderr, "kiln-local-driver: bad balancer spec (NAME,LISTEN,PATH,INTERVAL,RISE,FALL,PORT)\n");
		return -1;
	}
	memset(lb, 0, sizeof(*lb));
	lb->kind = KILN_LB_LOCAL;
	lb->ref = f[0];
	lb->listen = f[1];
	lb->health_path = f[2];
	lb->interval_s = (int)v[0];
	lb->rise = (int)v[1];
	lb->fall = (int)v[2];
	lb->target_port = (int)v[3];
	return 0;
}

static int read_text(char **out, const char *path)
{
	kiln_buf b = KILN_BUF_INIT;
	kiln_buf_init(&b, 1 << 20);
	if (kiln_read_file(&b, path) < 0) {
		kiln_buf_release(&b);
		return -1;
	}
	*out = kiln_buf_detach(&b);
	return 0;
}

static void print_instances(const kiln_instance_list *list)
{
	size_t i;
	for (i = 0; i < list->n; i++) {
		const kiln_instance *in = &list->items[i];
		printf("%s %s %s %s %s\n", in->id, kiln_instance_state_name(in->state),
		       in->private_ip[0] ? in->private_ip : "-", in->image_id,
		       in->state_reason[0] ? in->state_reason : "-");
	}
}

int main(int argc, char **argv)
{
	kiln_events ev = { on_event, NULL };
	kiln_cloud *c = NULL;
	kiln_tags tags = KILN_TAGS_INIT;
	const char *cmd;
	int rc = 1, i, error;

	if (argc < 2) {
		usage();
		return 2;
	}
	cmd = argv[1];
	kiln_cancel_install();
	if (kiln_local_cloud_new(&c, &ev) < 0)
		return fail("open");
	for (i = 2; i < argc; i++)
		if (add_tag(&tags, argv[i]) < 0)
			return fail("tag");

	if (!strcmp(cmd, "launch") && argc >= 3) {
		kiln_launch spec = { 0 };
		kiln_instance_list out = { 0 };
		char *user_data = NULL;
		int64_t count = 1;
		spec.image_id = argv[2];
		for (i = 3; i < argc; i++) {
			const char *v;
			if ((v = arg_value(argv[i], "key")))
				spec.key_name = v;
			else if ((v = arg_value(argv[i], "count")) && kiln_parse_i64(&count, v, 1, 64) < 0)
				goto usage;
			else if ((v = arg_value(argv[i], "token")))
				spec.client_token = v;
			else if ((v = arg_value(argv[i], "user-data")) && read_text(&user_data, v) < 0) {
				rc = fail("user data");
				goto done;
			}
		}
		spec.count = (unsigned)count;
		spec.user_data = user_data;
		spec.tags = &tags;
		error = c->ops->instances_launch(c, &spec, &out);
		free(user_data);
		if (error < 0) {
			rc = fail("launch");
			goto done;
		}
		for (i = 0; i < (int)out.n; i++)
			printf("%s\n", out.items[i].id);
		kiln_instance_list_release(&out);
		rc = 0;
	} else if (!strcmp(cmd, "wait-running") && argc >= 3) {
		kiln_instance_list out = { 0 };
		const char *ids[64];
		size_t n = 0;
		int64_t timeout = 120;
		for (i = 2; i < argc && n < 64; i++) {
			const char *v = arg_value(argv[i], "timeout");
			if (v && kiln_parse_i64(&timeout, v, 1, 3600) < 0)
				goto usage;
			if (!v)
				ids[n++] = argv[i];
		}
		if (kiln_cloud_wait_instances(c, ids, n, KILN_INSTANCE_RUNNING, (uint64_t)timeout * 1000, &out) < 0) {
			rc = fail("wait");
			goto done;
		}
		for (i = 0; i < (int)out.n; i++)
			printf("%s %s\n", out.items[i].id, out.items[i].private_ip);
		kiln_instance_list_release(&out);
		rc = 0;
	} else if (!strcmp(cmd, "describe")) {
		kiln_instance_query q = { 0 };
		kiln_instance_list out = { 0 };
		const char *ids[64];
		size_t n = 0;
		for (i = 2; i < argc && n < 64; i++) {
			if (!strcmp(argv[i], "all"))
				q.include_terminated = true;
			else if (strncmp(argv[i], "tag:", 4))
				ids[n++] = argv[i];
		}
		if (n) {
			q.ids = ids;
			q.n_ids = n;
		}
		q.tags = tags.n ? &tags : NULL;
		if (c->ops->instances_describe(c, &q, &out) < 0) {
			rc = fail("describe");
			goto done;
		}
		print_instances(&out);
		kiln_instance_list_release(&out);
		rc = 0;
	} else if ((!strcmp(cmd, "stop") || !strcmp(cmd, "terminate")) && argc >= 3) {
		error = !strcmp(cmd, "stop") ? c->ops->instances_stop(c, (const char *const *)argv + 2, (size_t)argc - 2)
					     : c->ops->instances_terminate(c, (const char *const *)argv + 2, (size_t)argc - 2);
		rc = error < 0 ? fail(cmd) : 0;
	} else if (!strcmp(cmd, "console") && argc == 3) {
		kiln_buf out = KILN_BUF_INIT;
		if (c->ops->console_output(c, argv[2], &out) < 0) {
			rc = fail("console");
		} else {
			fwrite(out.ptr, 1, out.len, stdout);
			rc = 0;
		}
		kiln_buf_release(&out);
	} else if (!strcmp(cmd, "image-create") && argc >= 4) {
		char id[KILN_ID_MAX];
		kiln_image img = { 0 };
		if (c->ops->image_create(c, argv[2], argv[3], "made by kiln-local-driver", &tags, id) < 0 ||
		    kiln_cloud_wait_image(c, id, 600000, &img) < 0) {
			rc = fail("image-create");
			goto done;
		}
		printf("%s\n", id);
		kiln_image_release(&img);
		rc = 0;
	} else if (!strcmp(cmd, "image-delete") && argc == 3) {
		rc = c->ops->image_delete(c, argv[2]) < 0 ? fail("image-delete") : 0;
	} else if (!strcmp(cmd, "images")) {
		kiln_image_query q = { 0 };
		kiln_image_list out = { 0 };
		const char *owners[1];
		size_t j;
		for (i = 2; i < argc; i++) {
			const char *v;
			if ((v = arg_value(argv[i], "name")))
				q.name = v;
			else if ((v = arg_value(argv[i], "owner"))) {
				owners[0] = v;
				q.owners = owners;
				q.n_owners = 1;
			}
		}
		q.tags = tags.n ? &tags : NULL;
		if (c->ops->images_describe(c, &q, &out) < 0) {
			rc = fail("images");
			goto done;
		}
		for (j = 0; j < out.n; j++)
			printf("%s %s %s %s %llu %s\n", out.items[j].id, out.items[j].name, out.items[j].owner,
			       kiln_image_state_name(out.items[j].state), (unsigned long long)out.items[j].size_bytes,
			       out.items[j].snapshots.n ? out.items[j].snapshots.items[0] : "-");
		kiln_image_list_release(&out);
		rc = 0;
	} else if (!strcmp(cmd, "keypair-import") && argc >= 4) {
		char *key = NULL;
		if (read_text(&key, argv[3]) < 0 || c->ops->keypair_import(c, argv[2], key, &tags) < 0)
			rc = fail("keypair-import");
		else
			rc = 0;
		free(key);
	} else if (!strcmp(cmd, "keypair-delete") && argc == 3) {
		rc = c->ops->keypair_delete(c, argv[2]) < 0 ? fail("keypair-delete") : 0;
	} else if (!strncmp(cmd, "lb-", 3) && argc >= 3) {
		kiln_lb lb;
		char *spec = kiln_strdup(argv[2]);
		if (!spec || parse_lb(&lb, spec) < 0) {
			free(spec);
			goto usage;
		}
		if (!strcmp(cmd, "lb-open")) {
			kiln_lb_info info;
			if (c->ops->lb_open(c, &lb, &info) < 0)
				rc = fail("lb-open");
			else {
				printf("%s drain_timeout_s=%d interval_s=%d\n", info.name, info.drain_timeout_s,
				       info.health_interval_s);
				rc = 0;
			}
		} else if (!strcmp(cmd, "lb-register") || !strcmp(cmd, "lb-deregister")) {
			error = !strcmp(cmd, "lb-register")
					? c->ops->lb_register(c, &lb, (const char *const *)argv + 3, (size_t)argc - 3)
					: c->ops->lb_deregister(c, &lb, (const char *const *)argv + 3, (size_t)argc - 3);
			rc = error < 0 ? fail(cmd) : 0;
		} else if (!strcmp(cmd, "lb-health")) {
			kiln_target_list out = { 0 };
			size_t j;
			if (c->ops->lb_health(c, &lb, argc > 3 ? (const char *const *)argv + 3 : NULL,
					      argc > 3 ? (size_t)argc - 3 : 0, &out) < 0) {
				rc = fail("lb-health");
			} else {
				for (j = 0; j < out.n; j++)
					printf("%s %s %s\n", out.items[j].instance_id, kiln_health_name(out.items[j].health),
					       out.items[j].reason[0] ? out.items[j].reason : "-");
				rc = 0;
			}
			kiln_target_list_release(&out);
		} else if (!strcmp(cmd, "lb-wait") && argc >= 5) {
			kiln_health want = kiln_health_parse(argv[4]);
			uint64_t t0 = kiln_clock_now_ms(), deadline;
			int64_t timeout = 120;
			if (argc > 5 && arg_value(argv[5], "timeout") &&
			    kiln_parse_i64(&timeout, arg_value(argv[5], "timeout"), 1, 3600) < 0) {
				free(spec);
				goto usage;
			}
			deadline = t0 + (uint64_t)timeout * 1000;
			for (;;) {
				kiln_target_list out = { 0 };
				const char *ids[1] = { argv[3] };
				kiln_health h;
				if (c->ops->lb_health(c, &lb, ids, 1, &out) < 0) {
					rc = fail("lb-wait");
					break;
				}
				h = out.n ? out.items[0].health : KILN_HEALTH_UNKNOWN;
				if (h == want) {
					printf("%.2f\n", (double)(kiln_clock_now_ms() - t0) / 1000.0);
					kiln_target_list_release(&out);
					rc = 0;
					break;
				}
				if (kiln_clock_now_ms() >= deadline) {
					fprintf(stderr, "kiln-local-driver: %s is %s (%s), not %s, after %lld s\n", argv[3],
						kiln_health_name(h), out.n ? out.items[0].reason : "-", argv[4],
						(long long)timeout);
					kiln_target_list_release(&out);
					break;
				}
				kiln_target_list_release(&out);
				if (kiln_sleep_ms(100) < 0) {
					rc = fail("lb-wait");
					break;
				}
			}
		} else {
			free(spec);
			goto usage;
		}
		free(spec);
	} else if (!strcmp(cmd, "record-create") && argc == 4) {
		rc = c->ops->record_create(c, argv[2], argv[3]) < 0 ? fail("record-create") : 0;
	} else if (!strcmp(cmd, "record-put") && argc == 4) {
		rc = c->ops->record_put(c, argv[2], argv[3]) < 0 ? fail("record-put") : 0;
	} else if (!strcmp(cmd, "record-get") && argc == 3) {
		kiln_record r = { 0 };
		if (c->ops->record_get(c, argv[2], &r) < 0)
			rc = fail("record-get");
		else {
			printf("%s %lld\n", r.value, (long long)r.version);
			rc = 0;
		}
		kiln_record_release(&r);
	} else if (!strcmp(cmd, "record-delete") && argc == 3) {
		rc = c->ops->record_delete(c, argv[2]) < 0 ? fail("record-delete") : 0;
	} else if (!strcmp(cmd, "record-list") && argc == 3) {
		kiln_strings out = { 0 };
		size_t j;
		if (c->ops->record_list(c, argv[2], &out) < 0)
			rc = fail("record-list");
		else {
			for (j = 0; j < out.n; j++)
				printf("%s\n", out.items[j]);
			rc = 0;
		}
		kiln_strings_release(&out);
	} else if (!strcmp(cmd, "firewall-create") && argc >= 5) {
		kiln_firewall fw = { 0 };
		const char *cidrs[1] = { argv[4] };
		char id[KILN_ID_MAX];
		int64_t port;
		if (kiln_parse_i64(&port, argv[3], 1, 65535) < 0)
			goto usage;
		fw.name = argv[2];
		fw.port = (int)port;
		fw.cidrs = cidrs;
		fw.n_cidrs = 1;
		fw.tags = &tags;
		if (c->ops->firewall_create(c, &fw, id) < 0)
			rc = fail("firewall-create");
		else {
			printf("%s\n", id);
			rc = 0;
		}
	} else if (!strcmp(cmd, "firewall-delete") && argc == 3) {
		rc = c->ops->firewall_delete(c, argv[2], 10000) < 0 ? fail("firewall-delete") : 0;
	} else if (!strcmp(cmd, "resources")) {
		kiln_resource_list out = { 0 };
		size_t j;
		if (c->ops->resources_find(c, &tags, &out) < 0)
			rc = fail("resources");
		else {
			for (j = 0; j < out.n; j++)
				printf("%s %s %s\n", kiln_resource_kind_name(out.items[j].kind), out.items[j].id,
				       out.items[j].state[0] ? out.items[j].state : "-");
			rc = 0;
		}
		kiln_resource_list_release(&out);
	} else if (!strcmp(cmd, "whoami")) {
		kiln_identity id;
		if (c->ops->whoami(c, &id) < 0)
			rc = fail("whoami");
		else {
			printf("%s %s %s\n", id.account, id.region, id.arn);
			rc = 0;
		}
	} else if (!strcmp(cmd, "caller-cidr")) {
		kiln_buf out = KILN_BUF_INIT;
		if (c->ops->caller_cidr(c, NULL, &out) < 0)
			rc = fail("caller-cidr");
		else {
			printf("%s\n", out.ptr);
			rc = 0;
		}
		kiln_buf_release(&out);
	} else {
		goto usage;
	}
done:
	kiln_tags_release(&tags);
	kiln_cloud_free(c);
	return rc;
usage:
	usage();
	kiln_tags_release(&tags);
	kiln_cloud_free(c);
	return 2;
}
