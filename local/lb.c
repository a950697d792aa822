#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "local/local.h"

/*
 * Local balancers: one HAProxy process per balancer, under lb/NAME/.
 * kiln's record of the servers (lb.json) is what the config is written
 * from; HAProxy's own view (show stat) is what health is read from.
 * Every operation first makes sure the process runs with the current
 * config, so a balancer killed or lost in a reboot comes back on next use
 * with its servers (and their states, from the server-state file).
 *
 * Deregistration drains: `set server state drain` at once, then, driven by
 * later lb_health calls, maint and `del server` when the server has no
 * sessions left (or the drain timeout passed). The facts measured here:
 * drain, wait for scur 0, maint, del lost no request under wrk.
 */

#define HAPROXY_START_MS 10000

typedef struct lb_state {
	kiln_local_lb_conf conf;
	kiln_local_lb_server *servers;
	size_t n;
	int drain_timeout_s;
	kiln_buf dir, cfg, pid, log, json, lockp;
} lb_state;

#define LB_STATE_INIT                                                                      \
	{                                                                                  \
		.dir = KILN_BUF_INIT, .cfg = KILN_BUF_INIT, .pid = KILN_BUF_INIT,          \
		.log = KILN_BUF_INIT, .json = KILN_BUF_INIT, .lockp = KILN_BUF_INIT        \
	}

static void lb_state_release(lb_state *st)
{
	free(st->servers);
	st->servers = NULL;
	st->n = 0;
	kiln_buf_release(&st->dir);
	kiln_buf_release(&st->cfg);
	kiln_buf_release(&st->pid);
	kiln_buf_release(&st->log);
	kiln_buf_release(&st->json);
	kiln_buf_release(&st->lockp);
}

static int lb_paths(lb_state *st, const kiln_local *l, const char *name)
{
	int error;
	kiln_buf sock = KILN_BUF_INIT, state = KILN_BUF_INIT;

	if ((error = kiln_local_path(&st->dir, l, "lb/%s", name)) < 0 ||
	    (error = kiln_local_path(&st->cfg, l, "lb/%s/haproxy.cfg", name)) < 0 ||
	    (error = kiln_local_path(&st->pid, l, "lb/%s/haproxy.pid", name)) < 0 ||
	    (error = kiln_local_path(&st->log, l, "lb/%s/haproxy.log", name)) < 0 ||
	    (error = kiln_local_path(&st->json, l, "lb/%s/lb.json", name)) < 0 ||
	    (error = kiln_local_path(&st->lockp, l, "lb/%s/lock", name)) < 0 ||
	    (error = kiln_local_path(&sock, l, "lb/%s/admin.sock", name)) < 0 ||
	    (error = kiln_local_path(&state, l, "lb/%s/server-state", name)) < 0)
		goto done;
	if ((error = kiln_strlcpy(st->conf.socket_path, sizeof(st->conf.socket_path), sock.ptr)) < 0 ||
	    (error = kiln_strlcpy(st->conf.state_path, sizeof(st->conf.state_path), state.ptr)) < 0)
		kiln_error_prefix("balancer '%s'", name);
done:
	kiln_buf_release(&sock);
	kiln_buf_release(&state);
	return error;
}

static kiln_local_lb_server *lb_find(lb_state *st, const char *id)
{
	size_t i;
	for (i = 0; i < st->n; i++)
		if (!strcmp(st->servers[i].id, id))
			return &st->servers[i];
	return NULL;
}

static void lb_remove(lb_state *st, const char *id)
{
	size_t i;
	for (i = 0; i < st->n; i++) {
		if (strcmp(st->servers[i].id, id))
			continue;
		memmove(&st->servers[i], &st->servers[i + 1], (st->n - i - 1) * sizeof(*st->servers));
		st->n--;
		return;
	}
}

static int lb_add(lb_state *st, const kiln_local_lb_server *srv)
{
	kiln_local_lb_server *grown = realloc(st->servers, (st->n + 1) * sizeof(*grown));
	if (!grown)
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	st->servers = grown;
	st->servers[st->n++] = *srv;
	return 0;
}

