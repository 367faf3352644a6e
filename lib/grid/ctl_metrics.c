/* SPDX-License-Identifier: MIT */
/*
 * ctl_metrics.c - the controller's Prometheus metrics (gridvmctld
 * --metrics): jobs by state, hosts by state and what each offers and has
 * free, and counters of submissions, placements, moves and scheduling
 * cycles with the time each scheduling decision took. Read under the
 * controller's mutex; docs/grid.md lists the metrics.
 */
#include "ctl_internal.h"

/* Upper bounds of the decision-time histogram, seconds. */
static const double decide_bounds[] = { 0.00001, 0.0001, 0.0005, 0.001, 0.005, 0.01,
					0.05,	 0.1,	 0.5,	 1,	5 };

void ctl_metrics_init(gv_ctl *c)
{
	gv_metrics_hist_init(&c->count.decide_s, decide_bounds,
			     sizeof(decide_bounds) / sizeof(decide_bounds[0]));
}

static void jobs(gv_ctl *c, gv_metrics_buf *b)
{
	unsigned n[GV_JOB_S_CANCELLED + 1] = { 0 }, never = 0;

	for (size_t i = 0; i < c->njobs; i++) {
		const json_t *rec = c->jobs[i]->rec;
		gv_job_state s = gv_job_record_state(rec);
		if ((unsigned)s <= GV_JOB_S_CANCELLED)
			n[s]++;
		if (s == GV_JOB_S_QUEUED && json_is_true(json_object_get(rec, "never")))
			never++;
	}
	for (unsigned s = 0; s <= GV_JOB_S_CANCELLED; s++)
		gv_metrics_gauge(b, "gridvm_jobs", "Jobs the controller holds, by state.", n[s],
				 "state", gv_job_state_name((gv_job_state)s), NULL);
	gv_metrics_gauge(b, "gridvm_jobs_unsatisfiable",
			 "Queued jobs whose requirements no host of the grid can ever meet.", never,
			 NULL);
}

static void hosts(gv_ctl *c, gv_metrics_buf *b)
{
	static const char *const states[] = { "up", "down", "drained", "lost" };
	unsigned n[4] = { 0 };

	for (size_t i = 0; i < c->nhosts; i++) {
		struct ctl_host *h = &c->hosts[i];
		const gv_sched_host *sh = gv_sched_host_get(c->st, h->sidx);
		n[h->lost ? 3 : !h->up ? 1 : h->drained ? 2 : 0]++;
		if (!sh)
			continue;
		gv_metrics_gauge(b, "gridvm_grid_host_cpus", "vCPUs the host offers to the grid.",
				 sh->cpus, "host", h->name, NULL);
		gv_metrics_gauge(b, "gridvm_grid_host_cpus_free",
				 "vCPUs of the host that the jobs bound to it leave free.",
				 sh->cpus_free, "host", h->name, NULL);
		gv_metrics_gauge(b, "gridvm_grid_host_memory_bytes",
				 "Memory the host offers to the grid.", (double)sh->memory, "host",
				 h->name, NULL);
		gv_metrics_gauge(b, "gridvm_grid_host_memory_free_bytes",
				 "Memory of the host that the jobs bound to it leave free.",
				 (double)sh->memory_free, "host", h->name, NULL);
		gv_metrics_gauge(b, "gridvm_grid_host_jobs", "Jobs bound to the host.", sh->n_jobs,
				 "host", h->name, NULL);
		gv_metrics_gauge(b, "gridvm_grid_host_load1",
				 "The host's 1-minute load average, as last reported.", sh->load,
				 "host", h->name, NULL);
		gv_metrics_gauge(b, "gridvm_grid_host_up",
				 "1 if the host reports (up or drained), 0 if it is down.", h->up,
				 "host", h->name, NULL);
	}
	for (size_t s = 0; s < 4; s++)
		gv_metrics_gauge(b, "gridvm_hosts", "Hosts of the grid, by state.", n[s], "state",
				 states[s], NULL);
}

static void counters(gv_ctl *c, gv_metrics_buf *b)
{
	gv_metrics_counter(b, "gridvm_jobs_submitted_total", "Jobs accepted by submit.",
			   (double)c->count.submitted, NULL);
	gv_metrics_counter(b, "gridvm_placements_total", "Jobs bound to a host by the scheduler.",
			   (double)c->count.placements, NULL);
	gv_metrics_counter(b, "gridvm_moves_started_total",
			   "Moves (migrations) of running jobs the controller ordered.",
			   (double)c->count.moves_started, NULL);
	gv_metrics_counter(b, "gridvm_moves_completed_total",
			   "Moves that ended with the job running on its new host.",
			   (double)c->count.moves_completed, NULL);
	gv_metrics_counter(b, "gridvm_moves_failed_total",
			   "Moves that failed (the job went on where it was).",
			   (double)c->count.moves_failed, NULL);
	gv_metrics_counter(b, "gridvm_jobs_recovered_total",
			   "Jobs of lost hosts put back to run elsewhere (from a checkpoint or "
			   "from the beginning).", (double)c->count.recoveries, NULL);
	gv_metrics_counter(b, "gridvm_sched_cycles_total",
			   "Scheduling cycles: placing queued jobs (schedule) and considering "
			   "moves of running ones (replan).",
			   (double)c->count.cycles, "kind", "schedule", NULL);
	gv_metrics_counter(b, "gridvm_sched_cycles_total", NULL, (double)c->count.replans, "kind",
			   "replan", NULL);
	gv_metrics_histogram(b, "gridvm_sched_decision_seconds",
			     "Time the scheduler took to decide one placement cycle.",
			     &c->count.decide_s, NULL);
}

void ctl_metrics(void *ud, gv_metrics_buf *b)
{
	gv_ctl *c = ud;

	pthread_mutex_lock(&c->mu);
	jobs(c, b);
	hosts(c, b);
	counters(c, b);
	pthread_mutex_unlock(&c->mu);
}
