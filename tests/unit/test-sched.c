/* SPDX-License-Identifier: MIT */
/*
 * test-sched.c - the scheduling library on hand-built grids: each policy's
 * choice, requirements and rank, "never" against "not now" reasons, aging,
 * and plans checked and applied against a state that changed.
 */
#include <gridvm/sched/sched.h>

#include <errno.h>
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

static uint32_t host(gv_sched_state *st, const char *name, uint32_t cpus, uint64_t mem,
		     const char *attrs)
{
	json_t *a = attrs ? json_loads(attrs, 0, NULL) : NULL;
	gv_sched_host h = {
	    .name = name, .cpus = cpus, .memory = mem, .disk = 100 * GiB, .attrs = a};
	uint32_t idx;
	gv_err e;

	if (attrs)
		assert_non_null(a);
	assert_int_equal(gv_sched_host_add(st, &h, &idx, &e), 0);
	json_decref(a);
	return idx;
}

static uint32_t job(gv_sched_state *st, gv_sched_job spec)
{
	uint32_t idx;
	gv_err e;

	if (!spec.walltime)
		spec.walltime = 600;
	assert_int_equal(gv_sched_job_add(st, &spec, &idx, &e), 0);
	return idx;
}

/* A running job holding @cpus and @mem on @h. */
static uint32_t running(gv_sched_state *st, uint64_t id, uint32_t h, uint32_t cpus,
			uint64_t mem)
{
	uint32_t j = job(
	    st, (gv_sched_job){.id = id, .cpus = cpus, .memory = mem, .walltime = 1000});
	assert_int_equal(gv_sched_job_bind(st, j, h, 0), 0);
	return j;
}

static gv_sched_params params(gv_sched_policy pol)
{
	gv_sched_params p;
	gv_sched_params_default(&p);
	p.policy = pol;
	return p;
}

static const char *text(gv_sched_state *st, const gv_sched_decision *d)
{
	static char buf[512];
	return gv_sched_reason_text(st, d, buf, sizeof buf);
}

/* h1: 8 cpus, 6 used; h2: 8 cpus, empty; h3: 4 cpus, empty */
static gv_sched_state *three_hosts(void)
{
	gv_sched_state *st = gv_sched_state_new();
	assert_non_null(st);
	uint32_t h1 = host(st, "h1", 8, 16 * GiB, NULL);
	host(st, "h2", 8, 16 * GiB, NULL);
	host(st, "h3", 4, 8 * GiB, NULL);
	running(st, 100, h1, 6, 12 * GiB);
	return st;
}

static void test_pack(void **state)
{
	gv_sched_state *st = three_hosts();
	gv_sched_params p = params(GV_SCHED_PACK);
	gv_sched_plan plan;

	gv_sched_plan_init(&plan);
	job(st, (gv_sched_job){.id = 1, .cpus = 2, .memory = 2 * GiB});
	job(st, (gv_sched_job){.id = 2, .cpus = 2, .memory = 2 * GiB});
	assert_int_equal(gv_sched_schedule(st, 10, &p, &plan), 0);
	assert_int_equal(plan.n_acts, 2);
	/* the busy host first, then the smallest that is left */
	assert_string_equal(placed_on(st, &plan, 1), "h1");
	assert_string_equal(placed_on(st, &plan, 2), "h3");
	assert_string_equal(
	    text(st, about(&plan, 1)),
	    "pack: host h1 has 2 of 8 cpus and 4 GiB of 16 GiB free, fetches 0 B");
	gv_sched_plan_free(&plan);
	gv_sched_state_free(st);
}

static void test_spread(void **state)
{
	gv_sched_state *st = three_hosts();
	gv_sched_params p = params(GV_SCHED_SPREAD);
	gv_sched_plan plan;

	gv_sched_plan_init(&plan);
	job(st, (gv_sched_job){.id = 1, .cpus = 2, .memory = 2 * GiB});
	job(st, (gv_sched_job){.id = 2, .cpus = 2, .memory = 2 * GiB});
	assert_int_equal(gv_sched_schedule(st, 10, &p, &plan), 0);
	/* the emptiest host, and the next job sees the first one placed */
	assert_string_equal(placed_on(st, &plan, 1), "h2");
	assert_string_equal(placed_on(st, &plan, 2), "h2");
	assert_string_equal(
	    text(st, about(&plan, 1)),
	    "spread: host h2 has 8 of 8 cpus and 16 GiB of 16 GiB free, fetches 0 B");
	gv_sched_plan_free(&plan);
	gv_sched_state_free(st);
}

