/* SPDX-License-Identifier: MIT */
/*
 * test-sched-locality.c - delay scheduling (params' locality_wait) on
 * hand-built grids: a job whose image only a busy host holds waits for
 * it up to the wait, counted from the first cycle it declined a host,
 * takes it when it frees in time, goes elsewhere after; hosts lacking a
 * little of the image count as holding it; without the wait, or without
 * a host that holds more of the image than the others, nobody waits.
 */
#include <gridvm/sched/sched.h>

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
	gv_sched_host h = {
	    .name = name, .cpus = cpus, .memory = 64 * GiB, .disk = 100 * GiB, .link_rate = 1e7};
	uint32_t idx;
	gv_err e;

	assert_int_equal(gv_sched_host_add(st, &h, &idx, &e), 0);
	return idx;
}

static uint32_t job(gv_sched_state *st, uint64_t id, uint32_t cpus, const char *image,
		    double submit)
{
	gv_sched_job spec = {.id = id,
			     .cpus = cpus,
			     .memory = GiB,
			     .walltime = 600,
			     .submit = submit,
			     .image = image,
			     .image_size = image ? GiB : 0};
	uint32_t idx;
	gv_err e;

	assert_int_equal(gv_sched_job_add(st, &spec, &idx, &e), 0);
	return idx;
}

/* h1 (4 cpus) holds image "img" but a job fills it until t=1000; h2 (16
 * cpus) lacks it whole. Queued at t=90: job 1 (img), job 2 (no image). */
struct grid {
	gv_sched_state *st;
	uint32_t h1, h2, busy;
};

static struct grid grid(void)
{
	struct grid g = {gv_sched_state_new(), 0, 0, 0};

	assert_non_null(g.st);
	g.h1 = host(g.st, "h1", 4);
	g.h2 = host(g.st, "h2", 16);
	assert_int_equal(gv_sched_host_set_image(g.st, g.h1, "img", 0), 0);
	g.busy = job(g.st, 100, 4, NULL, 0);
	assert_int_equal(gv_sched_job_bind(g.st, g.busy, g.h1, 0), 0);
	job(g.st, 1, 1, "img", 90);
	job(g.st, 2, 1, NULL, 91);
	return g;
}

static gv_sched_params params(double wait)
{
	gv_sched_params p;
	gv_sched_params_default(&p);
	p.policy = GV_SCHED_SPREAD; /* prefers h2, the bigger host, for itself */
	p.locality_wait = wait;
	return p;
}

/* One cycle at @now, applied; the plan stays for the caller to read. */
static void cycle(gv_sched_state *st, double now, const gv_sched_params *p,
		  gv_sched_plan *plan)
{
	gv_sched_plan_clear(plan);
	assert_int_equal(gv_sched_schedule(st, now, p, plan), 0);
	assert_int_equal(gv_sched_plan_apply(st, plan, now), (int)plan->n_acts);
}

static void waits_then_goes_elsewhere(void **state)
{
	struct grid g = grid();
	gv_sched_params p = params(60);
	gv_sched_plan plan;

	gv_sched_plan_init(&plan);
	cycle(g.st, 100, &p, &plan);
	const gv_sched_decision *d = about(&plan, 1);
	assert_int_equal(d->act, GV_ACT_WAIT);
	assert_int_equal(d->reason.why, GV_WHY_WAIT_LOCALITY);
	assert_string_equal(gv_sched_why_name(d->reason.why), "locality");
	assert_int_equal(d->host, g.h1);
	assert_true(d->start == 160); /* when it takes any host */
	assert_string_equal(reason_of(g.st, &plan, 1),
			    "waiting for a host that holds its image (locality wait: 60 s left of "
			    "60 s): host h1 lacks 0 B of it but has no room; the 1 host with room "
			    "lacks 1 GiB or more");
	/* the waiting job holds nobody up */
	assert_string_equal(placed_on(g.st, &plan, 2), "h2");

	/* the wait counts from the first cycle it declined, not from now */
	cycle(g.st, 130, &p, &plan);
	d = about(&plan, 1);
	assert_int_equal(d->reason.why, GV_WHY_WAIT_LOCALITY);
	assert_true(d->reason.v[0] == 30);
	assert_string_equal(placed_on(g.st, &plan, 1), "-");

	/* after the wait: the policy's host, lacking the image or not */
	cycle(g.st, 160, &p, &plan);
	assert_string_equal(placed_on(g.st, &plan, 1), "h2");
	gv_sched_plan_free(&plan);
	gv_sched_state_free(g.st);
}

