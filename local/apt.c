#include <signal.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "local/local.h"

/*
 * The apt proxy: apt-cacher-ng on the bridge address, port 3142, with its
 * own config dir and its cache in the state dir, so instances (which have
 * no route out: no NAT here) run `apt-get install` unchanged and a second
 * run downloads nothing. Its default Debian backend (ftp.debian.org) does
 * not resolve on these machines, hence backends_debian.
 */

static int apt_paths(const kiln_local *l, kiln_buf *conf_dir, kiln_buf *conf, kiln_buf *pid)
{
	int error;
	if ((error = kiln_local_path(conf_dir, l, "apt-cacher-ng")) < 0 ||
	    (error = kiln_local_path(conf, l, "apt-cacher-ng/acng.conf")) < 0)
		return error;
	return kiln_local_path(pid, l, "apt-cacher-ng/kiln.pid");
}

static pid_t apt_running(const kiln_local *l)
{
	kiln_buf dir = KILN_BUF_INIT, conf = KILN_BUF_INIT, pidp = KILN_BUF_INIT;
	char needle[1100];
	pid_t pid = 0;

	if (apt_paths(l, &dir, &conf, &pidp) == 0) {
		snprintf(needle, sizeof(needle), "-c %s ", dir.ptr);
		pid = kiln_local_pidfile_read(pidp.ptr);
		if (pid && !kiln_local_pid_alive(pid, needle))
			pid = 0;
	}
	kiln_buf_release(&dir);
	kiln_buf_release(&conf);
	kiln_buf_release(&pidp);
	return pid;
}

int kiln_local_apt_ensure(kiln_local *l, const kiln_local_config *cfg)
{
	kiln_buf dir = KILN_BUF_INIT, conf = KILN_BUF_INIT, pidp = KILN_BUF_INIT, text = KILN_BUF_INIT;
	kiln_buf have = KILN_BUF_INIT, cache = KILN_BUF_INIT, p = KILN_BUF_INIT;
	uint64_t deadline;
	pid_t pid;
	int error;

	if ((error = kiln_local_require_tool("apt-cacher-ng", "apt-cacher-ng")) < 0 ||
	    (error = apt_paths(l, &dir, &conf, &pidp)) < 0 || (error = kiln_local_path(&cache, l, "apt-cache")) < 0)
		goto done;
	if ((error = kiln_mkdir_p(dir.ptr, 0755)) < 0 || (error = kiln_mkdir_p(cache.ptr, 0755)) < 0 ||
	    (error = kiln_buf_printf(&p, "%s/log", dir.ptr)) < 0 || (error = kiln_mkdir_p(p.ptr, 0755)) < 0)
		goto done;
	if ((error = kiln_buf_printf(
		     &text,
		     "# apt-cacher-ng for kiln's local cloud, written by kiln (kiln local up)\n"
		     "CacheDir: %s\n"
		     "LogDir: %s/log\n"
		     "SupportDir: /usr/lib/apt-cacher-ng\n"
		     "Port: %d\n"
		     "BindAddress: %s\n"
		     "SocketPath: %s/socket\n"
		     "PidFile: %s/acng.pid\n"
		     "ForeGround: 1\n"
		     "Remap-debrep: file:deb_mirror*.gz /debian ; file:backends_debian\n"
		     "Remap-secdeb: security.debian.org security.debian.org/debian-security "
		     "deb.debian.org/debian-security /debian-security ; deb.debian.org/debian-security\n"
		     "ReportPage: acng-report.html\n"
		     "ExThreshold: 4\n",
		     cache.ptr, dir.ptr, KILN_LOCAL_APT_PORT, cfg->bridge_ip, dir.ptr, dir.ptr)) < 0)
		goto done;
	kiln_buf_init(&have, 1 << 20);
	if (kiln_read_file(&have, conf.ptr) < 0)
		kiln_error_clear();
	pid = apt_running(l);
	if (pid && !strcmp(have.ptr, text.ptr) &&
	    kiln_local_tcp_probe(cfg->bridge_ip, KILN_LOCAL_APT_PORT, 1000, false))
		goto done;
	if (pid && (error = kiln_local_kill_wait(pid, NULL, SIGTERM, 5000)) < 0)
		goto done;
	kiln_buf_reset(&p);
	if ((error = kiln_write_file_atomic(conf.ptr, text.ptr, text.len, 0644)) < 0 ||
	    (error = kiln_buf_printf(&p, "%s/backends_debian", dir.ptr)) < 0 ||
	    (error = kiln_write_file_atomic(p.ptr, KILN_LOCAL_MIRROR "/\n", strlen(KILN_LOCAL_MIRROR) + 2, 0644)) < 0)
		goto done;
	kiln_buf_reset(&p);
	kiln_buf_printf(&p, "%s/acng.out", dir.ptr);
	{
		/* "-c DIR " with the trailing space is what apt_running looks for */
		const char *argv[] = { "apt-cacher-ng", "-c", dir.ptr, "ForeGround=1", NULL };
		if ((error = kiln_local_spawn(&pid, argv, p.ptr)) < 0 ||
		    (error = kiln_local_pidfile_write(pidp.ptr, pid)) < 0)
			goto done;
	}
	deadline = kiln_clock_now_ms() + 15000;
	while (!kiln_local_tcp_probe(cfg->bridge_ip, KILN_LOCAL_APT_PORT, 500, false)) {
		if (!kiln_local_pid_alive(pid, NULL) || kiln_clock_now_ms() >= deadline) {
			error = kiln_error_set(KILN_ERROR, "apt-cacher-ng did not start on %s:%d (see '%s')",
					       cfg->bridge_ip, KILN_LOCAL_APT_PORT, p.ptr);
			kiln_local_kill_wait(pid, NULL, SIGKILL, 1000);
			goto done;
		}
		if ((error = kiln_sleep_ms(100)) < 0)
			goto done;
	}
	kiln_emit(KILN_LOCAL_EVENTS(l), "resource", KILN_LEVEL_INFO,
		  json_pack("{s:s,s:s,s:s,s:I}", "kind", "apt proxy", "id", "apt-cacher-ng", "action", "started",
			    "pid", (json_int_t)pid),
		  "apt proxy (apt-cacher-ng) on %s:%d, cache in '%s' (pid %ld)", cfg->bridge_ip,
		  KILN_LOCAL_APT_PORT, cache.ptr, (long)pid);
done:
	kiln_buf_release(&dir);
	kiln_buf_release(&conf);
	kiln_buf_release(&pidp);
	kiln_buf_release(&text);
	kiln_buf_release(&have);
	kiln_buf_release(&cache);
	kiln_buf_release(&p);
	return error;
}

