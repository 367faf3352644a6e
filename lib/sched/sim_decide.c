/* SPDX-License-Identifier: MIT */
/*
 * sim_decide.c - the simulator's decisions, taken by the scheduling
 * library and applied as gridvmctld applies them (ctl_loop.c's schedule()
 * and replan()); the metrics of a run; the bookkeeping checks.
 */
#include "sim_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static double tick(const gv_sim *s)
{
	return s->o.timer ? s->o.timer(s->o.timer_ctx) : 0;
}

/* The library sees every host's load as an agent reports it: its jobs'
 * cpus plus what else runs there. */
static void report_loads(gv_sim *s)
{
	for (uint32_t i = 0; i < s->n_dirty_hosts; i++) {
		struct sim_host *H = &s->hosts[s->dirty_hosts[i]];
		gv_sched_host_set_load(s->st, H->sidx, H->bg + H->run_cpus);
		H->load_dirty = false;
	}
	s->n_dirty_hosts = 0;
}

static int note_latency(gv_sim *s, double dt)
{
	if (s->n_lat == s->cap_lat) {
		size_t cap = s->cap_lat ? s->cap_lat * 2 : 1024;
		double *n = realloc(s->lat, cap * sizeof *n);
		if (!n)
			return -ENOMEM;
		s->lat = n;
		s->cap_lat = cap;
	}
	s->lat[s->n_lat++] = dt;
	s->lat_total += dt;
	return 0;
}

/* Is some host still to join for the first time (a job no host can run
 * now may fit one of those)? */
static bool hosts_to_come(const gv_sim *s)
{
	for (uint32_t h = 0; h < s->n_hosts; h++)
		if (!s->hosts[h].up && s->hosts[h].spec.join_at > s->now)
			return true;
	return false;
}

int sim_cycle(gv_sim *s)
{
	gv_sched_reason stale;
	uint64_t placed = 0;
	int r;

	s->last_cycle = s->now;
	s->cycles++;
	report_loads(s);
	gv_sched_plan_clear(&s->plan);
	double t0 = tick(s);
	r = gv_sched_schedule(s->st, s->now, &s->o.params, &s->plan);
	double spent = tick(s) - t0;
	if (r < 0)
		return r;
	for (size_t i = 0; i < s->plan.n_acts; i++) {
		const gv_sched_decision *d = &s->plan.acts[i];
		uint32_t j = sim_job_by_sidx(s, d->job, d->job_id);
		if (j == GV_SCHED_NONE || d->act != GV_ACT_PLACE || s->jobs[j].st != SJ_QUEUED)
			continue;
		t0 = tick(s);
		r = gv_sched_apply(s->st, d, s->now, &stale);
		spent += tick(s) - t0;
		if (r == -ESTALE)
			continue; /* raced: the next cycle decides again */
		if (r < 0)
			return r;
		/* host indices are the library's: hosts were added in order */
		if ((r = sim_job_place(s, j, d->host)) < 0)
			return r;
		placed++;
	}
	if (s->o.timer && (r = note_latency(s, spent)) < 0)
		return r;
	bool more = false;
	double retry = INFINITY; /* the end of the first locality wait */
	for (size_t i = 0; i < s->plan.n_held; i++) {
		const gv_sched_decision *d = &s->plan.held[i];
		uint32_t j = sim_job_by_sidx(s, d->job, d->job_id);
		if (j == GV_SCHED_NONE || d->act != GV_ACT_WAIT || s->jobs[j].st != SJ_QUEUED)
			continue;
		if (gv_sched_why_is_never(d->reason.why)) {
			if (!hosts_to_come(s))
				sim_job_never(s, j);
		} else if (d->reason.why == GV_WHY_WAIT_NEXT_BATCH) {
			more = true;
		} else if (d->reason.why == GV_WHY_WAIT_LOCALITY && d->start < retry) {
			retry = d->start;
		}
	}
	/* a job waiting for a host that holds its image takes any host once
	 * its wait is over: decide again then (gridvmctld decides every
	 * second) unless a cycle comes sooner */
	if (isfinite(retry) && (s->cycle_at < 0 || s->cycle_at > retry)) {
		if (retry < s->now + s->o.cycle_s)
			retry = s->now + s->o.cycle_s;
		s->cycle_at = retry;
		if ((r = sim_push(s, retry, EV_CYCLE, 0, ++s->cycle_ver)) < 0)
			return r;
	}
	/* a batch that placed jobs leaves the next batch to the next cycle
	 * (gridvmctld's loop runs every second) */
	if (more && placed) {
		s->dirty = false;
		return sim_want_cycle(s);
	}
	return 0;
}

