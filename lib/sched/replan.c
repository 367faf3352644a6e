/* SPDX-License-Identifier: MIT */
/*
 * replan.c - moves of running jobs, and the migration cost model.
 *
 * A move is worth it when the job finishes sooner: staying, its remaining
 * work R (walltime estimate minus time run) takes R / r_cur, where a host's
 * rate r = speed * min(1, cpus / load); moving, it runs on at the source
 * while its disk and memory are copied (copy_s, slowed by `overhead`),
 * stops for the downtime, and does the rest at the destination's rate:
 *
 *   gain = R / r_cur - R / r_dst        (what a free move would save)
 *   cost = finish_moving - R / r_dst    (what the move itself adds)
 *
 * so finish_staying - finish_moving = gain - cost, and a job moves when
 * gain > cost + move_margin. Jobs on draining hosts move regardless of gain
 * (to the host where they finish soonest). A budget of moves per cycle and
 * a minimum time between two moves of a job keep the grid from thrashing.
 */
#include "sched_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the cost model ---- */

void gv_sched_move_estimate(const gv_sched_cost *c, uint64_t memory, double dirty_rate,
			    uint64_t disk_missing, double rate, gv_sched_move_est *out)
{
	double r = rate * (c->rate_factor > 0 ? c->rate_factor : 1);
	double ratio = c->mem_ratio > 0 ? c->mem_ratio : 1;
	double mem = (double)memory * ratio; /* bytes the first round sends */
	double dirty = (dirty_rate > 0 ? dirty_rate : 0) * ratio;
	unsigned max_rounds = c->max_rounds ? c->max_rounds : 1;
	double x = mem, t = 0, bytes = (double)disk_missing;

	if (!(r > 0))
		r = 1;
	memset(out, 0, sizeof *out);
	/* pre-copy: each round sends what the previous one left dirty, until
	 * the rest fits in the downtime, the rounds run out, or it stops
	 * shrinking (the job dirties faster than the link sends) */
	do {
		double tr = x / r;
		t += tr;
		bytes += x;
		out->rounds++;
		double next = dirty * tr < mem ? dirty * tr : mem;
		bool shrinking = next < x;
		x = next;
		if (!shrinking)
			break;
	} while (x / r > c->max_downtime_s && out->rounds < max_rounds);
	out->converges = x / r <= c->max_downtime_s;
	out->copy_s = c->setup_s + (double)disk_missing / r + t;
	out->downtime_s = c->switchover_s + x / r;
	out->total_s = out->copy_s + out->downtime_s;
	out->bytes = bytes + x;
}

int gv_sched_cost_calibrate(gv_sched_cost *c, const gv_sched_move_sample *s, size_t n)
{
	double sx = 0, sy = 0, sxx = 0, sxy = 0, sd = 0, sr = 0;
	size_t k = 0, nd = 0, nr = 0;

	for (size_t i = 0; i < n; i++) {
		if (!(s[i].rate > 0) || !(s[i].total_s > 0) || !(s[i].bytes >= 0) ||
		    !isfinite(s[i].bytes) || !isfinite(s[i].total_s) ||
		    !isfinite(s[i].rate))
			continue;
		double x = s[i].bytes / s[i].rate;
		sx += x;
		sy += s[i].total_s;
		sxx += x * x;
		sxy += x * s[i].total_s;
		k++;
		if (s[i].downtime_s >= 0 && isfinite(s[i].downtime_s)) {
			sd += s[i].downtime_s;
			nd++;
		}
		if (s[i].memory > 0 && s[i].bytes >= s[i].disk_bytes) {
			sr += (s[i].bytes - s[i].disk_bytes) / s[i].memory;
			nr++;
		}
	}
	if (!k)
		return -EINVAL;
	double mx = sx / k, my = sy / k;
	double vxx = sxx / k - mx * mx, vxy = sxy / k - mx * my;
	double f = 0;
	if (k >= 2 && vxx > 1e-12 * (mx * mx + 1) && vxy > 0) {
		/* total_s = setup + (bytes / rate) / factor */
		double b = vxy / vxx, a = my - b * mx;
		f = 1 / b;
		if (a >= 0)
			c->setup_s = a;
		else
			f = 0; /* a negative setup: fall back to the factor alone */
	}
	if (f <= 0) {
		double left = sy - k * c->setup_s;
		if (left < 0.1 * sy) {
			/* the setup alone takes (nearly) all that was measured:
			 * it is shorter here; say half, the rest the copy */
			c->setup_s = 0.5 * sy / (double)k;
			left = 0.5 * sy;
		}
		f = left > 0 ? sx / left : 0;
	}
	/* a factor far from 1 says the link rates believed are off (a host
	 * without a measured rate has the default one); within bounds */
	if (f > 0)
		c->rate_factor = f < 0.01 ? 0.01 : f > 16 ? 16 : f;
	if (nd)
		c->switchover_s = sd / nd;
	if (nr) {
		double ratio = sr / nr;
		c->mem_ratio = ratio < 0.01 ? 0.01 : ratio > 4 ? 4 : ratio;
	}
	return 0;
}

