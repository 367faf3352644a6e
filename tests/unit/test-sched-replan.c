/* SPDX-License-Identifier: MIT */
/*
 * test-sched-replan.c - moves of running jobs: the cost model's numbers, a
 * move when the gain beats the cost and none otherwise, the budget and the
 * minimum interval, drain moving everything, calibration.
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
#define MB 1000000ull

static uint32_t host(gv_sched_state *st, const char *name, uint32_t cpus, double load)
{
	gv_sched_host h = {.name = name,
			   .cpus = cpus,
			   .memory = 64 * GiB,
			   .disk = 100 * GiB,
			   .link_rate = 1e6,
			   .load = load};
	uint32_t idx;
	gv_err e;

	assert_int_equal(gv_sched_host_add(st, &h, &idx, &e), 0);
	return idx;
}

/* A job of 2 cpus and 100 MB of memory running on @h since @start. */
static uint32_t run(gv_sched_state *st, uint64_t id, uint32_t h, double start,
		    double wall)
{
	gv_sched_job spec = {.id = id, .cpus = 2, .memory = 100 * MB, .walltime = wall};
	uint32_t idx;
	gv_err e;

	assert_int_equal(gv_sched_job_add(st, &spec, &idx, &e), 0);
	assert_int_equal(gv_sched_job_bind(st, idx, h, start), 0);
	return idx;
}

/* A cost model with round numbers: 100 MB at 1 MB/s copy in 100 s, no
 * downtime, no slowdown while copied. */
static gv_sched_params params(void)
{
	gv_sched_params p;
	gv_sched_params_default(&p);
	p.cost = (gv_sched_cost){.setup_s = 0,
				 .rate_factor = 1,
				 .mem_ratio = 1,
				 .switchover_s = 0,
				 .max_downtime_s = 1,
				 .max_rounds = 30,
				 .overhead = 0};
	p.move_margin = 10;
	p.max_moves = 2;
	p.min_move_interval = 600;
	return p;
}

static void test_cost_model(void **state)
{
	gv_sched_params p = params();
	gv_sched_move_est m;

	/* no dirtying: one round of 100 s */
	gv_sched_move_estimate(&p.cost, 100 * MB, 0, 0, 1e6, &m);
	assert_true(fabs(m.copy_s - 100) < 1e-9);
	assert_true(m.downtime_s == 0);
	assert_int_equal(m.rounds, 1);
	assert_true(m.converges);
	assert_true(m.bytes == 100 * MB);
	/* disk bytes the destination lacks come first */
	gv_sched_move_estimate(&p.cost, 100 * MB, 0, 50 * MB, 1e6, &m);
	assert_true(fabs(m.copy_s - 150) < 1e-9);
	assert_true(m.bytes == 150 * MB);
	/* dirtying at 10% of the rate: rounds of 100, 10, 1, 0.1 MB... until the
	 * rest goes in the 1 s downtime */
	gv_sched_move_estimate(&p.cost, 100 * MB, 1e5, 0, 1e6, &m);
	assert_int_equal(m.rounds, 2);
	assert_true(fabs(m.copy_s - 110) < 1e-6);
	assert_true(fabs(m.downtime_s - 1.0) < 1e-6);
	assert_true(m.converges);
	/* dirtying faster than the link: rounds stop shrinking, so the rest
	 * goes at once (stop and copy): no convergence, a long downtime */
	gv_sched_move_estimate(&p.cost, 100 * MB, 2e6, 0, 1e6, &m);
	assert_false(m.converges);
	assert_int_equal(m.rounds, 1);
	assert_true(fabs(m.copy_s - 100) < 1e-9);
	assert_true(fabs(m.downtime_s - 100) < 1e-9);
	/* the constants count: setup, switchover, compression, link share */
	p.cost.setup_s = 2;
	p.cost.switchover_s = 0.5;
	p.cost.mem_ratio = 0.5;
	p.cost.rate_factor = 0.5;
	gv_sched_move_estimate(&p.cost, 100 * MB, 0, 0, 1e6, &m);
	assert_true(fabs(m.copy_s - 102) < 1e-9);
	assert_true(fabs(m.total_s - 102.5) < 1e-9);
}

/* h1 overloaded (load 8 on 4 cpus: half speed), h2 idle. */
static gv_sched_state *overloaded(void)
{
	gv_sched_state *st = gv_sched_state_new();
	host(st, "h1", 4, 8);
	host(st, "h2", 16, 0);
	return st;
}

