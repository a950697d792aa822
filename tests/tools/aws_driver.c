/*
 * kiln-aws-driver: calls one operation of the aws provider (core/cloud.h)
 * and prints what it returned as one JSON document on stdout, so that the
 * e2e suites (tests/e2e/t0100-aws-calls.sh, t0120-aws-faults.sh) can drive
 * every typed call against moto and check the result with jq.
 *
 *   kiln-aws-driver [--counters FILE] [--max-attempts N] OP ARGS...
 *
 * Failure: exit 1 and one line on stderr, "error: KIND: CLOUD_CODE: MESSAGE"
 * (KIND as kiln_error_name says: "conflict", "not found" ...).
 * --counters writes the client's per-action counters as JSON at exit.
 *
 * Not a unit test: a tool the shell suites run (tests/CMakeLists.txt).
 */
#include <getopt.h>

#include "aws/provider.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/fs.h"

static const char usage[] =
	"usage: kiln-aws-driver [--counters FILE] [--max-attempts N] OP ARGS...\n"
	"ops (TAGS are k=v words; IDS are words):\n"
	"  whoami\n"
	"  launch IMAGE TYPE COUNT TOKEN [subnet=S] [key=K] [sg=G] [user_data=TEXT] [TAGS]\n"
	"  describe [all] [id=ID...] [TAGS]      stop IDS      terminate IDS      console ID\n"
	"  images [name=PATTERN] [owner=O...] [id=ID...] [TAGS]\n"
	"  image-create INSTANCE NAME [TAGS]     image-delete IMAGE      tag ID... -- TAGS\n"
	"  lb-open tg|classic REF                lb-register|lb-deregister tg|classic REF IDS\n"
	"  lb-health tg|classic REF [IDS]\n"
	"  keypair-import NAME PUBKEY-FILE [TAGS]    keypair-delete NAME\n"
	"  firewall-create NAME PORT CIDR[,CIDR] [subnet=S] [TAGS]   firewall-delete ID TIMEOUT_MS\n"
	"  find TAGS\n"
	"  record-create|record-put NAME VALUE   record-get|record-delete NAME   record-list PREFIX\n"
	"  caller-cidr [SUBNET]\n";

static int fail(void)
{
	const kiln_error *e = kiln_error_last();
	fprintf(stderr, "error: %s: %s: %s\n", kiln_error_name(e->code ? e->code : KILN_ERROR),
		e->cloud_code[0] ? e->cloud_code : "-", e->message);
	return 1;
}

static void print(json_t *doc)
{
	json_dumpf(doc, stdout, JSON_COMPACT | JSON_SORT_KEYS);
	fputc('\n', stdout);
	json_decref(doc);
}

/* Splits ARGS into k=v tags, the special keys of an op, and plain words. */
struct args {
	kiln_tags tags;
	kiln_tags opts;     /* subnet=, key=, sg=, name=, user_data= ... */
	kiln_strings ids;   /* id=... and plain words */
	kiln_strings owners;
	bool all;
};

static bool is_opt(const char *key)
{
	static const char *const opts[] = { "subnet", "key", "sg", "user_data", "name", NULL };
	size_t i;
	for (i = 0; opts[i]; i++)
		if (!strcmp(opts[i], key))
			return true;
	return false;
}

static int parse_args(struct args *a, int argc, char **argv)
{
	int i;
	memset(a, 0, sizeof(*a));
	for (i = 0; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		char key[256];
		if (!strcmp(argv[i], "all")) {
			a->all = true;
			continue;
		}
		if (!strcmp(argv[i], "--"))
			continue;
		if (!eq) {
			if (kiln_strings_add(&a->ids, argv[i]) < 0)
				return -1;
			continue;
		}
		snprintf(key, sizeof(key), "%.*s", (int)(eq - argv[i]), argv[i]);
		if (!strcmp(key, "id")) {
			if (kiln_strings_add(&a->ids, eq + 1) < 0)
				return -1;
		} else if (!strcmp(key, "owner")) {
			if (kiln_strings_add(&a->owners, eq + 1) < 0)
				return -1;
		} else if (is_opt(key)) {
			if (kiln_tags_set(&a->opts, key, eq + 1) < 0)
				return -1;
		} else if (kiln_tags_set(&a->tags, key, eq + 1) < 0) {
			return -1;
		}
	}
	return 0;
}

