/*
 * The plan: batches, the subnet spread, and the capacity rule checked for
 * every combination of small sizes.
 */
#include "core/error.h"
#include "rollout/plan.h"
#include "tests/support/test.h"

static void test_replace_equal_fleet(void **state)
{
	kiln_plan p = KILN_PLAN_INIT;
	(void)state;
	assert_int_equal(kiln_plan_compute(&p, 4, 1, 4, 1), 0);
	assert_int_equal(p.n_batches, 4);
	assert_int_equal(p.batches[0].launch, 1);
	assert_int_equal(p.batches[0].retire, 1);
	assert_int_equal(p.batches[0].old_left, 3);
	assert_int_equal(p.batches[3].old_left, 0);
	kiln_plan_release(&p);

	assert_int_equal(kiln_plan_compute(&p, 10, 3, 10, 2), 0);
	assert_int_equal(p.n_batches, 4);
	assert_int_equal(p.batches[3].launch, 1);
	assert_int_equal(p.batches[3].first, 9);
	/* instances 0..2 go to subnets 0,1,0; 3..5 to 1,0,1 */
	assert_int_equal(p.batches[0].per_subnet[0], 2);
	assert_int_equal(p.batches[0].per_subnet[1], 1);
	assert_int_equal(p.batches[1].per_subnet[0], 1);
	assert_int_equal(p.batches[1].per_subnet[1], 2);
	kiln_plan_release(&p);

	/* batch = desired: one batch, everything retired after it */
	assert_int_equal(kiln_plan_compute(&p, 3, 3, 3, 1), 0);
	assert_int_equal(p.n_batches, 1);
	assert_int_equal(p.batches[0].retire, 3);
	kiln_plan_release(&p);
}

static void test_first_deploy_and_odd_counts(void **state)
{
	kiln_plan p = KILN_PLAN_INIT;
	(void)state;
	/* no instances yet: one batch of desired, whatever the batch size */
	assert_int_equal(kiln_plan_compute(&p, 5, 1, 0, 3), 0);
	assert_int_equal(p.n_batches, 1);
	assert_int_equal(p.batches[0].launch, 5);
	assert_int_equal(p.batches[0].retire, 0);
	assert_int_equal(p.batches[0].per_subnet[0], 2);
	assert_int_equal(p.batches[0].per_subnet[2], 1);
	kiln_plan_release(&p);

	/* smaller than desired: old ones stay until new ones make up the difference */
	assert_int_equal(kiln_plan_compute(&p, 4, 1, 1, 1), 0);
	assert_int_equal(p.n_batches, 4);
	assert_int_equal(p.batches[0].retire, 0);
	assert_int_equal(p.batches[2].retire, 0);
	assert_int_equal(p.batches[3].retire, 1);
	kiln_plan_release(&p);

	/* larger than desired: the surplus goes with the first batch */
	assert_int_equal(kiln_plan_compute(&p, 2, 1, 5, 1), 0);
	assert_int_equal(p.n_batches, 2);
	assert_int_equal(p.batches[0].retire, 4);
	assert_int_equal(p.batches[1].retire, 1);
	kiln_plan_release(&p);

	assert_int_equal(kiln_plan_compute(&p, 0, 1, 1, 1), KILN_EINVALID);
}

static void test_capacity_rule_everywhere(void **state)
{
	unsigned d, b, o;
	size_t s, k;
	(void)state;
	for (d = 1; d <= 12; d++)
		for (b = 1; b <= d + 1; b++)
			for (o = 0; o <= 14; o++)
				for (s = 1; s <= 3; s++) {
					kiln_plan p = KILN_PLAN_INIT;
					unsigned retired = 0, launched = 0;
					assert_int_equal(kiln_plan_compute(&p, d, b, o, s), 0);
					for (k = 0; k < p.n_batches; k++) {
						const kiln_plan_batch *x = &p.batches[k];
						unsigned sum = 0;
						size_t i;
						for (i = 0; i < s; i++)
							sum += x->per_subnet[i];
						assert_int_equal(sum, x->launch);
						assert_true(x->launch >= 1);
						assert_true(x->launch <= KILN_MAX(b, o ? 0u : d));
						launched += x->launch;
						retired += x->retire;
						/* capacity after the batch: never below what we had or desired */
						assert_true(launched + x->old_left >= KILN_MIN(d, o + launched));
						assert_int_equal(x->old_left, o - retired);
					}
					assert_int_equal(launched, d);
					assert_int_equal(retired, o);
					kiln_plan_release(&p);
				}
}

static void test_old_order_and_tokens(void **state)
{
	kiln_plan_old v[] = {
		{ "i-c", 100, true }, { "i-a", 300, true }, { "i-b", 200, false }, { "i-d", 100, true },
	};
	char tok[80];
	(void)state;
	kiln_plan_sort_old(v, 4);
	assert_string_equal(v[0].id, "i-b");
	assert_string_equal(v[1].id, "i-c");
	assert_string_equal(v[2].id, "i-d");
	assert_string_equal(v[3].id, "i-a");
	assert_int_equal(kiln_plan_token(tok, sizeof(tok), "r20261125213744-0a1b2c3d", 1, 12, 2), 0);
	assert_string_equal(tok, "r20261125213744-0a1b2c3d-e1-b12-s2");
	assert_int_equal(kiln_plan_token(tok, sizeof(tok),
					 "a-very-long-rollout-id-that-does-not-fit-in-sixty-four-chars", 1, 1, 0),
			 KILN_EINVALID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_replace_equal_fleet),
		cmocka_unit_test(test_first_deploy_and_odd_counts),
		cmocka_unit_test(test_capacity_rule_everywhere),
		cmocka_unit_test(test_old_order_and_tokens),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