static void test_move_when_gain_beats_cost(void **state)
{
	/* remaining R: staying takes 2R; moving 100 s of copy at half speed
	 * (50 s of work) then R - 50 at full speed: R + 50. So gain R, cost
	 * 50: moves iff R > 50 + margin 10 */
	gv_sched_state *st = overloaded();
	gv_sched_params p = params();
	gv_sched_plan plan;

	gv_sched_plan_init(&plan);
	run(st, 1, 0, 0, 1100); /* R = 100 at t = 1000 */
	run(st, 2, 0, 0, 1055); /* R = 55 */
	assert_int_equal(gv_sched_replan(st, 1000, &p, &plan), 0);
	assert_int_equal(plan.n_acts, 1);
	const gv_sched_decision *d = about(&plan, 1);
	assert_int_equal(d->act, GV_ACT_MOVE);
	assert_int_equal(d->reason.why, GV_WHY_MOVE_GAIN);
	assert_int_equal(d->from, 0);
	assert_int_equal(d->host, 1);
	assert_true(fabs(d->reason.v[0] - 100) < 1e-6);
	assert_true(fabs(d->reason.v[1] - 50) < 1e-6);
	assert_string_equal(reason_of(st, &plan, 1),
			    "move from h1 to h2: gain 100 s > cost 50 s "
			    "(copy 100 s while it runs, downtime 0.0 s, 95.4 MiB)");
	d = about(&plan, 2);
	assert_int_equal(d->act, GV_ACT_STAY);
	assert_int_equal(d->reason.why, GV_WHY_STAY_NO_GAIN);
	assert_string_equal(
	    reason_of(st, &plan, 2),
	    "stays on h1: moving to h2 would gain 55 s but cost 50 s (margin 10 s)");
	/* the plan applied: job 1 runs on h2, moved at 1000 */
	assert_int_equal(gv_sched_plan_apply(st, &plan, 1000), 1);
	const gv_sched_job *jb = gv_sched_job_get(st, gv_sched_job_find(st, 1));
	assert_int_equal(jb->host, 1);
	assert_true(jb->moved && jb->last_move == 1000);
	assert_true(jb->start == 0);
	assert_int_equal(gv_sched_host_get(st, 0)->cpus_free, 2);
	gv_sched_plan_free(&plan);
	gv_sched_state_free(st);
}

static void test_no_move_without_gain(void **state)
{
	/* a host that is not overloaded: nothing faster anywhere */
	gv_sched_state *st = gv_sched_state_new();
	gv_sched_params p = params();
	gv_sched_plan plan;

	gv_sched_plan_init(&plan);
	host(st, "h1", 4, 2);
	host(st, "h2", 16, 0);
	run(st, 1, 0, 0, 100000);
	assert_int_equal(gv_sched_replan(st, 1000, &p, &plan), 0);
	assert_int_equal(plan.n_acts, 0);
	assert_string_equal(reason_of(st, &plan, 1),
			    "stays on h1: no host would run it faster");
	/* a slower link makes the same move on an overloaded host too costly */
	gv_sched_state_free(st);
	st = overloaded();
	gv_sched_host spec = *gv_sched_host_get(st, 1);
	spec.link_rate = 1e5; /* 1000 s to copy */
	gv_err e;
	assert_int_equal(gv_sched_host_update(st, 1, &spec, &e), 0);
	run(st, 1, 0, 0, 1400); /* R = 400: it would finish before the copy did */
	gv_sched_plan_clear(&plan);
	assert_int_equal(gv_sched_replan(st, 1000, &p, &plan), 0);
	assert_int_equal(plan.n_acts, 0);
	assert_int_equal(about(&plan, 1)->reason.why, GV_WHY_STAY_NO_GAIN);
	/* no other host fits */
	gv_sched_state_free(st);
	st = gv_sched_state_new();
	host(st, "h1", 4, 8);
	host(st, "h2", 1, 0);
	run(st, 1, 0, 0, 100000);
	gv_sched_plan_clear(&plan);
	assert_int_equal(gv_sched_replan(st, 1000, &p, &plan), 0);
	assert_string_equal(reason_of(st, &plan, 1),
			    "stays on h1: no other host can take it now");
	gv_sched_plan_free(&plan);
	gv_sched_state_free(st);
}

