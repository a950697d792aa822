/*
 * local/local.h: the local provider's internals, shared by the files of local/ and
 * by its unit tests (tests/unit/test_local.c). Not for engines or cli/.
 *
 * Layout under STATE_DIR/local (docs/local-provider.md has the whole list):
 *   config.json                 subnet, bridge, bridge address
 *   base/debian-12/             the base root filesystem (lowest layer)
 *   layers/LAYER/, LAYER.json   sealed upper dirs of instances, read-only
 *   images/IMG.json             image records (layer chain top first)
 *   instances/ID/               instance.json, upper/, work/, rootfs/,
 *                               nspawn.pid, console.log, authorized_keys
 *   keys/, firewalls/, records/ key pairs, firewall rules, named records
 *   lb/NAME/                    haproxy.cfg, admin.sock, haproxy.pid,
 *                               server-state, lb.json
 *   apt-cacher-ng/, apt-cache/  the apt proxy's config and its cache
 *
 * Locks (core/fs.h flock, dropped by the kernel when a holder dies):
 * images.lock (then) alloc.lock (then) instances/ID/lock, never the other
 * way round; lb/NAME/lock; up.lock for up/down; base.lock for the base.
 */
#ifndef KILN_LOCAL_LOCAL_H
#define KILN_LOCAL_LOCAL_H

#include <sys/types.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/cloud.h"
#include "core/fs.h"
#include "local/provider.h"

#define KILN_LOCAL_BASE_ID "debian-12"
#define KILN_LOCAL_DEFAULT_SUBNET "10.231.0.0/24"
#define KILN_LOCAL_DEFAULT_BRIDGE "kiln0"
#define KILN_LOCAL_APT_PORT 3142
#define KILN_LOCAL_MIRROR "http://deb.debian.org/debian"
/* Bump when the base's recipe changes: cached bases of another recipe are not reused. */
#define KILN_LOCAL_BASE_RECIPE 2
#define KILN_LOCAL_DRAIN_TIMEOUT_S 30
/* Terminated instances stay visible this long, as on EC2. */
#define KILN_LOCAL_TERMINATED_KEEP_S 3600

typedef struct kiln_local {
	kiln_cloud cloud;
	char *dir; /* STATE_DIR/local */
	bool up_checked; /* ensure_up ran in this process */
} kiln_local;

/* ---- util.c --------------------------------------------------------------- */

/* "i-" + 17 hex digits (like EC2's), from the kernel's random source. */
int kiln_local_new_id(char out[KILN_ID_MAX], const char *prefix);
/* prefix followed by exactly 17 lowercase hex digits. */
bool kiln_local_id_valid(const char *id, const char *prefix);

/* STATE_DIR/local/fmt..., into out (reset first). */
int kiln_local_path(kiln_buf *out, const kiln_local *l, const char *fmt, ...) KILN_PRINTF(3, 4);

/*
 * Runs argv[0] (searched in PATH) with stdin from /dev/null and waits for
 * it (up to timeout_ms, then SIGKILL; cancellation kills it too). Its
 * stdout and stderr go to out (may be NULL; capped: the rest is dropped).
 * With status NULL, an exit other than 0 is an error naming the command
 * and its last line of output; else *status gets the exit code (128+N
 * for signal N) and only failing to run is an error.
 */
int kiln_local_run(const char *const *argv, kiln_buf *out, int *status, uint64_t timeout_ms);

/*
 * Starts argv detached from kiln (a new session, double fork so it is
 * never kiln's child, stdin /dev/null, stdout and stderr appended to
 * log_path) and returns its pid. Fails if it cannot be executed.
 */
int kiln_local_spawn(pid_t *out, const char *const *argv, const char *log_path);

