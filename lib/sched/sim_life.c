/* SPDX-License-Identifier: MIT */
/*
 * sim_life.c - what happens to the simulated hosts and jobs between the
 * scheduler's decisions: arrivals, staging, running at the host's rate,
 * checkpoints, the phases of a move (copy while running, downtime, run on
 * the destination), ends, host failures (jobs lost back to their last
 * checkpoint and queued again), joins and background load changes.
 */
#include "sim_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int grow32(uint32_t **p, uint32_t *cap, uint32_t need)
{
	if (need <= *cap)
		return 0;
	uint32_t n = *cap ? *cap * 2 : 16;
	while (n < need)
		n *= 2;
	uint32_t *q = realloc(*p, (size_t)n * sizeof *q);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = n;
	return 0;
}

/* The accounting integrals up to @t. */
void sim_advance(gv_sim *s, double t)
{
	double dt = t - s->now;
	if (dt > 0) {
		s->cpu_up_s += (double)s->up_cpus * dt;
		s->cpu_alloc_s += (double)s->alloc_total * dt;
		s->busy_s += (double)s->busy_hosts * dt;
		s->now = t;
	}
}

static int load_dirty(gv_sim *s, uint32_t h)
{
	if (s->hosts[h].load_dirty)
		return 0;
	if (grow32(&s->dirty_hosts, &s->cap_dirty_hosts, s->n_dirty_hosts + 1) < 0)
		return -ENOMEM;
	s->dirty_hosts[s->n_dirty_hosts++] = h;
	s->hosts[h].load_dirty = true;
	return 0;
}

/* ---- the library's view: bindings and the queue ---- */

static void bind_count(gv_sim *s, uint32_t h, uint32_t cpus)
{
	struct sim_host *H = &s->hosts[h];
	if (H->bound++ == 0)
		s->busy_hosts++;
	H->alloc += cpus;
	s->alloc_total += cpus;
	if (H->alloc > H->spec.cpus)
		s->violations++;
}

static void unbind_count(gv_sim *s, uint32_t h, uint32_t cpus)
{
	struct sim_host *H = &s->hosts[h];
	if (--H->bound == 0)
		s->busy_hosts--;
	H->alloc -= cpus;
	s->alloc_total -= cpus;
}

static int queue_add(gv_sim *s, uint32_t j)
{
	if (grow32(&s->queued, &s->cap_queued, s->n_queued + 1) < 0)
		return -ENOMEM;
	s->jobs[j].qpos = s->n_queued;
	s->queued[s->n_queued++] = j;
	s->jobs[j].st = SJ_QUEUED;
	s->dirty = true;
	return 0;
}

static void queue_del(gv_sim *s, uint32_t j)
{
	uint32_t k = s->jobs[j].qpos, last = s->queued[--s->n_queued];
	s->queued[k] = last;
	s->jobs[last].qpos = k;
}

uint32_t sim_job_by_sidx(const gv_sim *s, uint32_t sidx, uint64_t id)
{
	/* the library's job ids are our indices + 1 */
	(void)sidx;
	return id >= 1 && id <= s->n_jobs ? (uint32_t)(id - 1) : GV_SCHED_NONE;
}

/* ---- running: rates ---- */

static void work_now(gv_sim *s, struct sim_job *J)
{
	if (s->now > J->t_upd) {
		J->work -= J->rate * (s->now - J->t_upd);
		if (J->work < 0)
			J->work = 0;
		J->t_upd = s->now;
	}
}

/* Bring @j's work up to date and give it its host's current rate; its end
 * event follows the new rate. */
static int job_rate(gv_sim *s, uint32_t j)
{
	struct sim_job *J = &s->jobs[j];
	double r = s->hosts[J->host].rate;

	work_now(s, J);
	if (J->copying)
		r *= 1 - s->o.params.cost.overhead;
	J->rate = r;
	double from = J->t_upd > s->now ? J->t_upd : s->now;
	return sim_push(s, r > 0 ? from + J->work / r : INFINITY, EV_END, j, ++J->endv);
}

static int host_rate(gv_sim *s, uint32_t h)
{
	struct sim_host *H = &s->hosts[h];
	double load = H->bg + H->run_cpus, speed = H->spec.speed > 0 ? H->spec.speed : 1;
	double r = load > H->spec.cpus ? speed * H->spec.cpus / load : speed;

	if (load_dirty(s, h) < 0)
		return -ENOMEM;
	if (r == H->rate)
		return 0;
	H->rate = r;
	for (uint32_t i = 0; i < H->n_run; i++)
		if (job_rate(s, H->run[i]) < 0)
			return -ENOMEM;
	return 0;
}

