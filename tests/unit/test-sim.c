/* SPDX-License-Identifier: MIT */
/*
 * test-sim.c - the simulator on small hand-built grids with known answers
 * (FCFS against EASY backfill: exact waits and makespan; locality against
 * pack: exact bytes staged), its bookkeeping on a generated trace with
 * every feature on (every job starts and ends; no host over its capacity
 * at any event; the library's view matches the simulator's), and a run
 * repeated with the same seed giving the same answers.
 */
#include <gridvm/sched/sim.h>

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#define GiB (1ull << 30)

static void add_host(gv_sim *s, const char *name, uint32_t cpus, uint32_t layers)
{
	gv_sim_host h = {.cpus = cpus, .memory = 16 * GiB, .speed = 1, .site = 0,
			 .layers = layers};
	gv_err e;

	snprintf(h.name, sizeof h.name, "%s", name);
	if (gv_sim_add_host(s, &h, &e) < 0)
		fail_msg("%s", e.msg);
}

static void add_job(gv_sim *s, uint64_t id, double submit, uint32_t cpus, double run,
		    int image)
{
	gv_sim_job j = {.id = id, .submit = submit, .runtime = run, .walltime = run,
			.cpus = cpus, .memory = GiB, .image = image};
	gv_err e;

	if (gv_sim_add_job(s, &j, &e) < 0)
		fail_msg("%s", e.msg);
}

/* Two hosts of 4 cpus. J1 (3 cpus, 100 s) and J2 (3 cpus, 100 s) start at
 * once on a and b; J3 (4 cpus, 50 s) must wait for a to empty at 100; J4
 * (1 cpu, 20 s) fits now beside J1. FCFS holds J4 behind J3 until 100;
 * EASY starts it at 3, as it ends (23) long before J3's reservation. */
static gv_sim *easy_case(const char *policy, gv_sim_metrics *m)
{
	gv_sim_opts o;
	gv_err e;

	gv_sim_opts_default(&o);
	o.check = true;
	o.params.queue = !strcmp(policy, "fcfs") ? GV_SCHED_QUEUE_STRICT : GV_SCHED_QUEUE_BACKFILL;
	gv_sim *s = gv_sim_new(&o);
	assert_non_null(s);
	add_host(s, "a", 4, 0);
	add_host(s, "b", 4, 0);
	add_job(s, 1, 0, 3, 100, -1);
	add_job(s, 2, 1, 3, 100, -1);
	add_job(s, 3, 2, 4, 50, -1);
	add_job(s, 4, 3, 1, 20, -1);
	if (gv_sim_run(s, &e) < 0)
		fail_msg("%s", e.msg);
	gv_sim_metrics_get(s, m);
	return s;
}

static void expect_job(gv_sim *s, size_t i, double start, double end)
{
	gv_sim_result r;

	assert_int_equal(gv_sim_result_get(s, i, &r), 0);
	if (fabs(r.start - start) > 1e-9 || fabs(r.end - end) > 1e-9)
		fail_msg("job %zu: started %.3f ended %.3f; expected %.3f and %.3f", i + 1,
			 r.start, r.end, start, end);
	assert_int_equal(r.starts, 1);
}

static void test_fcfs(void **state)
{
	gv_sim_metrics m;
	gv_sim *s = easy_case("fcfs", &m);
	(void)state;

	expect_job(s, 0, 0, 100);
	expect_job(s, 1, 1, 101);
	expect_job(s, 2, 100, 150);
	expect_job(s, 3, 100, 120);
	assert_int_equal(m.jobs_completed, 4);
	assert_true(fabs(m.makespan_s - 150) < 1e-9);
	assert_true(fabs(m.wait_s_mean - (0 + 0 + 98 + 97) / 4.0) < 1e-9);
	/* (1 + 1 + 148/50 + 117/20) / 4 */
	assert_true(fabs(m.bounded_slowdown_mean - (2 + 2.96 + 5.85) / 4) < 1e-9);
	assert_int_equal(m.capacity_violations, 0);
	gv_sim_free(s);
}

