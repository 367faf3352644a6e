/* SPDX-License-Identifier: MIT */
/*
 * test-sched-queue.c - the queue disciplines (strict order, greedy, EASY
 * backfill with reservations) and batch mode (min-min, max-min,
 * sufferage) on hand-built grids with known best answers.
 */
#include <gridvm/sched/sched.h>

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sched-plan.h"

#define GiB (1ull << 30)
#define MiB (1ull << 20)

static uint32_t host(gv_sched_state *st, const char *name, uint32_t cpus)
{
	gv_sched_host h = {.name = name,
			   .cpus = cpus,
			   .memory = 64 * GiB,
			   .disk = 100 * GiB,
			   .link_rate = 1e6};
	uint32_t idx;
	gv_err e;

	assert_int_equal(gv_sched_host_add(st, &h, &idx, &e), 0);
	return idx;
}

/* A queued job: @cpus for @wall seconds, submitted at @submit. */
static uint32_t job(gv_sched_state *st, uint64_t id, uint32_t cpus, double wall,
		    double submit)
{
	gv_sched_job spec = {
	    .id = id, .cpus = cpus, .memory = GiB, .walltime = wall, .submit = submit};
	uint32_t idx;
	gv_err e;

	assert_int_equal(gv_sched_job_add(st, &spec, &idx, &e), 0);
	return idx;
}

static void run(gv_sched_state *st, uint64_t id, uint32_t h, uint32_t cpus, double start,
		double wall)
{
	uint32_t j = job(st, id, cpus, wall, start);
	assert_int_equal(gv_sched_job_bind(st, j, h, start), 0);
}

static gv_sched_params params(gv_sched_queue q)
{
	gv_sched_params p;
	gv_sched_params_default(&p);
	p.queue = q;
	return p;
}

/*
 * One host of 8 cpus; a running job holds 6 of them until t=100. At t=10
 * the queue is: 1 (8 cpus, 50 s: must wait for t=100), 2 (2 cpus, 50 s:
 * ends at 60, before 100), 3 (2 cpus, 200 s: would still hold 2 cpus at
 * 100 and delay job 1).
 */
static gv_sched_state *easy_grid(void)
{
	gv_sched_state *st = gv_sched_state_new();
	uint32_t h = host(st, "h1", 8);
	run(st, 100, h, 6, 0, 100);
	job(st, 1, 8, 50, 1);
	job(st, 2, 2, 50, 2);
	job(st, 3, 2, 200, 3);
	return st;
}

static void test_backfill_easy(void **state)
{
	gv_sched_state *st = easy_grid();
	gv_sched_params p = params(GV_SCHED_QUEUE_BACKFILL);
	gv_sched_plan plan;

	gv_sched_plan_init(&plan);
	assert_int_equal(gv_sched_schedule(st, 10, &p, &plan), 0);
	/* the head waits with a reservation at t=100 */
	const gv_sched_decision *d = about(&plan, 1);
	assert_int_equal(d->act, GV_ACT_WAIT);
	assert_int_equal(d->reason.why, GV_WHY_RESERVED);
	assert_true(d->start == 100);
	assert_string_equal(reason_of(st, &plan, 1),
			    "waiting for resources; backfill reserves host h1 "
			    "for it, to start in 90 s (when running jobs end)");
	/* the small short job goes ahead: it ends before the reservation */
	assert_string_equal(placed_on(st, &plan, 2), "h1");
	assert_int_equal(about(&plan, 2)->reason.why, GV_WHY_BACKFILL);
	assert_string_equal(reason_of(st, &plan, 2),
			    "backfill ahead of job 1 without delaying it: host h1 "
			    "has 2 of 8 cpus and 63 GiB of 64 GiB free, fetches 0 B");
	/* the long one would delay job 1: held back */
	assert_string_equal(placed_on(st, &plan, 3), "-");
	assert_int_equal(about(&plan, 3)->reason.why, GV_WHY_WAIT_RESOURCES);
	gv_sched_plan_free(&plan);
	gv_sched_state_free(st);
}