static int run_add(gv_sim *s, uint32_t j, uint32_t h)
{
	struct sim_host *H = &s->hosts[h];
	if (grow32(&H->run, &H->cap_run, H->n_run + 1) < 0)
		return -ENOMEM;
	s->jobs[j].hpos = H->n_run;
	H->run[H->n_run++] = j;
	H->run_cpus += s->jobs[j].spec.cpus;
	return 0;
}

static void run_del(gv_sim *s, uint32_t j, uint32_t h)
{
	struct sim_host *H = &s->hosts[h];
	uint32_t k = s->jobs[j].hpos, last = H->run[--H->n_run];
	H->run[k] = last;
	s->jobs[last].hpos = k;
	H->run_cpus -= s->jobs[j].spec.cpus;
}

/* ---- jobs ---- */

int sim_job_arrive(gv_sim *s, uint32_t j)
{
	struct sim_job *J = &s->jobs[j];
	gv_sched_job spec = {
	    .id = (uint64_t)j + 1,
	    .user = J->spec.user,
	    .submit = J->spec.submit,
	    .cpus = J->spec.cpus,
	    .memory = J->spec.memory,
	    .walltime = J->spec.walltime,
	    .image = J->spec.image >= 0 ? gv_sim_image_name((unsigned)J->spec.image) : NULL,
	    .image_size = J->spec.image >= 0 ? gv_sim_image_bytes((unsigned)J->spec.image) : 0,
	    .dirty_rate = GV_SIM_DIRTY_RATE,
	    .disk_written = GV_SIM_DISK_WRITTEN,
	};
	gv_err e;
	int r = gv_sched_job_add(s->st, &spec, &J->sidx, &e);

	if (r < 0)
		return r;
	return queue_add(s, j);
}

static uint32_t bound_host(const struct sim_job *J)
{
	return J->st == SJ_MIGRATING || J->st == SJ_PAUSED ? J->dest : J->host;
}

/* The library bound @j to @h: stage its image (and its checkpoint). */
int sim_job_place(gv_sim *s, uint32_t j, uint32_t h)
{
	struct sim_job *J = &s->jobs[j];
	struct sim_host *H = &s->hosts[h];
	double bytes = 0;

	queue_del(s, j);
	J->st = SJ_STAGING;
	J->host = h;
	J->ver++;
	J->starts++;
	J->bound_at = s->now;
	if (J->first_start < 0)
		J->first_start = s->now;
	bind_count(s, h, J->spec.cpus);
	s->placements++;
	if (J->spec.image >= 0) {
		bytes = (double)gv_sim_image_missing((unsigned)J->spec.image, H->layers);
		H->layers |= gv_sim_image_layers((unsigned)J->spec.image);
		if (bytes > 0 && gv_sched_host_set_image(s->st, H->sidx, gv_sim_image_name(
							 (unsigned)J->spec.image), 0) < 0)
			return -ENOMEM;
		/* other images of the mix may share what just arrived */
		for (unsigned i = 0; bytes > 0 && i < gv_sim_image_count(); i++)
			if (gv_sched_host_set_image(s->st, H->sidx, gv_sim_image_name(i),
						    gv_sim_image_missing(i, H->layers)) < 0)
				return -ENOMEM;
	}
	if (J->ckpt_work < J->spec.runtime) /* restored from its checkpoint */
		bytes += (double)J->spec.memory * GV_SIM_CKPT_FIRST;
	s->bytes_staged += bytes;
	if (bytes <= 0)
		return sim_job_run(s, j);
	return sim_push(s, s->now + GV_SIM_STAGE_FIXED_S + bytes / H->link, EV_STAGED, j,
			J->ver);
}

int sim_job_run(gv_sim *s, uint32_t j)
{
	struct sim_job *J = &s->jobs[j];

	J->st = SJ_RUNNING;
	J->t_upd = s->now;
	J->rate = 0;
	if (run_add(s, j, J->host) < 0 || host_rate(s, J->host) < 0 || job_rate(s, j) < 0)
		return -ENOMEM;
	if (s->o.checkpoint_every > 0)
		return sim_push(s, s->now + s->o.checkpoint_every, EV_CKPT, j, J->ver);
	return 0;
}

int sim_job_end(gv_sim *s, uint32_t j)
{
	struct sim_job *J = &s->jobs[j];
	uint32_t bh = bound_host(J);

	work_now(s, J);
	run_del(s, j, J->host);
	unbind_count(s, bh, J->spec.cpus);
	gv_sched_job_remove(s->st, J->sidx);
	J->st = SJ_DONE;
	J->end = s->now;
	J->ver++;
	s->n_done++;
	s->last_end = s->now;
	s->dirty = true;
	if (s->o.check && J->work > 1e-6 * J->spec.runtime + 1e-6)
		s->bad_ends++; /* ended with work left: a bookkeeping bug */
	return host_rate(s, J->host);
}

