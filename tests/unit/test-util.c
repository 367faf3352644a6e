/* SPDX-License-Identifier: MIT */
/* test-util.c - sizes, durations, names, the accelerator decision, the
 * job-channel frame parser, the error convention (gv_err), the word
 * splitting of hook commands. */
#include <gridvm/base/err.h>
#include <gridvm/vmm/accel.h>
#include <gridvm/vmm/jobout.h>
#include <gridvm/vmm/vmdef.h>
#include <gridvm/base/util.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

static void test_sizes(void **state)
{
	uint64_t v;

	assert_int_equal(gv_parse_size("512M", 1, &v), 0);
	assert_int_equal(v, 512ULL << 20);
	assert_int_equal(gv_parse_size("1G", 1, &v), 0);
	assert_int_equal(v, 1ULL << 30);
	assert_int_equal(gv_parse_size("1.5GiB", 1, &v), 0);
	assert_int_equal(v, 3ULL << 29);
	assert_int_equal(gv_parse_size("2048", 1 << 20, &v), 0);
	assert_int_equal(v, 2048ULL << 20);
	assert_int_equal(gv_parse_size("abc", 1, &v), -EINVAL);
	assert_int_equal(gv_parse_size("12Q", 1, &v), -EINVAL);
	assert_int_equal(gv_parse_size("-1G", 1, &v), -EINVAL);
	assert_int_equal(gv_parse_size("", 1, &v), -EINVAL);
	assert_int_equal(gv_parse_size("99999999T", 1, &v), -ERANGE);
}

static void test_durations_and_names(void **state)
{
	uint64_t ms;
	char buf[80];

	assert_int_equal(gv_parse_duration_ms("10m", &ms), 0);
	assert_int_equal(ms, 600000);
	assert_int_equal(gv_parse_duration_ms("500ms", &ms), 0);
	assert_int_equal(ms, 500);
	assert_int_equal(gv_parse_duration_ms("3", &ms), 0);
	assert_int_equal(ms, 3000);
	assert_int_equal(gv_parse_duration_ms("3x", &ms), -EINVAL);
	assert_true(gv_name_valid("calc-1.test_2"));
	assert_false(gv_name_valid("-calc"));
	assert_false(gv_name_valid("a/b"));
	assert_false(gv_name_valid(""));
	assert_false(gv_name_valid("a b"));
	memset(buf, 'a', 64);
	buf[64] = '\0';
	assert_false(gv_name_valid(buf));
	assert_string_equal(gv_fmt_size(512ULL << 20, buf, sizeof(buf)), "512 MiB");
	assert_string_equal(gv_fmt_size(1536, buf, sizeof(buf)), "1.5 KiB");
}

static void test_accel(void **state)
{
	gv_accel a;
	const char *pvm = "processor\t: 0\nflags\t\t: fpu vme sse sse2 hypervisor\n";
	const char *vmx = "processor\t: 0\nflags\t\t: fpu vmx sse\n";
	const char *tricky = "flags\t\t: fpu vmxnet svmx\nmodel name\t: vmx\n";

	assert_int_equal(gv_accel_decide(NULL, pvm, true, &a), 0);
	assert_string_equal(a.name, "tcg"); /* /dev/kvm alone is not enough */
	assert_non_null(strstr(a.reason, "no vmx/svm"));
	assert_int_equal(gv_accel_decide(NULL, vmx, true, &a), 0);
	assert_string_equal(a.name, "kvm");
	assert_int_equal(gv_accel_decide("auto", vmx, false, &a), 0);
	assert_string_equal(a.name, "tcg");
	assert_int_equal(gv_accel_decide(NULL, tricky, true, &a), 0);
	assert_string_equal(a.name, "tcg"); /* whole words in the flags line only */
	assert_int_equal(gv_accel_decide("kvm", pvm, false, &a), 0);
	assert_string_equal(a.name, "kvm");
	assert_non_null(strstr(a.reason, "override"));
	assert_int_equal(gv_accel_decide("xen", pvm, false, &a), -EINVAL);
	assert_string_equal(gv_accel_qemu_arg(&(gv_accel){ "tcg", "" }), "tcg,thread=multi");
}

struct seen {
	char types[16];
	char text[64];
	int n;
};

static void on_frame(void *ud, char type, const uint8_t *d, uint32_t len)
{
	struct seen *s = ud;

	s->types[s->n++] = type;
	strncat(s->text, (const char *)d, len);
}

