#include <sys/mount.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "local/local.h"

/*
 * The local cloud as a whole: `kiln local up|status|down`, and the
 * implicit up a first launch does. Up is idempotent and is also the
 * repair: whatever a crash or a kill -9 left (dead containers recorded as
 * running, mounts, namespaces, stale pid files) is settled before anything
 * new is started, so nothing left behind ever blocks it.
 */

#define UP_LOCK_WAIT_MS (30 * 60 * 1000)

extern const kiln_cloud_ops kiln_local_ops;

int kiln_local_open(kiln_local **out, const kiln_events *events)
{
	kiln_buf state = KILN_BUF_INIT;
	kiln_local *l;
	size_t i;
	int error;

	if ((error = kiln_state_dir(&state)) < 0)
		return error;
	/* overlayfs options are comma- and colon-separated; mountinfo escapes blanks */
	for (i = 0; i < state.len; i++) {
		if (strchr(",: \t\n\\", state.ptr[i])) {
			error = kiln_error_set(KILN_EINVALID,
					       "the local provider cannot use the state dir '%s': its path "
					       "must not hold ',', ':', '\\' or blanks (set KILN_STATE_DIR)",
					       state.ptr);
			kiln_buf_release(&state);
			return error;
		}
	}
	if (!(l = calloc(1, sizeof(*l)))) {
		kiln_buf_release(&state);
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	}
	l->cloud.ops = &kiln_local_ops;
	l->cloud.events = events;
	snprintf(l->cloud.region, sizeof(l->cloud.region), "local");
	if (!(l->dir = kiln_strdupf("%s/local", state.ptr)) || (error = kiln_mkdir_p(l->dir, 0700)) < 0) {
		error = l->dir ? error : KILN_ENOMEM;
		kiln_local_close(l);
		kiln_buf_release(&state);
		return error;
	}
	kiln_buf_release(&state);
	*out = l;
	return 0;
}

void kiln_local_close(kiln_local *l)
{
	if (!l)
		return;
	free(l->dir);
	free(l);
}

static bool instances_exist(kiln_local *l)
{
	kiln_strings ids = { 0 };
	size_t i;
	bool any = false;

	if (kiln_local_instance_ids(&ids, l) < 0)
		kiln_error_clear();
	for (i = 0; i < ids.n && !any; i++) {
		json_t *doc = NULL;
		if (kiln_local_instance_load(&doc, l, ids.items[i]) == 0)
			any = strcmp(kiln_local_jstr(doc, "state"), "terminated") != 0;
		kiln_error_clear();
		json_decref(doc);
	}
	kiln_strings_release(&ids);
	return any;
}

static int up_locked(kiln_local *l, const kiln_local_up_opts *opts, bool quiet)
{
	const kiln_events *ev = KILN_LOCAL_EVENTS(l);
	kiln_local_config cfg, want;
	int error;

	if ((error = kiln_local_config_load(&cfg, l)) < 0)
		return error;
	want = cfg;
	if ((error = kiln_local_config_set(&want, opts ? opts->subnet : NULL, opts ? opts->bridge : NULL)) < 0)
		return error;
	if (cfg.saved && (strcmp(want.subnet, cfg.subnet) || strcmp(want.bridge, cfg.bridge))) {
		/* addresses are handed out from the subnet: instances pin it */
		if (instances_exist(l))
			return kiln_error_set(KILN_EINVALID,
					      "the local cloud uses subnet '%s' on bridge '%s' and has "
					      "instances: terminate them (or 'kiln local down --purge') "
					      "before changing it",
					      cfg.subnet, cfg.bridge);
		if ((error = kiln_local_bridge_remove(l, &cfg)) < 0)
			return error;
	}
	if ((error = kiln_local_require_tool("ip", "iproute2")) < 0 ||
	    (error = kiln_local_require_tool("systemd-nspawn", "systemd-container")) < 0)
		return error;
	if (!quiet)
		kiln_step(ev, "network", "settling what earlier runs left (containers, mounts, namespaces)");
	if ((error = kiln_local_instances_repair(l)) < 0)
		return error;
	if (!quiet)
		kiln_step(ev, "network", "bridge '%s' with the host's address %s/%d on subnet %s", want.bridge,
			  want.bridge_ip, want.prefix, want.subnet);
	if ((error = kiln_local_bridge_ensure(l, &want)) < 0)
		return error;
	if ((error = kiln_local_config_save(&want, l)) < 0)
		return error;
	if (!quiet)
		kiln_step(ev, "apt", "apt proxy (apt-cacher-ng) on %s:%d", want.bridge_ip, KILN_LOCAL_APT_PORT);
	if ((error = kiln_local_apt_ensure(l, &want)) < 0)
		return error;
	if ((!opts || opts->build_base) && (error = kiln_local_base_ensure(l)) < 0)
		return error;
	l->up_checked = true;
	return 0;
}

