/*
 * local/provider.h: the local provider, as cli/ sees it.
 *
 * Instances are systemd-nspawn containers booting real systemd, each in
 * its own network namespace on a kiln bridge; images are read-only
 * overlayfs layers over a Debian 12 base; load balancers are HAProxy
 * processes driven over their admin sockets. Everything lives under
 * STATE_DIR/local (docs/local-provider.md lists every name kiln creates).
 *
 * Only cli/ includes this header: cli/provider.c constructs the provider,
 * cli/cmd_local.c runs `kiln local up|status|down`.
 */
#ifndef KILN_LOCAL_PROVIDER_H
#define KILN_LOCAL_PROVIDER_H

#include <jansson.h>

#include "core/cloud.h"

/*
 * The provider over STATE_DIR/local; *out is freed with kiln_cloud_free.
 * Constructing it touches nothing outside the state dir and needs no root;
 * operations that create containers, mounts or networks need root and say
 * so. The first launch brings the local cloud up if needed (as
 * kiln_local_up with no options).
 */
int kiln_local_cloud_new(kiln_cloud **out, const kiln_events *events);

typedef struct kiln_local_up_opts {
	const char *subnet; /* "10.231.0.0/24"; NULL: the configured one, else the default */
	const char *bridge; /* "kiln0"; NULL: the configured one, else the default */
	bool build_base;    /* build the Debian base image if it is missing */
} kiln_local_up_opts;

#define KILN_LOCAL_UP_OPTS_INIT { NULL, NULL, true }

/*
 * Brings the local cloud up, idempotently: the bridge with the host's
 * address on the subnet, the apt proxy, the base image; repairs what a
 * crash left behind (dead containers, stale mounts, namespaces and pid
 * files). Progress goes out as events.
 */
int kiln_local_up(const kiln_local_up_opts *opts, const kiln_events *events);

/*
 * Everything the local cloud holds, as a JSON object (a new reference,
 * owned by the caller): network, apt proxy, base image, instances,
 * images, balancers and the names kiln created on the host.
 */
int kiln_local_status(json_t **out, const kiln_events *events);

/*
 * Stops every process kiln started (containers, HAProxy, apt-cacher-ng),
 * by pid; removes kiln's network namespaces, veths, mounts and bridge.
 * Keeps images, the base and the apt cache unless purge, which removes
 * all local state.
 */
int kiln_local_down(bool purge, const kiln_events *events);

#endif