static void test_backfill_delay_refused(void **state)
{
	/* h1 and h2; the head needs h1's 8 cpus at t=100. Job 3 (long) could
	 * start now on either: on h1 it would delay the head, on h2 not. */
	gv_sched_state *st = easy_grid();
	gv_sched_params p = params(GV_SCHED_QUEUE_BACKFILL);
	gv_sched_plan plan;

	gv_sched_plan_init(&plan);
	uint32_t h2 = host(st, "h2", 4);
	run(st, 101, h2, 2, 0, 1000);
	p.policy = GV_SCHED_PACK; /* pack would choose h1 (fuller) for job 2 and 3 */
	assert_int_equal(gv_sched_schedule(st, 10, &p, &plan), 0);
	assert_string_equal(placed_on(st, &plan, 2), "h1"); /* short: fine on h1 */
	assert_string_equal(placed_on(st, &plan, 3),
			    "h2"); /* long: only where it delays nobody */
	assert_int_equal(about(&plan, 3)->reason.why, GV_WHY_BACKFILL);
	/* with h2 full the long job is held back by the reservation */
	gv_sched_plan_clear(&plan);
	run(st, 102, h2, 2, 0, 1000);
	assert_int_equal(gv_sched_schedule(st, 10, &p, &plan), 0);
	assert_string_equal(placed_on(st, &plan, 3), "-");
	/* h1 has 2 cpus free now but the head needs them at 100: the
	 * reservation holds it back (job 2 took h1's last 2 cpus first, so
	 * check with job 2 gone) */
	gv_sched_job_remove(st, gv_sched_job_find(st, 2));
	gv_sched_plan_clear(&plan);
	assert_int_equal(gv_sched_schedule(st, 10, &p, &plan), 0);
	assert_string_equal(placed_on(st, &plan, 3), "-");
	assert_int_equal(about(&plan, 3)->reason.why, GV_WHY_WAIT_RESERVATION);
	assert_string_equal(
	    reason_of(st, &plan, 3),
	    "held back by backfill reservation for job 1 (it fits now only where it "
	    "would delay that job)");
	gv_sched_plan_free(&plan);
	gv_sched_state_free(st);
}

static void test_backfill_extra(void **state)
{
	/* 8 cpus, 4 held until t=100; the head needs 6: at t=100 2 cpus are
	 * left over, so a 2-cpu job may run past t=100 */
	gv_sched_state *st = gv_sched_state_new();
	gv_sched_params p = params(GV_SCHED_QUEUE_BACKFILL);
	gv_sched_plan plan;

	gv_sched_plan_init(&plan);
	uint32_t h = host(st, "h1", 8);
	run(st, 100, h, 4, 0, 100);
	job(st, 1, 6, 50, 1);
	job(st, 2, 2, 5000, 2);
	job(st, 3, 2, 5000, 3);
	assert_int_equal(gv_sched_schedule(st, 10, &p, &plan), 0);
	assert_int_equal(about(&plan, 1)->reason.why, GV_WHY_RESERVED);
	assert_string_equal(placed_on(st, &plan, 2), "h1");
	/* a second one would take the head's cpus at t=100 */
	assert_string_equal(placed_on(st, &plan, 3), "-");
	assert_int_equal(about(&plan, 3)->reason.why, GV_WHY_WAIT_RESERVATION);
	gv_sched_plan_free(&plan);
	gv_sched_state_free(st);
}

static void test_strict_and_greedy(void **state)
{
	gv_sched_state *st = easy_grid();
	gv_sched_params p = params(GV_SCHED_QUEUE_STRICT);
	gv_sched_plan plan;

	gv_sched_plan_init(&plan);
	assert_int_equal(gv_sched_schedule(st, 10, &p, &plan), 0);
	assert_int_equal(plan.n_acts, 0);
	assert_int_equal(about(&plan, 1)->reason.why, GV_WHY_WAIT_RESOURCES);
	assert_string_equal(
	    reason_of(st, &plan, 2),
	    "waiting behind job 1 (strict order: no job passes an earlier one)");
	assert_string_equal(
	    reason_of(st, &plan, 3),
	    "waiting behind job 1 (strict order: no job passes an earlier one)");
	/* greedy: everything that fits goes, the head may starve */
	p.queue = GV_SCHED_QUEUE_GREEDY;
	gv_sched_plan_clear(&plan);
	assert_int_equal(gv_sched_schedule(st, 10, &p, &plan), 0);
	assert_string_equal(placed_on(st, &plan, 2), "h1");
	assert_string_equal(placed_on(st, &plan, 3), "-"); /* no cpus left after job 2 */
	assert_int_equal(about(&plan, 2)->reason.why, GV_WHY_PLACE);
	gv_sched_job_remove(st, gv_sched_job_find(st, 2));
	gv_sched_plan_clear(&plan);
	assert_int_equal(gv_sched_schedule(st, 10, &p, &plan), 0);
	assert_string_equal(placed_on(st, &plan, 3), "h1"); /* greedy: it delays job 1 */
	gv_sched_plan_free(&plan);
	gv_sched_state_free(st);
}