int kiln_local_apt_stop(kiln_local *l)
{
	kiln_buf dir = KILN_BUF_INIT, conf = KILN_BUF_INIT, pidp = KILN_BUF_INIT;
	pid_t pid = apt_running(l);
	int error = 0;

	if ((error = apt_paths(l, &dir, &conf, &pidp)) < 0)
		goto done;
	if (pid && (error = kiln_local_kill_wait(pid, NULL, SIGTERM, 10000)) < 0)
		goto done;
	if (pid)
		kiln_emit(KILN_LOCAL_EVENTS(l), "resource", KILN_LEVEL_INFO,
			  json_pack("{s:s,s:s,s:s}", "kind", "apt proxy", "id", "apt-cacher-ng", "action", "stopped"),
			  "stopped the apt proxy (apt-cacher-ng pid %ld)", (long)pid);
	unlink(pidp.ptr);
done:
	kiln_buf_release(&dir);
	kiln_buf_release(&conf);
	kiln_buf_release(&pidp);
	return error;
}

int kiln_local_apt_status(kiln_local *l, const kiln_local_config *cfg, json_t **out)
{
	kiln_buf cache = KILN_BUF_INIT;
	pid_t pid = apt_running(l);
	char addr[64];
	int error;

	snprintf(addr, sizeof(addr), "%s:%d", cfg->bridge_ip, KILN_LOCAL_APT_PORT);
	if ((error = kiln_local_path(&cache, l, "apt-cache")) < 0)
		return error;
	*out = json_pack("{s:s,s:b,s:o,s:s,s:I}", "address", addr, "running", pid != 0, "pid",
			 pid ? json_integer(pid) : json_null(), "cache_dir", cache.ptr, "cache_bytes",
			 (json_int_t)kiln_local_du(cache.ptr));
	kiln_buf_release(&cache);
	return *out ? 0 : kiln_error_set(KILN_ENOMEM, "out of memory");
}
