/* SPDX-License-Identifier: MIT */
/*
 * sched.h - the grid's scheduling decisions, as a pure library.
 *
 * A gv_sched_state is a snapshot of the grid: hosts (resources, load,
 * attributes, link rate, which images they lack) and jobs (queued, or
 * running on a host). The decision functions take the state and the time
 * `now` (seconds, any epoch) and fill a gv_sched_plan: what to place or move
 * where and why, and why every other job considered waits or stays. The
 * library has no I/O, no clock, no threads and no globals, so the controller
 * (gridvmctld) and the simulator (gridvm-sim) run the same code.
 *
 * The caller applies a plan: gv_sched_apply() checks one decision against
 * the state as it is now (a plan may have raced with other changes: the
 * optimistic scheme of Nomad and Omega) and reserves its resources.
 *
 * Placement is kube-scheduler's framework in small: filters (host up, the
 * job fits in what is free, its requirements expression), one score per
 * policy (pack, spread, load, locality; 0..100, higher is better), the
 * job's rank expression as tie-breaker or weight, and ties broken by host
 * name. The queue is ordered by priority with aging. Online mode places the
 * queue in order (greedy, strict, or EASY backfill); batch mode plans a
 * batch of jobs with min-min, max-min or sufferage over estimated
 * completion times (staging included). Re-planning moves running jobs when
 * the estimated gain beats the migration cost model's estimated cost.
 * docs/scheduling.md describes the model, the policies and the reasons.
 *
 * Indices: hosts and jobs are named by their index in the state (uint32_t).
 * A host index never changes (hosts are never removed, only marked down);
 * a job index is valid until gv_sched_job_remove() and may then be reused.
 */
#ifndef GRIDVM_SCHED_SCHED_H
#define GRIDVM_SCHED_SCHED_H

#include <gridvm/base/err.h>
#include <gridvm/sched/expr.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GV_SCHED_WUR __attribute__((warn_unused_result))
#define GV_SCHED_NONE UINT32_MAX /* no host / no job */

typedef struct gv_sched_state gv_sched_state;

/* ---- the grid's model ---- */

typedef enum gv_sched_host_state {
	GV_HOST_UP,	  /* takes new jobs */
	GV_HOST_DRAINING, /* takes none; its jobs are to be moved away */
	GV_HOST_DOWN,	  /* gone or unreachable; takes none */
} gv_sched_host_state;

/* A host. As a spec for gv_sched_host_add/update only the fields marked
 * "in" are read; the others are kept by the state. */
typedef struct gv_sched_host {
	const char *name;	   /* in (add only): unique, copied */
	gv_sched_host_state state; /* in */
	uint32_t cpus;		   /* in: vcpus it offers to the grid */
	uint64_t memory;	   /* in: bytes it offers */
	uint64_t disk;		   /* in: bytes of disk it offers */
	double load;	     /* in: measured CPU demand in cpus (1-min load average) */
	double speed;	     /* in: CPU speed relative to the reference (0: 1.0) */
	double link_rate;    /* in: measured bytes/s to it (0: params' default) */
	const json_t *attrs; /* in: for expressions; the state takes a reference */
	/* kept by the state */
	uint32_t cpus_free; /* what the bound jobs leave */
	uint64_t memory_free, disk_free;
	uint32_t n_jobs; /* jobs bound to it */
} gv_sched_host;

typedef enum gv_sched_job_state {
	GV_JOB_QUEUED,
	GV_JOB_RUNNING, /* bound to a host (staging, running or migrating) */
} gv_sched_job_state;

/* A job. As a spec for gv_sched_job_add only the fields marked "in" are
 * read. The expressions are borrowed: they must outlive the job in the
 * state (the state compares them by address to share evaluations). */
