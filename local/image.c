#include <fcntl.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "local/local.h"

/*
 * Images are stacks of read-only layers over the Debian base.
 *
 * The base (debian-12) is an mmdebstrap root filesystem configured once:
 * no SSH host keys (a first-boot unit makes each instance its own), an
 * empty machine-id, no hostname, a unit that runs user data once, no
 * apt timers. A layer is a stopped instance's overlayfs upper dir, copied
 * with cp -a (whiteouts are character devices and opaque directories
 * trusted.* xattrs: both survive) and sealed: per-instance files removed.
 * An image record (images/img-....json) lists its chain of layers, top
 * first; the base is always at the bottom.
 *
 * A layer is removed only when no image and no instance that is not
 * terminated lists it (kiln_local_layers_garbage), under images.lock,
 * which launches also take while they record the chain they mount.
 */

#define BASE_PACKAGES \
	"systemd-sysv,dbus,openssh-server,python3,ca-certificates,curl,iproute2,netbase,procps"
#define MMDEBSTRAP_TIMEOUT_MS (20 * 60 * 1000)
#define COPY_TIMEOUT_MS (30 * 60 * 1000)

/* ---- pure helpers ---- */

int kiln_local_lowerdir(kiln_buf *out, const char *dir, const kiln_strings *layers, const char *base)
{
	size_t i;
	int error = 0;

	kiln_buf_reset(out);
	for (i = 0; error == 0 && layers && i < layers->n; i++)
		error = kiln_buf_printf(out, "%s/layers/%s:", dir, layers->items[i]);
	if (error == 0)
		error = kiln_buf_printf(out, "%s/base/%s", dir, base);
	return error;
}

int kiln_local_layer_chain(kiln_strings *out, const char *new_layer, const kiln_strings *parent)
{
	size_t i;
	int error;

	if ((error = kiln_strings_add(out, new_layer)) < 0)
		return error;
	for (i = 0; parent && i < parent->n; i++)
		if ((error = kiln_strings_add(out, parent->items[i])) < 0)
			return error;
	return 0;
}

int kiln_local_layers_garbage(kiln_strings *out, const kiln_strings *present,
			      const kiln_strings *chains, size_t n_chains)
{
	size_t i, j;
	int error;

	for (i = 0; i < present->n; i++) {
		bool needed = false;
		for (j = 0; j < n_chains && !needed; j++)
			needed = kiln_strings_has(&chains[j], present->items[i]);
		if (!needed && (error = kiln_strings_add(out, present->items[i])) < 0)
			return error;
	}
	return 0;
}

/* ---- the base ---- */

static const char hostkeys_script[] =
	"#!/bin/sh\n"
	"# kiln: this instance's own SSH host keys, made at its first boot. Images never\n"
	"# carry host keys (sealing removes them), so no two instances share one.\n"
	"# Ed25519 and ECDSA only: an RSA key costs 1-2 s of a busy 2-core machine at\n"
	"# every first boot, and every current client speaks these two.\n"
	"set -e\n"
	"for t in ed25519 ecdsa; do\n"
	"  f=/etc/ssh/ssh_host_${t}_key\n"
	"  [ -s \"$f\" ] || ssh-keygen -q -t $t -N '' -C \"root@$(hostname)\" -f \"$f\"\n"
	"done\n"
	"report=$(\n"
	"  echo '-----BEGIN SSH HOST KEY FINGERPRINTS-----'\n"
	"  for k in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -l -f \"$k\"; done\n"
	"  echo '-----END SSH HOST KEY FINGERPRINTS-----'\n"
	"  echo '-----BEGIN SSH HOST KEY KEYS-----'\n"
	"  cat /etc/ssh/ssh_host_*_key.pub\n"
	"  echo '-----END SSH HOST KEY KEYS-----'\n"
	")\n"
	"# as cloud-init does: on the console, where the host can read them\n"
	"echo \"$report\"\n"
	"echo \"$report\" > /dev/console 2>/dev/null || true\n";

static const char hostkeys_unit[] =
	"[Unit]\n"
	"Description=kiln: generate this instance's SSH host keys\n"
	"Before=ssh.service\n"
	"\n"
	"[Service]\n"
	"Type=oneshot\n"
	"RemainAfterExit=yes\n"
	"ExecStart=/usr/lib/kiln/ssh-hostkeys\n"
	"\n"
	"[Install]\n"
	"WantedBy=ssh.service\n";

static const char user_data_script[] =
	"#!/bin/sh\n"
	"# kiln: runs the instance's user data once, as cloud-init's scripts-user does.\n"
	"# The marker is set first, so a script that reboots the machine is not rerun.\n"
	"f=/var/lib/kiln/user-data\n"
	"touch /var/lib/kiln/user-data.done\n"
	"case \"$(head -c 2 \"$f\")\" in\n"
	"'#!') chmod 700 \"$f\"; exec \"$f\" ;;\n"
	"*) exec /bin/sh \"$f\" ;;\n"
	"esac\n";

static const char user_data_unit[] =
	"[Unit]\n"
	"Description=kiln: run this instance's user data (once)\n"
	"After=network.target ssh.service\n"
	"ConditionPathExists=/var/lib/kiln/user-data\n"
	"ConditionPathExists=!/var/lib/kiln/user-data.done\n"
	"\n"
	"[Service]\n"
	"Type=oneshot\n"
	"RemainAfterExit=yes\n"
	"ExecStart=/usr/lib/kiln/run-user-data\n"
	"StandardOutput=journal+console\n"
	"StandardError=journal+console\n"
	"\n"
	"[Install]\n"
	"WantedBy=multi-user.target\n";

static int base_path(kiln_buf *out, const kiln_local *l, const char *suffix)
{
	return kiln_local_path(out, l, "base/%s%s", KILN_LOCAL_BASE_ID, suffix);
}

bool kiln_local_base_present(const kiln_local *l)
{
	kiln_buf dir = KILN_BUF_INIT, meta = KILN_BUF_INIT;
	bool ok = base_path(&dir, l, "") == 0 && base_path(&meta, l, ".json") == 0 &&
		  kiln_path_exists(dir.ptr) && kiln_path_exists(meta.ptr);
	kiln_buf_release(&dir);
	kiln_buf_release(&meta);
	return ok;
}

