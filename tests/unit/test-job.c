/* SPDX-License-Identifier: MIT */
/* test-job.c - a grid job's record from a submission (lib/grid/job.c). */
#include <gridvm/grid/job.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

static json_t *submit(const char *text)
{
	json_t *j = json_loads(text, 0, NULL);

	assert_non_null(j);
	return j;
}

static int try(const char *text, json_t **rec, gv_err *e)
{
	json_t *req = submit(text);
	int r = gv_job_from_submit(req, 7, 1000, 1700000000, rec, e);

	json_decref(req);
	return r;
}

static void test_defaults_and_fields(void **state)
{
	json_t *rec = NULL;
	gv_err e = { "" };

	assert_int_equal(try("{\"cmd\": [\"echo\", \"hi\"], \"memory\": \"2G\", \"cpus\": 2,"
			     " \"walltime\": \"90m\", \"requires\": \"memory >= 1G\","
			     " \"checkpoint_every\": \"10m\", \"checkpoint_keep\": \"3\","
			     " \"checkpoint_replicas\": \"2\","
			     " \"outputs\": [\"result.txt\"], \"input_paths\": [\"/work/in\"]}",
			     &rec, &e),
			 0);
	assert_int_equal(json_integer_value(json_object_get(rec, "id")), 7);
	assert_int_equal(json_integer_value(json_object_get(rec, "user")), 1000);
	assert_string_equal(json_string_value(json_object_get(rec, "image")), "default");
	assert_int_equal(json_integer_value(json_object_get(rec, "memory")), 2ll << 30);
	assert_int_equal(json_integer_value(json_object_get(rec, "cpus")), 2);
	assert_int_equal(json_integer_value(json_object_get(rec, "walltime")), 5400);
	assert_string_equal(json_string_value(json_object_get(rec, "state")), "queued");
	assert_int_equal(gv_job_record_state(rec), GV_JOB_S_QUEUED);
	json_t *ck = json_object_get(rec, "checkpoint");
	assert_int_equal(json_integer_value(json_object_get(ck, "every")), 600);
	assert_int_equal(json_integer_value(json_object_get(ck, "keep")), 3);
	assert_int_equal(json_integer_value(json_object_get(ck, "replicas")), 2);

	/* the VM the agent makes of it */
	json_t *d = gv_job_vmdef(rec, "job-7");
	assert_string_equal(json_string_value(json_object_get(d, "name")), "job-7");
	assert_int_equal(json_integer_value(json_object_get(d, "memory_mib")), 2048);
	assert_int_equal(json_integer_value(json_object_get(d, "vcpus")), 2);
	assert_int_equal(json_integer_value(json_object_get(d, "checkpoint_every_s")), 600);
	assert_string_equal(json_string_value(json_object_get(
				    json_array_get(json_object_get(d, "inputs"), 0), "guest")),
			    "/work/in");
	assert_string_equal(json_string_value(json_array_get(json_object_get(d, "outputs"), 0)),
			    "result.txt");
	json_decref(d);
	json_decref(rec);
}

static void expect_refused(const char *text, const char *says)
{
	json_t *rec = (json_t *)1;
	gv_err e = { "" };

	assert_int_equal(try(text, &rec, &e), -EINVAL);
	assert_null(rec);
	if (!strstr(e.msg, says))
		fail_msg("'%s' does not say '%s'", e.msg, says);
}

static void test_bad_input(void **state)
{
	expect_refused("{}", "no command");
	expect_refused("{\"cmd\": []}", "no command");
	expect_refused("{\"cmd\": [1]}", "list of strings");
	expect_refused("{\"cmd\": [\"x\"], \"cpus\": 0}", "invalid cpus");
	expect_refused("{\"cmd\": [\"x\"], \"cpus\": 65}", "invalid cpus");
	expect_refused("{\"cmd\": [\"x\"], \"memory\": \"32M\"}", "invalid memory");
	expect_refused("{\"cmd\": [\"x\"], \"memory\": \"lots\"}", "invalid memory");
	expect_refused("{\"cmd\": [\"x\"], \"walltime\": \"soon\"}", "invalid walltime");
	expect_refused("{\"cmd\": [\"x\"], \"image\": \"../etc\"}", "invalid image");
	expect_refused("{\"cmd\": [\"x\"], \"requires\": \"memory >= && 1\"}",
		       "requirements: at position 11");
	expect_refused("{\"cmd\": [\"x\"], \"rank\": \"cpus *\"}", "rank: at position");
	expect_refused("{\"cmd\": [\"x\"], \"checkpoint_keep\": \"some\"}", "checkpoint_keep");
	expect_refused("{\"cmd\": [\"x\"], \"checkpoint_every\": 2}", "at least 5 s");
	expect_refused("{\"cmd\": [\"x\"], \"checkpoint_replicas\": \"9\"}", "0 to 8 hosts");
	expect_refused("{\"cmd\": [\"x\"], \"checkpoint_replicas\": \"two\"}", "0 to 8 hosts");
	expect_refused("{\"cmd\": [\"x\"], \"checkpoint_replicas\": -1}", "0 to 8 hosts");
	expect_refused("{\"cmd\": [\"x\"], \"outputs\": [\"../up\"]}", "outputs entry 1");
	expect_refused("{\"cmd\": [\"x\"], \"outputs\": [\"a/../../b\"]}", "outputs entry 1");
	expect_refused("{\"cmd\": [\"x\"], \"env\": [\"NOEQUALS\"]}", "env entry 1");
	expect_refused("{\"cmd\": [\"x\"], \"priority\": \"high\"}", "invalid priority");
}

static void test_paths_that_are_fine(void **state)
{
	json_t *rec = NULL;
	gv_err e;

	/* ".." only as a whole component is refused */
	assert_int_equal(try("{\"cmd\": [\"x\"], \"outputs\": [\"a..b\", \"/x/..y\", \"out/\"]}",
			     &rec, &e),
			 0);
	json_decref(rec);
}

static void test_names(void **state)
{
	char buf[40];
	gv_job_state s;

	assert_string_equal(gv_job_vm_name(42, buf, sizeof(buf)), "job-42");
	assert_int_equal(gv_job_id_of_vm("job-42"), 42);
	assert_int_equal(gv_job_id_of_vm("job-0"), 0);
	assert_int_equal(gv_job_id_of_vm("job-4x"), 0);
	assert_int_equal(gv_job_id_of_vm("calc"), 0);
	assert_int_equal(gv_job_id_of_vm(NULL), 0);
	assert_int_equal(gv_job_state_parse("migrating", &s), 0);
	assert_int_equal(s, GV_JOB_S_MIGRATING);
	assert_int_equal(gv_job_state_parse("sleeping", &s), -EINVAL);
	assert_true(gv_job_state_final(GV_JOB_S_CANCELLED));
	assert_false(gv_job_state_final(GV_JOB_S_MIGRATING));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_and_fields),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_paths_that_are_fine),
		cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
