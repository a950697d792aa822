#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "builder/build.h"
#include "builder/cleanup.h"
#include "builder/journal.h"
#include "builder/prune.h"
#include "builder/template.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/registry.h"
#include "tests/support/fakecomm.h"
#include "tests/support/memcloud.h"
#include "tests/support/test.h"

/*
 * The build engine over the in-memory provider and the scripted
 * communicator: the success path, every failure path, cancellation at
 * each step, --on-error abort, a crash followed by `kiln cleanup`, version
 * races, leftovers, and the prune rules.
 */

struct fx {
	char *dir;     /* the template's directory */
	char *state;   /* KILN_STATE_DIR */
	char *tpl;     /* the template's path */
	memcloud *mc;
	kiln_cloud *c;
	char src[KILN_ID_MAX];
	fakecomm *fc;
	kiln_events ev;
	json_t *events; /* every event, as --json would print it */
};

static void collect(void *ctx, const kiln_event *ev)
{
	struct fx *f = ctx;
	json_array_append_new(f->events, kiln_event_to_json(ev, kiln_clock_wall_ms()));
}

static void new_cloud(struct fx *f)
{
	kiln_tags os = KILN_TAGS_INIT;
	if (f->c)
		kiln_cloud_free(f->c);
	f->mc = memcloud_new();
	f->c = memcloud_cloud(f->mc);
	kiln_tags_set(&os, "os", "debian");
	snprintf(f->src, sizeof(f->src), "%s", memcloud_add_image(f->mc, NULL, 0, &os));
	kiln_tags_release(&os);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char *app;

	f->dir = kiln_test_mktmp();
	f->state = kiln_strdupf("%s/state", f->dir);
	setenv("KILN_STATE_DIR", f->state, 1);
	kiln_test_clock_install(1764100000000LL);
	kiln_cancel_reset();
	new_cloud(f);
	f->fc = fakecomm_reset();
	f->events = json_array();
	f->ev.emit = collect;
	f->ev.ctx = f;
	app = kiln_strdupf("%s/app", f->dir);
	assert_int_equal(kiln_mkdir_p(app, 0755), 0);
	free(kiln_test_write(app, "index.html", "<p>hello</p>\n"));
	free(app);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	kiln_cloud_free(f->c);
	kiln_test_clock_uninstall();
	kiln_cancel_reset();
	fakecomm_reset();
	json_decref(f->events);
	kiln_test_rmtmp(f->dir);
	free(f->state);
	free(f->tpl);
	free(f);
	unsetenv("KILN_STATE_DIR");
	return 0;
}

/* A template building "web" from the fixture's source image; extra goes before the provisioners. */
static void write_template(struct fx *f, const char *extra, const char *provisioners)
{
	char *text = kiln_strdupf(
		"{\n"
		"  \"name\": \"web\",\n"
		"  \"source_image\": \"%s\",\n"
		"  \"instance_type\": \"t3.micro\",\n"
		"  \"ssh_username\": \"admin\",\n"
		"  %s%s"
		"  \"provisioners\": %s\n"
		"}\n",
		f->src, extra ? extra : "\"ssh_host\": \"127.0.0.1\", \"ssh_port\": 2222",
		extra && !*extra ? "" : ",\n",
		provisioners ? provisioners
			     : "[{\"type\": \"shell\", \"inline\": [\"echo hello {{version}}\"]},\n"
			       "   {\"type\": \"file\", \"source\": \"app\", \"destination\": \"/srv/app\"}]");
	free(f->tpl);
	f->tpl = kiln_test_write(f->dir, "web.json", text);
	free(text);
}

static int build(struct fx *f, kiln_on_error on_error, kiln_build_result *res)
{
	kiln_template *t = NULL;
	kiln_build_options o = KILN_BUILD_OPTIONS_INIT;
	int rc;

	if (kiln_template_load(&t, f->tpl, NULL) < 0)
		fail_msg("template: %s", kiln_error_last()->message);
	o.comm = &fakecomm_communicator;
	o.events = &f->ev;
	o.on_error = on_error;
	rc = kiln_build_run(f->c, t, &o, res);
	kiln_template_free(t);
	return rc;
}

static size_t journals(struct fx *f)
{
	char *dir = kiln_strdupf("%s/builds", f->state);
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;
	while (d && (e = readdir(d)))
		n += strlen(e->d_name) > 5 && !strcmp(e->d_name + strlen(e->d_name) - 5, ".json");
	if (d)
		closedir(d);
	free(dir);
	return n;
}

/* After every scenario: no instance left running, no key pair, no firewall, no journal. */
static void assert_clean(struct fx *f)
{
	kiln_test_clock_advance(60000);
	assert_int_equal(memcloud_count_instances(f->mc, KILN_INSTANCE_UNKNOWN, NULL), 0);
	assert_int_equal(memcloud_count_keypairs(f->mc), 0);
	assert_int_equal(memcloud_count_firewalls(f->mc), 0);
	assert_int_equal(journals(f), 0);
	assert_int_equal(fakecomm_get()->open_sessions, 0);
}

static bool has_event(struct fx *f, const char *name, const char *field, const char *needle)
{
	size_t i;
	json_t *e;
	json_array_foreach(f->events, i, e) {
		const char *v = json_string_value(json_object_get(e, field));
		if (!strcmp(json_string_value(json_object_get(e, "event")), name) && v &&
		    strstr(v, needle))
			return true;
	}
	return false;
}

static int describe_image(struct fx *f, const char *id, kiln_image *out)
{
	kiln_image_list l = { 0 };
	const char *ids[1] = { id };
	kiln_image_query q = { .ids = ids, .n_ids = 1 };
	int rc = f->c->ops->images_describe(f->c, &q, &l);
	if (rc == 0 && l.n == 1)
		rc = kiln_image_copy(out, &l.items[0]);
	else if (rc == 0)
		rc = KILN_ENOTFOUND;
	kiln_image_list_release(&l);
	return rc;
}

/* ---- the success path ---- */

