#include <arpa/inet.h>
#include <unistd.h>

#include "core/error.h"
#include "local/local.h"

/*
 * The local cloud's network: one bridge holding the host's address on a
 * private subnet, and per instance a network namespace kiln-ID whose eth0
 * is one end of a veth pair, the other end (kiln + 11 hex digits) on the
 * bridge. No NAT and no forwarding: instances reach only the host's
 * bridge address (the apt proxy) and each other; the host reaches them.
 * Everything goes through iproute2's `ip`, the way an admin would.
 */

#define IP_TIMEOUT_MS 30000

/* ---- subnets ---- */

static int parse_ipv4(uint32_t *out, const char *s)
{
	struct in_addr a;
	if (inet_pton(AF_INET, s, &a) != 1)
		return KILN_EINVALID;
	*out = ntohl(a.s_addr);
	return 0;
}

static void format_ipv4(char out[16], uint32_t v)
{
	struct in_addr a = { htonl(v) };
	inet_ntop(AF_INET, &a, out, 16);
}

static uint32_t prefix_mask(int prefix)
{
	return prefix <= 0 ? 0 : prefix >= 32 ? 0xffffffffu : ~((1u << (32 - prefix)) - 1);
}

int kiln_local_subnet_parse(kiln_local_subnet *out, const char *cidr)
{
	char addr[32], fixed[32];
	const char *slash = strchr(cidr, '/');
	int64_t prefix;
	uint32_t net;
	kiln_local_subnet s;

	if (!slash || (size_t)(slash - cidr) >= sizeof(addr))
		return kiln_error_set(KILN_EINVALID,
				      "subnet '%s' is not an IPv4 CIDR like '10.231.0.0/24'", cidr);
	snprintf(addr, sizeof(addr), "%.*s", (int)(slash - cidr), cidr);
	if (parse_ipv4(&net, addr) < 0 || kiln_parse_i64(&prefix, slash + 1, 0, 32) < 0)
		return kiln_error_set(KILN_EINVALID,
				      "subnet '%s' is not an IPv4 CIDR like '10.231.0.0/24'", cidr);
	if (prefix < 16 || prefix > 29)
		return kiln_error_set(KILN_EINVALID,
				      "subnet '%s': the prefix must be between /16 and /29", cidr);
	s.net = net & prefix_mask((int)prefix);
	s.prefix = (int)prefix;
	if (s.net != net) {
		kiln_local_subnet_format(fixed, &s);
		return kiln_error_set(KILN_EINVALID,
				      "subnet '%s' has host bits set (did you mean '%s'?)", cidr, fixed);
	}
	if ((net >> 24) == 127 || (net >> 24) == 0 || (net >> 28) >= 0xe ||
	    (net >> 16) == 0xa9fe)
		return kiln_error_set(KILN_EINVALID,
				      "subnet '%s' is loopback, link-local, multicast or reserved: "
				      "choose a private range such as 10.231.0.0/24",
				      cidr);
	*out = s;
	return 0;
}

void kiln_local_subnet_format(char out[32], const kiln_local_subnet *s)
{
	char a[16];
	format_ipv4(a, s->net);
	snprintf(out, 32, "%s/%d", a, s->prefix);
}

uint32_t kiln_local_subnet_size(const kiln_local_subnet *s)
{
	return 1u << (32 - s->prefix);
}

void kiln_local_subnet_addr(char out[16], const kiln_local_subnet *s, uint32_t index)
{
	format_ipv4(out, s->net + index);
}

bool kiln_local_cidrs_overlap(uint32_t a, int alen, uint32_t b, int blen)
{
	uint32_t m = prefix_mask(KILN_MIN(alen, blen));
	return (a & m) == (b & m);
}

/* "10.0.0.0/8" or "10.1.2.3" (a host route) */
static int parse_cidr_loose(uint32_t *net, int *len, const char *s)
{
	char addr[32];
	const char *slash = strchr(s, '/');
	int64_t p = 32;

	if (slash) {
		if ((size_t)(slash - s) >= sizeof(addr) || kiln_parse_i64(&p, slash + 1, 0, 32) < 0)
			return KILN_EINVALID;
		snprintf(addr, sizeof(addr), "%.*s", (int)(slash - s), s);
	} else {
		snprintf(addr, sizeof(addr), "%s", s);
	}
	if (parse_ipv4(net, addr) < 0)
		return KILN_EINVALID;
	*len = (int)p;
	return 0;
}