/* ---- moves ---- */

static double host_rate(const gv_sched_host *H, double load)
{
	double cpus = H->cpus ? H->cpus : 1;
	return H->speed * (load > cpus ? cpus / load : 1);
}

static double remaining(const gv_sched_job *job, const gv_sched_params *p, double now)
{
	double r = sched_walltime(job, p) - (now - job->start);
	return r > 0 ? r : (p->overrun_grace > 0 ? p->overrun_grace : 1);
}

/* The destination where running job @j would finish soonest; *@r gets the
 * numbers (v: gain, cost, copy, downtime, bytes, rate here, rate there,
 * margin). GV_SCHED_NONE if no other host can take it. */
static uint32_t best_move(gv_sched_state *st, uint32_t j, gv_sched_reason *r)
{
	const gv_sched_job *job = &st->jobs[j].pub;
	const gv_sched_params *p = st->p;
	uint32_t cur = job->host, best = GV_SCHED_NONE;
	const gv_sched_host *Hc = &st->hosts[cur].pub;
	double R = remaining(job, p, st->now);
	double rc = host_rate(Hc, st->scr[cur].load);
	double o = p->cost.overhead < 0	     ? 0
		   : p->cost.overhead > 0.95 ? 0.95
					     : p->cost.overhead;
	double best_finish = INFINITY, best_rd = 1;
	gv_sched_move_est best_est;

	memset(&best_est, 0, sizeof best_est);
	for (uint32_t h = 0; h < st->n_hosts; h++) {
		const gv_sched_host *Hd = &st->hosts[h].pub;
		if (h == cur || Hd->state != GV_HOST_UP ||
		    !sched_fits_now(&st->scr[h], job) || !sched_static_ok(st, j, h))
			continue;
		double rd = host_rate(Hd, st->scr[h].load + job->cpus);
		double link = sched_link(Hc, p), ld = sched_link(Hd, p);
		gv_sched_move_est est;
		gv_sched_move_estimate(&p->cost, job->memory, job->dirty_rate,
				       gv_sched_host_missing(st, h, j) +
					   job->disk_written,
				       ld < link ? ld : link, &est);
		double left = R - est.copy_s * rc * (1 - o);
		double finish = left <= 0 ? R / (rc * (1 - o))
					  : est.copy_s + est.downtime_s + left / rd;
		if (finish < best_finish ||
		    (finish == best_finish && best != GV_SCHED_NONE &&
		     strcmp(st->hosts[h].name, st->hosts[best].name) < 0)) {
			best = h;
			best_finish = finish;
			best_rd = rd;
			best_est = est;
		}
	}
	memset(r, 0, sizeof *r);
	r->host = best;
	if (best == GV_SCHED_NONE)
		return best;
	r->v[0] = R / rc - R / best_rd;
	r->v[1] = best_finish - R / best_rd;
	r->v[2] = best_est.copy_s;
	r->v[3] = best_est.downtime_s;
	r->v[4] = best_est.bytes;
	r->v[5] = rc;
	r->v[6] = best_rd;
	r->v[7] = p->move_margin;
	return best;
}

static void tentative_move(gv_sched_state *st, uint32_t j, uint32_t from, uint32_t to)
{
	const gv_sched_job *job = &st->jobs[j].pub;
	struct sched_scr *d = &st->scr[to], *s = &st->scr[from];

	d->cpus = job->cpus > d->cpus ? 0 : d->cpus - job->cpus;
	d->mem = job->memory > d->mem ? 0 : d->mem - job->memory;
	d->disk = job->disk > d->disk ? 0 : d->disk - job->disk;
	d->load += job->cpus;
	s->cpus += job->cpus;
	s->mem += job->memory;
	s->disk += job->disk;
	s->load = s->load > job->cpus ? s->load - job->cpus : 0;
	st->max_dirty = true;
}

struct cand {
	uint32_t j;
	double net;
};

static int cand_cmp(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	if (x->net != y->net)
		return x->net > y->net ? -1 : 1;
	return x->j < y->j ? -1 : x->j > y->j;
}

static void stay_init(const gv_sched_state *st, uint32_t j, gv_sched_decision *d)
{
	memset(d, 0, sizeof *d);
	d->act = GV_ACT_STAY;
	d->job = j;
	d->job_id = st->jobs[j].pub.id;
	d->from = st->jobs[j].pub.host;
	d->host = GV_SCHED_NONE;
	d->reason.host = GV_SCHED_NONE;
}

static int emit_move(gv_sched_state *st, gv_sched_decision *d, gv_sched_why why,
		     gv_sched_plan *plan)
{
	d->act = GV_ACT_MOVE;
	d->reason.why = why;
	d->host = d->reason.host;
	d->start = st->now;
	tentative_move(st, d->job, d->from, d->host);
	return plan_push(plan, true, d);
}

