#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "local/local.h"

/*
 * Instances: systemd-nspawn containers booting the image's systemd.
 *
 * An instance is a directory instances/ID/ holding instance.json (its
 * state, the source of truth), the overlayfs upper/ and work/ dirs and the
 * rootfs/ mount point (lowerdir = the image's layers, top first, then the
 * base). Its network is the namespace kiln-ID, set up from the host
 * before boot, so nothing network-related lives in the image.
 *
 * States move as on EC2: pending (container started) -> running (its sshd
 * answers on ID's address, port 22) -> stopping -> stopped (container
 * gone, upper dir kept) -> shutting-down -> terminated (everything
 * removed; the record stays an hour). Transitions happen under the
 * instance's lock; describe settles what a dead process or a crashed kiln
 * left (a container that exited is stopped, a half-done stop is finished).
 */

#define STOP_TIMEOUT_MS 30000
#define TERMINATE_TIMEOUT_MS 10000
#define USER_DATA_MAX (16 << 10)
#define CONSOLE_MAX (64 << 10)

static int inst_path(kiln_buf *out, const kiln_local *l, const char *id, const char *what)
{
	return kiln_local_path(out, l, "instances/%s%s%s", id, what[0] ? "/" : "", what);
}

int kiln_local_instance_load(json_t **out, const kiln_local *l, const char *id)
{
	kiln_buf p = KILN_BUF_INIT;
	int error;

	if (!kiln_local_id_valid(id, "i-"))
		return kiln_error_set(KILN_ENOTFOUND, "no instance '%s'", id);
	if ((error = inst_path(&p, l, id, "instance.json")) == 0) {
		error = kiln_local_json_load(out, p.ptr);
		if (error == KILN_ENOTFOUND)
			error = kiln_error_set(KILN_ENOTFOUND, "no instance '%s'", id);
	}
	kiln_buf_release(&p);
	return error;
}

static int inst_save(const kiln_local *l, json_t *doc)
{
	kiln_buf p = KILN_BUF_INIT;
	int error;

	if ((error = inst_path(&p, l, kiln_local_jstr(doc, "id"), "instance.json")) == 0)
		error = kiln_local_json_save(p.ptr, doc, 0600);
	kiln_buf_release(&p);
	return error;
}

static void inst_set_state(const kiln_local *l, json_t *doc, kiln_instance_state s,
			   const char *reason)
{
	const char *id = kiln_local_jstr(doc, "id");
	bool changed = strcmp(kiln_local_jstr(doc, "state"), kiln_instance_state_name(s)) != 0;

	json_object_set_new(doc, "state", json_string(kiln_instance_state_name(s)));
	json_object_set_new(doc, "state_reason", json_string(reason ? reason : ""));
	if (changed)
		kiln_emit(l->cloud.events, "instance", KILN_LEVEL_DEBUG,
			  json_pack("{s:s,s:s}", "id", id, "state", kiln_instance_state_name(s)),
			  "instance '%s' is %s%s%s", id, kiln_instance_state_name(s),
			  reason && *reason ? ": " : "", reason ? reason : "");
}

int kiln_local_instance_ids(kiln_strings *out, const kiln_local *l)
{
	kiln_buf dir = KILN_BUF_INIT;
	kiln_strings all = { 0 };
	size_t i;
	int error;

	if ((error = kiln_local_path(&dir, l, "instances")) < 0 ||
	    (error = kiln_local_list_dir(&all, dir.ptr, "")) < 0)
		goto done;
	for (i = 0; i < all.n; i++)
		if (kiln_local_id_valid(all.items[i], "i-") &&
		    (error = kiln_strings_add(out, all.items[i])) < 0)
			goto done;
done:
	kiln_strings_release(&all);
	kiln_buf_release(&dir);
	return error;
}

static int to_instance(kiln_instance *out, const json_t *doc)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->id, sizeof(out->id), "%s", kiln_local_jstr(doc, "id"));
	snprintf(out->image_id, sizeof(out->image_id), "%s", kiln_local_jstr(doc, "image_id"));
	snprintf(out->instance_type, sizeof(out->instance_type), "%s",
		 kiln_local_jstr(doc, "instance_type"));
	snprintf(out->subnet_id, sizeof(out->subnet_id), "%s", kiln_local_jstr(doc, "subnet"));
	snprintf(out->private_ip, sizeof(out->private_ip), "%s", kiln_local_jstr(doc, "private_ip"));
	/*
	 * The host is everything outside this cloud, and it reaches an instance
	 * only at its bridge address: that is its public address too, so
	 * templates and fleets written for EC2 (ssh_interface public_ip, the
	 * default) work unchanged.
	 */
	memcpy(out->public_ip, out->private_ip, sizeof(out->public_ip));
	snprintf(out->key_name, sizeof(out->key_name), "%s", kiln_local_jstr(doc, "key_name"));
	out->state = kiln_instance_state_parse(kiln_local_jstr(doc, "state"));
	snprintf(out->state_reason, sizeof(out->state_reason), "%s",
		 kiln_local_jstr(doc, "state_reason"));
	out->launch_time = kiln_local_jint(doc, "launch_time");
	return kiln_tags_from_json(&out->tags, json_object_get(doc, "tags"));
}

static bool state_is(const json_t *doc, const char *s)
{
	return !strcmp(kiln_local_jstr(doc, "state"), s);
}

/* ---- processes of a container ---- */

static void needle_of(char out[96], const char *id)
{
	snprintf(out, 96, "--machine=kiln-%s", id);
}

static bool nspawn_alive(const json_t *doc)
{
	char needle[96];
	needle_of(needle, kiln_local_jstr(doc, "id"));
	return kiln_local_pid_alive((pid_t)kiln_local_jint(doc, "pid"), needle);
}

/* The container's init, nspawn's child, with its pid namespace, for later kills. */
static void record_init(json_t *doc)
{
	pid_t pid = (pid_t)kiln_local_jint(doc, "pid");
	kiln_buf b = KILN_BUF_INIT;
	char path[96];
	int64_t init = 0;
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%ld/task/%ld/children", (long)pid, (long)pid);
	kiln_buf_init(&b, 4096);
	if (pid > 0 && kiln_read_file(&b, path) == 0) {
		b.ptr[strcspn(b.ptr, " \n")] = '\0';
		if (kiln_parse_i64(&init, b.ptr, 2, INT32_MAX) < 0)
			init = 0;
	}
	kiln_error_clear();
	kiln_buf_release(&b);
	snprintf(path, sizeof(path), "/proc/%ld/ns/pid", (long)init);
	if (init > 0 && stat(path, &st) == 0) {
		json_object_set_new(doc, "init_pid", json_integer(init));
		json_object_set_new(doc, "init_ns", json_integer((json_int_t)st.st_ino));
	}
}

