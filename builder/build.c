#include "builder/build.h"

#include <limits.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "builder/cleanup.h"
#include "builder/journal.h"
#include "builder/prune.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/registry.h"
#include "provisioners/provision.h"

#define CONSOLE_MAX (1u << 20)
#define FINGERPRINT_BEGIN "-----BEGIN SSH HOST KEY FINGERPRINTS-----"
#define FINGERPRINT_END "-----END SSH HOST KEY FINGERPRINTS-----"

struct build {
	kiln_cloud *c;
	kiln_template *t;
	const kiln_build_options *opts;
	const kiln_events *ev;
	kiln_build_result *res;

	kiln_journal journal;
	kiln_lock lock;
	char host[256];
	char expires_at[21];
	kiln_tags temp_tags;      /* on every temporary resource */

	kiln_image source;
	bool have_source;
	kiln_strings cidrs;
	kiln_keypair key;
	bool have_key;
	char keypair_name[KILN_NAME_MAX];
	char firewall_id[KILN_ID_MAX];
	char instance_id[KILN_ID_MAX];
	char address[KILN_NAME_MAX];
	void *session;

	/* the image, between its creation and the end of the build */
	bool image_made;          /* exists: --on-error abort has nothing left to debug */
	kiln_tags image_tags;     /* on it, its snapshots and its copies */
	char *description;
	struct copy {
		char region[KILN_ID_MAX];
		char kind[KILN_ID_MAX + 8]; /* its journal entry: "copy:REGION" */
		kiln_cloud *cloud;          /* the provider for that region */
		char id[KILN_ID_MAX];
		kiln_image img;             /* once available */
	} *copies;
	size_t n_copies;
};

/* ---- helpers ---- */

int kiln_build_id_new(char out[KILN_BUILD_ID_MAX])
{
	unsigned char rnd[4];
	struct tm tm;
	time_t now = (time_t)kiln_clock_wall_s();

	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return kiln_error_set(KILN_ERROR, "cannot get random bytes for a build id");
	gmtime_r(&now, &tm);
	snprintf(out, KILN_BUILD_ID_MAX, "%04d%02d%02dT%02d%02d%02dZ-%02x%02x%02x%02x",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 rnd[0], rnd[1], rnd[2], rnd[3]);
	return 0;
}