int kiln_local_subnet_conflict(const kiln_local_subnet *s, const json_t *addrs,
			       const json_t *routes, const char *own_bridge, kiln_buf *why)
{
	char mine[32];
	size_t i, j;
	json_t *link, *ai, *rt;

	kiln_local_subnet_format(mine, s);
	json_array_foreach((json_t *)addrs, i, link) {
		const char *ifname = kiln_local_jstr(link, "ifname");
		if (own_bridge && !strcmp(ifname, own_bridge))
			continue;
		json_array_foreach(json_object_get(link, "addr_info"), j, ai) {
			uint32_t a;
			int len = (int)kiln_local_jint(ai, "prefixlen");
			const char *local = kiln_local_jstr(ai, "local");
			if (strcmp(kiln_local_jstr(ai, "family"), "inet") || parse_ipv4(&a, local) < 0)
				continue;
			if (kiln_local_cidrs_overlap(s->net, s->prefix, a, len)) {
				kiln_buf_reset(why);
				kiln_buf_printf(why, "%s overlaps the address %s/%d on '%s'", mine, local,
						len, ifname);
				return 1;
			}
		}
	}
	json_array_foreach((json_t *)routes, i, rt) {
		const char *dst = kiln_local_jstr(rt, "dst"), *dev = kiln_local_jstr(rt, "dev");
		const char *type = kiln_local_jstr(rt, "type");
		uint32_t net;
		int len;
		if (!strcmp(dst, "default") || !*dst || (own_bridge && !strcmp(dev, own_bridge)))
			continue;
		/* broadcast/local entries mirror addresses, already checked above */
		if (!strcmp(type, "broadcast") || !strcmp(type, "local") || !strcmp(type, "multicast"))
			continue;
		if (parse_cidr_loose(&net, &len, dst) < 0)
			continue;
		if (kiln_local_cidrs_overlap(s->net, s->prefix, net, len)) {
			kiln_buf_reset(why);
			kiln_buf_printf(why, "%s overlaps the route to %s%s%s%s", mine, dst,
					*dev ? " on '" : "", dev, *dev ? "'" : "");
			return 1;
		}
	}
	return 0;
}

int kiln_local_ip_pick(char out[16], const kiln_local_subnet *s, const kiln_strings *used)
{
	uint32_t i, size = kiln_local_subnet_size(s);
	char subnet[32];

	/* .0 is the network, .1 the host's bridge, the last the broadcast */
	for (i = 2; i + 1 < size; i++) {
		kiln_local_subnet_addr(out, s, i);
		if (!kiln_strings_has(used, out))
			return 0;
	}
	kiln_local_subnet_format(subnet, s);
	out[0] = '\0';
	return kiln_error_set(KILN_EBUSY, "no free address left in subnet '%s' (%u instances)",
			      subnet, size - 3);
}

void kiln_local_veth_name(char out[16], const char *instance_id)
{
	size_t len = strlen(instance_id);
	snprintf(out, 16, "kiln%s", len > 11 ? instance_id + len - 11 : instance_id);
}

bool kiln_local_ifname_valid(const char *name)
{
	size_t i, len = strlen(name);
	if (len == 0 || len > 15)
		return false;
	for (i = 0; i < len; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
		      (name[i] >= '0' && name[i] <= '9') || name[i] == '_' || name[i] == '.' ||
		      name[i] == '-'))
			return false;
	return true;
}

/* ---- configuration ---- */

int kiln_local_config_set(kiln_local_config *cfg, const char *subnet, const char *bridge)
{
	kiln_local_subnet s;
	int error;

	if (subnet) {
		if ((error = kiln_local_subnet_parse(&s, subnet)) < 0)
			return error;
		kiln_local_subnet_format(cfg->subnet, &s);
		kiln_local_subnet_addr(cfg->bridge_ip, &s, 1);
		cfg->prefix = s.prefix;
	}
	if (bridge) {
		if (!kiln_local_ifname_valid(bridge) || strncmp(bridge, "kiln", 4))
			return kiln_error_set(KILN_EINVALID,
					      "bridge name '%s' must start with 'kiln' and be at most 15 "
					      "letters, digits, '_', '.' or '-'",
					      bridge);
		snprintf(cfg->bridge, sizeof(cfg->bridge), "%s", bridge);
	}
	return 0;
}

