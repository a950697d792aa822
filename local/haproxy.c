#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "local/local.h"

/*
 * HAProxy as the local cloud's load balancer: the config kiln writes, the
 * admin socket it drives, and how `show stat` maps to ELB-like health.
 * Everything here but kiln_local_haproxy_cmd is pure, for unit tests.
 *
 * HAProxy 2.6 cannot add frontends or change checks at runtime, and a
 * restart forgets servers added over the socket: so the config file
 * always lists the current servers (draining ones disabled), and the
 * server-state file (load-server-state-from-file) carries their up/down
 * and drain states across a reload or restart.
 */

#define DEFAULT_LISTEN "127.0.0.1:8080"

bool kiln_local_lb_name_valid(const char *name)
{
	size_t i, len = name ? strlen(name) : 0;
	if (len == 0 || len > 48 || name[0] == '.' || name[0] == '-')
		return false;
	for (i = 0; i < len; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
		      (name[i] >= '0' && name[i] <= '9') || name[i] == '_' || name[i] == '.' ||
		      name[i] == '-'))
			return false;
	return true;
}

/* "127.0.0.1:8080", "*:8080" or ":8080": what a bind line takes, nothing else. */
static bool listen_valid(const char *s)
{
	const char *colon = strrchr(s, ':');
	char host[32];
	struct in_addr a;
	int64_t port;

	if (!colon || kiln_parse_i64(&port, colon + 1, 1, 65535) < 0)
		return false;
	if ((size_t)(colon - s) >= sizeof(host))
		return false;
	snprintf(host, sizeof(host), "%.*s", (int)(colon - s), s);
	return !host[0] || !strcmp(host, "*") || inet_pton(AF_INET, host, &a) == 1;
}

/* A path the health check may request: printable, no space, no config syntax. */
static bool health_path_valid(const char *s)
{
	size_t i, len = strlen(s);
	if (len == 0 || len > 200 || s[0] != '/')
		return false;
	for (i = 0; i < len; i++)
		if (s[i] <= ' ' || s[i] >= 0x7f || s[i] == '#' || s[i] == '\\' || s[i] == '"' ||
		    s[i] == '\'')
			return false;
	return true;
}

int kiln_local_lb_conf_from(kiln_local_lb_conf *conf, const kiln_lb *lb)
{
	const char *listen = lb->listen && *lb->listen ? lb->listen : DEFAULT_LISTEN;
	const char *path = lb->health_path && *lb->health_path ? lb->health_path : "/";

	memset(conf, 0, sizeof(*conf));
	if (lb->kind != KILN_LB_LOCAL)
		return kiln_error_set(KILN_EINVALID,
				      "the local provider has only local balancers (kind local), not '%s'",
				      lb->ref ? lb->ref : "");
	if (!kiln_local_lb_name_valid(lb->ref))
		return kiln_error_set(KILN_EINVALID,
				      "balancer name '%s' must be 1-48 letters, digits, '_', '.' or '-'",
				      lb->ref ? lb->ref : "");
	if (!listen_valid(listen))
		return kiln_error_set(KILN_EINVALID,
				      "balancer '%s': listen '%s' must be ADDRESS:PORT like '127.0.0.1:8080'",
				      lb->ref, listen);
	if (!health_path_valid(path))
		return kiln_error_set(KILN_EINVALID,
				      "balancer '%s': health path '%s' must start with '/' and hold no "
				      "spaces or quotes",
				      lb->ref, path);
	snprintf(conf->name, sizeof(conf->name), "%s", lb->ref);
	snprintf(conf->listen, sizeof(conf->listen), "%s", listen);
	snprintf(conf->health_path, sizeof(conf->health_path), "%s", path);
	conf->interval_s = lb->interval_s > 0 ? lb->interval_s : 2;
	conf->rise = lb->rise > 0 ? lb->rise : 2;
	conf->fall = lb->fall > 0 ? lb->fall : 2;
	conf->target_port = lb->target_port > 0 ? lb->target_port : 80;
	if (conf->interval_s > 300 || conf->rise > 100 || conf->fall > 100 || conf->target_port > 65535)
		return kiln_error_set(KILN_EINVALID,
				      "balancer '%s': interval (<= 300 s), rise, fall (<= 100) or "
				      "port (<= 65535) out of range",
				      lb->ref);
	return 0;
}