static int put(const char *root, const char *rel, const char *text, mode_t mode)
{
	kiln_buf p = KILN_BUF_INIT, d = KILN_BUF_INIT;
	int error;
	if ((error = kiln_buf_printf(&p, "%s/%s", root, rel)) == 0 && (error = kiln_dirname(&d, p.ptr)) == 0 &&
	    (error = kiln_mkdir_p(d.ptr, 0755)) == 0)
		error = kiln_write_file_atomic(p.ptr, text, strlen(text), mode);
	kiln_buf_release(&p);
	kiln_buf_release(&d);
	return error;
}

static int link_unit(const char *root, const char *wants, const char *unit)
{
	kiln_buf p = KILN_BUF_INIT, target = KILN_BUF_INIT;
	int error;
	if ((error = kiln_buf_printf(&p, "%s/etc/systemd/system/%s", root, wants)) < 0 ||
	    (error = kiln_mkdir_p(p.ptr, 0755)) < 0 || (error = kiln_buf_printf(&p, "/%s", unit)) < 0 ||
	    (error = kiln_buf_printf(&target, "/etc/systemd/system/%s", unit)) < 0)
		goto done;
	unlink(p.ptr);
	if (symlink(target.ptr, p.ptr) < 0)
		error = kiln_error_set_os(KILN_ERROR, errno, "cannot create '%s'", p.ptr);
done:
	kiln_buf_release(&p);
	kiln_buf_release(&target);
	return error;
}

static void unlink_in(const char *root, const char *rel)
{
	kiln_buf p = KILN_BUF_INIT;
	if (kiln_buf_printf(&p, "%s/%s", root, rel) == 0)
		unlink(p.ptr);
	kiln_buf_release(&p);
}

/* The one-time configuration of a fresh mmdebstrap tree (the recipe; see KILN_LOCAL_BASE_RECIPE). */
static int configure_base(const char *root)
{
	static const char *const drop[] = {
		"etc/hostname", /* the container's name (kiln-ID) is its hostname */
		/* no unattended apt runs, nor filesystem jobs, in instances */
		"etc/systemd/system/timers.target.wants/apt-daily.timer",
		"etc/systemd/system/timers.target.wants/apt-daily-upgrade.timer",
		"etc/systemd/system/timers.target.wants/e2scrub_all.timer",
		"etc/systemd/system/timers.target.wants/fstrim.timer",
		"etc/systemd/system/multi-user.target.wants/e2scrub_reap.service",
	};
	kiln_strings keys = { 0 };
	kiln_buf p = KILN_BUF_INIT;
	size_t i;
	int error;

	if ((error = kiln_buf_printf(&p, "%s/etc/ssh", root)) < 0 || (error = kiln_local_list_dir(&keys, p.ptr, "")) < 0)
		goto done;
	for (i = 0; i < keys.n; i++) {
		if (strncmp(keys.items[i], "ssh_host_", 9))
			continue;
		kiln_buf_reset(&p);
		kiln_buf_printf(&p, "etc/ssh/%s", keys.items[i]);
		unlink_in(root, p.ptr);
	}
	for (i = 0; i < KILN_ARRAY_SIZE(drop); i++)
		unlink_in(root, drop[i]);
	if ((error = put(root, "etc/machine-id", "", 0444)) < 0 ||
	    (error = put(root, "usr/lib/kiln/ssh-hostkeys", hostkeys_script, 0755)) < 0 ||
	    (error = put(root, "usr/lib/kiln/run-user-data", user_data_script, 0755)) < 0 ||
	    (error = put(root, "etc/ssh/sshd_config.d/kiln-hostkeys.conf",
			 "# kiln: the host keys each instance makes at its first boot\n"
			 "HostKey /etc/ssh/ssh_host_ed25519_key\n"
			 "HostKey /etc/ssh/ssh_host_ecdsa_key\n",
			 0644)) < 0 ||
	    (error = put(root, "etc/systemd/system/kiln-ssh-hostkeys.service", hostkeys_unit, 0644)) < 0 ||
	    (error = put(root, "etc/systemd/system/kiln-user-data.service", user_data_unit, 0644)) < 0 ||
	    (error = link_unit(root, "ssh.service.wants", "kiln-ssh-hostkeys.service")) < 0 ||
	    (error = link_unit(root, "multi-user.target.wants", "kiln-user-data.service")) < 0)
		goto done;
	kiln_buf_reset(&p);
	if ((error = kiln_buf_printf(&p, "%s/var/lib/kiln", root)) < 0 || (error = kiln_mkdir_p(p.ptr, 0755)) < 0)
		goto done;
	kiln_buf_reset(&p);
	kiln_buf_printf(&p, "kiln base image %s, recipe %d: Debian 12 (bookworm) from %s\n",
			KILN_LOCAL_BASE_ID, KILN_LOCAL_BASE_RECIPE, KILN_LOCAL_MIRROR);
	error = put(root, "etc/kiln-base", p.ptr, 0644);
done:
	kiln_strings_release(&keys);
	kiln_buf_release(&p);
	return error;
}

/* cp -al shares the cache's inodes (nothing writes into a base); cp -a across filesystems. */
static int copy_tree(const char *from, const char *to, bool hardlink)
{
	const char *al[] = { "cp", "-al", from, to, NULL };
	const char *a[] = { "cp", "-a", from, to, NULL };
	if (hardlink) {
		int status;
		if (kiln_local_run(al, NULL, &status, COPY_TIMEOUT_MS) == 0 && status == 0)
			return 0;
		kiln_error_clear();
		kiln_remove_tree(to);
	}
	return kiln_local_run(a, NULL, NULL, COPY_TIMEOUT_MS);
}

