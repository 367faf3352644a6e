/* SPDX-License-Identifier: MIT */
/*
 * backfill.c - hosts over time, and the online cycle.
 *
 * A host's profile in a cycle lists what uses it when: each bound job from
 * its start to its estimated end (start + walltime; a job past its estimate
 * is expected to end overrun_grace seconds from now), the jobs placed in
 * this cycle, and reservations (EASY backfill) or planned starts (batch).
 * From it: does a job fit during [t, t + d), and the earliest t it does.
 *
 * The online cycle walks the queue in priority order and places each job
 * that fits. In strict order the first job that cannot start stops the
 * queue; with backfill it gets a reservation (the earliest time and host
 * where it fits, from the running jobs' estimates), up to `reservations`
 * jobs, and later jobs start only where they delay none (Slurm's backfill,
 * one host per job).
 */
#include "sched_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct sched_prof *sched_prof(gv_sched_state *st, uint32_t h)
{
	struct sched_prof *pf = &st->prof[h];

	if (pf->gen == st->cycle)
		return pf;
	const struct sched_host *H = &st->hosts[h];
	if (sched_grow((void **)&pf->v, &pf->cap, H->pub.n_jobs, sizeof *pf->v) < 0)
		return NULL;
	pf->n = 0;
	pf->n_future = 0;
	pf->ev_ok = false;
	for (uint32_t k = 0; k < H->pub.n_jobs; k++) {
		const gv_sched_job *job = &st->jobs[H->jobs[k]].pub;
		double e = job->start + sched_walltime(job, st->p);
		if (e <= st->now)
			e = st->now + st->p->overrun_grace;
		pf->v[pf->n++] = (struct sched_iv){
		    job->start, e, job->cpus, job->memory, job->disk, job->id, false};
	}
	pf->gen = st->cycle;
	return pf;
}

int sched_prof_add(gv_sched_state *st, uint32_t h, const struct sched_iv *iv)
{
	struct sched_prof *pf = sched_prof(st, h);

	if (!pf || sched_grow((void **)&pf->v, &pf->cap, pf->n + 1, sizeof *pf->v) < 0)
		return -ENOMEM;
	pf->v[pf->n++] = *iv;
	pf->n_future += iv->resv;
	pf->ev_ok = false;
	return 0;
}

/* By time only: scan() applies all the events of one instant together
 * (an interval ending at t and one starting at t do not overlap). */
static int ev_cmp(const void *a, const void *b)
{
	const struct sched_ev *x = a, *y = b;
	return x->t < y->t ? -1 : x->t > y->t;
}

static bool ev_build(struct sched_prof *pf)
{
	if (pf->ev_ok)
		return true;
	if (sched_grow((void **)&pf->ev, &pf->cap_ev, 2 * pf->n, sizeof *pf->ev) < 0)
		return false;
	pf->n_ev = 0;
	for (uint32_t i = 0; i < pf->n; i++) {
		const struct sched_iv *v = &pf->v[i];
		if (!(v->e > v->s))
			continue;
		pf->ev[pf->n_ev++] =
		    (struct sched_ev){v->s, v->cpus, (int64_t)v->mem, (int64_t)v->disk};
		pf->ev[pf->n_ev++] = (struct sched_ev){
		    v->e, -(int64_t)v->cpus, -(int64_t)v->mem, -(int64_t)v->disk};
	}
	qsort(pf->ev, pf->n_ev, sizeof *pf->ev, ev_cmp);
	pf->ev_ok = true;
	return true;
}

static bool room(const gv_sched_host *H, const gv_sched_job *job, int64_t uc, int64_t um,
		 int64_t ud)
{
	return uc + (int64_t)job->cpus <= (int64_t)H->cpus &&
	       um + (int64_t)job->memory <= (int64_t)H->memory &&
	       (!job->disk || ud + (int64_t)job->disk <= (int64_t)H->disk);
}

/* The earliest t >= t0 at which @job has room on @h during [t, t + dur);
 * with @only_t0, t0 or nothing. INFINITY for nothing. */
static double scan(gv_sched_state *st, uint32_t h, const gv_sched_job *job, double t0,
		   double dur, bool only_t0)
{
	struct sched_prof *pf = sched_prof(st, h);
	const gv_sched_host *H = &st->hosts[h].pub;

	if (!pf || !ev_build(pf))
		return INFINITY;
	int64_t uc = 0, um = 0, ud = 0;
	uint32_t i = 0;
	const struct sched_ev *ev = pf->ev;
	for (; i < pf->n_ev && ev[i].t <= t0; i++) {
		uc += ev[i].dc;
		um += ev[i].dm;
		ud += ev[i].dd;
	}
	double cand = t0;
	for (;;) {
		double next = i < pf->n_ev ? ev[i].t : INFINITY;
		if (!room(H, job, uc, um, ud)) {
			if (only_t0 || isinf(next))
				return INFINITY;
			cand = next;
		} else if (next >= cand + dur) {
			return cand;
		}
		for (double t = next; i < pf->n_ev && ev[i].t == t; i++) {
			uc += ev[i].dc;
			um += ev[i].dm;
			ud += ev[i].dd;
		}
	}
}

bool sched_prof_fits(gv_sched_state *st, uint32_t h, const gv_sched_job *job, double t,
		     double dur)
{
	return !isinf(scan(st, h, job, t, dur, true));
}