static void test_build_success(void **state)
{
	struct fx *f = *state;
	kiln_build_result res;
	kiln_image img;
	kiln_record rec = { 0 };
	kiln_template *t = NULL;
	kiln_buf manifest = KILN_BUF_INIT;
	json_t *m, *cache;
	char token[80], path[4096];

	write_template(f, "\"ssh_host\": \"127.0.0.1\", \"ssh_port\": 2222, \"tags\": {\"team\": \"web\", \"release\": \"r{{version}}\"}", NULL);
	fakecomm_rule_add(f->fc, "echo hello", 0, "hello 1\n", NULL);
	assert_int_equal(build(f, KILN_ON_ERROR_CLEANUP, &res), 0);
	assert_int_equal(res.version, 1);
	assert_string_equal(res.image_name, "web-v1");
	assert_string_equal(res.source_image_id, f->src);
	assert_true(!strncmp(res.image_id, "ami-", 4));

	/* the image, with every kiln tag and the template's */
	assert_int_equal(describe_image(f, res.image_id, &img), 0);
	assert_string_equal(img.name, "web-v1");
	assert_int_equal(img.state, KILN_IMAGE_AVAILABLE);
	assert_string_equal(kiln_tags_get(&img.tags, KILN_TAG_IMAGE), "web");
	assert_string_equal(kiln_tags_get(&img.tags, KILN_TAG_VERSION), "1");
	assert_string_equal(kiln_tags_get(&img.tags, KILN_TAG_SOURCE_IMAGE), f->src);
	assert_int_equal(kiln_template_load(&t, f->tpl, NULL), 0);
	assert_string_equal(kiln_tags_get(&img.tags, KILN_TAG_TEMPLATE_SHA256), t->sha256);
	kiln_template_free(t);
	{
		int64_t at = 0;
		assert_int_equal(kiln_parse_iso8601(&at, kiln_tags_get(&img.tags, KILN_TAG_BUILT_AT)), 0);
		assert_true(at >= 1764100000 && at <= kiln_clock_wall_s());
	}
	assert_string_equal(kiln_tags_get(&img.tags, KILN_TAG_BUILD_ID), res.build_id);
	assert_string_equal(kiln_tags_get(&img.tags, "team"), "web");
	assert_string_equal(kiln_tags_get(&img.tags, "release"), "r1");
	kiln_image_release(&img);
	/* its snapshots were tagged too */
	assert_int_equal(memcloud_calls(f->mc, "tags_create"), 1);

	/* how the instance was reached */
	assert_string_equal(f->fc->host, "127.0.0.1");
	assert_int_equal(f->fc->port, 2222);
	assert_string_equal(f->fc->user, "admin");
	assert_int_equal(f->fc->connects, 1);
	assert_string_equal(res.host_key, "SHA256:fakehostkey");
	assert_false(res.host_key_verified);
	assert_true(fakecomm_ran(f->fc, "echo hello 1"));
	assert_true(has_event(f, "output", "message", "hello 1"));
	assert_true(f->fc->bytes >= strlen("<p>hello</p>\n"));
	/* loopback ssh_host: the firewall admits 127.0.0.1 without asking the cloud */
	assert_int_equal(memcloud_calls(f->mc, "caller_cidr"), 0);
	/* one launch with the token derived from the build id */
	snprintf(token, sizeof(token), "kiln-%s", res.build_id);
	assert_int_equal(memcloud_launches_with_token(f->mc, token), 1);
	assert_clean(f);

	/* recorded: the version reservation, the manifest, the cache */
	assert_int_equal(f->c->ops->record_get(f->c, "/kiln/images/web/versions/1", &rec), 0);
	assert_non_null(strstr(rec.value, res.build_id));
	kiln_record_release(&rec);
	snprintf(path, sizeof(path), "%s/kiln-manifest.json", f->dir);
	assert_string_equal(res.manifest_path, path);
	assert_int_equal(kiln_read_file(&manifest, path), 0);
	m = json_loads(manifest.ptr, 0, NULL);
	assert_non_null(m);
	assert_int_equal(json_array_size(json_object_get(m, "builds")), 1);
	{
		json_t *b0 = json_array_get(json_object_get(m, "builds"), 0);
		char artifact[128];
		snprintf(artifact, sizeof(artifact), "mem-1:%s", res.image_id);
		assert_string_equal(json_string_value(json_object_get(b0, "artifact_id")), artifact);
		assert_string_equal(json_string_value(json_object_get(b0, "name")), "web");
		assert_string_equal(json_string_value(json_object_get(json_object_get(b0, "custom_data"), "version")), "1");
		assert_string_equal(json_string_value(json_object_get(m, "last_run_uuid")), res.build_id);
		assert_string_equal(json_string_value(json_object_get(json_object_get(b0, "custom_data"), "host_key")),
				    "SHA256:fakehostkey");
		assert_string_equal(json_string_value(json_object_get(json_object_get(b0, "custom_data"), "host_key_check")),
				    "recorded");
	}
	json_decref(m);
	kiln_buf_release(&manifest);
	assert_int_equal(kiln_registry_cache_get("memory/mem-1", &cache), 0);
	assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(cache, "web"), "1"), "id")),
			    res.image_id);
	json_decref(cache);

	/* the next build is version 2, from the same template; the manifest grows */
	fakecomm_reset();
	assert_int_equal(build(f, KILN_ON_ERROR_CLEANUP, &res), 0);
	assert_int_equal(res.version, 2);
	assert_true(fakecomm_ran(fakecomm_get(), "echo hello 2"));
	assert_int_equal(kiln_read_file(&manifest, path), 0);
	m = json_loads(manifest.ptr, 0, NULL);
	assert_int_equal(json_array_size(json_object_get(m, "builds")), 2);
	json_decref(m);
	kiln_buf_release(&manifest);
	assert_int_equal(res.leftovers, 0);
	assert_clean(f);
}

static void test_default_cidr_and_private_ip(void **state)
{
	struct fx *f = *state;
	kiln_build_result res;

	write_template(f, "\"ssh_interface\": \"private_ip\"", NULL);
	assert_int_equal(build(f, KILN_ON_ERROR_CLEANUP, &res), 0);
	/* no ssh_host, no temporary_cidrs: this machine's address as the cloud sees it */
	assert_int_equal(memcloud_calls(f->mc, "caller_cidr"), 1);
	assert_true(!strncmp(f->fc->host, "10.0.", 5));
	assert_clean(f);

	/* unknowable: a bad-input error before anything is created or reserved */
	new_cloud(f);
	write_template(f, "", NULL);
	memcloud_fail(f->mc, "caller_cidr", 1, KILN_ENOTFOUND, "no idea");
	assert_error(build(f, KILN_ON_ERROR_CLEANUP, &res), KILN_EINVALID, "set \"temporary_cidrs\"");
	assert_int_equal(memcloud_count_records(f->mc), 0);
	assert_int_equal(memcloud_calls(f->mc, "keypair_import"), 0);
	assert_clean(f);

	/* public_ip by default */
	new_cloud(f);
	write_template(f, "\"temporary_cidrs\": [\"192.0.2.0/24\"]", NULL);
	assert_int_equal(build(f, KILN_ON_ERROR_CLEANUP, &res), 0);
	assert_int_equal(memcloud_calls(f->mc, "caller_cidr"), 0);
	assert_true(!strncmp(f->fc->host, "203.0.113.", 10));
	assert_clean(f);
}

static void test_source_filter(void **state)
{
	struct fx *f = *state;
	kiln_build_result res;
	kiln_tags os = KILN_TAGS_INIT;
	char newer[KILN_ID_MAX];

	/* the newest match wins */
	kiln_test_clock_advance(3600 * 1000);
	kiln_tags_set(&os, "os", "debian");
	snprintf(newer, sizeof(newer), "%s", memcloud_add_image(f->mc, NULL, 0, &os));
	kiln_tags_release(&os);
	write_template(f, "\"ssh_host\": \"127.0.0.1\"", NULL);
	free(f->tpl);
	f->tpl = kiln_test_write(f->dir, "web.json",
				 "{\"name\": \"web\", \"source_image_filter\": {\"owners\": [\"self\"], \"tags\": {\"os\": \"debian\"}},\n"
				 " \"instance_type\": \"t3.micro\", \"ssh_username\": \"admin\", \"ssh_host\": \"127.0.0.1\",\n"
				 " \"provisioners\": [{\"type\": \"shell\", \"inline\": [\"true\"]}]}\n");
	assert_int_equal(build(f, KILN_ON_ERROR_CLEANUP, &res), 0);
	assert_string_equal(res.source_image_id, newer);
	assert_clean(f);

	/* none: an error naming the filter, nothing reserved or created */
	free(f->tpl);
	f->tpl = kiln_test_write(f->dir, "web.json",
				 "{\"name\": \"web\", \"source_image_filter\": {\"name\": \"nothing-*\", \"tags\": {\"os\": \"plan9\"}},\n"
				 " \"instance_type\": \"t3.micro\", \"ssh_username\": \"admin\", \"ssh_host\": \"127.0.0.1\"}\n");
	new_cloud(f);
	assert_error(build(f, KILN_ON_ERROR_CLEANUP, &res), KILN_ENOTFOUND,
		     "no available image matches source_image_filter name 'nothing-*' tags os=plan9");
	assert_int_equal(memcloud_count_records(f->mc), 0);
	assert_int_equal(memcloud_calls(f->mc, "keypair_import"), 0);
	assert_clean(f);

	/* a source_image that does not exist */
	free(f->tpl);
	f->tpl = kiln_test_write(f->dir, "web.json",
				 "{\"name\": \"web\", \"source_image\": \"ami-0000000000000dead\",\n"
				 " \"instance_type\": \"t3.micro\", \"ssh_username\": \"admin\", \"ssh_host\": \"127.0.0.1\"}\n");
	assert_error(build(f, KILN_ON_ERROR_CLEANUP, &res), KILN_ENOTFOUND, "ami-0000000000000dead");
	assert_clean(f);
}

