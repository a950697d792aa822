#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/cloud.h"
#include "core/error.h"
#include "core/fs.h"
#include "local/local.h"
#include "tests/support/test.h"

/*
 * The local provider's pure parts: ids, subnets, HAProxy's config and
 * the health mapping of its `show stat`, layer chains and what a prune
 * may remove, sealing; and the file-backed operations that need no root
 * (records, key pairs, firewalls, tags, image listing). The rest needs
 * root and real containers: tests/e2e/t0500-local-provider.sh.
 */

/* ---- ids ---- */

static void test_ids(void **state)
{
	char a[KILN_ID_MAX], b[KILN_ID_MAX];
	int i;
	(void)state;

	assert_int_equal(kiln_local_new_id(a, "i-"), 0);
	assert_int_equal(strlen(a), 19);
	assert_true(kiln_local_id_valid(a, "i-"));
	assert_false(kiln_local_id_valid(a, "img-"));
	for (i = 0; i < 200; i++) {
		assert_int_equal(kiln_local_new_id(b, "img-"), 0);
		assert_true(kiln_local_id_valid(b, "img-"));
		assert_string_not_equal(a + 2, b + 4);
	}
	assert_false(kiln_local_id_valid("i-0123456789abcdef", "i-"));   /* 16 digits */
	assert_false(kiln_local_id_valid("i-0123456789abcdefA", "i-"));  /* upper case */
	assert_false(kiln_local_id_valid("i-0123456789abcdef01", "i-")); /* 18 */
	assert_false(kiln_local_id_valid("i-../../etc/passwd1", "i-"));
	assert_true(kiln_local_id_valid("layer-0123456789abcdef0", "layer-"));
}

/* ---- subnets ---- */

static void test_subnet_parse(void **state)
{
	kiln_local_subnet s;
	char text[32], addr[16];
	(void)state;

	assert_int_equal(kiln_local_subnet_parse(&s, "10.231.0.0/24"), 0);
	assert_int_equal(s.prefix, 24);
	kiln_local_subnet_format(text, &s);
	assert_string_equal(text, "10.231.0.0/24");
	assert_int_equal(kiln_local_subnet_size(&s), 256);
	kiln_local_subnet_addr(addr, &s, 1);
	assert_string_equal(addr, "10.231.0.1");
	kiln_local_subnet_addr(addr, &s, 254);
	assert_string_equal(addr, "10.231.0.254");

	assert_error(kiln_local_subnet_parse(&s, "10.231.0.5/24"), KILN_EINVALID,
		     "has host bits set (did you mean '10.231.0.0/24'?)");
	assert_error(kiln_local_subnet_parse(&s, "10.0.0.0/8"), KILN_EINVALID, "between /16 and /29");
	assert_error(kiln_local_subnet_parse(&s, "10.0.0.0/30"), KILN_EINVALID, "between /16 and /29");
	assert_error(kiln_local_subnet_parse(&s, "127.1.0.0/24"), KILN_EINVALID, "loopback");
	assert_error(kiln_local_subnet_parse(&s, "224.0.0.0/24"), KILN_EINVALID, "multicast");
	assert_error(kiln_local_subnet_parse(&s, "169.254.3.0/24"), KILN_EINVALID, "link-local");
	assert_error(kiln_local_subnet_parse(&s, "10.231.0.0"), KILN_EINVALID, "not an IPv4 CIDR");
	assert_error(kiln_local_subnet_parse(&s, "10.231.0/24"), KILN_EINVALID, "not an IPv4 CIDR");
	assert_error(kiln_local_subnet_parse(&s, "10.231.0.0/2x"), KILN_EINVALID, "not an IPv4 CIDR");
	assert_error(kiln_local_subnet_parse(&s, "fd00::/64"), KILN_EINVALID, "not an IPv4 CIDR");

	assert_true(kiln_local_cidrs_overlap(0x0ae70000, 24, 0x0ae70000, 16));
	assert_true(kiln_local_cidrs_overlap(0x0ae70000, 24, 0x0ae70005, 32));
	assert_false(kiln_local_cidrs_overlap(0x0ae70000, 24, 0x0ae70100, 24));
}

/* `ip -j -4 addr show` and `ip -j -4 route show table all`, trimmed, from a machine like these */
static const char ip_addrs[] =
	"[{\"ifindex\":1,\"ifname\":\"lo\",\"addr_info\":[{\"family\":\"inet\",\"local\":\"127.0.0.1\",\"prefixlen\":8}]},"
	" {\"ifindex\":2,\"ifname\":\"eth0\",\"addr_info\":[{\"family\":\"inet\",\"local\":\"192.0.2.2\",\"prefixlen\":24}]},"
	" {\"ifindex\":5,\"ifname\":\"kiln0\",\"addr_info\":[{\"family\":\"inet\",\"local\":\"10.231.0.1\",\"prefixlen\":24}]},"
	" {\"ifindex\":6,\"ifname\":\"docker0\",\"addr_info\":[{\"family\":\"inet\",\"local\":\"172.17.0.1\",\"prefixlen\":16}]}]";
static const char ip_routes[] =
	"[{\"dst\":\"default\",\"gateway\":\"192.0.2.1\",\"dev\":\"eth0\",\"flags\":[]},"
	" {\"dst\":\"192.0.2.0/24\",\"dev\":\"eth0\",\"protocol\":\"kernel\",\"scope\":\"link\"},"
	" {\"dst\":\"10.231.0.0/24\",\"dev\":\"kiln0\",\"protocol\":\"kernel\",\"scope\":\"link\"},"
	" {\"dst\":\"10.96.0.0/12\",\"gateway\":\"192.0.2.9\",\"dev\":\"eth0\"},"
	" {\"type\":\"local\",\"dst\":\"10.231.0.1\",\"dev\":\"kiln0\",\"table\":\"local\"},"
	" {\"type\":\"broadcast\",\"dst\":\"192.0.2.255\",\"dev\":\"eth0\",\"table\":\"local\"},"
	" {\"type\":\"blackhole\",\"dst\":\"10.250.3.0/24\"}]";