/*
 * A server that is down (a new one still booting, or one that failed) is
 * checked every quarter interval (downinter, at least 100 ms): it costs a
 * refused connect, and the balancer then notices within a quarter interval
 * that the application answers, instead of up to a whole interval later.
 * Rise and fall still count checks a full interval apart: after the first
 * pass (or fail) HAProxy checks at fastinter, which defaults to inter. A
 * new server's first check runs as it is added, usually before its
 * application answers, so without this it waited a whole interval for the
 * next: rise x interval from registration, not (rise - 1) x interval from
 * the moment the application answered.
 */
void kiln_local_haproxy_check_args(char *out, size_t size, const kiln_local_lb_conf *conf)
{
	int down_ms = KILN_MAX(conf->interval_s * 1000 / 4, 100);
	snprintf(out, size, "check inter %ds downinter %dms rise %d fall %d", conf->interval_s, down_ms,
		 conf->rise, conf->fall);
}

int kiln_local_haproxy_config(kiln_buf *out, const kiln_local_lb_conf *conf,
			      const kiln_local_lb_server *servers, size_t n)
{
	char check[128];
	size_t i;
	int error;

	kiln_buf_reset(out);
	error = kiln_buf_printf(
		out,
		"# HAProxy config of kiln's local balancer '%s'. kiln rewrites it on every\n"
		"# change: edit the fleet file, not this.\n"
		"global\n"
		"    stats socket %s mode 600 level admin expose-fd listeners\n"
		"    stats timeout 30s\n"
		"    server-state-file %s\n"
		"    hard-stop-after 60s\n"
		"    maxconn 4096\n"
		"\n"
		"defaults\n"
		"    mode http\n"
		"    timeout connect 2s\n"
		"    timeout client 60s\n"
		"    timeout server 60s\n"
		"    timeout http-request 10s\n"
		"    timeout http-keep-alive 10s\n"
		"    # a request whose server vanished goes to another one\n"
		"    retries 3\n"
		"    retry-on conn-failure empty-response\n"
		"    option redispatch 1\n"
		"    load-server-state-from-file global\n"
		"\n"
		"frontend fe\n"
		"    bind %s\n"
		"    default_backend be\n"
		"\n"
		"backend be\n"
		"    balance roundrobin\n"
		"    # HTTP/1.1 with a Host, as ELB checks: apps that validate Host (Django)\n"
		"    # answer a bare HTTP/1.0 check with 400\n"
		"    option httpchk\n"
		"    http-check send meth GET uri %s ver HTTP/1.1 hdr Host localhost\n"
		"    # servers added at runtime do not inherit inter: each line repeats it\n"
		"    default-server inter %ds rise %d fall %d\n",
		conf->name, conf->socket_path, conf->state_path, conf->listen, conf->health_path,
		conf->interval_s, conf->rise, conf->fall);
	kiln_local_haproxy_check_args(check, sizeof(check), conf);
	for (i = 0; error == 0 && i < n; i++)
		error = kiln_buf_printf(out, "    server %s %s:%d %s%s\n", servers[i].id, servers[i].addr,
					servers[i].port, check, servers[i].draining ? " disabled" : "");
	return error;
}

/* ---- show stat ---- */

/* Splits one CSV line in place (HAProxy quotes fields holding commas). */
static size_t csv_split(char *line, char **fields, size_t max)
{
	size_t n = 0;
	char *r = line, *w;

	while (n < max) {
		fields[n++] = w = r;
		if (*r == '"') {
			r++;
			for (;;) {
				if (!*r)
					break;
				if (r[0] == '"' && r[1] == '"') {
					*w++ = '"';
					r += 2;
				} else if (r[0] == '"') {
					r++;
					break;
				} else {
					*w++ = *r++;
				}
			}
			while (*r && *r != ',')
				r++;
		} else {
			while (*r && *r != ',')
				*w++ = *r++;
		}
		if (*r != ',') {
			*w = '\0';
			break;
		}
		r++;
		*w = '\0';
	}
	return n;
}

