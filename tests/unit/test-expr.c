/* SPDX-License-Identifier: MIT */
/* test-expr.c - the requirements/rank language: precedence, units, `in`,
 * undefined, every parse error with its position, rank values, limits. */
#include <gridvm/sched/expr.h>

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static json_t *attrs;

static const char host_json[] =
	"{\"name\": \"h1\", \"arch\": \"x86_64\", \"accel\": \"kvm\","
	" \"cpu_model\": \"AMD EPYC 7302\", \"cpu_flags\": [\"avx2\", \"sse4_2\"],"
	" \"cpus\": 8, \"cpus_free\": 6, \"memory\": 17179869184,"
	" \"memory_free\": 8589934592, \"disk\": 107374182400,"
	" \"disk_free\": 53687091200, \"load\": 0.25, \"vms\": 2, \"site\": \"lyon\","
	" \"labels\": [\"cell\", \"gpu\"],"
	" \"images\": [\"bookworm\"], \"cpu.model\": \"EPYC\", \"nums\": [1, 2.5, true],"
	" \"flag\": true, \"nothing\": null, \"obj\": {\"a\": 1}, \"quote\": \"a\\\"b\","
	" \"backslash\": \"c:\\\\x\", \"zero\": 0}";

static int setup(void **state)
{
	json_error_t je;

	attrs = json_loads(host_json, 0, &je);
	return attrs ? 0 : -1;
}

static int teardown(void **state)
{
	json_decref(attrs);
	return 0;
}

/* Evaluate @src over the host; the kind, and its rank value in *@n. */
static gv_expr_kind eval_at(const char *src, double *n, const char *file, int line)
{
	gv_expr *x = NULL;
	gv_err e = { "" };
	gv_expr_kind k;

	if (gv_expr_parse(src, &x, &e) != 0) {
		print_error("parse(%s) failed: %s\n", src, e.msg);
		_fail(file, line);
	}
	k = gv_expr_eval(x, attrs, n);
	if (gv_expr_rank(x, attrs) != *n) {
		print_error("%s: rank %g, eval %g\n", src, gv_expr_rank(x, attrs), *n);
		_fail(file, line);
	}
	if (gv_expr_match(x, attrs) != (k == GV_EXPR_BOOL && *n == 1)) {
		print_error("%s: match disagrees with eval\n", src);
		_fail(file, line);
	}
	gv_expr_free(x);
	return k;
}

static void check_kind(const char *src, gv_expr_kind want, double wantn, const char *file,
		       int line)
{
	double n;
	gv_expr_kind k = eval_at(src, &n, file, line);

	if (k != want || (want != GV_EXPR_UNDEFINED && n != wantn)) {
		print_error("%s: got %s %.17g, want %s %.17g\n", src,
			    gv_expr_kind_name(k), n, gv_expr_kind_name(want), wantn);
		_fail(file, line);
	}
}

#define is_true(src) check_kind(src, GV_EXPR_BOOL, 1, __FILE__, __LINE__)
#define is_false(src) check_kind(src, GV_EXPR_BOOL, 0, __FILE__, __LINE__)
#define is_undef(src) check_kind(src, GV_EXPR_UNDEFINED, 0, __FILE__, __LINE__)
#define is_num(src, v) check_kind(src, GV_EXPR_NUMBER, v, __FILE__, __LINE__)

/* @src is rejected with exactly @msg. */
static void check_bad(const char *src, const char *msg, const char *file, int line)
{
	gv_expr *x = (gv_expr *)1;
	gv_err e = { "" };
	int r = gv_expr_parse(src, &x, &e);

	if (r != -EINVAL || x != NULL || strcmp(e.msg, msg) != 0) {
		print_error("parse(%s): %d \"%s\", want -EINVAL \"%s\"\n", src, r, e.msg,
			    msg);
		if (r == 0)
			gv_expr_free(x);
		_fail(file, line);
	}
}