/* pid is a live (not zombie) process whose command line contains needle. */
bool kiln_local_pid_alive(pid_t pid, const char *needle);
/* The pid in a pid file, 0 if none or unreadable. */
pid_t kiln_local_pidfile_read(const char *path);
int kiln_local_pidfile_write(const char *path, pid_t pid);
/*
 * Sends sig to pid (if alive with needle), waits up to timeout_ms for it
 * to go, then SIGKILLs it and waits a little more. 0 once it is gone.
 */
int kiln_local_kill_wait(pid_t pid, const char *needle, int sig, uint64_t timeout_ms);

/* Loads a JSON object file (KILN_ENOTFOUND if absent). */
int kiln_local_json_load(json_t **out, const char *path);
/* Writes it atomically (sorted keys, indented). */
int kiln_local_json_save(const char *path, const json_t *doc, mode_t mode);

/* Root is needed for mounts, namespaces and containers. */
int kiln_local_require_root(const char *what);
/* argv0 is an executable in PATH; else KILN_EUNSUPPORTED naming the package. */
int kiln_local_require_tool(const char *argv0, const char *package);

/* TCP connect to ip:port within timeout_ms; with banner, reads >= 4 bytes. 1 open, 0 not. */
int kiln_local_tcp_probe(const char *ip, int port, uint64_t timeout_ms, bool banner);
/* Bytes used by the files below path (st_blocks), not following symlinks. */
uint64_t kiln_local_du(const char *path);
/* Names in dir (no . and ..) ending with suffix (""), sorted. */
int kiln_local_list_dir(kiln_strings *out, const char *dir, const char *suffix);
/* Mount points (from /proc/self/mountinfo) at or below prefix, deepest first. */
int kiln_local_mounts_under(kiln_strings *out, const char *prefix);

/*
 * Files inside an instance's root or a layer, never following a symlink
 * out of it (an image's content must not make kiln touch the host).
 * open_parent returns the directory holding rel (-1 with errno), creating
 * missing directories 0755 with mkdirs; *leaf is rel's last component.
 */
int kiln_local_open_parent(int rootfd, const char *rel, const char **leaf, bool mkdirs);
/* Atomically (temp file + rename in the same directory). */
int kiln_local_write_in_root(const char *root, const char *rel, const char *data, size_t len, mode_t mode);
/* Appends the file to out; KILN_ENOTFOUND if absent. */
int kiln_local_read_in_root(kiln_buf *out, const char *root, const char *rel);

/* json helpers for metadata files */
const char *kiln_local_jstr(const json_t *o, const char *key);
int64_t kiln_local_jint(const json_t *o, const char *key);
int kiln_local_strings_from_json(kiln_strings *out, const json_t *arr);
json_t *kiln_local_strings_to_json(const kiln_strings *s);

/* ---- net.c ---------------------------------------------------------------- */

typedef struct kiln_local_subnet {
	uint32_t net; /* host byte order */
	int prefix;
} kiln_local_subnet;

/* "10.231.0.0/24": an IPv4 network address, prefix /16 to /29, not loopback or multicast. */
int kiln_local_subnet_parse(kiln_local_subnet *out, const char *cidr);
void kiln_local_subnet_format(char out[32], const kiln_local_subnet *s);
/* The address with host part index (1 = the bridge's), into out (16 bytes). */
void kiln_local_subnet_addr(char out[16], const kiln_local_subnet *s, uint32_t index);
/* Number of addresses, network and broadcast included. */
uint32_t kiln_local_subnet_size(const kiln_local_subnet *s);
bool kiln_local_cidrs_overlap(uint32_t a, int alen, uint32_t b, int blen);
/*
 * Does s overlap an address or route of the host? addrs and routes are
 * the output of `ip -j -4 addr show` and `ip -j -4 route show table all`;
 * entries on own_bridge and default routes are ignored. 1 with why set
 * ("overlaps 10.231.0.0/16 on 'eth0'"), 0 if free.
 */
int kiln_local_subnet_conflict(const kiln_local_subnet *s, const json_t *addrs,
			       const json_t *routes, const char *own_bridge, kiln_buf *why);
