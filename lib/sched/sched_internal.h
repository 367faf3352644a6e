/* SPDX-License-Identifier: MIT */
/*
 * sched_internal.h - the scheduling library's state, shared by its files:
 * sched.c (the model: hosts, jobs, images, expression caches), queue.c (the
 * priority queue), plan.c (plans, check and apply, parameters),
 * reason.c (reason text), policy.c (filters, scores, one pick), backfill.c
 * (time profiles of hosts, reservations, the online cycle), batch.c (the
 * batch heuristics), replan.c (moves and the cost model).
 */
#ifndef GRIDVM_SCHED_INTERNAL_H
#define GRIDVM_SCHED_INTERNAL_H

#include <gridvm/sched/sched.h>

/* Open-addressing index from a 64-bit hash to an index (the caller checks
 * the key on a hash match). Slot value 0 is empty, 1 a tombstone, else
 * index + 2. */
struct sched_map_slot {
	uint64_t h;
	uint32_t v;
};
struct sched_map {
	struct sched_map_slot *s;
	uint32_t cap, used, tombs;
};

struct sched_img_have {
	uint32_t img;
	uint64_t missing;
};

struct sched_host {
	gv_sched_host pub;
	char *name;
	json_t *attrs; /* a reference */
	uint32_t used_cpus;
	uint64_t used_mem, used_disk;
	struct sched_img_have *imgs; /* sorted by img */
	uint32_t n_imgs, cap_imgs;
	uint32_t *jobs; /* bound job indices (pub.n_jobs of them) */
	uint32_t cap_jobs;
};

/* A cached evaluation of one expression over all hosts, shared by the jobs
 * that hold the same expression (by address). */
struct sched_xcache {
	const gv_expr *x; /* NULL: free entry */
	uint32_t refs;
	uint64_t ep_match,
	    ep_rank;	/* the host epoch each part was computed at (0: never) */
	uint64_t *bits; /* match, one bit per host */
	double *vals;	/* rank per host */
	uint32_t cap;	/* hosts the arrays hold */
};

struct sched_job {
	gv_sched_job pub;
	uint32_t gen; /* the slot's generation (queue entries carry it) */
	bool alive;
	bool queued_in;	      /* has an entry in the queue or its pending list */
	uint32_t img;	      /* image id, or GV_SCHED_NONE */
	uint32_t ckpt;	      /* the checkpoint it restores from (an image id), or NONE */
	uint64_t ckpt_size;   /* bytes of it a host without it fetches */
	uint32_t xreq, xrank; /* expression cache entries, or GV_SCHED_NONE */
	uint32_t hpos;	      /* position in its host's jobs[] */
	double qkey;	      /* the queue's sort key */
	/* static feasibility (at host epoch st_epoch) */
	uint64_t st_epoch;
	uint32_t n_static;     /* hosts that could ever run it */
	gv_sched_reason never; /* why none could (n_static == 0) */
	/* delay scheduling: the cycle it first declined hosts lacking its
	 * image (loc_waiting), until it is bound */
	bool loc_waiting;
	double loc_since;
};

struct sched_qent {
	uint32_t idx, gen;
	double key, submit; /* sort: key descending, then submit, then id */
	uint64_t id;
};

/* A host's use over time in a cycle: bound jobs until their estimated end,
 * jobs placed in this cycle, reservations and batch plans. */
struct sched_iv {
	double s, e;
	uint32_t cpus;
	uint64_t mem, disk;
	uint64_t job_id;
	bool resv; /* a reservation or a planned start, not a job running */
};
struct sched_ev {
	double t;
	int64_t dc, dm, dd; /* change of cpus, memory, disk in use at t */
};
struct sched_prof {
	struct sched_iv *v;
	uint32_t n, cap;
	struct sched_ev *ev; /* v's starts and ends, sorted (valid if ev_ok) */
	uint32_t n_ev, cap_ev;
	bool ev_ok;
	uint32_t gen;	   /* the cycle it was built in */
	uint32_t n_future; /* reservations/plans in it (the backfill filter applies) */
};

/* A host's free resources in the cycle (the state's minus the cycle's
 * tentative placements). */
struct sched_scr {
	uint32_t cpus;
	uint64_t mem, disk;
	double load;
};

struct gv_sched_state {
	struct sched_host *hosts;
	uint32_t n_hosts, cap_hosts;
	struct sched_map host_map;
	uint64_t epoch; /* bumped when hosts' attributes or capacity change */
	json_t *empty;	/* attributes of a host without any */

	struct sched_job *jobs;
	uint32_t n_jobs, cap_jobs; /* slots in use: [0, n_jobs) */
	uint32_t *free_slots;
	uint32_t n_free, cap_free;
	struct sched_map job_map;

	char **imgs; /* image names by id */
	uint32_t n_imgs, cap_imgs;
	struct sched_map img_map;