/* Reads lb.json if there is one; the conf's paths must be set already. */
static int lb_load(lb_state *st)
{
	json_t *doc = NULL, *srv;
	size_t i;
	int error;

	error = kiln_local_json_load(&doc, st->json.ptr);
	if (error < 0)
		return error;
	snprintf(st->conf.name, sizeof(st->conf.name), "%s", kiln_local_jstr(doc, "name"));
	snprintf(st->conf.listen, sizeof(st->conf.listen), "%s", kiln_local_jstr(doc, "listen"));
	snprintf(st->conf.health_path, sizeof(st->conf.health_path), "%s",
		 kiln_local_jstr(doc, "health_path"));
	st->conf.interval_s = (int)kiln_local_jint(doc, "interval_s");
	st->conf.rise = (int)kiln_local_jint(doc, "rise");
	st->conf.fall = (int)kiln_local_jint(doc, "fall");
	st->conf.target_port = (int)kiln_local_jint(doc, "target_port");
	st->drain_timeout_s = (int)kiln_local_jint(doc, "drain_timeout_s");
	json_array_foreach(json_object_get(doc, "servers"), i, srv) {
		kiln_local_lb_server s;
		memset(&s, 0, sizeof(s));
		snprintf(s.id, sizeof(s.id), "%s", kiln_local_jstr(srv, "id"));
		snprintf(s.addr, sizeof(s.addr), "%s", kiln_local_jstr(srv, "addr"));
		s.port = (int)kiln_local_jint(srv, "port");
		s.draining = json_is_true(json_object_get(srv, "draining"));
		s.ever_up = json_is_true(json_object_get(srv, "ever_up"));
		s.registered_ms = kiln_local_jint(srv, "registered_ms");
		s.drain_start_ms = kiln_local_jint(srv, "drain_start_ms");
		s.l7_first_ms = kiln_local_jint(srv, "l7_first_ms");
		if (!kiln_local_id_valid(s.id, "i-"))
			continue;
		if ((error = lb_add(st, &s)) < 0)
			break;
	}
	json_decref(doc);
	return error;
}

static int lb_save(lb_state *st)
{
	json_t *doc, *arr = json_array();
	size_t i;
	int error;

	for (i = 0; arr && i < st->n; i++) {
		const kiln_local_lb_server *s = &st->servers[i];
		json_array_append_new(arr, json_pack("{s:s,s:s,s:i,s:b,s:b,s:I,s:I,s:I}", "id", s->id,
						     "addr", s->addr, "port", s->port, "draining",
						     s->draining, "ever_up", s->ever_up, "registered_ms",
						     (json_int_t)s->registered_ms, "drain_start_ms",
						     (json_int_t)s->drain_start_ms, "l7_first_ms",
						     (json_int_t)s->l7_first_ms));
	}
	doc = json_pack("{s:s,s:s,s:s,s:i,s:i,s:i,s:i,s:i,s:o}", "name", st->conf.name, "listen",
			st->conf.listen, "health_path", st->conf.health_path, "interval_s",
			st->conf.interval_s, "rise", st->conf.rise, "fall", st->conf.fall,
			"target_port", st->conf.target_port, "drain_timeout_s", st->drain_timeout_s,
			"servers", arr ? arr : json_array());
	if (!doc)
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	error = kiln_local_json_save(st->json.ptr, doc, 0600);
	json_decref(doc);
	return error;
}

static int lb_write_config(lb_state *st)
{
	kiln_buf text = KILN_BUF_INIT;
	int error;

	if ((error = kiln_local_haproxy_config(&text, &st->conf, st->servers, st->n)) == 0)
		error = kiln_write_file_atomic(st->cfg.ptr, text.ptr, text.len, 0600);
	kiln_buf_release(&text);
	return error;
}

static pid_t lb_running(lb_state *st)
{
	pid_t pid = kiln_local_pidfile_read(st->pid.ptr);
	return pid && kiln_local_pid_alive(pid, st->cfg.ptr) ? pid : 0;
}

static int lb_cmd(lb_state *st, kiln_buf *out, const char *fmt, ...) KILN_PRINTF(3, 4);
static int lb_cmd(lb_state *st, kiln_buf *out, const char *fmt, ...)
{
	char cmd[512];
	va_list ap;
	int error;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if ((error = kiln_local_haproxy_cmd(out, st->conf.socket_path, cmd)) < 0)
		kiln_error_prefix("balancer '%s'", st->conf.name);
	return error;
}