static int conflict(const char *cidr, const char *own, kiln_buf *why)
{
	json_t *addrs = json_loads(ip_addrs, 0, NULL), *routes = json_loads(ip_routes, 0, NULL);
	kiln_local_subnet s;
	int rc;
	assert_non_null(addrs);
	assert_non_null(routes);
	assert_int_equal(kiln_local_subnet_parse(&s, cidr), 0);
	rc = kiln_local_subnet_conflict(&s, addrs, routes, own, why);
	json_decref(addrs);
	json_decref(routes);
	return rc;
}

static void test_subnet_conflict(void **state)
{
	kiln_buf why = KILN_BUF_INIT;
	(void)state;

	/* our own bridge's address and routes are ours, not a clash */
	assert_int_equal(conflict("10.231.0.0/24", "kiln0", &why), 0);
	/* someone else's bridge of that name would be */
	assert_int_equal(conflict("10.231.0.0/24", "kilnt0", &why), 1);
	assert_string_equal(why.ptr, "10.231.0.0/24 overlaps the address 10.231.0.1/24 on 'kiln0'");
	assert_int_equal(conflict("172.17.5.0/24", "kiln0", &why), 1);
	assert_string_equal(why.ptr, "172.17.5.0/24 overlaps the address 172.17.0.1/16 on 'docker0'");
	assert_int_equal(conflict("10.100.0.0/16", "kiln0", &why), 1);
	assert_string_equal(why.ptr, "10.100.0.0/16 overlaps the route to 10.96.0.0/12 on 'eth0'");
	assert_int_equal(conflict("10.250.3.0/25", "kiln0", &why), 1);
	assert_true(strstr(why.ptr, "10.250.3.0/24") != NULL);
	/* the default route covers everything and is no clash; neither are neighbours */
	assert_int_equal(conflict("10.232.0.0/24", "kiln0", &why), 0);
	assert_int_equal(conflict("192.0.3.0/24", "kiln0", &why), 0);
	kiln_buf_release(&why);
}

static void test_ip_pick_and_names(void **state)
{
	kiln_local_subnet s;
	kiln_strings used = { 0 };
	char ip[16], veth[16];
	int i;
	(void)state;

	assert_int_equal(kiln_local_subnet_parse(&s, "10.9.8.0/29"), 0);
	assert_int_equal(kiln_strings_add(&used, "10.9.8.1"), 0);
	for (i = 2; i <= 6; i++) {
		char want[16];
		snprintf(want, sizeof(want), "10.9.8.%d", i);
		assert_int_equal(kiln_local_ip_pick(ip, &s, &used), 0);
		assert_string_equal(ip, want);
		assert_int_equal(kiln_strings_add(&used, ip), 0);
	}
	/* .7 is the broadcast address */
	assert_error(kiln_local_ip_pick(ip, &s, &used), KILN_EBUSY, "no free address left in subnet '10.9.8.0/29'");
	kiln_strings_release(&used);
	/* a freed address is handed out again, lowest first */
	assert_int_equal(kiln_strings_add(&used, "10.9.8.2"), 0);
	assert_int_equal(kiln_strings_add(&used, "10.9.8.4"), 0);
	assert_int_equal(kiln_local_ip_pick(ip, &s, &used), 0);
	assert_string_equal(ip, "10.9.8.3");
	kiln_strings_release(&used);

	kiln_local_veth_name(veth, "i-0123456789abcdef0");
	assert_string_equal(veth, "kiln6789abcdef0");
	assert_true(strlen(veth) <= 15);
	assert_true(kiln_local_ifname_valid(veth));
	assert_false(kiln_local_ifname_valid("kiln0123456789ab"));
	assert_false(kiln_local_ifname_valid("kiln 0"));
	assert_false(kiln_local_ifname_valid(""));
}

static void test_config_names(void **state)
{
	kiln_local_config cfg;
	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	assert_int_equal(kiln_local_config_set(&cfg, "10.77.0.0/20", "kilntest"), 0);
	assert_string_equal(cfg.subnet, "10.77.0.0/20");
	assert_string_equal(cfg.bridge_ip, "10.77.0.1");
	assert_int_equal(cfg.prefix, 20);
	assert_string_equal(cfg.bridge, "kilntest");
	assert_error(kiln_local_config_set(&cfg, NULL, "br0"), KILN_EINVALID, "must start with 'kiln'");
	assert_error(kiln_local_config_set(&cfg, NULL, "kiln-much-too-long"), KILN_EINVALID, "at most 15");
	assert_string_equal(cfg.bridge, "kilntest");
}

/* ---- HAProxy ---- */

static void lb_conf(kiln_local_lb_conf *conf)
{
	kiln_lb lb = { KILN_LB_LOCAL, "web", "127.0.0.1:8080", "/healthz", 1, 2, 3, 8000 };
	assert_int_equal(kiln_local_lb_conf_from(conf, &lb), 0);
	snprintf(conf->socket_path, sizeof(conf->socket_path), "/s/lb/web/admin.sock");
	snprintf(conf->state_path, sizeof(conf->state_path), "/s/lb/web/server-state");
}