static void test_load(void **state)
{
	gv_sched_state *st = gv_sched_state_new();
	gv_sched_params p = params(GV_SCHED_LOAD);
	gv_sched_reason r;

	uint32_t a = host(st, "a", 8, 16 * GiB, NULL);
	uint32_t b = host(st, "b", 8, 16 * GiB, NULL);
	gv_sched_host_set_load(st, a, 6.5); /* busy with work the grid did not place */
	gv_sched_host_set_load(st, b, 1);
	uint32_t j = job(st, (gv_sched_job){.id = 1, .cpus = 2, .memory = GiB});
	assert_int_equal(gv_sched_pick(st, j, 0, &p, &r), b);
	gv_sched_decision d = {
	    .act = GV_ACT_PLACE, .job = j, .job_id = 1, .host = b, .reason = r};
	assert_string_equal(
	    text(st, &d),
	    "load: host b has load 1.00 on 8 cpus; "
	    "host b has 8 of 8 cpus and 16 GiB of 16 GiB free, fetches 0 B");
	/* pack does not look at the load: tie, by name */
	p.policy = GV_SCHED_PACK;
	assert_int_equal(gv_sched_pick(st, j, 0, &p, NULL), a);
	gv_sched_state_free(st);
}

static void test_locality(void **state)
{
	gv_sched_state *st = gv_sched_state_new();
	gv_sched_params p = params(GV_SCHED_LOCALITY);
	gv_sched_reason r;

	uint32_t a =
	    host(st, "a", 8, 16 * GiB, NULL); /* lacks the image (not recorded) */
	uint32_t b = host(st, "b", 8, 16 * GiB, NULL);
	uint32_t c = host(st, "c", 8, 16 * GiB, NULL);
	assert_int_equal(gv_sched_host_set_image(st, b, "bookworm", 100 * MiB), 0);
	assert_int_equal(gv_sched_host_set_image(st, c, "bookworm", 0), 0);
	uint32_t j = job(st, (gv_sched_job){.id = 1,
					    .cpus = 2,
					    .memory = GiB,
					    .image = "bookworm",
					    .image_size = 1000 * MiB});
	assert_int_equal(gv_sched_host_missing(st, a, j), 1000 * MiB);
	assert_int_equal(gv_sched_host_missing(st, b, j), 100 * MiB);
	assert_int_equal(gv_sched_pick(st, j, 0, &p, &r), c);
	assert_int_equal((int)r.v[4], 0);
	/* c full: the host lacking least (at the same link rate) */
	running(st, 50, c, 8, GiB);
	assert_int_equal(gv_sched_pick(st, j, 0, &p, &r), b);
	/* ... unless its link is slow: 100 MiB at 1 MB/s is slower than 1000 MiB at 100
	 * MB/s */
	gv_sched_host spec = *gv_sched_host_get(st, b);
	spec.link_rate = 1e6;
	gv_err e;
	assert_int_equal(gv_sched_host_update(st, b, &spec, &e), 0);
	spec = *gv_sched_host_get(st, a);
	spec.link_rate = 100e6;
	assert_int_equal(gv_sched_host_update(st, a, &spec, &e), 0);
	assert_int_equal(gv_sched_pick(st, j, 0, &p, &r), a);
	gv_sched_decision d = {
	    .act = GV_ACT_PLACE, .job = j, .job_id = 1, .host = a, .reason = r};
	assert_string_equal(
	    text(st, &d), "locality: host a starts it soonest (fetches 1000 MiB, 10 s); "
			  "host a has 8 of 8 cpus and 16 GiB of 16 GiB free, "
			  "fetches 1000 MiB (10 s)");
	/* pack ignores where the image is */
	p.policy = GV_SCHED_PACK;
	assert_int_equal(gv_sched_pick(st, j, 0, &p, NULL), a);
	/* a new report: b no longer holds any of it */
	gv_sched_host_clear_images(st, b);
	assert_int_equal(gv_sched_host_missing(st, b, j), 1000 * MiB);
	assert_int_equal(gv_sched_host_missing(st, c, j), 0);
	gv_sched_state_free(st);
}