static void test_easy(void **state)
{
	gv_sim_metrics m;
	gv_sim *s = easy_case("easy", &m);
	(void)state;

	expect_job(s, 0, 0, 100);
	expect_job(s, 1, 1, 101);
	expect_job(s, 2, 100, 150);
	expect_job(s, 3, 3, 23); /* backfilled */
	assert_true(fabs(m.makespan_s - 150) < 1e-9);
	assert_true(fabs(m.wait_s_mean - 98 / 4.0) < 1e-9);
	assert_true(fabs(m.bounded_slowdown_mean - (3 + 2.96) / 4) < 1e-9);
	/* utilization: 3*100 + 3*100 + 4*50 + 1*20 cpu-s of 8 cpus over 150 s */
	assert_true(fabs(m.utilization - 820.0 / 1200) < 1e-9);
	gv_sim_free(s);
}

/* Host "a" lacks everything, "b" holds bookworm-cuda: pack takes "a" (ties
 * go by name) and stages the whole image; locality takes "b". */
static void test_locality(void **state)
{
	unsigned cuda = 5;
	(void)state;

	for (int loc = 0; loc <= 1; loc++) {
		gv_sim_opts o;
		gv_sim_metrics m;
		gv_sim_result r;
		gv_err e;
		gv_sim_opts_default(&o);
		o.check = true;
		o.params.policy = loc ? GV_SCHED_LOCALITY : GV_SCHED_PACK;
		gv_sim *s = gv_sim_new(&o);
		add_host(s, "a", 4, 0);
		add_host(s, "b", 4, gv_sim_image_layers(cuda));
		add_job(s, 1, 0, 2, 100, (int)cuda);
		assert_int_equal(gv_sim_run(s, &e), 0);
		gv_sim_metrics_get(s, &m);
		assert_int_equal(gv_sim_result_get(s, 0, &r), 0);
		assert_int_equal(r.host, loc ? 1 : 0);
		if (loc) {
			assert_true(m.bytes_staged == 0);
			assert_true(fabs(r.end - 100) < 1e-9);
		} else {
			double bytes = (double)gv_sim_image_bytes(cuda);
			assert_true(m.bytes_staged == bytes);
			/* it runs after its image arrived over the campus link */
			double t = GV_SIM_STAGE_FIXED_S + bytes / gv_sim_site_get(0)->link_rate;
			assert_true(fabs(r.start - 0) < 1e-9 && fabs(r.end - (t + 100)) < 1e-6);
		}
		gv_sim_free(s);
	}
}

/* Two jobs of one image on one host: the second finds it there. */
static void test_image_cached(void **state)
{
	gv_sim_opts o;
	gv_sim_metrics m;
	gv_err e;
	(void)state;

	gv_sim_opts_default(&o);
	o.check = true;
	gv_sim *s = gv_sim_new(&o);
	add_host(s, "a", 4, 0);
	add_job(s, 1, 0, 2, 100, 1);
	add_job(s, 2, 500, 2, 100, 1);
	assert_int_equal(gv_sim_run(s, &e), 0);
	gv_sim_metrics_get(s, &m);
	assert_true(m.bytes_staged == (double)gv_sim_image_bytes(1));
	expect_job(s, 1, 500, 600);
	gv_sim_free(s);
}

/* A job checkpointed every 300 s loses what it did since its last
 * checkpoint when its host fails at 500 s, and finishes on the other
 * host from there after fetching its checkpoint. */
static void test_failure_checkpoint(void **state)
{
	gv_sim_opts o;
	gv_sim_metrics m;
	gv_sim_result r;
	gv_err e;
	(void)state;

	gv_sim_opts_default(&o);
	o.check = true;
	o.checkpoint_every = 300;
	o.repair_s = 1e6;
	gv_sim *s = gv_sim_new(&o);
	gv_sim_host a = {.name = "a", .cpus = 4, .memory = 16 * GiB, .speed = 1, .fail_at = 500};
	assert_int_equal(gv_sim_add_host(s, &a, &e), 0);
	add_host(s, "b", 4, 0);
	add_job(s, 1, 0, 1, 1000, -1);
	assert_int_equal(gv_sim_run(s, &e), 0);
	gv_sim_metrics_get(s, &m);
	assert_int_equal(gv_sim_result_get(s, 0, &r), 0);
	assert_int_equal(r.host, 1);
	assert_int_equal(r.starts, 2);
	assert_int_equal(m.failures, 1);
	assert_int_equal(m.restarts, 1);
	/* done at 500: 300 before the checkpoint, 500 - 300.15 after it */
	if (fabs(m.work_lost_s - (500 - 300 - GV_SIM_CKPT_PAUSE_S)) > 1e-6)
		fail_msg("work lost %.3f s", m.work_lost_s);
	/* restored on b: its checkpoint fetched, 700 s left, two more pauses */
	double fetch = (double)GiB * GV_SIM_CKPT_FIRST;
	double end = 500 + GV_SIM_STAGE_FIXED_S + fetch / gv_sim_site_get(0)->link_rate + 700 +
		     2 * GV_SIM_CKPT_PAUSE_S;
	if (fabs(r.end - end) > 1e-6)
		fail_msg("ended at %.3f, expected %.3f", r.end, end);
	assert_true(m.bytes_staged == fetch);
	gv_sim_free(s);
}