/* ---- failures ---- */

static void test_provisioner_fails(void **state)
{
	struct fx *f = *state;
	kiln_build_result res;

	write_template(f, NULL, "[{\"type\": \"shell\", \"inline\": [\"echo ok\", \"make-it-fail\"]}]");
	fakecomm_rule_add(f->fc, "make-it-fail", 3, "half done\n", "boom\n");
	assert_error(build(f, KILN_ON_ERROR_CLEANUP, &res), KILN_ERROR, "shell #1");
	assert_non_null(strstr(kiln_error_last()->message, "3"));
	assert_true(has_event(f, "output", "message", "boom"));
	assert_int_equal(res.version, 1);
	assert_string_equal(res.image_id, "");
	assert_false(res.kept);
	assert_int_equal(memcloud_count_images(f->mc), 1); /* only the source */
	assert_int_equal(memcloud_calls(f->mc, "image_create"), 0);
	assert_clean(f);

	/* the failed build's version stays a gap */
	fakecomm_reset();
	write_template(f, NULL, NULL);
	assert_int_equal(build(f, KILN_ON_ERROR_CLEANUP, &res), 0);
	assert_int_equal(res.version, 2);
	assert_clean(f);
}

static void test_launch_fails(void **state)
{
	struct fx *f = *state;
	kiln_build_result res;

	write_template(f, NULL, NULL);
	memcloud_fail(f->mc, "instances_launch", 1, KILN_ERROR, "InsufficientInstanceCapacity");
	assert_error(build(f, KILN_ON_ERROR_CLEANUP, &res), KILN_ERROR, "InsufficientInstanceCapacity");
	assert_non_null(strstr(kiln_error_last()->message, "cannot launch the build instance"));
	assert_int_equal(memcloud_calls(f->mc, "keypair_delete"), 1);
	assert_int_equal(memcloud_calls(f->mc, "firewall_delete"), 1);
	assert_clean(f);

	/* abort mode has no instance to keep: it cleans up as well */
	new_cloud(f);
	write_template(f, NULL, NULL);
	memcloud_fail(f->mc, "instances_launch", 1, KILN_ERROR, "InsufficientInstanceCapacity");
	assert_error(build(f, KILN_ON_ERROR_ABORT, &res), KILN_ERROR, "InsufficientInstanceCapacity");
	assert_false(res.kept);
	assert_clean(f);
}

static void test_launch_lost_response(void **state)
{
	struct fx *f = *state;
	kiln_build_result res;

	/* the launch happened but its answer was lost: the journal has no id, the tag finds it */
	write_template(f, NULL, NULL);
	memcloud_fail_after(f->mc, "instances_launch", 1, KILN_ETRANSIENT, "RequestTimeout");
	assert_error(build(f, KILN_ON_ERROR_CLEANUP, &res), KILN_ETRANSIENT, "RequestTimeout");
	assert_int_equal(memcloud_calls(f->mc, "instances_terminate"), 1);
	assert_clean(f);
}

static void test_image_fails(void **state)
{
	struct fx *f = *state;
	kiln_build_result res;

	write_template(f, NULL, NULL);
	memcloud_fail_images(f->mc, true);
	assert_error(build(f, KILN_ON_ERROR_CLEANUP, &res), KILN_ERROR, "failed");
	assert_non_null(strstr(kiln_error_last()->message, "snapshot failed"));
	assert_string_equal(res.image_id, "");
	assert_int_equal(memcloud_count_images(f->mc), 1); /* the failed one was deregistered */
	assert_clean(f);

	/* create_image itself refused */
	new_cloud(f);
	write_template(f, NULL, NULL);
	memcloud_fail(f->mc, "image_create", 1, KILN_ERROR, "InvalidParameterValue");
	assert_error(build(f, KILN_ON_ERROR_CLEANUP, &res), KILN_ERROR, "cannot create image 'web-v1'");
	assert_clean(f);
}

static void test_ssh_unreachable(void **state)
{
	struct fx *f = *state;
	kiln_build_result res;

	write_template(f, NULL, NULL);
	f->fc->connect_failures = 1;
	assert_error(build(f, KILN_ON_ERROR_CLEANUP, &res), KILN_ETIMEOUT,
		     "cannot reach the build instance over SSH at 127.0.0.1:2222");
	assert_clean(f);
}

/* cloud-init's block, as it appears on a console */
static const char console_text[] =
	"[   12.1] cloud-init[500]: Cloud-init v. 22.4.2 running 'modules:final'\n"
	"ci-info: no authorized SSH keys fingerprints found for user debian.\n"
	"<14>Nov 25 21:37:44 cloud-init: #############################################################\n"
	"<14>Nov 25 21:37:44 cloud-init: -----BEGIN SSH HOST KEY FINGERPRINTS-----\n"
	"<14>Nov 25 21:37:44 cloud-init: 256 SHA256:aaaaECDSAfingerprint+/x root@ip-10-0-0-1 (ECDSA)\n"
	"<14>Nov 25 21:37:44 cloud-init: 256 SHA256:fakehostkey root@ip-10-0-0-1 (ED25519)\n"
	"<14>Nov 25 21:37:44 cloud-init: 3072 SHA256:rsaRSArsa root@ip-10-0-0-1 (RSA)\n"
	"<14>Nov 25 21:37:44 cloud-init: -----END SSH HOST KEY FINGERPRINTS-----\n"
	"<14>Nov 25 21:37:44 cloud-init: #############################################################\n";

static int put_console(void *ctx, const char *op)
{
	struct fx *f = ctx;
	if (!strcmp(op, "console_output")) {
		kiln_instance_list l = { 0 };
		kiln_instance_query q = { 0 };
		memcloud_on_call(f->mc, NULL, NULL);
		if (f->c->ops->instances_describe(f->c, &q, &l) == 0 && l.n)
			memcloud_set_console(f->mc, l.items[l.n - 1].id, console_text);
		kiln_instance_list_release(&l);
	}
	return 0;
}

static void test_host_key_from_console(void **state)
{
	struct fx *f = *state;
	kiln_strings fps = { 0 };
	kiln_build_result res;

	assert_int_equal(kiln_console_host_fingerprints(console_text, strlen(console_text), &fps), 0);
	assert_int_equal(fps.n, 3);
	assert_string_equal(fps.items[0], "SHA256:aaaaECDSAfingerprint+/x");
	assert_string_equal(fps.items[1], "SHA256:fakehostkey");
	kiln_strings_release(&fps);
	assert_int_equal(kiln_console_host_fingerprints("no block here", 13, &fps), 0);
	assert_int_equal(fps.n, 0);

	write_template(f, NULL, NULL);
	memcloud_on_call(f->mc, put_console, f);
	assert_int_equal(build(f, KILN_ON_ERROR_CLEANUP, &res), 0);
	assert_int_equal(f->fc->n_accepted_fps, 3);
	assert_true(res.host_key_verified);
	assert_clean(f);

	/* a host key the console did not list: refused, cleaned up */
	new_cloud(f);
	memcloud_on_call(f->mc, put_console, f);
	snprintf(f->fc->host_key, sizeof(f->fc->host_key), "SHA256:mitm");
	assert_error(build(f, KILN_ON_ERROR_CLEANUP, &res), KILN_EAUTH, "SHA256:mitm");
	assert_clean(f);
}

