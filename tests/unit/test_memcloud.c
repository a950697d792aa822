/*
 * The in-memory provider behaves like a cloud (so engine tests mean
 * something), and the registry and waiters work over it.
 */
#include "core/clock.h"
#include "core/error.h"
#include "core/registry.h"
#include "tests/support/memcloud.h"
#include "tests/support/test.h"

static int setup(void **state)
{
	char *dir = kiln_test_mktmp();
	setenv("KILN_STATE_DIR", dir, 1);
	kiln_test_clock_install(1764100000000LL);
	*state = dir;
	return 0;
}

static int teardown(void **state)
{
	kiln_test_clock_uninstall();
	kiln_test_rmtmp(*state);
	return 0;
}

static void launch(kiln_cloud *c, const char *image, const char *token, unsigned count,
		   kiln_instance_list *out)
{
	kiln_launch spec = { .image_id = image, .instance_type = "t3.micro", .count = count,
			     .client_token = token };
	assert_int_equal(c->ops->instances_launch(c, &spec, out), 0);
}

static void test_instance_lifecycle_and_token(void **state)
{
	memcloud *mc = memcloud_new();
	kiln_cloud *c = memcloud_cloud(mc);
	const char *img = memcloud_add_image(mc, NULL, 0, NULL);
	kiln_instance_list a = { 0 }, b = { 0 }, w = { 0 };
	const char *ids[2];
	(void)state;

	launch(c, img, "tok-1", 2, &a);
	assert_int_equal(a.n, 2);
	assert_int_equal(a.items[0].state, KILN_INSTANCE_PENDING);
	/* the same token gives the same instances, not new ones */
	launch(c, img, "tok-1", 2, &b);
	assert_int_equal(b.n, 2);
	assert_string_equal(a.items[1].id, b.items[1].id);
	assert_int_equal(memcloud_count_instances(mc, KILN_INSTANCE_UNKNOWN, NULL), 2);

	ids[0] = a.items[0].id;
	ids[1] = a.items[1].id;
	assert_int_equal(kiln_cloud_wait_instances(c, ids, 2, KILN_INSTANCE_RUNNING, 60000, &w), 0);
	assert_int_equal(w.items[0].state, KILN_INSTANCE_RUNNING);
	kiln_instance_list_release(&w);

	assert_int_equal(c->ops->instances_terminate(c, ids, 2), 0);
	assert_int_equal(kiln_cloud_wait_instances(c, ids, 2, KILN_INSTANCE_TERMINATED, 60000, NULL), 0);
	assert_int_equal(memcloud_count_instances(mc, KILN_INSTANCE_UNKNOWN, NULL), 0);
	kiln_instance_list_release(&a);
	kiln_instance_list_release(&b);
	kiln_cloud_free(c);
}

static void test_wait_fails_when_instance_dies(void **state)
{
	memcloud *mc = memcloud_new();
	kiln_cloud *c = memcloud_cloud(mc);
	const char *img = memcloud_add_image(mc, NULL, 0, NULL);
	kiln_instance_list a = { 0 };
	const char *ids[1];
	(void)state;

	launch(c, img, NULL, 1, &a);
	ids[0] = a.items[0].id;
	memcloud_kill_instance(mc, ids[0], "Server.SpotInstanceTermination");
	assert_error(kiln_cloud_wait_instances(c, ids, 1, KILN_INSTANCE_RUNNING, 60000, NULL),
		     KILN_ERROR, "SpotInstanceTermination");
	kiln_instance_list_release(&a);
	kiln_cloud_free(c);
}

static void test_wait_times_out(void **state)
{
	memcloud *mc = memcloud_new();
	kiln_cloud *c = memcloud_cloud(mc);
	const char *img = memcloud_add_image(mc, NULL, 0, NULL);
	kiln_instance_list a = { 0 };
	const char *ids[1];
	(void)state;

	memcloud_cfg(mc)->pending_ms = 600000;
	launch(c, img, NULL, 1, &a);
	ids[0] = a.items[0].id;
	assert_error(kiln_cloud_wait_instances(c, ids, 1, KILN_INSTANCE_RUNNING, 30000, NULL),
		     KILN_ETIMEOUT, "not running after 30 s");
	kiln_instance_list_release(&a);
	kiln_cloud_free(c);
}