#define bad(src, msg) check_bad(src, msg, __FILE__, __LINE__)

static void test_precedence(void **state)
{
	is_num("1 + 2 * 3", 7);
	is_num("(1 + 2) * 3", 9);
	is_num("10 - 4 - 3", 3); /* left-associative */
	is_num("12 / 3 / 2", 2);
	is_num("-2 * 3 + 1", -5);
	is_num("-(2 + 3)", -5);
	is_num("2 * -cpus", -16);
	is_num("--cpus", 8);
	is_false("!false && false");		  /* ! binds tighter than && */
	is_true("true || false && false");	  /* && tighter than || */
	is_true("false && true || true");
	is_true("(false && true) || (true && true)");
	is_true("1 < 2 == true");		  /* relational tighter than == */
	is_true("2 + 3 > 4");
	is_true("cpus * 2 >= 16 && cpus * 2 < 17");
	is_undef("\"cell\" in labels == true"); /* == tighter than in */
	is_true("\"cell\" in labels && \"gpu\" in labels");
	is_true("1 == 1 && 2 == 2 || 3 == 4");
	is_false("!(cpus > 4)");
}

static void test_units(void **state)
{
	is_num("1K", 1024);
	is_num("4G", 4294967296.0);
	is_num("1.5G", 1610612736.0);
	is_num("2KiB", 2048);
	is_num("3MiB", 3 * 1048576.0);
	is_num("1T", 1099511627776.0);
	is_num("2TiB", 2 * 1099511627776.0);
	is_num("4g", 4294967296.0);
	is_num("1GB", 1073741824.0);
	is_num("1Mi", 1048576.0);
	is_num("512B", 512);
	is_num("0.5", 0.5);
	is_num("-1.25", -1.25);
	is_num("007", 7);
	is_true("memory >= 16G");
	is_false("memory > 16G");
	is_true("memory_free == 8 * 1G");
	is_true("4G == 4 * 1024 * 1024 * 1024");
}

static void test_in(void **state)
{
	is_true("\"cell\" in labels");
	is_true("\"gpu\" in labels");
	is_false("\"Cell\" in labels"); /* case-sensitive */
	is_false("\"x\" in labels");
	is_true("\"bookworm\" in images");
	is_true("\"avx2\" in cpu_flags");
	is_true("2.5 in nums");
	is_true("true in nums");
	is_false("\"1\" in nums");
	is_true("\"a\" in [\"a\", \"b\"]");
	is_true("site in [\"paris\", \"lyon\"]");
	is_false("site in [\"paris\"]");
	is_true("3 in [1, 2, 3]");
	is_true("-1 in [-1]");
	is_true("1K in [1024]");
	is_true("false in [true, false]");
	is_false("\"3\" in [3]");
	is_false("\"a\" in []");
	is_false("!(\"gpu\" in labels)");
	is_undef("\"a\" in nope");
	is_undef("nope in labels");
	is_undef("\"lyon\" in site"); /* not a list */
	is_undef("labels in labels");
}

static void test_undefined(void **state)
{
	is_undef("nope");
	is_undef("nope == 1");
	is_undef("nope != 1");
	is_undef("!nope");
	is_undef("!(nope == 1)");
	is_undef("-nope");
	is_false("false && nope");
	is_false("nope && false");
	is_true("true || nope");
	is_true("nope || true");
	is_undef("true && nope");
	is_undef("nope || false");
	is_undef("nope && nope");
	is_undef("\"a\" == 1");
	is_undef("site < 3");
	is_undef("site + 1");
	is_undef("1 / 0");
	is_undef("cpus / (cpus - 8)");
	is_undef("nothing == 1"); /* null */
	is_undef("obj == 1");	   /* object */
	is_undef("labels == labels");
	is_undef("cpus && true"); /* not a boolean */
	is_undef("flag < true");
	is_undef("flag == 1");
	/* 8 * 2^1040 overflows a double */
	is_undef("cpus * 1T * 1T * 1T * 1T * 1T * 1T * 1T * 1T * 1T * 1T * 1T * 1T * 1T "
		 "* 1T * 1T * 1T * 1T * 1T * 1T * 1T * 1T * 1T * 1T * 1T * 1T * 1T");
	is_false("false && 1 / 0 == 1");
}

