/* SPDX-License-Identifier: MIT */
/*
 * sim.h - a discrete-event simulation of a grid that drives the scheduling
 * library (sched.h) the way the controller does: one gv_sched_state, a
 * cycle of gv_sched_schedule() whose PLACE acts are applied one by one with
 * gv_sched_apply(), and with re-planning a gv_sched_replan() every
 * replan_s whose MOVE acts are applied the same way. What happens between
 * decisions is simulated: jobs arrive (from an SWF trace), stage their
 * image (the bytes the host lacks over its site's link), run at the host's
 * speed (slower when its background load overloads it), are checkpointed,
 * moved (the migration cost model's copy and downtime), lost with their
 * host and restored from their last checkpoint, and end.
 *
 * Pure like the rest of the layer: the only clock is the caller's
 * callback (to time the library's decisions), randomness comes from a
 * seeded gv_rng. docs/simulator.md describes the model and its constants.
 */
#ifndef GRIDVM_SCHED_SIM_H
#define GRIDVM_SCHED_SIM_H

#include <gridvm/sched/sched.h>
#include <gridvm/sched/workload.h>

typedef struct gv_sim gv_sim;

/* ---- the world's constants, and where they come from ---- */

/* Staging: a fixed part (connect, hash list, verify and index the result)
 * plus the bytes the host lacks over its link: bench-transfer.md, gridvm
 * image fetch with local blocks and zstd at 100 Mbit/s (5.54 s wall for
 * 45.6 MB: 1.9 s beyond bytes / rate). */
#define GV_SIM_STAGE_FIXED_S 1.9
/* A checkpoint pauses the job for this long (bench-migration.md, the
 * contiguous job's pauses: 115 to 195 ms) and stores a first full one of
 * about 0.18 x its memory, then about 0.09 x per checkpoint (69.7 MB and
 * 31-37 MB for a 384 MiB VM). A restore fetches the full size. */
#define GV_SIM_CKPT_PAUSE_S 0.15
#define GV_SIM_CKPT_FIRST 0.18
#define GV_SIM_CKPT_NEXT 0.09
/* A job's memory writes and disk overlay, for the move cost (the
 * benchmark's job: about 2 MB/s dirtied, 24 MiB written; we take a
 * heavier 256 MiB overlay). */
#define GV_SIM_DIRTY_RATE 2e6
#define GV_SIM_DISK_WRITTEN (256ull << 20)

/* The migration cost model calibrated from bench-migration.md's
 * gridvm-live runs (100 and 20 Mbit/s) with gv_sched_cost_calibrate(). */
void gv_sim_cost_calibrated(gv_sched_cost *c);

/* ---- images: a mix with known overlap ---- */

/* An image is a set of layers (blocks shared whole between the images that
 * hold the layer); a host lacks the layers none of its images hold, which
 * is what gridvm's host-wide block index gives. Sizes are wire bytes
 * (distinct non-zero blocks, zstd). docs/simulator.md has the table. */
unsigned gv_sim_image_count(void);
const char *gv_sim_image_name(unsigned i);
uint64_t gv_sim_image_bytes(unsigned i);
uint32_t gv_sim_image_layers(unsigned i);
/* Bytes of image @i a host holding @layers lacks. */
uint64_t gv_sim_image_missing(unsigned i, uint32_t layers);

/* ---- sites and hosts ---- */

typedef struct gv_sim_site {
	const char *name;
	double link_rate; /* bytes/s to the image store and to other sites */
} gv_sim_site;

unsigned gv_sim_site_count(void);
const gv_sim_site *gv_sim_site_get(unsigned i);

typedef struct gv_sim_host {
	char name[32];
	uint32_t cpus;
	uint64_t memory;
	double speed;	  /* relative to the reference machine of the trace */
	unsigned site;	  /* index in the site table */
	double link_rate; /* 0: the site's */
	bool shared;	  /* carries background load that changes over time */
	uint32_t layers;  /* image layers it holds at the start */
	double join_at;	  /* joins the grid then (0: from the start) */
	double fail_at;	  /* fails then, besides fail_rate (0: not) */
} gv_sim_host;

/* The default heterogeneous grid of @n hosts (docs/simulator.md):
 * cpus 16/32/64 (50/35/15 %), 4 GiB per cpu, speed 0.8/1.0/1.25, sites
 * 40/30/20/10 %, a fifth shared, one or two images held. @return @n. */
unsigned gv_sim_grid_make(gv_sim_host *out, unsigned n, uint64_t seed);

/* ---- jobs ---- */