enum { COL_PX, COL_SV, COL_STATUS, COL_CHECK, COL_CODE, COL_DESC, COL_LAST, COL_SCUR, COL_QCUR, COL_N };
static const char *const stat_cols[COL_N] = { "pxname", "svname", "status", "check_status",
					      "check_code", "check_desc", "last_chk", "scur", "qcur" };

int kiln_local_haproxy_parse_stat(kiln_local_stat_row **rows, size_t *n, const char *csv,
				  const char *backend)
{
	char *text = kiln_strdup(csv), *line, *save = NULL;
	int idx[COL_N], error = 0;
	bool header = false;
	size_t i;

	*rows = NULL;
	*n = 0;
	if (!text)
		return KILN_ENOMEM;
	for (i = 0; i < COL_N; i++)
		idx[i] = -1;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *f[256];
		size_t nf;
		kiln_local_stat_row row, *grown;
		int64_t v;

		if (!strncmp(line, "# ", 2)) {
			nf = csv_split(line + 2, f, KILN_ARRAY_SIZE(f));
			for (i = 0; i < nf; i++) {
				size_t c;
				for (c = 0; c < COL_N; c++)
					if (!strcmp(f[i], stat_cols[c]))
						idx[c] = (int)i;
			}
			header = true;
			continue;
		}
		if (!header || !*line)
			continue;
		nf = csv_split(line, f, KILN_ARRAY_SIZE(f));
		if (idx[COL_PX] < 0 || idx[COL_SV] < 0 || (size_t)idx[COL_SV] >= nf ||
		    strcmp(f[idx[COL_PX]], backend) || !strcmp(f[idx[COL_SV]], "BACKEND") ||
		    !strcmp(f[idx[COL_SV]], "FRONTEND"))
			continue;
		memset(&row, 0, sizeof(row));
#define COPY(field, col) \
	if (idx[col] >= 0 && (size_t)idx[col] < nf) \
		snprintf(row.field, sizeof(row.field), "%s", f[idx[col]])
		COPY(svname, COL_SV);
		COPY(status, COL_STATUS);
		COPY(check_status, COL_CHECK);
		COPY(check_code, COL_CODE);
		COPY(check_desc, COL_DESC);
		COPY(last_chk, COL_LAST);
#undef COPY
		if (idx[COL_SCUR] >= 0 && (size_t)idx[COL_SCUR] < nf &&
		    kiln_parse_i64(&v, f[idx[COL_SCUR]], 0, INT64_MAX) == 0)
			row.scur = v;
		if (idx[COL_QCUR] >= 0 && (size_t)idx[COL_QCUR] < nf &&
		    kiln_parse_i64(&v, f[idx[COL_QCUR]], 0, INT64_MAX) == 0)
			row.qcur = v;
		if (!(grown = realloc(*rows, (*n + 1) * sizeof(**rows)))) {
			error = kiln_error_set(KILN_ENOMEM, "out of memory");
			break;
		}
		*rows = grown;
		(*rows)[(*n)++] = row;
	}
	if (error == 0 && !header)
		error = kiln_error_set(KILN_ERROR, "HAProxy's 'show stat' reply has no header: '%.80s'", csv);
	if (error < 0) {
		free(*rows);
		*rows = NULL;
		*n = 0;
	}
	free(text);
	return error;
}

const kiln_local_stat_row *kiln_local_stat_find(const kiln_local_stat_row *rows, size_t n,
						const char *svname)
{
	size_t i;
	for (i = 0; i < n; i++)
		if (!strcmp(rows[i].svname, svname))
			return &rows[i];
	return NULL;
}