static void test_haproxy_config(void **state)
{
	kiln_local_lb_conf conf;
	kiln_local_lb_server servers[2];
	kiln_buf out = KILN_BUF_INIT;
	static const char want[] =
		"# HAProxy config of kiln's local balancer 'web'. kiln rewrites it on every\n"
		"# change: edit the fleet file, not this.\n"
		"global\n"
		"    stats socket /s/lb/web/admin.sock mode 600 level admin expose-fd listeners\n"
		"    stats timeout 30s\n"
		"    server-state-file /s/lb/web/server-state\n"
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
		"    bind 127.0.0.1:8080\n"
		"    default_backend be\n"
		"\n"
		"backend be\n"
		"    balance roundrobin\n"
		"    # HTTP/1.1 with a Host, as ELB checks: apps that validate Host (Django)\n"
		"    # answer a bare HTTP/1.0 check with 400\n"
		"    option httpchk\n"
		"    http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host localhost\n"
		"    # servers added at runtime do not inherit inter: each line repeats it\n"
		"    default-server inter 1s rise 2 fall 3\n"
		"    server i-0123456789abcdef0 10.231.0.2:8000 check inter 1s downinter 250ms rise 2 fall 3\n"
		"    server i-00000000000000001 10.231.0.3:8000 check inter 1s downinter 250ms rise 2 fall 3 disabled\n";
	(void)state;

	lb_conf(&conf);
	memset(servers, 0, sizeof(servers));
	snprintf(servers[0].id, sizeof(servers[0].id), "i-0123456789abcdef0");
	snprintf(servers[0].addr, sizeof(servers[0].addr), "10.231.0.2");
	servers[0].port = 8000;
	snprintf(servers[1].id, sizeof(servers[1].id), "i-00000000000000001");
	snprintf(servers[1].addr, sizeof(servers[1].addr), "10.231.0.3");
	servers[1].port = 8000;
	servers[1].draining = true; /* a restart must not send it traffic again */
	assert_int_equal(kiln_local_haproxy_config(&out, &conf, servers, 2), 0);
	assert_string_equal(out.ptr, want);
	kiln_buf_release(&out);
}

static void test_lb_conf_checks(void **state)
{
	kiln_local_lb_conf conf;
	kiln_lb lb = { KILN_LB_LOCAL, "web", NULL, NULL, 0, 0, 0, 0 };
	(void)state;

	/* the defaults: loopback, /, 2 s, rise 2, fall 2, port 80 */
	assert_int_equal(kiln_local_lb_conf_from(&conf, &lb), 0);
	assert_string_equal(conf.listen, "127.0.0.1:8080");
	assert_string_equal(conf.health_path, "/");
	assert_int_equal(conf.interval_s, 2);
	assert_int_equal(conf.rise, 2);
	assert_int_equal(conf.fall, 2);
	assert_int_equal(conf.target_port, 80);
	lb.listen = "*:80";
	assert_int_equal(kiln_local_lb_conf_from(&conf, &lb), 0);
	/* nothing that could smuggle config lines in */
	lb.listen = "127.0.0.1:80\n    bind :22";
	assert_error(kiln_local_lb_conf_from(&conf, &lb), KILN_EINVALID, "must be ADDRESS:PORT");
	lb.listen = "localhost:80";
	assert_error(kiln_local_lb_conf_from(&conf, &lb), KILN_EINVALID, "must be ADDRESS:PORT");
	lb.listen = "127.0.0.1:0";
	assert_error(kiln_local_lb_conf_from(&conf, &lb), KILN_EINVALID, "must be ADDRESS:PORT");
	lb.listen = NULL;
	lb.health_path = "/ok\n    stats socket /tmp/x";
	assert_error(kiln_local_lb_conf_from(&conf, &lb), KILN_EINVALID, "health path");
	lb.health_path = "healthz";
	assert_error(kiln_local_lb_conf_from(&conf, &lb), KILN_EINVALID, "must start with '/'");
	lb.health_path = "/healthz?full=1";
	assert_int_equal(kiln_local_lb_conf_from(&conf, &lb), 0);
	lb.ref = "web/be";
	assert_error(kiln_local_lb_conf_from(&conf, &lb), KILN_EINVALID, "balancer name 'web/be'");
	lb.ref = "web";
	lb.kind = KILN_LB_TARGET_GROUP;
	assert_error(kiln_local_lb_conf_from(&conf, &lb), KILN_EINVALID, "only local balancers");
}

/* `show stat` of HAProxy 2.6.12 on this machine, trimmed to some columns plus a quoted field */
static const char stat_csv[] =
	"# pxname,svname,qcur,qmax,scur,smax,status,chkfail,chkdown,check_status,check_code,check_duration,"
	"last_chk,check_desc,check_rise,check_fall,check_health,addr,\n"
	"fe,FRONTEND,,,3,9,OPEN,,,,,,,,,,,,\n"
	"be,i-aaaaaaaaaaaaaaaa1,0,0,2,4,UP,0,0,L7OK,200,1,OK,Layer7 check passed,2,2,3,10.231.0.2:8000,\n"
	"be,i-aaaaaaaaaaaaaaaa2,0,0,0,0,DOWN,1,1,L7STS,500,2,\"Internal, Server Error\",Layer7 wrong status,2,2,0,10.231.0.3:8000,\n"
	"be,i-aaaaaaaaaaaaaaaa3,0,0,0,0,DOWN,0,1,L4CON,,0,Connection refused,Layer4 connection problem,2,2,0,10.231.0.4:8000,\n"
	"be,i-aaaaaaaaaaaaaaaa4,1,0,0,0,DRAIN,0,0,L7OK,200,1,OK,Layer7 check passed,2,2,3,10.231.0.5:8000,\n"
	"be,BACKEND,0,0,2,9,UP,,1,,,,,,,,,,\n"
	"other,i-aaaaaaaaaaaaaaaa9,0,0,0,0,UP,0,0,L7OK,200,1,OK,,2,2,3,10.9.9.9:80,\n";

