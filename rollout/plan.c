#include "rollout/plan.h"

#include "core/error.h"

void kiln_plan_release(kiln_plan *plan)
{
	size_t i;
	for (i = 0; i < plan->n_batches; i++)
		free(plan->batches[i].per_subnet);
	free(plan->batches);
	plan->batches = NULL;
	plan->n_batches = 0;
}

int kiln_plan_compute(kiln_plan *out, unsigned desired, unsigned batch_size, unsigned old_count,
		      size_t n_subnets)
{
	kiln_plan p = KILN_PLAN_INIT;
	unsigned made = 0, old_left = old_count;
	size_t n, k;

	if (!desired || !batch_size)
		return kiln_error_set(KILN_EINVALID, "a plan needs desired and batch_size of at least 1");
	if (n_subnets == 0)
		n_subnets = 1;
	if (batch_size > desired)
		batch_size = desired;
	/* nothing to protect: a first deploy launches everything at once */
	if (old_count == 0)
		batch_size = desired;
	n = (desired + batch_size - 1) / batch_size;
	p.desired = desired;
	p.batch_size = batch_size;
	p.old_count = old_count;
	p.n_subnets = n_subnets;
	if (!(p.batches = calloc(n, sizeof(*p.batches))))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	p.n_batches = n;
	for (k = 0; k < n; k++) {
		kiln_plan_batch *b = &p.batches[k];
		unsigned j, want;
		b->number = (unsigned)k + 1;
		b->first = made;
		b->launch = KILN_MIN(batch_size, desired - made);
		if (!(b->per_subnet = calloc(n_subnets, sizeof(*b->per_subnet)))) {
			kiln_plan_release(&p);
			return kiln_error_set(KILN_ENOMEM, "out of memory");
		}
		/* instance j of the rollout goes to subnet j mod n: an even spread overall */
		for (j = made; j < made + b->launch; j++)
			b->per_subnet[j % n_subnets]++;
		made += b->launch;
		want = desired > made ? desired - made : 0;
		want = KILN_MIN(want, old_count);
		b->retire = old_left > want ? old_left - want : 0;
		old_left -= b->retire;
		b->old_left = old_left;
	}
	*out = p;
	return 0;
}

unsigned kiln_plan_new_after(const kiln_plan *plan, size_t k)
{
	if (k == 0 || plan->n_batches == 0)
		return 0;
	if (k > plan->n_batches)
		k = plan->n_batches;
	return plan->batches[k - 1].first + plan->batches[k - 1].launch;
}

static int cmp_old(const void *a, const void *b)
{
	const kiln_plan_old *x = a, *y = b;
	if (x->serving != y->serving)
		return x->serving ? 1 : -1;
	if (x->launch_time != y->launch_time)
		return x->launch_time < y->launch_time ? -1 : 1;
	return strcmp(x->id, y->id);
}

void kiln_plan_sort_old(kiln_plan_old *v, size_t n)
{
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_old);
}

int kiln_plan_token(char *out, size_t size, const char *rollout_id, unsigned epoch, unsigned batch,
		    size_t subnet)
{
	int n = snprintf(out, size, "%s-e%u-b%u-s%zu", rollout_id, epoch, batch, subnet);
	if (n < 0 || (size_t)n >= size || n > 64)
		return kiln_error_set(KILN_EINVALID, "launch token for rollout '%s' is too long",
				      rollout_id);
	return 0;
}

json_t *kiln_plan_to_json(const kiln_plan *plan, const kiln_strings *subnet_ids)
{
	json_t *o = json_pack("{s:I,s:I,s:I,s:I}", "desired", (json_int_t)plan->desired, "batch_size",
			      (json_int_t)plan->batch_size, "old_count", (json_int_t)plan->old_count,
			      "batch_count", (json_int_t)plan->n_batches);
	json_t *batches = json_array();
	size_t k, i;

	if (!o || !batches) {
		json_decref(o);
		json_decref(batches);
		return NULL;
	}
	for (k = 0; k < plan->n_batches; k++) {
		const kiln_plan_batch *b = &plan->batches[k];
		json_t *spread = json_object();
		for (i = 0; spread && i < plan->n_subnets; i++) {
			const char *name = subnet_ids && i < subnet_ids->n ? subnet_ids->items[i] : "default";
			if (b->per_subnet[i])
				json_object_set_new(spread, name, json_integer(b->per_subnet[i]));
		}
		json_array_append_new(batches,
				      json_pack("{s:I,s:I,s:o,s:I,s:I}", "number", (json_int_t)b->number,
						"launch", (json_int_t)b->launch, "subnets",
						spread ? spread : json_object(), "retire",
						(json_int_t)b->retire, "old_left", (json_int_t)b->old_left));
	}
	json_object_set_new(o, "batches", batches);
	return o;
}