static void test_values(void **state)
{
	is_true("site == \"lyon\"");
	is_false("site == \"Lyon\"");
	is_true("site != \"paris\"");
	is_true("\"a\" < \"b\"");
	is_true("\"ab\" > \"a\"");
	is_true("\"\" < \"a\"");
	is_true("cpu.model == \"EPYC\""); /* a dotted name is one key */
	is_true("flag");
	is_true("flag == true");
	is_true("quote == \"a\\\"b\"");
	is_true("backslash == \"c:\\\\x\"");
	is_true("arch == \"x86_64\" && accel == \"kvm\"");
	is_true("memory >= 4G && arch == \"x86_64\" && \"cell\" in labels");
	is_true("load < 0.5");
	is_num("true + true", 2);
	is_num("1 / 4", 0.25);
	is_true("zero == 0");
	check_kind("site", GV_EXPR_STRING, 0, __FILE__, __LINE__);
	check_kind("labels", GV_EXPR_LIST, 0, __FILE__, __LINE__);
	check_kind("[1, 2]", GV_EXPR_LIST, 0, __FILE__, __LINE__);
	check_kind("\"x\"", GV_EXPR_STRING, 0, __FILE__, __LINE__);
}

static void test_rank(void **state)
{
	gv_expr *x;
	gv_err e;

	is_num("cpus * 2 + (accel == \"kvm\") * 10", 26);
	is_num("memory_free / 1G", 8);
	is_num("load", 0.25);
	is_num("-cpus_free", -6);
	is_num("disk_free / disk * 100", 50);
	check_kind("cpus > 100", GV_EXPR_BOOL, 0, __FILE__, __LINE__);
	check_kind("true", GV_EXPR_BOOL, 1, __FILE__, __LINE__);

	/* strings, lists and undefined rank 0 */
	assert_int_equal(gv_expr_parse("site", &x, &e), 0);
	assert_true(gv_expr_rank(x, attrs) == 0);
	assert_false(gv_expr_match(x, attrs));
	gv_expr_free(x);
	assert_int_equal(gv_expr_parse("nope * 3", &x, &e), 0);
	assert_true(gv_expr_rank(x, attrs) == 0);
	gv_expr_free(x);
	assert_int_equal(gv_expr_parse("vms + 1.5", &x, &e), 0);
	assert_true(gv_expr_rank(x, attrs) == 3.5);
	gv_expr_free(x);
}

static void test_null(void **state)
{
	gv_expr *x = (gv_expr *)1;
	gv_err e = { "" };
	double n = -1;

	assert_true(gv_expr_match(NULL, attrs));
	assert_true(gv_expr_match(NULL, NULL));
	assert_true(gv_expr_rank(NULL, attrs) == 0);
	assert_int_equal(gv_expr_eval(NULL, attrs, &n), GV_EXPR_UNDEFINED);
	assert_true(n == 0);
	assert_null(gv_expr_source(NULL));
	gv_expr_free(NULL);

	assert_int_equal(gv_expr_parse(NULL, &x, &e), -EINVAL);
	assert_null(x);
	assert_string_equal(e.msg, "no expression");
	assert_int_equal(gv_expr_parse("cpus", NULL, NULL), -EINVAL);

	/* no attributes at all: every name is undefined */
	assert_int_equal(gv_expr_parse("cpus > 1", &x, &e), 0);
	assert_false(gv_expr_match(x, NULL));
	assert_int_equal(gv_expr_eval(x, NULL, NULL), GV_EXPR_UNDEFINED);
	assert_true(gv_expr_match(x, attrs));
	assert_string_equal(gv_expr_source(x), "cpus > 1");
	gv_expr_free(x);
	assert_int_equal(gv_expr_parse("true || cpus", &x, &e), 0);
	assert_true(gv_expr_match(x, NULL));
	gv_expr_free(x);
	/* not an object */
	assert_int_equal(gv_expr_parse("cpus == 1", &x, &e), 0);
	json_t *arr = json_array();
	assert_int_equal(gv_expr_eval(x, arr, NULL), GV_EXPR_UNDEFINED);
	json_decref(arr);
	gv_expr_free(x);
}