/* The lowest free instance address (index 2 up to the last before broadcast). */
int kiln_local_ip_pick(char out[16], const kiln_local_subnet *s, const kiln_strings *used);
/* "kiln" + the id's last 11 hex digits: an interface name (<= 15 bytes). */
void kiln_local_veth_name(char out[16], const char *instance_id);
/* Interface names: 1-15 of [A-Za-z0-9_.-]. */
bool kiln_local_ifname_valid(const char *name);

typedef struct kiln_local_config {
	char subnet[32];    /* "10.231.0.0/24" */
	char bridge[16];
	char bridge_ip[16]; /* the subnet's first address, the host's */
	int prefix;
	bool saved;         /* read from config.json (else defaults) */
} kiln_local_config;

/* config.json, else KILN_LOCAL_SUBNET/KILN_LOCAL_BRIDGE, else the defaults. */
int kiln_local_config_load(kiln_local_config *out, const kiln_local *l);
int kiln_local_config_save(const kiln_local_config *cfg, const kiln_local *l);
int kiln_local_config_set(kiln_local_config *cfg, const char *subnet, const char *bridge);

/* The tag kiln writes on its bridge (its ifalias) so another state dir's is never touched. */
int kiln_local_bridge_owner(kiln_buf *out, const kiln_local *l);
int kiln_local_bridge_ensure(const kiln_local *l, const kiln_local_config *cfg);
int kiln_local_bridge_remove(const kiln_local *l, const kiln_local_config *cfg);
bool kiln_local_link_exists(const char *ifname);
/* Namespace kiln-ID with eth0 at ip on the bridge (veth host end kiln...). Idempotent. */
int kiln_local_netns_setup(const kiln_local_config *cfg, const char *id, const char *ip);
/* Removes them; absent is fine. */
int kiln_local_netns_remove(const char *id);
bool kiln_local_netns_exists(const char *id);

/* ---- haproxy.c: the pure parts are unit-tested ---------------------------- */

typedef struct kiln_local_lb_conf {
	char name[64];
	char listen[64];
	char health_path[256];
	int interval_s, rise, fall;
	int target_port;
	char socket_path[512];
	char state_path[512];
} kiln_local_lb_conf;

typedef struct kiln_local_lb_server {
	char id[KILN_ID_MAX];
	char addr[16];
	int port;
	bool draining;
	bool ever_up;
	int64_t registered_ms;
	int64_t drain_start_ms;
	int64_t l7_first_ms; /* when a never-up server was first seen failing at L7 */
} kiln_local_lb_server;

/* Balancer names: 1-48 of [A-Za-z0-9_.-]. */
bool kiln_local_lb_name_valid(const char *name);
/* Checks and fills conf from lb (defaults: listen 127.0.0.1:8080, /, 2 s, rise 2, fall 2, port 80). */
int kiln_local_lb_conf_from(kiln_local_lb_conf *conf, const kiln_lb *lb);
/*
 * A server line's check settings, "check inter 1s downinter 250ms rise 2 fall 2",
 * the same in the config file and in `add server`.
 */
void kiln_local_haproxy_check_args(char *out, size_t size, const kiln_local_lb_conf *conf);
/* The whole haproxy.cfg for conf and its servers (draining ones disabled). */
int kiln_local_haproxy_config(kiln_buf *out, const kiln_local_lb_conf *conf,
			      const kiln_local_lb_server *servers, size_t n);

typedef struct kiln_local_stat_row {
	char svname[KILN_ID_MAX];
	char status[32];       /* "UP", "UP 1/2", "DOWN", "DOWN 1/2", "DRAIN", "MAINT", ... */
	char check_status[16]; /* "L4CON", "L7STS", "L7OK", "INI", ... */
	char check_code[16];
	char check_desc[96];
	char last_chk[128];
	int64_t scur, qcur;
} kiln_local_stat_row;

