/* SPDX-License-Identifier: MIT */
/*
 * workload.h - job traces for the simulator: the Standard Workload Format
 * of the Parallel Workloads Archive (read and written one line at a time),
 * a seeded generator of synthetic traces in that format, and the small
 * deterministic PRNG both the generator and the simulator draw from.
 *
 * Pure: no I/O (the caller reads and prints the lines), no clock, no
 * global state. The same seed gives the same trace on every machine.
 *
 * SWF (Feitelson et al., https://www.cs.huji.ac.il/labs/parallel/workload/):
 * one job per line, 18 whitespace-separated numeric fields, -1 where a
 * value is unknown; lines starting with ';' are header comments.
 * docs/simulator.md says how the simulator uses each field.
 */
#ifndef GRIDVM_SCHED_WORKLOAD_H
#define GRIDVM_SCHED_WORKLOAD_H

#include <gridvm/base/err.h>
#include <stddef.h>
#include <stdint.h>

#define GV_SWF_FIELDS 18

/* One SWF record; every field as in the format (-1: unknown). Times in
 * seconds, memory in KB per processor. */
typedef struct gv_swf_job {
	int64_t id;	      /* 1 job number */
	double submit;	      /* 2 submit time */
	double wait;	      /* 3 wait time */
	double run;	      /* 4 run time */
	int64_t procs;	      /* 5 allocated processors */
	double avg_cpu;	      /* 6 average CPU time used */
	int64_t used_mem;     /* 7 used memory, KB per processor */
	int64_t req_procs;    /* 8 requested processors */
	double req_time;      /* 9 requested time (the walltime estimate) */
	int64_t req_mem;      /* 10 requested memory, KB per processor */
	int64_t status;	      /* 11 1 completed, 0 failed, 5 cancelled, ... */
	int64_t user;	      /* 12 user id */
	int64_t group;	      /* 13 group id */
	int64_t app;	      /* 14 application (executable) number */
	int64_t queue;	      /* 15 queue number */
	int64_t partition;    /* 16 partition number */
	int64_t preceding;    /* 17 preceding job number */
	double think;	      /* 18 think time from the preceding job */
} gv_swf_job;

/* The field's name as the format names it ("run time"), 1-based; NULL if
 * out of range. */
const char *gv_swf_field_name(unsigned field);

/* Parse one line (without or with its newline). @return 1 with *@out
 * filled, 0 for a blank line or a ';' comment, or -EINVAL with @e saying
 * which field and why ("field 4 (run time): \"abc\" is not a number",
 * "17 fields, an SWF line has 18"). Times must be >= -1. */
int gv_swf_parse_line(const char *line, gv_swf_job *out, gv_err *e)
	__attribute__((warn_unused_result));

/* One line, newline included, into @buf. @return its length (as snprintf:
 * >= @len means it was cut). */
int gv_swf_format(const gv_swf_job *j, char *buf, size_t len);

/* ---- a deterministic PRNG (xoshiro256**, seeded by splitmix64) ---- */

typedef struct gv_rng {
	uint64_t s[4];
} gv_rng;

void gv_rng_seed(gv_rng *r, uint64_t seed);
uint64_t gv_rng_next(gv_rng *r);
/* Uniform in [0, 1). */
double gv_rng_unit(gv_rng *r);
/* Uniform integer in [0, n) (n > 0). */
uint64_t gv_rng_below(gv_rng *r, uint64_t n);
/* Exponential with mean @mean. */
double gv_rng_exp(gv_rng *r, double mean);
/* Standard normal (Box-Muller; one value per call). */
double gv_rng_normal(gv_rng *r);
/* Index drawn with probability proportional to @w[i]. */
unsigned gv_rng_pick(gv_rng *r, const double *w, unsigned n);

/* ---- the synthetic trace generator ---- */

/* The distributions (docs/simulator.md has the reasons):
 *   arrivals: a Poisson process of `rate` jobs per hour whose rate follows
 *     a daily cycle (x(1 + 0.5 sin), peak at 14:00 of day 0's clock); each
 *     arrival is a burst of several jobs from one user with one image with
 *     probability `burst_p` (2..20 jobs, 0..10 s apart, or
 *     closer when jobs come faster than one per 10 s), else one job;
 *   processors: 1, 2, 4, 8, 16, 32 with probabilities 40, 20, 15, 12, 8, 5 %;
 *   run time: lognormal, median `run_median` s, sigma `run_sigma`, cut to
 *     [10 s, 48 h];
 *   requested time (walltime estimate): run time x (1 + 3u^2), u uniform,
 *     rounded up to 15 minutes (users overestimate, by up to 4x; 10% ask
 *     exactly the round-up of their run time);
 *   memory per processor: 512 MiB, 1, 2, 4 GiB with 30, 35, 25, 10 %;
 *   users: `users` of them, Zipf-like (user k with weight 1/k); each user
 *     has a favourite image (Zipf over `images`) used 80% of the time;
 *   application = the image number (1-based), so a trace carries its image.
 */
typedef struct gv_workload_opts {
	uint64_t jobs;	   /* how many */
	uint64_t seed;
	double rate;	   /* jobs per hour, on average (default 500) */
	double burst_p;	   /* chance an arrival is a burst (default 0.3) */
	double run_median; /* s (default 1200) */
	double run_sigma;  /* of log(run time) (default 1.5) */
	unsigned users;	   /* default 200 */
	unsigned images;   /* default 8 (the simulator's image mix) */
} gv_workload_opts;

/* Defaults for every field 0 in @o. */
void gv_workload_opts_fill(gv_workload_opts *o);

/* A generator: call gv_workload_next() @o->jobs times. The trace is sorted
 * by submit time and numbered from 1. */
typedef struct gv_workload {
	gv_workload_opts o;
	gv_rng rng;
	uint64_t made;
	double t;	      /* the current arrival's time */
	unsigned burst_left;  /* jobs left in the current burst */
	int64_t burst_user, burst_app;
	unsigned *fav;	      /* each user's favourite image (1-based) */
} gv_workload;

/* @return 0 or -ENOMEM. */
int gv_workload_init(gv_workload *w, const gv_workload_opts *o)
	__attribute__((warn_unused_result));
/* The next job. */
void gv_workload_next(gv_workload *w, gv_swf_job *out);
void gv_workload_free(gv_workload *w);

#endif