/* A command whose success is silence (enable, set ...); anything said is an error. */
static int lb_cmd_quiet(lb_state *st, const char *fmt, ...) KILN_PRINTF(2, 3);
static int lb_cmd_quiet(lb_state *st, const char *fmt, ...)
{
	kiln_buf out = KILN_BUF_INIT;
	char cmd[512];
	va_list ap;
	int error;

	kiln_buf_init(&out, 64 << 10);
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if ((error = kiln_local_haproxy_cmd(&out, st->conf.socket_path, cmd)) < 0) {
		kiln_error_prefix("balancer '%s'", st->conf.name);
	} else {
		kiln_buf_rtrim(&out);
		if (out.len)
			error = kiln_error_set(KILN_ERROR, "balancer '%s': '%s' failed: %s", st->conf.name,
					       cmd, out.ptr);
	}
	kiln_buf_release(&out);
	return error;
}

/* Keeps the server-state file current, so a reload or restart loses nothing. */
static int lb_save_server_state(lb_state *st)
{
	kiln_buf out = KILN_BUF_INIT;
	int error;

	kiln_buf_init(&out, 4 << 20);
	if ((error = lb_cmd(st, &out, "show servers state be")) == 0)
		error = kiln_write_file_atomic(st->conf.state_path, out.ptr, out.len, 0600);
	kiln_buf_release(&out);
	return error;
}

static int lb_check_config(lb_state *st)
{
	const char *argv[] = { "haproxy", "-c", "-q", "-f", st->cfg.ptr, NULL };
	return kiln_local_run(argv, NULL, NULL, 30000);
}

/* Waits until HAProxy pid answers on the admin socket (it binds it before serving). */
static int lb_wait_ready(lb_state *st, pid_t pid)
{
	uint64_t deadline = kiln_clock_now_ms() + HAPROXY_START_MS;
	kiln_buf out = KILN_BUF_INIT, log = KILN_BUF_INIT;
	char want[32];
	int error;

	snprintf(want, sizeof(want), "\nPid: %ld\n", (long)pid);
	kiln_buf_init(&out, 1 << 20);
	for (;;) {
		if (kiln_local_haproxy_cmd(&out, st->conf.socket_path, "show info") == 0 &&
		    strstr(out.ptr, want)) {
			error = 0;
			break;
		}
		kiln_error_clear();
		if (!kiln_local_pid_alive(pid, st->cfg.ptr) || kiln_clock_now_ms() >= deadline) {
			kiln_buf_init(&log, 64 << 10);
			kiln_read_file(&log, st->log.ptr);
			kiln_buf_rtrim(&log);
			{
				const char *last = strrchr(log.ptr, '\n');
				error = kiln_error_set(KILN_ERROR, "balancer '%s': HAProxy did not start%s%s",
						       st->conf.name, log.len ? ": " : "",
						       last ? last + 1 : log.ptr);
			}
			break;
		}
		if ((error = kiln_sleep_ms(50)) < 0)
			break;
	}
	kiln_buf_release(&out);
	kiln_buf_release(&log);
	return error;
}

/*
 * Starts HAProxy on the current config, or (old_pid) replaces old_pid
 * seamlessly: the new process takes the listening sockets over the admin
 * socket (-x) and the old one finishes its connections (-sf).
 */
static int lb_start(kiln_local *l, lb_state *st, pid_t old_pid)
{
	char old[32];
	const char *fresh[] = { "haproxy", "-f", st->cfg.ptr, NULL };
	const char *reload[] = { "haproxy", "-f", st->cfg.ptr, "-x", st->conf.socket_path, "-sf", old, NULL };
	pid_t pid;
	int error;

	snprintf(old, sizeof(old), "%ld", (long)old_pid);
	if ((error = lb_check_config(st)) < 0)
		return kiln_error_prefix("balancer '%s': bad HAProxy config", st->conf.name);
	if (old_pid)
		lb_save_server_state(st);
	if (!old_pid)
		unlink(st->conf.socket_path);
	if ((error = kiln_local_spawn(&pid, old_pid ? reload : fresh, st->log.ptr)) < 0 ||
	    (error = kiln_local_pidfile_write(st->pid.ptr, pid)) < 0)
		return error;
	if ((error = lb_wait_ready(st, pid)) < 0) {
		kiln_local_kill_wait(pid, st->cfg.ptr, SIGTERM, 2000);
		return error;
	}
	kiln_emit(KILN_LOCAL_EVENTS(l), "resource", KILN_LEVEL_INFO,
		  json_pack("{s:s,s:s,s:s,s:I}", "kind", "balancer", "id", st->conf.name, "action",
			    old_pid ? "reloaded" : "started", "pid", (json_int_t)pid),
		  "balancer '%s': HAProxy %s on %s (pid %ld)", st->conf.name,
		  old_pid ? "reloaded" : "started", st->conf.listen, (long)pid);
	return 0;
}

