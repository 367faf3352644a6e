/* SPDX-License-Identifier: MIT */
/*
 * batch.c - batch mode: the head of the queue (batch_max jobs in priority
 * order) planned together over estimated completion times,
 *
 *   ECT(j, h) = earliest start of j on h (host profiles: running jobs'
 *               estimates and the jobs planned before it)
 *             + staging time of j's image on h + j's walltime,
 *
 * with one of the classic list heuristics (Ibarra and Kim; Maheswaran et
 * al.): min-min assigns first the job whose best ECT is smallest, max-min
 * the job whose best ECT is largest, sufferage the job that would lose the
 * most if it did not get its best host (second best ECT - best ECT). The
 * jobs planned to start now are placed; the others wait with their planned
 * host and start. With backfill, jobs behind the batch start now where they
 * delay no planned start.
 *
 * After an assignment to host h only h got worse, so a job's best and
 * second-best hosts stay right unless one of them was h: only those jobs
 * are recomputed (O(batch * hosts) per assignment at worst).
 */
#include "sched_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct bjob {
	uint32_t j;
	uint32_t best, second; /* hosts */
	double best_ect, second_ect, best_start, best_dur;
	bool done;
};

static void bjob_eval(gv_sched_state *st, struct bjob *b)
{
	const gv_sched_job *job = &st->jobs[b->j].pub;
	double wall = sched_walltime(job, st->p);

	b->best = b->second = GV_SCHED_NONE;
	b->best_ect = b->second_ect = INFINITY;
	for (uint32_t h = 0; h < st->n_hosts; h++) {
		if (st->hosts[h].pub.state != GV_HOST_UP || !sched_static_ok(st, b->j, h))
			continue;
		double dur = gv_sched_stage_time(st, b->j, h, st->p) + wall;
		double s = sched_prof_earliest(st, h, job, dur);
		double ect = s + dur;
		if (isinf(ect))
			continue;
		/* ties: by host name */
		if (ect < b->best_ect ||
		    (ect == b->best_ect &&
		     strcmp(st->hosts[h].name, st->hosts[b->best].name) < 0)) {
			b->second = b->best;
			b->second_ect = b->best_ect;
			b->best = h;
			b->best_ect = ect;
			b->best_start = s;
			b->best_dur = dur;
		} else if (ect < b->second_ect ||
			   (ect == b->second_ect &&
			    strcmp(st->hosts[h].name, st->hosts[b->second].name) < 0)) {
			b->second = h;
			b->second_ect = ect;
		}
	}
}

/* Which unassigned job goes next; -1 when none can be planned. */
static int choose(const struct bjob *b, uint32_t n, gv_sched_heuristic hx)
{
	int k = -1;
	double kv = 0;

	for (uint32_t i = 0; i < n; i++) {
		if (b[i].done || b[i].best == GV_SCHED_NONE)
			continue;
		double v;
		switch (hx) {
		case GV_SCHED_MAXMIN:
			v = b[i].best_ect;
			break;
		case GV_SCHED_SUFFERAGE:
			v = b[i].second_ect - b[i].best_ect; /* INFINITY: only one host */
			break;
		default:
			v = -b[i].best_ect;
			break;
		}
		/* strictly better only: ties keep the queue's order */
		if (k < 0 || v > kv) {
			k = (int)i;
			kv = v;
		}
	}
	return k;
}

static void batch_reason(gv_sched_state *st, const struct bjob *b, gv_sched_heuristic hx,
			 gv_sched_reason *r)
{
	const gv_sched_job *job = &st->jobs[b->j].pub;

	memset(r, 0, sizeof *r);
	r->policy = (uint8_t)hx;
	r->host = b->best;
	r->v[0] = b->best_ect - st->now;
	r->v[1] = gv_sched_stage_time(st, b->j, b->best, st->p);
	r->v[2] = sched_walltime(job, st->p);
	r->v[3] = b->best_start - st->now;
	r->v[4] = (double)gv_sched_host_missing(st, b->best, b->j);
	r->v[5] = b->second == GV_SCHED_NONE ? -1 : b->second_ect - st->now;
	r->n[0] = b->second != GV_SCHED_NONE;
	r->why = b->best_start <= st->now ? GV_WHY_BATCH : GV_WHY_WAIT_BATCH;
}

static void dinit(const gv_sched_state *st, uint32_t j, gv_sched_decision *d)
{
	memset(d, 0, sizeof *d);
	d->act = GV_ACT_WAIT;
	d->job = j;
	d->job_id = st->jobs[j].pub.id;
	d->host = d->from = GV_SCHED_NONE;
	d->reason.host = GV_SCHED_NONE;
}