int kiln_local_haproxy_parse_servers_state(kiln_local_srv_state **rows, size_t *n, const char *text,
					   const char *backend)
{
	char *copy = kiln_strdup(text), *line, *save = NULL;
	int error = 0;

	*rows = NULL;
	*n = 0;
	if (!copy)
		return KILN_ENOMEM;
	for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		/* be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state
		 * srv_uweight srv_iweight srv_time_since_last_change srv_check_status
		 * srv_check_result srv_check_health ... */
		char *f[32], *s2 = NULL, *tok;
		size_t nf = 0;
		int64_t op, admin, health;
		kiln_local_srv_state st, *grown;

		if (line[0] == '#')
			continue;
		for (tok = strtok_r(line, " ", &s2); tok && nf < KILN_ARRAY_SIZE(f);
		     tok = strtok_r(NULL, " ", &s2))
			f[nf++] = tok;
		if (nf < 13 || strcmp(f[1], backend))
			continue;
		if (kiln_parse_i64(&op, f[5], 0, 3) < 0 || kiln_parse_i64(&admin, f[6], 0, 0xffff) < 0 ||
		    kiln_parse_i64(&health, f[12], 0, 1000) < 0)
			continue;
		memset(&st, 0, sizeof(st));
		snprintf(st.name, sizeof(st.name), "%s", f[3]);
		st.op_state = (int)op;
		st.admin_state = (int)admin;
		st.check_health = (int)health;
		if (!(grown = realloc(*rows, (*n + 1) * sizeof(**rows)))) {
			error = kiln_error_set(KILN_ENOMEM, "out of memory");
			break;
		}
		*rows = grown;
		(*rows)[(*n)++] = st;
	}
	if (error < 0) {
		free(*rows);
		*rows = NULL;
		*n = 0;
	}
	free(copy);
	return error;
}

/* ---- health ---- */

static bool starts(const char *s, const char *prefix)
{
	return !strncmp(s, prefix, strlen(prefix));
}

/* "Layer7 wrong status, HTTP 500 (L7STS): Internal Server Error" */
static void describe_check(char *out, size_t size, const kiln_local_stat_row *row)
{
	snprintf(out, size, "%s%s%s (%s)%s%s", row->check_desc[0] ? row->check_desc : "check failed",
		 row->check_code[0] ? ", HTTP " : "", row->check_code, row->check_status,
		 row->last_chk[0] ? ": " : "", row->last_chk);
}