int kiln_local_config_load(kiln_local_config *out, const kiln_local *l)
{
	kiln_buf path = KILN_BUF_INIT;
	json_t *doc = NULL;
	const char *env_subnet = getenv("KILN_LOCAL_SUBNET"), *env_bridge = getenv("KILN_LOCAL_BRIDGE");
	int error;

	memset(out, 0, sizeof(*out));
	if ((error = kiln_local_config_set(out, KILN_LOCAL_DEFAULT_SUBNET, KILN_LOCAL_DEFAULT_BRIDGE)) < 0)
		return error;
	if ((error = kiln_local_path(&path, l, "config.json")) < 0)
		goto done;
	error = kiln_local_json_load(&doc, path.ptr);
	if (error == KILN_ENOTFOUND) {
		kiln_error_clear();
		/* not set up yet: the environment chooses, for tests and CI */
		error = kiln_local_config_set(out, env_subnet && *env_subnet ? env_subnet : NULL,
					      env_bridge && *env_bridge ? env_bridge : NULL);
		goto done;
	}
	if (error < 0)
		goto done;
	if ((error = kiln_local_config_set(out, kiln_local_jstr(doc, "subnet"),
					   kiln_local_jstr(doc, "bridge"))) < 0) {
		kiln_error_prefix("'%s'", path.ptr);
		goto done;
	}
	out->saved = true;
done:
	json_decref(doc);
	kiln_buf_release(&path);
	return error;
}

int kiln_local_config_save(const kiln_local_config *cfg, const kiln_local *l)
{
	kiln_buf path = KILN_BUF_INIT;
	json_t *doc = json_pack("{s:s,s:s,s:s}", "subnet", cfg->subnet, "bridge", cfg->bridge,
				"bridge_address", cfg->bridge_ip);
	int error;

	if (!doc)
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	if ((error = kiln_local_path(&path, l, "config.json")) == 0)
		error = kiln_local_json_save(path.ptr, doc, 0644);
	json_decref(doc);
	kiln_buf_release(&path);
	return error;
}

/* ---- links and namespaces ---- */

bool kiln_local_link_exists(const char *ifname)
{
	char path[64];
	snprintf(path, sizeof(path), "/sys/class/net/%s", ifname);
	return access(path, F_OK) == 0;
}

int kiln_local_bridge_owner(kiln_buf *out, const kiln_local *l)
{
	kiln_buf_reset(out);
	return kiln_buf_printf(out, "kiln:%s", l->dir);
}

static int read_ifalias(kiln_buf *out, const char *ifname)
{
	char path[64];
	snprintf(path, sizeof(path), "/sys/class/net/%s/ifalias", ifname);
	kiln_buf_reset(out);
	if (kiln_read_file(out, path) < 0) {
		kiln_error_clear();
		return 0;
	}
	kiln_buf_rtrim(out);
	return 0;
}

/* A kiln alias ("kiln:DIR") whose DIR is gone (purged, or a crashed test's temporary one). */
static bool stale_owner(const char *alias)
{
	return !strncmp(alias, "kiln:/", 6) && access(alias + 5, F_OK) != 0;
}

static int ip_json(json_t **out, const char *const *argv)
{
	kiln_buf o = KILN_BUF_INIT;
	json_error_t jerr;
	int error;

	kiln_buf_init(&o, 8 << 20);
	if ((error = kiln_local_run(argv, &o, NULL, IP_TIMEOUT_MS)) < 0)
		goto done;
	if (!(*out = json_loadb(o.ptr, o.len, 0, &jerr)) || !json_is_array(*out)) {
		json_decref(*out);
		*out = NULL;
		error = kiln_error_set(KILN_ERROR, "cannot parse the output of '%s %s': %s", argv[0],
				       argv[1], jerr.text);
	}
done:
	kiln_buf_release(&o);
	return error;
}

static int check_subnet_free(const kiln_local_config *cfg)
{
	const char *addr_argv[] = { "ip", "-j", "-4", "addr", "show", NULL };
	const char *route_argv[] = { "ip", "-j", "-4", "route", "show", "table", "all", NULL };
	json_t *addrs = NULL, *routes = NULL;
	kiln_buf why = KILN_BUF_INIT;
	kiln_local_subnet s;
	int error;

	if ((error = kiln_local_subnet_parse(&s, cfg->subnet)) < 0)
		return error;
	if ((error = ip_json(&addrs, addr_argv)) < 0 || (error = ip_json(&routes, route_argv)) < 0)
		goto done;
	if (kiln_local_subnet_conflict(&s, addrs, routes, cfg->bridge, &why) == 1)
		error = kiln_error_set(KILN_EINVALID,
				       "subnet '%s' is already in use on this host: %s; choose another "
				       "with 'kiln local up --subnet CIDR'",
				       cfg->subnet, why.ptr);
done:
	json_decref(addrs);
	json_decref(routes);
	kiln_buf_release(&why);
	return error;
}