static void args_release(struct args *a)
{
	kiln_tags_release(&a->tags);
	kiln_tags_release(&a->opts);
	kiln_strings_release(&a->ids);
	kiln_strings_release(&a->owners);
}

static json_t *instance_json(const kiln_instance *i)
{
	return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:o}", "id", i->id, "image_id", i->image_id,
			 "type", i->instance_type, "subnet_id", i->subnet_id, "private_ip", i->private_ip,
			 "key_name", i->key_name, "state", kiln_instance_state_name(i->state),
			 "state_reason", i->state_reason, "launch_time", (json_int_t)i->launch_time,
			 "tags", kiln_tags_to_json(&i->tags));
}

static json_t *instances_json(const kiln_instance_list *l)
{
	json_t *arr = json_array();
	size_t i;
	for (i = 0; i < l->n; i++)
		json_array_append_new(arr, instance_json(&l->items[i]));
	return arr;
}

static json_t *image_json(const kiln_image *img)
{
	json_t *snaps = json_array();
	size_t i;
	for (i = 0; i < img->snapshots.n; i++)
		json_array_append_new(snaps, json_string(img->snapshots.items[i]));
	return json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:o,s:o}", "id", img->id, "name", img->name, "owner",
			 img->owner, "state", kiln_image_state_name(img->state), "created",
			 (json_int_t)img->created, "size_bytes", (json_int_t)img->size_bytes,
			 "snapshots", snaps, "tags", kiln_tags_to_json(&img->tags));
}

static int lb_parse(kiln_lb *lb, const char *kind, const char *ref)
{
	memset(lb, 0, sizeof(*lb));
	lb->ref = ref;
	if (!strcmp(kind, "tg"))
		lb->kind = KILN_LB_TARGET_GROUP;
	else if (!strcmp(kind, "classic"))
		lb->kind = KILN_LB_CLASSIC;
	else
		return kiln_error_set(KILN_EINVALID, "lb kind '%s': tg or classic", kind);
	return 0;
}

static int write_counters(kiln_cloud *c, const char *path)
{
	kiln_aws_client *client = kiln_aws_cloud_client(c);
	const kiln_aws_counter *ctr;
	json_t *o = json_object();
	size_t i, n = 0;
	char *text;
	int error;

	ctr = kiln_aws_client_counters(client, &n);
	for (i = 0; i < n; i++)
		json_object_set_new(o, ctr[i].name,
				    json_pack("{s:I,s:I,s:I}", "calls", (json_int_t)ctr[i].calls, "attempts",
					      (json_int_t)ctr[i].attempts, "failures", (json_int_t)ctr[i].failures));
	text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	if (!text)
		return KILN_ENOMEM;
	error = kiln_write_file_atomic(path, text, strlen(text), 0644);
	free(text);
	return error;
}