static void test_budget_and_interval(void **state)
{
	gv_sched_state *st = gv_sched_state_new();
	gv_sched_params p = params();
	gv_sched_plan plan;

	gv_sched_plan_init(&plan);
	host(st, "h1", 8, 80); /* a tenth of its speed, still after two moves */
	host(st, "h2", 64, 0);
	run(st, 1, 0, 0, 5000);
	run(st, 2, 0, 0, 5000);
	run(st, 3, 0, 0, 3000); /* the least gain: the one left over */
	assert_int_equal(gv_sched_replan(st, 1000, &p, &plan), 0);
	assert_int_equal(plan.n_acts, 2);
	assert_int_equal(about(&plan, 1)->act, GV_ACT_MOVE);
	assert_int_equal(about(&plan, 2)->act, GV_ACT_MOVE);
	const gv_sched_decision *d = about(&plan, 3);
	assert_int_equal(d->reason.why, GV_WHY_STAY_BUDGET);
	assert_non_null(strstr(reason_of(st, &plan, 3), "but the cycle's 2 moves are used"));
	assert_int_equal(gv_sched_plan_apply(st, &plan, 1000), 2);
	/* the next cycle: job 3 may move; 1 and 2 moved too recently (h2
	 * overloaded now would make them want to move back) */
	gv_sched_host_set_load(st, 1, 200);
	gv_sched_host_set_load(st, 0, 30);
	host(st, "h3", 64, 0);
	gv_sched_plan_clear(&plan);
	assert_int_equal(gv_sched_replan(st, 1100, &p, &plan), 0);
	assert_int_equal(about(&plan, 3)->act, GV_ACT_MOVE);
	d = about(&plan, 1);
	assert_int_equal(d->reason.why, GV_WHY_STAY_INTERVAL);
	assert_string_equal(reason_of(st, &plan, 1),
			    "stays on h2: moved 100 s ago (one move per 10 min at most)");
	/* once the interval passed they may move again */
	gv_sched_plan_clear(&plan);
	assert_int_equal(gv_sched_replan(st, 1700, &p, &plan), 0);
	assert_int_equal(about(&plan, 1)->act, GV_ACT_MOVE);
	gv_sched_plan_free(&plan);
	gv_sched_state_free(st);
}

static void test_drain(void **state)
{
	/* every job on a draining host moves, gain or not, with no budget */
	gv_sched_state *st = gv_sched_state_new();
	gv_sched_params p = params();
	gv_sched_plan plan;

	gv_sched_plan_init(&plan);
	uint32_t h1 = host(st, "h1", 8, 0);
	host(st, "h2", 4, 0);
	host(st, "h3", 4, 0);
	for (uint64_t id = 1; id <= 4; id++)
		run(st, id, h1, 0, 100000);
	gv_sched_job_set_moved(st, gv_sched_job_find(st, 4), 990); /* moved just now */
	assert_int_equal(gv_sched_replan(st, 1000, &p, &plan), 0);
	assert_int_equal(plan.n_acts, 0); /* nothing to gain */
	gv_sched_host_set_state(st, h1, GV_HOST_DRAINING);
	gv_sched_plan_clear(&plan);
	assert_int_equal(gv_sched_replan(st, 1000, &p, &plan), 0);
	assert_int_equal(plan.n_acts, 4);
	for (uint64_t id = 1; id <= 4; id++) {
		assert_int_equal(about(&plan, id)->act, GV_ACT_MOVE);
		assert_int_equal(about(&plan, id)->reason.why, GV_WHY_MOVE_DRAIN);
	}
	assert_string_equal(reason_of(st, &plan, 1),
			    "host h1 is draining: move to h2 (copy 100 s while it "
			    "runs, downtime 0.0 s, 95.4 MiB)");
	assert_int_equal(gv_sched_plan_apply(st, &plan, 1000), 4);
	assert_int_equal(gv_sched_host_get(st, h1)->n_jobs, 0);
	assert_int_equal(gv_sched_host_get(st, 1)->n_jobs, 2);
	assert_int_equal(gv_sched_host_get(st, 2)->n_jobs, 2);
	/* a draining host whose job fits nowhere: it says so */
	gv_sched_host_set_state(st, 1, GV_HOST_DRAINING);
	gv_sched_plan_clear(&plan);
	assert_int_equal(gv_sched_replan(st, 2000, &p, &plan), 0);
	assert_int_equal(plan.n_acts, 0);
	assert_string_equal(reason_of(st, &plan, 1),
			    "host h2 is draining, but no other host can take it now");
	/* with a drain budget */
	gv_sched_host_set_state(st, h1, GV_HOST_UP);
	p.max_drain_moves = 1;
	gv_sched_plan_clear(&plan);
	assert_int_equal(gv_sched_replan(st, 2000, &p, &plan), 0);
	assert_int_equal(plan.n_acts, 1);
	assert_int_equal(about(&plan, 2)->reason.why, GV_WHY_STAY_BUDGET);
	assert_string_equal(
	    reason_of(st, &plan, 2),
	    "host h2 is draining; this cycle's 1 drain moves are used, it moves next");
	/* a down host's jobs are not moved */
	gv_sched_host_set_state(st, 2, GV_HOST_DOWN);
	gv_sched_plan_clear(&plan);
	assert_int_equal(gv_sched_replan(st, 2000, &p, &plan), 0);
	assert_string_equal(
	    reason_of(st, &plan, 3),
	    "its host h3 is down: recovery from a checkpoint, not a move");
	gv_sched_plan_free(&plan);
	gv_sched_state_free(st);
}