static bool build_id_valid(const char *id)
{
	size_t i, n = strlen(id);
	if (n == 0 || n >= KILN_BUILD_ID_MAX - 1)
		return false;
	for (i = 0; i < n; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", id[i]))
			return false;
	return true;
}

int kiln_console_host_fingerprints(const char *text, size_t len, kiln_strings *out)
{
	const char *end = text + len, *block = NULL, *p, *stop;
	int error;

	/* the last block wins: a console log spans every boot of the instance */
	for (p = text; p < end;) {
		const char *hit = memmem(p, (size_t)(end - p), FINGERPRINT_BEGIN, strlen(FINGERPRINT_BEGIN));
		if (!hit)
			break;
		block = hit + strlen(FINGERPRINT_BEGIN);
		p = block;
	}
	if (!block)
		return 0;
	stop = memmem(block, (size_t)(end - block), FINGERPRINT_END, strlen(FINGERPRINT_END));
	if (!stop)
		stop = end; /* cut short: take what is there */
	for (p = block; p < stop;) {
		const char *nl = memchr(p, '\n', (size_t)(stop - p));
		const char *line_end = nl ? nl : stop;
		const char *fp = memmem(p, (size_t)(line_end - p), "SHA256:", 7);
		if (fp) {
			const char *q = fp + 7;
			char value[128];
			/* base64 without padding, as ssh-keygen -l prints it */
			while (q < line_end && (((*q | 32) >= 'a' && (*q | 32) <= 'z') ||
						(*q >= '0' && *q <= '9') || *q == '+' || *q == '/' ||
						*q == '='))
				q++;
			if (q - fp > 7 && (size_t)(q - fp) < sizeof(value)) {
				memcpy(value, fp, (size_t)(q - fp));
				value[q - fp] = '\0';
				if (!kiln_strings_has(out, value) && (error = kiln_strings_add(out, value)) < 0)
					return error;
			}
		}
		p = line_end + 1;
	}
	return 0;
}

static void resource_event(struct build *b, const char *kind, const char *id, const char *action)
{
	kiln_emit(b->ev, "resource", KILN_LEVEL_DEBUG,
		  json_pack("{s:s,s:s,s:s,s:s}", "kind", kind, "id", id, "action", action, "build_id",
			    b->res->build_id),
		  "%s %s %s", action, kind, id);
}

/* ---- step 0: the build's identity, lock and journal ---- */

static int begin(struct build *b)
{
	kiln_buf dir = KILN_BUF_INIT, lock = KILN_BUF_INIT;
	char started[21];
	json_t *header = NULL;
	int64_t now = kiln_clock_wall_s();
	int error;

	if (b->opts->build_id) {
		if (!build_id_valid(b->opts->build_id))
			return kiln_error_set(KILN_EINVALID, "bad build id '%s'", b->opts->build_id);
		snprintf(b->res->build_id, sizeof(b->res->build_id), "%s", b->opts->build_id);
	} else if ((error = kiln_build_id_new(b->res->build_id)) < 0) {
		return error;
	}
	if (gethostname(b->host, sizeof(b->host) - 1) < 0)
		snprintf(b->host, sizeof(b->host), "localhost");
	kiln_format_iso8601(started, now);
	kiln_format_iso8601(b->expires_at, now + b->t->build_timeout_s);

	if ((error = kiln_journal_dir(&dir)) < 0 ||
	    (error = kiln_buf_printf(&lock, "%s/%s.lock", dir.ptr, b->res->build_id)) < 0)
		goto done;
	/* held until the end: `kiln cleanup` leaves a build alone while it runs */
	if ((error = kiln_lock_acquire(&b->lock, lock.ptr, 0)) < 0)
		goto done;
	/* only builds other than this one */
	if ((error = kiln_cleanup_report_leftovers(b->ev, b->res->build_id, &b->res->leftovers)) < 0)
		goto done;

	header = json_pack("{s:s,s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "host", b->host, "pid",
			   (json_int_t)getpid(), "provider", kiln_cloud_name(b->c), "region",
			   b->c->region, "name", b->t->name, "template", b->t->path, "started_at",
			   started, "expires_at", b->expires_at, "state", "running");
	if (!header) {
		error = kiln_error_set(KILN_ENOMEM, "out of memory");
		goto done;
	}
	if ((error = kiln_journal_create(&b->journal, dir.ptr, b->res->build_id, header)) < 0)
		goto done;

	if ((error = kiln_tags_set(&b->temp_tags, KILN_TAG_BUILD_ID, b->res->build_id)) < 0 ||
	    (error = kiln_tags_set(&b->temp_tags, KILN_TAG_EXPIRES_AT, b->expires_at)) < 0 ||
	    (error = kiln_tags_set(&b->temp_tags, "Name", "kiln build")) < 0)
		goto done;
	snprintf(b->keypair_name, sizeof(b->keypair_name), "kiln-%s-%s", b->t->name,
		 b->res->build_id);
	{
		/* the local provider's region is "local": "on local", not "on local local" */
		bool region = b->c->region[0] && strcmp(b->c->region, kiln_cloud_name(b->c));
		kiln_step(b->ev, "start", "build %s of '%s' on %s%s%s", b->res->build_id, b->t->name,
			  kiln_cloud_name(b->c), region ? " " : "", region ? b->c->region : "");
	}
done:
	json_decref(header);
	kiln_buf_release(&dir);
	kiln_buf_release(&lock);
	return error;
}

/* ---- step 1: the source image and the admitted addresses ---- */

static int newest_available(const kiln_image_list *list, const kiln_image **out)
{
	size_t i;
	*out = NULL;
	for (i = 0; i < list->n; i++) {
		const kiln_image *img = &list->items[i];
		if (img->state != KILN_IMAGE_AVAILABLE)
			continue;
		/* ties on time go to the greater name, so the choice is stable */
		if (!*out || img->created > (*out)->created ||
		    (img->created == (*out)->created && strcmp(img->name, (*out)->name) > 0))
			*out = img;
	}
	return *out ? 0 : KILN_ENOTFOUND;
}

static void describe_filter(const kiln_template *t, char *out, size_t size)
{
	size_t i, o = 0;
	o += (size_t)snprintf(out + o, size - o, "source_image_filter");
	if (t->filter_name && o < size)
		o += (size_t)snprintf(out + o, size - o, " name '%s'", t->filter_name);
	for (i = 0; i < t->filter_owners.n && o < size; i++)
		o += (size_t)snprintf(out + o, size - o, "%s'%s'", i ? ", " : " owners ",
				      t->filter_owners.items[i]);
	for (i = 0; i < t->filter_tags.n && o < size; i++)
		o += (size_t)snprintf(out + o, size - o, "%s%s=%s", i ? ", " : " tags ",
				      t->filter_tags.items[i].key, t->filter_tags.items[i].value);
}

static int resolve_source(struct build *b)
{
	kiln_template *t = b->t;
	kiln_image_list list = { 0 };
	const kiln_image *pick = NULL;
	int error;

	if (t->source_image) {
		kiln_image_ref ref;
		if (kiln_image_ref_parse(&ref, t->source_image) == 0) {
			/* an id, or a kiln image NAME[@N] built before */
			error = kiln_registry_resolve(b->c, &ref, &b->source);
			if (error == 0 || ref.id[0] || ref.version || error != KILN_ENOTFOUND)
				goto found;
		}
		/* a provider's base name ("debian-12" on local): the newest of that name */
		{
			kiln_image_query q = { .name = t->source_image };
			if ((error = b->c->ops->images_describe(b->c, &q, &list)) < 0)
				goto done;
		}
		if (newest_available(&list, &pick) < 0) {
			error = kiln_error_set(KILN_ENOTFOUND, "no source image '%s'", t->source_image);
			goto done;
		}
		error = kiln_image_copy(&b->source, pick);
		goto found;
	} else {
		kiln_image_query q = { .name = t->filter_name, .tags = &t->filter_tags };
		char what[1024];
		if (t->filter_owners.n) {
			q.owners = (const char *const *)t->filter_owners.items;
			q.n_owners = t->filter_owners.n;
		}
		if ((error = b->c->ops->images_describe(b->c, &q, &list)) < 0)
			goto done;
		if (newest_available(&list, &pick) < 0) {
			describe_filter(t, what, sizeof(what));
			error = kiln_error_set(KILN_ENOTFOUND, "no available image matches %s", what);
			goto done;
		}
		error = kiln_image_copy(&b->source, pick);
	}
found:
	if (error < 0) {
		kiln_error_prefix("source image");
		goto done;
	}
	b->have_source = true;
	snprintf(b->res->source_image_id, sizeof(b->res->source_image_id), "%s", b->source.id);
	kiln_step(b->ev, "source", "source image %s (%s)", b->source.id, b->source.name);
done:
	kiln_image_list_release(&list);
	return error;
}

static int pick_cidrs(struct build *b)
{
	kiln_buf cidr = KILN_BUF_INIT;
	size_t i;
	int error;

	if (b->t->temporary_cidrs.n) {
		for (i = 0; i < b->t->temporary_cidrs.n; i++)
			if ((error = kiln_strings_add(&b->cidrs, b->t->temporary_cidrs.items[i])) < 0)
				return error;
		return 0;
	}
	/* the default is this machine only, never the world */
	if (kiln_host_is_loopback(b->t->ssh_host))
		return kiln_strings_add(&b->cidrs, "127.0.0.1/32");
	error = b->c->ops->caller_cidr(b->c, b->t->subnet_id, &cidr);
	if (error == KILN_ENOTFOUND)
		error = kiln_error_set(KILN_EINVALID,
				       "cannot tell this machine's address as the cloud sees it: set \"temporary_cidrs\" in %s",
				       b->t->path);
	else if (error == 0 && kiln_cidr_check(cidr.ptr) < 0)
		error = kiln_error_prefix("the provider's idea of this machine's address");
	if (error == 0)
		error = kiln_strings_add(&b->cidrs, cidr.ptr);
	kiln_buf_release(&cidr);
	return error;
}

/* ---- step 2: the version ---- */

static int reserve_version(struct build *b)
{
	int64_t v = 0;
	int error;

	if ((error = kiln_registry_reserve_version(b->c, b->t->name, b->res->build_id, &v)) < 0) {
		const kiln_error *e = kiln_error_last();
		if (e->code == KILN_EAUTH)
			return kiln_error_prefix("kiln reserves image versions in SSM Parameter Store and needs ssm:PutParameter and ssm:GetParameter");
		return error;
	}
	b->res->version = v;
	snprintf(b->res->image_name, sizeof(b->res->image_name), "%s-v%lld", b->t->name, (long long)v);
	if ((error = kiln_template_set_version(b->t, v)) < 0 ||
	    (error = kiln_journal_set_int(&b->journal, "version", v)) < 0)
		return error;
	{
		char name[KILN_NAME_MAX];
		snprintf(name, sizeof(name), "kiln build %s", b->res->image_name);
		if ((error = kiln_tags_set(&b->temp_tags, "Name", name)) < 0)
			return error;
	}
	kiln_step(b->ev, "version", "reserved %s@%lld", b->t->name, (long long)v);
	return 0;
}

/* ---- step 3: key pair and firewall ---- */

static int create_access(struct build *b)
{
	char comment[KILN_NAME_MAX];
	kiln_firewall fw = { 0 };
	int error;

	snprintf(comment, sizeof(comment), "kiln-build-%s", b->res->build_id);
	if ((error = kiln_keypair_generate_ed25519(&b->key, comment)) < 0)
		return error;
	b->have_key = true;

	if ((error = kiln_journal_res_set(&b->journal, "keypair", "name", b->keypair_name)) < 0 ||
	    (error = kiln_journal_res_set(&b->journal, "keypair", "state", "creating")) < 0)
		return error;
	if ((error = b->c->ops->keypair_import(b->c, b->keypair_name, b->key.public_openssh,
					       &b->temp_tags)) < 0)
		return kiln_error_prefix("cannot import key pair '%s'", b->keypair_name);
	if ((error = kiln_journal_res_set(&b->journal, "keypair", "state", "created")) < 0)
		return error;
	resource_event(b, "keypair", b->keypair_name, "created");

	fw.name = b->keypair_name;
	fw.description = "kiln build: SSH from the building machine only";
	fw.subnet_id = b->t->subnet_id;
	fw.port = b->t->ssh_port;
	fw.cidrs = (const char *const *)b->cidrs.items;
	fw.n_cidrs = b->cidrs.n;
	fw.tags = &b->temp_tags;
	if ((error = kiln_journal_res_set(&b->journal, "firewall", "name", fw.name)) < 0 ||
	    (error = kiln_journal_res_set(&b->journal, "firewall", "state", "creating")) < 0)
		return error;
	if ((error = b->c->ops->firewall_create(b->c, &fw, b->firewall_id)) < 0)
		return kiln_error_prefix("cannot create firewall '%s'", fw.name);
	if ((error = kiln_journal_res_set(&b->journal, "firewall", "id", b->firewall_id)) < 0 ||
	    (error = kiln_journal_res_set(&b->journal, "firewall", "state", "created")) < 0)
		return error;
	resource_event(b, "firewall", b->firewall_id, "created");
	{
		char list[512] = "";
		size_t i, o = 0;
		for (i = 0; i < b->cidrs.n && o < sizeof(list); i++)
			o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s", i ? ", " : "",
					      b->cidrs.items[i]);
		kiln_step(b->ev, "access", "key pair %s, firewall %s admitting port %d from %s",
			  b->keypair_name, b->firewall_id, b->t->ssh_port, list);
	}
	return 0;
}

