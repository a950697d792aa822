#include "core/instance_options.h"

#include "core/error.h"

const char *const kiln_instance_option_keys[] = { KILN_INSTANCE_OPTION_KEYS, NULL };

static const char *const metadata_keys[] = { "http_tokens", "http_put_response_hop_limit",
					      "http_endpoint", NULL };

/*
 * EBS volume types and their documented limits: size in GiB, provisioned
 * IOPS (0: the type takes none), throughput in MiB/s (0: none).
 */
static const struct volume_type {
	const char *name;
	int64_t min_gb, max_gb;
	int64_t min_iops, max_iops;
	int64_t min_mibps, max_mibps;
	bool iops_required;
} volume_types[] = {
	{ "gp3", 1, 65536, 3000, 80000, 125, 2000, false },
	{ "gp2", 1, 16384, 0, 0, 0, 0, false },
	{ "io1", 4, 16384, 100, 64000, 0, 0, true },
	{ "io2", 4, 65536, 100, 256000, 0, 0, true },
	{ "st1", 125, 16384, 0, 0, 0, 0, false },
	{ "sc1", 125, 16384, 0, 0, 0, 0, false },
	{ "standard", 1, 1024, 0, 0, 0, 0, false },
};

/* One of the strings in allowed, or a positioned error naming them. */
static int get_enum(const kiln_jdoc *doc, const json_t *obj, const char *key,
		    const char *const *allowed, const char *list, const char **out)
{
	const char *s = NULL;
	size_t i;
	int error;

	if ((error = kiln_jdoc_get_string(doc, obj, key, false, &s)) < 0 || !s)
		return error;
	for (i = 0; allowed[i]; i++)
		if (!strcmp(s, allowed[i])) {
			*out = allowed[i];
			return 0;
		}
	return kiln_jdoc_error(doc, obj, key, 0, "unknown \"%s\" \"%s\" (%s)", key, s, list);
}

static int parse_metadata(const kiln_jdoc *doc, const json_t *block, json_t *options)
{
	static const char *const tokens[] = { "required", "optional", NULL };
	static const char *const endpoint[] = { "enabled", "disabled", NULL };
	const char *t = NULL, *e = NULL;
	int64_t hops = 0;
	json_t *m = NULL, *out;
	int error;

	if ((error = kiln_jdoc_get_object(doc, block, "metadata_options", false, &m)) < 0 || !m)
		return error;
	if ((error = kiln_jdoc_check_keys(doc, m, "\"metadata_options\"", metadata_keys)) < 0 ||
	    (error = get_enum(doc, m, "http_tokens", tokens, "required or optional", &t)) < 0 ||
	    (error = kiln_jdoc_get_int(doc, m, "http_put_response_hop_limit", false, 1, 64, &hops)) < 0 ||
	    (error = get_enum(doc, m, "http_endpoint", endpoint, "enabled or disabled", &e)) < 0)
		return error;
	if (!t && !hops && !e)
		return kiln_jdoc_error(doc, block, "metadata_options", 0,
				       "\"metadata_options\" is empty: set \"http_tokens\": \"required\" for IMDSv2");
	/* tokens required with the endpoint off says one thing and does another */
	if (e && !strcmp(e, "disabled") && (t || hops))
		return kiln_jdoc_error(doc, m, "http_endpoint", 0,
				       "\"http_endpoint\" \"disabled\" turns the metadata service off: leave out \"http_tokens\" and \"http_put_response_hop_limit\"");
	if (!(out = json_object()))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	if ((t && json_object_set_new(out, "http_tokens", json_string(t)) < 0) ||
	    (hops && json_object_set_new(out, "http_put_response_hop_limit", json_integer(hops)) < 0) ||
	    (e && json_object_set_new(out, "http_endpoint", json_string(e)) < 0) ||
	    json_object_set_new(options, "metadata_options", out) < 0)
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	return 0;
}