static void test_locality_of_moves(void **state)
{
	/* the destination that holds the job's image costs less to move to */
	gv_sched_state *st = overloaded();
	gv_sched_params p = params();
	gv_sched_plan plan;
	gv_err e;
	uint32_t j;

	gv_sched_plan_init(&plan);
	host(st, "h0", 16, 0); /* first by name, lacks the image */
	assert_int_equal(gv_sched_host_set_image(st, 1, "img", 0), 0);
	gv_sched_job spec = {.id = 1,
			     .cpus = 2,
			     .memory = 100 * MB,
			     .walltime = 2000,
			     .image = "img",
			     .image_size = 50 * MB,
			     .disk_written = 10 * MB};
	assert_int_equal(gv_sched_job_add(st, &spec, &j, &e), 0);
	assert_int_equal(gv_sched_job_bind(st, j, 0, 0), 0);
	assert_int_equal(gv_sched_replan(st, 1000, &p, &plan), 0);
	const gv_sched_decision *d = about(&plan, 1);
	assert_int_equal(d->act, GV_ACT_MOVE);
	assert_string_equal(gv_sched_host_get(st, d->host)->name, "h2");
	assert_true(fabs(d->reason.v[2] - 110) < 1e-6); /* memory + its own disk writes */
	gv_sched_plan_free(&plan);
	gv_sched_state_free(st);
}

static void test_calibrate(void **state)
{
	gv_sched_cost c = {
	    .setup_s = 9, .rate_factor = 9, .mem_ratio = 1, .switchover_s = 9};
	gv_sched_move_sample s[4];

	/* migrations that took 2 s + bytes / (0.5 * rate), paused 0.3 s; half of
	 * the memory was sent */
	for (int i = 0; i < 4; i++) {
		double bytes = 1e8 * (i + 1), rate = 1e7 * (1 + i % 2);
		s[i] = (gv_sched_move_sample){bytes, rate,	2 + bytes / (0.5 * rate),
					      0.3,   2 * bytes, 0};
	}
	assert_int_equal(gv_sched_cost_calibrate(&c, s, 4), 0);
	assert_true(fabs(c.setup_s - 2) < 1e-6);
	assert_true(fabs(c.rate_factor - 0.5) < 1e-6);
	assert_true(fabs(c.switchover_s - 0.3) < 1e-9);
	assert_true(fabs(c.mem_ratio - 0.5) < 1e-9);
	/* one sample: the factor alone, with the setup kept */
	gv_sched_cost one = c;
	one.rate_factor = 1;
	assert_int_equal(gv_sched_cost_calibrate(&one, s, 1), 0);
	assert_true(fabs(one.rate_factor - 0.5) < 1e-6);
	assert_true(one.setup_s == 2);
	/* one sample faster than the setup believed: the setup becomes half
	 * of it, the factor what makes the other half the copy */
	gv_sched_cost fast = {.setup_s = 1, .rate_factor = 1, .mem_ratio = 1};
	gv_sched_move_sample quick = {1e8, 1.25e7, 1.0, 0.03, 2.5e8, 0};
	assert_int_equal(gv_sched_cost_calibrate(&fast, &quick, 1), 0);
	assert_true(fabs(fast.setup_s - 0.5) < 1e-9);
	assert_true(fabs(fast.rate_factor - 16) < 1e-9); /* 8 s of link in 0.5 s: bounded */
	quick.total_s = 4.5; /* now 4 s of copy: factor 2, setup kept */
	fast.setup_s = 0.5;
	assert_int_equal(gv_sched_cost_calibrate(&fast, &quick, 1), 0);
	assert_true(fabs(fast.setup_s - 0.5) < 1e-9);
	assert_true(fabs(fast.rate_factor - 2) < 1e-9);
	/* nothing usable */
	gv_sched_move_sample bad = {1e8, 0, 10, 0.3, 0, 0};
	assert_int_equal(gv_sched_cost_calibrate(&one, &bad, 1), -EINVAL);
	assert_int_equal(gv_sched_cost_calibrate(&one, NULL, 0), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cost_model),
	    cmocka_unit_test(test_move_when_gain_beats_cost),
	    cmocka_unit_test(test_no_move_without_gain),
	    cmocka_unit_test(test_budget_and_interval),
	    cmocka_unit_test(test_drain),
	    cmocka_unit_test(test_locality_of_moves),
	    cmocka_unit_test(test_calibrate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
