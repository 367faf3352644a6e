/* SPDX-License-Identifier: MIT */
/*
 * test-workload.c - the SWF reader (good lines, comments, and malformed
 * lines with the field named), SWF lines written and read back, the trace
 * generator's determinism for a seed and the sanity of its distributions,
 * and how SWF records become simulated jobs.
 */
#include <gridvm/sched/sim.h>
#include <gridvm/sched/workload.h>

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static void test_swf_good(void **state)
{
	gv_swf_job j;
	gv_err e;
	(void)state;

	assert_int_equal(gv_swf_parse_line("1 0 5 3600 4 -1 1048576 4 7200 -1 1 7 2 3 1 1 -1 -1\n",
					   &j, &e), 1);
	assert_int_equal(j.id, 1);
	assert_true(j.run == 3600 && j.wait == 5 && j.req_time == 7200);
	assert_int_equal(j.procs, 4);
	assert_int_equal(j.used_mem, 1048576);
	assert_int_equal(j.req_mem, -1);
	assert_int_equal(j.user, 7);
	assert_int_equal(j.app, 3);
	assert_int_equal(j.think, -1);
	/* tabs, extra blanks, decimals in the time fields, CRLF */
	assert_int_equal(gv_swf_parse_line("  2\t10.5  -1 60.25 1 -1 -1 1 -1 -1 1 1 1 -1 -1 -1 -1 -1\r\n",
					   &j, &e), 1);
	assert_true(j.submit == 10.5 && j.run == 60.25);
	/* comments and blank lines are no jobs */
	assert_int_equal(gv_swf_parse_line("; Version: 2.2\n", &j, &e), 0);
	assert_int_equal(gv_swf_parse_line("   ; MaxJobs: 10", &j, &e), 0);
	assert_int_equal(gv_swf_parse_line("\n", &j, &e), 0);
	assert_int_equal(gv_swf_parse_line("", &j, &e), 0);
	assert_string_equal(gv_swf_field_name(4), "run time");
	assert_null(gv_swf_field_name(19));
}

static void bad(const char *line, const char *want)
{
	gv_swf_job j;
	gv_err e = {""};

	assert_int_equal(gv_swf_parse_line(line, &j, &e), -EINVAL);
	if (!strstr(e.msg, want))
		fail_msg("'%s': error '%s' does not say '%s'", line, e.msg, want);
}

static void test_swf_malformed(void **state)
{
	(void)state;
	bad("1 0 5 abc 4 -1 -1 4 -1 -1 1 1 1 -1 -1 -1 -1 -1", "field 4 (run time): \"abc\" is not a number");
	bad("1 0 5 60 4.5 -1 -1 4 -1 -1 1 1 1 -1 -1 -1 -1 -1", "field 5 (allocated processors)");
	bad("1 0 5 60 4.5 -1 -1 4 -1 -1 1 1 1 -1 -1 -1 -1 -1", "not a whole number");
	bad("1 -5 5 60 4 -1 -1 4 -1 -1 1 1 1 -1 -1 -1 -1 -1", "field 2 (submit time): \"-5\" is below -1");
	bad("1 0 5 60 4 -1 -1 4 -1 -1 1 1 1 -1 -1 -1 -1", "17 fields, an SWF line has 18");
	bad("1 0 5 60 4 -1 -1 4 -1 -1 1 1 1 -1 -1 -1 -1", "field 18 (think time) is missing");
	bad("1 0 5 60 4 -1 -1 4 -1 -1 1 1 1 -1 -1 -1 -1 -1 9", "more than 18 fields");
	bad("1 0 5 60 4 -1 -1 4 nan -1 1 1 1 -1 -1 -1 -1 -1", "field 9 (requested time)");
	bad("1 0 5 60 4 -1 -1 4 1e400 -1 1 1 1 -1 -1 -1 -1 -1", "field 9 (requested time)");
	bad("x", "field 1 (job number)");
}

static void test_swf_round_trip(void **state)
{
	gv_swf_job a = {.id = 42, .submit = 1234.5, .wait = -1, .run = 86400, .procs = 32,
			.avg_cpu = -1, .used_mem = 4194304, .req_procs = 32, .req_time = 90000,
			.req_mem = -1, .status = 1, .user = 3, .group = 1, .app = 8,
			.queue = 1, .partition = -1, .preceding = 41, .think = 12.25}, b;
	char line[512];
	gv_err e;
	(void)state;

	assert_true(gv_swf_format(&a, line, sizeof line) < (int)sizeof line);
	assert_non_null(strchr(line, '\n'));
	assert_int_equal(gv_swf_parse_line(line, &b, &e), 1);
	assert_memory_equal(&a, &b, sizeof a);
	/* a short buffer is cut, and says how long the line would be */
	char small[8];
	assert_true(gv_swf_format(&a, small, sizeof small) > 8);
	assert_int_equal(strlen(small), 7);
}

static void lines(uint64_t seed, uint64_t n, char **out)
{
	gv_workload_opts o = {.jobs = n, .seed = seed};
	gv_workload w;
	size_t len = 0, cap = 128 * n + 1;
	char *buf = malloc(cap);

	assert_non_null(buf);
	assert_int_equal(gv_workload_init(&w, &o), 0);
	for (uint64_t i = 0; i < n; i++) {
		gv_swf_job j;
		gv_workload_next(&w, &j);
		len += (size_t)gv_swf_format(&j, buf + len, cap - len);
		assert_true(len < cap);
	}
	gv_workload_free(&w);
	*out = buf;
}