static void takes_the_local_host_when_it_frees_in_time(void **state)
{
	struct grid g = grid();
	gv_sched_params p = params(60);
	gv_sched_plan plan;

	gv_sched_plan_init(&plan);
	cycle(g.st, 100, &p, &plan);
	assert_int_equal(about(&plan, 1)->reason.why, GV_WHY_WAIT_LOCALITY);
	gv_sched_job_remove(g.st, g.busy); /* h1 frees at t=120 */
	cycle(g.st, 120, &p, &plan);
	/* spread alone would pick h2 (15 of 16 cpus free against 4 of 4) */
	assert_string_equal(placed_on(g.st, &plan, 1), "h1");
	assert_int_equal(about(&plan, 1)->reason.why, GV_WHY_PLACE);
	gv_sched_plan_free(&plan);
	gv_sched_state_free(g.st);
}

static void off_by_default(void **state)
{
	struct grid g = grid();
	gv_sched_params p;
	gv_sched_plan plan;

	gv_sched_params_default(&p);
	assert_true(p.locality_wait == 0);
	p = params(0);
	gv_sched_plan_init(&plan);
	cycle(g.st, 100, &p, &plan);
	assert_string_equal(placed_on(g.st, &plan, 1), "h2");
	gv_sched_plan_free(&plan);
	gv_sched_state_free(g.st);
}

/* Lacking a tenth of the image or less more than the best host counts as
 * holding it: no wait. */
static void most_of_the_image_is_enough(void **state)
{
	struct grid g = grid();
	gv_sched_params p = params(60);
	gv_sched_plan plan;

	assert_int_equal(gv_sched_host_set_image(g.st, g.h2, "img", 100 * MiB), 0);
	gv_sched_plan_init(&plan);
	cycle(g.st, 100, &p, &plan);
	assert_string_equal(placed_on(g.st, &plan, 1), "h2");
	gv_sched_plan_free(&plan);
	gv_sched_state_free(g.st);

	/* 200 MiB lacking is more than a tenth more: it waits */
	g = grid();
	assert_int_equal(gv_sched_host_set_image(g.st, g.h2, "img", 200 * MiB), 0);
	gv_sched_plan_init(&plan);
	cycle(g.st, 100, &p, &plan);
	assert_int_equal(about(&plan, 1)->reason.why, GV_WHY_WAIT_LOCALITY);
	gv_sched_plan_free(&plan);
	gv_sched_state_free(g.st);
}

/* No host holds more of the image than the one with room (nor does a
 * down one count): nothing to wait for. */
static void nothing_to_wait_for(void **state)
{
	struct grid g = grid();
	gv_sched_params p = params(60);
	gv_sched_plan plan;

	gv_sched_host_set_state(g.st, g.h1, GV_HOST_DOWN);
	gv_sched_plan_init(&plan);
	cycle(g.st, 100, &p, &plan);
	assert_string_equal(placed_on(g.st, &plan, 1), "h2");
	gv_sched_plan_free(&plan);
	gv_sched_state_free(g.st);
}

/* A job that ran and is queued again waits anew, from its new decline. */
static void a_requeued_job_waits_anew(void **state)
{
	struct grid g = grid();
	gv_sched_params p = params(60);
	gv_sched_plan plan;

	gv_sched_plan_init(&plan);
	cycle(g.st, 100, &p, &plan);
	cycle(g.st, 160, &p, &plan);
	assert_string_equal(placed_on(g.st, &plan, 1), "h2");
	uint32_t j = gv_sched_job_find(g.st, 1);
	gv_sched_job_unbind(g.st, j); /* e.g. its host failed */
	cycle(g.st, 500, &p, &plan);
	const gv_sched_decision *d = about(&plan, 1);
	assert_int_equal(d->reason.why, GV_WHY_WAIT_LOCALITY);
	assert_true(d->reason.v[0] == 60);
	gv_sched_plan_free(&plan);
	gv_sched_state_free(g.st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(waits_then_goes_elsewhere),
	    cmocka_unit_test(takes_the_local_host_when_it_frees_in_time),
	    cmocka_unit_test(off_by_default),
	    cmocka_unit_test(most_of_the_image_is_enough),
	    cmocka_unit_test(nothing_to_wait_for),
	    cmocka_unit_test(a_requeued_job_waits_anew),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