double sched_prof_earliest(gv_sched_state *st, uint32_t h, const gv_sched_job *job,
			   double dur)
{
	const struct sched_prof *pf = &st->prof[h];

	/* nothing planned ahead: use only falls, so fitting now is enough */
	if ((pf->gen != st->cycle || !pf->n_future) && sched_fits_now(&st->scr[h], job))
		return st->now;
	return scan(st, h, job, st->now, dur, false);
}

uint64_t sched_prof_blocker(gv_sched_state *st, uint32_t h, const gv_sched_job *job,
			    double dur)
{
	const struct sched_prof *pf = sched_prof(st, h);
	const struct sched_iv *first = NULL;

	for (uint32_t i = 0; pf && i < pf->n; i++) {
		const struct sched_iv *v = &pf->v[i];
		if (v->resv && v->s < st->now + dur && v->e > st->now &&
		    (!first || v->s < first->s))
			first = v;
	}
	return first ? first->job_id : 0;
}

/* ---- the online cycle ---- */

/* The host and time where @j starts soonest, given running jobs' estimates
 * and earlier reservations; GV_SCHED_NONE if no up host could run it. */
static uint32_t reserve(gv_sched_state *st, uint32_t j, double *start, double *end)
{
	const gv_sched_job *job = &st->jobs[j].pub;
	double wall = sched_walltime(job, st->p);
	uint32_t best = GV_SCHED_NONE;
	double best_t = INFINITY, best_dur = 0;

	for (uint32_t h = 0; h < st->n_hosts; h++) {
		if (st->hosts[h].pub.state != GV_HOST_UP || !sched_static_ok(st, j, h))
			continue;
		double dur = gv_sched_stage_time(st, j, h, st->p) + wall;
		double t = sched_prof_earliest(st, h, job, dur);
		if (t < best_t || (t == best_t && best != GV_SCHED_NONE && !isinf(t) &&
				   strcmp(st->hosts[h].name, st->hosts[best].name) < 0)) {
			best = h;
			best_t = t;
			best_dur = dur;
		}
	}
	if (isinf(best_t))
		return GV_SCHED_NONE;
	*start = best_t;
	*end = best_t + best_dur;
	return best;
}

static void decision_init(const gv_sched_state *st, uint32_t j, gv_sched_decision *d)
{
	memset(d, 0, sizeof *d);
	d->act = GV_ACT_WAIT;
	d->job = j;
	d->job_id = st->jobs[j].pub.id;
	d->host = d->from = GV_SCHED_NONE;
	d->reason.host = GV_SCHED_NONE;
}

int sched_online(gv_sched_state *st, const gv_sched_params *p, gv_sched_plan *plan)
{
	uint32_t n, n_resv = 0, blocker = GV_SCHED_NONE;
	uint64_t first_resv = 0;
	const uint32_t *order = sched_queue_order(st, p, &n);

	if (!order)
		return -ENOMEM;
	if (p->queue_depth && n > p->queue_depth)
		n = p->queue_depth;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t j = order[i];
		const gv_sched_job *job = &st->jobs[j].pub;
		gv_sched_decision d;

		decision_init(st, j, &d);
		if (sched_static_count(st, j) == 0) {
			d.reason = st->jobs[j].never;
			goto held;
		}
		if (p->queue == GV_SCHED_QUEUE_STRICT && blocker != GV_SCHED_NONE) {
			d.reason.why = GV_WHY_WAIT_ORDER;
			d.reason.other = st->jobs[blocker].pub.id;
			goto held;
		}
		uint32_t h = sched_pick_cycle(st, j, n_resv > 0, true, &d.reason);
		if (h != GV_SCHED_NONE) {
			double dur =
			    gv_sched_stage_time(st, j, h, p) + sched_walltime(job, p);
			if (n_resv) {
				d.reason.why = GV_WHY_BACKFILL;
				d.reason.other = first_resv;
			}
			d.act = GV_ACT_PLACE;
			d.host = h;
			d.start = st->now;
			if (sched_tentative(st, j, h, st->now, st->now + dur) < 0 ||
			    plan_push(plan, true, &d) < 0)
				return -ENOMEM;
			continue;
		}
		if (d.reason.why == GV_WHY_WAIT_HOSTS_DOWN)
			goto held; /* its hosts may not come back: it holds nobody up */
		if (d.reason.why == GV_WHY_WAIT_LOCALITY) {
			/* it could start now: it chooses to wait, holding nobody up */
			d.host = d.reason.host;
			d.start = st->now + d.reason.v[0];
			goto held;
		}
		if (p->queue == GV_SCHED_QUEUE_STRICT) {
			blocker = j;
		} else if (p->queue == GV_SCHED_QUEUE_BACKFILL &&
			   n_resv < p->reservations) {
			double s, e;
			uint32_t rh = reserve(st, j, &s, &e);
			if (rh != GV_SCHED_NONE) {
				if (sched_tentative(st, j, rh, s, e) < 0)
					return -ENOMEM;
				memset(&d.reason, 0, sizeof d.reason);
				d.reason.why = GV_WHY_RESERVED;
				d.reason.host = d.host = rh;
				d.reason.v[0] = s - st->now;
				d.start = s;
				if (!n_resv++)
					first_resv = job->id;
			}
		}
	held:
		if (plan_push(plan, false, &d) < 0)
			return -ENOMEM;
	}
	return 0;
}
