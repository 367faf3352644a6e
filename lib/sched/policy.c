/* SPDX-License-Identifier: MIT */
/*
 * policy.c - one placement: the filters (could the host ever run the job:
 * capacity and requirements; is it up; does the job fit in what is free
 * now; would it delay a reservation), the score of each policy (0..100,
 * higher is better), the rank expression, ties by host name; and why no
 * host was chosen ("never" against "not now").
 */
#include "sched_internal.h"

#include <errno.h>
#include <math.h>
#include <string.h>

/* ---- the cycle's scratch ---- */

int sched_cycle_begin(gv_sched_state *st, double now, const gv_sched_params *p)
{
	uint32_t old = st->cap_prof;

	if (sched_grow((void **)&st->scr, &st->cap_scr, st->n_hosts, sizeof *st->scr) <
		0 ||
	    sched_grow((void **)&st->prof, &st->cap_prof, st->n_hosts, sizeof *st->prof) <
		0)
		return -ENOMEM;
	if (st->cap_prof > old)
		memset(&st->prof[old], 0, (st->cap_prof - old) * sizeof *st->prof);
	st->now = now;
	st->p = p;
	if (++st->cycle == 0) /* gen 0 means "never built" */
		st->cycle = 1;
	for (uint32_t h = 0; h < st->n_hosts; h++) {
		const gv_sched_host *H = &st->hosts[h].pub;
		st->scr[h] = (struct sched_scr){H->cpus_free, H->memory_free,
						H->disk_free, H->load};
	}
	st->max_dirty = true;
	return 0;
}

static void max_update(gv_sched_state *st)
{
	if (!st->max_dirty)
		return;
	st->max_cpus = 0;
	st->max_mem = st->max_disk = 0;
	for (uint32_t h = 0; h < st->n_hosts; h++) {
		if (st->hosts[h].pub.state != GV_HOST_UP)
			continue;
		const struct sched_scr *sc = &st->scr[h];
		if (sc->cpus > st->max_cpus)
			st->max_cpus = sc->cpus;
		if (sc->mem > st->max_mem)
			st->max_mem = sc->mem;
		if (sc->disk > st->max_disk)
			st->max_disk = sc->disk;
	}
	st->max_dirty = false;
}

bool sched_fits_now(const struct sched_scr *sc, const gv_sched_job *job)
{
	return sc->cpus >= job->cpus && sc->mem >= job->memory &&
	       (!job->disk || sc->disk >= job->disk);
}

double sched_walltime(const gv_sched_job *job, const gv_sched_params *p)
{
	return job->walltime > 0 ? job->walltime : p->default_walltime;
}

double sched_link(const gv_sched_host *h, const gv_sched_params *p)
{
	double r = h->link_rate > 0 ? h->link_rate : p->default_link_rate;
	return r > 0 ? r : 1;
}

double gv_sched_stage_time(const gv_sched_state *st, uint32_t j, uint32_t h,
			   const gv_sched_params *p)
{
	return (double)gv_sched_host_missing(st, h, j) / sched_link(&st->hosts[h].pub, p);
}

int sched_tentative(gv_sched_state *st, uint32_t j, uint32_t h, double s, double e)
{
	const gv_sched_job *job = &st->jobs[j].pub;
	struct sched_iv iv = {s,	 e,	  job->cpus,  job->memory,
			      job->disk, job->id, s > st->now};

	if (s <= st->now) {
		struct sched_scr *sc = &st->scr[h];
		sc->cpus = job->cpus > sc->cpus ? 0 : sc->cpus - job->cpus;
		sc->mem = job->memory > sc->mem ? 0 : sc->mem - job->memory;
		sc->disk = job->disk > sc->disk ? 0 : sc->disk - job->disk;
		sc->load += job->cpus;
		st->max_dirty = true;
	}
	return sched_prof_add(st, h, &iv);
}

/* ---- filters that never change in a cycle: could the host ever run it ---- */

static bool capacity_ok(const gv_sched_host *H, const gv_sched_job *job)
{
	return H->cpus >= job->cpus && H->memory >= job->memory &&
	       (!job->disk || H->disk >= job->disk);
}

bool sched_static_ok(gv_sched_state *st, uint32_t j, uint32_t h)
{
	const struct sched_job *J = &st->jobs[j];
	return capacity_ok(&st->hosts[h].pub, &J->pub) && sched_match(st, J->xreq, h);
}