static void test_expect_disconnect_reconnects(void **state)
{
	struct fx *f = *state;
	kiln_build_result res;

	write_template(f, NULL,
		       "[{\"type\": \"shell\", \"inline\": [\"reboot-now\"], \"expect_disconnect\": true},\n"
		       " {\"type\": \"shell\", \"inline\": [\"after-reboot\"]}]");
	fakecomm_rule_add(f->fc, "reboot-now", 0, NULL, NULL)->disconnect = true;
	assert_int_equal(build(f, KILN_ON_ERROR_CLEANUP, &res), 0);
	assert_int_equal(f->fc->connects, 2);
	assert_true(fakecomm_ran(f->fc, "after-reboot"));
	assert_clean(f);

	/* expect_disconnect without a disconnect: the session goes on */
	new_cloud(f);
	fakecomm_reset();
	write_template(f, NULL,
		       "[{\"type\": \"shell\", \"inline\": [\"no-reboot-after-all\"], \"expect_disconnect\": true},\n"
		       " {\"type\": \"shell\", \"inline\": [\"after\"]}]");
	assert_int_equal(build(f, KILN_ON_ERROR_CLEANUP, &res), 0);
	assert_int_equal(fakecomm_get()->connects, 1);
	assert_clean(f);

	/* a drop nobody expected fails the build */
	new_cloud(f);
	fakecomm_reset();
	write_template(f, NULL, "[{\"type\": \"shell\", \"inline\": [\"reboot-now\"]}]");
	fakecomm_rule_add(fakecomm_get(), "reboot-now", 0, NULL, NULL)->disconnect = true;
	assert_error(build(f, KILN_ON_ERROR_CLEANUP, &res), KILN_ERROR, "the connection dropped");
	assert_clean(f);
}

static void test_ssm_parameter(void **state)
{
	struct fx *f = *state;
	kiln_build_result res;
	kiln_record rec = { 0 };

	write_template(f, "\"ssh_host\": \"127.0.0.1\", \"ssm_parameter\": \"/golden/web\"", NULL);
	assert_int_equal(build(f, KILN_ON_ERROR_CLEANUP, &res), 0);
	assert_int_equal(f->c->ops->record_get(f->c, "/golden/web", &rec), 0);
	assert_string_equal(rec.value, res.image_id);
	kiln_record_release(&rec);
	assert_clean(f);

	/* publishing fails: the image stays (it is a valid version), the build says so */
	new_cloud(f);
	write_template(f, "\"ssh_host\": \"127.0.0.1\", \"ssm_parameter\": \"/golden/web\"", NULL);
	memcloud_fail(f->mc, "record_put", 1, KILN_EAUTH, "AccessDeniedException");
	assert_error(build(f, KILN_ON_ERROR_CLEANUP, &res), KILN_EAUTH, "was built, but publishing it to '/golden/web' failed");
	assert_int_equal(memcloud_count_images(f->mc), 2);
	assert_clean(f);
	/* --on-error abort keeps nothing then: there is no failed instance to look at */
	new_cloud(f);
	memcloud_fail(f->mc, "record_put", 1, KILN_EAUTH, "AccessDeniedException");
	assert_error(build(f, KILN_ON_ERROR_ABORT, &res), KILN_EAUTH, "publishing it");
	assert_false(res.kept);
	assert_clean(f);
}

/* ---- cancellation at every step ---- */

struct cancel_at {
	const char *op;
	unsigned nth;
	unsigned seen;
};

static int cancel_hook(void *ctx, const char *op)
{
	struct cancel_at *at = ctx;
	if (strcmp(op, at->op) || ++at->seen != at->nth)
		return 0;
	kiln_cancel_set(SIGINT);
	return KILN_ECANCELLED;
}

static int cancel_exec(void *ctx, const char *command)
{
	(void)ctx;
	(void)command;
	kiln_cancel_set(SIGINT);
	return kiln_error_set(KILN_ECANCELLED, "interrupted by SIGINT");
}

static void test_cancel_at_each_step(void **state)
{
	struct fx *f = *state;
	/* the calls of a build in order: resolve, reserve, access, launch, wait, console, stop, image */
	struct cancel_at steps[] = {
		{ "images_describe", 1, 0 }, { "record_create", 1, 0 },  { "keypair_import", 1, 0 },
		{ "firewall_create", 1, 0 }, { "instances_launch", 1, 0 }, { "instances_describe", 1, 0 },
		{ "console_output", 1, 0 },  { "exec", 1, 0 },            { "instances_stop", 1, 0 },
		{ "instances_describe", 2, 0 }, { "image_create", 1, 0 }, { "images_describe", 3, 0 },
		{ "tags_create", 1, 0 },
	};
	size_t i;

	for (i = 0; i < KILN_ARRAY_SIZE(steps); i++) {
		kiln_build_result res;
		new_cloud(f);
		fakecomm_reset();
		json_array_clear(f->events);
		/* the group stays in use for a while after the instance goes: cleanup must wait for it */
		memcloud_cfg(f->mc)->firewall_busy_ms = 3000;
		write_template(f, NULL, NULL);
		if (!strcmp(steps[i].op, "exec"))
			fakecomm_get()->on_exec = cancel_exec;
		else
			memcloud_on_call(f->mc, cancel_hook, &steps[i]);
		if (build(f, KILN_ON_ERROR_ABORT, &res) != KILN_ECANCELLED)
			fail_msg("cancel at %s #%u: got '%s'", steps[i].op, steps[i].nth,
				 kiln_error_last()->message);
		assert_false(res.kept); /* abort keeps on failure, not on Ctrl-C */
		assert_string_equal(res.image_id, "");
		assert_int_equal(memcloud_count_images(f->mc), 1);
		assert_clean(f);
		kiln_cancel_reset();
	}
}

/* ---- --on-error abort ---- */