/* ---- step 4: launch and connect ---- */

static int launch(struct build *b)
{
	kiln_instance_list made = { 0 }, up = { 0 };
	const char *groups[1] = { b->firewall_id };
	const char *ids[1];
	char token[KILN_BUILD_ID_MAX + 8];
	kiln_launch spec = { 0 };
	const kiln_instance *inst;
	int error;

	/* the same build id launches once, however often the request is retried */
	snprintf(token, sizeof(token), "kiln-%s", b->res->build_id);
	spec.image_id = b->source.id;
	spec.instance_type = b->t->instance_type;
	spec.subnet_id = b->t->subnet_id;
	spec.security_group_ids = groups;
	spec.n_security_groups = 1;
	spec.key_name = b->keypair_name;
	spec.iam_instance_profile = b->t->iam_instance_profile;
	spec.user_data = b->t->user_data;
	spec.count = 1;
	spec.client_token = token;
	spec.tags = &b->temp_tags;
	spec.options = b->t->launch_options;

	if ((error = kiln_journal_res_set(&b->journal, "instance", "token", token)) < 0 ||
	    (error = kiln_journal_res_set(&b->journal, "instance", "state", "creating")) < 0)
		goto done;
	if ((error = b->c->ops->instances_launch(b->c, &spec, &made)) < 0) {
		kiln_error_prefix("cannot launch the build instance from '%s'", b->source.id);
		goto done;
	}
	if (made.n != 1) {
		error = kiln_error_set(KILN_ERROR, "launching the build instance returned %zu instances",
				       made.n);
		goto done;
	}
	snprintf(b->instance_id, sizeof(b->instance_id), "%s", made.items[0].id);
	if ((error = kiln_journal_res_set(&b->journal, "instance", "id", b->instance_id)) < 0 ||
	    (error = kiln_journal_res_set(&b->journal, "instance", "state", "created")) < 0)
		goto done;
	resource_event(b, "instance", b->instance_id, "created");
	kiln_step(b->ev, "launch", "launched %s (%s), waiting for it to run", b->instance_id,
		  b->t->instance_type ? b->t->instance_type : "default type");

	ids[0] = b->instance_id;
	/* the shared waiter polls from 250 ms, backing off to 5 s */
	if ((error = kiln_cloud_wait_instances(b->c, ids, 1, KILN_INSTANCE_RUNNING,
					       (uint64_t)b->t->launch_timeout_s * 1000, &up)) < 0) {
		kiln_error_prefix("build instance '%s'", b->instance_id);
		goto done;
	}
	inst = kiln_instance_list_find(&up, b->instance_id);
	if (b->t->ssh_host)
		snprintf(b->address, sizeof(b->address), "%s", b->t->ssh_host);
	else if (inst && b->t->ssh_interface == KILN_SSH_PRIVATE_IP && inst->private_ip[0])
		snprintf(b->address, sizeof(b->address), "%s", inst->private_ip);
	else if (inst && b->t->ssh_interface == KILN_SSH_PUBLIC_IP && inst->public_ip[0])
		snprintf(b->address, sizeof(b->address), "%s", inst->public_ip);
	else {
		error = kiln_error_set(KILN_ERROR,
				       "build instance '%s' has no %s address: set \"ssh_interface\" or \"ssh_host\"",
				       b->instance_id,
				       b->t->ssh_interface == KILN_SSH_PRIVATE_IP ? "private" : "public");
		goto done;
	}
	kiln_emit(b->ev, "instance", KILN_LEVEL_INFO,
		  json_pack("{s:s,s:s,s:s}", "id", b->instance_id, "state", "running", "address",
			    b->address),
		  "%s is running; SSH at %s:%d", b->instance_id, b->address, b->t->ssh_port);
done:
	kiln_instance_list_release(&made);
	kiln_instance_list_release(&up);
	return error;
}