/* Why no host could ever run @j: no hosts, the expression, or size. */
static void never_reason(gv_sched_state *st, uint32_t j, gv_sched_reason *r)
{
	const struct sched_job *J = &st->jobs[j];
	const gv_sched_job *job = &J->pub;
	uint32_t n_match = 0, has[3] = {0, 0, 0};
	uint64_t most[3] = {0, 0, 0};

	memset(r, 0, sizeof *r);
	r->host = GV_SCHED_NONE;
	if (!st->n_hosts) {
		r->why = GV_WHY_NEVER_NO_HOSTS;
		return;
	}
	for (uint32_t h = 0; h < st->n_hosts; h++) {
		if (!sched_match(st, J->xreq, h))
			continue;
		const gv_sched_host *H = &st->hosts[h].pub;
		n_match++;
		uint64_t cap[3] = {H->cpus, H->memory, H->disk};
		uint64_t need[3] = {job->cpus, job->memory, job->disk};
		for (int k = 0; k < 3; k++) {
			if (cap[k] > most[k])
				most[k] = cap[k];
			has[k] += cap[k] >= need[k];
		}
	}
	r->n[0] = n_match;
	r->n[1] = st->n_hosts;
	if (!n_match) {
		r->why = GV_WHY_NEVER_EXPR;
		return;
	}
	r->why = GV_WHY_NEVER_SIZE;
	double need[3] = {job->cpus, (double)job->memory, (double)job->disk};
	r->resource = GV_RES_ALL;
	for (int k = 0; k < 3; k++) {
		if (!has[k]) {
			r->resource = (uint8_t)k;
			r->v[0] = need[k];
			r->v[1] = (double)most[k];
			return;
		}
	}
	r->v[0] = job->cpus;
	r->v[1] = (double)job->memory;
	r->v[2] = (double)job->disk;
}

uint32_t sched_static_count(gv_sched_state *st, uint32_t j)
{
	struct sched_job *J = &st->jobs[j];

	if (J->st_epoch == st->epoch)
		return J->n_static;
	uint32_t n = 0;
	for (uint32_t h = 0; h < st->n_hosts; h++)
		n += sched_static_ok(st, j, h);
	J->n_static = n;
	if (!n)
		never_reason(st, j, &J->never);
	J->st_epoch = st->epoch;
	return n;
}

bool sched_static_any_up(gv_sched_state *st, uint32_t j)
{
	for (uint32_t h = 0; h < st->n_hosts; h++)
		if (st->hosts[h].pub.state == GV_HOST_UP && sched_static_ok(st, j, h))
			return true;
	return false;
}

/* ---- scores: 0..100, higher is better ---- */

typedef double (*score_fn)(gv_sched_state *st, uint32_t j, uint32_t h);

static double used_after(double total, double free, double need)
{
	return total > 0 ? (total - (free - need)) / total : 1;
}

/* pack: the host most used after placement (best fit), so that busy
 * hosts fill up and the others stay empty */
static double score_pack(gv_sched_state *st, uint32_t j, uint32_t h)
{
	const gv_sched_host *H = &st->hosts[h].pub;
	const gv_sched_job *job = &st->jobs[j].pub;
	const struct sched_scr *sc = &st->scr[h];
	return 50 * (used_after(H->cpus, sc->cpus, job->cpus) +
		     used_after((double)H->memory, (double)sc->mem, (double)job->memory));
}

/* spread: the host most free after placement */
static double score_spread(gv_sched_state *st, uint32_t j, uint32_t h)
{
	return 100 - score_pack(st, j, h);
}

/* load: the least measured CPU demand per cpu, with the job added */
static double score_load(gv_sched_state *st, uint32_t j, uint32_t h)
{
	const gv_sched_host *H = &st->hosts[h].pub;
	double cpus = H->cpus ? H->cpus : 1;
	double u = (st->scr[h].load + st->jobs[j].pub.cpus) / cpus;
	return 100 * (1 - (u < 1 ? u : 1));
}

/* locality: the shortest staging time; among equal ones, pack */
#define LOCALITY_SCALE_S 60.0
static double score_locality(gv_sched_state *st, uint32_t j, uint32_t h)
{
	double t = gv_sched_stage_time(st, j, h, st->p);
	return 100 * LOCALITY_SCALE_S / (LOCALITY_SCALE_S + t) +
	       1e-6 * score_pack(st, j, h);
}

static const score_fn scores[] = {
    [GV_SCHED_PACK] = score_pack,
    [GV_SCHED_SPREAD] = score_spread,
    [GV_SCHED_LOAD] = score_load,
    [GV_SCHED_LOCALITY] = score_locality,
};

/* Between two hosts of equal score: the job's rank (when it is a
 * tie-breaker), then the host's name. */