/* Jobs on draining hosts: every one moves where a host can take it. */
static int replan_drain(gv_sched_state *st, const gv_sched_params *p, gv_sched_plan *plan)
{
	unsigned moves = 0;

	for (uint32_t j = 0; j < st->n_jobs; j++) {
		const gv_sched_job *job = gv_sched_job_get(st, j);
		if (!job || job->state != GV_JOB_RUNNING ||
		    st->hosts[job->host].pub.state != GV_HOST_DRAINING)
			continue;
		gv_sched_decision d;
		stay_init(st, j, &d);
		if (p->max_drain_moves && moves >= p->max_drain_moves) {
			d.reason.why = GV_WHY_STAY_BUDGET;
			d.reason.n[0] = p->max_drain_moves;
			d.reason.n[1] = 1;
		} else if (best_move(st, j, &d.reason) == GV_SCHED_NONE) {
			d.reason.why = GV_WHY_STAY_NO_DEST;
			d.reason.n[1] = 1;
		} else {
			moves++;
			if (emit_move(st, &d, GV_WHY_MOVE_DRAIN, plan) < 0)
				return -ENOMEM;
			continue;
		}
		if (plan_push(plan, false, &d) < 0)
			return -ENOMEM;
	}
	return 0;
}

int gv_sched_replan(gv_sched_state *st, double now, const gv_sched_params *p,
		    gv_sched_plan *plan)
{
	struct cand *c = NULL;
	uint32_t nc = 0;
	double max_speed = 0;
	int r = sched_cycle_begin(st, now, p);

	if (r < 0)
		return r;
	plan->now = now;
	if ((r = replan_drain(st, p, plan)) < 0)
		return r;
	for (uint32_t h = 0; h < st->n_hosts; h++)
		if (st->hosts[h].pub.state == GV_HOST_UP &&
		    st->hosts[h].pub.speed > max_speed)
			max_speed = st->hosts[h].pub.speed;
	c = malloc((st->n_jobs ? st->n_jobs : 1) * sizeof *c);
	if (!c)
		return -ENOMEM;
	for (uint32_t j = 0; j < st->n_jobs; j++) {
		const gv_sched_job *job = gv_sched_job_get(st, j);
		if (!job || job->state != GV_JOB_RUNNING)
			continue;
		gv_sched_host_state hs = st->hosts[job->host].pub.state;
		if (hs == GV_HOST_DRAINING)
			continue;
		gv_sched_decision d;
		stay_init(st, j, &d);
		if (hs == GV_HOST_DOWN) {
			d.reason.why = GV_WHY_STAY_HOST_DOWN;
			d.reason.host = job->host;
		} else if (job->moved && now - job->last_move < p->min_move_interval) {
			d.reason.why = GV_WHY_STAY_INTERVAL;
			d.reason.v[0] = now - job->last_move;
			d.reason.v[1] = p->min_move_interval;
		} else if (host_rate(&st->hosts[job->host].pub,
				     st->scr[job->host].load) >= max_speed) {
			d.reason.why =
			    GV_WHY_STAY_NO_GAIN; /* no host would run it faster */
		} else if (best_move(st, j, &d.reason) == GV_SCHED_NONE) {
			d.reason.why = GV_WHY_STAY_NO_DEST;
		} else if (d.reason.v[0] - d.reason.v[1] > p->move_margin) {
			c[nc++] = (struct cand){j, d.reason.v[0] - d.reason.v[1]};
			continue;
		} else {
			d.reason.why = GV_WHY_STAY_NO_GAIN;
		}
		if (plan_push(plan, false, &d) < 0)
			goto nomem;
	}
	/* the best moves first, each checked again against the moves before it */
	qsort(c, nc, sizeof *c, cand_cmp);
	unsigned moves = 0;
	for (uint32_t i = 0; i < nc; i++) {
		gv_sched_decision d;
		stay_init(st, c[i].j, &d);
		uint32_t h = best_move(st, c[i].j, &d.reason);
		bool worth =
		    h != GV_SCHED_NONE && d.reason.v[0] - d.reason.v[1] > p->move_margin;
		if (worth && moves < p->max_moves) {
			moves++;
			if (emit_move(st, &d, GV_WHY_MOVE_GAIN, plan) < 0)
				goto nomem;
			continue;
		}
		d.reason.why = !worth ? (h == GV_SCHED_NONE ? GV_WHY_STAY_NO_DEST
							    : GV_WHY_STAY_NO_GAIN)
				      : GV_WHY_STAY_BUDGET;
		d.reason.n[0] = p->max_moves;
		if (plan_push(plan, false, &d) < 0)
			goto nomem;
	}
	free(c);
	return 0;
nomem:
	free(c);
	return -ENOMEM;
}