static void test_never_does_not_block(void **state)
{
	/* a job that can never run holds no queue up and gets no reservation */
	gv_sched_state *st = gv_sched_state_new();
	gv_sched_plan plan;

	gv_sched_plan_init(&plan);
	uint32_t h = host(st, "h1", 4);
	run(st, 100, h, 2, 0, 100);
	job(st, 1, 64, 50, 1);
	job(st, 2, 2, 500, 2);
	for (int q = GV_SCHED_QUEUE_BACKFILL; q <= GV_SCHED_QUEUE_GREEDY; q++) {
		gv_sched_params p = params((gv_sched_queue)q);
		gv_sched_plan_clear(&plan);
		assert_int_equal(gv_sched_schedule(st, 10, &p, &plan), 0);
		assert_int_equal(about(&plan, 1)->reason.why, GV_WHY_NEVER_SIZE);
		assert_string_equal(placed_on(st, &plan, 2), "h1");
		assert_int_equal(about(&plan, 2)->reason.why, GV_WHY_PLACE);
	}
	gv_sched_plan_free(&plan);
	gv_sched_state_free(st);
}

static void test_hosts_down_does_not_block(void **state)
{
	/* the only host that could run job 1 is down: it may not come back,
	 * so job 1 neither stops a strict queue nor takes a reservation */
	gv_sched_state *st = gv_sched_state_new();
	gv_sched_plan plan;

	gv_sched_plan_init(&plan);
	uint32_t big = host(st, "big", 64);
	host(st, "small", 4);
	gv_sched_host_set_state(st, big, GV_HOST_DOWN);
	job(st, 1, 32, 50, 1);
	job(st, 2, 2, 500, 2);
	for (int q = GV_SCHED_QUEUE_BACKFILL; q <= GV_SCHED_QUEUE_STRICT; q++) {
		gv_sched_params p = params((gv_sched_queue)q);
		gv_sched_plan_clear(&plan);
		assert_int_equal(gv_sched_schedule(st, 10, &p, &plan), 0);
		assert_int_equal(about(&plan, 1)->reason.why, GV_WHY_WAIT_HOSTS_DOWN);
		assert_string_equal(
		    reason_of(st, &plan, 1),
		    "waiting: the 1 host that could run it is draining or down");
		assert_string_equal(placed_on(st, &plan, 2), "small");
		assert_int_equal(about(&plan, 2)->reason.why, GV_WHY_PLACE);
	}
	gv_sched_plan_free(&plan);
	gv_sched_state_free(st);
}

static void test_overrun(void **state)
{
	/* a running job past its estimate is expected to end overrun_grace
	 * seconds from now: the reservation is then, not at once */
	gv_sched_state *st = gv_sched_state_new();
	gv_sched_params p = params(GV_SCHED_QUEUE_BACKFILL);
	gv_sched_plan plan;

	gv_sched_plan_init(&plan);
	uint32_t h = host(st, "h1", 4);
	run(st, 100, h, 4, 0, 5);
	job(st, 1, 4, 50, 1);
	assert_int_equal(gv_sched_schedule(st, 10, &p, &plan), 0);
	const gv_sched_decision *d = about(&plan, 1);
	assert_int_equal(d->reason.why, GV_WHY_RESERVED);
	assert_true(d->start == 10 + p.overrun_grace);
	gv_sched_plan_free(&plan);
	gv_sched_state_free(st);
}

static void test_reservations_depth(void **state)
{
	/* two hosts, each busy until a different time; two big jobs each get
	 * a reservation with reservations = 2, the second only a wait with 1 */
	gv_sched_state *st = gv_sched_state_new();
	gv_sched_params p = params(GV_SCHED_QUEUE_BACKFILL);
	gv_sched_plan plan;

	gv_sched_plan_init(&plan);
	uint32_t a = host(st, "a", 4), b = host(st, "b", 4);
	run(st, 100, a, 4, 0, 100);
	run(st, 101, b, 4, 0, 200);
	job(st, 1, 4, 300, 1);
	job(st, 2, 4, 300, 2);
	assert_int_equal(gv_sched_schedule(st, 10, &p, &plan), 0);
	assert_int_equal(about(&plan, 1)->reason.why, GV_WHY_RESERVED);
	assert_true(about(&plan, 1)->start == 100);
	assert_int_equal(about(&plan, 2)->reason.why, GV_WHY_WAIT_RESOURCES);
	p.reservations = 2;
	gv_sched_plan_clear(&plan);
	assert_int_equal(gv_sched_schedule(st, 10, &p, &plan), 0);
	const gv_sched_decision *d = about(&plan, 2);
	assert_int_equal(d->reason.why, GV_WHY_RESERVED);
	assert_string_equal(gv_sched_host_get(st, d->host)->name,
			    "b"); /* a is taken at 100 */
	assert_true(d->start == 200);
	gv_sched_plan_free(&plan);
	gv_sched_state_free(st);
}