static void test_errors(void **state)
{
	bad("cpus > 2 && && x", "at position 13: expected a value after '&&'");
	bad("cpus > 2 &&", "at position 12: expected a value after '&&'");
	bad("cpus >= )", "at position 9: expected a value after '>='");
	bad("\"cell\" in", "at position 10: expected a value after 'in'");
	bad("!", "at position 2: expected a value after '!'");
	bad("()", "at position 2: expected a value after '('");
	bad(") cpus", "at position 1: expected a value, not ')'");
	bad("", "at position 1: empty expression");
	bad("   ", "at position 4: empty expression");
	bad("site == \"lyon", "at position 9: unterminated string");
	bad("\"ab\\", "at position 1: unterminated string");
	bad("\"a\\nb\"", "at position 3: unknown escape '\\n' in a string "
			 "(only \\\" and \\\\ are escapes)");
	bad("#cpus", "at position 1: unknown character '#'");
	bad("cpus > 1 $", "at position 10: unknown character '$'");
	bad("\xc3\xa9t\xc3\xa9", "at position 1: unknown character '\\xc3'");
	bad("cpus\x01", "at position 5: unknown character '\\x01'");
	bad("(1 + 2 3)", "at position 8: ')' expected");
	bad("(cpus > 2", "at position 10: ')' expected");
	bad("cpus > 1 foo",
	    "at position 10: unexpected 'foo' after the end of the expression");
	bad("cpus)", "at position 5: unexpected ')' after the end of the expression");
	bad("1 \"\xc3\xa9\"",
	    "at position 3: unexpected '\"\\xc3\\xa9\"' after the end of the expression");
	bad("cpus 123456789012345678901234567890123456789",
	    "at position 6: unexpected '12345678901234567890123456789012...' after the "
	    "end of the expression");
	bad("cpus = 2", "at position 6: '=' is not an operator: use '==' to compare");
	bad("a & b", "at position 3: '&' is not an operator: use '&&'");
	bad("a | b", "at position 3: '|' is not an operator: use '||'");
	bad("4X", "at position 2: unknown unit 'X' (K, M, G, T or KiB, MiB, GiB, TiB)");
	bad("memory > 4Gx",
	    "at position 11: unknown unit 'Gx' (K, M, G, T or KiB, MiB, GiB, TiB)");
	bad("4GiBB",
	    "at position 2: unknown unit 'GiBB' (K, M, G, T or KiB, MiB, GiB, TiB)");
	bad("4.", "at position 1: malformed number '4.'");
	bad("x == 1.2.3", "at position 6: malformed number '1.2.3'");
	bad("4_000", "at position 1: malformed number '4_000'");
	bad("\"a\" in [1, 2", "at position 13: ',' or ']' expected");
	bad("\"a\" in [1 2]", "at position 11: ',' or ']' expected");
	bad("\"a\" in [1,]",
	    "at position 11: expected a string, number or boolean after ','");
	bad("\"a\" in [site]",
	    "at position 9: expected a string, number or boolean after '['");
	bad("\"a\" in [-\"x\"]",
	    "at position 10: expected a string, number or boolean after '-'");
}