/* A recovered job (gv_sched_job_set_checkpoint): among hosts as good
 * otherwise, one that holds its checkpoint, whatever the policy; its
 * missing bytes count the checkpoint on the others. */
static void test_checkpoint_holder(void **state)
{
	gv_sched_state *st = gv_sched_state_new();
	gv_sched_params p = params(GV_SCHED_PACK);

	uint32_t a = host(st, "a", 8, 16 * GiB, NULL);
	uint32_t b = host(st, "b", 8, 16 * GiB, NULL);
	uint32_t c = host(st, "c", 8, 16 * GiB, NULL);
	for (uint32_t h = a; h <= c; h++)
		assert_int_equal(gv_sched_host_set_image(st, h, "bookworm", 0), 0);
	uint32_t j = job(st, (gv_sched_job){.id = 1, .cpus = 2, .memory = GiB,
					    .image = "bookworm", .image_size = 1000 * MiB});
	assert_int_equal(gv_sched_pick(st, j, 0, &p, NULL), a); /* by name */
	assert_int_equal(gv_sched_job_set_checkpoint(st, j, "ckpt:1", 300 * MiB), 0);
	assert_int_equal(gv_sched_host_set_image(st, c, "ckpt:1", 0), 0);
	assert_int_equal(gv_sched_host_missing(st, a, j), 300 * MiB);
	assert_int_equal(gv_sched_host_missing(st, c, j), 0);
	assert_int_equal(gv_sched_pick(st, j, 0, &p, NULL), c);
	p.policy = GV_SCHED_SPREAD;
	assert_int_equal(gv_sched_pick(st, j, 0, &p, NULL), c);
	p.policy = GV_SCHED_LOCALITY;
	assert_int_equal(gv_sched_pick(st, j, 0, &p, NULL), c);
	/* ... but a better score wins: pack prefers the fuller host */
	p.policy = GV_SCHED_PACK;
	running(st, 50, b, 4, 4 * GiB);
	assert_int_equal(gv_sched_pick(st, j, 0, &p, NULL), b);
	/* the checkpoint no longer matters */
	assert_int_equal(gv_sched_job_set_checkpoint(st, j, NULL, 0), 0);
	assert_int_equal(gv_sched_host_missing(st, a, j), 0);
	p.policy = GV_SCHED_SPREAD;
	assert_int_equal(gv_sched_pick(st, j, 0, &p, NULL), a);
	gv_sched_state_free(st);
}

static void test_ties_by_name(void **state)
{
	gv_sched_state *st = gv_sched_state_new();
	gv_sched_params p = params(GV_SCHED_PACK);

	uint32_t b = host(st, "b", 4, 8 * GiB, NULL);
	uint32_t a = host(st, "a", 4, 8 * GiB, NULL);
	uint32_t j = job(st, (gv_sched_job){.id = 1, .cpus = 1, .memory = GiB});
	for (int pol = GV_SCHED_PACK; pol <= GV_SCHED_LOCALITY; pol++) {
		p.policy = (gv_sched_policy)pol;
		assert_int_equal(gv_sched_pick(st, j, 0, &p, NULL), a);
	}
	(void)b;
	gv_sched_state_free(st);
}