int sim_job_checkpoint(gv_sim *s, uint32_t j)
{
	struct sim_job *J = &s->jobs[j];

	work_now(s, J);
	J->ckpt_work = J->work;
	s->bytes_ckpt += (double)J->spec.memory * (J->ckpts ? GV_SIM_CKPT_NEXT : GV_SIM_CKPT_FIRST);
	J->ckpts++;
	s->ckpts++;
	J->t_upd = s->now + GV_SIM_CKPT_PAUSE_S; /* no progress while paused */
	if (job_rate(s, j) < 0)
		return -ENOMEM;
	return sim_push(s, s->now + s->o.checkpoint_every, EV_CKPT, j, J->ver);
}

/* The library moved @j's binding to @to: copy it while it runs. */
int sim_job_move(gv_sim *s, uint32_t j, uint32_t to)
{
	struct sim_job *J = &s->jobs[j];
	struct sim_host *D = &s->hosts[to];
	gv_sched_move_est est;
	double link = s->hosts[J->host].link < D->link ? s->hosts[J->host].link : D->link;
	uint64_t missing = J->spec.image >= 0
			       ? gv_sim_image_missing((unsigned)J->spec.image, D->layers)
			       : 0;

	gv_sched_move_estimate(&s->o.params.cost, J->spec.memory, GV_SIM_DIRTY_RATE,
			       missing + GV_SIM_DISK_WRITTEN, link, &est);
	unbind_count(s, J->host, J->spec.cpus);
	bind_count(s, to, J->spec.cpus);
	J->st = SJ_MIGRATING;
	J->dest = to;
	J->copying = true;
	J->downtime = est.downtime_s;
	J->moves++;
	s->migrations++;
	s->bytes_migrated += est.bytes;
	if (J->spec.image >= 0) {
		D->layers |= gv_sim_image_layers((unsigned)J->spec.image);
		for (unsigned i = 0; missing && i < gv_sim_image_count(); i++)
			if (gv_sched_host_set_image(s->st, D->sidx, gv_sim_image_name(i),
						    gv_sim_image_missing(i, D->layers)) < 0)
				return -ENOMEM;
	}
	if (job_rate(s, j) < 0)
		return -ENOMEM;
	return sim_push(s, s->now + est.copy_s, EV_SWITCH, j, J->ver);
}

int sim_job_switch(gv_sim *s, uint32_t j)
{
	struct sim_job *J = &s->jobs[j];

	work_now(s, J);
	run_del(s, j, J->host);
	J->st = SJ_PAUSED;
	J->copying = false;
	J->rate = 0;
	J->endv++; /* no end while paused */
	if (host_rate(s, J->host) < 0)
		return -ENOMEM;
	return sim_push(s, s->now + J->downtime, EV_ARRIVED, j, J->ver);
}

int sim_job_arrived(gv_sim *s, uint32_t j)
{
	struct sim_job *J = &s->jobs[j];

	J->host = J->dest;
	J->dest = GV_SCHED_NONE;
	J->st = SJ_RUNNING;
	J->t_upd = s->now;
	J->ver++; /* its checkpoints start again here */
	if (run_add(s, j, J->host) < 0 || host_rate(s, J->host) < 0 || job_rate(s, j) < 0)
		return -ENOMEM;
	if (s->o.checkpoint_every > 0)
		return sim_push(s, s->now + s->o.checkpoint_every, EV_CKPT, j, J->ver);
	return 0;
}

void sim_job_never(gv_sim *s, uint32_t j)
{
	struct sim_job *J = &s->jobs[j];

	queue_del(s, j);
	gv_sched_job_remove(s->st, J->sidx);
	J->st = SJ_NEVER;
	s->n_never++;
}

/* ---- hosts ---- */

int sim_host_arm(gv_sim *s, uint32_t h)
{
	struct sim_host *H = &s->hosts[h];

	if (s->o.fail_rate > 0 &&
	    sim_push(s, s->now + gv_rng_exp(&s->rng, 86400 / s->o.fail_rate), EV_FAIL, h, 0) < 0)
		return -ENOMEM;
	if (H->spec.shared && !H->armed) {
		H->armed = true;
		return sim_push(s, s->now + gv_rng_exp(&s->rng, s->o.load_every), EV_LOAD, h, 0);
	}
	return 0;
}