static void test_limits(void **state)
{
	static char s[20000];
	gv_expr *x;
	gv_err e;
	double n;
	int i, o;

	/* 64 levels of parentheses are fine, 65 are not */
	o = 0;
	for (i = 0; i < 64; i++)
		s[o++] = '(';
	s[o++] = '1';
	for (i = 0; i < 64; i++)
		s[o++] = ')';
	s[o] = '\0';
	assert_int_equal(gv_expr_parse(s, &x, &e), 0);
	assert_true(gv_expr_rank(x, attrs) == 1);
	gv_expr_free(x);
	memmove(s + 1, s, strlen(s) + 1);
	strcat(s, ")");
	bad(s, "at position 65: nested deeper than 64 levels");

	/* unary operators count as levels too */
	memset(s, '-', 64);
	strcpy(s + 64, "cpus");
	assert_int_equal(gv_expr_parse(s, &x, &e), 0);
	assert_true(gv_expr_rank(x, attrs) == 8);
	gv_expr_free(x);
	memset(s, '!', 65);
	strcpy(s + 65, "true");
	bad(s, "at position 65: nested deeper than 64 levels");
	memset(s, '[', 65);
	strcpy(s + 65, "1");
	bad(s, "at position 2: expected a string, number or boolean after '['");

	/* the deepest stack: every level holds an operand, 64 times over */
	o = 0;
	for (i = 0; i < 64; i++)
		o += sprintf(s + o, "false||true&&\"a\"in 1==1<1+1*(");
	o += sprintf(s + o, "1");
	for (i = 0; i < 64; i++)
		s[o++] = ')';
	s[o] = '\0';
	assert_true(strlen(s) <= 4096);
	assert_int_equal(gv_expr_parse(s, &x, &e), 0);
	assert_int_equal(gv_expr_eval(x, attrs, &n), GV_EXPR_UNDEFINED);
	gv_expr_free(x);

	/* long flat chains do not nest */
	o = sprintf(s, "1");
	for (i = 1; i < 1365; i++)
		o += sprintf(s + o, "+1 ");
	assert_int_equal(gv_expr_parse(s, &x, &e), 0);
	assert_true(gv_expr_rank(x, attrs) == 1365);
	gv_expr_free(x);
	o = sprintf(s, "false");
	for (i = 1; i < 500; i++)
		o += sprintf(s + o, "||false");
	strcat(s, "||site==\"lyon\"");
	assert_int_equal(gv_expr_parse(s, &x, &e), 0);
	assert_true(gv_expr_match(x, attrs));
	gv_expr_free(x);

	/* length: 4096 characters are fine, 4097 are not */
	memset(s, ' ', 4096);
	s[0] = '1';
	s[4096] = '\0';
	assert_int_equal(gv_expr_parse(s, &x, &e), 0);
	gv_expr_free(x);
	s[4096] = ' ';
	s[4097] = '\0';
	bad(s, "at position 4097: the expression is longer than 4096 characters");

	/* a number beyond double */
	s[0] = '1';
	memset(s + 1, '0', 400);
	s[401] = '\0';
	bad(s, "at position 1: number too large '10000000000000000000000000000000...'");
}

static void test_kind_names(void **state)
{
	assert_string_equal(gv_expr_kind_name(GV_EXPR_UNDEFINED), "undefined");
	assert_string_equal(gv_expr_kind_name(GV_EXPR_BOOL), "boolean");
	assert_string_equal(gv_expr_kind_name(GV_EXPR_NUMBER), "number");
	assert_string_equal(gv_expr_kind_name(GV_EXPR_STRING), "string");
	assert_string_equal(gv_expr_kind_name(GV_EXPR_LIST), "list");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_precedence), cmocka_unit_test(test_units),
		cmocka_unit_test(test_in),	   cmocka_unit_test(test_undefined),
		cmocka_unit_test(test_values),	   cmocka_unit_test(test_rank),
		cmocka_unit_test(test_null),	   cmocka_unit_test(test_errors),
		cmocka_unit_test(test_limits),	   cmocka_unit_test(test_kind_names),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