	struct sched_xcache *xc;
	uint32_t n_xc, cap_xc;
	uint32_t *xc_free; /* free entries */
	uint32_t n_xc_free, cap_xc_free;
	struct sched_map x_map;

	/* the queue: sorted entries, and entries added since the last cycle */
	struct sched_qent *q, *q2, *pend; /* q2: q's merge buffer */
	uint32_t n_q, cap_q, cap_q2, n_pend, cap_pend;
	double q_aging; /* aging rate the keys were computed with */
	bool q_resort;
	uint32_t *order; /* a cycle's queued jobs, in order */
	uint32_t cap_order;

	/* the cycle's scratch */
	double now;
	const gv_sched_params *p;
	uint32_t cycle;
	struct sched_scr *scr;
	struct sched_prof *prof;
	uint32_t cap_scr, cap_prof;
	uint32_t max_cpus;
	uint64_t max_mem, max_disk;
	bool max_dirty;
	double *tmp; /* for sorting candidate times */
	uint32_t cap_tmp;
};

/* sched.c */
int sched_map_put(struct sched_map *m, uint64_t h, uint32_t idx);
void sched_map_del(struct sched_map *m, uint64_t h, uint32_t idx);
uint64_t sched_hash_str(const char *s);
uint64_t sched_hash_u64(uint64_t x);
int sched_grow(void **arr, uint32_t *cap, uint32_t need, size_t elem);
const json_t *sched_attrs(const gv_sched_state *st, uint32_t h);
bool sched_match(gv_sched_state *st, uint32_t xc, uint32_t h);
double sched_rank(gv_sched_state *st, uint32_t xc, uint32_t h);
/* Does host @h hold image id @img whole (also a checkpoint: gv_sched_job_set_checkpoint)? */
bool sched_host_holds(const gv_sched_state *st, uint32_t h, uint32_t img);

/* plan.c */
int plan_push(gv_sched_plan *plan, bool act, const gv_sched_decision *d);

/* queue.c */
double sched_qkey(const gv_sched_job *job, double aging);
/* Give queued job @j an entry (if it has none). @return 0 or -ENOMEM. */
int sched_queue_push(gv_sched_state *st, uint32_t j);
/* The queued jobs in priority order; *@n their count. NULL on -ENOMEM. */
const uint32_t *sched_queue_order(gv_sched_state *st, const gv_sched_params *p,
				  uint32_t *n);

/* policy.c */
/* Start a cycle at @now: the scratch mirrors the state. @return -ENOMEM or 0. */
int sched_cycle_begin(gv_sched_state *st, double now, const gv_sched_params *p);
/* Could a host ever run @j (its requirements and the host's capacity)?
 * Cached per host epoch. */
bool sched_static_ok(gv_sched_state *st, uint32_t j, uint32_t h);
/* How many hosts could ever run @j (0: j->never says why). */
uint32_t sched_static_count(gv_sched_state *st, uint32_t j);
/* Is some host that could run @j up? */
bool sched_static_any_up(gv_sched_state *st, uint32_t j);
double sched_walltime(const gv_sched_job *job, const gv_sched_params *p);
double sched_link(const gv_sched_host *h, const gv_sched_params *p);
/* One pick over all hosts for the cycle's scratch. With @use_resv, hosts
 * with reservations take the job only where it delays none; with @delay
 * (and params' locality_wait), a job declines hosts lacking its image
 * within its wait (GV_WHY_WAIT_LOCALITY), and remembers when it began. */
uint32_t sched_pick_cycle(gv_sched_state *st, uint32_t j, bool use_resv, bool delay,
			  gv_sched_reason *why);
/* Reserve @j's resources on @h in the cycle's scratch (and profile). */
int sched_tentative(gv_sched_state *st, uint32_t j, uint32_t h, double s, double e);
bool sched_fits_now(const struct sched_scr *sc, const gv_sched_job *job);

/* backfill.c */
/* @h's profile for this cycle, built on first use. NULL on -ENOMEM. */
struct sched_prof *sched_prof(gv_sched_state *st, uint32_t h);
int sched_prof_add(gv_sched_state *st, uint32_t h, const struct sched_iv *iv);
/* Does @job fit on @h's profile during [@t, @t + @dur)? */
bool sched_prof_fits(gv_sched_state *st, uint32_t h, const gv_sched_job *job, double t,
		     double dur);
/* The earliest t >= now it fits for @dur (INFINITY: never). */
double sched_prof_earliest(gv_sched_state *st, uint32_t h, const gv_sched_job *job,
			   double dur);
/* The reservation that @job would delay on @h (its job id), 0 if none known. */
uint64_t sched_prof_blocker(gv_sched_state *st, uint32_t h, const gv_sched_job *job,
			    double dur);
int sched_online(gv_sched_state *st, const gv_sched_params *p, gv_sched_plan *plan);

/* batch.c */
int sched_batch(gv_sched_state *st, const gv_sched_params *p, gv_sched_plan *plan);

#endif