static void test_requirements(void **state)
{
	gv_sched_state *st = gv_sched_state_new();
	gv_sched_params p = params(GV_SCHED_SPREAD);
	gv_sched_plan plan;
	gv_expr *gpu, *arm;
	gv_err e;

	gv_sched_plan_init(&plan);
	host(st, "a", 16, 64 * GiB, "{\"arch\": \"x86_64\", \"labels\": []}");
	host(st, "b", 4, 8 * GiB,
	     "{\"arch\": \"x86_64\", \"labels\": [\"gpu\", \"cell\"]}");
	host(st, "c", 16, 64 * GiB, "{\"arch\": \"x86_64\"}");
	assert_int_equal(gv_expr_parse("\"gpu\" in labels", &gpu, &e), 0);
	assert_int_equal(gv_expr_parse("arch == \"arm64\"", &arm, &e), 0);
	job(st, (gv_sched_job){.id = 1, .cpus = 1, .memory = GiB, .requires = gpu});
	job(st, (gv_sched_job){.id = 2, .cpus = 1, .memory = GiB, .requires = arm});
	job(st, (gv_sched_job){.id = 3, .cpus = 8, .memory = GiB, .requires = gpu});
	assert_int_equal(gv_sched_schedule(st, 0, &p, &plan), 0);
	/* spread would take a or c; the label leaves only b */
	assert_string_equal(placed_on(st, &plan, 1), "b");
	const gv_sched_decision *d = about(&plan, 2);
	assert_int_equal(d->act, GV_ACT_WAIT);
	assert_int_equal(d->reason.why, GV_WHY_NEVER_EXPR);
	assert_true(gv_sched_why_is_never(d->reason.why));
	assert_string_equal(text(st, d),
			    "no host can ever satisfy the requirements "
			    "(none of the 3 hosts matches `arch == \"arm64\"`)");
	d = about(&plan, 3);
	assert_int_equal(d->reason.why, GV_WHY_NEVER_SIZE);
	assert_string_equal(text(st, d),
			    "no host can ever satisfy the requirements "
			    "(needs 8 cpus, the largest of the 1 hosts matching "
			    "`\"gpu\" in labels` has 4 cpus)");
	/* a host with the label joins: job 3 can run there */
	assert_int_equal(gv_sched_plan_apply(st, &plan, 0), 1);
	host(st, "d", 8, 16 * GiB, "{\"labels\": [\"gpu\"]}");
	gv_sched_plan_clear(&plan);
	assert_int_equal(gv_sched_schedule(st, 1, &p, &plan), 0);
	assert_string_equal(placed_on(st, &plan, 3), "d");
	gv_sched_plan_free(&plan);
	gv_sched_state_free(st);
	gv_expr_free(gpu);
	gv_expr_free(arm);
}

static void test_never_and_not_now(void **state)
{
	gv_sched_state *st = gv_sched_state_new();
	gv_sched_params p = params(GV_SCHED_PACK);
	gv_sched_plan plan;
	const gv_sched_decision *d;

	gv_sched_plan_init(&plan);
	p.queue = GV_SCHED_QUEUE_GREEDY;
	/* no hosts at all */
	job(st, (gv_sched_job){.id = 1, .cpus = 1, .memory = GiB});
	assert_int_equal(gv_sched_schedule(st, 0, &p, &plan), 0);
	assert_string_equal(
	    text(st, about(&plan, 1)),
	    "no host can ever satisfy the requirements (the grid has no hosts)");

	uint32_t a = host(st, "a", 8, 32 * GiB, NULL);
	uint32_t b = host(st, "b", 32, 8 * GiB, NULL);
	job(st,
	    (gv_sched_job){.id = 2, .cpus = 4, .memory = 64 * GiB}); /* never: memory */
	job(st, (gv_sched_job){.id = 3, .cpus = 64, .memory = GiB}); /* never: cpus */
	job(st, (gv_sched_job){
		    .id = 4, .cpus = 16, .memory = 16 * GiB}); /* never: not both */
	running(st, 100, a, 8, GiB);
	running(st, 101, b, 30, GiB);
	job(st,
	    (gv_sched_job){.id = 5, .cpus = 4, .memory = 4 * GiB}); /* not now: busy */
	gv_sched_plan_clear(&plan);
	assert_int_equal(gv_sched_schedule(st, 1, &p, &plan), 0);
	assert_int_equal(plan.n_acts, 1);
	assert_string_equal(placed_on(st, &plan, 1), "b");
	assert_string_equal(text(st, about(&plan, 2)),
			    "no host can ever satisfy the requirements "
			    "(needs 64 GiB memory, the largest host has 32 GiB)");
	assert_string_equal(text(st, about(&plan, 3)),
			    "no host can ever satisfy the requirements "
			    "(needs 64 cpus, the largest host has 32 cpus)");
	assert_string_equal(
	    text(st, about(&plan, 4)),
	    "no host can ever satisfy the requirements (needs 16 cpus and 16 GiB memory "
	    "on one host; no host has all of them)");
	d = about(&plan, 5);
	assert_int_equal(d->reason.why, GV_WHY_WAIT_RESOURCES);
	assert_false(gv_sched_why_is_never(d->reason.why));
	assert_string_equal(text(st, d),
			    "waiting for resources: needs 4 cpus and 4 GiB memory; "
			    "none of the 2 hosts that could run it has that free now");

	/* a has room for the cpus but not the memory, b the other way round */
	gv_sched_job_remove(st, gv_sched_job_find(st, 100));
	running(st, 102, a, 2, 30 * GiB);
	gv_sched_plan_clear(&plan);
	assert_int_equal(gv_sched_schedule(st, 2, &p, &plan), 0);
	assert_string_equal(
	    text(st, about(&plan, 5)),
	    "waiting for resources: needs 4 cpus and 4 GiB memory; none of the 2 hosts "
	    "that could run it has that free now (1 short of cpus, 1 short of memory)");

	/* not now either: every host that could run it is draining or down */
	gv_sched_host_set_state(st, a, GV_HOST_DRAINING);
	gv_sched_host_set_state(st, b, GV_HOST_DOWN);
	gv_sched_plan_clear(&plan);
	assert_int_equal(gv_sched_schedule(st, 3, &p, &plan), 0);
	assert_string_equal(
	    text(st, about(&plan, 5)),
	    "waiting: the 2 hosts that could run it are draining or down");
	/* and never stays never */
	assert_int_equal(about(&plan, 2)->reason.why, GV_WHY_NEVER_SIZE);
	gv_sched_plan_free(&plan);
	gv_sched_state_free(st);
}