static int connect_instance(struct build *b, bool quiet)
{
	kiln_strings fps = { 0 };
	kiln_buf console = KILN_BUF_INIT;
	kiln_ssh_options o = { 0 };
	const char *hk;
	int error;

	/*
	 * cloud-init prints the host key fingerprints to the console; where
	 * it has (already), the key is checked against them, else recorded.
	 */
	kiln_buf_init(&console, CONSOLE_MAX);
	if (b->c->ops->console_output(b->c, b->instance_id, &console) == 0)
		kiln_console_host_fingerprints(console.ptr, console.len, &fps);
	else
		kiln_error_clear();
	kiln_buf_release(&console);

	o.host = b->address;
	o.port = b->t->ssh_port;
	o.username = b->t->ssh_username;
	o.key = &b->key;
	o.timeout_ms = (uint64_t)b->t->ssh_timeout_s * 1000;
	o.host_key_fingerprints = (const char *const *)fps.items;
	o.n_host_key_fingerprints = fps.n;
	o.events = b->ev;
	if (!quiet)
		kiln_step(b->ev, "connect", "connecting to %s@%s:%d (up to %llds)", o.username,
			  o.host, o.port, (long long)b->t->ssh_timeout_s);
	if ((error = b->opts->comm->connect(&b->session, &o)) < 0) {
		b->session = NULL;
		kiln_error_prefix("cannot reach the build instance over SSH at %s:%d", o.host, o.port);
		goto done;
	}
	hk = b->opts->comm->host_key ? b->opts->comm->host_key(b->session) : NULL;
	if (hk && strcmp(hk, b->res->host_key)) {
		if (b->res->host_key[0]) {
			/* a reconnect (after a reboot) must meet the same machine */
			error = kiln_error_set(KILN_ERROR,
					       "the build instance's host key changed from %s to %s",
					       b->res->host_key, hk);
			goto done;
		}
		snprintf(b->res->host_key, sizeof(b->res->host_key), "%s", hk);
		b->res->host_key_verified = fps.n > 0;
		kiln_journal_set_str(&b->journal, "host_key", hk);
		kiln_emit(b->ev, "info", KILN_LEVEL_INFO,
			  json_pack("{s:s,s:b}", "host_key", hk, "verified", fps.n > 0),
			  fps.n ? "host key %s matches the console's fingerprints"
				: "host key %s recorded (no fingerprints in the console yet)",
			  hk);
	}
done:
	kiln_strings_release(&fps);
	return error;
}

static void disconnect(struct build *b)
{
	if (b->session && b->opts->comm->close)
		b->opts->comm->close(b->session);
	b->session = NULL;
}

/* ---- step 5: provisioners ---- */

static int provision(struct build *b)
{
	kiln_provision_stats stats = { 0 };
	size_t i;
	int error = 0;

	kiln_step(b->ev, "provision", "provisioning: %zu provisioner%s", b->t->n_provisioners,
		  b->t->n_provisioners == 1 ? "" : "s");
	for (i = 0; i < b->t->n_provisioners; i++) {
		const kiln_provisioner *p = &b->t->provisioners[i];
		if (!b->session && (error = connect_instance(b, true)) < 0)
			break;
		stats.disconnected = false;
		if ((error = kiln_provision_run(b->opts->comm, b->session, p, b->ev, &stats)) < 0)
			break;
		/* after an expected disconnect (a reboot), the next one needs a new session */
		if (stats.disconnected)
			disconnect(b);
		if ((error = kiln_sleep_ms(0)) < 0)
			break;
	}
	b->res->bytes_uploaded = stats.bytes_uploaded;
	b->res->upload_ms = stats.upload_ms;
	b->res->commands = stats.commands;
	return error;
}

/* ---- step 6: the image ---- */

static int image_tags(struct build *b, kiln_tags *tags)
{
	char v[32], when[21];
	int error;

	snprintf(v, sizeof(v), "%lld", (long long)b->res->version);
	kiln_format_iso8601(when, kiln_clock_wall_s());
	if ((error = kiln_tags_copy(tags, &b->t->tags)) < 0 ||
	    (error = kiln_tags_set(tags, KILN_TAG_IMAGE, b->t->name)) < 0 ||
	    (error = kiln_tags_set(tags, KILN_TAG_VERSION, v)) < 0 ||
	    (error = kiln_tags_set(tags, KILN_TAG_SOURCE_IMAGE, b->source.id)) < 0 ||
	    (error = kiln_tags_set(tags, KILN_TAG_TEMPLATE_SHA256, b->t->sha256)) < 0 ||
	    (error = kiln_tags_set(tags, KILN_TAG_BUILT_AT, when)) < 0 ||
	    (error = kiln_tags_set(tags, KILN_TAG_BUILD_ID, b->res->build_id)) < 0)
		return error;
	if (!kiln_tags_get(tags, "Name"))
		return kiln_tags_set(tags, "Name", b->res->image_name);
	return 0;
}