typedef struct gv_sched_job {
	uint64_t id;	     /* in: unique */
	uint32_t user;	     /* in: the submitter (not used by the policies yet) */
	int32_t priority;    /* in: higher first; aging adds to it (params) */
	double submit;	     /* in: submit time, s */
	uint32_t cpus;	     /* in: vcpus */
	uint64_t memory;     /* in: bytes */
	uint64_t disk;	     /* in: bytes of host disk it reserves (0: none checked) */
	double walltime;     /* in: run time estimate, s (0: params' default) */
	const char *image;   /* in: image name (NULL: none to stage); copied */
	uint64_t image_size; /* in: bytes a host without any of it fetches */
	const gv_expr *requires; /* in: requirements (NULL: any host) */
	const gv_expr *rank;	 /* in: preference (NULL: none) */
	double dirty_rate;	 /* in: bytes/s of memory it writes (live migration) */
	uint64_t disk_written;	 /* in: bytes in its disk overlay (a move copies them) */
	/* kept by the state */
	gv_sched_job_state state;
	uint32_t host;	  /* RUNNING: its host; else GV_SCHED_NONE */
	double start;	  /* RUNNING: when it was bound */
	bool moved;	  /* it has been moved at least once */
	double last_move; /* when it was last moved (if moved) */
} gv_sched_job;

/* An empty grid. NULL on out-of-memory. */
gv_sched_state *gv_sched_state_new(void);
/* Frees everything the state holds (not the expressions); NULL is fine. */
void gv_sched_state_free(gv_sched_state *st);

/* Add a host from @spec. @return 0 with *@idx set, -EEXIST (name taken),
 * -EINVAL (bad spec) or -ENOMEM; @e says why. */
int gv_sched_host_add(gv_sched_state *st, const gv_sched_host *spec, uint32_t *idx,
		      gv_err *e) GV_SCHED_WUR;
/* A host's new report: every "in" field but the name. Capacity below what
 * its jobs hold leaves nothing free (it is not an error). @return 0 or
 * -EINVAL. */
int gv_sched_host_update(gv_sched_state *st, uint32_t h, const gv_sched_host *spec,
			 gv_err *e) GV_SCHED_WUR;
void gv_sched_host_set_state(gv_sched_state *st, uint32_t h, gv_sched_host_state s);
void gv_sched_host_set_load(gv_sched_state *st, uint32_t h, double load);
/* How many bytes of @image @h lacks (0: it holds it whole). An image not
 * recorded for a host is lacking whole (the job's image_size).
 * @return 0 or -ENOMEM. */
int gv_sched_host_set_image(gv_sched_state *st, uint32_t h, const char *image,
			    uint64_t missing) GV_SCHED_WUR;
/* Forget every image recorded for @h (before recording a new report's). */
void gv_sched_host_clear_images(gv_sched_state *st, uint32_t h);
/* Bytes of @j's image that @h would fetch. */
uint64_t gv_sched_host_missing(const gv_sched_state *st, uint32_t h, uint32_t j);
/* Job @j restores from a checkpoint named @name (NULL: none now) that a
 * host without it fetches, @size bytes: hosts that hold it record it as
 * an image (gv_sched_host_set_image(.., @name, 0)); a host's missing
 * bytes for @j then count it too, so staging time, the locality policy
 * and ties prefer its holders. @return 0 or -ENOMEM. */
int gv_sched_job_set_checkpoint(gv_sched_state *st, uint32_t j, const char *name,
				uint64_t size) GV_SCHED_WUR;
/* Index of the host named @name, or GV_SCHED_NONE. */
uint32_t gv_sched_host_find(const gv_sched_state *st, const char *name);
uint32_t gv_sched_host_count(const gv_sched_state *st);
/* The host (read-only; valid until the state changes); NULL if out of range. */
const gv_sched_host *gv_sched_host_get(const gv_sched_state *st, uint32_t h);

/* Add a queued job from @spec. @return 0 with *@idx set, -EEXIST (id
 * taken), -EINVAL or -ENOMEM. */
int gv_sched_job_add(gv_sched_state *st, const gv_sched_job *spec, uint32_t *idx,
		     gv_err *e) GV_SCHED_WUR;
/* Bind @j to @h from @start: it is RUNNING there and holds its resources
 * (a job already bound elsewhere is first released). No check: the
 * controller restores what its store says. @return 0, -EINVAL or -ENOMEM. */
int gv_sched_job_bind(gv_sched_state *st, uint32_t j, uint32_t h,
		      double start) GV_SCHED_WUR;
/* Release @j's host; it is QUEUED again (e.g. its host failed). */
void gv_sched_job_unbind(gv_sched_state *st, uint32_t j);
/* Record that @j was moved at @when (gv_sched_apply does it for moves);
 * @when < 0: it has not been (a move that failed is forgotten). */