int sim_replan(gv_sim *s)
{
	gv_sched_reason stale;
	int r;

	s->replans++;
	report_loads(s);
	gv_sched_plan_clear(&s->plan);
	if ((r = gv_sched_replan(s->st, s->now, &s->o.params, &s->plan)) < 0)
		return r;
	for (size_t i = 0; i < s->plan.n_acts; i++) {
		const gv_sched_decision *d = &s->plan.acts[i];
		uint32_t j = sim_job_by_sidx(s, d->job, d->job_id);
		/* as the controller: only a job running (not staging) moves */
		if (j == GV_SCHED_NONE || d->act != GV_ACT_MOVE || s->jobs[j].st != SJ_RUNNING)
			continue;
		r = gv_sched_apply(s->st, d, s->now, &stale);
		if (r == -ESTALE)
			continue;
		if (r < 0)
			return r;
		/* host indices are the library's: hosts were added in order */
		if ((r = sim_job_move(s, j, d->host)) < 0)
			return r;
	}
	return sim_push(s, s->now + s->o.replan_s, EV_REPLAN, 0, 0);
}

/* ---- metrics ---- */

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The @q quantile of sorted @v (nearest rank). */
static double quantile(const double *v, size_t n, double q)
{
	if (!n)
		return 0;
	size_t k = (size_t)ceil(q * (double)n);
	return v[k ? k - 1 : 0];
}

void gv_sim_metrics_get(const gv_sim *s, gv_sim_metrics *m)
{
	double *w = malloc((s->n_jobs + 1) * sizeof *w);
	double *lat = malloc((s->n_lat + 1) * sizeof *lat);
	double sum_w = 0, sum_bsd = 0, sum_ta = 0;
	size_t n = 0;

	memset(m, 0, sizeof *m);
	m->jobs = s->n_jobs;
	m->jobs_completed = s->n_done;
	m->jobs_never = s->n_never;
	for (uint32_t i = 0; i < s->n_jobs; i++) {
		const struct sim_job *J = &s->jobs[i];
		if (J->st != SJ_DONE)
			continue;
		double wait = J->first_start - J->spec.submit, ta = J->end - J->spec.submit;
		double run = J->spec.runtime > 10 ? J->spec.runtime : 10;
		double bsd = ta / run > 1 ? ta / run : 1;
		if (w)
			w[n] = wait;
		n++;
		sum_w += wait;
		sum_bsd += bsd;
		sum_ta += ta;
	}
	if (n) {
		m->wait_s_mean = sum_w / (double)n;
		m->bounded_slowdown_mean = sum_bsd / (double)n;
		m->turnaround_s_mean = sum_ta / (double)n;
		if (w) {
			qsort(w, n, sizeof *w, cmp_dbl);
			m->wait_s_p95 = quantile(w, n, 0.95);
		}
	}
	if (lat && s->n_lat) {
		memcpy(lat, s->lat, s->n_lat * sizeof *lat);
		qsort(lat, s->n_lat, sizeof *lat, cmp_dbl);
		m->decision_ms_p50 = 1e3 * quantile(lat, s->n_lat, 0.5);
		m->decision_ms_p99 = 1e3 * quantile(lat, s->n_lat, 0.99);
		m->decision_ms_max = 1e3 * lat[s->n_lat - 1];
	}
	m->decision_s_total = s->lat_total;
	m->decisions_per_second = s->lat_total > 0 ? (double)s->placements / s->lat_total : 0;
	m->placements = s->placements;
	m->cycles = s->cycles;
	m->replans = s->replans;
	m->utilization = s->cpu_up_s > 0 ? s->cpu_alloc_s / s->cpu_up_s : 0;
	m->makespan_s = s->n_done ? s->last_end - s->first_submit : 0;
	m->migrations = s->migrations;
	m->bytes_staged = s->bytes_staged;
	m->bytes_migrated = s->bytes_migrated;
	m->bytes_checkpointed = s->bytes_ckpt;
	m->host_hours = s->busy_s / 3600;
	m->work_lost_s = s->work_lost;
	m->failures = s->failures;
	m->restarts = s->restarts;
	m->checkpoints = s->ckpts;
	m->capacity_violations = s->violations + s->bad_ends;
	free(w);
	free(lat);
}

/* ---- bookkeeping checks (opts.check) ---- */

int sim_check(gv_sim *s, gv_err *e)
{
	if (s->violations)
		return gv_err_set(e, -EPROTO, "at %.3f s: a host is over its capacity", s->now);
	if (s->bad_ends)
		return gv_err_set(e, -EPROTO, "at %.3f s: a job ended with work left", s->now);
	for (uint32_t h = 0; h < s->n_hosts; h++) {
		const struct sim_host *H = &s->hosts[h];
		const gv_sched_host *L = gv_sched_host_get(s->st, H->sidx);
		uint32_t cpus = 0;
		for (uint32_t i = 0; i < H->n_run; i++)
			cpus += s->jobs[H->run[i]].spec.cpus;
		if (cpus != H->run_cpus || H->alloc > H->spec.cpus ||
		    L->cpus_free != H->spec.cpus - H->alloc || L->n_jobs != H->bound)
			return gv_err_set(e, -EPROTO,
					  "at %.3f s: host %s: %u cpus bound by %u jobs, the "
					  "library says %u free and %u jobs; %u running",
					  s->now, H->spec.name, H->alloc, H->bound, L->cpus_free,
					  L->n_jobs, H->run_cpus);
		if (!H->up && (H->bound || H->n_run))
			return gv_err_set(e, -EPROTO, "at %.3f s: host %s is down with jobs",
					  s->now, H->spec.name);
	}
	return 0;
}