static int make_image(struct build *b, kiln_image *img)
{
	kiln_tags *tags = &b->image_tags;
	const char *ids[1] = { b->instance_id };
	char image_id[KILN_ID_MAX] = "";
	int error;

	kiln_step(b->ev, "stop", "stopping %s", b->instance_id);
	if ((error = b->c->ops->instances_stop(b->c, ids, 1)) < 0) {
		kiln_error_prefix("cannot stop the build instance '%s'", b->instance_id);
		goto done;
	}
	if ((error = kiln_cloud_wait_instances(b->c, ids, 1, KILN_INSTANCE_STOPPED,
					       (uint64_t)b->t->launch_timeout_s * 1000, NULL)) < 0) {
		kiln_error_prefix("build instance '%s'", b->instance_id);
		goto done;
	}
	if ((error = image_tags(b, tags)) < 0)
		goto done;
	b->description = b->t->description ? kiln_strdup(b->t->description)
					    : kiln_strdupf("%s version %lld, built by kiln from %s",
							   b->t->name, (long long)b->res->version,
							   b->source.id);
	if (!b->description) {
		error = KILN_ENOMEM;
		goto done;
	}
	if ((error = kiln_journal_res_set(&b->journal, "image", "name", b->res->image_name)) < 0 ||
	    (error = kiln_journal_res_set(&b->journal, "image", "state", "creating")) < 0)
		goto done;
	kiln_step(b->ev, "image", "creating image %s from %s", b->res->image_name, b->instance_id);
	if ((error = b->c->ops->image_create(b->c, b->instance_id, b->res->image_name,
					     b->description, tags, image_id)) < 0) {
		if (error == KILN_ECONFLICT)
			kiln_error_prefix("an image named '%s' exists already, made outside kiln's version records",
					  b->res->image_name);
		else
			kiln_error_prefix("cannot create image '%s'", b->res->image_name);
		goto done;
	}
	if ((error = kiln_journal_res_set(&b->journal, "image", "id", image_id)) < 0 ||
	    (error = kiln_journal_res_set(&b->journal, "image", "state", "created")) < 0)
		goto done;
	resource_event(b, "image", image_id, "created");
	b->image_made = true;
	if ((error = kiln_cloud_wait_image(b->c, image_id, (uint64_t)b->t->image_timeout_s * 1000,
					   img)) < 0)
		goto done;
	/* the snapshots carry the same tags, so they can be traced without the image */
	if (img->snapshots.n &&
	    (error = b->c->ops->tags_create(b->c, (const char *const *)img->snapshots.items,
					    img->snapshots.n, tags)) < 0) {
		kiln_error_prefix("cannot tag the snapshots of '%s'", image_id);
		goto done;
	}
	kiln_step(b->ev, "image", "image %s (%s@%lld) is available", image_id, b->t->name,
		  (long long)b->res->version);
done:
	return error;
}

/* ---- step 6a: copies to other regions, and the image settings ---- */

/* The copy's ClientToken: one per build and region, so a retried CopyImage makes one copy. */
static void copy_token(const char *build_id, const char *region, char out[KILN_ID_MAX])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0, i;
	char in[KILN_BUILD_ID_MAX + KILN_ID_MAX + 2];

	snprintf(in, sizeof(in), "%s/%s", build_id, region);
	EVP_Digest(in, strlen(in), md, &n, EVP_sha256(), NULL);
	snprintf(out, KILN_ID_MAX, "kiln-copy-");
	for (i = 0; i < 16 && i < n; i++)
		snprintf(out + 10 + 2 * i, KILN_ID_MAX - 10 - 2 * i, "%02x", md[i]);
}

static void copy_event(struct build *b, const struct copy *cp, const char *action)
{
	kiln_emit(b->ev, "resource", KILN_LEVEL_DEBUG,
		  json_pack("{s:s,s:s,s:s,s:s,s:s}", "kind", "image", "id", cp->id, "region",
			    cp->region, "action", action, "build_id", b->res->build_id),
		  "%s image %s in %s", action, cp->id, cp->region);
}

/*
 * Starts a copy to every region of ami_regions, then waits for them all:
 * the copies run side by side in the cloud, and the waits cost no more
 * than the slowest. Each is journaled before its CopyImage, so `kiln
 * cleanup` finds it after a crash (by id, or by name and tag).
 */