static int parse_root_volume(const kiln_jdoc *doc, const json_t *block, json_t *options)
{
	const struct volume_type *vt = NULL;
	const char *type = NULL;
	int64_t size = 0, iops = 0, mibps = 0;
	json_t *out;
	size_t i;
	int error;

	if ((error = kiln_jdoc_get_string(doc, block, "root_volume_type", false, &type)) < 0)
		return error;
	if (type) {
		for (i = 0; i < KILN_ARRAY_SIZE(volume_types) && !vt; i++)
			if (!strcmp(type, volume_types[i].name))
				vt = &volume_types[i];
		if (!vt)
			return kiln_jdoc_error(doc, block, "root_volume_type", 0,
					       "unknown \"root_volume_type\" \"%s\" (gp3, gp2, io1, io2, st1, sc1 or standard)",
					       type);
	}
	if ((error = kiln_jdoc_get_int(doc, block, "root_volume_size_gb", false, 1, 65536, &size)) < 0 ||
	    (error = kiln_jdoc_get_int(doc, block, "root_volume_iops", false, 1, INT32_MAX, &iops)) < 0 ||
	    (error = kiln_jdoc_get_int(doc, block, "root_volume_throughput", false, 1, INT32_MAX,
				       &mibps)) < 0)
		return error;
	if (size && vt && (size < vt->min_gb || size > vt->max_gb))
		return kiln_jdoc_error(doc, block, "root_volume_size_gb", 0,
				       "\"root_volume_size_gb\" of %s must be between %lld and %lld, not %lld",
				       vt->name, (long long)vt->min_gb, (long long)vt->max_gb,
				       (long long)size);
	if (iops) {
		if (!vt || !vt->max_iops)
			return kiln_jdoc_error(doc, block, "root_volume_iops", 0,
					       "\"root_volume_iops\" needs \"root_volume_type\" gp3, io1 or io2%s%s%s",
					       vt ? " (not " : "", vt ? vt->name : "", vt ? ")" : "");
		if (iops < vt->min_iops || iops > vt->max_iops)
			return kiln_jdoc_error(doc, block, "root_volume_iops", 0,
					       "\"root_volume_iops\" of %s must be between %lld and %lld, not %lld",
					       vt->name, (long long)vt->min_iops, (long long)vt->max_iops,
					       (long long)iops);
	} else if (vt && vt->iops_required) {
		return kiln_jdoc_error(doc, block, "root_volume_type", 0,
				       "\"root_volume_type\" %s needs \"root_volume_iops\"", vt->name);
	}
	if (mibps) {
		if (!vt || !vt->max_mibps)
			return kiln_jdoc_error(doc, block, "root_volume_throughput", 0,
					       "\"root_volume_throughput\" needs \"root_volume_type\" gp3%s%s%s",
					       vt ? " (not " : "", vt ? vt->name : "", vt ? ")" : "");
		if (mibps < vt->min_mibps || mibps > vt->max_mibps)
			return kiln_jdoc_error(doc, block, "root_volume_throughput", 0,
					       "\"root_volume_throughput\" of %s must be between %lld and %lld MiB/s, not %lld",
					       vt->name, (long long)vt->min_mibps, (long long)vt->max_mibps,
					       (long long)mibps);
	}
	if (!vt && !size)
		return 0;
	if (!(out = json_object()))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	if ((size && json_object_set_new(out, "size_gb", json_integer(size)) < 0) ||
	    (vt && json_object_set_new(out, "type", json_string(vt->name)) < 0) ||
	    (iops && json_object_set_new(out, "iops", json_integer(iops)) < 0) ||
	    (mibps && json_object_set_new(out, "throughput", json_integer(mibps)) < 0) ||
	    json_object_set_new(options, "root_volume", out) < 0)
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	return 0;
}

int kiln_instance_options_parse(const kiln_jdoc *doc, const json_t *block, json_t *options)
{
	int error;

	if (!block)
		return 0;
	if ((error = parse_metadata(doc, block, options)) < 0)
		return error;
	return parse_root_volume(doc, block, options);
}