int kiln_local_base_ensure(kiln_local *l)
{
	const kiln_events *ev = KILN_LOCAL_EVENTS(l);
	kiln_buf dir = KILN_BUF_INIT, tmp = KILN_BUF_INIT, meta = KILN_BUF_INIT, lockp = KILN_BUF_INIT;
	kiln_buf cdir = KILN_BUF_INIT, ctmp = KILN_BUF_INIT, p = KILN_BUF_INIT;
	const char *cache = getenv("KILN_LOCAL_BASE_CACHE");
	kiln_lock lock = KILN_LOCK_INIT;
	uint64_t t0 = kiln_clock_now_ms();
	bool from_cache = false;
	json_t *doc = NULL;
	int error;

	if (kiln_local_base_present(l))
		return 0;
	if ((error = base_path(&dir, l, "")) < 0 || (error = base_path(&tmp, l, ".tmp")) < 0 ||
	    (error = base_path(&meta, l, ".json")) < 0 || (error = kiln_local_path(&lockp, l, "base.lock")) < 0 ||
	    (error = kiln_local_path(&p, l, "base")) < 0 || (error = kiln_mkdir_p(p.ptr, 0755)) < 0)
		goto done;
	if ((error = kiln_lock_acquire(&lock, lockp.ptr, MMDEBSTRAP_TIMEOUT_MS)) < 0)
		goto done;
	if (kiln_local_base_present(l))
		goto done; /* built by whoever held the lock */
	if ((error = kiln_remove_tree(tmp.ptr)) < 0 || (error = kiln_remove_tree(dir.ptr)) < 0)
		goto done;
	if (cache && *cache) {
		if ((error = kiln_buf_printf(&cdir, "%s/%s-r%d", cache, KILN_LOCAL_BASE_ID, KILN_LOCAL_BASE_RECIPE)) < 0)
			goto done;
		kiln_buf_reset(&p);
		kiln_buf_printf(&p, "%s/base.json", cdir.ptr);
		from_cache = kiln_path_exists(p.ptr);
	}
	if (from_cache) {
		kiln_buf_reset(&p);
		kiln_buf_printf(&p, "%s/rootfs", cdir.ptr);
		kiln_step(ev, "base", "copying the base image '%s' from the cache '%s'", KILN_LOCAL_BASE_ID, cdir.ptr);
		if ((error = copy_tree(p.ptr, tmp.ptr, true)) < 0)
			goto done;
	} else {
		const char *argv[] = { "mmdebstrap", "--variant=minbase", "--include=" BASE_PACKAGES,
				       "bookworm", tmp.ptr, KILN_LOCAL_MIRROR, NULL };
		kiln_buf out = KILN_BUF_INIT;
		if ((error = kiln_local_require_tool("mmdebstrap", "mmdebstrap")) < 0)
			goto done;
		kiln_step(ev, "base",
			  "building the base image '%s' (Debian 12 from %s with mmdebstrap): about a "
			  "minute and an 80 MiB download, once",
			  KILN_LOCAL_BASE_ID, KILN_LOCAL_MIRROR);
		kiln_buf_init(&out, 1 << 20);
		error = kiln_local_run(argv, &out, NULL, MMDEBSTRAP_TIMEOUT_MS);
		kiln_buf_release(&out);
		if (error < 0 || (error = configure_base(tmp.ptr)) < 0) {
			kiln_error_prefix("cannot build the base image");
			goto done;
		}
	}
	if (rename(tmp.ptr, dir.ptr) < 0) {
		error = kiln_error_set_os(KILN_ERROR, errno, "cannot rename '%s'", tmp.ptr);
		goto done;
	}
	doc = json_pack("{s:s,s:i,s:I,s:I,s:s,s:s,s:s}", "id", KILN_LOCAL_BASE_ID, "recipe",
			KILN_LOCAL_BASE_RECIPE, "created", (json_int_t)kiln_clock_wall_s(), "size_bytes",
			(json_int_t)kiln_local_du(dir.ptr), "suite", "bookworm", "mirror", KILN_LOCAL_MIRROR,
			"packages", BASE_PACKAGES);
	if (!doc || (error = kiln_local_json_save(meta.ptr, doc, 0644)) < 0)
		goto done;
	kiln_step(ev, "base", "base image '%s' ready in %.1f s (%.0f MiB)", KILN_LOCAL_BASE_ID,
		  (double)(kiln_clock_now_ms() - t0) / 1000.0,
		  (double)kiln_local_du(dir.ptr) / (1024.0 * 1024.0));
	if (cache && *cache && !from_cache) {
		/* for the next state dir of this machine (CI's test suites): no second mmdebstrap */
		kiln_buf_printf(&ctmp, "%s.tmp.%ld", cdir.ptr, (long)getpid());
		kiln_buf_reset(&p);
		kiln_buf_printf(&p, "%s/rootfs", ctmp.ptr);
		if (kiln_mkdir_p(ctmp.ptr, 0755) < 0 || copy_tree(dir.ptr, p.ptr, false) < 0 ||
		    (kiln_buf_reset(&p), kiln_buf_printf(&p, "%s/base.json", ctmp.ptr)) < 0 ||
		    kiln_local_json_save(p.ptr, doc, 0644) < 0 || rename(ctmp.ptr, cdir.ptr) < 0) {
			kiln_warn(ev, "could not store the base image in the cache '%s': %s", cdir.ptr,
				  kiln_error_last()->message);
			kiln_error_clear();
			kiln_remove_tree(ctmp.ptr);
		}
	}
done:
	if (error < 0)
		kiln_remove_tree(tmp.ptr);
	json_decref(doc);
	kiln_lock_release(&lock);
	kiln_buf_release(&dir);
	kiln_buf_release(&tmp);
	kiln_buf_release(&meta);
	kiln_buf_release(&lockp);
	kiln_buf_release(&cdir);
	kiln_buf_release(&ctmp);
	kiln_buf_release(&p);
	return error;
}

/* ---- sealing a layer ---- */

static bool is_whiteout(const struct stat *st)
{
	return S_ISCHR(st->st_mode) && st->st_rdev == makedev(0, 0);
}

/* Is rel visible in the stack of lowers (top first)? */
static bool in_lowers(const char *const *lowers, size_t n, const char *rel)
{
	size_t i;
	for (i = 0; i < n; i++) {
		char path[4096];
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", lowers[i], rel);
		if (lstat(path, &st) < 0)
			continue;
		return !is_whiteout(&st);
	}
	return false;
}