/*
 * Every process whose root directory is the instance's rootfs: the
 * container, even when its nspawn died (kill -9) and left it orphaned.
 */
static int rootfs_pids(pid_t **out, size_t *n, const char *rootfs)
{
	struct stat want, st;
	kiln_strings procs = { 0 };
	size_t i;
	int error;

	*out = NULL;
	*n = 0;
	if (stat(rootfs, &want) < 0)
		return 0;
	if ((error = kiln_local_list_dir(&procs, "/proc", "")) < 0)
		return error;
	for (i = 0; i < procs.n; i++) {
		char path[96];
		int64_t pid;
		pid_t *grown;
		if (kiln_parse_i64(&pid, procs.items[i], 2, INT32_MAX) < 0 || pid == getpid())
			continue;
		snprintf(path, sizeof(path), "/proc/%s/root", procs.items[i]);
		if (stat(path, &st) < 0 || st.st_dev != want.st_dev || st.st_ino != want.st_ino)
			continue;
		if (!(grown = realloc(*out, (*n + 1) * sizeof(**out)))) {
			error = kiln_error_set(KILN_ENOMEM, "out of memory");
			break;
		}
		*out = grown;
		(*out)[(*n)++] = (pid_t)pid;
	}
	kiln_strings_release(&procs);
	return error;
}

/* SIGKILLs the container (its init takes its pid namespace with it) and its nspawn. */
static int kill_container(const kiln_local *l, const json_t *doc)
{
	const char *id = kiln_local_jstr(doc, "id");
	pid_t init = (pid_t)kiln_local_jint(doc, "init_pid"), *pids = NULL;
	char needle[96], path[96];
	kiln_buf rootfs = KILN_BUF_INIT;
	uint64_t deadline;
	struct stat st;
	size_t n = 0, i;
	int error;

	needle_of(needle, id);
	snprintf(path, sizeof(path), "/proc/%ld/ns/pid", (long)init);
	if (init > 1 && stat(path, &st) == 0 && (json_int_t)st.st_ino == kiln_local_jint(doc, "init_ns"))
		kill(init, SIGKILL);
	if (kiln_local_pid_alive((pid_t)kiln_local_jint(doc, "pid"), needle))
		kill((pid_t)kiln_local_jint(doc, "pid"), SIGKILL);
	if ((error = inst_path(&rootfs, l, id, "rootfs")) < 0)
		goto done;
	deadline = kiln_clock_now_ms() + 10000;
	for (;;) {
		free(pids);
		pids = NULL;
		if ((error = rootfs_pids(&pids, &n, rootfs.ptr)) < 0)
			goto done;
		if (n == 0 && !kiln_local_pid_alive((pid_t)kiln_local_jint(doc, "pid"), needle))
			break;
		for (i = 0; i < n; i++)
			kill(pids[i], SIGKILL);
		if (kiln_clock_now_ms() >= deadline) {
			error = kiln_error_set(KILN_ETIMEOUT, "instance '%s': %zu processes survive SIGKILL",
					       id, n);
			goto done;
		}
		if ((error = kiln_sleep_ms(50)) < 0)
			goto done;
	}
done:
	free(pids);
	kiln_buf_release(&rootfs);
	return error;
}

