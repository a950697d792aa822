#include <unistd.h>

#include "core/error.h"
#include "local/local.h"

/*
 * The local provider's operations table: the same contract as aws/
 * (core/cloud.h), so engines run on it unchanged.
 */

static int local_whoami(kiln_cloud *c, kiln_identity *out)
{
	kiln_local *l = KILN_LOCAL(c);
	kiln_local_config cfg;
	int error;

	if ((error = kiln_local_config_load(&cfg, l)) < 0)
		return error;
	memset(out, 0, sizeof(*out));
	snprintf(out->account, sizeof(out->account), "local");
	snprintf(out->arn, sizeof(out->arn), "kiln:local:%s", l->dir);
	snprintf(out->user_id, sizeof(out->user_id), "uid %ld", (long)geteuid());
	snprintf(out->region, sizeof(out->region), "local");
	snprintf(out->endpoint, sizeof(out->endpoint), "bridge %s, subnet %s", cfg.bridge, cfg.subnet);
	snprintf(out->credential_source, sizeof(out->credential_source), "none (the local provider)");
	return 0;
}

/* Builds reach instances from the host, over the bridge: its address is the caller's. */
static int local_caller_cidr(kiln_cloud *c, const char *subnet_id, kiln_buf *out)
{
	kiln_local_config cfg;
	int error;

	(void)subnet_id;
	if ((error = kiln_local_config_load(&cfg, KILN_LOCAL(c))) < 0)
		return error;
	kiln_buf_reset(out);
	return kiln_buf_printf(out, "%s/32", cfg.bridge_ip);
}

static void local_free(kiln_cloud *c)
{
	kiln_local_close(KILN_LOCAL(c));
}

const kiln_cloud_ops kiln_local_ops = {
	.name = "local",
	.whoami = local_whoami,
	.instances_launch = kiln_local_instances_launch,
	.instances_describe = kiln_local_instances_describe,
	.instances_stop = kiln_local_instances_stop,
	.instances_terminate = kiln_local_instances_terminate,
	.console_output = kiln_local_console_output,
	.images_describe = kiln_local_images_describe,
	.image_create = kiln_local_image_create,
	.image_delete = kiln_local_image_delete,
	.tags_create = kiln_local_tags_create,
	.lb_open = kiln_local_lb_open,
	.lb_register = kiln_local_lb_register,
	.lb_deregister = kiln_local_lb_deregister,
	.lb_health = kiln_local_lb_health,
	.keypair_import = kiln_local_keypair_import,
	.keypair_delete = kiln_local_keypair_delete,
	.firewall_create = kiln_local_firewall_create,
	.firewall_delete = kiln_local_firewall_delete,
	.resources_find = kiln_local_resources_find,
	.record_create = kiln_local_record_create,
	.record_get = kiln_local_record_get,
	.record_put = kiln_local_record_put,
	.record_delete = kiln_local_record_delete,
	.record_list = kiln_local_record_list,
	.caller_cidr = local_caller_cidr,
	.free = local_free,
};

int kiln_local_cloud_new(kiln_cloud **out, const kiln_events *events)
{
	kiln_local *l;
	int error;

	if ((error = kiln_local_open(&l, events)) < 0)
		return error;
	*out = &l->cloud;
	return 0;
}