static void test_faults_scripted(void **state)
{
	memcloud *mc = memcloud_new();
	kiln_cloud *c = memcloud_cloud(mc);
	const char *img = memcloud_add_image(mc, NULL, 0, NULL);
	kiln_instance_list a = { 0 };
	kiln_launch spec = { .image_id = img, .count = 1, .client_token = "t" };
	(void)state;

	memcloud_fail(mc, "instances_launch", 2, KILN_ERROR, "InsufficientInstanceCapacity");
	launch(c, img, "x", 1, &a);
	kiln_instance_list_release(&a);
	assert_error(c->ops->instances_launch(c, &spec, &a), KILN_ERROR, "InsufficientInstanceCapacity");
	assert_string_equal(kiln_error_last()->cloud_code, "InsufficientInstanceCapacity");
	assert_int_equal(memcloud_count_instances(mc, KILN_INSTANCE_UNKNOWN, NULL), 1);
	/* a lost response: the launch happened; the retry with the token finds it */
	memcloud_fail_after(mc, "instances_launch", 1, KILN_ETRANSIENT, "connection reset");
	assert_int_equal(c->ops->instances_launch(c, &spec, &a), KILN_ETRANSIENT);
	assert_int_equal(memcloud_count_instances(mc, KILN_INSTANCE_UNKNOWN, NULL), 2);
	assert_int_equal(c->ops->instances_launch(c, &spec, &a), 0);
	assert_int_equal(memcloud_count_instances(mc, KILN_INSTANCE_UNKNOWN, NULL), 2);
	assert_int_equal(memcloud_launches_with_token(mc, "t"), 1);
	assert_int_equal(memcloud_calls(mc, "instances_launch"), 4);
	kiln_instance_list_release(&a);
	kiln_cloud_free(c);
}

static kiln_health health_of(kiln_cloud *c, const kiln_lb *lb, const char *id)
{
	kiln_target_list t = { 0 };
	kiln_health h;
	const char *ids[1] = { id };
	assert_int_equal(c->ops->lb_health(c, lb, ids, 1, &t), 0);
	h = t.items[0].health;
	kiln_target_list_release(&t);
	return h;
}

static void test_health_transitions(void **state)
{
	memcloud *mc = memcloud_new();
	kiln_cloud *c = memcloud_cloud(mc);
	const char *good = memcloud_add_image(mc, "web", 1, NULL);
	const char *bad = memcloud_add_image(mc, "web", 2, NULL);
	kiln_lb lb = { .kind = KILN_LB_TARGET_GROUP, .ref = "tg-1" };
	kiln_instance_list a = { 0 }, b = { 0 };
	const char *ids[2];
	(void)state;

	memcloud_image_health(mc, bad, KILN_HEALTH_UNHEALTHY);
	launch(c, good, NULL, 1, &a);
	launch(c, bad, NULL, 1, &b);
	ids[0] = a.items[0].id;
	ids[1] = b.items[0].id;
	assert_int_equal(kiln_cloud_wait_instances(c, ids, 2, KILN_INSTANCE_RUNNING, 60000, NULL), 0);
	assert_int_equal(c->ops->lb_register(c, &lb, ids, 2), 0);
	assert_int_equal(health_of(c, &lb, ids[0]), KILN_HEALTH_INITIAL);
	kiln_test_clock_advance(3000);
	assert_int_equal(health_of(c, &lb, ids[0]), KILN_HEALTH_HEALTHY);
	assert_int_equal(health_of(c, &lb, ids[1]), KILN_HEALTH_UNHEALTHY);
	assert_int_equal(c->ops->lb_deregister(c, &lb, ids, 1), 0);
	assert_int_equal(health_of(c, &lb, ids[0]), KILN_HEALTH_DRAINING);
	kiln_test_clock_advance(2000);
	assert_int_equal(health_of(c, &lb, ids[0]), KILN_HEALTH_UNUSED);
	assert_int_equal(memcloud_count_targets(mc, "tg-1", KILN_HEALTH_UNKNOWN), 1);
	kiln_instance_list_release(&a);
	kiln_instance_list_release(&b);
	kiln_cloud_free(c);
}