typedef struct gv_sim_job {
	uint64_t id;
	double submit;	 /* s */
	double runtime;	 /* s of work on a host of speed 1 */
	double walltime; /* the estimate the scheduler gets (0: its default) */
	uint32_t cpus;
	uint64_t memory;
	int image; /* index in the image mix, or -1: none */
	uint32_t user;
} gv_sim_job;

/* How SWF records become jobs (docs/simulator.md). */
typedef struct gv_sim_swf_opts {
	uint32_t max_cpus;	  /* larger jobs are cut to this (0: no cut) */
	uint64_t max_memory;	  /* same for memory (0: no cut) */
	uint64_t default_mem_kb;  /* per processor when unknown (0: 2 GiB) */
} gv_sim_swf_opts;

/* @return 1 with *@out set, 0 if the record is not a job to run (run time
 * or processors unknown or 0, a cancelled job that never ran); *@cut set
 * when cpus or memory were cut. */
int gv_sim_job_from_swf(const gv_swf_job *s, const gv_sim_swf_opts *o, gv_sim_job *out,
			bool *cut);

/* ---- a run ---- */

typedef struct gv_sim_opts {
	gv_sched_params params; /* the library's: policy, mode, queue, ... */
	double cycle_s;		/* at most one scheduling cycle per (default 1) */
	bool replan;		/* run gv_sched_replan every replan_s */
	double replan_s;	/* default 10, as gridvmctld */
	double batch_wait_s;	/* batch: plan when batch_max wait, or the
				   oldest waited this long (default 10) */
	double fail_rate;	/* host failures per host per day (0: none) */
	double repair_s;	/* mean time a failed host stays down (3600) */
	double checkpoint_every; /* s of running between checkpoints (0: none) */
	double load_every;	 /* mean s between background load changes (1800) */
	uint64_t seed;		 /* failures and background load */
	bool check;		 /* check the bookkeeping at every event (slow) */
	/* a stopwatch (seconds) that times the library's cycles (NULL: not timed) */
	double (*timer)(void *ctx);
	void *timer_ctx;
} gv_sim_opts;

/* Defaults for a gv_sim_opts (the library's default parameters). */
void gv_sim_opts_default(gv_sim_opts *o);

/* A simulation over copies of @o. NULL on out-of-memory. */
gv_sim *gv_sim_new(const gv_sim_opts *o);
void gv_sim_free(gv_sim *s);
/* @return 0, -EINVAL/-EEXIST (@e says why) or -ENOMEM. */
int gv_sim_add_host(gv_sim *s, const gv_sim_host *h, gv_err *e)
	__attribute__((warn_unused_result));
int gv_sim_add_job(gv_sim *s, const gv_sim_job *j, gv_err *e)
	__attribute__((warn_unused_result));
/* Run until every job ended or can never run. @return 0, -ENOMEM, or
 * -EPROTO when a bookkeeping check failed (@e says which). */
int gv_sim_run(gv_sim *s, gv_err *e) __attribute__((warn_unused_result));

typedef struct gv_sim_metrics {
	uint64_t jobs, jobs_completed, jobs_never;
	uint64_t placements, cycles, replans;
	double decision_s_total; /* in timed cycles */
	double decisions_per_second;
	double decision_ms_p50, decision_ms_p99, decision_ms_max;
	double utilization;	/* allocated cpu-s / offered (up) cpu-s */
	double makespan_s;	/* first submit to last end */
	double wait_s_mean, wait_s_p95;
	double bounded_slowdown_mean; /* max(1, (wait + run) / max(run, 10)) */
	double turnaround_s_mean;
	uint64_t migrations;
	double bytes_staged, bytes_migrated, bytes_checkpointed;
	double host_hours; /* hours hosts spent with a job bound */
	double work_lost_s; /* job-seconds of work redone after failures */
	uint64_t failures, restarts, checkpoints;
	uint64_t capacity_violations; /* must be 0 */
} gv_sim_metrics;

void gv_sim_metrics_get(const gv_sim *s, gv_sim_metrics *m);
/* The metrics as a JSON object (new reference; NULL on out-of-memory). */
json_t *gv_sim_metrics_json(const gv_sim_metrics *m);

/* What happened to the @i-th job added (for tests). */
typedef struct gv_sim_result {
	double start; /* first placed (-1: never) */
	double end;   /* ended (-1: did not) */
	uint32_t host; /* host index it ended on, or GV_SCHED_NONE */
	unsigned starts, moves;
} gv_sim_result;
int gv_sim_result_get(const gv_sim *s, size_t i, gv_sim_result *out);

#endif