static bool conf_same(const kiln_local_lb_conf *a, const kiln_local_lb_conf *b)
{
	return !strcmp(a->listen, b->listen) && !strcmp(a->health_path, b->health_path) &&
	       a->interval_s == b->interval_s && a->rise == b->rise && a->fall == b->fall &&
	       a->target_port == b->target_port;
}

/*
 * What every balancer operation starts with: the state loaded under the
 * balancer's lock (held on return), the config in step with lb's
 * parameters, HAProxy running.
 */
static int lb_prepare(kiln_local *l, const kiln_lb *lb, lb_state *st, kiln_lock *lock)
{
	kiln_local_lb_conf want;
	bool fresh = false, changed = false;
	pid_t pid;
	size_t i;
	int error;

	if ((error = kiln_local_lb_conf_from(&want, lb)) < 0)
		return error;
	if ((error = kiln_local_require_root("a local balancer")) < 0 ||
	    (error = kiln_local_require_tool("haproxy", "haproxy")) < 0)
		return error;
	if ((error = lb_paths(st, l, want.name)) < 0 || (error = kiln_mkdir_p(st->dir.ptr, 0700)) < 0)
		return error;
	if ((error = kiln_lock_acquire(lock, st->lockp.ptr, 60000)) < 0)
		return error;
	error = lb_load(st);
	if (error == KILN_ENOTFOUND) {
		kiln_error_clear();
		fresh = true;
		st->drain_timeout_s = KILN_LOCAL_DRAIN_TIMEOUT_S;
	} else if (error < 0) {
		return error;
	}
	memcpy(want.socket_path, st->conf.socket_path, sizeof(want.socket_path));
	memcpy(want.state_path, st->conf.state_path, sizeof(want.state_path));
	changed = fresh || !conf_same(&st->conf, &want);
	st->conf = want;
	for (i = 0; i < st->n; i++) {
		if (st->servers[i].port != want.target_port) {
			st->servers[i].port = want.target_port;
			changed = true;
		}
	}
	if (st->drain_timeout_s <= 0)
		st->drain_timeout_s = KILN_LOCAL_DRAIN_TIMEOUT_S;
	pid = lb_running(st);
	if (changed || !pid) {
		if ((error = lb_save(st)) < 0 || (error = lb_write_config(st)) < 0)
			return error;
		if (!kiln_path_exists(st->conf.state_path) &&
		    (error = kiln_write_file_atomic(st->conf.state_path, "1\n", 2, 0600)) < 0)
			return error;
		error = lb_start(l, st, pid);
	}
	return error;
}

/* After a change of servers: the record, the config and the state file follow. */
static int lb_commit(lb_state *st)
{
	int error;
	if ((error = lb_save(st)) < 0 || (error = lb_write_config(st)) < 0)
		return error;
	return lb_save_server_state(st);
}

int kiln_local_lb_open(kiln_cloud *c, const kiln_lb *lb, kiln_lb_info *out)
{
	lb_state st = LB_STATE_INIT;
	kiln_lock lock = KILN_LOCK_INIT;
	int error;

	if ((error = lb_prepare(KILN_LOCAL(c), lb, &st, &lock)) == 0) {
		memset(out, 0, sizeof(*out));
		snprintf(out->name, sizeof(out->name), "%s", st.conf.name);
		out->drain_timeout_s = st.drain_timeout_s;
		out->health_interval_s = st.conf.interval_s;
	}
	kiln_lock_release(&lock);
	lb_state_release(&st);
	return error;
}