static bool tie_better(gv_sched_state *st, uint32_t j, uint32_t h, uint32_t best)
{
	const struct sched_job *J = &st->jobs[j];
	if (st->p->rank_weight <= 0 && J->xrank != GV_SCHED_NONE) {
		double a = sched_rank(st, J->xrank, h),
		       b = sched_rank(st, J->xrank, best);
		if (a != b)
			return a > b;
	}
	/* then, for a job that restores a checkpoint, a host that holds it
	 * (every policy: where the image is stays the locality policy's) */
	if (J->ckpt != GV_SCHED_NONE) {
		bool a = sched_host_holds(st, h, J->ckpt), b = sched_host_holds(st, best, J->ckpt);
		if (a != b)
			return a;
	}
	return strcmp(st->hosts[h].name, st->hosts[best].name) < 0;
}

/* ---- one pick ---- */

struct pick_diag {
	uint32_t n_down, n_short[3], n_resv;
	uint64_t resv_job;
	bool resv_known;
};

static void wait_reason(gv_sched_state *st, uint32_t j, const struct pick_diag *dg,
			gv_sched_reason *r)
{
	const gv_sched_job *job = &st->jobs[j].pub;

	memset(r, 0, sizeof *r);
	r->host = GV_SCHED_NONE;
	r->n[0] = sched_static_count(st, j);
	if (dg && dg->n_resv) {
		r->why = GV_WHY_WAIT_RESERVATION;
		r->other = dg->resv_job;
		r->n[1] = dg->n_resv;
		return;
	}
	bool up = dg ? dg->n_short[0] + dg->n_short[1] + dg->n_short[2] > 0
		     : sched_static_any_up(st, j);
	if (!up) {
		r->why = GV_WHY_WAIT_HOSTS_DOWN;
		return;
	}
	r->why = GV_WHY_WAIT_RESOURCES;
	r->v[0] = job->cpus;
	r->v[1] = (double)job->memory;
	r->v[2] = (double)job->disk;
	for (int k = 0; k < 3; k++)
		r->v[3 + k] = dg ? (double)dg->n_short[k] : -1.0;
}

static void place_reason(gv_sched_state *st, uint32_t j, uint32_t h, gv_sched_reason *r)
{
	const struct sched_job *J = &st->jobs[j];
	const gv_sched_host *H = &st->hosts[h].pub;
	const struct sched_scr *sc = &st->scr[h];

	memset(r, 0, sizeof *r);
	r->why = GV_WHY_PLACE;
	r->policy = (uint8_t)st->p->policy;
	r->host = h;
	r->v[0] = sc->cpus;
	r->v[1] = H->cpus;
	r->v[2] = (double)sc->mem;
	r->v[3] = (double)H->memory;
	r->v[4] = (double)gv_sched_host_missing(st, h, j);
	r->v[5] = gv_sched_stage_time(st, j, h, st->p);
	r->v[6] = J->xrank != GV_SCHED_NONE ? sched_rank(st, J->xrank, h) : 0;
	r->v[7] = sc->load;
	r->n[0] = J->xrank != GV_SCHED_NONE;
}

/* ---- delay scheduling ---- */

/* A host "holds" a job's image when it lacks at most this share of it
 * more than the host that lacks least. */
#define LOCALITY_SLACK 0.1

struct loc_wait {
	bool on;	  /* the job declines far hosts this cycle */
	uint64_t limit;	  /* bytes lacking beyond which a host is far */
	uint64_t best;	  /* the least any up host that could run it lacks */
	uint32_t host;	  /* that host */
	uint32_t n_far;	  /* far hosts with room, declined */
	uint64_t far_min; /* the least one of those lacks */
};

/* Is @j still within its locality wait at this cycle's now? Then @lw
 * says which hosts it takes. */
static void loc_wait_begin(gv_sched_state *st, uint32_t j, bool delay, struct loc_wait *lw)
{
	const struct sched_job *J = &st->jobs[j];
	const gv_sched_params *p = st->p;

	memset(lw, 0, sizeof *lw);
	lw->host = GV_SCHED_NONE;
	lw->far_min = UINT64_MAX;
	if (!delay || !(p->locality_wait > 0) || J->img == GV_SCHED_NONE ||
	    !J->pub.image_size ||
	    (J->loc_waiting && st->now - J->loc_since >= p->locality_wait))
		return;
	for (uint32_t h = 0; h < st->n_hosts; h++) {
		if (st->hosts[h].pub.state != GV_HOST_UP || !sched_static_ok(st, j, h))
			continue;
		uint64_t m = gv_sched_host_missing(st, h, j);
		if (lw->host == GV_SCHED_NONE || m < lw->best) {
			lw->best = m;
			lw->host = h;
		}
	}
	if (lw->host == GV_SCHED_NONE)
		return;
	lw->on = true;
	lw->limit = lw->best + (uint64_t)(LOCALITY_SLACK * (double)J->pub.image_size);
}