static void test_parse_stat(void **state)
{
	kiln_local_stat_row *rows = NULL;
	const kiln_local_stat_row *r;
	size_t n = 0;
	(void)state;

	assert_int_equal(kiln_local_haproxy_parse_stat(&rows, &n, stat_csv, "be"), 0);
	assert_int_equal(n, 4); /* servers of be only: not FRONTEND, BACKEND or other backends */
	r = kiln_local_stat_find(rows, n, "i-aaaaaaaaaaaaaaaa1");
	assert_non_null(r);
	assert_string_equal(r->status, "UP");
	assert_int_equal(r->scur, 2);
	r = kiln_local_stat_find(rows, n, "i-aaaaaaaaaaaaaaaa2");
	assert_string_equal(r->check_status, "L7STS");
	assert_string_equal(r->check_code, "500");
	assert_string_equal(r->last_chk, "Internal, Server Error");
	assert_string_equal(r->check_desc, "Layer7 wrong status");
	r = kiln_local_stat_find(rows, n, "i-aaaaaaaaaaaaaaaa4");
	assert_int_equal(r->qcur, 1);
	assert_null(kiln_local_stat_find(rows, n, "i-aaaaaaaaaaaaaaaa9"));
	free(rows);
	assert_error(kiln_local_haproxy_parse_stat(&rows, &n, "Unknown command.\n", "be"), KILN_ERROR, "no header");
	assert_null(rows);
}

static void test_parse_servers_state(void **state)
{
	static const char text[] =
		"1\n"
		"# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
		"srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
		"srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl "
		"srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n"
		"3 be 1 i-aaaaaaaaaaaaaaaa1 10.231.0.2 2 0 1 1 54 15 3 4 6 0 0 0 - 8000 - 0 0 - - 0\n"
		"3 be 2 i-aaaaaaaaaaaaaaaa2 10.231.0.3 0 8 1 1 1 17 2 0 6 0 0 0 - 8000 - 0 0 - - 0\n"
		"4 other 1 x 10.0.0.1 2 0 1 1 1 17 2 0 6 0 0 0 - 80 - 0 0 - - 0\n";
	kiln_local_srv_state *rows = NULL;
	size_t n = 0;
	(void)state;

	assert_int_equal(kiln_local_haproxy_parse_servers_state(&rows, &n, text, "be"), 0);
	assert_int_equal(n, 2);
	assert_string_equal(rows[0].name, "i-aaaaaaaaaaaaaaaa1");
	assert_int_equal(rows[0].op_state, 2);
	assert_int_equal(rows[0].check_health, 4);
	assert_int_equal(rows[1].op_state, 0);
	assert_int_equal(rows[1].admin_state & 0x08, 0x08); /* forced drain */
	free(rows);
}

static kiln_local_stat_row row_of(const char *status, const char *check, const char *code)
{
	kiln_local_stat_row r;
	memset(&r, 0, sizeof(r));
	snprintf(r.svname, sizeof(r.svname), "i-aaaaaaaaaaaaaaaa1");
	snprintf(r.status, sizeof(r.status), "%s", status);
	snprintf(r.check_status, sizeof(r.check_status), "%s", check);
	snprintf(r.check_code, sizeof(r.check_code), "%s", code);
	return r;
}