static int instance_addr(kiln_local *l, const char *id, char addr[16])
{
	json_t *doc = NULL;
	const char *state;
	int error;

	if (!kiln_local_id_valid(id, "i-"))
		return kiln_error_set(KILN_EINVALID, "'%s' is not an instance id", id);
	if ((error = kiln_local_instance_load(&doc, l, id)) < 0)
		return error;
	state = kiln_local_jstr(doc, "state");
	if (strcmp(state, "running") && strcmp(state, "pending"))
		error = kiln_error_set(KILN_EINVALID,
				       "instance '%s' is %s: only pending or running instances can be "
				       "registered",
				       id, state);
	else
		error = kiln_strlcpy(addr, 16, kiln_local_jstr(doc, "private_ip"));
	json_decref(doc);
	return error;
}

int kiln_local_lb_register(kiln_cloud *c, const kiln_lb *lb, const char *const *ids, size_t n)
{
	kiln_local *l = KILN_LOCAL(c);
	lb_state st = LB_STATE_INIT;
	kiln_lock lock = KILN_LOCK_INIT;
	kiln_buf out = KILN_BUF_INIT;
	bool ready = false;
	size_t i;
	int error;

	kiln_buf_init(&out, 64 << 10);
	if ((error = lb_prepare(l, lb, &st, &lock)) < 0)
		goto done;
	ready = true;
	for (i = 0; i < n; i++) {
		kiln_local_lb_server *have = lb_find(&st, ids[i]), srv;
		char addr[16], check[128];

		if ((error = instance_addr(l, ids[i], addr)) < 0)
			goto done;
		if (have && !have->draining && !strcmp(have->addr, addr))
			continue;
		if (have && have->draining && !strcmp(have->addr, addr)) {
			/* registered again while draining: serve again, as ELB does */
			if ((error = lb_cmd_quiet(&st, "set server be/%s state ready", ids[i])) < 0)
				goto done;
			have->draining = false;
			have->drain_start_ms = 0;
			continue;
		}
		if (have) {
			/* another address under the same id: cannot happen with kiln's ids */
			error = kiln_error_set(KILN_ECONFLICT,
					       "balancer '%s' has '%s' at %s, not %s", st.conf.name,
					       ids[i], have->addr, addr);
			goto done;
		}
		/* HAProxy 2.6 does not apply default-server's inter to dynamic servers */
		kiln_local_haproxy_check_args(check, sizeof(check), &st.conf);
		if ((error = lb_cmd(&st, &out, "add server be/%s %s:%d %s", ids[i], addr,
				    st.conf.target_port, check)) < 0)
			goto done;
		if (!strstr(out.ptr, "New server registered") && !strstr(out.ptr, "Already exists")) {
			kiln_buf_rtrim(&out);
			error = kiln_error_set(KILN_ERROR, "balancer '%s': cannot add '%s': %s",
					       st.conf.name, ids[i], out.ptr);
			goto done;
		}
		/*
		 * A server leaving maintenance with checks on starts out UP in
		 * HAProxy 2.6 and would take traffic before its first check:
		 * forcing it down in the same breath makes it earn rise passing
		 * checks first (a request landing in between is redispatched).
		 */
		if ((error = lb_cmd_quiet(&st, "enable health be/%s; enable server be/%s; set server be/%s health down",
					  ids[i], ids[i], ids[i])) < 0)
			goto done;
		memset(&srv, 0, sizeof(srv));
		snprintf(srv.id, sizeof(srv.id), "%s", ids[i]);
		memcpy(srv.addr, addr, sizeof(srv.addr));
		srv.port = st.conf.target_port;
		srv.registered_ms = kiln_clock_wall_ms();
		if ((error = lb_add(&st, &srv)) < 0)
			goto done;
		kiln_emit(KILN_LOCAL_EVENTS(l), "info", KILN_LEVEL_DEBUG, NULL,
			  "balancer '%s': registered '%s' (%s:%d)", st.conf.name, ids[i], addr,
			  st.conf.target_port);
	}
done:
	if (ready) {
		int e2 = lb_commit(&st);
		if (error == 0)
			error = e2;
	}
	kiln_buf_release(&out);
	kiln_lock_release(&lock);
	lb_state_release(&st);
	return error;
}