static void test_rank(void **state)
{
	gv_sched_state *st = gv_sched_state_new();
	gv_sched_params p = params(GV_SCHED_PACK);
	gv_expr *kvm;
	gv_err e;
	gv_sched_reason r;

	uint32_t a = host(st, "a", 8, 16 * GiB, "{\"accel\": \"tcg\"}");
	uint32_t b = host(st, "b", 8, 16 * GiB, "{\"accel\": \"kvm\"}");
	uint32_t c = host(st, "c", 8, 16 * GiB, "{\"accel\": \"kvm\"}");
	running(st, 100, c, 1, GiB);
	assert_int_equal(gv_expr_parse("accel == \"kvm\"", &kvm, &e), 0);
	uint32_t j =
	    job(st, (gv_sched_job){.id = 1, .cpus = 2, .memory = GiB, .rank = kvm});
	/* pack: c is fuller; the rank only breaks the tie between a and b */
	assert_int_equal(gv_sched_pick(st, j, 0, &p, NULL), c);
	gv_sched_job_remove(st, gv_sched_job_find(st, 100));
	assert_int_equal(gv_sched_pick(st, j, 0, &p, &r), b);
	gv_sched_decision d = {
	    .act = GV_ACT_PLACE, .job = j, .job_id = 1, .host = b, .reason = r};
	assert_string_equal(text(st, &d),
			    "pack: host b has 8 of 8 cpus and 16 GiB of 16 GiB free, "
			    "fetches 0 B, rank 1");
	/* weighted, it beats pack's preference for the fuller host */
	running(st, 101, a, 4, GiB);
	assert_int_equal(gv_sched_pick(st, j, 0, &p, NULL), a);
	p.rank_weight = 50;
	assert_int_equal(gv_sched_pick(st, j, 0, &p, NULL), b);
	gv_sched_state_free(st);
	gv_expr_free(kvm);
}