static void test_health_map(void **state)
{
	kiln_local_lb_conf conf;
	kiln_local_lb_server srv;
	kiln_local_stat_row r;
	char reason[KILN_NAME_MAX];
	int64_t t = 1000000;
	(void)state;

	lb_conf(&conf); /* interval 1 s, rise 2, fall 3 */
	memset(&srv, 0, sizeof(srv));

	/* registered, no check yet */
	r = row_of("DOWN", "INI", "");
	assert_int_equal(kiln_local_health_map(&r, &srv, &conf, t, reason), KILN_HEALTH_INITIAL);
	assert_string_equal(reason, "Elb.RegistrationInProgress: no check has run yet");
	/* the app is not up yet (L4): still initial, however long */
	r = row_of("DOWN", "L4CON", "");
	assert_int_equal(kiln_local_health_map(&r, &srv, &conf, t + 60000, reason), KILN_HEALTH_INITIAL);
	assert_true(strstr(reason, "Elb.InitialHealthChecking") == reason);
	r = row_of("DOWN", "L4TOUT", "");
	assert_int_equal(kiln_local_health_map(&r, &srv, &conf, t + 61000, reason), KILN_HEALTH_INITIAL);
	/* it answers, badly: unhealthy once fall (3) checks failed, (fall-1) intervals after the first */
	r = row_of("DOWN", "L7STS", "500");
	assert_int_equal(kiln_local_health_map(&r, &srv, &conf, t + 62000, reason), KILN_HEALTH_INITIAL);
	assert_int_equal(srv.l7_first_ms, t + 62000);
	assert_int_equal(kiln_local_health_map(&r, &srv, &conf, t + 63000, reason), KILN_HEALTH_INITIAL);
	assert_int_equal(kiln_local_health_map(&r, &srv, &conf, t + 64000, reason), KILN_HEALTH_UNHEALTHY);
	assert_true(strstr(reason, "Target.ResponseCodeMismatch") == reason);
	assert_true(strstr(reason, "HTTP 500") != NULL);
	/* L4 again resets the count */
	r = row_of("DOWN", "L4CON", "");
	assert_int_equal(kiln_local_health_map(&r, &srv, &conf, t + 65000, reason), KILN_HEALTH_INITIAL);
	assert_int_equal(srv.l7_first_ms, 0);
	/* passing, not yet rise times: initial; then up: healthy */
	r = row_of("DOWN 1/2", "L7OK", "200");
	assert_int_equal(kiln_local_health_map(&r, &srv, &conf, t + 66000, reason), KILN_HEALTH_INITIAL);
	assert_false(srv.ever_up);
	r = row_of("UP", "L7OK", "200");
	assert_int_equal(kiln_local_health_map(&r, &srv, &conf, t + 67000, reason), KILN_HEALTH_HEALTHY);
	assert_string_equal(reason, "");
	assert_true(srv.ever_up);
	/* one failed check is not enough to leave healthy */
	r = row_of("UP 1/3", "L7STS", "503");
	assert_int_equal(kiln_local_health_map(&r, &srv, &conf, t + 68000, reason), KILN_HEALTH_HEALTHY);
	/* down after having been up: unhealthy at once, whatever the layer */
	r = row_of("DOWN", "L4CON", "");
	assert_int_equal(kiln_local_health_map(&r, &srv, &conf, t + 70000, reason), KILN_HEALTH_UNHEALTHY);
	assert_true(strstr(reason, "Target.FailedHealthChecks") == reason);
	r = row_of("DOWN", "L7TOUT", "");
	assert_int_equal(kiln_local_health_map(&r, &srv, &conf, t + 71000, reason), KILN_HEALTH_UNHEALTHY);
	assert_true(strstr(reason, "Target.Timeout") == reason);
	/* deregistered: draining while HAProxy has it, unused once deleted */
	srv.draining = true;
	r = row_of("DRAIN", "L7OK", "200");
	assert_int_equal(kiln_local_health_map(&r, &srv, &conf, t, reason), KILN_HEALTH_DRAINING);
	r = row_of("DOWN", "L4CON", "");
	assert_int_equal(kiln_local_health_map(&r, &srv, &conf, t, reason), KILN_HEALTH_DRAINING);
	assert_int_equal(kiln_local_health_map(NULL, &srv, &conf, t, reason), KILN_HEALTH_UNUSED);
	/* not kiln's, not HAProxy's */
	assert_int_equal(kiln_local_health_map(NULL, NULL, &conf, t, reason), KILN_HEALTH_UNUSED);
	assert_true(strstr(reason, "Target.NotRegistered") == reason);
	r = row_of("MAINT", "L7OK", "200");
	assert_int_equal(kiln_local_health_map(&r, NULL, &conf, t, reason), KILN_HEALTH_UNAVAILABLE);
	r = row_of("no check", "", "");
	assert_int_equal(kiln_local_health_map(&r, NULL, &conf, t, reason), KILN_HEALTH_UNAVAILABLE);
	/* with fall 1 the first L7 failure is final */
	memset(&srv, 0, sizeof(srv));
	conf.fall = 1;
	r = row_of("DOWN", "L7STS", "404");
	assert_int_equal(kiln_local_health_map(&r, &srv, &conf, t, reason), KILN_HEALTH_UNHEALTHY);
}

/* ---- layers ---- */

static void strings_of(kiln_strings *s, const char *a, const char *b, const char *c)
{
	memset(s, 0, sizeof(*s));
	if (a)
		assert_int_equal(kiln_strings_add(s, a), 0);
	if (b)
		assert_int_equal(kiln_strings_add(s, b), 0);
	if (c)
		assert_int_equal(kiln_strings_add(s, c), 0);
}

static void test_layer_chains(void **state)
{
	kiln_strings parent, chain = { 0 }, none = { 0 };
	kiln_buf lower = KILN_BUF_INIT;
	(void)state;

	strings_of(&parent, "layer-b", "layer-a", NULL);
	assert_int_equal(kiln_local_layer_chain(&chain, "layer-c", &parent), 0);
	assert_int_equal(chain.n, 3);
	assert_string_equal(chain.items[0], "layer-c");
	assert_string_equal(chain.items[2], "layer-a");
	/* overlayfs wants the top first, the base last */
	assert_int_equal(kiln_local_lowerdir(&lower, "/s/local", &chain, "debian-12"), 0);
	assert_string_equal(lower.ptr, "/s/local/layers/layer-c:/s/local/layers/layer-b:/s/local/layers/layer-a:"
				       "/s/local/base/debian-12");
	assert_int_equal(kiln_local_lowerdir(&lower, "/s/local", &none, "debian-12"), 0);
	assert_string_equal(lower.ptr, "/s/local/base/debian-12");
	kiln_strings_release(&parent);
	kiln_strings_release(&chain);
	kiln_buf_release(&lower);
}