int kiln_local_lb_deregister(kiln_cloud *c, const kiln_lb *lb, const char *const *ids, size_t n)
{
	kiln_local *l = KILN_LOCAL(c);
	lb_state st = LB_STATE_INIT;
	kiln_lock lock = KILN_LOCK_INIT;
	kiln_buf out = KILN_BUF_INIT;
	bool ready = false;
	size_t i;
	int error;

	kiln_buf_init(&out, 64 << 10);
	if ((error = lb_prepare(l, lb, &st, &lock)) < 0)
		goto done;
	ready = true;
	for (i = 0; i < n; i++) {
		kiln_local_lb_server *have = lb_find(&st, ids[i]);
		if (!have || have->draining)
			continue;
		if ((error = lb_cmd(&st, &out, "set server be/%s state drain", ids[i])) < 0)
			goto done;
		kiln_buf_rtrim(&out);
		if (strstr(out.ptr, "No such server")) {
			lb_remove(&st, ids[i]);
			continue;
		}
		if (out.len) {
			error = kiln_error_set(KILN_ERROR, "balancer '%s': cannot drain '%s': %s",
					       st.conf.name, ids[i], out.ptr);
			goto done;
		}
		have->draining = true;
		have->drain_start_ms = kiln_clock_wall_ms();
		kiln_emit(KILN_LOCAL_EVENTS(l), "info", KILN_LEVEL_DEBUG, NULL,
			  "balancer '%s': draining '%s'", st.conf.name, ids[i]);
	}
done:
	if (ready) {
		int e2 = lb_commit(&st);
		if (error == 0)
			error = e2;
	}
	kiln_buf_release(&out);
	kiln_lock_release(&lock);
	lb_state_release(&st);
	return error;
}

static int lb_stat(lb_state *st, kiln_local_stat_row **rows, size_t *n)
{
	kiln_buf out = KILN_BUF_INIT;
	int error;

	kiln_buf_init(&out, 16 << 20);
	if ((error = lb_cmd(st, &out, "show stat")) == 0)
		error = kiln_local_haproxy_parse_stat(rows, n, out.ptr, "be");
	kiln_buf_release(&out);
	return error;
}

/*
 * Finishes drains: a draining server with no session left (or past the
 * drain timeout) goes to maint and is deleted. A failure leaves it
 * draining, to be tried again on the next call.
 */
static int lb_settle(kiln_local *l, lb_state *st, kiln_local_stat_row *rows, size_t n_rows,
		     bool *changed)
{
	int64_t now = kiln_clock_wall_ms();
	kiln_buf out = KILN_BUF_INIT;
	size_t i = 0;

	kiln_buf_init(&out, 64 << 10);
	while (i < st->n) {
		kiln_local_lb_server *s = &st->servers[i];
		const kiln_local_stat_row *row = kiln_local_stat_find(rows, n_rows, s->id);
		bool timed_out = now - s->drain_start_ms >= (int64_t)st->drain_timeout_s * 1000;
		char id[KILN_ID_MAX];

		if (!s->draining || (row && row->scur + row->qcur > 0 && !timed_out)) {
			i++;
			continue;
		}
		memcpy(id, s->id, sizeof(id));
		if (row) {
			if (lb_cmd(st, &out, "set server be/%s state maint", id) < 0)
				goto next;
			if (row->scur + row->qcur > 0) {
				kiln_warn(KILN_LOCAL_EVENTS(l),
					  "balancer '%s': '%s' still had %lld sessions after the %d s "
					  "drain timeout: closing them",
					  st->conf.name, id, (long long)(row->scur + row->qcur),
					  st->drain_timeout_s);
				lb_cmd(st, &out, "shutdown sessions server be/%s", id);
			}
			if (lb_cmd(st, &out, "del server be/%s", id) < 0)
				goto next;
			if (!strstr(out.ptr, "Server deleted") && !strstr(out.ptr, "No such server"))
				goto next; /* connections still attached: next time */
		}
		lb_remove(st, id);
		*changed = true;
		kiln_emit(KILN_LOCAL_EVENTS(l), "info", KILN_LEVEL_DEBUG, NULL,
			  "balancer '%s': '%s' drained and removed", st->conf.name, id);
		continue;
next:
		kiln_error_clear();
		i++;
	}
	kiln_buf_release(&out);
	return 0;
}