/* Removes rel from the layer, leaving a whiteout when a lower layer has it. */
static int drop_from_layer(int rootfd, const char *layer, const char *rel, const char *const *lowers,
			   size_t n_lowers)
{
	const char *leaf;
	struct stat st;
	int fd = kiln_local_open_parent(rootfd, rel, &leaf, false), error = 0;

	if (fd < 0)
		return 0; /* the instance never touched that directory */
	if (fstatat(fd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0 || is_whiteout(&st))
		goto done;
	if (S_ISDIR(st.st_mode)) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", layer, rel);
		error = kiln_remove_tree(path);
	} else if (unlinkat(fd, leaf, 0) < 0) {
		error = kiln_error_set_os(KILN_ERROR, errno, "cannot remove '%s' from a layer", rel);
	}
	if (error == 0 && in_lowers(lowers, n_lowers, rel) && mknodat(fd, leaf, S_IFCHR | 0, makedev(0, 0)) < 0)
		error = kiln_error_set_os(KILN_ERROR, errno, "cannot write a whiteout for '%s'", rel);
done:
	close(fd);
	return error;
}

/* Every entry of the directory rel (files, or only regular files and symlinks when files_only, recursively). */
static int empty_dir(int rootfd, const char *layer, const char *rel, bool files_only, const char *keep)
{
	const char *leaf;
	kiln_strings names = { 0 };
	char path[4096];
	size_t i;
	int fd = kiln_local_open_parent(rootfd, rel, &leaf, false), dfd = -1, error = 0;

	if (fd < 0)
		return 0;
	if ((dfd = openat(fd, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		goto done;
	snprintf(path, sizeof(path), "%s/%s", layer, rel);
	if ((error = kiln_local_list_dir(&names, path, "")) < 0)
		goto done;
	for (i = 0; i < names.n && error == 0; i++) {
		struct stat st;
		char sub[4096];
		if (keep && !strcmp(names.items[i], keep))
			continue;
		if (fstatat(dfd, names.items[i], &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", rel, names.items[i]);
		if (S_ISDIR(st.st_mode)) {
			if (files_only)
				error = empty_dir(rootfd, layer, sub, true, NULL);
			else {
				char full[4200];
				snprintf(full, sizeof(full), "%s/%s", layer, sub);
				error = kiln_remove_tree(full);
			}
		} else if (!files_only || S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) {
			if (unlinkat(dfd, names.items[i], 0) < 0)
				error = kiln_error_set_os(KILN_ERROR, errno, "cannot remove '%s' from a layer", sub);
		}
	}
done:
	kiln_strings_release(&names);
	if (dfd >= 0)
		close(dfd);
	close(fd);
	return error;
}

static int drop_matching(int rootfd, const char *layer, const char *dir, const char *pattern,
			 const char *const *lowers, size_t n_lowers)
{
	kiln_strings names = { 0 };
	char path[4096];
	size_t i;
	int error;

	snprintf(path, sizeof(path), "%s/%s", layer, dir);
	if ((error = kiln_local_list_dir(&names, path, "")) < 0)
		return error;
	for (i = 0; i < names.n && error == 0; i++) {
		char rel[4096];
		if (fnmatch(pattern, names.items[i], 0))
			continue;
		snprintf(rel, sizeof(rel), "%s/%s", dir, names.items[i]);
		error = drop_from_layer(rootfd, layer, rel, lowers, n_lowers);
	}
	kiln_strings_release(&names);
	return error;
}

int kiln_local_seal_layer(const char *layer, const char *const *lowers, size_t n_lowers)
{
	/* what makes an instance itself: never in an image */
	static const char *const per_instance[] = {
		"etc/apt/apt.conf.d/00kiln-proxy", /* the host's address, written at each boot */
		"root/.ssh/authorized_keys",       /* from the launch's key pair (a credential) */
		"var/lib/kiln/user-data",
		"var/lib/kiln/user-data.done",
		"etc/hostname",
		"var/lib/dbus/machine-id",
		"var/lib/systemd/random-seed",
		"var/lib/systemd/credential.secret",
	};
	const char *leaf;
	size_t i;
	int rootfd, fd, error = 0;

	if ((rootfd = open(layer, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return kiln_error_set_os(KILN_ERROR, errno, "cannot open '%s'", layer);
	for (i = 0; i < KILN_ARRAY_SIZE(per_instance) && error == 0; i++)
		error = drop_from_layer(rootfd, layer, per_instance[i], lowers, n_lowers);
	if (error == 0)
		error = drop_matching(rootfd, layer, "etc/ssh", "ssh_host_*", lowers, n_lowers);
	/* logs, apt's caches and lists, temporary files: the instance's, not the image's */
	if (error == 0)
		error = empty_dir(rootfd, layer, "var/log/journal", false, NULL);
	if (error == 0)
		error = empty_dir(rootfd, layer, "var/log", true, NULL);
	if (error == 0)
		error = drop_matching(rootfd, layer, "var/cache/apt", "*.bin", lowers, n_lowers);
	if (error == 0)
		error = empty_dir(rootfd, layer, "var/cache/apt/archives", true, "lock");
	if (error == 0)
		error = empty_dir(rootfd, layer, "var/lib/apt/lists", true, "lock");
	if (error == 0)
		error = empty_dir(rootfd, layer, "tmp", false, NULL);
	if (error == 0)
		error = empty_dir(rootfd, layer, "var/tmp", false, NULL);
	/* an empty machine-id: systemd makes a new one at each instance's boot */
	if (error == 0 && (fd = kiln_local_open_parent(rootfd, "etc/machine-id", &leaf, false)) >= 0) {
		int f;
		unlinkat(fd, leaf, 0);
		if ((f = openat(fd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444)) < 0)
			error = kiln_error_set_os(KILN_ERROR, errno, "cannot reset the machine id in '%s'", layer);
		else
			close(f);
		close(fd);
	}
	close(rootfd);
	return error;
}

/* ---- image records ---- */

static int image_path(kiln_buf *out, const kiln_local *l, const char *id, const char *suffix)
{
	return kiln_local_path(out, l, "images/%s%s", id, suffix);
}

static int fill_image(kiln_image *out, const json_t *doc)
{
	json_t *layers = json_object_get(doc, "layers");
	memset(out, 0, sizeof(*out));
	snprintf(out->id, sizeof(out->id), "%s", kiln_local_jstr(doc, "id"));
	snprintf(out->name, sizeof(out->name), "%s", kiln_local_jstr(doc, "name"));
	snprintf(out->owner, sizeof(out->owner), "%s", kiln_local_jstr(doc, "owner"));
	out->state = kiln_image_state_parse(kiln_local_jstr(doc, "state"));
	snprintf(out->state_reason, sizeof(out->state_reason), "%s", kiln_local_jstr(doc, "state_reason"));
	out->created = kiln_local_jint(doc, "created");
	out->size_bytes = (uint64_t)kiln_local_jint(doc, "size_bytes");
	/* its own layer, as an AMI's snapshots are its own */
	if (json_array_size(layers) > 0 &&
	    kiln_strings_add(&out->snapshots, json_string_value(json_array_get(layers, 0))) < 0)
		return KILN_ENOMEM;
	return kiln_tags_from_json(&out->tags, json_object_get(doc, "tags"));
}

static int base_image(kiln_local *l, kiln_image *out)
{
	kiln_buf meta = KILN_BUF_INIT;
	json_t *doc = NULL;
	int error;

	memset(out, 0, sizeof(*out));
	snprintf(out->id, sizeof(out->id), "%s", KILN_LOCAL_BASE_ID);
	snprintf(out->name, sizeof(out->name), "%s", KILN_LOCAL_BASE_ID);
	snprintf(out->owner, sizeof(out->owner), "kiln");
	/* launchable before it exists: the first launch builds it */
	out->state = KILN_IMAGE_AVAILABLE;
	if ((error = base_path(&meta, l, ".json")) < 0)
		goto done;
	if (kiln_local_json_load(&doc, meta.ptr) == 0) {
		out->created = kiln_local_jint(doc, "created");
		out->size_bytes = (uint64_t)kiln_local_jint(doc, "size_bytes");
	} else {
		kiln_error_clear();
		snprintf(out->state_reason, sizeof(out->state_reason),
			 "not built yet: 'kiln local up' or the first launch builds it");
	}
	error = kiln_tags_set(&out->tags, "kiln:base", "debian-12");
done:
	json_decref(doc);
	kiln_buf_release(&meta);
	return error;
}

/* A pending image whose creator is gone (its lock free) failed. */
static void settle_pending(kiln_local *l, json_t *doc)
{
	kiln_buf lockp = KILN_BUF_INIT;
	if (strcmp(kiln_local_jstr(doc, "state"), "pending") ||
	    image_path(&lockp, l, kiln_local_jstr(doc, "id"), ".lock") < 0)
		goto done;
	if (!kiln_lock_is_held(lockp.ptr, NULL)) {
		json_object_set_new(doc, "state", json_string("failed"));
		json_object_set_new(doc, "state_reason",
				    json_string("Server.InternalError: image creation was interrupted"));
	}
done:
	kiln_buf_release(&lockp);
}

int kiln_local_image_load(kiln_local *l, const char *id, kiln_image *out, kiln_strings *chain)
{
	kiln_buf p = KILN_BUF_INIT;
	json_t *doc = NULL;
	int error;

	if (!strcmp(id, KILN_LOCAL_BASE_ID))
		return base_image(l, out);
	if (!kiln_local_id_valid(id, "img-"))
		return kiln_error_set(KILN_ENOTFOUND, "no image '%s'", id);
	if ((error = image_path(&p, l, id, ".json")) < 0)
		goto done;
	if ((error = kiln_local_json_load(&doc, p.ptr)) < 0) {
		if (error == KILN_ENOTFOUND)
			error = kiln_error_set(KILN_ENOTFOUND, "no image '%s'", id);
		goto done;
	}
	settle_pending(l, doc);
	if ((error = fill_image(out, doc)) < 0)
		goto done;
	if (chain)
		error = kiln_local_strings_from_json(chain, json_object_get(doc, "layers"));
done:
	json_decref(doc);
	kiln_buf_release(&p);
	return error;
}

static bool owner_wanted(const kiln_image_query *q, const char *owner)
{
	size_t i;
	if (!q || !q->owners)
		return true; /* self and public */
	for (i = 0; i < q->n_owners; i++) {
		const char *o = q->owners[i];
		if (!strcmp(owner, "self") && (!strcmp(o, "self") || !strcmp(o, "local")))
			return true;
		if (!strcmp(owner, "kiln") && (!strcmp(o, "kiln") || !strcmp(o, "public")))
			return true;
	}
	return false;
}

static bool image_wanted(const kiln_image_query *q, const kiln_image *img)
{
	size_t i;
	bool id_ok = !q || !q->ids;
	for (i = 0; !id_ok && i < q->n_ids; i++)
		id_ok = !strcmp(q->ids[i], img->id);
	if (!id_ok)
		return false;
	if (q && q->name && fnmatch(q->name, img->name, 0))
		return false;
	if (!owner_wanted(q, !strcmp(img->owner, "kiln") ? "kiln" : "self"))
		return false;
	return !q || kiln_tags_match(&img->tags, q->tags);
}

int kiln_local_images_describe(kiln_cloud *c, const kiln_image_query *q, kiln_image_list *out)
{
	kiln_local *l = KILN_LOCAL(c);
	kiln_strings files = { 0 };
	kiln_image_list list = { 0 };
	kiln_buf dir = KILN_BUF_INIT;
	kiln_image img;
	size_t i;
	int error;

	if ((error = base_image(l, &img)) < 0)
		goto done;
	error = image_wanted(q, &img) ? kiln_image_list_add(&list, &img) : 0;
	kiln_image_release(&img);
	if (error < 0)
		goto done;
	if ((error = kiln_local_path(&dir, l, "images")) < 0 || (error = kiln_local_list_dir(&files, dir.ptr, ".json")) < 0)
		goto done;
	for (i = 0; i < files.n; i++) {
		char id[KILN_ID_MAX];
		snprintf(id, sizeof(id), "%.*s", (int)(strlen(files.items[i]) - 5), files.items[i]);
		if ((error = kiln_local_image_load(l, id, &img, NULL)) < 0) {
			if (error != KILN_ENOTFOUND)
				goto done;
			kiln_error_clear();
			error = 0;
			continue;
		}
		error = image_wanted(q, &img) ? kiln_image_list_add(&list, &img) : 0;
		kiln_image_release(&img);
		if (error < 0)
			goto done;
	}
	*out = list;
	memset(&list, 0, sizeof(list));
done:
	kiln_image_list_release(&list);
	kiln_strings_release(&files);
	kiln_buf_release(&dir);
	return error;
}

/* EC2's rule for AMI names: 3-128 of letters, digits and ()[] ./-'@_ */
static bool image_name_valid(const char *name)
{
	size_t i, len = strlen(name);
	if (len < 3 || len > 128)
		return false;
	for (i = 0; i < len; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
		      (name[i] >= '0' && name[i] <= '9') || strchr("()[] ./-'@_", name[i])))
			return false;
	return true;
}

static int name_taken(kiln_local *l, const char *name, char found[KILN_ID_MAX])
{
	kiln_image_query q = { 0 };
	kiln_image_list list = { 0 };
	const char *self[] = { "self" };
	size_t i;
	int error;

	q.owners = self;
	q.n_owners = 1;
	if ((error = kiln_local_images_describe(&l->cloud, &q, &list)) < 0)
		return error;
	found[0] = '\0';
	for (i = 0; i < list.n; i++)
		if (!strcmp(list.items[i].name, name) && list.items[i].state != KILN_IMAGE_FAILED)
			snprintf(found, KILN_ID_MAX, "%s", list.items[i].id);
	kiln_image_list_release(&list);
	return 0;
}

int kiln_local_image_create(kiln_cloud *c, const char *instance_id, const char *name,
			    const char *description, const kiln_tags *tags, char out_id[KILN_ID_MAX])
{
	kiln_local *l = KILN_LOCAL(c);
	kiln_lock images_lock = KILN_LOCK_INIT, inst_lock = KILN_LOCK_INIT, img_lock = KILN_LOCK_INIT;
	kiln_buf p = KILN_BUF_INIT, upper = KILN_BUF_INIT, tmp = KILN_BUF_INIT, final = KILN_BUF_INIT;
	kiln_buf meta = KILN_BUF_INIT;
	kiln_strings parent = { 0 }, chain = { 0 };
	const char **lowers = NULL;
	char img_id[KILN_ID_MAX], layer_id[KILN_ID_MAX], taken[KILN_ID_MAX];
	uint64_t t0 = kiln_clock_now_ms(), layer_bytes, base_bytes = 0;
	json_t *inst = NULL, *doc = NULL, *ldoc = NULL;
	size_t i;
	int error;

	if (!name || !image_name_valid(name))
		return kiln_error_set(KILN_EINVALID,
				      "image name '%s' must be 3-128 letters, digits or ()[] ./-'@_",
				      name ? name : "");
	if ((error = kiln_local_require_root("creating a local image")) < 0)
		return error;
	if ((error = kiln_local_path(&p, l, "images")) < 0 || (error = kiln_mkdir_p(p.ptr, 0755)) < 0 ||
	    (error = kiln_local_path(&p, l, "layers")) < 0 || (error = kiln_mkdir_p(p.ptr, 0755)) < 0 ||
	    (error = kiln_local_path(&p, l, "images.lock")) < 0 ||
	    (error = kiln_lock_acquire(&images_lock, p.ptr, 300000)) < 0)
		goto done;
	if ((error = name_taken(l, name, taken)) < 0)
		goto done;
	if (taken[0]) {
		error = kiln_error_set_cloud(KILN_ECONFLICT, 400, "InvalidAMIName.Duplicate", NULL,
					     "an image named '%s' exists already ('%s')", name, taken);
		goto done;
	}
	if ((error = kiln_local_path(&p, l, "instances/%s/lock", instance_id)) < 0 ||
	    !kiln_local_id_valid(instance_id, "i-")) {
		error = kiln_error_set(KILN_ENOTFOUND, "no instance '%s'", instance_id);
		goto done;
	}
	if ((error = kiln_local_instance_load(&inst, l, instance_id)) < 0 ||
	    (error = kiln_lock_acquire(&inst_lock, p.ptr, 120000)) < 0)
		goto done;
	json_decref(inst);
	inst = NULL;
	if ((error = kiln_local_instance_load(&inst, l, instance_id)) < 0)
		goto done;
	if (strcmp(kiln_local_jstr(inst, "state"), "stopped")) {
		error = kiln_error_set_cloud(KILN_EINVALID, 400, "IncorrectInstanceState", NULL,
					     "instance '%s' is %s: stop it before creating an image",
					     instance_id, kiln_local_jstr(inst, "state"));
		goto done;
	}
	if ((error = kiln_local_new_id(img_id, "img-")) < 0 || (error = kiln_local_new_id(layer_id, "layer-")) < 0)
		goto done;
	if ((error = kiln_local_strings_from_json(&parent, json_object_get(inst, "layers"))) < 0 ||
	    (error = kiln_local_layer_chain(&chain, layer_id, &parent)) < 0)
		goto done;
	/* visible as pending while the layer is copied; failed if this process dies */
	if ((error = image_path(&p, l, img_id, ".lock")) < 0 || (error = kiln_lock_acquire(&img_lock, p.ptr, 0)) < 0)
		goto done;
	doc = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:s,s:o,s:s,s:o}", "id", img_id, "name", name,
			"description", description ? description : "", "owner", "self", "state", "pending",
			"state_reason", "", "created", (json_int_t)kiln_clock_wall_s(), "size_bytes",
			(json_int_t)0, "base", kiln_local_jstr(inst, "base"), "layers",
			kiln_local_strings_to_json(&chain), "source_instance", instance_id, "tags",
			tags ? kiln_tags_to_json(tags) : json_object());
	if (!doc) {
		error = kiln_error_set(KILN_ENOMEM, "out of memory");
		goto done;
	}
	if ((error = image_path(&meta, l, img_id, ".json")) < 0 || (error = kiln_local_json_save(meta.ptr, doc, 0644)) < 0)
		goto done;
	/* seal a copy: the instance's upper dir stays as it was */
	if ((error = kiln_local_path(&upper, l, "instances/%s/upper", instance_id)) < 0 ||
	    (error = kiln_local_path(&tmp, l, "layers/%s.tmp", layer_id)) < 0 ||
	    (error = kiln_local_path(&final, l, "layers/%s", layer_id)) < 0)
		goto done;
	if (!kiln_path_exists(upper.ptr)) {
		error = kiln_error_set(KILN_ERROR, "instance '%s' has no upper directory", instance_id);
		goto done;
	}
	if ((error = copy_tree(upper.ptr, tmp.ptr, false)) < 0)
		goto done;
	if (!(lowers = calloc(parent.n + 1, sizeof(*lowers)))) {
		error = kiln_error_set(KILN_ENOMEM, "out of memory");
		goto done;
	}
	for (i = 0; i < parent.n; i++)
		if (!(lowers[i] = kiln_strdupf("%s/layers/%s", l->dir, parent.items[i]))) {
			error = KILN_ENOMEM;
			goto done;
		}
	if (!(lowers[parent.n] = kiln_strdupf("%s/base/%s", l->dir, kiln_local_jstr(inst, "base")))) {
		error = KILN_ENOMEM;
		goto done;
	}
	if ((error = kiln_local_seal_layer(tmp.ptr, lowers, parent.n + 1)) < 0)
		goto done;
	if (chmod(tmp.ptr, 0755) < 0 || rename(tmp.ptr, final.ptr) < 0) {
		error = kiln_error_set_os(KILN_ERROR, errno, "cannot store layer '%s'", layer_id);
		goto done;
	}
	layer_bytes = kiln_local_du(final.ptr);
	{
		kiln_buf bm = KILN_BUF_INIT;
		json_t *b = NULL;
		if (base_path(&bm, l, ".json") == 0 && kiln_local_json_load(&b, bm.ptr) == 0)
			base_bytes = (uint64_t)kiln_local_jint(b, "size_bytes");
		kiln_error_clear();
		json_decref(b);
		kiln_buf_release(&bm);
	}
	for (i = 0; i < parent.n; i++) {
		kiln_buf lm = KILN_BUF_INIT;
		json_t *ld = NULL;
		if (kiln_local_path(&lm, l, "layers/%s.json", parent.items[i]) == 0 &&
		    kiln_local_json_load(&ld, lm.ptr) == 0)
			base_bytes += (uint64_t)kiln_local_jint(ld, "size_bytes");
		kiln_error_clear();
		json_decref(ld);
		kiln_buf_release(&lm);
	}
	ldoc = json_pack("{s:s,s:s,s:I,s:I,s:o}", "id", layer_id, "image_id", img_id, "created",
			 (json_int_t)kiln_clock_wall_s(), "size_bytes", (json_int_t)layer_bytes, "tags",
			 tags ? kiln_tags_to_json(tags) : json_object());
	if ((error = kiln_local_path(&p, l, "layers/%s.json", layer_id)) < 0 || !ldoc ||
	    (error = kiln_local_json_save(p.ptr, ldoc, 0644)) < 0)
		goto done;
	json_object_set_new(doc, "state", json_string("available"));
	json_object_set_new(doc, "size_bytes", json_integer((json_int_t)(layer_bytes + base_bytes)));
	json_object_set_new(doc, "layer_bytes", json_integer((json_int_t)layer_bytes));
	if ((error = kiln_local_json_save(meta.ptr, doc, 0644)) < 0)
		goto done;
	memcpy(out_id, img_id, KILN_ID_MAX);
	kiln_emit(c->events, "resource", KILN_LEVEL_INFO,
		  json_pack("{s:s,s:s,s:s,s:s,s:I,s:I}", "kind", "image", "id", img_id, "action", "created",
			    "layer", layer_id, "layer_bytes", (json_int_t)layer_bytes, "ms",
			    (json_int_t)(kiln_clock_now_ms() - t0)),
		  "created image '%s' (%s) from '%s': layer '%s' of %.1f MiB in %.1f s", img_id, name,
		  instance_id, layer_id, (double)layer_bytes / (1024.0 * 1024.0),
		  (double)(kiln_clock_now_ms() - t0) / 1000.0);
done:
	if (error < 0 && doc) {
		kiln_error saved;
		kiln_error_save(&saved);
		json_object_set_new(doc, "state", json_string("failed"));
		json_object_set_new(doc, "state_reason", json_string(saved.message));
		if (meta.len)
			kiln_local_json_save(meta.ptr, doc, 0644);
		if (tmp.len)
			kiln_remove_tree(tmp.ptr);
		kiln_error_restore(&saved);
	}
	if (lowers) {
		for (i = 0; i <= parent.n; i++)
			free((char *)lowers[i]);
		free(lowers);
	}
	json_decref(inst);
	json_decref(doc);
	json_decref(ldoc);
	kiln_lock_release(&img_lock);
	kiln_lock_release(&inst_lock);
	kiln_lock_release(&images_lock);
	kiln_strings_release(&parent);
	kiln_strings_release(&chain);
	kiln_buf_release(&p);
	kiln_buf_release(&upper);
	kiln_buf_release(&tmp);
	kiln_buf_release(&final);
	kiln_buf_release(&meta);
	return error;
}

/* Every layer dir (and leftover .tmp) in layers/. */
static int present_layers(kiln_local *l, kiln_strings *out)
{
	kiln_buf dir = KILN_BUF_INIT;
	kiln_strings all = { 0 };
	size_t i;
	int error;

	if ((error = kiln_local_path(&dir, l, "layers")) < 0 || (error = kiln_local_list_dir(&all, dir.ptr, "")) < 0)
		goto done;
	for (i = 0; i < all.n; i++) {
		size_t len = strlen(all.items[i]);
		if (len > 5 && !strcmp(all.items[i] + len - 5, ".json"))
			continue;
		if ((error = kiln_strings_add(out, all.items[i])) < 0)
			goto done;
	}
done:
	kiln_strings_release(&all);
	kiln_buf_release(&dir);
	return error;
}

static int gc_locked(kiln_local *l)
{
	kiln_strings present = { 0 }, garbage = { 0 }, files = { 0 }, *inst_chains = NULL, *chains = NULL;
	kiln_buf dir = KILN_BUF_INIT, p = KILN_BUF_INIT;
	size_t n_inst = 0, n = 0, i;
	int error;

	if ((error = present_layers(l, &present)) < 0 || present.n == 0)
		goto done;
	if ((error = kiln_local_instance_chains(&inst_chains, &n_inst, l)) < 0)
		goto done;
	if ((error = kiln_local_path(&dir, l, "images")) < 0 || (error = kiln_local_list_dir(&files, dir.ptr, ".json")) < 0)
		goto done;
	if (!(chains = calloc(files.n + n_inst + 1, sizeof(*chains)))) {
		error = kiln_error_set(KILN_ENOMEM, "out of memory");
		goto done;
	}
	for (i = 0; i < n_inst; i++) {
		chains[n++] = inst_chains[i];
		memset(&inst_chains[i], 0, sizeof(inst_chains[i]));
	}
	for (i = 0; i < files.n; i++) {
		json_t *doc = NULL;
		kiln_buf_reset(&p);
		kiln_buf_printf(&p, "%s/%s", dir.ptr, files.items[i]);
		if ((error = kiln_local_json_load(&doc, p.ptr)) < 0) {
			/* an image record kiln cannot read: keep every layer */
			kiln_error_prefix("layer cleanup stopped");
			goto done;
		}
		error = kiln_local_strings_from_json(&chains[n++], json_object_get(doc, "layers"));
		json_decref(doc);
		if (error < 0)
			goto done;
	}
	if ((error = kiln_local_layers_garbage(&garbage, &present, chains, n)) < 0)
		goto done;
	for (i = 0; i < garbage.n; i++) {
		if ((error = kiln_local_path(&p, l, "layers/%s", garbage.items[i])) < 0 ||
		    (error = kiln_remove_tree(p.ptr)) < 0 ||
		    (error = kiln_local_path(&p, l, "layers/%s.json", garbage.items[i])) < 0 ||
		    (error = kiln_remove_tree(p.ptr)) < 0)
			goto done;
		kiln_emit(l->cloud.events, "resource", KILN_LEVEL_DEBUG,
			  json_pack("{s:s,s:s,s:s}", "kind", "layer", "id", garbage.items[i], "action", "removed"),
			  "removed layer '%s' (no image or instance needs it)", garbage.items[i]);
	}
done:
	for (i = 0; i < n; i++)
		kiln_strings_release(&chains[i]);
	for (i = 0; i < n_inst; i++)
		kiln_strings_release(&inst_chains[i]);
	free(chains);
	free(inst_chains);
	kiln_strings_release(&present);
	kiln_strings_release(&garbage);
	kiln_strings_release(&files);
	kiln_buf_release(&dir);
	kiln_buf_release(&p);
	return error;
}

int kiln_local_layers_gc(kiln_local *l)
{
	kiln_lock lock = KILN_LOCK_INIT;
	kiln_buf p = KILN_BUF_INIT;
	int error;

	if ((error = kiln_local_path(&p, l, "images.lock")) == 0 &&
	    (error = kiln_lock_acquire(&lock, p.ptr, 300000)) == 0)
		error = gc_locked(l);
	kiln_lock_release(&lock);
	kiln_buf_release(&p);
	return error;
}

int kiln_local_image_delete(kiln_cloud *c, const char *image_id)
{
	kiln_local *l = KILN_LOCAL(c);
	kiln_lock lock = KILN_LOCK_INIT;
	kiln_buf p = KILN_BUF_INIT;
	int error;

	if (!strcmp(image_id, KILN_LOCAL_BASE_ID))
		return kiln_error_set(KILN_EINVALID,
				      "the base image '%s' cannot be deleted ('kiln local down --purge' removes "
				      "all local state)",
				      KILN_LOCAL_BASE_ID);
	if (!kiln_local_id_valid(image_id, "img-"))
		return kiln_error_set(KILN_EINVALID, "'%s' is not a local image id", image_id);
	if ((error = kiln_local_path(&p, l, "images.lock")) < 0 || (error = kiln_lock_acquire(&lock, p.ptr, 300000)) < 0)
		goto done;
	if ((error = image_path(&p, l, image_id, ".json")) < 0)
		goto done;
	if (!kiln_path_exists(p.ptr))
		goto done; /* already gone */
	if (unlink(p.ptr) < 0) {
		error = kiln_error_set_os(KILN_ERROR, errno, "cannot remove '%s'", p.ptr);
		goto done;
	}
	kiln_emit(c->events, "resource", KILN_LEVEL_INFO,
		  json_pack("{s:s,s:s,s:s}", "kind", "image", "id", image_id, "action", "removed"),
		  "deleted image '%s'", image_id);
	error = gc_locked(l);
done:
	kiln_lock_release(&lock);
	kiln_buf_release(&p);
	return error;
}

int kiln_local_images_status(kiln_local *l, json_t *out_array)
{
	kiln_image_list list = { 0 };
	size_t i;
	int error;

	if ((error = kiln_local_images_describe(&l->cloud, NULL, &list)) < 0)
		return error;
	for (i = 0; i < list.n; i++) {
		const kiln_image *img = &list.items[i];
		kiln_strings chain = { 0 };
		kiln_image again;
		json_t *o;
		if (strcmp(img->id, KILN_LOCAL_BASE_ID) && kiln_local_image_load(l, img->id, &again, &chain) == 0)
			kiln_image_release(&again);
		kiln_error_clear();
		o = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:o,s:o}", "id", img->id, "name", img->name, "owner",
			      img->owner, "state", kiln_image_state_name(img->state), "created",
			      (json_int_t)img->created, "size_bytes", (json_int_t)img->size_bytes, "layers",
			      kiln_local_strings_to_json(&chain), "tags", kiln_tags_to_json(&img->tags));
		if (o)
			json_array_append_new(out_array, o);
		kiln_strings_release(&chain);
	}
	kiln_image_list_release(&list);
	return 0;
}