static int unmount_rootfs(const kiln_local *l, const char *id)
{
	kiln_buf rootfs = KILN_BUF_INIT;
	kiln_strings mounts = { 0 };
	size_t i;
	int error;

	if ((error = inst_path(&rootfs, l, id, "rootfs")) < 0 ||
	    (error = kiln_local_mounts_under(&mounts, rootfs.ptr)) < 0)
		goto done;
	for (i = 0; i < mounts.n; i++) {
		if (umount2(mounts.items[i], 0) == 0 || errno == EINVAL || errno == ENOENT)
			continue;
		/* still busy (a process we could not see): detach, it goes when they do */
		if (umount2(mounts.items[i], MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT) {
			error = kiln_error_set_os(KILN_ERROR, errno, "cannot unmount '%s'", mounts.items[i]);
			goto done;
		}
	}
done:
	kiln_strings_release(&mounts);
	kiln_buf_release(&rootfs);
	return error;
}

/* After the container is gone (or to make it so): nothing running, nothing mounted. */
static int release_container(const kiln_local *l, json_t *doc)
{
	int error;
	if ((error = kill_container(l, doc)) < 0 || (error = unmount_rootfs(l, kiln_local_jstr(doc, "id"))) < 0)
		return error;
	json_object_del(doc, "pid");
	json_object_del(doc, "init_pid");
	json_object_del(doc, "init_ns");
	return kiln_local_netns_remove(kiln_local_jstr(doc, "id"));
}

/* Why did a container exit without being asked? Its console says. */
static void exit_reason(const kiln_local *l, const char *id, char *out, size_t size)
{
	kiln_buf log = KILN_BUF_INIT, p = KILN_BUF_INIT;

	kiln_buf_init(&log, 16 << 20);
	if (inst_path(&p, l, id, "console.log") == 0)
		kiln_read_file(&log, p.ptr);
	kiln_error_clear();
	if (strstr(log.ptr, "has been shut down") || strstr(log.ptr, "Power down") ||
	    strstr(log.ptr, "Powering off"))
		snprintf(out, size, "Client.InstanceInitiatedShutdown: Instance initiated shutdown");
	else
		snprintf(out, size,
			 "Server.InternalError: the container exited unexpectedly (see its console output)");
	kiln_buf_release(&log);
	kiln_buf_release(&p);
}

/* ---- booting ---- */

static int write_rootfs_file(const char *rootfs, const char *rel, const char *text, mode_t mode)
{
	return kiln_local_write_in_root(rootfs, rel, text, strlen(text), mode);
}

/*
 * /etc/hosts keeps what the image has, minus kiln's lines of an earlier
 * instance (marked "# kiln"), plus this instance's name: tools that look
 * up their own hostname (sudo, python's getfqdn) answer at once.
 */
static int write_hosts(const char *rootfs, const char *id, const char *ip)
{
	kiln_buf have = KILN_BUF_INIT, text = KILN_BUF_INIT;
	char *line, *save = NULL;
	int error;

	kiln_buf_init(&have, 1 << 20);
	error = kiln_local_read_in_root(&have, rootfs, "etc/hosts");
	if (error == KILN_ENOTFOUND) {
		kiln_error_clear();
		error = kiln_buf_puts(&have, "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n");
	}
	if (error < 0)
		goto done;
	for (line = strtok_r(have.ptr, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		size_t len = strlen(line);
		if (len >= 6 && !strcmp(line + len - 6, "# kiln"))
			continue;
		if ((error = kiln_buf_printf(&text, "%s\n", line)) < 0)
			goto done;
	}
	if ((error = kiln_buf_printf(&text, "127.0.1.1\tkiln-%s # kiln\n%s\tkiln-%s # kiln\n", id, ip, id)) < 0)
		goto done;
	error = write_rootfs_file(rootfs, "etc/hosts", text.ptr, 0644);
done:
	kiln_buf_release(&have);
	kiln_buf_release(&text);
	return error;
}

static int mount_rootfs(kiln_local *l, const json_t *doc)
{
	const char *id = kiln_local_jstr(doc, "id");
	kiln_buf upper = KILN_BUF_INIT, work = KILN_BUF_INIT, rootfs = KILN_BUF_INIT;
	kiln_buf lower = KILN_BUF_INIT, opts = KILN_BUF_INIT;
	kiln_strings layers = { 0 }, mounted = { 0 };
	int error;

	if ((error = inst_path(&upper, l, id, "upper")) < 0 || (error = inst_path(&work, l, id, "work")) < 0 ||
	    (error = inst_path(&rootfs, l, id, "rootfs")) < 0)
		goto done;
	if ((error = kiln_mkdir_p(upper.ptr, 0755)) < 0 || (error = kiln_mkdir_p(work.ptr, 0700)) < 0 ||
	    (error = kiln_mkdir_p(rootfs.ptr, 0755)) < 0)
		goto done;
	/* the upper dir's own mode becomes the container's / */
	if (chmod(upper.ptr, 0755) < 0) {
		error = kiln_error_set_os(KILN_ERROR, errno, "cannot chmod '%s'", upper.ptr);
		goto done;
	}
	if ((error = kiln_local_mounts_under(&mounted, rootfs.ptr)) < 0)
		goto done;
	if (kiln_strings_has(&mounted, rootfs.ptr))
		goto done;
	if ((error = kiln_local_strings_from_json(&layers, json_object_get(doc, "layers"))) < 0 ||
	    (error = kiln_local_lowerdir(&lower, l->dir, &layers, kiln_local_jstr(doc, "base"))) < 0 ||
	    (error = kiln_buf_printf(&opts, "lowerdir=%s,upperdir=%s,workdir=%s", lower.ptr, upper.ptr,
				     work.ptr)) < 0)
		goto done;
	if (opts.len >= 4000) {
		error = kiln_error_set(KILN_EINVALID,
				       "instance '%s': %zu layers make overlayfs options too long; "
				       "rebuild the image from fewer parents",
				       id, layers.n);
		goto done;
	}
	if (mount("overlay", rootfs.ptr, "overlay", 0, opts.ptr) < 0)
		error = kiln_error_set_os(KILN_ERROR, errno, "cannot mount the overlay on '%s'", rootfs.ptr);
done:
	kiln_strings_release(&layers);
	kiln_strings_release(&mounted);
	kiln_buf_release(&upper);
	kiln_buf_release(&work);
	kiln_buf_release(&rootfs);
	kiln_buf_release(&lower);
	kiln_buf_release(&opts);
	return error;
}

/*
 * Mount, per-instance files, network, container. Per-instance files are
 * written into the upper dir through the mount; sealing an image removes
 * them again (kiln_local_seal_layer), so no image carries them.
 */
static int boot(kiln_local *l, json_t *doc, const char *user_data)
{
	const char *id = kiln_local_jstr(doc, "id");
	kiln_local_config cfg;
	kiln_buf rootfs = KILN_BUF_INIT, text = KILN_BUF_INIT, keyp = KILN_BUF_INIT;
	kiln_buf key = KILN_BUF_INIT, log = KILN_BUF_INIT, cred = KILN_BUF_INIT;
	char machine[96], netns[128], dirarg[1100];
	const char *argv[20];
	size_t a = 0;
	pid_t pid;
	int error;

	if ((error = kiln_local_config_load(&cfg, l)) < 0 || (error = mount_rootfs(l, doc)) < 0 ||
	    (error = inst_path(&rootfs, l, id, "rootfs")) < 0)
		goto done;
	if ((error = kiln_buf_printf(&text, "// written by kiln at each boot: the apt proxy on the host\n"
				     "Acquire::http::Proxy \"http://%s:%d\";\n",
				     cfg.bridge_ip, KILN_LOCAL_APT_PORT)) < 0 ||
	    (error = write_rootfs_file(rootfs.ptr, "etc/apt/apt.conf.d/00kiln-proxy", text.ptr, 0644)) < 0)
		goto done;
	/*
	 * No DNS here (no route out; apt goes through the proxy): a resolver
	 * on the instance's own loopback refuses at once, where the host's
	 * unreachable one would make every lookup wait for its timeout.
	 */
	if ((error = write_rootfs_file(rootfs.ptr, "etc/resolv.conf",
				       "# written by kiln at each boot: the local cloud has no DNS (no route out)\n"
				       "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
				       0644)) < 0 ||
	    (error = write_hosts(rootfs.ptr, id, kiln_local_jstr(doc, "private_ip"))) < 0)
		goto done;
	if (user_data && (error = write_rootfs_file(rootfs.ptr, "var/lib/kiln/user-data", user_data, 0700)) < 0)
		goto done;
	if (kiln_local_jstr(doc, "key_name")[0]) {
		/* a copy: the instance keeps its key if the key pair is deleted later */
		if ((error = inst_path(&keyp, l, id, "authorized_keys")) < 0)
			goto done;
		if (!kiln_path_exists(keyp.ptr)) {
			kiln_buf_init(&key, 64 << 10);
			if ((error = kiln_local_keypair_public(&key, l, kiln_local_jstr(doc, "key_name"))) < 0 ||
			    (error = kiln_write_file_atomic(keyp.ptr, key.ptr, key.len, 0600)) < 0)
				goto done;
		}
		if ((error = kiln_buf_printf(&cred, "--load-credential=ssh.authorized_keys.root:%s", keyp.ptr)) < 0)
			goto done;
	}
	if ((error = kiln_local_netns_setup(&cfg, id, kiln_local_jstr(doc, "private_ip"))) < 0 ||
	    (error = inst_path(&log, l, id, "console.log")) < 0)
		goto done;
	snprintf(machine, sizeof(machine), "--machine=kiln-%s", id);
	snprintf(netns, sizeof(netns), "--network-namespace-path=/run/netns/kiln-%s", id);
	snprintf(dirarg, sizeof(dirarg), "--directory=%s", rootfs.ptr);
	argv[a++] = "systemd-nspawn";
	argv[a++] = "--boot";
	/* no systemd or D-Bus on the host: not registered, no scope of its own */
	argv[a++] = "--register=no";
	argv[a++] = "--keep-unit";
	/* read-only: the console (boot log, host key fingerprints) goes to console.log */
	argv[a++] = "--console=read-only";
	/*
	 * plain text on the console: its tail is shown to users (a rollout's
	 * failed instance, console_output), where colour codes are noise
	 */
	argv[a++] = "--setenv=SYSTEMD_COLORS=0";
	argv[a++] = "--link-journal=no";
	argv[a++] = "--resolv-conf=off";
	argv[a++] = "--timezone=off";
	argv[a++] = netns;
	argv[a++] = machine;
	argv[a++] = dirarg;
	if (cred.len)
		argv[a++] = cred.ptr;
	argv[a] = NULL;
	if ((error = kiln_local_spawn(&pid, argv, log.ptr)) < 0)
		goto done;
	json_object_set_new(doc, "pid", json_integer(pid));
	json_object_del(doc, "init_pid");
	json_object_del(doc, "init_ns");
	{
		kiln_buf pidp = KILN_BUF_INIT;
		if (inst_path(&pidp, l, id, "nspawn.pid") == 0)
			kiln_local_pidfile_write(pidp.ptr, pid);
		kiln_buf_release(&pidp);
	}
	error = inst_save(l, doc);
done:
	kiln_buf_release(&rootfs);
	kiln_buf_release(&text);
	kiln_buf_release(&keyp);
	kiln_buf_release(&key);
	kiln_buf_release(&log);
	kiln_buf_release(&cred);
	return error;
}

/* ---- settling states ---- */

/*
 * Brings a stored state in line with reality, under the instance's lock
 * (skipped if someone holds it: they are changing the state right now).
 * Needs root for anything but reading.
 */
static int refresh(kiln_local *l, const char *id, json_t **docp)
{
	kiln_lock lock = KILN_LOCK_INIT;
	kiln_buf lockp = KILN_BUF_INIT;
	json_t *doc = *docp;
	bool alive, save = false;
	char reason[KILN_NAME_MAX];
	int error = 0;

	if (state_is(doc, "stopped") || state_is(doc, "terminated") || geteuid() != 0)
		return 0;
	if ((error = inst_path(&lockp, l, id, "lock")) < 0)
		goto done;
	if (kiln_lock_acquire(&lock, lockp.ptr, 0) < 0) {
		kiln_error_clear();
		goto done;
	}
	json_decref(doc);
	*docp = NULL;
	if ((error = kiln_local_instance_load(docp, l, id)) < 0)
		goto done;
	doc = *docp;
	alive = nspawn_alive(doc);
	if (state_is(doc, "pending") && alive) {
		if (kiln_local_tcp_probe(kiln_local_jstr(doc, "private_ip"), 22, 300, true)) {
			record_init(doc);
			inst_set_state(l, doc, KILN_INSTANCE_RUNNING, "");
			save = true;
		}
	} else if ((state_is(doc, "pending") || state_is(doc, "running")) && !alive) {
		exit_reason(l, id, reason, sizeof(reason));
		if ((error = release_container(l, doc)) < 0)
			goto done;
		inst_set_state(l, doc, KILN_INSTANCE_STOPPED, reason);
		save = true;
	} else if (state_is(doc, "stopping")) {
		/* whoever was stopping it died half-way: finish */
		if ((error = release_container(l, doc)) < 0)
			goto done;
		inst_set_state(l, doc, KILN_INSTANCE_STOPPED,
			       "Client.UserInitiatedShutdown: User initiated shutdown");
		save = true;
	}
	/* shutting-down is finished by the next terminate or by `kiln local up` */
	if (save)
		error = inst_save(l, doc);
done:
	kiln_lock_release(&lock);
	kiln_buf_release(&lockp);
	return error;
}

/* ---- launch ---- */

static int valid_token(const char *t)
{
	size_t i, len = strlen(t);
	if (len > 64)
		return 0;
	for (i = 0; i < len; i++)
		if (t[i] < 0x21 || t[i] > 0x7e)
			return 0;
	return 1;
}

/* Instances launched earlier with this token (not those whose launch failed). */
static int token_instances(kiln_strings *out, kiln_local *l, const char *token)
{
	kiln_strings ids = { 0 };
	size_t i;
	int error;

	if ((error = kiln_local_instance_ids(&ids, l)) < 0)
		return error;
	for (i = 0; i < ids.n; i++) {
		json_t *doc = NULL;
		if (kiln_local_instance_load(&doc, l, ids.items[i]) < 0) {
			kiln_error_clear();
			continue;
		}
		if (!strcmp(kiln_local_jstr(doc, "client_token"), token) &&
		    !json_is_true(json_object_get(doc, "launch_failed")))
			error = kiln_strings_add(out, ids.items[i]);
		json_decref(doc);
		if (error < 0)
			break;
	}
	kiln_strings_release(&ids);
	return error;
}

static int used_addresses(kiln_strings *out, kiln_local *l, const kiln_local_config *cfg)
{
	kiln_strings ids = { 0 };
	size_t i;
	int error;

	if ((error = kiln_strings_add(out, cfg->bridge_ip)) < 0 ||
	    (error = kiln_local_instance_ids(&ids, l)) < 0)
		goto done;
	for (i = 0; i < ids.n; i++) {
		json_t *doc = NULL;
		const char *ip;
		if (kiln_local_instance_load(&doc, l, ids.items[i]) < 0) {
			kiln_error_clear();
			continue;
		}
		ip = kiln_local_jstr(doc, "private_ip");
		if (!state_is(doc, "terminated") && *ip && !kiln_strings_has(out, ip))
			error = kiln_strings_add(out, ip);
		json_decref(doc);
		if (error < 0)
			break;
	}
done:
	kiln_strings_release(&ids);
	return error;
}

static int describe_ids(kiln_local *l, const kiln_strings *ids, kiln_instance_list *out)
{
	kiln_instance_query q = { 0 };
	q.ids = (const char *const *)ids->items;
	q.n_ids = ids->n;
	q.include_terminated = true;
	return kiln_local_instances_describe(&l->cloud, &q, out);
}

static int terminate_ids(kiln_local *l, const kiln_strings *ids, bool failed_launch, const char *why);

int kiln_local_instances_launch(kiln_cloud *c, const kiln_launch *spec, kiln_instance_list *out)
{
	kiln_local *l = KILN_LOCAL(c);
	kiln_lock images_lock = KILN_LOCK_INIT, alloc_lock = KILN_LOCK_INIT;
	kiln_lock inst_locks[64];
	kiln_buf p = KILN_BUF_INIT, key = KILN_BUF_INIT;
	kiln_strings launched = { 0 }, used = { 0 }, chain = { 0 };
	kiln_image img = { 0 };
	kiln_local_config cfg;
	kiln_local_subnet subnet;
	json_t *tags = NULL, *sgs = NULL;
	unsigned count = spec->count ? spec->count : 1, k;
	bool created = false;
	size_t i;
	int error;

	if (!spec->image_id || !*spec->image_id)
		return kiln_error_set(KILN_EINVALID, "launch: no image id");
	if (count > 64)
		return kiln_error_set(KILN_EINVALID, "launch: count %u is more than 64", count);
	if (spec->client_token && !valid_token(spec->client_token))
		return kiln_error_set(KILN_EINVALID, "launch: the client token must be 1-64 printable ASCII characters");
	for (k = 0; k < KILN_ARRAY_SIZE(inst_locks); k++) {
		inst_locks[k].fd = -1;
		inst_locks[k].path = NULL;
	}
	if (spec->user_data && strlen(spec->user_data) > USER_DATA_MAX)
		return kiln_error_set(KILN_EINVALID, "launch: user data is larger than %d bytes", USER_DATA_MAX);
	if ((error = kiln_local_require_root("launching a local instance")) < 0 ||
	    (error = kiln_local_require_tool("systemd-nspawn", "systemd-container")) < 0 ||
	    (error = kiln_local_require_tool("ip", "iproute2")) < 0)
		return error;
	if (spec->key_name && *spec->key_name) {
		kiln_buf_init(&key, 64 << 10);
		if ((error = kiln_local_keypair_public(&key, l, spec->key_name)) < 0)
			goto done;
	}
	if ((error = kiln_local_ensure_up(l)) < 0 || (error = kiln_local_config_load(&cfg, l)) < 0 ||
	    (error = kiln_local_subnet_parse(&subnet, cfg.subnet)) < 0)
		goto done;
	/* images.lock: the chain recorded below cannot be pruned in between */
	if ((error = kiln_local_path(&p, l, "images.lock")) < 0 ||
	    (error = kiln_lock_acquire(&images_lock, p.ptr, 120000)) < 0)
		goto done;
	if ((error = kiln_local_path(&p, l, "alloc.lock")) < 0 ||
	    (error = kiln_lock_acquire(&alloc_lock, p.ptr, 60000)) < 0)
		goto done;
	if (spec->client_token && *spec->client_token) {
		if ((error = token_instances(&launched, l, spec->client_token)) < 0)
			goto done;
		if (launched.n) {
			kiln_lock_release(&alloc_lock);
			kiln_lock_release(&images_lock);
			error = describe_ids(l, &launched, out);
			goto done;
		}
	}
	if ((error = kiln_local_image_load(l, spec->image_id, &img, &chain)) < 0)
		goto done;
	if (img.state != KILN_IMAGE_AVAILABLE) {
		error = kiln_error_set(KILN_EINVALID, "image '%s' is %s, not available", spec->image_id,
				       kiln_image_state_name(img.state));
		goto done;
	}
	if ((error = used_addresses(&used, l, &cfg)) < 0)
		goto done;
	tags = spec->tags ? kiln_tags_to_json(spec->tags) : json_object();
	sgs = json_array();
	for (i = 0; sgs && i < spec->n_security_groups; i++)
		json_array_append_new(sgs, json_string(spec->security_group_ids[i]));
	created = true;
	for (k = 0; k < count; k++) {
		char id[KILN_ID_MAX], ip[16];
		json_t *doc;
		if ((error = kiln_local_new_id(id, "i-")) < 0 ||
		    (error = kiln_local_ip_pick(ip, &subnet, &used)) < 0 ||
		    (error = kiln_strings_add(&used, ip)) < 0 || (error = inst_path(&p, l, id, "")) < 0 ||
		    (error = kiln_mkdir_p(p.ptr, 0700)) < 0 || (error = inst_path(&p, l, id, "lock")) < 0)
			goto done;
		/*
		 * Held from before the record exists until the container runs:
		 * another process settling states (describe, up) must not take
		 * this pending instance without a container for a dead one.
		 */
		if ((error = kiln_lock_acquire(&inst_locks[k], p.ptr, 0)) < 0)
			goto done;
		doc = json_pack("{s:s,s:s,s:s,s:o,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:O,s:s,s:O,s:b}", "id", id,
				"image_id", img.id, "base", KILN_LOCAL_BASE_ID, "layers",
				kiln_local_strings_to_json(&chain), "instance_type",
				spec->instance_type && *spec->instance_type ? spec->instance_type : "container",
				"subnet", cfg.subnet, "private_ip", ip, "key_name",
				spec->key_name ? spec->key_name : "", "state", "pending", "state_reason", "",
				"launch_time", (json_int_t)kiln_clock_wall_s(), "tags", tags, "client_token",
				spec->client_token ? spec->client_token : "", "security_group_ids", sgs,
				"user_data", spec->user_data != NULL);
		if (!doc) {
			error = kiln_error_set(KILN_ENOMEM, "out of memory");
			goto done;
		}
		error = inst_save(l, doc);
		json_decref(doc);
		if (error < 0 || (error = kiln_strings_add(&launched, id)) < 0)
			goto done;
	}
	kiln_lock_release(&alloc_lock);
	kiln_lock_release(&images_lock);

	for (i = 0; i < launched.n; i++) {
		json_t *doc = NULL;
		if ((error = kiln_local_instance_load(&doc, l, launched.items[i])) == 0)
			error = boot(l, doc, spec->user_data);
		json_decref(doc);
		kiln_lock_release(&inst_locks[i]);
		if (error < 0)
			goto done;
		kiln_emit(c->events, "resource", KILN_LEVEL_INFO,
			  json_pack("{s:s,s:s,s:s}", "kind", "instance", "id", launched.items[i], "action",
				    "created"),
			  "launched instance '%s' from '%s'", launched.items[i], img.id);
	}
	error = describe_ids(l, &launched, out);
done:
	for (k = 0; k < KILN_ARRAY_SIZE(inst_locks); k++)
		kiln_lock_release(&inst_locks[k]);
	if (error < 0 && created && launched.n) {
		/* all or nothing, as RunInstances: what this call started goes */
		kiln_error saved;
		kiln_error_save(&saved);
		kiln_lock_release(&alloc_lock);
		kiln_lock_release(&images_lock);
		kiln_cancel_shield_push();
		terminate_ids(l, &launched, true, saved.message);
		kiln_cancel_shield_pop();
		kiln_error_restore(&saved);
	}
	kiln_lock_release(&alloc_lock);
	kiln_lock_release(&images_lock);
	json_decref(tags);
	json_decref(sgs);
	kiln_image_release(&img);
	kiln_strings_release(&chain);
	kiln_strings_release(&launched);
	kiln_strings_release(&used);
	kiln_buf_release(&p);
	kiln_buf_release(&key);
	return error;
}

/* ---- describe ---- */

/* Terminated records older than an hour go, as EC2 forgets them. */
static void forget_old(kiln_local *l, json_t *doc)
{
	kiln_buf p = KILN_BUF_INIT;
	int64_t at = kiln_local_jint(doc, "terminated_ms");

	if (!state_is(doc, "terminated") || !at ||
	    kiln_clock_wall_ms() - at < (int64_t)KILN_LOCAL_TERMINATED_KEEP_S * 1000)
		return;
	if (inst_path(&p, l, kiln_local_jstr(doc, "id"), "") == 0 && geteuid() == 0)
		kiln_remove_tree(p.ptr);
	kiln_error_clear();
	kiln_buf_release(&p);
}

int kiln_local_instances_describe(kiln_cloud *c, const kiln_instance_query *q,
				  kiln_instance_list *out)
{
	kiln_local *l = KILN_LOCAL(c);
	kiln_strings ids = { 0 };
	kiln_instance_list list = { 0 };
	size_t i;
	int error = 0;

	if (q && q->ids) {
		for (i = 0; i < q->n_ids; i++)
			if (!kiln_strings_has(&ids, q->ids[i]) && (error = kiln_strings_add(&ids, q->ids[i])) < 0)
				goto done;
	} else if ((error = kiln_local_instance_ids(&ids, l)) < 0) {
		goto done;
	}
	for (i = 0; i < ids.n; i++) {
		json_t *doc = NULL;
		kiln_instance inst;
		kiln_instance_state s;

		if ((error = kiln_local_instance_load(&doc, l, ids.items[i])) < 0) {
			if (error == KILN_ENOTFOUND && !(q && q->ids)) {
				kiln_error_clear();
				error = 0;
				continue;
			}
			goto done;
		}
		if ((error = refresh(l, ids.items[i], &doc)) < 0) {
			json_decref(doc);
			goto done;
		}
		if (!(q && q->ids))
			forget_old(l, doc);
		error = to_instance(&inst, doc);
		json_decref(doc);
		if (error < 0) {
			kiln_tags_release(&inst.tags);
			goto done;
		}
		s = inst.state;
		if ((!(q && q->include_terminated) &&
		     (s == KILN_INSTANCE_TERMINATED || s == KILN_INSTANCE_SHUTTING_DOWN)) ||
		    (q && !kiln_tags_match(&inst.tags, q->tags))) {
			kiln_tags_release(&inst.tags);
			continue;
		}
		error = kiln_instance_list_add(&list, &inst);
		kiln_tags_release(&inst.tags);
		if (error < 0)
			goto done;
	}
	*out = list;
	memset(&list, 0, sizeof(list));
done:
	kiln_instance_list_release(&list);
	kiln_strings_release(&ids);
	return error;
}

/* ---- stop and terminate ---- */

typedef struct held {
	char id[KILN_ID_MAX];
	kiln_lock lock;
	json_t *doc;
} held;

static int cmp_held(const void *a, const void *b)
{
	return strcmp(((const held *)a)->id, ((const held *)b)->id);
}

/*
 * Takes the locks of ids in sorted order (so two callers never deadlock),
 * skipping ids that do not exist when missing_ok.
 */
static int take(kiln_local *l, const char *const *ids, size_t n, bool missing_ok, held **out, size_t *n_out)
{
	kiln_buf p = KILN_BUF_INIT;
	held *h = calloc(n ? n : 1, sizeof(*h));
	size_t i, m = 0;
	int error = 0;

	if (!h)
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	for (i = 0; i < n; i++) {
		size_t j;
		bool dup = false;
		if (!kiln_local_id_valid(ids[i], "i-")) {
			error = kiln_error_set(KILN_EINVALID, "'%s' is not an instance id", ids[i]);
			goto done;
		}
		for (j = 0; j < m; j++)
			dup = dup || !strcmp(h[j].id, ids[i]);
		if (dup)
			continue;
		snprintf(h[m].id, sizeof(h[m].id), "%s", ids[i]);
		h[m].lock.fd = -1;
		m++;
	}
	qsort(h, m, sizeof(*h), cmp_held);
	for (i = 0; i < m; i++) {
		error = kiln_local_instance_load(&h[i].doc, l, h[i].id);
		if (error == KILN_ENOTFOUND && missing_ok) {
			kiln_error_clear();
			error = 0;
			continue;
		}
		if (error < 0 || (error = inst_path(&p, l, h[i].id, "lock")) < 0 ||
		    (error = kiln_lock_acquire(&h[i].lock, p.ptr, 120000)) < 0)
			goto done;
		/* reread under the lock */
		json_decref(h[i].doc);
		h[i].doc = NULL;
		if ((error = kiln_local_instance_load(&h[i].doc, l, h[i].id)) < 0)
			goto done;
	}
done:
	kiln_buf_release(&p);
	*out = h;
	*n_out = m;
	return error;
}

static void release_held(held *h, size_t n)
{
	size_t i;
	for (i = 0; i < n; i++) {
		json_decref(h[i].doc);
		kiln_lock_release(&h[i].lock);
	}
	free(h);
}

/* SIGTERM to every container, then wait for all of them together. */
static int shutdown_all(kiln_local *l, held *h, size_t n, uint64_t timeout_ms)
{
	uint64_t deadline = kiln_clock_now_ms() + timeout_ms;
	size_t i;
	int error = 0;

	for (i = 0; i < n; i++)
		if (h[i].doc && nspawn_alive(h[i].doc))
			kill((pid_t)kiln_local_jint(h[i].doc, "pid"), SIGTERM);
	for (;;) {
		size_t alive = 0;
		for (i = 0; i < n; i++)
			alive += h[i].doc && nspawn_alive(h[i].doc);
		if (!alive || kiln_clock_now_ms() >= deadline)
			break;
		if ((error = kiln_sleep_ms(50)) < 0)
			return error;
	}
	for (i = 0; i < n && error == 0; i++)
		if (h[i].doc)
			error = release_container(l, h[i].doc);
	return error;
}

int kiln_local_instances_stop(kiln_cloud *c, const char *const *ids, size_t n)
{
	kiln_local *l = KILN_LOCAL(c);
	held *h = NULL;
	size_t m = 0, i;
	int error;

	if ((error = kiln_local_require_root("stopping a local instance")) < 0)
		return error;
	if ((error = take(l, ids, n, false, &h, &m)) < 0)
		goto done;
	for (i = 0; i < m; i++) {
		if (state_is(h[i].doc, "terminated") || state_is(h[i].doc, "shutting-down")) {
			error = kiln_error_set(KILN_EINVALID, "instance '%s' is %s: it cannot be stopped",
					       h[i].id, kiln_local_jstr(h[i].doc, "state"));
			goto done;
		}
	}
	for (i = 0; i < m; i++) {
		if (state_is(h[i].doc, "stopped")) {
			json_decref(h[i].doc);
			h[i].doc = NULL;
			continue;
		}
		inst_set_state(l, h[i].doc, KILN_INSTANCE_STOPPING, "Client.UserInitiatedShutdown: User initiated shutdown");
		if ((error = inst_save(l, h[i].doc)) < 0)
			goto done;
	}
	/* a stop begun is finished, even when interrupted: else the state lies */
	kiln_cancel_shield_push();
	error = shutdown_all(l, h, m, STOP_TIMEOUT_MS);
	for (i = 0; i < m && error == 0; i++) {
		if (!h[i].doc)
			continue;
		inst_set_state(l, h[i].doc, KILN_INSTANCE_STOPPED, "Client.UserInitiatedShutdown: User initiated shutdown");
		error = inst_save(l, h[i].doc);
	}
	kiln_cancel_shield_pop();
done:
	release_held(h, m);
	return error;
}

static int remove_instance_files(kiln_local *l, const char *id)
{
	static const char *const parts[] = { "upper", "work", "rootfs", "authorized_keys", "nspawn.pid",
					     "console.log" };
	kiln_buf p = KILN_BUF_INIT;
	size_t i;
	int error = 0;

	for (i = 0; i < KILN_ARRAY_SIZE(parts) && error == 0; i++)
		if ((error = inst_path(&p, l, id, parts[i])) == 0)
			error = kiln_remove_tree(p.ptr);
	kiln_buf_release(&p);
	return error;
}

static int terminate_held(kiln_local *l, held *h, size_t m, const char *reason, bool failed_launch)
{
	size_t i;
	int error = 0;

	for (i = 0; i < m; i++) {
		if (!h[i].doc)
			continue;
		if (state_is(h[i].doc, "terminated")) {
			json_decref(h[i].doc);
			h[i].doc = NULL;
			continue;
		}
		inst_set_state(l, h[i].doc, KILN_INSTANCE_SHUTTING_DOWN, reason);
		if (failed_launch)
			json_object_set_new(h[i].doc, "launch_failed", json_true());
		if ((error = inst_save(l, h[i].doc)) < 0)
			return error;
	}
	if ((error = shutdown_all(l, h, m, TERMINATE_TIMEOUT_MS)) < 0)
		return error;
	for (i = 0; i < m; i++) {
		if (!h[i].doc)
			continue;
		if ((error = remove_instance_files(l, h[i].id)) < 0)
			return error;
		json_object_set_new(h[i].doc, "private_ip", json_string(""));
		json_object_set_new(h[i].doc, "terminated_ms", json_integer(kiln_clock_wall_ms()));
		inst_set_state(l, h[i].doc, KILN_INSTANCE_TERMINATED, reason);
		if ((error = inst_save(l, h[i].doc)) < 0)
			return error;
		kiln_emit(l->cloud.events, "resource", KILN_LEVEL_INFO,
			  json_pack("{s:s,s:s,s:s}", "kind", "instance", "id", h[i].id, "action", "removed"),
			  "terminated instance '%s'", h[i].id);
	}
	return 0;
}

static int terminate_ids(kiln_local *l, const kiln_strings *ids, bool failed_launch, const char *why)
{
	char reason[KILN_NAME_MAX];
	held *h = NULL;
	size_t m = 0;
	int error;

	snprintf(reason, sizeof(reason), "%s%s", failed_launch ? "Server.InternalError: " : "", why);
	if ((error = take(l, (const char *const *)ids->items, ids->n, true, &h, &m)) == 0)
		error = terminate_held(l, h, m, reason, failed_launch);
	release_held(h, m);
	if (error == 0 && (error = kiln_local_layers_gc(l)) < 0)
		kiln_error_prefix("after terminating");
	return error;
}

int kiln_local_instances_terminate(kiln_cloud *c, const char *const *ids, size_t n)
{
	kiln_local *l = KILN_LOCAL(c);
	kiln_strings list = { 0 };
	size_t i;
	int error;

	if ((error = kiln_local_require_root("terminating a local instance")) < 0)
		return error;
	for (i = 0; i < n; i++)
		if ((error = kiln_strings_add(&list, ids[i])) < 0)
			goto done;
	/* cleanup must finish even when the user pressed Ctrl-C */
	kiln_cancel_shield_push();
	error = terminate_ids(l, &list, false, "Client.UserInitiatedShutdown: User initiated shutdown");
	kiln_cancel_shield_pop();
done:
	kiln_strings_release(&list);
	return error;
}

int kiln_local_console_output(kiln_cloud *c, const char *id, kiln_buf *out)
{
	kiln_local *l = KILN_LOCAL(c);
	kiln_buf p = KILN_BUF_INIT;
	json_t *doc = NULL;
	struct stat st;
	char chunk[8192];
	int fd = -1, error;
	ssize_t n;

	if ((error = kiln_local_instance_load(&doc, l, id)) < 0 || (error = inst_path(&p, l, id, "console.log")) < 0)
		goto done;
	kiln_buf_reset(out);
	if ((fd = open(p.ptr, O_RDONLY | O_CLOEXEC)) < 0) {
		/* never booted, or terminated: empty, as EC2's */
		error = errno == ENOENT ? 0 : kiln_error_set_os(KILN_ERROR, errno, "cannot read '%s'", p.ptr);
		goto done;
	}
	/* the tail, as EC2 keeps the last 64 KiB */
	if (fstat(fd, &st) == 0 && st.st_size > CONSOLE_MAX)
		lseek(fd, st.st_size - CONSOLE_MAX, SEEK_SET);
	while (out->len < CONSOLE_MAX && (n = read(fd, chunk, KILN_MIN(sizeof(chunk), CONSOLE_MAX - out->len))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			error = kiln_error_set_os(KILN_ERROR, errno, "cannot read '%s'", p.ptr);
			goto done;
		}
		if ((error = kiln_buf_put(out, chunk, (size_t)n)) < 0)
			goto done;
	}
done:
	if (fd >= 0)
		close(fd);
	json_decref(doc);
	kiln_buf_release(&p);
	return error;
}

/* ---- for images, up, down and status ---- */

int kiln_local_instance_chains(kiln_strings **out, size_t *n, const kiln_local *l)
{
	kiln_strings ids = { 0 }, *chains = NULL;
	size_t i, m = 0;
	int error;

	*out = NULL;
	*n = 0;
	if ((error = kiln_local_instance_ids(&ids, l)) < 0)
		return error;
	if (!(chains = calloc(ids.n ? ids.n : 1, sizeof(*chains)))) {
		kiln_strings_release(&ids);
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	}
	for (i = 0; i < ids.n; i++) {
		json_t *doc = NULL;
		if ((error = kiln_local_instance_load(&doc, l, ids.items[i])) < 0) {
			/* a directory without its record is half-made: keep everything */
			if (error != KILN_ENOTFOUND)
				break;
			kiln_error_clear();
			error = 0;
			continue;
		}
		if (!state_is(doc, "terminated"))
			error = kiln_local_strings_from_json(&chains[m++], json_object_get(doc, "layers"));
		json_decref(doc);
		if (error < 0)
			break;
	}
	kiln_strings_release(&ids);
	if (error < 0) {
		for (i = 0; i < m; i++)
			kiln_strings_release(&chains[i]);
		free(chains);
		return error;
	}
	*out = chains;
	*n = m;
	return 0;
}

int kiln_local_instances_repair(kiln_local *l)
{
	kiln_strings ids = { 0 };
	size_t i;
	int error;

	if ((error = kiln_local_instance_ids(&ids, l)) < 0)
		return error;
	for (i = 0; i < ids.n; i++) {
		json_t *doc = NULL;
		kiln_buf p = KILN_BUF_INIT;
		kiln_lock lock = KILN_LOCK_INIT;

		if (kiln_local_instance_load(&doc, l, ids.items[i]) < 0) {
			kiln_error_clear();
			continue;
		}
		if ((error = refresh(l, ids.items[i], &doc)) < 0)
			goto next;
		if ((error = inst_path(&p, l, ids.items[i], "lock")) < 0)
			goto next;
		if (kiln_lock_acquire(&lock, p.ptr, 0) < 0) {
			kiln_error_clear();
			goto next; /* someone is working on it */
		}
		json_decref(doc);
		doc = NULL;
		if ((error = kiln_local_instance_load(&doc, l, ids.items[i])) < 0)
			goto next;
		if (state_is(doc, "shutting-down")) {
			held h = { { 0 }, KILN_LOCK_INIT, doc };
			snprintf(h.id, sizeof(h.id), "%s", ids.items[i]);
			error = terminate_held(l, &h, 1, kiln_local_jstr(doc, "state_reason"), false);
		} else if (state_is(doc, "stopped") || state_is(doc, "terminated")) {
			/* nothing may run, be mounted or be wired for these */
			error = release_container(l, doc);
			if (error == 0 && state_is(doc, "terminated"))
				error = remove_instance_files(l, ids.items[i]);
			if (error == 0)
				error = inst_save(l, doc);
		}
next:
		kiln_lock_release(&lock);
		json_decref(doc);
		kiln_buf_release(&p);
		if (error < 0)
			break;
	}
	kiln_strings_release(&ids);
	return error;
}

int kiln_local_instances_down(kiln_local *l)
{
	kiln_strings ids = { 0 }, live = { 0 };
	held *h = NULL;
	size_t i, m = 0;
	int error;

	if ((error = kiln_local_instance_ids(&ids, l)) < 0)
		return error;
	for (i = 0; i < ids.n; i++) {
		json_t *doc = NULL;
		if (kiln_local_instance_load(&doc, l, ids.items[i]) < 0) {
			kiln_error_clear();
			continue;
		}
		if (!state_is(doc, "terminated"))
			error = kiln_strings_add(&live, ids.items[i]);
		json_decref(doc);
		if (error < 0)
			goto done;
	}
	if ((error = take(l, (const char *const *)live.items, live.n, true, &h, &m)) < 0)
		goto done;
	for (i = 0; i < m; i++) {
		if (!h[i].doc)
			continue;
		if (state_is(h[i].doc, "pending") || state_is(h[i].doc, "running") ||
		    state_is(h[i].doc, "stopping")) {
			inst_set_state(l, h[i].doc, KILN_INSTANCE_STOPPING, "Client.UserInitiatedShutdown: kiln local down");
			if ((error = inst_save(l, h[i].doc)) < 0)
				goto done;
		}
	}
	if ((error = shutdown_all(l, h, m, STOP_TIMEOUT_MS)) < 0)
		goto done;
	for (i = 0; i < m; i++) {
		if (!h[i].doc)
			continue;
		if (state_is(h[i].doc, "stopping")) {
			inst_set_state(l, h[i].doc, KILN_INSTANCE_STOPPED, "Client.UserInitiatedShutdown: kiln local down");
			kiln_emit(l->cloud.events, "info", KILN_LEVEL_INFO, NULL, "stopped instance '%s'", h[i].id);
		}
		if ((error = inst_save(l, h[i].doc)) < 0)
			goto done;
	}
done:
	release_held(h, m);
	kiln_strings_release(&ids);
	kiln_strings_release(&live);
	return error;
}

int kiln_local_instances_status(kiln_local *l, json_t *out_array)
{
	kiln_strings ids = { 0 };
	size_t i;
	int error;

	if ((error = kiln_local_instance_ids(&ids, l)) < 0)
		return error;
	for (i = 0; i < ids.n; i++) {
		json_t *doc = NULL, *o;
		kiln_buf rootfs = KILN_BUF_INIT;
		kiln_strings mounts = { 0 };
		char veth[16];

		if (kiln_local_instance_load(&doc, l, ids.items[i]) < 0 || refresh(l, ids.items[i], &doc) < 0) {
			kiln_error_clear();
			json_decref(doc);
			continue;
		}
		kiln_local_veth_name(veth, ids.items[i]);
		inst_path(&rootfs, l, ids.items[i], "rootfs");
		kiln_local_mounts_under(&mounts, rootfs.ptr);
		kiln_error_clear();
		o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:O}", "id", ids.items[i], "state",
			      kiln_local_jstr(doc, "state"), "state_reason", kiln_local_jstr(doc, "state_reason"),
			      "private_ip", kiln_local_jstr(doc, "private_ip"), "image_id",
			      kiln_local_jstr(doc, "image_id"), "launch_time",
			      (json_int_t)kiln_local_jint(doc, "launch_time"), "tags",
			      json_object_get(doc, "tags") ? json_object_get(doc, "tags") : json_object());
		if (o && !state_is(doc, "terminated")) {
			char ns[96], machine[96];
			snprintf(ns, sizeof(ns), "kiln-%s", ids.items[i]);
			snprintf(machine, sizeof(machine), "kiln-%s", ids.items[i]);
			json_object_set_new(o, "netns", kiln_local_netns_exists(ids.items[i]) ? json_string(ns) : json_null());
			json_object_set_new(o, "veth", kiln_local_link_exists(veth) ? json_string(veth) : json_null());
			json_object_set_new(o, "machine", json_string(machine));
			json_object_set_new(o, "rootfs", json_string(rootfs.ptr));
			json_object_set_new(o, "mounted", json_boolean(mounts.n > 0));
			json_object_set_new(o, "pid", nspawn_alive(doc) ? json_integer(kiln_local_jint(doc, "pid"))
								       : json_null());
		}
		if (o)
			json_array_append_new(out_array, o);
		json_decref(doc);
		kiln_strings_release(&mounts);
		kiln_buf_release(&rootfs);
	}
	kiln_strings_release(&ids);
	return 0;
}
