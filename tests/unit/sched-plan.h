/* SPDX-License-Identifier: MIT */
/* sched-plan.h - what the scheduling tests ask of a plan (cmocka). */
#ifndef GRIDVM_TEST_SCHED_PLAN_H
#define GRIDVM_TEST_SCHED_PLAN_H

#include <gridvm/sched/sched.h>

/* The decision about job @id in @plan (acts or held); fails the test if
 * there is none. */
static inline const gv_sched_decision *about(const gv_sched_plan *plan, uint64_t id)
{
	for (size_t i = 0; i < plan->n_acts; i++)
		if (plan->acts[i].job_id == id)
			return &plan->acts[i];
	for (size_t i = 0; i < plan->n_held; i++)
		if (plan->held[i].job_id == id)
			return &plan->held[i];
	fail_msg("no decision about job %llu", (unsigned long long)id);
	return NULL;
}

/* The host job @id is placed on by @plan, or "-". */
static inline const char *placed_on(gv_sched_state *st, const gv_sched_plan *plan, uint64_t id)
{
	const gv_sched_decision *d = about(plan, id);
	return d->act == GV_ACT_PLACE ? gv_sched_host_get(st, d->host)->name : "-";
}

/* The reason text of @plan's decision about job @id. */
static inline const char *reason_of(gv_sched_state *st, const gv_sched_plan *plan, uint64_t id)
{
	static char buf[512];
	return gv_sched_reason_text(st, about(plan, id), buf, sizeof buf);
}

#endif