static void test_abort_keeps_instance(void **state)
{
	struct fx *f = *state;
	kiln_build_result res;
	kiln_cleanup_options co = { false, NULL, 0 };
	kiln_cleanup_result cr;
	kiln_buf key = KILN_BUF_INIT;
	struct stat st;

	co.events = &f->ev;
	write_template(f, NULL, "[{\"type\": \"shell\", \"inline\": [\"make-it-fail\"]}]");
	fakecomm_rule_add(f->fc, "make-it-fail", 1, NULL, NULL);
	assert_error(build(f, KILN_ON_ERROR_ABORT, &res), KILN_ERROR, "shell #1");
	assert_true(res.kept);
	assert_string_equal(res.kept_address, "127.0.0.1");
	assert_int_equal(res.kept_port, 2222);
	assert_string_equal(res.kept_user, "admin");
	assert_int_equal(memcloud_count_instances(f->mc, KILN_INSTANCE_RUNNING, NULL), 1);
	assert_int_equal(memcloud_count_keypairs(f->mc), 1);
	assert_int_equal(memcloud_count_firewalls(f->mc), 1);
	assert_int_equal(journals(f), 1);
	/* the key, 0600, where the message says */
	assert_int_equal(stat(res.kept_key_path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(kiln_read_file(&key, res.kept_key_path), 0);
	assert_true(!strncmp(key.ptr, "-----BEGIN OPENSSH PRIVATE KEY-----", 35));
	kiln_buf_release(&key);
	assert_true(has_event(f, "warning", "message", "ssh -i"));
	assert_true(has_event(f, "warning", "message", "kiln cleanup"));

	/* `kiln cleanup` removes all of it, key file included */
	assert_int_equal(kiln_cleanup_run(f->c, &co, &cr), 0);
	assert_int_equal(cr.builds, 1);
	assert_int_equal(cr.removed, 3);
	assert_false(kiln_path_exists(res.kept_key_path));
	assert_clean(f);
}

/* ---- a crash (SIGKILL) in the middle, then `kiln cleanup` ---- */

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define LSAN_OFF() __lsan_disable()
#define LSAN_ON() __lsan_enable()
#else
#define LSAN_OFF()
#define LSAN_ON()
#endif

static jmp_buf crash_env;

static int crash_exec(void *ctx, const char *command)
{
	(void)ctx;
	(void)command;
	/* the process "dies": nothing after this point runs, no cleanup */
	longjmp(crash_env, 1);
}

/* What the kernel does for a dead process: its lock on the build id goes. */
static void drop_lock_fds(const char *build_id)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	char suffix[128];
	snprintf(suffix, sizeof(suffix), "/%s.lock", build_id);
	while (d && (e = readdir(d))) {
		char link[64], target[4096];
		ssize_t n;
		snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
		if ((n = readlink(link, target, sizeof(target) - 1)) <= 0)
			continue;
		target[n] = '\0';
		if (strlen(target) > strlen(suffix) &&
		    !strcmp(target + strlen(target) - strlen(suffix), suffix))
			close((int)strtol(e->d_name, NULL, 10));
	}
	if (d)
		closedir(d);
}

static void test_crash_then_cleanup(void **state)
{
	struct fx *f = *state;
	kiln_build_result res;
	kiln_cleanup_options co = { false, NULL, 0 };
	kiln_cleanup_result cr;
	kiln_resource_list found = { 0 };
	kiln_tags any = KILN_TAGS_INIT;
	kiln_journal j = KILN_JOURNAL_INIT;
	char path[4096], crashed_id[KILN_BUILD_ID_MAX];
	unsigned leftovers = 0;
	size_t i;

	co.events = &f->ev;
	write_template(f, NULL, NULL);
	f->fc->on_exec = crash_exec;
	memset(&res, 0, sizeof(res));
	LSAN_OFF();
	if (setjmp(crash_env) == 0) {
		build(f, KILN_ON_ERROR_CLEANUP, &res);
		fail_msg("the build should have crashed");
	}
	LSAN_ON();
	fakecomm_get()->on_exec = NULL;
	kiln_cancel_reset(); /* the crash left no shield up, but be sure */

	/* as it died: instance, key pair, firewall, journal */
	assert_int_equal(memcloud_count_instances(f->mc, KILN_INSTANCE_RUNNING, NULL), 1);
	assert_int_equal(memcloud_count_keypairs(f->mc), 1);
	assert_int_equal(memcloud_count_firewalls(f->mc), 1);
	assert_int_equal(journals(f), 1);
	/* every temporary resource carries the build id and an expiry */
	kiln_tags_set(&any, KILN_TAG_BUILD_ID, "*");
	assert_int_equal(f->c->ops->resources_find(f->c, &any, &found), 0);
	assert_int_equal(found.n, 3);
	for (i = 0; i < found.n; i++)
		assert_non_null(kiln_tags_get(&found.items[i].tags, KILN_TAG_EXPIRES_AT));
	{
		const char *bid = kiln_tags_get(&found.items[0].tags, KILN_TAG_BUILD_ID);
		snprintf(res.build_id, sizeof(res.build_id), "%s", bid);
		snprintf(crashed_id, sizeof(crashed_id), "%s", bid);
	}
	kiln_resource_list_release(&found);
	kiln_tags_release(&any);
	snprintf(path, sizeof(path), "%s/builds/%s.json", f->state, res.build_id);
	assert_int_equal(kiln_journal_load(&j, path), 0);
	assert_string_equal(kiln_journal_res(&j, "instance", "state"), "created");
	assert_string_equal(kiln_journal_res(&j, "keypair", "state"), "created");
	assert_string_equal(kiln_journal_res(&j, "firewall", "state"), "created");
	assert_int_equal(kiln_journal_int(&j, "version"), 1);
	kiln_journal_release(&j);

	/* while its lock is held (it "runs"), nobody touches it */
	assert_int_equal(kiln_cleanup_run(f->c, &co, &cr), 0);
	assert_int_equal(cr.running, 1);
	assert_int_equal(cr.removed, 0);
	assert_int_equal(kiln_cleanup_report_leftovers(NULL, NULL, &leftovers), 0);
	assert_int_equal(leftovers, 0);
	assert_int_equal(memcloud_count_instances(f->mc, KILN_INSTANCE_RUNNING, NULL), 1);

	drop_lock_fds(res.build_id);
	assert_int_equal(kiln_cleanup_report_leftovers(&f->ev, NULL, &leftovers), 0);
	assert_int_equal(leftovers, 1);
	assert_true(has_event(f, "warning", "message", "run 'kiln cleanup'"));

	/* the next build reports it */
	json_array_clear(f->events);
	fakecomm_reset();
	write_template(f, NULL, NULL);
	assert_int_equal(build(f, KILN_ON_ERROR_CLEANUP, &res), 0);
	assert_int_equal(res.version, 2);
	assert_int_equal(res.leftovers, 1);
	assert_true(has_event(f, "warning", "message", "kiln cleanup"));

	/* a dry run says what would go and changes nothing */
	co.dry_run = true;
	assert_int_equal(kiln_cleanup_run(f->c, &co, &cr), 0);
	assert_int_equal(cr.builds, 1);
	assert_int_equal(cr.removed, 3);
	assert_true(has_event(f, "resource", "message", "would remove instance"));
	assert_int_equal(memcloud_count_instances(f->mc, KILN_INSTANCE_RUNNING, NULL), 1);
	assert_int_equal(journals(f), 1);

	co.dry_run = false;
	assert_int_equal(kiln_cleanup_run(f->c, &co, &cr), 0);
	assert_int_equal(cr.builds, 1);
	assert_int_equal(cr.removed, 3);
	assert_true(has_event(f, "resource", "message", "removed firewall"));
	assert_clean(f);
	/* the dead build's lock file went with it */
	snprintf(path, sizeof(path), "%s/builds/%s.lock", f->state, crashed_id);
	assert_false(kiln_path_exists(path));

	/* and again: nothing left */
	assert_int_equal(kiln_cleanup_run(f->c, &co, &cr), 0);
	assert_int_equal(cr.builds, 0);
	assert_int_equal(cr.removed, 0);
}

/* A crash between asking for a resource and hearing its id: found by name or tag. */
static int crash_after_launch(void *ctx, const char *op)
{
	(void)ctx;
	if (!strcmp(op, "instances_describe"))
		longjmp(crash_env, 1);
	return 0;
}

static void test_crash_before_ids_known(void **state)
{
	struct fx *f = *state;
	kiln_build_result res;
	kiln_cleanup_options co = { false, NULL, 0 };
	kiln_cleanup_result cr;
	kiln_journal j = KILN_JOURNAL_INIT;
	char path[4096];

	write_template(f, NULL, NULL);
	memcloud_on_call(f->mc, crash_after_launch, NULL);
	static char bid[KILN_BUILD_ID_MAX];

	memset(&res, 0, sizeof(res));
	kiln_build_id_new(bid);
	LSAN_OFF();
	if (setjmp(crash_env) == 0) {
		kiln_template *t = NULL;
		kiln_build_options o = KILN_BUILD_OPTIONS_INIT;
		kiln_template_load(&t, f->tpl, NULL);
		o.comm = &fakecomm_communicator;
		o.build_id = bid;
		kiln_build_run(f->c, t, &o, &res);
		fail_msg("the build should have crashed: %s", kiln_error_last()->message);
	}
	LSAN_ON();
	memcloud_on_call(f->mc, NULL, NULL);
	drop_lock_fds(bid);
	/* make the journal look as if it died before the ids came back */
	snprintf(path, sizeof(path), "%s/builds/%s.json", f->state, bid);
	assert_int_equal(kiln_journal_load(&j, path), 0);
	json_object_del(json_object_get(json_object_get(j.doc, "resources"), "instance"), "id");
	json_object_del(json_object_get(json_object_get(j.doc, "resources"), "firewall"), "id");
	kiln_journal_res_set(&j, "instance", "state", "creating");
	kiln_journal_res_set(&j, "firewall", "state", "creating");
	kiln_journal_release(&j);

	assert_int_equal(kiln_cleanup_run(f->c, &co, &cr), 0);
	assert_int_equal(cr.removed, 3);
	assert_clean(f);
}

/* ---- other hosts' builds, other scopes ---- */

static void test_cleanup_other_hosts(void **state)
{
	struct fx *f = *state;
	kiln_cleanup_options co = { false, NULL, 0 };
	kiln_cleanup_result cr;
	kiln_tags tags = KILN_TAGS_INIT;
	kiln_firewall fw = { 0 };
	char fwid[KILN_ID_MAX], exp[21], *path;
	const char *cidr[1] = { "10.0.0.0/8" };

	/* a build of another machine, seen only through its tags, running for another hour */
	kiln_format_iso8601(exp, kiln_clock_wall_s() + 3600);
	kiln_tags_set(&tags, KILN_TAG_BUILD_ID, "20250101T000000Z-0badf00d");
	kiln_tags_set(&tags, KILN_TAG_EXPIRES_AT, exp);
	memcloud_add_instance(f->mc, f->src, &tags);
	assert_int_equal(f->c->ops->keypair_import(f->c, "kiln-web-x", "ssh-ed25519 AAAA x", &tags), 0);
	fw.name = "kiln-web-x";
	fw.port = 22;
	fw.cidrs = cidr;
	fw.n_cidrs = 1;
	fw.tags = &tags;
	assert_int_equal(f->c->ops->firewall_create(f->c, &fw, fwid), 0);
	/* a journal of another provider is left for that provider */
	path = kiln_strdupf("%s/builds", f->state);
	assert_int_equal(kiln_mkdir_p(path, 0700), 0);
	free(path);
	free(kiln_test_write(f->state, "builds/20250101T000000Z-00000001.json",
			     "{\"build_id\": \"20250101T000000Z-00000001\", \"host\": \"elsewhere\", \"provider\": \"aws\","
			     " \"region\": \"us-east-1\", \"expires_at\": \"2000-01-01T00:00:00Z\", \"resources\": {}}"));

	assert_int_equal(kiln_cleanup_run(f->c, &co, &cr), 0);
	assert_int_equal(cr.running, 1);
	assert_int_equal(cr.other, 1);
	assert_int_equal(cr.removed, 0);
	assert_int_equal(memcloud_count_keypairs(f->mc), 1);

	/* once expired, it is fair game */
	kiln_test_clock_advance(3601 * 1000);
	assert_int_equal(kiln_cleanup_run(f->c, &co, &cr), 0);
	assert_int_equal(cr.builds, 1);
	assert_int_equal(cr.removed, 3);
	assert_int_equal(memcloud_count_instances(f->mc, KILN_INSTANCE_RUNNING, NULL), 0);
	assert_int_equal(memcloud_count_keypairs(f->mc), 0);
	assert_int_equal(memcloud_count_firewalls(f->mc), 0);
	assert_int_equal(journals(f), 1); /* the aws one stays */
	kiln_tags_release(&tags);
}

/* ---- versions ---- */

static void test_version_race(void **state)
{
	struct fx *f = *state;
	kiln_build_result res;

	/* another build reserved 1 (its image not yet made): this one gets 2 */
	assert_int_equal(f->c->ops->record_create(f->c, "/kiln/images/web/versions/1", "{\"owner\": \"other\"}"), 0);
	write_template(f, NULL, NULL);
	assert_int_equal(build(f, KILN_ON_ERROR_CLEANUP, &res), 0);
	assert_int_equal(res.version, 2);
	assert_string_equal(res.image_name, "web-v2");
	assert_clean(f);

	/* SSM refused: say what kiln needs, create nothing */
	new_cloud(f);
	write_template(f, NULL, NULL);
	memcloud_fail(f->mc, "record_create", 1, KILN_EAUTH, "AccessDeniedException");
	assert_error(build(f, KILN_ON_ERROR_CLEANUP, &res), KILN_EAUTH,
		     "kiln reserves image versions in SSM Parameter Store and needs ssm:PutParameter");
	assert_int_equal(memcloud_calls(f->mc, "keypair_import"), 0);
	assert_clean(f);

	/* existing images 1..3: the next is 4 */
	new_cloud(f);
	memcloud_add_image(f->mc, "web", 1, NULL);
	memcloud_add_image(f->mc, "web", 3, NULL);
	write_template(f, NULL, NULL);
	assert_int_equal(build(f, KILN_ON_ERROR_CLEANUP, &res), 0);
	assert_int_equal(res.version, 4);
	assert_clean(f);
}

/* ---- the journal is written before each resource is created ---- */

struct watch {
	struct fx *f;
	unsigned ok;
};

static const char *journal_state(struct fx *f, const char *kind, const char *field)
{
	static char value[256];
	char *dir = kiln_strdupf("%s/builds", f->state);
	DIR *d = opendir(dir);
	struct dirent *e;
	value[0] = '\0';
	while (d && (e = readdir(d))) {
		kiln_journal j = KILN_JOURNAL_INIT;
		char path[4096];
		if (strlen(e->d_name) < 6 || strcmp(e->d_name + strlen(e->d_name) - 5, ".json"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (kiln_journal_load(&j, path) == 0 && kiln_journal_res(&j, kind, field))
			snprintf(value, sizeof(value), "%s", kiln_journal_res(&j, kind, field));
		kiln_journal_release(&j);
	}
	if (d)
		closedir(d);
	free(dir);
	return value;
}

static int watch_journal(void *ctx, const char *op)
{
	struct watch *w = ctx;
	const char *kind = !strcmp(op, "keypair_import")     ? "keypair"
			   : !strcmp(op, "firewall_create")  ? "firewall"
			   : !strcmp(op, "instances_launch") ? "instance"
			   : !strcmp(op, "image_create")     ? "image"
							     : NULL;
	if (kind && !strcmp(journal_state(w->f, kind, "state"), "creating"))
		w->ok++;
	if (!strcmp(op, "instances_launch") && !strncmp(journal_state(w->f, "instance", "token"), "kiln-", 5))
		w->ok++;
	return 0;
}

static void test_journal_ahead_of_creation(void **state)
{
	struct fx *f = *state;
	struct watch w = { f, 0 };
	kiln_build_result res;

	write_template(f, NULL, NULL);
	memcloud_on_call(f->mc, watch_journal, &w);
	assert_int_equal(build(f, KILN_ON_ERROR_CLEANUP, &res), 0);
	assert_int_equal(w.ok, 5);
	assert_clean(f);
}

/* ---- prune and keep_versions ---- */

static void test_prune_rules(void **state)
{
	struct fx *f = *state;
	kiln_prune_options po = { 2, true, NULL };
	kiln_prune_result pr;
	kiln_tags fleet = KILN_TAGS_INIT, tags7 = KILN_TAGS_INIT;
	const char *v[7];
	char v7[KILN_ID_MAX], *rec;
	const char *inst;
	int i;

	po.events = &f->ev;
	for (i = 1; i <= 6; i++)
		v[i - 1] = memcloud_add_image(f->mc, "web", i, NULL);
	memcloud_add_image(f->mc, "other", 1, NULL);
	/* v7 is still being made */
	inst = memcloud_add_instance(f->mc, f->src, NULL);
	kiln_tags_set(&tags7, KILN_TAG_IMAGE, "web");
	kiln_tags_set(&tags7, KILN_TAG_VERSION, "7");
	assert_int_equal(f->c->ops->image_create(f->c, inst, "web-v7", "", &tags7, v7), 0);
	kiln_tags_release(&tags7);
	/* v2 runs in a fleet; v3 is a fleet's rollback target, named in its record */
	kiln_tags_set(&fleet, KILN_TAG_FLEET, "web");
	memcloud_add_instance(f->mc, v[1], &fleet);
	kiln_tags_release(&fleet);
	rec = kiln_strdupf("{\"previous\": {\"image_id\": \"%s\"}}", v[2]);
	assert_int_equal(f->c->ops->record_put(f->c, "/kiln/fleets/web/state", rec), 0);
	free(rec);

	assert_int_equal(kiln_prune(f->c, "web", &po, &pr), 0);
	/* newest first: v7 pending, v6 v5 kept, v4 goes, v3 v2 protected, v1 goes */
	assert_int_equal(pr.deleted.n, 2);
	assert_string_equal(pr.deleted.items[0], v[3]);
	assert_string_equal(pr.deleted.items[1], v[0]);
	assert_int_equal(pr.kept, 3);
	assert_int_equal(pr.protected_images, 2);
	kiln_prune_result_release(&pr);
	assert_int_equal(memcloud_count_images(f->mc), 9); /* dry run */
	assert_true(has_event(f, "resource", "message", "would delete web@4"));

	po.dry_run = false;
	assert_int_equal(kiln_prune(f->c, "web", &po, &pr), 0);
	assert_int_equal(pr.deleted.n, 2);
	kiln_prune_result_release(&pr);
	assert_int_equal(memcloud_count_images(f->mc), 7);
	assert_int_equal(memcloud_calls(f->mc, "image_delete"), 2);
	/* idempotent */
	assert_int_equal(kiln_prune(f->c, "web", &po, &pr), 0);
	assert_int_equal(pr.deleted.n, 0);
	kiln_prune_result_release(&pr);

	po.keep = 0;
	assert_error(kiln_prune(f->c, "web", &po, &pr), KILN_EINVALID, "at least 1");
	kiln_prune_result_release(&pr);
}

static void test_keep_versions(void **state)
{
	struct fx *f = *state;
	kiln_build_result res;
	kiln_tags fleet = KILN_TAGS_INIT;
	const char *v1;

	v1 = memcloud_add_image(f->mc, "web", 1, NULL);
	memcloud_add_image(f->mc, "web", 2, NULL);
	memcloud_add_image(f->mc, "web", 3, NULL);
	kiln_tags_set(&fleet, KILN_TAG_FLEET, "web");
	memcloud_add_instance(f->mc, v1, &fleet); /* v1 is in use: never pruned */
	kiln_tags_release(&fleet);
	write_template(f, "\"ssh_host\": \"127.0.0.1\", \"keep_versions\": 2", NULL);
	assert_int_equal(build(f, KILN_ON_ERROR_CLEANUP, &res), 0);
	assert_int_equal(res.version, 4);
	/* source + v1 (protected) + v3 + v4: v2 went */
	assert_int_equal(memcloud_count_images(f->mc), 4);
	assert_true(has_event(f, "resource", "message", "deleted web@2"));
	kiln_test_clock_advance(60000);
	assert_int_equal(memcloud_count_keypairs(f->mc), 0);
	assert_int_equal(memcloud_count_firewalls(f->mc), 0);
	assert_int_equal(journals(f), 0);
}

/* ---- aws image options: copies, settings, and what a failure or crash leaves ---- */

#define AWS_OPTIONS                                                                                   \
	"\"ssh_host\": \"127.0.0.1\", \"tags\": {\"team\": \"web\"},\n"                                 \
	"  \"aws\": {\"metadata_options\": {\"http_tokens\": \"required\"}, \"imds_support\": \"v2.0\",\n" \
	"          \"root_volume_size_gb\": 20, \"encrypt_boot\": true, \"kms_key_id\": \"key-home\",\n"  \
	"          \"ami_regions\": [\"r-east-1\", \"r-west-1\"],\n"                                           \
	"          \"region_kms_key_ids\": {\"r-east-1\": \"key-east\", \"r-west-1\": \"key-west\"},\n"        \
	"          \"ami_users\": [\"111122223333\"], \"snapshot_users\": [\"444455556666\"],\n"           \
	"          \"deprecate_at\": \"30d\"}"

/* Images of name in mc's region that are not deleted. */
static size_t live_images_named(memcloud *mc, const char *name)
{
	kiln_cloud *c = memcloud_cloud(mc);
	kiln_image_query q = { .name = name };
	kiln_image_list l = { 0 };
	size_t n;
	assert_int_equal(c->ops->images_describe(c, &q, &l), 0);
	n = l.n;
	kiln_image_list_release(&l);
	return n;
}

static void assert_settings(memcloud *mc, const char *id, int64_t deprecate_at)
{
	memcloud_image_info info;
	assert_true(memcloud_image_get(mc, id, &info));
	assert_false(info.deleted);
	assert_string_equal(info.imds_support, "v2.0");
	assert_int_equal(info.launch_users->n, 1);
	assert_string_equal(info.launch_users->items[0], "111122223333");
	assert_int_equal(info.snapshot_users->n, 1);
	assert_string_equal(info.snapshot_users->items[0], "444455556666");
	assert_int_equal(info.launch_groups->n, 0);
	assert_int_equal(info.deprecate_at, deprecate_at);
}

static void test_image_options(void **state)
{
	struct fx *f = *state;
	kiln_build_result res;
	const json_t *lo;
	kiln_image img;
	kiln_buf manifest = KILN_BUF_INIT;
	json_t *m, *cache;
	char path[4096], want[512];
	size_t i;
	int64_t deprecate_at;

	write_template(f, AWS_OPTIONS, NULL);
	assert_int_equal(build(f, KILN_ON_ERROR_CLEANUP, &res), 0);
	/* the build instance: IMDSv2, a bigger root volume, encrypted with the key */
	lo = memcloud_last_launch_options(f->mc);
	assert_non_null(lo);
	assert_string_equal(json_string_value(json_object_get(json_object_get(lo, "metadata_options"), "http_tokens")),
			    "required");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(lo, "root_volume"), "size_gb")), 20);
	assert_string_equal(json_string_value(json_object_get(json_object_get(lo, "encrypt_volumes"), "kms_key_id")),
			    "key-home");
	/* the image: settings applied, deprecated 30 days after it became available */
	deprecate_at = 0;
	{
		memcloud_image_info info;
		assert_true(memcloud_image_get(f->mc, res.image_id, &info));
		deprecate_at = info.deprecate_at;
	}
	assert_true(deprecate_at >= 1764100000 + 30 * 86400 && deprecate_at <= kiln_clock_wall_s() + 30 * 86400);
	assert_settings(f->mc, res.image_id, deprecate_at);
	assert_int_equal(describe_image(f, res.image_id, &img), 0);

	/* a copy in each region, tagged like the original, re-encrypted with that region's key */
	assert_int_equal(res.n_copies, 2);
	for (i = 0; i < 2; i++) {
		const char *region = i ? "r-west-1" : "r-east-1";
		memcloud *rm = memcloud_region(f->mc, region);
		kiln_cloud *rc = memcloud_cloud(rm);
		memcloud_image_info info;
		kiln_image_list l = { 0 };
		const char *ids[1] = { res.copies[i].image_id };
		kiln_image_query q = { .ids = ids, .n_ids = 1 };
		size_t k;

		assert_string_equal(res.copies[i].region, region);
		assert_string_not_equal(res.copies[i].image_id, res.image_id);
		assert_true(memcloud_image_get(rm, res.copies[i].image_id, &info));
		assert_string_equal(info.img->name, "web-v1");
		assert_string_equal(info.source_region, "mem-1");
		assert_true(info.encrypted);
		assert_string_equal(info.kms_key_id, i ? "key-west" : "key-east");
		assert_true(!strncmp(info.copy_token, "kiln-copy-", 10));
		assert_true(strlen(info.copy_token) <= 64);
		assert_settings(rm, res.copies[i].image_id, deprecate_at);
		assert_int_equal(rc->ops->images_describe(rc, &q, &l), 0);
		assert_int_equal(l.n, 1);
		assert_int_equal(l.items[0].state, KILN_IMAGE_AVAILABLE);
		for (k = 0; k < img.tags.n; k++)
			assert_string_equal(kiln_tags_get(&l.items[0].tags, img.tags.items[k].key),
					    img.tags.items[k].value);
		assert_int_equal(l.items[0].tags.n, img.tags.n);
		kiln_image_list_release(&l);
		/* their snapshots tagged too */
		assert_int_equal(memcloud_calls(rm, "tags_create"), 1);
		/* and recorded under the region's scope */
		snprintf(want, sizeof(want), "memory/%s", region);
		assert_int_equal(kiln_registry_cache_get(want, &cache), 0);
		assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(cache, "web"), "1"), "id")),
				    res.copies[i].image_id);
		json_decref(cache);
	}
	kiln_image_release(&img);
	assert_true(has_event(f, "step", "message", "copying"));
	/* Packer's manifest lists every region's image */
	snprintf(path, sizeof(path), "%s/kiln-manifest.json", f->dir);
	assert_int_equal(kiln_read_file(&manifest, path), 0);
	m = json_loads(manifest.ptr, 0, NULL);
	snprintf(want, sizeof(want), "mem-1:%s,r-east-1:%s,r-west-1:%s", res.image_id, res.copies[0].image_id,
		 res.copies[1].image_id);
	assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(m, "builds"), 0),
								 "artifact_id")),
			    want);
	json_decref(m);
	kiln_buf_release(&manifest);
	assert_clean(f);

	/* ami_regions naming the build's own region: that one needs no copy */
	new_cloud(f);
	write_template(f, "\"ssh_host\": \"127.0.0.1\", \"aws\": {\"ami_regions\": [\"mem-1\", \"r-east-1\"]}", NULL);
	assert_int_equal(build(f, KILN_ON_ERROR_CLEANUP, &res), 0);
	assert_int_equal(res.n_copies, 1);
	assert_string_equal(res.copies[0].region, "r-east-1");
	assert_int_equal(live_images_named(f->mc, res.image_name), 1);
	assert_int_equal(memcloud_calls(f->mc, "image_configure"), 0);
	assert_clean(f);
}