static void test_aging(void **state)
{
	gv_sched_state *st = gv_sched_state_new();
	gv_sched_params p = params(GV_SCHED_PACK);
	gv_sched_plan plan;

	gv_sched_plan_init(&plan);
	p.aging_per_hour = 1;
	host(st, "a", 4, 8 * GiB, NULL);
	/* an old job of priority 0 against a new one of priority 10; one fits */
	job(st, (gv_sched_job){
		    .id = 1, .priority = 0, .submit = 0, .cpus = 4, .memory = GiB});
	uint32_t young = job(
	    st,
	    (gv_sched_job){
		.id = 2, .priority = 10, .submit = 5 * 3600.0, .cpus = 4, .memory = GiB});
	assert_true(gv_sched_priority(gv_sched_job_get(st, 0), 5 * 3600.0, &p) == 5.0);
	assert_int_equal(gv_sched_schedule(st, 5 * 3600.0, &p, &plan), 0);
	assert_string_equal(placed_on(st, &plan, 2), "a");
	assert_string_equal(placed_on(st, &plan, 1), "-");
	/* a young job of priority 10 arriving after 11 hours no longer passes it */
	gv_sched_job_remove(st, young);
	job(st, (gv_sched_job){.id = 3,
			       .priority = 10,
			       .submit = 11 * 3600.0,
			       .cpus = 4,
			       .memory = GiB});
	gv_sched_plan_clear(&plan);
	assert_int_equal(gv_sched_schedule(st, 11 * 3600.0, &p, &plan), 0);
	assert_string_equal(placed_on(st, &plan, 1), "a");
	assert_string_equal(placed_on(st, &plan, 3), "-");
	/* without aging priority alone decides */
	p.aging_per_hour = 0;
	gv_sched_plan_clear(&plan);
	assert_int_equal(gv_sched_schedule(st, 11 * 3600.0, &p, &plan), 0);
	assert_string_equal(placed_on(st, &plan, 3), "a");
	/* equal priority: the earlier submission, then the lower id */
	job(st, (gv_sched_job){.id = 5,
			       .priority = 10,
			       .submit = 11 * 3600.0,
			       .cpus = 4,
			       .memory = GiB});
	job(st, (gv_sched_job){.id = 4,
			       .priority = 10,
			       .submit = 11 * 3600.0,
			       .cpus = 4,
			       .memory = GiB});
	gv_sched_job_remove(st, gv_sched_job_find(st, 3));
	gv_sched_plan_clear(&plan);
	assert_int_equal(gv_sched_schedule(st, 11 * 3600.0, &p, &plan), 0);
	assert_string_equal(placed_on(st, &plan, 4), "a");
	gv_sched_plan_free(&plan);
	gv_sched_state_free(st);
}