static void test_prune_safety(void **state)
{
	kiln_strings present, chains[3], garbage = { 0 };
	(void)state;

	/* web v1 = [a], web v2 = [b, a] (built from v1), an instance runs v2 */
	strings_of(&present, "layer-a", "layer-b", "layer-c");
	strings_of(&chains[0], "layer-a", NULL, NULL);        /* image v1 */
	strings_of(&chains[1], "layer-b", "layer-a", NULL);   /* image v2 */
	strings_of(&chains[2], "layer-b", "layer-a", NULL);   /* instance of v2 */
	assert_int_equal(kiln_local_layers_garbage(&garbage, &present, chains, 3), 0);
	/* only the orphan (a failed build's) goes */
	assert_int_equal(garbage.n, 1);
	assert_string_equal(garbage.items[0], "layer-c");
	kiln_strings_release(&garbage);

	/* v1 deleted: its layer stays, v2 and the instance stand on it */
	assert_int_equal(kiln_local_layers_garbage(&garbage, &present, chains + 1, 2), 0);
	assert_int_equal(garbage.n, 1);
	kiln_strings_release(&garbage);

	/* v2 deleted too, the instance still runs: nothing of its chain goes */
	assert_int_equal(kiln_local_layers_garbage(&garbage, &present, chains + 2, 1), 0);
	assert_int_equal(garbage.n, 1);
	assert_string_equal(garbage.items[0], "layer-c");
	kiln_strings_release(&garbage);

	/* the instance terminated: everything may go */
	assert_int_equal(kiln_local_layers_garbage(&garbage, &present, NULL, 0), 0);
	assert_int_equal(garbage.n, 3);
	kiln_strings_release(&garbage);
	kiln_strings_release(&present);
	kiln_strings_release(&chains[0]);
	kiln_strings_release(&chains[1]);
	kiln_strings_release(&chains[2]);
}

/* ---- sealing ---- */

static void touch(const char *dir, const char *rel, const char *text)
{
	char path[4096], parent[4096];
	char *slash;
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	snprintf(parent, sizeof(parent), "%s", path);
	slash = strrchr(parent, '/');
	*slash = '\0';
	assert_int_equal(kiln_mkdir_p(parent, 0755), 0);
	assert_int_equal(kiln_write_file_atomic(path, text, strlen(text), 0644), 0);
}

static bool exists(const char *dir, const char *rel)
{
	char path[4096];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	return lstat(path, &st) == 0;
}

static void test_seal_layer(void **state)
{
	char *tmp = kiln_test_mktmp();
	char *layer = kiln_strdupf("%s/layer", tmp), *lower = kiln_strdupf("%s/lower", tmp);
	char *outside = kiln_strdupf("%s/outside", tmp), *link = kiln_strdupf("%s/layer/tmp", tmp);
	const char *lowers[1] = { lower };
	char path[4096];
	struct stat st;
	(void)state;

	/* what an instance's upper dir holds after provisioning */
	touch(layer, "etc/ssh/ssh_host_ed25519_key", "secret");
	touch(layer, "etc/ssh/ssh_host_ed25519_key.pub", "public");
	touch(layer, "etc/ssh/sshd_config.d/app.conf", "keep me");
	touch(layer, "etc/machine-id", "0123456789abcdef0123456789abcdef\n");
	touch(layer, "etc/apt/apt.conf.d/00kiln-proxy", "Acquire::http::Proxy ...");
	touch(layer, "root/.ssh/authorized_keys", "ssh-ed25519 AAAA build key");
	touch(layer, "var/lib/kiln/user-data", "#!/bin/sh\n");
	touch(layer, "var/log/nginx/access.log", "GET /");
	touch(layer, "var/log/journal/0123/system.journal", "j");
	touch(layer, "var/cache/apt/pkgcache.bin", "x");
	touch(layer, "var/cache/apt/archives/nginx.deb", "x");
	touch(layer, "var/lib/apt/lists/deb.debian.org_dists_bookworm_InRelease", "x");
	touch(layer, "var/lib/apt/lists/lock", "");
	touch(layer, "opt/app/app.py", "print()");
	touch(layer, "etc/hostname", "kiln-i-0123456789abcdef0\n");
	/* the lower layer has a hostname too (a user's image): sealing must hide it, not reveal it */
	touch(lower, "etc/hostname", "from-a-lower-layer\n");
	/* a symlink out of the layer must never lead sealing onto the host */
	touch(outside, "victim", "host file");
	assert_int_equal(symlink(outside, link), 0);

	assert_int_equal(kiln_local_seal_layer(layer, lowers, 1), 0);
	assert_false(exists(layer, "etc/ssh/ssh_host_ed25519_key"));
	assert_false(exists(layer, "etc/ssh/ssh_host_ed25519_key.pub"));
	assert_true(exists(layer, "etc/ssh/sshd_config.d/app.conf"));
	assert_false(exists(layer, "etc/apt/apt.conf.d/00kiln-proxy"));
	assert_false(exists(layer, "root/.ssh/authorized_keys"));
	assert_false(exists(layer, "var/lib/kiln/user-data"));
	assert_true(exists(layer, "var/log/nginx"));
	assert_false(exists(layer, "var/log/nginx/access.log"));
	assert_false(exists(layer, "var/log/journal/0123"));
	assert_false(exists(layer, "var/cache/apt/pkgcache.bin"));
	assert_false(exists(layer, "var/cache/apt/archives/nginx.deb"));
	assert_false(exists(layer, "var/lib/apt/lists/deb.debian.org_dists_bookworm_InRelease"));
	assert_true(exists(layer, "var/lib/apt/lists/lock"));
	assert_true(exists(layer, "opt/app/app.py"));
	snprintf(path, sizeof(path), "%s/etc/machine-id", layer);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 0);
	/* tmp is a symlink here: left alone, and what it points at untouched */
	assert_true(exists(outside, "victim"));
	snprintf(path, sizeof(path), "%s/etc/hostname", layer);
	if (geteuid() == 0) {
		/* a whiteout: overlayfs hides the lower layer's file */
		assert_int_equal(lstat(path, &st), 0);
		assert_true(S_ISCHR(st.st_mode));
		assert_int_equal(st.st_rdev, makedev(0, 0));
	}
	free(layer);
	free(lower);
	free(outside);
	free(link);
	kiln_test_rmtmp(tmp);
}