static int copy_regions(struct build *b, const kiln_image *img)
{
	const kiln_template *t = b->t;
	uint64_t deadline;
	size_t i;
	int error;

	if (!t->ami_regions.n)
		return 0;
	if (!b->c->ops->region_open || !b->c->ops->image_copy)
		return kiln_error_set(KILN_EUNSUPPORTED, "the %s provider cannot copy images to other regions",
				      kiln_cloud_name(b->c));
	if (!(b->copies = calloc(t->ami_regions.n, sizeof(*b->copies))))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	kiln_step(b->ev, "copy", "copying %s to %zu other region%s", img->id, t->ami_regions.n,
		  t->ami_regions.n == 1 ? "" : "s");
	for (i = 0; i < t->ami_regions.n; i++) {
		const char *region = t->ami_regions.items[i];
		struct copy *cp = &b->copies[b->n_copies];
		kiln_image_copy_spec spec = { 0 };
		char token[KILN_ID_MAX];

		if (!strcmp(region, b->c->region)) {
			/* a template without "region" meets the configuration's here */
			kiln_info(b->ev, "%s is the build's own region: no copy needed", region);
			continue;
		}
		snprintf(cp->region, sizeof(cp->region), "%s", region);
		snprintf(cp->kind, sizeof(cp->kind), "copy:%s", region);
		b->n_copies++;
		if ((error = b->c->ops->region_open(b->c, region, &cp->cloud)) < 0)
			return error;
		copy_token(b->res->build_id, region, token);
		if ((error = kiln_journal_res_set(&b->journal, cp->kind, "region", region)) < 0 ||
		    (error = kiln_journal_res_set(&b->journal, cp->kind, "name", b->res->image_name)) < 0 ||
		    (error = kiln_journal_res_set(&b->journal, cp->kind, "token", token)) < 0 ||
		    (error = kiln_journal_res_set(&b->journal, cp->kind, "state", "creating")) < 0)
			return error;
		spec.source_region = b->c->region;
		spec.source_id = img->id;
		spec.name = b->res->image_name;
		spec.description = b->description;
		spec.encrypted = t->encrypt_boot;
		spec.kms_key_id = kiln_tags_get(&t->region_kms_key_ids, region);
		spec.client_token = token;
		spec.tags = &b->image_tags;
		if ((error = cp->cloud->ops->image_copy(cp->cloud, &spec, cp->id)) < 0)
			return error;
		if ((error = kiln_journal_res_set(&b->journal, cp->kind, "id", cp->id)) < 0 ||
		    (error = kiln_journal_res_set(&b->journal, cp->kind, "state", "created")) < 0)
			return error;
		copy_event(b, cp, "created");
	}
	deadline = kiln_clock_now_ms() + (uint64_t)t->image_timeout_s * 1000;
	for (i = 0; i < b->n_copies; i++) {
		struct copy *cp = &b->copies[i];
		uint64_t now = kiln_clock_now_ms();
		if ((error = kiln_cloud_wait_image(cp->cloud, cp->id, deadline > now ? deadline - now : 1,
						   &cp->img)) < 0)
			return kiln_error_prefix("copy to %s", cp->region);
		if (cp->img.snapshots.n &&
		    (error = cp->cloud->ops->tags_create(cp->cloud,
							 (const char *const *)cp->img.snapshots.items,
							 cp->img.snapshots.n, &b->image_tags)) < 0)
			return kiln_error_prefix("cannot tag the snapshots of '%s' in %s", cp->id,
						 cp->region);
		kiln_info(b->ev, "copy %s in %s is available", cp->id, cp->region);
	}
	return 0;
}

/* IMDSv2, sharing and deprecation, on the image and on every copy. */
static int configure_images(struct build *b, const kiln_image *img)
{
	const kiln_template *t = b->t;
	kiln_image_settings s = { 0 };
	size_t i;
	int error;

	s.imds_support = t->imds_support;
	s.launch_users = (const char *const *)t->ami_users.items;
	s.n_launch_users = t->ami_users.n;
	s.launch_groups = (const char *const *)t->ami_groups.items;
	s.n_launch_groups = t->ami_groups.n;
	s.snapshot_users = (const char *const *)t->snapshot_users.items;
	s.n_snapshot_users = t->snapshot_users.n;
	s.snapshot_groups = (const char *const *)t->snapshot_groups.items;
	s.n_snapshot_groups = t->snapshot_groups.n;
	/* a duration counts from now: the image has just become available */
	s.deprecate_at = t->deprecate_at ? t->deprecate_at
		       : t->deprecate_after_s ? kiln_clock_wall_s() + t->deprecate_after_s : 0;
	if (!s.imds_support && !s.n_launch_users && !s.n_launch_groups && !s.n_snapshot_users &&
	    !s.n_snapshot_groups && !s.deprecate_at)
		return 0;
	if (!b->c->ops->image_configure)
		return kiln_error_set(KILN_EUNSUPPORTED, "the %s provider has no image settings",
				      kiln_cloud_name(b->c));
	kiln_step(b->ev, "settings", "applying the image settings to %s%s", img->id,
		  b->n_copies ? " and its copies" : "");
	if ((error = b->c->ops->image_configure(b->c, img->id, &s)) < 0)
		return error;
	for (i = 0; i < b->n_copies; i++)
		if ((error = b->copies[i].cloud->ops->image_configure(b->copies[i].cloud,
								      b->copies[i].id, &s)) < 0)
			return kiln_error_prefix("copy in %s", b->copies[i].region);
	if (s.deprecate_at) {
		char when[21];
		kiln_format_iso8601(when, s.deprecate_at);
		kiln_info(b->ev, "%s%s deprecated from %s", img->id, b->n_copies ? " and its copies are" : " is",
			  when);
	}
	return 0;
}

/* From here the image and its copies are the build's product, not something to clean up. */
static int finish_image(struct build *b, const kiln_image *img)
{
	size_t i;
	int error;

	for (i = 0; i < b->n_copies; i++)
		if ((error = kiln_journal_res_set(&b->journal, b->copies[i].kind, "state", "recorded")) < 0)
			return error;
	if ((error = kiln_journal_res_set(&b->journal, "image", "state", "recorded")) < 0)
		return error;
	snprintf(b->res->image_id, sizeof(b->res->image_id), "%s", img->id);
	for (i = 0; i < b->n_copies && i < KILN_BUILD_MAX_COPIES; i++) {
		snprintf(b->res->copies[i].region, sizeof(b->res->copies[i].region), "%s",
			 b->copies[i].region);
		snprintf(b->res->copies[i].image_id, sizeof(b->res->copies[i].image_id), "%s",
			 b->copies[i].id);
		b->res->n_copies++;
	}
	return 0;
}

/* ---- step 7: record it ---- */