/* 0 running or pending, 1 stopped (or stopping), 2 terminated or unknown */
static int instance_gone(kiln_local *l, const char *id)
{
	json_t *doc = NULL;
	const char *state;
	int gone;

	if (kiln_local_instance_load(&doc, l, id) < 0) {
		kiln_error_clear();
		return 2;
	}
	state = kiln_local_jstr(doc, "state");
	gone = !strcmp(state, "running") || !strcmp(state, "pending") ? 0
	       : !strcmp(state, "stopped") || !strcmp(state, "stopping") ? 1
									: 2;
	json_decref(doc);
	return gone;
}

/*
 * As ELB deregisters terminated instances by itself: their servers go
 * (maint at once, deleted by the settle that follows), so a fleet's
 * balancer does not collect dead entries.
 */
static void forget_terminated(kiln_local *l, lb_state *st, bool *changed)
{
	size_t i;
	for (i = 0; i < st->n; i++) {
		kiln_local_lb_server *s = &st->servers[i];
		if (s->draining || instance_gone(l, s->id) != 2)
			continue;
		if (lb_cmd_quiet(st, "set server be/%s state maint", s->id) < 0)
			kiln_error_clear();
		s->draining = true;
		s->drain_start_ms = 0; /* nothing to wait for */
		*changed = true;
		kiln_emit(KILN_LOCAL_EVENTS(l), "info", KILN_LEVEL_DEBUG, NULL,
			  "balancer '%s': '%s' was terminated: deregistered", st->conf.name, s->id);
	}
}

int kiln_local_lb_health(kiln_cloud *c, const kiln_lb *lb, const char *const *ids, size_t n,
			 kiln_target_list *out)
{
	kiln_local *l = KILN_LOCAL(c);
	lb_state st = LB_STATE_INIT;
	kiln_lock lock = KILN_LOCK_INIT;
	kiln_local_stat_row *rows = NULL;
	kiln_target_list list = { 0 };
	kiln_strings want = { 0 };
	size_t n_rows = 0, i;
	bool changed = false;
	int error;

	if ((error = lb_prepare(l, lb, &st, &lock)) < 0)
		goto done;
	forget_terminated(l, &st, &changed);
	if ((error = lb_stat(&st, &rows, &n_rows)) < 0)
		goto done;
	if ((error = lb_settle(l, &st, rows, n_rows, &changed)) < 0)
		goto done;
	if (changed) {
		free(rows);
		rows = NULL;
		if ((error = lb_stat(&st, &rows, &n_rows)) < 0)
			goto done;
	}
	for (i = 0; i < (ids ? n : st.n); i++)
		if ((error = kiln_strings_add(&want, ids ? ids[i] : st.servers[i].id)) < 0)
			goto done;
	for (i = 0; i < want.n; i++) {
		kiln_local_lb_server *srv = lb_find(&st, want.items[i]), before;
		const kiln_local_stat_row *row = kiln_local_stat_find(rows, n_rows, want.items[i]);
		kiln_target t;

		memset(&t, 0, sizeof(t));
		snprintf(t.instance_id, sizeof(t.instance_id), "%s", want.items[i]);
		if (srv)
			before = *srv;
		if (srv && !srv->draining && instance_gone(l, srv->id)) {
			/* as ELB: a stopped target is unused, whatever its checks say */
			t.health = KILN_HEALTH_UNUSED;
			snprintf(t.reason, sizeof(t.reason),
				 "Target.InvalidState: the instance is not running");
		} else {
			t.health = kiln_local_health_map(row, srv, &st.conf, kiln_clock_wall_ms(), t.reason);
		}
		if (srv && (before.ever_up != srv->ever_up || before.l7_first_ms != srv->l7_first_ms))
			changed = true;
		if ((error = kiln_target_list_add(&list, &t)) < 0)
			goto done;
	}
	if (changed && (error = lb_commit(&st)) < 0)
		goto done;
	*out = list;
	memset(&list, 0, sizeof(list));
done:
	free(rows);
	kiln_strings_release(&want);
	kiln_target_list_release(&list);
	kiln_lock_release(&lock);
	lb_state_release(&st);
	return error;
}

