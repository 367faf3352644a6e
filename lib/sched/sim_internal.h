/* SPDX-License-Identifier: MIT */
/*
 * sim_internal.h - the simulator's state, shared by sim.c (events, setup,
 * the run loop), sim_life.c (hosts and jobs between decisions) and
 * sim_decide.c (the library's cycles applied; metrics; checks).
 */
#ifndef GRIDVM_SCHED_SIM_INTERNAL_H
#define GRIDVM_SCHED_SIM_INTERNAL_H

#include <gridvm/sched/sim.h>

enum sim_ev_type {
	EV_ARRIVE,  /* idx: job */
	EV_STAGED,  /* job: its image (and checkpoint) arrived */
	EV_END,	    /* job: its work is done (if ver still matches) */
	EV_CKPT,    /* job: a checkpoint */
	EV_SWITCH,  /* job: a move's copy is done; the job pauses */
	EV_ARRIVED, /* job: the downtime is over; it runs on its destination */
	EV_FAIL,    /* idx: host */
	EV_JOIN,    /* host */
	EV_LOAD,    /* host: its background load changes */
	EV_CYCLE,   /* a scheduling cycle (ver: the current one only) */
	EV_REPLAN,  /* a re-planning cycle */
};

struct sim_ev {
	double t;
	uint64_t seq;
	uint8_t type, cls;
	uint32_t idx, ver;
};

enum sim_job_state {
	SJ_PENDING,   /* not submitted yet */
	SJ_QUEUED,    /* in the library's queue */
	SJ_STAGING,   /* bound; its image is on the way */
	SJ_RUNNING,   /* bound and running */
	SJ_MIGRATING, /* running on `host` while copied to `dest` */
	SJ_PAUSED,    /* a move's downtime */
	SJ_DONE,
	SJ_NEVER, /* no host could ever run it */
};

struct sim_job {
	gv_sim_job spec;
	enum sim_job_state st;
	uint32_t sidx;	     /* index in the library's state */
	uint32_t host, dest; /* where it is bound / runs; a move's destination */
	uint32_t hpos;	     /* position in its host's run[] */
	uint32_t qpos;	     /* position in queued[] */
	uint32_t ver;	     /* bumped to cancel its pending events */
	uint32_t endv;	     /* the same for its END event alone */
	double downtime;     /* a move's pause, s */
	double work;	     /* reference seconds of work left */
	double ckpt_work;    /* work left at its last checkpoint */
	double rate;	     /* reference seconds of work per second now */
	double t_upd;	     /* when work was last brought up to date */
	double bound_at;     /* when it took its current host's resources */
	double first_start, end;
	unsigned starts, moves, ckpts;
	bool copying; /* SJ_MIGRATING: runs slower while copied */
};

struct sim_host {
	gv_sim_host spec;
	uint32_t sidx;
	double link;
	uint32_t layers;
	bool up;
	double bg;	   /* background load, cpus */
	uint32_t run_cpus; /* cpus of the jobs running on it */
	uint32_t *run;	   /* those jobs */
	uint32_t n_run, cap_run;
	uint32_t bound;	   /* jobs bound to it (the library's view) */
	uint32_t alloc;	   /* their cpus */
	double busy_since; /* when bound went from 0 to 1 */
	double up_since;
	double rate; /* per-cpu speed now: speed x min(1, cpus / load) */
	bool load_dirty; /* the library has not seen its load yet */
	bool armed;	 /* its background load changes are under way */
};

struct gv_sim {
	gv_sim_opts o;
	gv_sched_state *st;
	gv_sched_plan plan;
	gv_rng rng;
	double now;

	struct sim_host *hosts;
	uint32_t n_hosts, cap_hosts;
	struct sim_job *jobs;
	uint32_t n_jobs, cap_jobs;
	uint32_t *queued; /* job indices in the library's queue */
	uint32_t n_queued, cap_queued;

	struct sim_ev *ev;
	size_t n_ev, cap_ev;
	uint64_t seq;
	bool dirty; /* a cycle may place something now */
	double cycle_at, last_cycle;
	uint32_t cycle_ver;

	uint32_t *dirty_hosts; /* hosts whose load the library has not seen */
	uint32_t n_dirty_hosts, cap_dirty_hosts;

	/* accounting */
	uint64_t up_cpus, alloc_total; /* cpus of up hosts; cpus bound */
	uint32_t busy_hosts;	       /* hosts with a job bound */
	uint64_t n_done, n_never;
	double first_submit, last_end;
	double cpu_alloc_s; /* allocated cpu-seconds */
	double cpu_up_s;    /* offered cpu-seconds (hosts up) */
	double busy_s;	    /* host-seconds with a job bound */
	double work_lost, bytes_staged, bytes_migrated, bytes_ckpt;
	uint64_t placements, cycles, replans, migrations, failures, restarts, ckpts;
	uint64_t violations; /* a host over its capacity */
	uint64_t bad_ends;   /* jobs that ended with work left */
	double *lat; /* timed cycles' durations, s */
	size_t n_lat, cap_lat;
	double lat_total;
};

int sim_push(gv_sim *s, double t, enum sim_ev_type type, uint32_t idx, uint32_t ver);
int sim_want_cycle(gv_sim *s);

/* sim_life.c */
void sim_advance(gv_sim *s, double t);
int sim_host_arm(gv_sim *s, uint32_t h);
int sim_host_fail(gv_sim *s, uint32_t h);
int sim_host_join(gv_sim *s, uint32_t h);
int sim_host_load(gv_sim *s, uint32_t h);
int sim_job_arrive(gv_sim *s, uint32_t j);
int sim_job_place(gv_sim *s, uint32_t j, uint32_t h);
int sim_job_run(gv_sim *s, uint32_t j);
int sim_job_end(gv_sim *s, uint32_t j);
int sim_job_checkpoint(gv_sim *s, uint32_t j);
int sim_job_move(gv_sim *s, uint32_t j, uint32_t to);
int sim_job_switch(gv_sim *s, uint32_t j);
int sim_job_arrived(gv_sim *s, uint32_t j);
void sim_job_never(gv_sim *s, uint32_t j);
uint32_t sim_job_by_sidx(const gv_sim *s, uint32_t sidx, uint64_t id);

/* sim_decide.c */
int sim_cycle(gv_sim *s);
int sim_replan(gv_sim *s);
int sim_check(gv_sim *s, gv_err *e);

#endif