/* A failure anywhere after the image exists removes it and every copy: the version stays a gap. */
static void test_image_options_fail(void **state)
{
	struct fx *f = *state;
	kiln_build_result res;
	struct {
		const char *region; /* NULL: the build's own */
		const char *op;
		unsigned nth;
		const char *message;
		bool fail_images;
	} cases[] = {
		{ "r-west-1", "image_copy", 1, "InvalidRegion", false },
		{ "r-west-1", NULL, 0, "snapshot failed", true },
		{ "r-east-1", "tags_create", 1, "Throttling", false },
		{ NULL, "image_configure", 1, "InvalidParameter", false },
		{ "r-west-1", "image_configure", 1, "UnsupportedOperation", false },
		{ "r-east-1", "region_open", 1, "AuthFailure", false },
	};
	size_t i;

	for (i = 0; i < KILN_ARRAY_SIZE(cases); i++) {
		memcloud *target;
		new_cloud(f);
		fakecomm_reset();
		target = cases[i].region ? memcloud_region(f->mc, cases[i].region) : f->mc;
		/* region_open is the first region's op */
		if (cases[i].op && !strcmp(cases[i].op, "region_open"))
			target = f->mc;
		if (cases[i].fail_images)
			memcloud_fail_images(target, true);
		else
			memcloud_fail(target, cases[i].op, cases[i].nth, KILN_ERROR, cases[i].message);
		write_template(f, AWS_OPTIONS, NULL);
		if (build(f, KILN_ON_ERROR_ABORT, &res) >= 0)
			fail_msg("case %zu: the build should fail", i);
		if (!strstr(kiln_error_last()->message, cases[i].message))
			fail_msg("case %zu: '%s'", i, kiln_error_last()->message);
		/* nothing kept for debugging: the instance had done its part */
		assert_false(res.kept);
		assert_string_equal(res.image_id, "");
		assert_int_equal(res.n_copies, 0);
		assert_int_equal(live_images_named(f->mc, "web-v*"), 0);
		assert_int_equal(live_images_named(memcloud_region(f->mc, "r-east-1"), "web-v*"), 0);
		assert_int_equal(live_images_named(memcloud_region(f->mc, "r-west-1"), "web-v*"), 0);
		assert_clean(f);
	}
}