static int with_up_lock(kiln_local *l, kiln_lock *lock)
{
	kiln_buf p = KILN_BUF_INIT;
	int error;
	if ((error = kiln_local_path(&p, l, "up.lock")) == 0)
		error = kiln_lock_acquire(lock, p.ptr, UP_LOCK_WAIT_MS);
	kiln_buf_release(&p);
	return error;
}

int kiln_local_ensure_up(kiln_local *l)
{
	kiln_lock lock = KILN_LOCK_INIT;
	kiln_local_config cfg;
	int error;

	if (l->up_checked)
		return 0;
	if ((error = kiln_local_require_root("the local cloud")) < 0 || (error = with_up_lock(l, &lock)) < 0)
		return error;
	/* quiet unless it has something to do: the first launch of the day says what it builds */
	error = kiln_local_config_load(&cfg, l);
	if (error == 0)
		error = up_locked(l, NULL, cfg.saved && kiln_local_link_exists(cfg.bridge) && kiln_local_base_present(l));
	kiln_lock_release(&lock);
	return error;
}

int kiln_local_up(const kiln_local_up_opts *opts, const kiln_events *events)
{
	kiln_local *l = NULL;
	kiln_lock lock = KILN_LOCK_INIT;
	int error;

	if ((error = kiln_local_require_root("kiln local up")) < 0 || (error = kiln_local_open(&l, events)) < 0)
		return error;
	if ((error = with_up_lock(l, &lock)) == 0)
		error = up_locked(l, opts, false);
	kiln_lock_release(&lock);
	kiln_local_close(l);
	return error;
}

/* Mounts, namespaces and veths of this state dir's instances that nothing should hold any more. */
static int sweep(kiln_local *l, const kiln_local_config *cfg)
{
	kiln_strings mounts = { 0 }, ids = { 0 };
	size_t i;
	int error;

	if ((error = kiln_local_mounts_under(&mounts, l->dir)) < 0)
		goto done;
	for (i = 0; i < mounts.n; i++)
		if (umount2(mounts.items[i], 0) < 0 && errno != EINVAL && umount2(mounts.items[i], MNT_DETACH) < 0 &&
		    errno != EINVAL) {
			error = kiln_error_set_os(KILN_ERROR, errno, "cannot unmount '%s'", mounts.items[i]);
			goto done;
		}
	if ((error = kiln_local_instance_ids(&ids, l)) < 0)
		goto done;
	for (i = 0; i < ids.n; i++)
		if ((error = kiln_local_netns_remove(ids.items[i])) < 0)
			goto done;
	error = kiln_local_bridge_remove(l, cfg);
done:
	kiln_strings_release(&mounts);
	kiln_strings_release(&ids);
	return error;
}

int kiln_local_down(bool purge, const kiln_events *events)
{
	kiln_local *l = NULL;
	kiln_lock lock = KILN_LOCK_INIT;
	kiln_local_config cfg;
	kiln_strings left = { 0 };
	int error;

	if ((error = kiln_local_require_root("kiln local down")) < 0 || (error = kiln_local_open(&l, events)) < 0)
		return error;
	if ((error = with_up_lock(l, &lock)) < 0 || (error = kiln_local_config_load(&cfg, l)) < 0)
		goto done;
	/* balancers first: no request goes to a container that is going away */
	kiln_step(events, "down", "stopping balancers");
	if ((error = kiln_local_lb_stop_all(l)) < 0)
		goto done;
	kiln_step(events, "down", "stopping instances");
	if ((error = kiln_local_instances_down(l)) < 0)
		goto done;
	kiln_step(events, "down", "stopping the apt proxy");
	if ((error = kiln_local_apt_stop(l)) < 0)
		goto done;
	kiln_step(events, "down", "removing mounts, network namespaces, veths and bridge '%s'", cfg.bridge);
	if ((error = sweep(l, &cfg)) < 0)
		goto done;
	if (purge) {
		if ((error = kiln_local_mounts_under(&left, l->dir)) < 0)
			goto done;
		if (left.n) {
			error = kiln_error_set(KILN_EBUSY, "not purging '%s': '%s' is still mounted", l->dir,
					       left.items[0]);
			goto done;
		}
		kiln_step(events, "down", "removing all local state in '%s' (images, base, apt cache)", l->dir);
		kiln_lock_release(&lock);
		error = kiln_remove_tree(l->dir);
	}
done:
	kiln_strings_release(&left);
	kiln_lock_release(&lock);
	kiln_local_close(l);
	return error;
}