static int run(kiln_cloud *c, const char *op, int argc, char **argv)
{
	const kiln_cloud_ops *ops = c->ops;
	struct args a;
	int error = KILN_EINVALID;

	if (parse_args(&a, argc, argv) < 0)
		return KILN_ENOMEM;
#define NEED(n)                                                                             \
	do {                                                                                \
		if (argc < (n)) {                                                           \
			error = kiln_error_set(KILN_EINVALID, "%s needs %d arguments", op, (n)); \
			goto done;                                                          \
		}                                                                           \
	} while (0)
#define IDS ((const char *const *)a.ids.items)

	if (!strcmp(op, "whoami")) {
		kiln_identity id;
		if ((error = ops->whoami(c, &id)) == 0)
			print(json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "account", id.account, "arn", id.arn,
					"user_id", id.user_id, "region", id.region, "endpoint", id.endpoint,
					"credential_source", id.credential_source));
	} else if (!strcmp(op, "launch")) {
		kiln_launch spec = { 0 };
		kiln_instance_list out = { 0 };
		const char *sg;
		int64_t count;
		NEED(4);
		if (kiln_parse_i64(&count, argv[2], 1, 100) < 0) {
			error = kiln_error_set(KILN_EINVALID, "count '%s'", argv[2]);
			goto done;
		}
		args_release(&a);
		if (parse_args(&a, argc - 4, argv + 4) < 0)
			return KILN_ENOMEM;
		spec.image_id = argv[0];
		spec.instance_type = argv[1];
		spec.count = (unsigned)count;
		spec.client_token = argv[3];
		spec.subnet_id = kiln_tags_get(&a.opts, "subnet");
		spec.key_name = kiln_tags_get(&a.opts, "key");
		spec.user_data = kiln_tags_get(&a.opts, "user_data");
		if ((sg = kiln_tags_get(&a.opts, "sg"))) {
			spec.security_group_ids = &sg;
			spec.n_security_groups = 1;
		}
		spec.tags = &a.tags;
		if ((error = ops->instances_launch(c, &spec, &out)) == 0)
			print(instances_json(&out));
		kiln_instance_list_release(&out);
	} else if (!strcmp(op, "describe")) {
		kiln_instance_query q = { 0 };
		kiln_instance_list out = { 0 };
		if (a.ids.n) {
			q.ids = IDS;
			q.n_ids = a.ids.n;
		}
		q.tags = a.tags.n ? &a.tags : NULL;
		q.include_terminated = a.all;
		if ((error = ops->instances_describe(c, &q, &out)) == 0)
			print(instances_json(&out));
		kiln_instance_list_release(&out);
	} else if (!strcmp(op, "stop") || !strcmp(op, "terminate")) {
		error = (!strcmp(op, "stop") ? ops->instances_stop : ops->instances_terminate)(c, IDS, a.ids.n);
		if (error == 0)
			print(json_pack("{s:b}", "ok", 1));
	} else if (!strcmp(op, "console")) {
		kiln_buf out = KILN_BUF_INIT;
		NEED(1);
		if ((error = ops->console_output(c, argv[0], &out)) == 0)
			print(json_pack("{s:s%}", "output", out.ptr, out.len));
		kiln_buf_release(&out);
	} else if (!strcmp(op, "images")) {
		kiln_image_query q = { 0 };
		kiln_image_list out = { 0 };
		size_t i;
		json_t *arr;
		if (a.ids.n) {
			q.ids = IDS;
			q.n_ids = a.ids.n;
		}
		q.name = kiln_tags_get(&a.opts, "name");
		q.owners = (const char *const *)a.owners.items;
		q.n_owners = a.owners.n;
		q.tags = a.tags.n ? &a.tags : NULL;
		if ((error = ops->images_describe(c, &q, &out)) == 0) {
			arr = json_array();
			for (i = 0; i < out.n; i++)
				json_array_append_new(arr, image_json(&out.items[i]));
			print(arr);
		}
		kiln_image_list_release(&out);
	} else if (!strcmp(op, "image-create")) {
		char id[KILN_ID_MAX];
		NEED(2);
		args_release(&a);
		if (parse_args(&a, argc - 2, argv + 2) < 0)
			return KILN_ENOMEM;
		if ((error = ops->image_create(c, argv[0], argv[1], "kiln e2e", &a.tags, id)) == 0)
			print(json_pack("{s:s}", "id", id));
	} else if (!strcmp(op, "image-delete")) {
		NEED(1);
		if ((error = ops->image_delete(c, argv[0])) == 0)
			print(json_pack("{s:b}", "ok", 1));
	} else if (!strcmp(op, "tag")) {
		if ((error = ops->tags_create(c, IDS, a.ids.n, &a.tags)) == 0)
			print(json_pack("{s:b}", "ok", 1));
	} else if (!strncmp(op, "lb-", 3)) {
		kiln_lb lb;
		NEED(2);
		if ((error = lb_parse(&lb, argv[0], argv[1])) < 0)
			goto done;
		args_release(&a);
		if (parse_args(&a, argc - 2, argv + 2) < 0)
			return KILN_ENOMEM;
		if (!strcmp(op, "lb-open")) {
			kiln_lb_info info;
			if ((error = ops->lb_open(c, &lb, &info)) == 0)
				print(json_pack("{s:s,s:i,s:i}", "name", info.name, "drain_timeout_s",
						info.drain_timeout_s, "health_interval_s", info.health_interval_s));
		} else if (!strcmp(op, "lb-register") || !strcmp(op, "lb-deregister")) {
			error = (!strcmp(op, "lb-register") ? ops->lb_register : ops->lb_deregister)(c, &lb, IDS, a.ids.n);
			if (error == 0)
				print(json_pack("{s:b}", "ok", 1));
		} else if (!strcmp(op, "lb-health")) {
			kiln_target_list out = { 0 };
			json_t *o;
			size_t i;
			if ((error = ops->lb_health(c, &lb, a.ids.n ? IDS : NULL, a.ids.n, &out)) == 0) {
				o = json_object();
				for (i = 0; i < out.n; i++)
					json_object_set_new(o, out.items[i].instance_id,
							    json_pack("{s:s,s:s}", "health",
								      kiln_health_name(out.items[i].health),
								      "reason", out.items[i].reason));
				print(o);
			}
			kiln_target_list_release(&out);
		} else {
			error = kiln_error_set(KILN_EINVALID, "unknown op '%s'", op);
		}
	} else if (!strcmp(op, "keypair-import")) {
		kiln_buf key = KILN_BUF_INIT;
		NEED(2);
		args_release(&a);
		if (parse_args(&a, argc - 2, argv + 2) < 0)
			return KILN_ENOMEM;
		if ((error = kiln_read_file(&key, argv[1])) == 0) {
			kiln_buf_rtrim(&key);
			if ((error = ops->keypair_import(c, argv[0], key.ptr, &a.tags)) == 0)
				print(json_pack("{s:b}", "ok", 1));
		}
		kiln_buf_release(&key);
	} else if (!strcmp(op, "keypair-delete")) {
		NEED(1);
		if ((error = ops->keypair_delete(c, argv[0])) == 0)
			print(json_pack("{s:b}", "ok", 1));
	} else if (!strcmp(op, "firewall-create")) {
		kiln_firewall fw = { 0 };
		kiln_strings cidrs = { 0 };
		char id[KILN_ID_MAX], *list, *save = NULL, *tok;
		int64_t port;
		NEED(3);
		if (kiln_parse_i64(&port, argv[1], 1, 65535) < 0) {
			error = kiln_error_set(KILN_EINVALID, "port '%s'", argv[1]);
			goto done;
		}
		if (!(list = kiln_strdup(argv[2])))
			return KILN_ENOMEM;
		for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
			kiln_strings_add(&cidrs, tok);
		free(list);
		args_release(&a);
		if (parse_args(&a, argc - 3, argv + 3) < 0)
			return KILN_ENOMEM;
		fw.name = argv[0];
		fw.description = "kiln e2e";
		fw.subnet_id = kiln_tags_get(&a.opts, "subnet");
		fw.port = (int)port;
		fw.cidrs = (const char *const *)cidrs.items;
		fw.n_cidrs = cidrs.n;
		fw.tags = &a.tags;
		if ((error = ops->firewall_create(c, &fw, id)) == 0)
			print(json_pack("{s:s}", "id", id));
		kiln_strings_release(&cidrs);
	} else if (!strcmp(op, "firewall-delete")) {
		int64_t ms;
		NEED(2);
		if (kiln_parse_i64(&ms, argv[1], 0, INT64_MAX) < 0) {
			error = kiln_error_set(KILN_EINVALID, "timeout '%s'", argv[1]);
			goto done;
		}
		if ((error = ops->firewall_delete(c, argv[0], (uint64_t)ms)) == 0)
			print(json_pack("{s:b}", "ok", 1));
	} else if (!strcmp(op, "find")) {
		kiln_resource_list out = { 0 };
		json_t *arr;
		size_t i;
		if ((error = ops->resources_find(c, &a.tags, &out)) == 0) {
			arr = json_array();
			for (i = 0; i < out.n; i++)
				json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:o}", "kind",
								     kiln_resource_kind_name(out.items[i].kind),
								     "id", out.items[i].id, "state", out.items[i].state,
								     "tags", kiln_tags_to_json(&out.items[i].tags)));
			print(arr);
		}
		kiln_resource_list_release(&out);
	} else if (!strcmp(op, "record-create") || !strcmp(op, "record-put")) {
		NEED(2);
		error = (!strcmp(op, "record-create") ? ops->record_create : ops->record_put)(c, argv[0], argv[1]);
		if (error == 0)
			print(json_pack("{s:b}", "ok", 1));
	} else if (!strcmp(op, "record-get")) {
		kiln_record rec = { 0 };
		NEED(1);
		if ((error = ops->record_get(c, argv[0], &rec)) == 0)
			print(json_pack("{s:s,s:I,s:I}", "value", rec.value, "version", (json_int_t)rec.version,
					"modified_ms", (json_int_t)rec.modified_ms));
		kiln_record_release(&rec);
	} else if (!strcmp(op, "record-delete")) {
		NEED(1);
		if ((error = ops->record_delete(c, argv[0])) == 0)
			print(json_pack("{s:b}", "ok", 1));
	} else if (!strcmp(op, "record-list")) {
		kiln_strings names = { 0 };
		json_t *arr;
		size_t i;
		NEED(1);
		if ((error = ops->record_list(c, argv[0], &names)) == 0) {
			arr = json_array();
			for (i = 0; i < names.n; i++)
				json_array_append_new(arr, json_string(names.items[i]));
			print(arr);
		}
		kiln_strings_release(&names);
	} else if (!strcmp(op, "caller-cidr")) {
		kiln_buf out = KILN_BUF_INIT;
		if ((error = ops->caller_cidr(c, argc > 0 ? argv[0] : NULL, &out)) == 0)
			print(json_pack("{s:s}", "cidr", out.ptr));
		kiln_buf_release(&out);
	} else {
		error = kiln_error_set(KILN_EINVALID, "unknown op '%s'", op);
	}
