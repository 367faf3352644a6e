/* SPDX-License-Identifier: MIT */
/* test-store.c - VM records survive a reopen of the database. */
#include <gridvm/node/store.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

static gv_vmrec *make(const char *name)
{
	gv_vmrec *r = calloc(1, sizeof(*r));
	json_t *j = json_pack("{s:s, s:i, s:s, s:[s]}", "name", name, "memory_mib", 512,
			      "image", "default", "job", "true");
	gv_err err;

	assert_int_equal(gv_vmdef_from_json(j, &r->def, &err), 0);
	json_decref(j);
	r->state = GV_VM_DEFINED;
	r->exit_code = -1;
	r->created = 1700000000;
	return r;
}

static void test_records(void **state)
{
	char dir[] = "/tmp/gv-store-XXXXXX";
	char *path;
	gv_store *s;
	gv_vmrec *a = make("alpha"), *b = make("beta"), *got = NULL;
	char **names = NULL;

	assert_non_null(mkdtemp(dir));
	path = gv_strdupf("%s/gridvm.db", dir);
	assert_int_equal(gv_store_open(path, &s), 0);
	assert_int_equal(gv_store_vm_insert(s, b), 0);
	assert_int_equal(gv_store_vm_insert(s, a), 0);
	assert_int_equal(gv_store_vm_insert(s, a), -EEXIST);
	a->state = GV_VM_SAVED;
	a->pid = 0;
	a->state_file = strdup("/var/tmp/alpha.state");
	a->error = strdup("none");
	assert_int_equal(gv_store_vm_update(s, a), 0);
	gv_store_close(s);

	assert_int_equal(gv_store_open(path, &s), 0); /* as after an agent restart */
	assert_int_equal(gv_store_vm_get(s, "alpha", &got), 0);
	assert_int_equal(got->state, GV_VM_SAVED);
	assert_string_equal(got->state_file, "/var/tmp/alpha.state");
	assert_int_equal(got->def->memory_mib, 512);
	assert_int_equal(got->exit_code, -1);
	assert_int_equal(got->created, 1700000000);
	gv_vmrec_free(got);
	assert_int_equal(gv_store_vm_names(s, &names), 0);
	assert_string_equal(names[0], "alpha");
	assert_string_equal(names[1], "beta");
	assert_null(names[2]);
	gv_strv_free(names);
	assert_int_equal(gv_store_vm_delete(s, "beta"), 0);
	assert_int_equal(gv_store_vm_delete(s, "beta"), -ENOENT);
	assert_int_equal(gv_store_vm_get(s, "beta", &got), -ENOENT);
	assert_int_equal(gv_store_vm_update(s, b), -ENOENT);
	gv_store_close(s);

	assert_string_equal(gv_vmstate_name(GV_VM_PAUSED), "paused");
	assert_int_equal(gv_vmstate_parse("failed"), GV_VM_FAILED);
	assert_int_equal(gv_vmstate_parse("bogus"), -EINVAL);
	gv_vmrec_free(a);
	gv_vmrec_free(b);
	assert_int_equal(gv_rm_rf(dir), 0);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = { cmocka_unit_test(test_records) };
	return cmocka_run_group_tests(tests, NULL, NULL);
}