/* A generated trace on a small grid with everything on and the checks at
 * every event; the answers of two runs with one seed are the same. */
static void run_all(gv_sched_mode mode, gv_sim_metrics *m)
{
	enum { N = 400, H = 6 };
	gv_workload_opts wo = {.jobs = N, .seed = 11, .rate = 60};
	gv_workload w;
	gv_sim_host hosts[H];
	gv_sim_opts o;
	gv_err e;

	gv_sim_opts_default(&o);
	o.check = true;
	o.replan = true;
	o.fail_rate = 2;
	o.repair_s = 1800;
	o.checkpoint_every = 600;
	o.seed = 5;
	o.params.mode = mode;
	o.params.policy = GV_SCHED_LOCALITY;
	gv_sim *s = gv_sim_new(&o);
	assert_non_null(s);
	gv_sim_grid_make(hosts, H, 3);
	for (unsigned i = 0; i < H; i++) {
		hosts[i].shared = i % 2; /* background load: moves pay */
		assert_int_equal(gv_sim_add_host(s, &hosts[i], &e), 0);
	}
	assert_int_equal(gv_workload_init(&w, &wo), 0);
	gv_sim_swf_opts so = {.max_cpus = 16, .max_memory = 64 * GiB};
	for (unsigned i = 0; i < N; i++) {
		gv_swf_job sj;
		gv_sim_job j;
		bool cut;
		gv_workload_next(&w, &sj);
		assert_int_equal(gv_sim_job_from_swf(&sj, &so, &j, &cut), 1);
		assert_int_equal(gv_sim_add_job(s, &j, &e), 0);
	}
	gv_workload_free(&w);
	if (gv_sim_run(s, &e) < 0)
		fail_msg("%s", e.msg);
	gv_sim_metrics_get(s, m);
	assert_int_equal(m->jobs, N);
	assert_int_equal(m->jobs_completed, N); /* every job ended */
	assert_int_equal(m->capacity_violations, 0);
	for (unsigned i = 0; i < N; i++) {
		gv_sim_result r;
		assert_int_equal(gv_sim_result_get(s, i, &r), 0);
		assert_true(r.start >= 0 && r.end >= r.start);
		assert_true(r.starts >= 1); /* more than one only after a failure */
	}
	assert_true(m->restarts + N >= 1);
	gv_sim_free(s);
}

static void test_bookkeeping(void **state)
{
	gv_sim_metrics a, b;
	(void)state;

	run_all(GV_SCHED_ONLINE, &a);
	assert_true(a.failures > 0 && a.restarts > 0 && a.checkpoints > 0);
	assert_true(a.migrations > 0);
	assert_true(a.work_lost_s > 0);
	run_all(GV_SCHED_ONLINE, &b);
	assert_true(a.makespan_s == b.makespan_s && a.wait_s_mean == b.wait_s_mean &&
		    a.bytes_staged == b.bytes_staged && a.migrations == b.migrations &&
		    a.work_lost_s == b.work_lost_s);
	run_all(GV_SCHED_BATCH, &b);
	assert_true(b.failures > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fcfs),
	    cmocka_unit_test(test_easy),
	    cmocka_unit_test(test_locality),
	    cmocka_unit_test(test_image_cached),
	    cmocka_unit_test(test_failure_checkpoint),
	    cmocka_unit_test(test_bookkeeping),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