int kiln_local_status(json_t **out, const kiln_events *events)
{
	kiln_local *l = NULL;
	kiln_local_config cfg;
	kiln_buf state = KILN_BUF_INIT, base = KILN_BUF_INIT;
	json_t *doc = NULL, *instances = json_array(), *images = json_array(), *lbs = json_array();
	json_t *apt = NULL, *names = NULL, *netns = json_array(), *veths = json_array(), *mounts_j = json_array();
	json_t *procs = json_array();
	kiln_strings mounts = { 0 };
	size_t i;
	int error;

	if ((error = kiln_local_open(&l, events)) < 0)
		goto done;
	if ((error = kiln_local_config_load(&cfg, l)) < 0 || (error = kiln_local_instances_status(l, instances)) < 0 ||
	    (error = kiln_local_images_status(l, images)) < 0 || (error = kiln_local_lb_status(l, lbs)) < 0 ||
	    (error = kiln_local_apt_status(l, &cfg, &apt)) < 0 || (error = kiln_local_mounts_under(&mounts, l->dir)) < 0)
		goto done;
	for (i = 0; i < json_array_size(instances); i++) {
		json_t *inst = json_array_get(instances, i), *v;
		if (json_is_string(v = json_object_get(inst, "netns")))
			json_array_append(netns, v);
		if (json_is_string(v = json_object_get(inst, "veth")))
			json_array_append(veths, v);
		if (json_is_integer(v = json_object_get(inst, "pid")))
			json_array_append_new(procs, json_pack("{s:O,s:s,s:O}", "pid", v, "what", "systemd-nspawn",
								"instance", json_object_get(inst, "id")));
	}
	for (i = 0; i < json_array_size(lbs); i++) {
		json_t *lb = json_array_get(lbs, i);
		if (json_is_true(json_object_get(lb, "running")))
			json_array_append_new(procs, json_pack("{s:O,s:s,s:O}", "pid", json_object_get(lb, "pid"),
								"what", "haproxy", "balancer", json_object_get(lb, "name")));
	}
	if (json_is_true(json_object_get(apt, "running")))
		json_array_append_new(procs, json_pack("{s:O,s:s}", "pid", json_object_get(apt, "pid"), "what",
							"apt-cacher-ng"));
	for (i = 0; i < mounts.n; i++)
		json_array_append_new(mounts_j, json_string(mounts.items[i]));
	kiln_state_dir(&state);
	kiln_local_path(&base, l, "base/%s", KILN_LOCAL_BASE_ID);
	names = json_pack("{s:s,s:O,s:O,s:O,s:O,s:s,s:s}", "bridge", cfg.bridge, "netns", netns, "veths", veths,
			  "mounts", mounts_j, "processes", procs, "netns_pattern", "kiln-<instance id>",
			  "veth_pattern", "kiln<last 11 hex digits of the instance id>");
	doc = json_pack(
		"{s:s,s:s,s:b,s:{s:s,s:s,s:s,s:b},s:O,s:{s:s,s:s,s:b},s:O,s:O,s:O,s:O}", "state_dir", state.ptr,
		"local_dir", l->dir, "root", geteuid() == 0, "network", "bridge", cfg.bridge, "subnet", cfg.subnet,
		"address", cfg.bridge_ip, "up", kiln_local_link_exists(cfg.bridge), "apt_proxy", apt, "base", "id",
		KILN_LOCAL_BASE_ID, "path", base.ptr, "present", kiln_local_base_present(l), "instances", instances,
		"images", images, "balancers", lbs, "names", names);
	if (!doc) {
		error = kiln_error_set(KILN_ENOMEM, "out of memory");
		goto done;
	}
	*out = doc;
done:
	json_decref(instances);
	json_decref(images);
	json_decref(lbs);
	json_decref(apt);
	json_decref(names);
	json_decref(netns);
	json_decref(veths);
	json_decref(mounts_j);
	json_decref(procs);
	kiln_strings_release(&mounts);
	kiln_buf_release(&state);
	kiln_buf_release(&base);
	kiln_local_close(l);
	return error;
}