int kiln_local_lb_status(kiln_local *l, json_t *out_array)
{
	kiln_strings names = { 0 };
	kiln_buf dir = KILN_BUF_INIT;
	size_t i, j;
	int error;

	if ((error = kiln_local_path(&dir, l, "lb")) < 0 ||
	    (error = kiln_local_list_dir(&names, dir.ptr, "")) < 0)
		goto done;
	for (i = 0; i < names.n; i++) {
		lb_state st = LB_STATE_INIT;
		kiln_local_stat_row *rows = NULL;
		size_t n_rows = 0;
		json_t *o, *servers = json_array();
		pid_t pid;

		if (lb_paths(&st, l, names.items[i]) < 0 || lb_load(&st) < 0) {
			kiln_error_clear();
			lb_state_release(&st);
			json_decref(servers);
			continue;
		}
		pid = lb_running(&st);
		if (pid && geteuid() == 0 && lb_stat(&st, &rows, &n_rows) < 0)
			kiln_error_clear();
		for (j = 0; j < st.n; j++) {
			char reason[KILN_NAME_MAX];
			kiln_local_lb_server copy = st.servers[j];
			const kiln_local_stat_row *row = kiln_local_stat_find(rows, n_rows, copy.id);
			kiln_health h = pid && rows ? kiln_local_health_map(row, &copy, &st.conf,
									    kiln_clock_wall_ms(), reason)
						    : KILN_HEALTH_UNKNOWN;
			if (!pid || !rows)
				snprintf(reason, sizeof(reason), "%s", pid ? "not root" : "balancer stopped");
			if (!copy.draining && instance_gone(l, copy.id)) {
				/*
				 * As lb_health says: after `kiln local down` a restarted HAProxy
				 * loads its servers UP from the state file until their checks
				 * fail, but a stopped instance serves nothing.
				 */
				h = KILN_HEALTH_UNUSED;
				snprintf(reason, sizeof(reason), "Target.InvalidState: the instance is not running");
			}
			json_array_append_new(servers,
					      json_pack("{s:s,s:s,s:i,s:s,s:s,s:I}", "id", copy.id, "addr",
							copy.addr, "port", copy.port, "health",
							kiln_health_name(h), "reason", reason, "sessions",
							(json_int_t)(row ? row->scur : 0)));
		}
		o = json_pack("{s:s,s:s,s:s,s:i,s:i,s:i,s:b,s:I,s:s,s:s,s:o}", "name", st.conf.name,
			      "listen", st.conf.listen, "health_path", st.conf.health_path, "interval_s",
			      st.conf.interval_s, "rise", st.conf.rise, "fall", st.conf.fall, "running",
			      pid != 0, "pid", (json_int_t)pid, "config", st.cfg.ptr, "admin_socket",
			      st.conf.socket_path, "servers", servers);
		if (o)
			json_array_append_new(out_array, o);
		free(rows);
		lb_state_release(&st);
	}
done:
	kiln_strings_release(&names);
	kiln_buf_release(&dir);
	return error;
}

int kiln_local_lb_stop_all(kiln_local *l)
{
	kiln_strings names = { 0 };
	kiln_buf dir = KILN_BUF_INIT;
	size_t i;
	int error, first = 0;

	if ((error = kiln_local_path(&dir, l, "lb")) < 0 ||
	    (error = kiln_local_list_dir(&names, dir.ptr, "")) < 0)
		goto done;
	for (i = 0; i < names.n; i++) {
		lb_state st = LB_STATE_INIT;
		pid_t pid;
		if ((error = lb_paths(&st, l, names.items[i])) == 0 && (pid = lb_running(&st))) {
			if (lb_save_server_state(&st) < 0)
				kiln_error_clear();
			error = kiln_local_kill_wait(pid, st.cfg.ptr, SIGTERM, 5000);
			if (error == 0)
				kiln_emit(KILN_LOCAL_EVENTS(l), "resource", KILN_LEVEL_INFO,
					  json_pack("{s:s,s:s,s:s}", "kind", "balancer", "id",
						    names.items[i], "action", "stopped"),
					  "stopped balancer '%s' (HAProxy pid %ld)", names.items[i],
					  (long)pid);
		}
		if (error == 0) {
			unlink(st.pid.ptr);
			unlink(st.conf.socket_path);
		}
		if (error < 0 && !first)
			first = error;
		lb_state_release(&st);
	}
	error = first;
done:
	kiln_strings_release(&names);
	kiln_buf_release(&dir);
	return error;
}