void gv_sched_job_set_moved(gv_sched_state *st, uint32_t j, double when);
/* New estimates for a running job (from the agents' reports). */
void gv_sched_job_set_estimates(gv_sched_state *st, uint32_t j, double walltime,
				double dirty_rate, uint64_t disk_written);
void gv_sched_job_set_priority(gv_sched_state *st, uint32_t j, int32_t priority);
/* Forget @j (it ended or was cancelled); its resources are released. */
void gv_sched_job_remove(gv_sched_state *st, uint32_t j);
/* Index of the job with @id, or GV_SCHED_NONE. */
uint32_t gv_sched_job_find(const gv_sched_state *st, uint64_t id);
/* One past the highest job index in use (iterate and skip NULLs). */
uint32_t gv_sched_job_limit(const gv_sched_state *st);
/* The job, or NULL if @j is not a job. */
const gv_sched_job *gv_sched_job_get(const gv_sched_state *st, uint32_t j);

/* ---- parameters ---- */

typedef enum gv_sched_policy {
	GV_SCHED_PACK,	   /* best fit: fill busy hosts, keep others empty */
	GV_SCHED_SPREAD,   /* most free after placement */
	GV_SCHED_LOAD,	   /* least measured load relative to its cpus */
	GV_SCHED_LOCALITY, /* least image staging time (bytes lacking / link rate) */
} gv_sched_policy;

typedef enum gv_sched_mode {
	GV_SCHED_ONLINE, /* place queued jobs one by one, in priority order */
	GV_SCHED_BATCH,	 /* plan a batch together with a heuristic */
} gv_sched_mode;

typedef enum gv_sched_queue {
	GV_SCHED_QUEUE_BACKFILL, /* in order; a job that cannot start gets a
				    reservation (up to `reservations` of them),
				    later jobs start only if they delay none (EASY) */
	GV_SCHED_QUEUE_STRICT,	 /* in order; the first job that cannot start
				    stops the queue (FCFS) */
	GV_SCHED_QUEUE_GREEDY,	 /* every job that fits starts (first fit in
				    priority order; big jobs may wait long) */
} gv_sched_queue;

typedef enum gv_sched_heuristic {
	GV_SCHED_MINMIN,    /* shortest completion first: good mean turnaround */
	GV_SCHED_MAXMIN,    /* longest completion first: long jobs not left last */
	GV_SCHED_SUFFERAGE, /* the job that loses most without its best host first */
} gv_sched_heuristic;

/* The migration cost model (docs/scheduling.md); the controller calibrates
 * it from measured migrations with gv_sched_cost_calibrate(). */
typedef struct gv_sched_cost {
	double setup_s;	    /* fixed: connect, start QEMU on the destination */
	double rate_factor; /* share of the link rate a migration achieves */
	double
	    mem_ratio; /* bytes sent per byte of guest memory (zero pages, compression) */
	double switchover_s;   /* fixed part of the downtime */
	double max_downtime_s; /* pre-copy stops when the rest goes in this */
	unsigned max_rounds;   /* pre-copy rounds before the switchover is forced */
	double overhead;       /* share of its speed a job loses while it is copied */
} gv_sched_cost;

typedef struct gv_sched_params {
	gv_sched_policy policy;
	gv_sched_mode mode;
	gv_sched_queue queue;
	unsigned reservations; /* backfill: jobs that get a reservation (1 = EASY) */
	gv_sched_heuristic heuristic;
	unsigned batch_max; /* batch: jobs planned together (the head of the queue) */
	unsigned
	    queue_depth; /* jobs looked at per cycle (0: all); others keep their reason */
	double rank_weight;    /* 0: rank breaks ties only; > 0: score + weight * rank */
	double aging_per_hour; /* priority points a job gains per hour of waiting */
	double default_walltime;  /* s, for jobs without an estimate */
	double overrun_grace;	  /* s a job past its estimate is still expected to run */
	double default_link_rate; /* bytes/s, for hosts without a measured rate */
	/* re-planning */
	unsigned max_moves;	  /* moves per cycle for gain (0: none) */
	unsigned max_drain_moves; /* moves per cycle off draining hosts (0: all) */
	double min_move_interval; /* s between two moves of one job */
	double move_margin;	  /* s the gain must beat the cost by */
	gv_sched_cost cost;
	/* delay scheduling (online mode): a queued job that could start now
	 * only on hosts lacking more of its image than the host that lacks
	 * least (plus a tenth of the image) declines them, for up to this
	 * many s from the first cycle it declined, waiting for such a host
	 * to have room (0: off) */
	double locality_wait;
} gv_sched_params;