int kiln_local_bridge_ensure(const kiln_local *l, const kiln_local_config *cfg)
{
	kiln_buf owner = KILN_BUF_INIT, alias = KILN_BUF_INIT, cidr = KILN_BUF_INIT;
	kiln_buf o = KILN_BUF_INIT;
	int error;

	if ((error = kiln_local_bridge_owner(&owner, l)) < 0 ||
	    (error = kiln_buf_printf(&cidr, "%s/%d", cfg->bridge_ip, cfg->prefix)) < 0)
		goto done;
	if (kiln_local_link_exists(cfg->bridge)) {
		read_ifalias(&alias, cfg->bridge);
		if (strcmp(alias.ptr, owner.ptr) && stale_owner(alias.ptr)) {
			/* left by a state dir that no longer exists (a crashed test run): reclaim */
			const char *del[] = { "ip", "link", "del", cfg->bridge, NULL };
			if ((error = kiln_local_run(del, NULL, NULL, IP_TIMEOUT_MS)) < 0)
				goto done;
			kiln_buf_reset(&alias);
			error = kiln_local_bridge_ensure(l, cfg);
			goto done;
		}
		if (strcmp(alias.ptr, owner.ptr)) {
			error = kiln_error_set(KILN_EINVALID,
					       "network interface '%s' exists and is not this kiln's "
					       "(its alias is '%s', this state dir's is '%s'); choose "
					       "another with 'kiln local up --bridge NAME'",
					       cfg->bridge, alias.ptr, owner.ptr);
			goto done;
		}
	} else {
		const char *add[] = { "ip", "link", "add", cfg->bridge, "type", "bridge", NULL };
		const char *set_alias[] = { "ip", "link", "set", "dev", cfg->bridge, "alias", owner.ptr, NULL };
		if ((error = check_subnet_free(cfg)) < 0 ||
		    (error = kiln_local_run(add, NULL, NULL, IP_TIMEOUT_MS)) < 0 ||
		    (error = kiln_local_run(set_alias, NULL, NULL, IP_TIMEOUT_MS)) < 0)
			goto done;
	}
	{
		/* the address may be missing (a crash) or another subnet's (up --subnet) */
		const char *show[] = { "ip", "-4", "-o", "addr", "show", "dev", cfg->bridge, NULL };
		const char *flush[] = { "ip", "-4", "addr", "flush", "dev", cfg->bridge, NULL };
		const char *add[] = { "ip", "addr", "add", cidr.ptr, "dev", cfg->bridge, NULL };
		const char *up[] = { "ip", "link", "set", "dev", cfg->bridge, "up", NULL };
		char want[64];
		kiln_buf_init(&o, 1 << 20);
		if ((error = kiln_local_run(show, &o, NULL, IP_TIMEOUT_MS)) < 0)
			goto done;
		snprintf(want, sizeof(want), " %s ", cidr.ptr);
		if (!strstr(o.ptr, want)) {
			if (o.len && (error = kiln_local_run(flush, NULL, NULL, IP_TIMEOUT_MS)) < 0)
				goto done;
			if ((error = check_subnet_free(cfg)) < 0 ||
			    (error = kiln_local_run(add, NULL, NULL, IP_TIMEOUT_MS)) < 0)
				goto done;
		}
		error = kiln_local_run(up, NULL, NULL, IP_TIMEOUT_MS);
	}
done:
	kiln_buf_release(&owner);
	kiln_buf_release(&alias);
	kiln_buf_release(&cidr);
	kiln_buf_release(&o);
	return error;
}