/*
 * Batch: hosts a and b of 1 cpu; jobs 1 and 2 of 10 s, job 3 of 100 s.
 *   min-min: 1 -> a, 2 -> b, 3 -> a at 10: makespan 110
 *   max-min: 3 -> a, 1 -> b, 2 -> b at 10: makespan 100
 */
static gv_sched_state *batch_grid(void)
{
	gv_sched_state *st = gv_sched_state_new();
	host(st, "a", 1);
	host(st, "b", 1);
	job(st, 1, 1, 10, 1);
	job(st, 2, 1, 10, 2);
	job(st, 3, 1, 100, 3);
	return st;
}

static void test_batch_minmin_maxmin(void **state)
{
	gv_sched_state *st = batch_grid();
	gv_sched_params p = params(GV_SCHED_QUEUE_STRICT);
	gv_sched_plan plan;

	gv_sched_plan_init(&plan);
	p.mode = GV_SCHED_BATCH;
	p.heuristic = GV_SCHED_MINMIN;
	assert_int_equal(gv_sched_schedule(st, 0, &p, &plan), 0);
	assert_string_equal(placed_on(st, &plan, 1), "a");
	assert_string_equal(placed_on(st, &plan, 2), "b");
	const gv_sched_decision *d = about(&plan, 3);
	assert_int_equal(d->reason.why, GV_WHY_WAIT_BATCH);
	assert_string_equal(gv_sched_host_get(st, d->host)->name, "a");
	assert_true(d->start == 10);
	assert_string_equal(reason_of(st, &plan, 3),
			    "planned by the batch (min-min): starts on a in 10 s, "
			    "done in 110 s (staging 0.0 s, run 100 s)");
	assert_string_equal(reason_of(st, &plan, 1),
			    "min-min: host a completes it soonest, in 10 s "
			    "(staging 0.0 s, run 10 s)");

	p.heuristic = GV_SCHED_MAXMIN;
	gv_sched_plan_clear(&plan);
	assert_int_equal(gv_sched_schedule(st, 0, &p, &plan), 0);
	assert_string_equal(placed_on(st, &plan, 3), "a");
	assert_string_equal(placed_on(st, &plan, 1), "b");
	d = about(&plan, 2);
	assert_int_equal(d->act, GV_ACT_WAIT);
	assert_string_equal(gv_sched_host_get(st, d->host)->name, "b");
	assert_true(d->start == 10);
	gv_sched_plan_free(&plan);
	gv_sched_state_free(st);
}

/*
 * Sufferage with staging: host a holds job 1's image, b lacks it (100 s to
 * fetch at 1 MB/s). Both jobs run 10 s.
 *   min-min: job 2 first (queue order on a tie) takes a; job 1 then waits
 *            for a (ECT 20) rather than stage on b (ECT 110)
 *   sufferage: job 1 loses 100 s without a, so it goes first; job 2 -> b
 */