/* The defaults: pack, online, backfill with 1 reservation, min-min, batches
 * of 64, rank as tie-breaker, 1 point per hour, walltime 1 h, grace 60 s,
 * 12.5 MB/s; 2 moves per cycle, 600 s between moves, margin 30 s; the
 * cost model of docs/bench-migration.md; no locality wait. */
void gv_sched_params_default(gv_sched_params *p);

/* Names as spelled on command lines ("pack", "min-min", "backfill", ...). */
const char *gv_sched_policy_name(gv_sched_policy p);
const char *gv_sched_mode_name(gv_sched_mode m);
const char *gv_sched_queue_name(gv_sched_queue q);
const char *gv_sched_heuristic_name(gv_sched_heuristic h);
/* @return 0 or -EINVAL (@e lists the names). */
int gv_sched_policy_parse(const char *s, gv_sched_policy *out, gv_err *e) GV_SCHED_WUR;
int gv_sched_mode_parse(const char *s, gv_sched_mode *out, gv_err *e) GV_SCHED_WUR;
int gv_sched_queue_parse(const char *s, gv_sched_queue *out, gv_err *e) GV_SCHED_WUR;
int gv_sched_heuristic_parse(const char *s, gv_sched_heuristic *out,
			     gv_err *e) GV_SCHED_WUR;

/* ---- decisions and reasons ---- */

typedef enum gv_sched_why {
	/* acts */
	GV_WHY_PLACE,	   /* chosen by the policy */
	GV_WHY_BACKFILL,   /* started ahead of reserved jobs, delaying none */
	GV_WHY_BATCH,	   /* the batch heuristic starts it now */
	GV_WHY_MOVE_GAIN,  /* a move whose gain beats its cost */
	GV_WHY_MOVE_DRAIN, /* a move off a draining host */
	/* a job that no host can ever run */
	GV_WHY_NEVER_NO_HOSTS, /* the grid has no hosts */
	GV_WHY_NEVER_EXPR,     /* no host matches its requirements */
	GV_WHY_NEVER_SIZE,     /* no (matching) host is big enough */
	/* a job that waits */
	GV_WHY_WAIT_HOSTS_DOWN,	 /* the hosts that could run it are draining or down */
	GV_WHY_WAIT_RESOURCES,	 /* they are busy */
	GV_WHY_WAIT_ORDER,	 /* strict order: behind an earlier job */
	GV_WHY_WAIT_RESERVATION, /* it would delay a reserved job */
	GV_WHY_RESERVED,	 /* it holds a reservation */
	GV_WHY_WAIT_BATCH,	 /* the batch plan starts it later */
	GV_WHY_WAIT_NEXT_BATCH,	 /* not in this batch */
	GV_WHY_WAIT_LOCALITY,	 /* declines hosts lacking its image (locality_wait) */
	/* a running job that stays */
	GV_WHY_STAY_NO_GAIN,   /* no destination gains more than the move costs */
	GV_WHY_STAY_NO_DEST,   /* no other host can take it now */
	GV_WHY_STAY_INTERVAL,  /* moved too recently */
	GV_WHY_STAY_BUDGET,    /* the cycle's moves are used up */
	GV_WHY_STAY_HOST_DOWN, /* its host is down: recovery, not a move */
	/* gv_sched_apply: the decision no longer holds */
	GV_WHY_STALE,
} gv_sched_why;

typedef enum gv_sched_resource {
	GV_RES_CPUS,
	GV_RES_MEMORY,
	GV_RES_DISK,
	GV_RES_ALL, /* each alone, but no host has all of them */
} gv_sched_resource;