/* ---- file-backed operations (no root needed) ---- */

typedef struct fixture {
	char *tmp;
	kiln_cloud *c;
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	f->tmp = kiln_test_mktmp();
	setenv("KILN_STATE_DIR", f->tmp, 1);
	unsetenv("KILN_LOCAL_SUBNET");
	unsetenv("KILN_LOCAL_BRIDGE");
	assert_int_equal(kiln_local_cloud_new(&f->c, NULL), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	kiln_cloud_free(f->c);
	kiln_test_rmtmp(f->tmp);
	unsetenv("KILN_STATE_DIR");
	free(f);
	return 0;
}

static void test_records(void **state)
{
	fixture *f = *state;
	kiln_cloud *c = f->c;
	kiln_record r = { 0 };
	kiln_strings names = { 0 };

	assert_string_equal(c->ops->name, "local");
	assert_int_equal(c->ops->record_create(c, "/kiln/images/web/versions/1", "{\"owner\":\"b1\"}"), 0);
	/* create-if-absent: the second reservation of a version fails */
	assert_error(c->ops->record_create(c, "/kiln/images/web/versions/1", "{\"owner\":\"b2\"}"), KILN_ECONFLICT,
		     "exists already");
	assert_int_equal(kiln_error_last()->code, KILN_ECONFLICT);
	assert_int_equal(c->ops->record_get(c, "/kiln/images/web/versions/1", &r), 0);
	assert_string_equal(r.value, "{\"owner\":\"b1\"}");
	assert_int_equal(r.version, 1);
	assert_true(r.modified_ms > 0);
	kiln_record_release(&r);
	assert_int_equal(c->ops->record_put(c, "/kiln/images/web/versions/1", "v2"), 0);
	assert_int_equal(c->ops->record_get(c, "/kiln/images/web/versions/1", &r), 0);
	assert_string_equal(r.value, "v2");
	assert_int_equal(r.version, 2);
	kiln_record_release(&r);
	/* a record and a "directory" of the same name do not clash */
	assert_int_equal(c->ops->record_create(c, "/kiln/fleets/web", "state"), 0);
	assert_int_equal(c->ops->record_create(c, "/kiln/fleets/web/lock", "lock"), 0);
	assert_int_equal(c->ops->record_create(c, "/kiln/fleets/api/lock", "lock"), 0);
	assert_int_equal(c->ops->record_list(c, "/kiln/fleets/", &names), 0);
	assert_int_equal(names.n, 3);
	assert_true(kiln_strings_has(&names, "/kiln/fleets/web"));
	assert_true(kiln_strings_has(&names, "/kiln/fleets/web/lock"));
	assert_true(kiln_strings_has(&names, "/kiln/fleets/api/lock"));
	kiln_strings_release(&names);
	assert_int_equal(c->ops->record_list(c, "/kiln/fleets/w", &names), 0);
	assert_int_equal(names.n, 2);
	kiln_strings_release(&names);
	assert_int_equal(c->ops->record_delete(c, "/kiln/fleets/web"), 0);
	assert_int_equal(c->ops->record_delete(c, "/kiln/fleets/web"), 0); /* absent: fine */
	assert_error(c->ops->record_get(c, "/kiln/fleets/web", &r), KILN_ENOTFOUND, "no record '/kiln/fleets/web'");
	assert_error(c->ops->record_create(c, "/kiln/../etc/passwd", "x"), KILN_EINVALID, "record name");
	assert_false(kiln_local_record_name_valid("kiln/x"));
	assert_false(kiln_local_record_name_valid("/kiln//x"));
	assert_false(kiln_local_record_name_valid("/kiln/x/"));
	assert_true(kiln_local_record_name_valid("/kiln/images/web-2.0/versions/12"));
}

static void test_keypairs_firewalls_tags(void **state)
{
	fixture *f = *state;
	kiln_cloud *c = f->c;
	kiln_tags tags = KILN_TAGS_INIT, want = KILN_TAGS_INIT;
	kiln_resource_list res = { 0 };
	kiln_firewall fw = { 0 };
	const char *cidrs[] = { "10.231.0.1/32" };
	const char *key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests build\n";
	char id[KILN_ID_MAX], again[KILN_ID_MAX];
	kiln_buf pub = KILN_BUF_INIT, cidr = KILN_BUF_INIT;
	size_t i, keys = 0, fws = 0;

	assert_int_equal(kiln_tags_set(&tags, "kiln:build-id", "b-1"), 0);
	assert_int_equal(c->ops->keypair_import(c, "kiln-b-1", key, &tags), 0);
	/* retried with the same key: recognised, not a failure */
	assert_int_equal(c->ops->keypair_import(c, "kiln-b-1", key, &tags), 0);
	assert_error(c->ops->keypair_import(c, "kiln-b-1", "ssh-ed25519 AAAAother other\n", &tags), KILN_ECONFLICT,
		     "another key");
	assert_error(c->ops->keypair_import(c, "../x", key, &tags), KILN_EINVALID, "key pair name");
	assert_error(c->ops->keypair_import(c, "k2", "ssh-ed25519 AAAA\nssh-rsa BBBB\n", &tags), KILN_EINVALID,
		     "one OpenSSH public key line");
	assert_int_equal(kiln_local_keypair_public(&pub, KILN_LOCAL(c), "kiln-b-1"), 0);
	assert_string_equal(pub.ptr, key);

	fw.name = "kiln-b-1";
	fw.port = 22;
	fw.cidrs = cidrs;
	fw.n_cidrs = 1;
	fw.tags = &tags;
	assert_int_equal(c->ops->firewall_create(c, &fw, id), 0);
	assert_true(kiln_local_id_valid(id, "sg-"));
	assert_int_equal(c->ops->firewall_create(c, &fw, again), 0);
	assert_string_equal(id, again);

	assert_int_equal(kiln_tags_set(&want, "kiln:build-id", "b-1"), 0);
	assert_int_equal(c->ops->resources_find(c, &want, &res), 0);
	for (i = 0; i < res.n; i++) {
		keys += res.items[i].kind == KILN_RES_KEYPAIR && !strcmp(res.items[i].id, "kiln-b-1");
		fws += res.items[i].kind == KILN_RES_FIREWALL && !strcmp(res.items[i].id, id);
	}
	assert_int_equal(keys, 1);
	assert_int_equal(fws, 1);
	kiln_resource_list_release(&res);

	/* tags on a firewall by id; unknown ids fail */
	assert_int_equal(kiln_tags_set(&want, "Name", "tagged"), 0);
	{
		const char *ids[] = { id };
		const char *bogus[] = { "vol-123" };
		assert_int_equal(c->ops->tags_create(c, ids, 1, &want), 0);
		assert_int_equal(c->ops->resources_find(c, &want, &res), 0);
		assert_int_equal(res.n, 1);
		kiln_resource_list_release(&res);
		assert_error(c->ops->tags_create(c, bogus, 1, &want), KILN_ENOTFOUND, "vol-123");
	}
	assert_int_equal(c->ops->firewall_delete(c, id, 1000), 0);
	assert_int_equal(c->ops->firewall_delete(c, id, 1000), 0); /* gone: fine */
	assert_int_equal(c->ops->keypair_delete(c, "kiln-b-1"), 0);
	assert_int_equal(c->ops->keypair_delete(c, "kiln-b-1"), 0);
	assert_error(kiln_local_keypair_public(&pub, KILN_LOCAL(c), "kiln-b-1"), KILN_ENOTFOUND, "no key pair");

	/* builds admit the host's bridge address */
	assert_int_equal(c->ops->caller_cidr(c, NULL, &cidr), 0);
	assert_string_equal(cidr.ptr, "10.231.0.1/32");
	kiln_tags_release(&tags);
	kiln_tags_release(&want);
	kiln_buf_release(&pub);
	kiln_buf_release(&cidr);
}

static void test_images_and_instances_listing(void **state)
{
	fixture *f = *state;
	kiln_cloud *c = f->c;
	kiln_image_list list = { 0 };
	kiln_instance_list insts = { 0 };
	kiln_image_query q = { 0 };
	kiln_instance_query iq = { 0 };
	const char *self[] = { "self" }, *ids[] = { "debian-12" }, *missing[] = { "i-0123456789abcdef0" };

	/* the base is there (public, owned by kiln) before it is built */
	assert_int_equal(c->ops->images_describe(c, NULL, &list), 0);
	assert_int_equal(list.n, 1);
	assert_string_equal(list.items[0].id, "debian-12");
	assert_string_equal(list.items[0].owner, "kiln");
	assert_int_equal(list.items[0].state, KILN_IMAGE_AVAILABLE);
	kiln_image_list_release(&list);
	q.ids = ids;
	q.n_ids = 1;
	assert_int_equal(c->ops->images_describe(c, &q, &list), 0);
	assert_int_equal(list.n, 1);
	kiln_image_list_release(&list);
	memset(&q, 0, sizeof(q));
	q.name = "debian-1?";
	assert_int_equal(c->ops->images_describe(c, &q, &list), 0);
	assert_int_equal(list.n, 1);
	kiln_image_list_release(&list);
	q.name = "web*";
	assert_int_equal(c->ops->images_describe(c, &q, &list), 0);
	assert_int_equal(list.n, 0);
	kiln_image_list_release(&list);
	/* owners self: only what kiln built here */
	memset(&q, 0, sizeof(q));
	q.owners = self;
	q.n_owners = 1;
	assert_int_equal(c->ops->images_describe(c, &q, &list), 0);
	assert_int_equal(list.n, 0);
	kiln_image_list_release(&list);

	assert_error(c->ops->image_delete(c, "debian-12"), KILN_EINVALID, "cannot be deleted");
	assert_int_equal(c->ops->image_delete(c, "img-0123456789abcdef0"), 0); /* absent: fine */

	assert_int_equal(c->ops->instances_describe(c, &iq, &insts), 0);
	assert_int_equal(insts.n, 0);
	iq.ids = missing;
	iq.n_ids = 1;
	assert_error(c->ops->instances_describe(c, &iq, &insts), KILN_ENOTFOUND, "no instance 'i-0123456789abcdef0'");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ids),
		cmocka_unit_test(test_subnet_parse),
		cmocka_unit_test(test_subnet_conflict),
		cmocka_unit_test(test_ip_pick_and_names),
		cmocka_unit_test(test_config_names),
		cmocka_unit_test(test_haproxy_config),
		cmocka_unit_test(test_lb_conf_checks),
		cmocka_unit_test(test_parse_stat),
		cmocka_unit_test(test_parse_servers_state),
		cmocka_unit_test(test_health_map),
		cmocka_unit_test(test_layer_chains),
		cmocka_unit_test(test_prune_safety),
		cmocka_unit_test(test_seal_layer),
		cmocka_unit_test_setup_teardown(test_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keypairs_firewalls_tags, setup, teardown),
		cmocka_unit_test_setup_teardown(test_images_and_instances_listing, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