static int write_manifest(struct build *b, const kiln_image *img)
{
	kiln_buf path = KILN_BUF_INIT, lockp = KILN_BUF_INIT, old = KILN_BUF_INIT, dir = KILN_BUF_INIT;
	kiln_lock lock = KILN_LOCK_INIT;
	kiln_buf artifact = KILN_BUF_INIT;
	json_t *root = NULL, *builds, *entry;
	char *text = NULL, v[32];
	int error;

	if (b->opts->manifest_path)
		error = kiln_buf_puts(&path, b->opts->manifest_path);
	else if ((error = kiln_dirname(&dir, b->t->path)) == 0)
		error = kiln_path_join(&path, dir.ptr, "kiln-manifest.json");
	if (error < 0 || (error = kiln_buf_printf(&lockp, "%s.lock", path.ptr)) < 0)
		goto done;
	snprintf(b->res->manifest_path, sizeof(b->res->manifest_path), "%s", path.ptr);
	/* two builds finishing side by side must both end up in it */
	if ((error = kiln_lock_acquire(&lock, lockp.ptr, 10000)) < 0)
		goto done;
	kiln_buf_init(&old, 16 << 20);
	if (kiln_read_file(&old, path.ptr) == 0)
		root = json_loadb(old.ptr, old.len, 0, NULL);
	kiln_error_clear();
	if (!json_is_object(root) || !json_is_array(json_object_get(root, "builds"))) {
		json_decref(root);
		root = json_pack("{s:[]}", "builds");
	}
	builds = json_object_get(root, "builds");
	/* Packer's form for several regions: "us-east-1:ami-1,eu-west-1:ami-2" */
	if (b->c->region[0])
		error = kiln_buf_printf(&artifact, "%s:%s", b->c->region, img->id);
	else
		error = kiln_buf_puts(&artifact, img->id);
	for (size_t i = 0; i < b->n_copies && error == 0; i++)
		error = kiln_buf_printf(&artifact, ",%s:%s", b->copies[i].region, b->copies[i].id);
	if (error < 0)
		goto done;
	snprintf(v, sizeof(v), "%lld", (long long)b->res->version);
	/* Packer's shape, so CI scripts that read Packer's manifest read this one */
	entry = json_pack("{s:s,s:s,s:I,s:n,s:s,s:s,s:{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}}", "name",
			  b->t->name, "builder_type", kiln_cloud_name(b->c), "build_time",
			  (json_int_t)kiln_clock_wall_s(), "files", "artifact_id", artifact.ptr,
			  "packer_run_uuid", b->res->build_id, "custom_data", "version", v,
			  "image_name", b->res->image_name, "image_id", img->id, "source_image",
			  b->source.id, "template_sha256", b->t->sha256, "build_id", b->res->build_id,
			  "host_key", b->res->host_key,
			  /* a recorded key was trusted on first use; a verified one matched the console */
			  "host_key_check", b->res->host_key_verified ? "verified" : "recorded");
	if (!entry || json_array_append_new(builds, entry) < 0) {
		error = kiln_error_set(KILN_ENOMEM, "out of memory");
		goto done;
	}
	json_object_set_new(root, "last_run_uuid", json_string(b->res->build_id));
	if (!(text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER))) {
		error = kiln_error_set(KILN_ENOMEM, "out of memory");
		goto done;
	}
	error = kiln_write_file_atomic(path.ptr, text, strlen(text), 0644);
done:
	kiln_lock_release(&lock);
	free(text);
	json_decref(root);
	kiln_buf_release(&path);
	kiln_buf_release(&lockp);
	kiln_buf_release(&old);
	kiln_buf_release(&dir);
	kiln_buf_release(&artifact);
	if (error < 0)
		kiln_error_prefix("cannot write the manifest");
	return error;
}

/* The local registry cache, under the scope of the region the image is in. */
static void cache_put(struct build *b, kiln_cloud *c, const kiln_image *img)
{
	kiln_image_list one = { 0 };
	char scope[2 * KILN_ID_MAX];
	int error;

	kiln_registry_scope(scope, sizeof(scope), c);
	if ((error = kiln_image_list_add(&one, img)) < 0 ||
	    (error = kiln_registry_cache_put(scope, &one)) < 0)
		kiln_warn(b->ev, "cannot update the local registry cache: %s", kiln_error_last()->message);
	kiln_image_list_release(&one);
}

static void keep_versions(struct build *b, kiln_cloud *c, const char *where)
{
	kiln_prune_options po = { b->t->keep_versions, false, b->ev };
	kiln_prune_result pr;

	/* the new image exists whatever pruning says: a failure here is a warning */
	if (kiln_prune(c, b->t->name, &po, &pr) < 0)
		kiln_warn(b->ev, "keep_versions%s%s: %s", where ? " in " : "", where ? where : "",
			  kiln_error_last()->message);
	else if (pr.deleted.n)
		kiln_info(b->ev, "keep_versions %lld: deleted %zu older version%s of '%s'%s%s",
			  (long long)b->t->keep_versions, pr.deleted.n, pr.deleted.n == 1 ? "" : "s",
			  b->t->name, where ? " in " : "", where ? where : "");
	kiln_prune_result_release(&pr);
	kiln_error_clear();
}

static int record(struct build *b, const kiln_image *img)
{
	size_t i;
	int error;

	kiln_step(b->ev, "record", "recording %s@%lld", b->t->name, (long long)b->res->version);
	/* the cache and the manifest are records; the image's tags are the truth */
	cache_put(b, b->c, img);
	for (i = 0; i < b->n_copies; i++)
		cache_put(b, b->copies[i].cloud, &b->copies[i].img);
	if (write_manifest(b, img) < 0)
		kiln_warn(b->ev, "%s", kiln_error_last()->message);
	kiln_error_clear();

	if (b->t->ssm_parameter) {
		if ((error = b->c->ops->record_put(b->c, b->t->ssm_parameter, img->id)) < 0)
			return kiln_error_prefix("image %s (%s@%lld) was built, but publishing it to '%s' failed",
						 img->id, b->t->name, (long long)b->res->version,
						 b->t->ssm_parameter);
		kiln_info(b->ev, "published %s to %s", img->id, b->t->ssm_parameter);
	}
	if (b->t->keep_versions) {
		keep_versions(b, b->c, b->n_copies ? b->c->region : NULL);
		for (i = 0; i < b->n_copies; i++)
			keep_versions(b, b->copies[i].cloud, b->copies[i].region);
	}
	return 0;
}

/* ---- --on-error abort ---- */