static void test_batch_sufferage(void **state)
{
	gv_sched_state *st = gv_sched_state_new();
	gv_sched_params p = params(GV_SCHED_QUEUE_STRICT);
	gv_sched_plan plan;
	gv_err e;
	uint32_t idx;

	gv_sched_plan_init(&plan);
	uint32_t a = host(st, "a", 1);
	host(st, "b", 1);
	assert_int_equal(gv_sched_host_set_image(st, a, "img", 0), 0);
	job(st, 2, 1, 10, 1);
	gv_sched_job spec = {.id = 1,
			     .cpus = 1,
			     .memory = GiB,
			     .walltime = 10,
			     .submit = 2,
			     .image = "img",
			     .image_size = 100000000};
	assert_int_equal(gv_sched_job_add(st, &spec, &idx, &e), 0);
	p.mode = GV_SCHED_BATCH;
	p.heuristic = GV_SCHED_MINMIN;
	assert_int_equal(gv_sched_schedule(st, 0, &p, &plan), 0);
	assert_string_equal(placed_on(st, &plan, 2), "a");
	assert_string_equal(placed_on(st, &plan, 1), "-");
	assert_true(about(&plan, 1)->start == 10);

	p.heuristic = GV_SCHED_SUFFERAGE;
	gv_sched_plan_clear(&plan);
	assert_int_equal(gv_sched_schedule(st, 0, &p, &plan), 0);
	assert_string_equal(placed_on(st, &plan, 1), "a");
	assert_string_equal(placed_on(st, &plan, 2), "b");
	assert_int_equal(plan.acts[0].job_id, 1); /* decided first */
	gv_sched_plan_free(&plan);
	gv_sched_state_free(st);
}

static void test_batch_next_and_backfill(void **state)
{
	/* batches of 2: the jobs behind wait for the next batch in strict
	 * order; with backfill they start now where they delay no planned start */
	gv_sched_state *st = gv_sched_state_new();
	gv_sched_params p = params(GV_SCHED_QUEUE_STRICT);
	gv_sched_plan plan;

	gv_sched_plan_init(&plan);
	uint32_t x = host(st, "x", 4);
	host(st, "s", 2);
	run(st, 100, x, 2, 0, 100);
	job(st, 1, 4, 50, 1);  /* x at 100 */
	job(st, 2, 2, 50, 2);  /* s now */
	job(st, 4, 2, 500, 3); /* x now would delay job 1 */
	job(st, 3, 2, 50, 4);  /* x now: ends at 60, before job 1 */
	p.mode = GV_SCHED_BATCH;
	p.batch_max = 2;
	assert_int_equal(gv_sched_schedule(st, 10, &p, &plan), 0);
	assert_string_equal(placed_on(st, &plan, 2), "s");
	assert_int_equal(about(&plan, 1)->reason.why, GV_WHY_WAIT_BATCH);
	assert_true(about(&plan, 1)->start == 100);
	assert_string_equal(
	    reason_of(st, &plan, 3),
	    "waiting for the next batch (this one took the first 2 jobs)");
	assert_int_equal(about(&plan, 4)->reason.why, GV_WHY_WAIT_NEXT_BATCH);
	p.queue = GV_SCHED_QUEUE_BACKFILL;
	gv_sched_plan_clear(&plan);
	assert_int_equal(gv_sched_schedule(st, 10, &p, &plan), 0);
	assert_string_equal(placed_on(st, &plan, 4), "-");
	assert_int_equal(about(&plan, 4)->reason.why, GV_WHY_WAIT_RESERVATION);
	assert_int_equal(about(&plan, 4)->reason.other, 1);
	assert_string_equal(placed_on(st, &plan, 3), "x");
	assert_int_equal(about(&plan, 3)->reason.why, GV_WHY_BACKFILL);
	gv_sched_plan_free(&plan);
	gv_sched_state_free(st);
}

static void test_queue_depth(void **state)
{
	gv_sched_state *st = gv_sched_state_new();
	gv_sched_params p = params(GV_SCHED_QUEUE_GREEDY);
	gv_sched_plan plan;

	gv_sched_plan_init(&plan);
	host(st, "a", 64);
	for (uint64_t i = 1; i <= 10; i++)
		job(st, i, 1, 10, (double)i);
	p.queue_depth = 4;
	assert_int_equal(gv_sched_schedule(st, 10, &p, &plan), 0);
	assert_int_equal(plan.n_acts, 4);
	assert_int_equal(plan.n_held, 0);
	assert_int_equal(plan.acts[3].job_id, 4);
	gv_sched_plan_free(&plan);
	gv_sched_state_free(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_backfill_easy),
	    cmocka_unit_test(test_backfill_delay_refused),
	    cmocka_unit_test(test_backfill_extra),
	    cmocka_unit_test(test_strict_and_greedy),
	    cmocka_unit_test(test_never_does_not_block),
	    cmocka_unit_test(test_hosts_down_does_not_block),
	    cmocka_unit_test(test_overrun),
	    cmocka_unit_test(test_reservations_depth),
	    cmocka_unit_test(test_batch_minmin_maxmin),
	    cmocka_unit_test(test_batch_sufferage),
	    cmocka_unit_test(test_batch_next_and_backfill),
	    cmocka_unit_test(test_queue_depth),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
