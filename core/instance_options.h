/*
 * instance_options.h: the instance options templates and fleet files share.
 *
 * Who calls: builder/template.c and rollout/fleet.c, for these keys of
 * their "aws" block (only the aws provider has them):
 *
 *   "metadata_options": {"http_tokens": "required" | "optional",
 *                        "http_put_response_hop_limit": 1..64,
 *                        "http_endpoint": "enabled" | "disabled"}
 *   "root_volume_size_gb": GiB, "root_volume_type": "gp3" | "gp2" | "io1" |
 *   "io2" | "st1" | "sc1" | "standard", "root_volume_iops" (gp3, io1, io2),
 *   "root_volume_throughput" (MiB/s, gp3)
 *
 * Both files check them here, with positioned errors, against the ranges
 * EC2 documents (EC2 has the last word on ratios such as IOPS per GiB),
 * and put what was given into the JSON object kiln_launch.options carries
 * to the provider (aws/provider.h reads it):
 *
 *   {"metadata_options": {"http_tokens": "required", "http_put_response_hop_limit": 2,
 *                         "http_endpoint": "enabled"},
 *    "root_volume": {"size_gb": 20, "type": "gp3", "iops": 3000, "throughput": 125}}
 *
 * Keys left out of the file are left out of the object: the image's own
 * settings (and EC2's defaults) apply to them.
 */
#ifndef KILN_INSTANCE_OPTIONS_H
#define KILN_INSTANCE_OPTIONS_H

#include "core/json.h"

/* The keys above, for the files' lists of allowed keys. */
#define KILN_INSTANCE_OPTION_KEYS                                                      \
	"metadata_options", "root_volume_size_gb", "root_volume_type", "root_volume_iops", \
		"root_volume_throughput"
/* The same, NULL-terminated. */
extern const char *const kiln_instance_option_keys[];

/*
 * Checks the keys above in block (an object of doc) and sets what they say
 * in options (an object the caller owns; members "metadata_options" and
 * "root_volume" are replaced). 0, or KILN_EINVALID with a positioned message.
 */
int kiln_instance_options_parse(const kiln_jdoc *doc, const json_t *block, json_t *options);

#endif