static int keep_for_debugging(struct build *b)
{
	kiln_buf dir = KILN_BUF_INIT, key = KILN_BUF_INIT;
	int error;

	if ((error = kiln_journal_dir(&dir)) < 0 ||
	    (error = kiln_buf_printf(&key, "%s/%s.key", dir.ptr, b->res->build_id)) < 0)
		goto done;
	/* only now does the private key touch the disk, 0600, so the user can ssh in */
	if ((error = kiln_write_file_atomic(key.ptr, b->key.private_openssh,
					    strlen(b->key.private_openssh), 0600)) < 0)
		goto done;
	if ((error = kiln_journal_set_str(&b->journal, "key_file", key.ptr)) < 0 ||
	    (error = kiln_journal_set_str(&b->journal, "state", "kept")) < 0)
		goto done;
	b->res->kept = true;
	snprintf(b->res->kept_instance_id, sizeof(b->res->kept_instance_id), "%s", b->instance_id);
	snprintf(b->res->kept_address, sizeof(b->res->kept_address), "%s", b->address);
	b->res->kept_port = b->t->ssh_port;
	snprintf(b->res->kept_user, sizeof(b->res->kept_user), "%s", b->t->ssh_username);
	snprintf(b->res->kept_key_path, sizeof(b->res->kept_key_path), "%s", key.ptr);
	kiln_emit(b->ev, "warning", KILN_LEVEL_WARN,
		  json_pack("{s:s,s:s,s:s,s:i,s:s,s:s}", "kind", "kept", "instance_id",
			    b->instance_id, "address", b->address, "port", b->t->ssh_port, "user",
			    b->t->ssh_username, "key_file", key.ptr),
		  "kept instance %s for debugging: ssh -i %s -p %d %s@%s; remove it and its key pair and firewall with 'kiln cleanup'",
		  b->instance_id, key.ptr, b->t->ssh_port, b->t->ssh_username,
		  b->address[0] ? b->address : "(no address yet)");
done:
	kiln_buf_release(&dir);
	kiln_buf_release(&key);
	return error;
}

/* ---- the whole ---- */

/* Each step starts by checking for a Ctrl-C, so a cancel between calls is seen at once. */
#define STEP(call)                                                         \
	do {                                                               \
		if ((error = kiln_sleep_ms(0)) < 0 || (error = (call)) < 0) \
			goto done;                                         \
	} while (0)

static int run_steps(struct build *b)
{
	kiln_image img;
	int error;

	memset(&img, 0, sizeof(img));
	STEP(resolve_source(b));
	STEP(pick_cidrs(b));
	STEP(reserve_version(b));
	STEP(create_access(b));
	STEP(launch(b));
	STEP(connect_instance(b, false));
	STEP(provision(b));
	disconnect(b);
	STEP(make_image(b, &img));
	STEP(copy_regions(b, &img));
	STEP(configure_images(b, &img));
	STEP(finish_image(b, &img));
	/* the image exists, is tagged and copied: finish recording it even if a Ctrl-C comes now */
	error = record(b, &img);
done:
	disconnect(b);
	kiln_image_release(&img);
	return error;
}

int kiln_build_run(kiln_cloud *c, kiln_template *t, const kiln_build_options *opts,
		   kiln_build_result *out)
{
	struct build b;
	kiln_error failure;
	int error, cerr = 0;

	memset(&b, 0, sizeof(b));
	memset(out, 0, sizeof(*out));
	b.c = c;
	b.t = t;
	b.opts = opts;
	b.ev = opts->events;
	b.res = out;
	b.lock.fd = -1;
	if (!opts->comm)
		return kiln_error_set(KILN_EINVALID, "no communicator");
	if (t->version)
		return kiln_error_set(KILN_EINVALID, "template '%s' was built already", t->path);

	if ((error = begin(&b)) < 0) {
		if (b.journal.path)
			kiln_journal_remove(&b.journal);
		goto done;
	}
	error = run_steps(&b);
	kiln_error_save(&failure);

	/* keep the instance to debug a failed build; once its image exists there is nothing to debug */
	if (error < 0 && error != KILN_ECANCELLED && opts->on_error == KILN_ON_ERROR_ABORT &&
	    b.instance_id[0] && b.have_key && !b.image_made) {
		if ((cerr = keep_for_debugging(&b)) == 0)
			goto restore;
		kiln_warn(b.ev, "cannot keep the instance for debugging (%s): cleaning up instead",
			  kiln_error_last()->message);
	}
	{
		kiln_cleanup_options co = { false, b.ev, opts->firewall_delete_timeout_ms, true };
		unsigned removed = 0;
		uint64_t t0 = kiln_clock_now_ms();
		kiln_step(b.ev, "cleanup", "%s", error == KILN_ECANCELLED ? "interrupted: removing what the build created"
						  : error < 0 ? "build failed: removing what it created"
							      : "removing the temporary resources");
		cerr = kiln_cleanup_journal(c, &b.journal, &co, &removed);
		if (cerr == 0)
			kiln_info(b.ev, "removed %u temporary resource%s in %.1fs", removed,
				  removed == 1 ? "" : "s", (double)(kiln_clock_now_ms() - t0) / 1000.0);
	}
	if (cerr < 0) {
		const kiln_error *ce = kiln_error_last();
		char msg[sizeof(ce->message)];
		snprintf(msg, sizeof(msg), "%s", ce->message);
		kiln_error_restore(&failure);
		if (error < 0)
			kiln_error_set(error, "%s; cleanup failed too: %s (run 'kiln cleanup')",
				       failure.message, msg);
		else
			error = kiln_error_set(cerr, "%s@%lld (%s) was built, but cleanup failed: %s (run 'kiln cleanup')",
					       t->name, (long long)out->version, out->image_id, msg);
		goto done;
	}
restore:
	if (error < 0)
		kiln_error_restore(&failure);
done:
	disconnect(&b);
	if (b.have_key)
		kiln_keypair_release(&b.key);
	if (b.have_source)
		kiln_image_release(&b.source);
	kiln_strings_release(&b.cidrs);
	kiln_tags_release(&b.temp_tags);
	kiln_tags_release(&b.image_tags);
	free(b.description);
	for (size_t i = 0; i < b.n_copies; i++) {
		kiln_cloud_free(b.copies[i].cloud);
		kiln_image_release(&b.copies[i].img);
	}
	free(b.copies);
	kiln_journal_release(&b.journal);
	kiln_lock_release(&b.lock);
	return error;
}