int sim_host_join(gv_sim *s, uint32_t h)
{
	struct sim_host *H = &s->hosts[h];

	if (H->up)
		return 0;
	H->up = true;
	H->up_since = s->now;
	s->up_cpus += H->spec.cpus;
	gv_sched_host_set_state(s->st, H->sidx, GV_HOST_UP);
	s->dirty = true;
	return sim_host_arm(s, h);
}

/* @j loses what it did since its last checkpoint and waits again. */
static int job_lost(gv_sim *s, uint32_t j, uint32_t h)
{
	struct sim_job *J = &s->jobs[j];
	uint32_t bh = bound_host(J);

	work_now(s, J);
	if (J->st == SJ_RUNNING || J->st == SJ_MIGRATING)
		run_del(s, j, J->host);
	unbind_count(s, bh, J->spec.cpus);
	if (J->ckpt_work > J->work)
		s->work_lost += J->ckpt_work - J->work;
	J->work = J->ckpt_work;
	J->ver++;
	J->endv++;
	J->copying = false;
	J->dest = GV_SCHED_NONE;
	J->host = GV_SCHED_NONE;
	s->restarts++;
	gv_sched_job_unbind(s->st, J->sidx);
	if (J->spec.walltime > 0) {
		double left = J->spec.walltime - (J->spec.runtime - J->ckpt_work);
		gv_sched_job_set_estimates(s->st, J->sidx, left > 60 ? left : 60,
					   GV_SIM_DIRTY_RATE, GV_SIM_DISK_WRITTEN);
	}
	(void)h;
	return queue_add(s, j);
}

/* Can the source of @j's move take it back (the library released its
 * resources there when the move was applied; another job may hold them)? */
static bool move_back_fits(const gv_sim *s, uint32_t j)
{
	const struct sim_job *J = &s->jobs[j];
	const gv_sched_host *L = gv_sched_host_get(s->st, s->hosts[J->host].sidx);

	return L->cpus_free >= J->spec.cpus && L->memory_free >= J->spec.memory;
}

/* A move whose destination failed: the job stays where it runs. */
static int move_abort(gv_sim *s, uint32_t j)
{
	struct sim_job *J = &s->jobs[j];

	unbind_count(s, J->dest, J->spec.cpus);
	bind_count(s, J->host, J->spec.cpus);
	if (gv_sched_job_bind(s->st, J->sidx, s->hosts[J->host].sidx, J->bound_at) < 0)
		return -ENOMEM;
	J->st = SJ_RUNNING;
	J->dest = GV_SCHED_NONE;
	J->copying = false;
	J->ver++;
	if (job_rate(s, j) < 0)
		return -ENOMEM;
	if (s->o.checkpoint_every > 0)
		return sim_push(s, s->now + s->o.checkpoint_every, EV_CKPT, j, J->ver);
	return 0;
}

int sim_host_fail(gv_sim *s, uint32_t h)
{
	struct sim_host *H = &s->hosts[h];
	int r = 0;

	if (!H->up)
		return 0;
	H->up = false;
	s->up_cpus -= H->spec.cpus;
	s->failures++;
	gv_sched_host_set_state(s->st, H->sidx, GV_HOST_DOWN);
	/* every job bound to it or running on it; scan the jobs, as failures
	 * are rare next to everything else */
	for (uint32_t j = 0; j < s->n_jobs && r == 0; j++) {
		struct sim_job *J = &s->jobs[j];
		if (J->st < SJ_STAGING || J->st > SJ_PAUSED)
			continue;
		if (J->st == SJ_MIGRATING && J->dest == h && move_back_fits(s, j))
			r = move_abort(s, j);
		else if (J->st == SJ_MIGRATING && J->dest == h)
			r = job_lost(s, j, h); /* its place on the source was taken */
		else if (J->host == h || (J->st == SJ_PAUSED && J->dest == h))
			r = job_lost(s, j, h);
	}
	if (r == 0)
		r = host_rate(s, h);
	if (r == 0)
		r = sim_push(s, s->now + gv_rng_exp(&s->rng, s->o.repair_s), EV_JOIN, h, 0);
	return r;
}

int sim_host_load(gv_sim *s, uint32_t h)
{
	struct sim_host *H = &s->hosts[h];

	H->bg = gv_rng_unit(&s->rng) < 0.5
		    ? 0
		    : H->spec.cpus * (0.25 + 1.25 * gv_rng_unit(&s->rng));
	if (host_rate(s, h) < 0)
		return -ENOMEM;
	return sim_push(s, s->now + gv_rng_exp(&s->rng, s->o.load_every), EV_LOAD, h, 0);
}