static void test_registry_over_memcloud(void **state)
{
	memcloud *mc = memcloud_new();
	kiln_cloud *c = memcloud_cloud(mc);
	kiln_image_list list = { 0 };
	kiln_image_ref ref;
	kiln_image img;
	int64_t v = 0;
	(void)state;

	memcloud_add_image(mc, "web", 1, NULL);
	memcloud_add_image(mc, "web", 3, NULL);
	memcloud_add_image(mc, "api", 1, NULL);
	memcloud_add_image(mc, NULL, 0, NULL);
	assert_int_equal(kiln_registry_list(c, "web", &list), 0);
	assert_int_equal(list.n, 2);
	assert_int_equal(kiln_image_version(&list.items[0]), 3);
	kiln_image_list_release(&list);
	assert_int_equal(kiln_registry_list(c, NULL, &list), 0);
	assert_int_equal(list.n, 3);
	assert_string_equal(kiln_image_kiln_name(&list.items[0]), "api");
	kiln_image_list_release(&list);

	assert_int_equal(kiln_image_ref_parse(&ref, "web"), 0);
	assert_int_equal(kiln_registry_resolve(c, &ref, &img), 0);
	assert_string_equal(img.name, "web-v3");
	kiln_image_release(&img);
	assert_int_equal(kiln_image_ref_parse(&ref, "web@2"), 0);
	assert_error(kiln_registry_resolve(c, &ref, &img), KILN_ENOTFOUND, "no image 'web@2'");
	assert_int_equal(kiln_image_ref_parse(&ref, "nope"), 0);
	assert_error(kiln_registry_resolve(c, &ref, &img), KILN_ENOTFOUND, "kiln build");

	/* reservations count up past the newest image and past each other */
	assert_int_equal(kiln_registry_reserve_version(c, "web", "build-a", &v), 0);
	assert_int_equal(v, 4);
	assert_int_equal(kiln_registry_reserve_version(c, "web", "build-b", &v), 0);
	assert_int_equal(v, 5);
	assert_int_equal(kiln_registry_reserve_version(c, "new", "build-c", &v), 0);
	assert_int_equal(v, 1);
	kiln_cloud_free(c);
}

static void test_protected_images(void **state)
{
	memcloud *mc = memcloud_new();
	kiln_cloud *c = memcloud_cloud(mc);
	const char *v1 = memcloud_add_image(mc, "web", 1, NULL);
	const char *v2 = memcloud_add_image(mc, "web", 2, NULL);
	const char *v3 = memcloud_add_image(mc, "web", 3, NULL);
	const char *v4 = memcloud_add_image(mc, "web", 4, NULL);
	kiln_tags fleet = KILN_TAGS_INIT;
	kiln_strings ids = { 0 };
	char rec[512];
	(void)state;

	kiln_tags_set(&fleet, "kiln:fleet", "prod");
	memcloud_add_instance(mc, v3, &fleet);
	snprintf(rec, sizeof(rec),
		 "{\"fleet\":\"prod\",\"previous_image_id\":\"%s\",\"history\":[{\"image_id\":\"%s\"}]}",
		 v1, v2);
	assert_int_equal(c->ops->record_create(c, "/kiln/fleets/prod/state", rec), 0);
	assert_int_equal(kiln_registry_protected_images(c, &ids), 0);
	assert_true(kiln_strings_has(&ids, v1));
	assert_true(kiln_strings_has(&ids, v2));
	assert_true(kiln_strings_has(&ids, v3));
	assert_false(kiln_strings_has(&ids, v4));
	kiln_strings_release(&ids);
	kiln_tags_release(&fleet);
	kiln_cloud_free(c);
}

static void test_image_wait(void **state)
{
	memcloud *mc = memcloud_new();
	kiln_cloud *c = memcloud_cloud(mc);
	const char *img = memcloud_add_image(mc, NULL, 0, NULL);
	kiln_instance_list a = { 0 };
	char id[KILN_ID_MAX], id2[KILN_ID_MAX];
	kiln_image out;
	(void)state;

	launch(c, img, NULL, 1, &a);
	assert_int_equal(kiln_cloud_wait_instances(c, (const char *[]){ a.items[0].id }, 1,
						   KILN_INSTANCE_RUNNING, 60000, NULL), 0);
	assert_int_equal(c->ops->image_create(c, a.items[0].id, "x-v1", "", NULL, id), 0);
	assert_int_equal(kiln_cloud_wait_image(c, id, 60000, &out), 0);
	assert_int_equal(out.state, KILN_IMAGE_AVAILABLE);
	kiln_image_release(&out);
	assert_error(c->ops->image_create(c, a.items[0].id, "x-v1", "", NULL, id2), KILN_ECONFLICT,
		     "exists");
	memcloud_fail_images(mc, true);
	assert_int_equal(c->ops->image_create(c, a.items[0].id, "x-v2", "", NULL, id2), 0);
	assert_error(kiln_cloud_wait_image(c, id2, 60000, NULL), KILN_ERROR, "failed");
	kiln_instance_list_release(&a);
	kiln_cloud_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_instance_lifecycle_and_token, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wait_fails_when_instance_dies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wait_times_out, setup, teardown),
		cmocka_unit_test_setup_teardown(test_faults_scripted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_health_transitions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_registry_over_memcloud, setup, teardown),
		cmocka_unit_test_setup_teardown(test_protected_images, setup, teardown),
		cmocka_unit_test_setup_teardown(test_image_wait, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