kiln_health kiln_local_health_map(const kiln_local_stat_row *row, kiln_local_lb_server *srv,
				  const kiln_local_lb_conf *conf, int64_t now_ms,
				  char reason[KILN_NAME_MAX])
{
	char what[KILN_NAME_MAX - 40];
	bool l7_fail;

	reason[0] = '\0';
	if (srv && srv->draining) {
		snprintf(reason, KILN_NAME_MAX, "Target.DeregistrationInProgress: draining%s",
			 row ? "" : ", removed");
		return row ? KILN_HEALTH_DRAINING : KILN_HEALTH_UNUSED;
	}
	if (!row) {
		snprintf(reason, KILN_NAME_MAX, "Target.NotRegistered: not registered with balancer '%s'",
			 conf->name);
		return KILN_HEALTH_UNUSED;
	}
	if (starts(row->status, "MAINT")) {
		snprintf(reason, KILN_NAME_MAX, "Target.InvalidState: in maintenance (%s)", row->status);
		return KILN_HEALTH_UNAVAILABLE;
	}
	if (starts(row->status, "DRAIN")) {
		snprintf(reason, KILN_NAME_MAX, "Target.DeregistrationInProgress: draining");
		return KILN_HEALTH_DRAINING;
	}
	if (starts(row->status, "no check")) {
		snprintf(reason, KILN_NAME_MAX, "Target.HealthCheckDisabled: checks are disabled");
		return KILN_HEALTH_UNAVAILABLE;
	}
	if (starts(row->status, "UP") || starts(row->status, "NOLB")) {
		if (srv) {
			srv->ever_up = true;
			srv->l7_first_ms = 0;
		}
		return KILN_HEALTH_HEALTHY;
	}
	if (!starts(row->status, "DOWN")) {
		snprintf(reason, KILN_NAME_MAX, "Elb.InternalError: HAProxy says '%s'", row->status);
		return KILN_HEALTH_UNKNOWN;
	}
	describe_check(what, sizeof(what), row);
	/* the application answered, and said no (or answered garbage, or too late) */
	l7_fail = (starts(row->check_status, "L7") && !starts(row->check_status, "L7OK")) ||
		  starts(row->check_status, "L6");
	if (srv && srv->ever_up) {
		snprintf(reason, KILN_NAME_MAX, "%s: %s",
			 strstr(row->check_status, "TOUT") ? "Target.Timeout"
			 : l7_fail ? "Target.ResponseCodeMismatch"
				   : "Target.FailedHealthChecks",
			 what);
		return KILN_HEALTH_UNHEALTHY;
	}
	if (l7_fail) {
		int64_t need_ms = (int64_t)(conf->fall - 1) * conf->interval_s * 1000;
		if (srv && !srv->l7_first_ms)
			srv->l7_first_ms = now_ms;
		/*
		 * HAProxy counts failures only for servers that were up: for a new
		 * one, fall consecutive L7 failures span (fall - 1) intervals from
		 * the first failure kiln saw.
		 */
		if (!srv || conf->fall <= 1 || now_ms - srv->l7_first_ms >= need_ms) {
			snprintf(reason, KILN_NAME_MAX, "%s: %s",
				 strstr(row->check_status, "TOUT") ? "Target.Timeout"
								   : "Target.ResponseCodeMismatch",
				 what);
			return KILN_HEALTH_UNHEALTHY;
		}
	} else if (srv) {
		srv->l7_first_ms = 0;
	}
	if (starts(row->check_status, "INI") || !row->check_status[0])
		snprintf(reason, KILN_NAME_MAX, "Elb.RegistrationInProgress: no check has run yet");
	else
		snprintf(reason, KILN_NAME_MAX, "Elb.InitialHealthChecking: %s", what);
	return KILN_HEALTH_INITIAL;
}

/* ---- the admin socket ---- */

int kiln_local_haproxy_cmd(kiln_buf *out, const char *socket_path, const char *cmd)
{
	struct sockaddr_un sa;
	uint64_t deadline = kiln_clock_now_ms() + 10000;
	size_t len = strlen(cmd);
	int fd, error = 0;

	kiln_buf_reset(out);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(socket_path) >= sizeof(sa.sun_path))
		return kiln_error_set(KILN_EINVALID, "socket path '%s' is too long", socket_path);
	memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return kiln_error_set_os(KILN_ERROR, errno, "cannot create a socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		error = kiln_error_set_os(errno == ENOENT || errno == ECONNREFUSED ? KILN_ENOTFOUND
										   : KILN_ERROR,
					  errno, "cannot connect to HAProxy at '%s'", socket_path);
		goto done;
	}
	/* one command, then HAProxy answers and closes (non-interactive mode) */
	if (send(fd, cmd, len, MSG_NOSIGNAL) != (ssize_t)len || send(fd, "\n", 1, MSG_NOSIGNAL) != 1) {
		error = kiln_error_set_os(KILN_ERROR, errno, "cannot send to HAProxy at '%s'", socket_path);
		goto done;
	}
	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		char chunk[16384];
		ssize_t n;
		uint64_t now = kiln_clock_now_ms();
		if (now >= deadline) {
			error = kiln_error_set(KILN_ETIMEOUT, "HAProxy at '%s' did not answer '%s'",
					       socket_path, cmd);
			goto done;
		}
		if (poll(&p, 1, (int)KILN_MIN(deadline - now, 1000)) <= 0)
			continue;
		n = read(fd, chunk, sizeof(chunk));
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			error = kiln_error_set_os(KILN_ERROR, errno, "cannot read from HAProxy");
			goto done;
		}
		if ((error = kiln_buf_put(out, chunk, (size_t)n)) < 0) {
			kiln_error_set(error, "HAProxy's reply to '%s' is larger than %zu bytes", cmd,
				       out->max);
			goto done;
		}
	}
done:
	close(fd);
	return error;
}
