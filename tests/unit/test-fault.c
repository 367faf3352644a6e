/* SPDX-License-Identifier: MIT */
/* test-fault.c - GRIDVM_FAULT: points fire only when named, as told. */
#include <gridvm/base/fault.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static void arm(const char *spec)
{
	if (spec)
		setenv("GRIDVM_FAULT", spec, 1);
	else
		unsetenv("GRIDVM_FAULT");
	gv_fault_reset();
}

static void test_off_unless_set(void **state)
{
	gv_err e = { "" };

	arm(NULL);
	assert_int_equal(gv_fault("migrate.src.memory", &e), 0);
	assert_false(gv_fault_armed("migrate.src.memory"));
	assert_string_equal(e.msg, "");
}

static void test_fail_named_point_only(void **state)
{
	gv_err e = { "" };

	arm("xfer.dst.block=fail");
	assert_int_equal(gv_fault("xfer.dst.index", &e), 0);
	assert_int_equal(gv_fault("xfer.dst.block", &e), -EIO);
	assert_non_null(strstr(e.msg, "xfer.dst.block"));
	assert_true(gv_fault_armed("xfer.dst.block"));
}

static void test_pattern_and_nth(void **state)
{
	gv_err e;

	arm("a.b=hold:0;node.*=fail@2");
	assert_int_equal(gv_fault("a.b", &e), 0); /* a hold returns 0 */
	assert_int_equal(gv_fault("node.x", &e), 0);	 /* 1st: not yet */
	assert_int_equal(gv_fault("node.y", &e), -EIO); /* 2nd time the rule is reached */
	assert_int_equal(gv_fault("node.x", &e), 0);	 /* 3rd: only the 2nd fires */
}

static void test_malformed_ignored(void **state)
{
	gv_err e;

	arm("nothing;p=explode;q=hold:x;r=fail@0;s=fail");
	assert_false(gv_fault_armed("p"));
	assert_false(gv_fault_armed("q"));
	assert_false(gv_fault_armed("r"));
	assert_int_equal(gv_fault("s", &e), -EIO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_off_unless_set),
		cmocka_unit_test(test_fail_named_point_only),
		cmocka_unit_test(test_pattern_and_nth),
		cmocka_unit_test(test_malformed_ignored),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