/* Why, with the numbers the message quotes (captured when decided, so the
 * text stays true after the state changes). Per code (times in s, "in"
 * means from the cycle's now):
 *   PLACE, BACKFILL: host; v: cpus free, cpus, memory free, memory, bytes
 *     to fetch, staging s, rank, load; n[0]: the job has a rank;
 *     BACKFILL: other = the (first) reserved job it goes ahead of
 *   BATCH, WAIT_BATCH: policy = heuristic; host; v: completes in, staging,
 *     walltime, starts in, bytes to fetch, second best completion (-1)
 *   MOVE_GAIN, MOVE_DRAIN, STAY_NO_GAIN, STAY_BUDGET (host = destination,
 *     or GV_SCHED_NONE when no host would be faster): v: gain, cost, copy,
 *     downtime, bytes sent, rate here, rate there, margin
 *   NEVER_EXPR: n[1] hosts; NEVER_SIZE: resource, v[0] needed, v[1] the
 *     largest (GV_RES_ALL: v = cpus, memory, disk needed), n[0] hosts
 *     matching its requirements, n[1] hosts
 *   WAIT_HOSTS_DOWN: n[0] hosts that could run it
 *   WAIT_RESOURCES: n[0] hosts that could run it; v[0..2] cpus, memory,
 *     disk needed; v[3..5] hosts short of each (-1: not counted)
 *   WAIT_ORDER, WAIT_RESERVATION: other = the job it waits for
 *   RESERVED: host, v[0] starts in; WAIT_NEXT_BATCH: n[0] batch size
 *   WAIT_LOCALITY: host = one that lacks least of its image (busy); v[0]
 *     s left to wait, v[1] the wait, v[2] bytes that host lacks, v[3]
 *     the least any host with room lacks; n[0] hosts with room declined
 *   STAY_INTERVAL: v[0] since the last move, v[1] the minimum
 *   STAY_NO_DEST, STAY_BUDGET: n[1] = 1 when its host is draining;
 *     STAY_BUDGET: n[0] the budget
 *   STALE: n[0] 1 job gone, 2 state changed, 3 host not up, 4 no longer
 *     fits, 5 no longer matches; host */
typedef struct gv_sched_reason {
	gv_sched_why why;
	uint8_t policy;	  /* gv_sched_policy or gv_sched_heuristic, per code */
	uint8_t resource; /* gv_sched_resource (NEVER_SIZE) */
	uint32_t host;	  /* the host the message names, or GV_SCHED_NONE */
	uint64_t other;	  /* the job id it names (a reservation, a blocker) */
	uint32_t n[2];	  /* counts of hosts */
	double v[8];	  /* numbers: free resources, seconds, bytes, ... */
} gv_sched_reason;

typedef enum gv_sched_act {
	GV_ACT_PLACE, /* bind a queued job to `host` */
	GV_ACT_MOVE,  /* move a running job from `from` to `host` */
	GV_ACT_WAIT,  /* a queued job stays queued */
	GV_ACT_STAY,  /* a running job stays where it is */
} gv_sched_act;

typedef struct gv_sched_decision {
	gv_sched_act act;
	uint32_t job; /* index in the state */
	uint64_t job_id;
	uint32_t host; /* PLACE/MOVE: destination; WAIT: reserved or planned host */
	uint32_t from; /* MOVE, STAY: where it runs */
	double
	    start; /* PLACE/MOVE: now; WAIT: estimated start (reserved, planned; a
	      locality wait: when it takes any host) or 0 */
	gv_sched_reason reason;
} gv_sched_decision;

/* What a cycle decided. The caller owns it; it may be reused across
 * cycles (gv_sched_plan_clear keeps the buffers). */
typedef struct gv_sched_plan {
	double now;
	gv_sched_decision *acts; /* PLACE and MOVE, in the order decided */
	size_t n_acts, cap_acts;
	gv_sched_decision *held; /* WAIT and STAY, each with its reason */
	size_t n_held, cap_held;
} gv_sched_plan;

void gv_sched_plan_init(gv_sched_plan *plan);
void gv_sched_plan_clear(gv_sched_plan *plan);
void gv_sched_plan_free(gv_sched_plan *plan);

/* One line for `gridvm jobs` / `job events`, into @buf (always NUL
 * terminated): "pack: host h2 has 2 of 8 cpus and 3 GiB of 16 GiB free,
 * fetches 0 B", "no host can ever satisfy the requirements (no host
 * matches `arch == "arm64"`)", "held back by backfill reservation for job
 * 17 (starts on h1 in 120 s)", ... @return @buf. */
const char *gv_sched_reason_text(const gv_sched_state *st, const gv_sched_decision *d,
				 char *buf, size_t len);
/* "place", "never", "wait", "move", "stay" ... the code's short name. */
const char *gv_sched_why_name(gv_sched_why why);
/* Does the code say the job can never run as the grid is? */
bool gv_sched_why_is_never(gv_sched_why why);

/* ---- deciding ---- */

