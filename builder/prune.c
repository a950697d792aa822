#include "builder/prune.h"

#include "core/error.h"
#include "core/registry.h"

int kiln_prune(kiln_cloud *c, const char *name, const kiln_prune_options *opts,
	       kiln_prune_result *out)
{
	kiln_image_list list = { 0 };
	kiln_strings keep_ids = { 0 };
	char scope[2 * KILN_ID_MAX];
	int64_t available = 0;
	size_t i;
	int error;

	memset(out, 0, sizeof(*out));
	if (opts->keep < 1)
		return kiln_error_set(KILN_EINVALID, "--keep must be at least 1, not %lld",
				      (long long)opts->keep);
	/* every kiln version of NAME, newest first */
	if ((error = kiln_registry_list(c, name, &list)) < 0 ||
	    (error = kiln_registry_protected_images(c, &keep_ids)) < 0)
		goto done;
	kiln_registry_scope(scope, sizeof(scope), c);
	for (i = 0; i < list.n; i++) {
		const kiln_image *img = &list.items[i];
		long long v = (long long)kiln_image_version(img);

		if (img->state == KILN_IMAGE_PENDING) {
			out->kept++;
			continue;
		}
		if (img->state == KILN_IMAGE_AVAILABLE && available < opts->keep) {
			available++;
			out->kept++;
			continue;
		}
		if (kiln_strings_has(&keep_ids, img->id)) {
			out->protected_images++;
			kiln_info(opts->events, "keeping %s@%lld (%s): a fleet, a rollout or a rollback target uses it",
				  name, v, img->id);
			continue;
		}
		if (!opts->dry_run) {
			if ((error = c->ops->image_delete(c, img->id)) < 0 && error != KILN_ENOTFOUND) {
				kiln_error_prefix("cannot delete %s@%lld (%s)", name, v, img->id);
				goto done;
			}
			/* the cache is a record only: a stale entry there is harmless */
			if (kiln_registry_cache_remove(scope, img->id) < 0)
				kiln_error_clear();
		}
		if ((error = kiln_strings_add(&out->deleted, img->id)) < 0)
			goto done;
		kiln_emit(opts->events, "resource", KILN_LEVEL_INFO,
			  json_pack("{s:s,s:s,s:s,s:s,s:I}", "kind", "image", "id", img->id, "action",
				    opts->dry_run ? "would-delete" : "deleted", "name", name,
				    "version", (json_int_t)v),
			  "%s %s@%lld (%s%s)", opts->dry_run ? "would delete" : "deleted", name, v,
			  img->id, img->state == KILN_IMAGE_FAILED ? ", failed" : ", and its snapshots");
	}
	error = 0;
done:
	kiln_image_list_release(&list);
	kiln_strings_release(&keep_ids);
	return error;
}

void kiln_prune_result_release(kiln_prune_result *r)
{
	kiln_strings_release(&r->deleted);
}