/* Every host with room was far: the job waits (and its wait starts). */
static void loc_wait_reason(gv_sched_state *st, uint32_t j, const struct loc_wait *lw,
			    gv_sched_reason *r)
{
	struct sched_job *J = &st->jobs[j];
	double wait = st->p->locality_wait;

	if (!J->loc_waiting) {
		J->loc_waiting = true;
		J->loc_since = st->now;
	}
	memset(r, 0, sizeof *r);
	r->why = GV_WHY_WAIT_LOCALITY;
	r->host = lw->host;
	r->v[0] = J->loc_since + wait - st->now;
	r->v[1] = wait;
	r->v[2] = (double)lw->best;
	r->v[3] = (double)lw->far_min;
	r->n[0] = lw->n_far;
}

uint32_t sched_pick_cycle(gv_sched_state *st, uint32_t j, bool use_resv, bool delay,
			  gv_sched_reason *why)
{
	const struct sched_job *J = &st->jobs[j];
	const gv_sched_job *job = &J->pub;
	const gv_sched_params *p = st->p;
	struct pick_diag dg;
	uint32_t best = GV_SCHED_NONE;
	double best_score = 0;
	score_fn score = (unsigned)p->policy < sizeof scores / sizeof scores[0]
			     ? scores[p->policy]
			     : score_pack;

	if (sched_static_count(st, j) == 0) {
		*why = J->never;
		return GV_SCHED_NONE;
	}
	/* no up host has that much free: no need to look at each */
	max_update(st);
	if (job->cpus > st->max_cpus || job->memory > st->max_mem ||
	    (job->disk && job->disk > st->max_disk)) {
		wait_reason(st, j, NULL, why);
		return GV_SCHED_NONE;
	}
	memset(&dg, 0, sizeof dg);
	struct loc_wait lw;
	loc_wait_begin(st, j, delay, &lw);
	double wall = sched_walltime(job, p);
	for (uint32_t h = 0; h < st->n_hosts; h++) {
		const gv_sched_host *H = &st->hosts[h].pub;
		/* filter: could ever (capacity, requirements) */
		if (!capacity_ok(H, job) || !sched_match(st, J->xreq, h))
			continue;
		/* filter: up */
		if (H->state != GV_HOST_UP) {
			dg.n_down++;
			continue;
		}
		/* filter: fits now */
		const struct sched_scr *sc = &st->scr[h];
		if (sc->cpus < job->cpus || sc->mem < job->memory ||
		    (job->disk && sc->disk < job->disk)) {
			dg.n_short[sc->cpus < job->cpus	   ? 0
				   : sc->mem < job->memory ? 1
							   : 2]++;
			continue;
		}
		/* filter: delays no reservation */
		const struct sched_prof *pf = &st->prof[h];
		if (use_resv && pf->gen == st->cycle && pf->n_future) {
			double dur = gv_sched_stage_time(st, j, h, p) + wall;
			if (!sched_prof_fits(st, h, job, st->now, dur)) {
				if (!dg.n_resv++)
					dg.resv_job = sched_prof_blocker(st, h, job, dur);
				continue;
			}
		}
		/* filter: holds its image, while the job may wait for one */
		if (lw.on) {
			uint64_t m = gv_sched_host_missing(st, h, j);
			if (m > lw.limit) {
				lw.n_far++;
				if (m < lw.far_min)
					lw.far_min = m;
				continue;
			}
		}
		/* score */
		double s = score(st, j, h);
		if (p->rank_weight > 0 && J->xrank != GV_SCHED_NONE)
			s += p->rank_weight * sched_rank(st, J->xrank, h);
		if (best == GV_SCHED_NONE || s > best_score ||
		    (s == best_score && tie_better(st, j, h, best))) {
			best = h;
			best_score = s;
		}
	}
	if (best == GV_SCHED_NONE && lw.n_far)
		loc_wait_reason(st, j, &lw, why);
	else if (best == GV_SCHED_NONE)
		wait_reason(st, j, &dg, why);
	else
		place_reason(st, j, best, why);
	return best;
}

uint32_t gv_sched_pick(gv_sched_state *st, uint32_t j, double now,
		       const gv_sched_params *p, gv_sched_reason *why)
{
	gv_sched_reason r;

	if (!why)
		why = &r;
	memset(why, 0, sizeof *why);
	why->host = GV_SCHED_NONE;
	if (!gv_sched_job_get(st, j) || sched_cycle_begin(st, now, p) < 0) {
		why->why = GV_WHY_STALE;
		return GV_SCHED_NONE;
	}
	return sched_pick_cycle(st, j, false, false, why);
}

int gv_sched_schedule(gv_sched_state *st, double now, const gv_sched_params *p,
		      gv_sched_plan *plan)
{
	int r = sched_cycle_begin(st, now, p);

	if (r < 0)
		return r;
	plan->now = now;
	return p->mode == GV_SCHED_BATCH ? sched_batch(st, p, plan)
					 : sched_online(st, p, plan);
}