done:
	args_release(&a);
	return error;
#undef NEED
#undef IDS
}

/* Every event (retries are debug events) on stderr, for the suite's log. */
static void print_event(void *ctx, const kiln_event *ev)
{
	(void)ctx;
	fprintf(stderr, "%s: %s\n", kiln_level_name(ev->level), ev->message);
}

static const kiln_events events = { print_event, NULL };

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "counters", required_argument, NULL, 'c' },
		{ "max-attempts", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	kiln_aws_client_options o = KILN_AWS_CLIENT_OPTIONS_INIT;
	const char *counters = NULL;
	kiln_cloud *c = NULL;
	int opt, rc;
	int64_t n;

	while ((opt = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c': counters = optarg; break;
		case 'm':
			if (kiln_parse_i64(&n, optarg, 1, 100) < 0) {
				fputs(usage, stderr);
				return 2;
			}
			o.max_attempts = (unsigned)n;
			break;
		case 'h': fputs(usage, stdout); return 0;
		default: fputs(usage, stderr); return 2;
		}
	}
	if (optind >= argc) {
		fputs(usage, stderr);
		return 2;
	}
	kiln_cancel_install();
	if (kiln_aws_cloud_new_ex(&c, NULL, &events, &o) < 0)
		return fail();
	rc = run(c, argv[optind], argc - optind - 1, argv + optind + 1) < 0 ? fail() : 0;
	if (counters && write_counters(c, counters) < 0)
		rc = fail();
	kiln_cloud_free(c);
	return rc;
}