int kiln_local_bridge_remove(const kiln_local *l, const kiln_local_config *cfg)
{
	kiln_buf owner = KILN_BUF_INIT, alias = KILN_BUF_INIT;
	const char *del[] = { "ip", "link", "del", cfg->bridge, NULL };
	int error = 0;

	if (!kiln_local_link_exists(cfg->bridge))
		return 0;
	if ((error = kiln_local_bridge_owner(&owner, l)) < 0)
		goto done;
	read_ifalias(&alias, cfg->bridge);
	if (strcmp(alias.ptr, owner.ptr))
		goto done; /* another state dir's: never ours to remove */
	error = kiln_local_run(del, NULL, NULL, IP_TIMEOUT_MS);
done:
	kiln_buf_release(&owner);
	kiln_buf_release(&alias);
	return error;
}

bool kiln_local_netns_exists(const char *id)
{
	char path[128];
	snprintf(path, sizeof(path), "/run/netns/kiln-%s", id);
	return access(path, F_OK) == 0;
}

int kiln_local_netns_setup(const kiln_local_config *cfg, const char *id, const char *ip)
{
	char ns[96], veth[16], cidr[40];
	int error;

	snprintf(ns, sizeof(ns), "kiln-%s", id);
	kiln_local_veth_name(veth, id);
	snprintf(cidr, sizeof(cidr), "%s/%d", ip, cfg->prefix);
	if (!kiln_local_netns_exists(id)) {
		const char *add[] = { "ip", "netns", "add", ns, NULL };
		if ((error = kiln_local_run(add, NULL, NULL, IP_TIMEOUT_MS)) < 0)
			return error;
	}
	if (!kiln_local_link_exists(veth)) {
		/* the peer is born inside the namespace, already named eth0 */
		const char *add[] = { "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0",
				      "netns", ns, NULL };
		if ((error = kiln_local_run(add, NULL, NULL, IP_TIMEOUT_MS)) < 0)
			return error;
	}
	{
		const char *master[] = { "ip", "link", "set", "dev", veth, "master", cfg->bridge, "up", NULL };
		const char *addr[] = { "ip", "-n", ns, "addr", "replace", cidr, "dev", "eth0", NULL };
		const char *eth_up[] = { "ip", "-n", ns, "link", "set", "dev", "eth0", "up", NULL };
		const char *lo_up[] = { "ip", "-n", ns, "link", "set", "dev", "lo", "up", NULL };
		const char *route[] = { "ip", "-n", ns, "route", "replace", "default", "via",
					cfg->bridge_ip, "dev", "eth0", NULL };
		/*
		 * Addresses are reused: the host may still hold the last holder's
		 * MAC for this one, even as REACHABLE, and sends to it until the
		 * entry expires (launch to SSH-ready took 30 s instead of 1 s
		 * that way). Forget it, so the first packet asks anew.
		 */
		const char *forget[] = { "ip", "neigh", "flush", "to", ip, "dev", cfg->bridge, NULL };
		int status;
		if ((error = kiln_local_run(master, NULL, NULL, IP_TIMEOUT_MS)) < 0 ||
		    (error = kiln_local_run(addr, NULL, NULL, IP_TIMEOUT_MS)) < 0 ||
		    (error = kiln_local_run(eth_up, NULL, NULL, IP_TIMEOUT_MS)) < 0 ||
		    (error = kiln_local_run(lo_up, NULL, NULL, IP_TIMEOUT_MS)) < 0 ||
		    (error = kiln_local_run(route, NULL, NULL, IP_TIMEOUT_MS)) < 0 ||
		    (error = kiln_local_run(forget, NULL, &status, IP_TIMEOUT_MS)) < 0)
			return error;
	}
	return 0;
}

int kiln_local_netns_remove(const char *id)
{
	char ns[96], veth[16];
	int error;

	snprintf(ns, sizeof(ns), "kiln-%s", id);
	kiln_local_veth_name(veth, id);
	if (kiln_local_netns_exists(id)) {
		/* deleting the namespace destroys eth0, and with it its veth peer */
		const char *del[] = { "ip", "netns", "del", ns, NULL };
		if ((error = kiln_local_run(del, NULL, NULL, IP_TIMEOUT_MS)) < 0)
			return error;
	}
	if (kiln_local_link_exists(veth)) {
		const char *del[] = { "ip", "link", "del", veth, NULL };
		int status;
		if ((error = kiln_local_run(del, NULL, &status, IP_TIMEOUT_MS)) < 0)
			return error;
		/* it may vanish between the check and the delete, with its namespace */
		if (status != 0 && kiln_local_link_exists(veth))
			return kiln_error_set(KILN_ERROR, "cannot remove interface '%s'", veth);
	}
	return 0;
}