static void test_cancel_while_copying(void **state)
{
	struct fx *f = *state;
	kiln_build_result res;
	/* the second region's first describe: waiting for its copy */
	struct cancel_at at = { "images_describe", 1, 0 };

	memcloud_cfg(f->mc)->image_pending_ms = 60000;
	memcloud_on_call(memcloud_region(f->mc, "r-west-1"), cancel_hook, &at);
	write_template(f, AWS_OPTIONS, NULL);
	assert_int_equal(build(f, KILN_ON_ERROR_CLEANUP, &res), KILN_ECANCELLED);
	assert_int_equal(at.seen, 1);
	assert_int_equal(live_images_named(f->mc, "web-v*"), 0);
	assert_int_equal(live_images_named(memcloud_region(f->mc, "r-east-1"), "web-v*"), 0);
	assert_int_equal(live_images_named(memcloud_region(f->mc, "r-west-1"), "web-v*"), 0);
	assert_true(has_event(f, "resource", "message", "in r-west-1"));
	kiln_cancel_reset();
	assert_clean(f);
}

static int crash_waiting_for_copy(void *ctx, const char *op)
{
	(void)ctx;
	if (!strcmp(op, "images_describe"))
		longjmp(crash_env, 1);
	return 0;
}

/* SIGKILL while the copies are under way: `kiln cleanup` finds them from the journal. */
static void test_crash_while_copying(void **state)
{
	struct fx *f = *state;
	kiln_build_result res;
	kiln_cleanup_options co = { false, NULL, 0 };
	kiln_cleanup_result cr;
	kiln_journal j = KILN_JOURNAL_INIT;
	static char bid[KILN_BUILD_ID_MAX];
	char path[4096];
	int round;

	for (round = 0; round < 2; round++) {
		new_cloud(f);
		fakecomm_reset();
		write_template(f, AWS_OPTIONS, NULL);
		memcloud_on_call(memcloud_region(f->mc, "r-east-1"), crash_waiting_for_copy, NULL);
		memset(&res, 0, sizeof(res));
		kiln_build_id_new(bid);
		LSAN_OFF();
		if (setjmp(crash_env) == 0) {
			kiln_template *t = NULL;
			kiln_build_options o = KILN_BUILD_OPTIONS_INIT;
			kiln_template_load(&t, f->tpl, NULL);
			o.comm = &fakecomm_communicator;
			o.build_id = bid;
			kiln_build_run(f->c, t, &o, &res);
			fail_msg("the build should have crashed: %s", kiln_error_last()->message);
		}
		LSAN_ON();
		memcloud_on_call(memcloud_region(f->mc, "r-east-1"), NULL, NULL);
		drop_lock_fds(bid);
		assert_int_equal(live_images_named(memcloud_region(f->mc, "r-east-1"), "web-v*"), 1);
		assert_int_equal(live_images_named(memcloud_region(f->mc, "r-west-1"), "web-v*"), 1);
		snprintf(path, sizeof(path), "%s/builds/%s.json", f->state, bid);
		assert_int_equal(kiln_journal_load(&j, path), 0);
		assert_string_equal(kiln_journal_res(&j, "copy:r-west-1", "state"), "created");
		if (round == 1) {
			/* as if it died inside CopyImage: no id, found by name and build-id tag */
			json_object_del(json_object_get(json_object_get(j.doc, "resources"), "copy:r-west-1"), "id");
			kiln_journal_res_set(&j, "copy:r-west-1", "state", "creating");
		}
		kiln_journal_release(&j);

		assert_int_equal(kiln_cleanup_run(f->c, &co, &cr), 0);
		/* instance, key pair, firewall, image, two copies */
		assert_int_equal(cr.removed, 6);
		assert_int_equal(live_images_named(f->mc, "web-v*"), 0);
		assert_int_equal(live_images_named(memcloud_region(f->mc, "r-east-1"), "web-v*"), 0);
		assert_int_equal(live_images_named(memcloud_region(f->mc, "r-west-1"), "web-v*"), 0);
		assert_clean(f);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_build_success, setup, teardown),
		cmocka_unit_test_setup_teardown(test_default_cidr_and_private_ip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_source_filter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_provisioner_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_launch_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_launch_lost_response, setup, teardown),
		cmocka_unit_test_setup_teardown(test_image_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ssh_unreachable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_host_key_from_console, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expect_disconnect_reconnects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ssm_parameter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_at_each_step, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abort_keeps_instance, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_then_cleanup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_before_ids_known, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cleanup_other_hosts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_version_race, setup, teardown),
		cmocka_unit_test_setup_teardown(test_journal_ahead_of_creation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prune_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keep_versions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_image_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_image_options_fail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_while_copying, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_while_copying, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