/* The server rows of backend be in `show stat` CSV; *rows is heap (free()). */
int kiln_local_haproxy_parse_stat(kiln_local_stat_row **rows, size_t *n, const char *csv,
				  const char *backend);
const kiln_local_stat_row *kiln_local_stat_find(const kiln_local_stat_row *rows, size_t n,
						const char *svname);

/*
 * `show servers state` rows: srv_name -> op state (0 stopped, 2 running)
 * and admin state bits (0x01/0x02/0x04 maint, 0x08/0x10 drain).
 */
typedef struct kiln_local_srv_state {
	char name[KILN_ID_MAX];
	int op_state, admin_state, check_health;
} kiln_local_srv_state;

int kiln_local_haproxy_parse_servers_state(kiln_local_srv_state **rows, size_t *n,
					   const char *text, const char *backend);

/*
 * A target's health from its `show stat` row (NULL: not in HAProxy) and
 * kiln's record of it (NULL: not registered by kiln), as on ELB:
 * never passed and failing at L4 (refused, timeout) = initial; failing at
 * L7 for fall checks, or down after having been up = unhealthy; up =
 * healthy; drain = draining; gone = unused. Updates srv->ever_up and
 * srv->l7_first_ms (the caller saves them); reason like ELB's.
 */
kiln_health kiln_local_health_map(const kiln_local_stat_row *row, kiln_local_lb_server *srv,
				  const kiln_local_lb_conf *conf, int64_t now_ms,
				  char reason[KILN_NAME_MAX]);

/* One command over the admin socket; the reply (capped) into out. */
int kiln_local_haproxy_cmd(kiln_buf *out, const char *socket_path, const char *cmd);

/* ---- lb.c ----------------------------------------------------------------- */

int kiln_local_lb_open(kiln_cloud *c, const kiln_lb *lb, kiln_lb_info *out);
int kiln_local_lb_register(kiln_cloud *c, const kiln_lb *lb, const char *const *ids, size_t n);
int kiln_local_lb_deregister(kiln_cloud *c, const kiln_lb *lb, const char *const *ids, size_t n);
int kiln_local_lb_health(kiln_cloud *c, const kiln_lb *lb, const char *const *ids, size_t n,
			 kiln_target_list *out);
/* Status of every balancer (for `kiln local status`); health only when root. */
int kiln_local_lb_status(kiln_local *l, json_t *out_array);
/* Saves each balancer's server state and stops its HAProxy. */
int kiln_local_lb_stop_all(kiln_local *l);

/* ---- image.c -------------------------------------------------------------- */

/* dir/layers/L1:...:dir/base/debian-12 for a chain (top first), as overlayfs wants. */
int kiln_local_lowerdir(kiln_buf *out, const char *dir, const kiln_strings *layers,
			const char *base);
/* The chain of a new image: new_layer, then the parent's chain. */
int kiln_local_layer_chain(kiln_strings *out, const char *new_layer, const kiln_strings *parent);
/*
 * Layers in present that no chain in chains needs (the images' and the
 * live instances' chains): the ones a prune may remove.
 */
int kiln_local_layers_garbage(kiln_strings *out, const kiln_strings *present,
			      const kiln_strings *chains, size_t n_chains);
/* Removes every layer no image or live instance needs. Takes images.lock. */
int kiln_local_layers_gc(kiln_local *l);
/* Builds (or copies from KILN_LOCAL_BASE_CACHE) the base if missing. */
int kiln_local_base_ensure(kiln_local *l);
bool kiln_local_base_present(const kiln_local *l);
/* Removes per-instance state from a copied upper dir (lowers: the chain below it). */
int kiln_local_seal_layer(const char *layer, const char *const *lowers, size_t n_lowers);

/* Image metadata (images/ID.json, or the base) into a kiln_image. */
int kiln_local_image_load(kiln_local *l, const char *id, kiln_image *out, kiln_strings *chain);