/* Place queued jobs (@p->mode, @p->queue, @p->policy) at @now. Appends to
 * @plan: PLACE acts, and a WAIT for every queued job looked at and not
 * placed. The state's hosts and jobs are not changed (only caches it keeps
 * for the next cycle). @return 0 or -ENOMEM. */
int gv_sched_schedule(gv_sched_state *st, double now, const gv_sched_params *p,
		      gv_sched_plan *plan) GV_SCHED_WUR;

/* The host @p->policy picks for queued job @j now, ignoring the queue
 * (one online decision). @return the host or GV_SCHED_NONE; *@why (if not
 * NULL) gets the reason either way. */
uint32_t gv_sched_pick(gv_sched_state *st, uint32_t j, double now,
		       const gv_sched_params *p, gv_sched_reason *why);

/* Consider moving every running job at @now. Appends MOVE acts (those off
 * draining hosts first) and a STAY for every other running job.
 * @return 0 or -ENOMEM. */
int gv_sched_replan(gv_sched_state *st, double now, const gv_sched_params *p,
		    gv_sched_plan *plan) GV_SCHED_WUR;

/* Does @d still hold for the state as it is now (the job is still queued,
 * or still on `from`; the host is up, the job fits and matches)? @return 0,
 * or -ESTALE with *@why (if not NULL) saying what changed. */
int gv_sched_check(const gv_sched_state *st, const gv_sched_decision *d,
		   gv_sched_reason *why);
/* Check @d and apply it at @now: PLACE binds the job, MOVE rebinds it and
 * records the move. WAIT and STAY change nothing. @return 0, -ESTALE
 * (nothing changed; *@why says why), or -ENOMEM. */
int gv_sched_apply(gv_sched_state *st, const gv_sched_decision *d, double now,
		   gv_sched_reason *why) GV_SCHED_WUR;
/* Apply every act of @plan in order, skipping stale ones. @return how
 * many were applied, or -ENOMEM. */
int gv_sched_plan_apply(gv_sched_state *st, const gv_sched_plan *plan, double now);

/* ---- estimates (shared with the simulator) ---- */

/* A job's priority at @now: priority + aging_per_hour * waited hours. */
double gv_sched_priority(const gv_sched_job *job, double now, const gv_sched_params *p);
/* Seconds to stage @j's image onto @h (missing bytes / link rate). */
double gv_sched_stage_time(const gv_sched_state *st, uint32_t j, uint32_t h,
			   const gv_sched_params *p);

typedef struct gv_sched_move_est {
	double copy_s;	   /* while the job runs: setup, disk, pre-copy rounds */
	double downtime_s; /* the job paused */
	double total_s;	   /* copy_s + downtime_s */
	double bytes;	   /* sent: disk + memory rounds */
	unsigned rounds;   /* pre-copy rounds */
	bool converges;	   /* the pre-copy reached max_downtime_s */
} gv_sched_move_est;

/* The cost model: moving a VM with @memory bytes dirtied at @dirty_rate
 * bytes/s and @disk_missing bytes the destination lacks over a link of
 * @rate bytes/s. */
void gv_sched_move_estimate(const gv_sched_cost *c, uint64_t memory, double dirty_rate,
			    uint64_t disk_missing, double rate, gv_sched_move_est *out);

/* A measured migration, for calibration. */
typedef struct gv_sched_move_sample {
	double bytes;	   /* bytes sent */
	double rate;	   /* the link's rate, bytes/s */
	double total_s;	   /* start to the job running on the destination */
	double downtime_s; /* the job paused (< 0: not measured) */
	double memory;	   /* the VM's memory, bytes (0: not known) */
	double disk_bytes; /* of @bytes, those of the disk */
} gv_sched_move_sample;

/* Fit @c to @n measured migrations: setup_s and rate_factor by least
 * squares of total_s over bytes/rate (with fewer than 2 distinct points,
 * or a negative intercept, only rate_factor; and setup_s halved to half
 * the time measured when it alone would take nearly all of it; the
 * factor within 0.01..16), switchover_s as the mean
 * downtime, mem_ratio as the mean of memory bytes sent per byte of memory.
 * @return 0, or -EINVAL (no usable sample; @c unchanged). */
int gv_sched_cost_calibrate(gv_sched_cost *c, const gv_sched_move_sample *s, size_t n);

#endif