static void test_generator_deterministic(void **state)
{
	char *a, *b, *c;
	(void)state;

	lines(7, 2000, &a);
	lines(7, 2000, &b);
	lines(8, 2000, &c);
	assert_string_equal(a, b);
	assert_string_not_equal(a, c);
	free(a);
	free(b);
	free(c);
}

static int cmp_dbl(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return a < b ? -1 : a > b;
}

static void test_generator_distributions(void **state)
{
	enum { N = 20000 };
	gv_workload_opts o = {.jobs = N, .seed = 1, .rate = 600};
	gv_workload w;
	double *run = malloc(N * sizeof *run), last = -1;
	unsigned ones = 0, exact = 0, apps[9] = {0};
	(void)state;

	assert_non_null(run);
	assert_int_equal(gv_workload_init(&w, &o), 0);
	for (unsigned i = 0; i < N; i++) {
		gv_swf_job j;
		gv_workload_next(&w, &j);
		assert_int_equal(j.id, i + 1);
		assert_true(j.submit >= last); /* sorted by submit time */
		last = j.submit;
		assert_true(j.procs >= 1 && j.procs <= 32 && (j.procs & (j.procs - 1)) == 0);
		assert_true(j.run >= 10 && j.run <= 48 * 3600);
		assert_true(j.req_time >= j.run && j.req_time <= 4 * j.run + 900);
		assert_true(fmod(j.req_time, 900) == 0);
		assert_true(j.app >= 1 && j.app <= 8);
		assert_true(j.used_mem >= 512 * 1024 && j.used_mem <= 4096 * 1024);
		ones += j.procs == 1;
		exact += j.req_time == ceil(j.run / 900) * 900;
		apps[j.app]++;
		run[i] = j.run;
	}
	gv_workload_free(&w);
	qsort(run, N, sizeof *run, cmp_dbl);
	/* 40 % of jobs on one processor */
	assert_in_range(ones, N * 37 / 100, N * 43 / 100);
	/* median run time 1200 s */
	assert_in_range((unsigned)run[N / 2], 1100, 1300);
	/* 10 % ask exactly their run time rounded up to 15 minutes; more get
	 * it by the rounding (every job under 225 s gets 900 s) */
	assert_in_range(exact, N * 10 / 100, N * 60 / 100);
	/* jobs come at the rate asked, within 10 % (a whole number of days
	 * would be exact; the daily cycle makes a part-day a little off) */
	double rate = N / (last / 3600);
	if (rate < 540 || rate > 660)
		fail_msg("rate %.1f jobs/h, asked 600", rate);
	/* every image of the mix is used (popularity is Zipf by user, so which
	 * image leads depends on the heaviest users' favourites) */
	for (unsigned a = 1; a <= 8; a++)
		assert_true(apps[a] > N / 100);
	free(run);
}

static void test_job_from_swf(void **state)
{
	gv_sim_swf_opts o = {.max_cpus = 64, .max_memory = 256ull << 30};
	gv_swf_job s = {.id = 5, .submit = 100, .wait = -1, .run = 60, .procs = -1,
			.req_procs = 128, .req_time = 120, .used_mem = -1, .req_mem = 1024,
			.user = 3, .app = -1};
	gv_sim_job j;
	bool cut;
	(void)state;

	assert_int_equal(gv_sim_job_from_swf(&s, &o, &j, &cut), 1);
	assert_true(cut);
	assert_int_equal(j.cpus, 64); /* cut to the largest host */
	assert_int_equal(j.memory, 64ull * 1024 * 1024);
	assert_true(j.walltime == 120 && j.runtime == 60 && j.submit == 100);
	assert_int_equal(j.image, 2); /* by user: (3 - 1) % 8 */
	s.app = 6;
	assert_int_equal(gv_sim_job_from_swf(&s, &o, &j, &cut), 1);
	assert_int_equal(j.image, 5);
	s.run = -1; /* cancelled before it ran */
	assert_int_equal(gv_sim_job_from_swf(&s, &o, &j, &cut), 0);
	s.run = 10;
	s.req_procs = 0;
	assert_int_equal(gv_sim_job_from_swf(&s, &o, &j, &cut), 0);
}

static void test_image_mix(void **state)
{
	(void)state;
	unsigned bw = 0, plus = 1, cuda = 5;
	assert_string_equal(gv_sim_image_name(bw), "bookworm");
	assert_string_equal(gv_sim_image_name(plus), "bookworm-plus");
	/* bookworm-plus shares 64.5 % of its bytes with bookworm (bench-transfer) */
	double share = 1 - (double)gv_sim_image_missing(plus, gv_sim_image_layers(bw)) /
				   (double)gv_sim_image_bytes(plus);
	assert_true(share > 0.6 && share < 0.7);
	/* a host holding bookworm-plus holds all of bookworm */
	assert_int_equal(gv_sim_image_missing(bw, gv_sim_image_layers(plus)), 0);
	assert_int_equal(gv_sim_image_missing(cuda, gv_sim_image_layers(cuda)), 0);
	assert_true(gv_sim_image_bytes(cuda) > 3000000000ull);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_swf_good),
	    cmocka_unit_test(test_swf_malformed),
	    cmocka_unit_test(test_swf_round_trip),
	    cmocka_unit_test(test_generator_deterministic),
	    cmocka_unit_test(test_generator_distributions),
	    cmocka_unit_test(test_job_from_swf),
	    cmocka_unit_test(test_image_mix),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