static void test_apply(void **state)
{
	gv_sched_state *st = three_hosts();
	gv_sched_params p = params(GV_SCHED_PACK);
	gv_sched_plan plan;
	gv_sched_reason r;
	char buf[256];

	gv_sched_plan_init(&plan);
	uint32_t j1 = job(st, (gv_sched_job){.id = 1, .cpus = 2, .memory = 2 * GiB});
	uint32_t j2 = job(st, (gv_sched_job){.id = 2, .cpus = 2, .memory = 2 * GiB});
	assert_int_equal(gv_sched_schedule(st, 10, &p, &plan), 0);
	assert_int_equal(plan.n_acts, 2);
	/* the plan changed nothing */
	assert_int_equal(gv_sched_host_get(st, 0)->cpus_free, 2);
	assert_int_equal(gv_sched_job_get(st, j1)->state, GV_JOB_QUEUED);
	/* another controller bound job 2 meanwhile; h3 went down */
	assert_int_equal(gv_sched_job_bind(st, j2, 1, 5), 0);
	assert_int_equal(gv_sched_apply(st, &plan.acts[1], 10, &r), -ESTALE);
	gv_sched_decision d = plan.acts[1];
	d.reason = r;
	assert_string_equal(gv_sched_reason_text(st, &d, buf, sizeof buf),
			    "the job's state changed");
	gv_sched_host_set_state(st, 2, GV_HOST_DOWN);
	gv_sched_job_unbind(st, j2);
	assert_int_equal(gv_sched_check(st, &plan.acts[1], &r), -ESTALE);
	d.reason = r;
	assert_string_equal(gv_sched_reason_text(st, &d, buf, sizeof buf),
			    "host h3 is no longer up");
	/* the first still holds: applying reserves its resources */
	assert_int_equal(gv_sched_apply(st, &plan.acts[0], 10, &r), 0);
	const gv_sched_job *jb = gv_sched_job_get(st, j1);
	assert_int_equal(jb->state, GV_JOB_RUNNING);
	assert_int_equal(jb->host, 0);
	assert_true(jb->start == 10);
	assert_int_equal(gv_sched_host_get(st, 0)->cpus_free, 0);
	assert_int_equal(gv_sched_host_get(st, 0)->n_jobs, 2);
	/* twice: stale */
	assert_int_equal(gv_sched_apply(st, &plan.acts[0], 10, &r), -ESTALE);
	/* a placement whose room was taken meanwhile */
	gv_sched_decision late = {.act = GV_ACT_PLACE,
				  .job = j2,
				  .job_id = 2,
				  .host = 0,
				  .from = GV_SCHED_NONE};
	assert_int_equal(gv_sched_check(st, &late, &r), -ESTALE);
	late.reason = r;
	assert_string_equal(gv_sched_reason_text(st, &late, buf, sizeof buf),
			    "the job no longer fits on host h1");
	/* the next cycle sees it: job 2 goes to h2 (h1 full, h3 down) */
	gv_sched_plan_clear(&plan);
	assert_int_equal(gv_sched_schedule(st, 11, &p, &plan), 0);
	assert_int_equal(plan.n_acts, 1);
	assert_string_equal(placed_on(st, &plan, 2), "h2");
	assert_int_equal(gv_sched_plan_apply(st, &plan, 11), 1);
	assert_int_equal(gv_sched_host_get(st, 1)->cpus_free, 6);
	/* ending a job releases what it held */
	gv_sched_job_remove(st, j1);
	assert_int_equal(gv_sched_host_get(st, 0)->cpus_free, 2);
	assert_null(gv_sched_job_get(st, j1));
	gv_sched_plan_free(&plan);
	gv_sched_state_free(st);
}

static void test_model(void **state)
{
	gv_sched_state *st = gv_sched_state_new();
	gv_sched_host h = {.name = "a", .cpus = 4, .memory = GiB};
	gv_sched_params p;
	uint32_t idx;
	gv_err e;

	assert_int_equal(gv_sched_host_add(st, &h, &idx, &e), 0);
	assert_int_equal(gv_sched_host_add(st, &h, &idx, &e), -EEXIST);
	assert_non_null(strstr(e.msg, "already"));
	h.name = "";
	assert_int_equal(gv_sched_host_add(st, &h, &idx, &e), -EINVAL);
	assert_int_equal(gv_sched_host_find(st, "a"), 0);
	assert_int_equal(gv_sched_host_find(st, "zz"), GV_SCHED_NONE);
	assert_true(gv_sched_host_get(st, 0)->speed == 1.0);
	gv_sched_job spec = {.id = 7, .cpus = 1};
	assert_int_equal(gv_sched_job_add(st, &spec, &idx, &e), 0);
	assert_int_equal(gv_sched_job_add(st, &spec, &idx, &e), -EEXIST);
	spec.id = 8;
	spec.walltime = -1;
	assert_int_equal(gv_sched_job_add(st, &spec, &idx, &e), -EINVAL);
	/* slots are reused; the queue forgets the old job */
	gv_sched_job_remove(st, gv_sched_job_find(st, 7));
	assert_int_equal(gv_sched_job_find(st, 7), GV_SCHED_NONE);
	spec.walltime = 0;
	spec.cpus = 8; /* never fits */
	assert_int_equal(gv_sched_job_add(st, &spec, &idx, &e), 0);
	assert_int_equal(idx, 0);
	gv_sched_plan plan;
	gv_sched_plan_init(&plan);
	gv_sched_params_default(&p);
	assert_int_equal(gv_sched_schedule(st, 0, &p, &plan), 0);
	assert_int_equal(plan.n_acts + plan.n_held, 1);
	assert_int_equal(plan.held[0].job_id, 8);
	gv_sched_plan_free(&plan);
	/* names */
	gv_sched_policy pol;
	gv_sched_queue q;
	gv_sched_heuristic hx;
	assert_int_equal(gv_sched_policy_parse("locality", &pol, &e), 0);
	assert_int_equal(pol, GV_SCHED_LOCALITY);
	assert_int_equal(gv_sched_policy_parse("fastest", &pol, &e), -EINVAL);
	assert_string_equal(
	    e.msg, "unknown policy 'fastest' (one of: pack, spread, load, locality)");
	assert_int_equal(gv_sched_queue_parse("easy", &q, &e), 0);
	assert_int_equal(q, GV_SCHED_QUEUE_BACKFILL);
	assert_int_equal(gv_sched_queue_parse("fcfs", &q, &e), 0);
	assert_int_equal(q, GV_SCHED_QUEUE_STRICT);
	assert_int_equal(gv_sched_heuristic_parse("sufferage", &hx, &e), 0);
	assert_string_equal(gv_sched_heuristic_name(GV_SCHED_MAXMIN), "max-min");
	gv_sched_state_free(st);
	gv_sched_state_free(NULL);
}