static void test_frames(void **state)
{
	const uint8_t buf[] = { 'S', 0, 0, 0, 0,
				'O', 0, 0, 0, 3, 'a', 'b', 'c',
				'E', 0, 0, 0, 2, 'd', 'e',
				'X', 0, 0, 0, 4, 0, 0, 0, 42 };
	struct seen s = { 0 };
	size_t used;

	/* a partial frame stays for later */
	used = gv_jobout_parse(buf, 9, on_frame, &s);
	assert_int_equal(used, 5);
	assert_int_equal(s.n, 1);
	used += gv_jobout_parse(buf + used, sizeof(buf) - used, on_frame, &s);
	assert_int_equal(used, sizeof(buf));
	assert_string_equal(s.types, "SOEX");
	assert_memory_equal(s.text, "abcde", 5);

	char path[] = "/tmp/gv-jobout-XXXXXX";
	int fd = mkstemp(path), code = -1;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, sizeof(buf) - 4), (ssize_t)sizeof(buf) - 4);
	assert_int_equal(gv_jobout_exit_code(path, &code), -ENOENT);
	assert_int_equal(write(fd, buf + sizeof(buf) - 4, 4), 4);
	assert_int_equal(gv_jobout_exit_code(path, &code), 0);
	assert_int_equal(code, 42);
	close(fd);
	unlink(path);
}

static void test_err(void **state)
{
	gv_err e = { "" };
	json_t *j;
	char long_prefix[600];

	(void)state;
	assert_int_equal(gv_err_set(NULL, -EINVAL, "x %d", 1), -EINVAL);
	assert_int_equal(gv_err_set(&e, -ENOENT, "no such VM: %s", "a"), -ENOENT);
	assert_string_equal(e.msg, "no such VM: a");
	assert_int_equal(gv_err_wrap(&e, -ENOENT, "cannot start"), -ENOENT);
	assert_string_equal(e.msg, "cannot start: no such VM: a");
	assert_int_equal(gv_err_wrap(NULL, -EIO, "p"), -EIO);
	memset(long_prefix, 'p', sizeof(long_prefix) - 1);
	long_prefix[sizeof(long_prefix) - 1] = '\0';
	gv_err_wrap(&e, -EIO, long_prefix); /* truncated, still a string */
	assert_int_equal(strlen(e.msg), sizeof(e.msg) - 1);

	j = gv_err_json(-EBUSY, "busy");
	assert_true(json_is_false(json_object_get(j, "ok")));
	assert_string_equal(json_string_value(json_object_get(j, "error")), "busy");
	assert_int_equal(json_integer_value(json_object_get(j, "errno")), EBUSY);
	json_decref(j);
	j = gv_err_jsonf(-EINVAL, "unknown operation %s", "x");
	assert_string_equal(json_string_value(json_object_get(j, "error")),
			    "unknown operation x");
	assert_int_equal(json_integer_value(json_object_get(j, "errno")), EINVAL);
	json_decref(j);
}

/* Hook commands (image fetch --freeze-cmd) are split into an argv and
 * run without a shell: quotes group, nothing else is special. */
static void test_split_words(void **state)
{
	char **w = NULL;

	(void)state;
	assert_int_equal(gv_split_words("kill -STOP 42", &w), 3);
	assert_string_equal(w[0], "kill");
	assert_string_equal(w[2], "42");
	assert_null(w[3]);
	gv_strv_free(w);
	assert_int_equal(gv_split_words("  sh -c 'a && b >f; $HOME' \"x\\\"y\" z\\ w ", &w), 5);
	assert_string_equal(w[0], "sh");
	assert_string_equal(w[2], "a && b >f; $HOME");
	assert_string_equal(w[3], "x\"y");
	assert_string_equal(w[4], "z w");
	gv_strv_free(w);
	/* shell operators are words like any other */
	assert_int_equal(gv_split_words("true; touch /tmp/x", &w), 3);
	assert_string_equal(w[0], "true;");
	gv_strv_free(w);
	assert_int_equal(gv_split_words("a''b \"\"", &w), 2);
	assert_string_equal(w[0], "ab");
	assert_string_equal(w[1], "");
	gv_strv_free(w);
	assert_int_equal(gv_split_words("   ", &w), 0);
	assert_null(w[0]);
	gv_strv_free(w);
	w = NULL;
	assert_int_equal(gv_split_words("sh -c 'unclosed", &w), -EINVAL);
	assert_null(w);
	assert_int_equal(gv_split_words("say \"unclosed", &w), -EINVAL);
	assert_int_equal(gv_split_words("trailing\\", &w), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_durations_and_names),
		cmocka_unit_test(test_accel),
		cmocka_unit_test(test_frames),
		cmocka_unit_test(test_err),
		cmocka_unit_test(test_split_words),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