/* Plan @b[0..nb) and emit the decisions. */
static int plan_batch(gv_sched_state *st, const gv_sched_params *p, struct bjob *b,
		      uint32_t nb, gv_sched_plan *plan, uint64_t *first_wait,
		      bool *any_wait)
{
	for (uint32_t i = 0; i < nb; i++)
		bjob_eval(st, &b[i]);
	for (uint32_t step = 0; step < nb; step++) {
		int k = choose(b, nb, p->heuristic);
		if (k < 0)
			break;
		struct bjob *x = &b[k];
		gv_sched_decision d;
		dinit(st, x->j, &d);
		batch_reason(st, x, p->heuristic, &d.reason);
		d.host = x->best;
		d.start = x->best_start;
		if (d.reason.why == GV_WHY_BATCH)
			d.act = GV_ACT_PLACE;
		if (sched_tentative(st, x->j, x->best, x->best_start,
				    x->best_start + x->best_dur) < 0 ||
		    plan_push(plan, d.act == GV_ACT_PLACE, &d) < 0)
			return -ENOMEM;
		if (d.act != GV_ACT_PLACE && !*any_wait) {
			*any_wait = true;
			*first_wait = d.job_id;
		}
		x->done = true;
		uint32_t h = x->best;
		for (uint32_t i = 0; i < nb; i++)
			if (!b[i].done && (b[i].best == h || b[i].second == h))
				bjob_eval(st, &b[i]);
	}
	/* any left could not be planned on any up host */
	for (uint32_t i = 0; i < nb; i++) {
		if (b[i].done)
			continue;
		gv_sched_decision d;
		dinit(st, b[i].j, &d);
		d.reason.why = GV_WHY_WAIT_HOSTS_DOWN;
		d.reason.n[0] = sched_static_count(st, b[i].j);
		if (plan_push(plan, false, &d) < 0)
			return -ENOMEM;
	}
	return 0;
}

int sched_batch(gv_sched_state *st, const gv_sched_params *p, gv_sched_plan *plan)
{
	uint32_t n, nb = 0, i;
	const uint32_t *order = sched_queue_order(st, p, &n);
	uint32_t bmax = p->batch_max ? p->batch_max : 1;
	uint64_t first_wait = 0;
	bool any_wait = false;
	int r = 0;

	if (!order)
		return -ENOMEM;
	if (p->queue_depth && n > p->queue_depth)
		n = p->queue_depth;
	struct bjob *b = calloc(bmax < n ? bmax : (n ? n : 1), sizeof *b);
	if (!b)
		return -ENOMEM;
	/* the batch: the first bmax jobs that some up host could run */
	for (i = 0; i < n && nb < bmax; i++) {
		uint32_t j = order[i];
		gv_sched_decision d;
		dinit(st, j, &d);
		if (sched_static_count(st, j) == 0) {
			d.reason = st->jobs[j].never;
		} else if (!sched_static_any_up(st, j)) {
			d.reason.why = GV_WHY_WAIT_HOSTS_DOWN;
			d.reason.n[0] = sched_static_count(st, j);
		} else {
			b[nb++].j = j;
			continue;
		}
		if (plan_push(plan, false, &d) < 0) {
			r = -ENOMEM;
			goto out;
		}
	}
	if ((r = plan_batch(st, p, b, nb, plan, &first_wait, &any_wait)) < 0)
		goto out;
	/* behind the batch */
	for (; i < n; i++) {
		uint32_t j = order[i];
		gv_sched_decision d;
		dinit(st, j, &d);
		if (sched_static_count(st, j) == 0) {
			d.reason = st->jobs[j].never;
		} else if (p->queue != GV_SCHED_QUEUE_BACKFILL) {
			d.reason.why = GV_WHY_WAIT_NEXT_BATCH;
			d.reason.n[0] = nb;
		} else {
			uint32_t h = sched_pick_cycle(st, j, true, false, &d.reason);
			if (h != GV_SCHED_NONE) {
				const gv_sched_job *job = &st->jobs[j].pub;
				double dur = gv_sched_stage_time(st, j, h, p) +
					     sched_walltime(job, p);
				d.act = GV_ACT_PLACE;
				d.host = h;
				d.start = st->now;
				if (any_wait) {
					d.reason.why = GV_WHY_BACKFILL;
					d.reason.other = first_wait;
				}
				if (sched_tentative(st, j, h, st->now, st->now + dur) <
				    0) {
					r = -ENOMEM;
					goto out;
				}
			} else if (d.reason.why == GV_WHY_WAIT_RESOURCES ||
				   d.reason.why == GV_WHY_WAIT_RESERVATION) {
				/* not now: it is planned with the next batch */
				uint64_t other = d.reason.other;
				gv_sched_why w = d.reason.why;
				memset(&d.reason, 0, sizeof d.reason);
				d.reason.host = GV_SCHED_NONE;
				d.reason.why = w == GV_WHY_WAIT_RESERVATION
						   ? w
						   : GV_WHY_WAIT_NEXT_BATCH;
				d.reason.other = other;
				d.reason.n[0] = nb;
			}
		}
		if (plan_push(plan, d.act == GV_ACT_PLACE, &d) < 0) {
			r = -ENOMEM;
			goto out;
		}
	}
out:
	free(b);
	return r;
}