/* Many jobs, many hosts: every placement fits, nothing is placed twice. */
static void test_bookkeeping(void **state)
{
	gv_sched_state *st = gv_sched_state_new();
	gv_sched_params p = params(GV_SCHED_SPREAD);
	gv_sched_plan plan;
	char name[16];

	gv_sched_plan_init(&plan);
	for (int i = 0; i < 50; i++) {
		snprintf(name, sizeof name, "h%02d", i);
		host(st, name, 4 + i % 5, (8 + i % 7) * GiB, NULL);
	}
	for (int i = 0; i < 400; i++)
		job(st, (gv_sched_job){.id = (uint64_t)i + 1,
				       .priority = i % 3,
				       .submit = i,
				       .cpus = 1 + i % 4,
				       .memory = (1 + i % 5) * GiB});
	for (int cycle = 0; cycle < 3; cycle++) {
		p.policy = (gv_sched_policy)cycle;
		size_t queued = 0;
		for (uint32_t j = 0; j < gv_sched_job_limit(st); j++) {
			const gv_sched_job *jb = gv_sched_job_get(st, j);
			queued += jb && jb->state == GV_JOB_QUEUED;
		}
		gv_sched_plan_clear(&plan);
		assert_int_equal(gv_sched_schedule(st, 1000 + cycle, &p, &plan), 0);
		/* every queued job is decided about exactly once */
		assert_int_equal(plan.n_acts + plan.n_held, queued);
		int n = gv_sched_plan_apply(st, &plan, 1000 + cycle);
		assert_int_equal(n, (int)plan.n_acts); /* no plan raced with itself */
		/* remove a few running jobs */
		for (uint32_t j = 0; j < gv_sched_job_limit(st); j += 7) {
			const gv_sched_job *jb = gv_sched_job_get(st, j);
			if (jb && jb->state == GV_JOB_RUNNING)
				gv_sched_job_remove(st, j);
		}
	}
	uint32_t cpus[50] = {0};
	for (uint32_t j = 0; j < gv_sched_job_limit(st); j++) {
		const gv_sched_job *jb = gv_sched_job_get(st, j);
		if (jb && jb->state == GV_JOB_RUNNING)
			cpus[jb->host] += jb->cpus;
	}
	for (uint32_t h = 0; h < 50; h++) {
		const gv_sched_host *H = gv_sched_host_get(st, h);
		assert_true(cpus[h] <= H->cpus);
		assert_int_equal(H->cpus_free, H->cpus - cpus[h]);
	}
	gv_sched_plan_free(&plan);
	gv_sched_state_free(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pack),
	    cmocka_unit_test(test_spread),
	    cmocka_unit_test(test_load),
	    cmocka_unit_test(test_locality),
	    cmocka_unit_test(test_checkpoint_holder),
	    cmocka_unit_test(test_ties_by_name),
	    cmocka_unit_test(test_requirements),
	    cmocka_unit_test(test_never_and_not_now),
	    cmocka_unit_test(test_rank),
	    cmocka_unit_test(test_aging),
	    cmocka_unit_test(test_apply),
	    cmocka_unit_test(test_model),
	    cmocka_unit_test(test_bookkeeping),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