int kiln_local_images_describe(kiln_cloud *c, const kiln_image_query *q, kiln_image_list *out);
int kiln_local_image_create(kiln_cloud *c, const char *instance_id, const char *name,
			    const char *description, const kiln_tags *tags, char out_id[KILN_ID_MAX]);
int kiln_local_image_delete(kiln_cloud *c, const char *image_id);
/* For status. */
int kiln_local_images_status(kiln_local *l, json_t *out_array);

/* ---- instance.c ------------------------------------------------------------ */

int kiln_local_instances_launch(kiln_cloud *c, const kiln_launch *spec, kiln_instance_list *out);
int kiln_local_instances_describe(kiln_cloud *c, const kiln_instance_query *q,
				  kiln_instance_list *out);
int kiln_local_instances_stop(kiln_cloud *c, const char *const *ids, size_t n);
int kiln_local_instances_terminate(kiln_cloud *c, const char *const *ids, size_t n);
int kiln_local_console_output(kiln_cloud *c, const char *id, kiln_buf *out);
/* Loads instances/ID/instance.json. */
int kiln_local_instance_load(json_t **out, const kiln_local *l, const char *id);
/* Every instance id with a directory, sorted. */
int kiln_local_instance_ids(kiln_strings *out, const kiln_local *l);
/* The layer chains of every instance that is not terminated (for layer gc). */
int kiln_local_instance_chains(kiln_strings **out, size_t *n, const kiln_local *l);
/* Brings stored states in line with the processes (dead containers: stopped), cleans leftovers. */
int kiln_local_instances_repair(kiln_local *l);
/* Stops every container (down), cleans up its mount and namespace. */
int kiln_local_instances_down(kiln_local *l);
int kiln_local_instances_status(kiln_local *l, json_t *out_array);

/* ---- store.c: records, key pairs, firewalls, tags ------------------------- */

bool kiln_local_record_name_valid(const char *name);
int kiln_local_record_create(kiln_cloud *c, const char *name, const char *value);
int kiln_local_record_get(kiln_cloud *c, const char *name, kiln_record *out);
int kiln_local_record_put(kiln_cloud *c, const char *name, const char *value);
int kiln_local_record_delete(kiln_cloud *c, const char *name);
int kiln_local_record_list(kiln_cloud *c, const char *prefix, kiln_strings *out);
int kiln_local_keypair_import(kiln_cloud *c, const char *name, const char *public_key,
			      const kiln_tags *tags);
int kiln_local_keypair_delete(kiln_cloud *c, const char *name);
/* The stored public key of a key pair (ENOTFOUND if none). */
int kiln_local_keypair_public(kiln_buf *out, const kiln_local *l, const char *name);
int kiln_local_firewall_create(kiln_cloud *c, const kiln_firewall *spec, char out_id[KILN_ID_MAX]);
int kiln_local_firewall_delete(kiln_cloud *c, const char *id, uint64_t timeout_ms);
int kiln_local_tags_create(kiln_cloud *c, const char *const *ids, size_t n, const kiln_tags *tags);
int kiln_local_resources_find(kiln_cloud *c, const kiln_tags *match, kiln_resource_list *out);

/* ---- apt.c ----------------------------------------------------------------- */

int kiln_local_apt_ensure(kiln_local *l, const kiln_local_config *cfg);
int kiln_local_apt_stop(kiln_local *l);
int kiln_local_apt_status(kiln_local *l, const kiln_local_config *cfg, json_t **out);

/* ---- env.c ----------------------------------------------------------------- */

int kiln_local_open(kiln_local **out, const kiln_events *events);
void kiln_local_close(kiln_local *l);
/* What a launch needs (bridge, apt proxy, base), once per process. */
int kiln_local_ensure_up(kiln_local *l);

#define KILN_LOCAL(c) ((kiln_local *)(c))
#define KILN_LOCAL_EVENTS(l) ((l)->cloud.events)

#endif
