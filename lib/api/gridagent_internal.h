/* SPDX-License-Identifier: MIT */
/*
 * gridagent_internal.h - what the agent's grid files share: gridagent.c
 * (the report loop, staging and starting bound jobs, moves),
 * gridagent_lease.c (the lease, fencing, epochs, stale VMs) and
 * gridagent_replica.c (checkpoints copied to replica hosts, a job
 * restored from one, the peer requests that carry an epoch).
 * docs/host-loss.md says why it is built so.
 */
#ifndef GRIDVM_API_GRIDAGENT_INTERNAL_H
#define GRIDVM_API_GRIDAGENT_INTERNAL_H

#include <gridvm/api/gridagent.h>
#include <gridvm/xfer/xfer.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* Work in progress on one job (staging, starting, moving), or what went
 * wrong with it, until the controller releases it; and the grid's hold on
 * it here (epoch, fencing, replicas). */
struct gjob {
	uint64_t id;
	char vm[40];
	const char *state; /* "staging", "creating", "failed" (static strings) */
	char detail[256];
	char error[512];
	bool busy;	    /* a thread works on it */
	bool moving;
	char move_error[512];
	int64_t started_epoch; /* a start was made for this binding */
	int64_t moved_epoch;   /* it moved away from here under this binding */
	unsigned restore_tries; /* restores or input fetches of it that failed here */
	/* gridagent_lease.c: persisted in DATA/grid/held.json */
	int64_t epoch;	       /* the newest binding epoch seen for it here */
	bool fenced;	       /* paused by the fence, not yet confirmed */
	/* gridagent_replica.c */
	json_t *replicas;      /* the binding's replica addresses */
	json_t *held;	       /* {addr: [checkpoint ids]} each replica holds */
	bool replicating;      /* a replication thread runs */
	uint64_t repl_after;   /* monotonic ms: no new try before (a failure) */
	unsigned repl_gen, repl_done; /* checkpoints seen / mirrored */
	char repl_newest[64];  /* the newest local checkpoint when last mirrored */
	struct gjob *next;
};

struct gv_gridagent {
	gv_host *h;
	char *controller, *name, *addr, *site;
	char ctl_host[256];
	int ctl_port;
	unsigned cpus, report_s;
	uint64_t memory;
	double speed;
	double link_rate; /* measured staging rate, bytes/s (0: none yet) */
	json_t *labels;
	json_t *moved;	  /* moves made, not yet told to the controller */
	json_t *samples;  /* image -> {size, mtime, sample}: what it holds */
	unsigned samples_rev, samples_told; /* the controller has samples_told */
	bool sampling;	  /* the sampler thread runs */
	bool kick;	  /* report now: a VM ended */
	bool warming;	  /* a template is being built for the grid */
	json_t *warm_failed; /* "Nc-Mm" -> ms its build failed (gridagent_warm.c) */
	uint8_t key[GV_XFER_KEY_LEN];
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct gjob *jobs;
	unsigned threads; /* workers running */
	bool stop;
	pthread_t th;
	bool reachable;
	int said; /* what the log says: -1 nothing yet, 0 unreachable, 1 joined */
	/* the lease (gridagent_lease.c) */
	unsigned lease_ms;	/* the controller's lease (its replies say) */
	uint64_t lease_until;	/* CLOCK_MONOTONIC ms it holds until; 0: none */
	bool fencing;		/* the lease ran out: grid VMs are kept paused */
	pthread_t wd;
	bool wd_started;
	int keeper_fd;		/* the pipe to the fence keeper (gridagent_keeper.c) */
	pid_t keeper_pid;
};

/* ---- gridagent.c ---- */
struct gjob *gjob_find(gv_gridagent *g, uint64_t id, bool create);
bool ga_vm_exists(gv_gridagent *g, const char *name);

/* ---- gridagent_warm.c ---- */
/* Build the templates the reply says are in demand and this host lacks
 * (on a thread of its own; mu free). */
void ga_warm_templates(gv_gridagent *g, json_t *rep);

/* ---- gridagent_lease.c ---- */
uint64_t ga_mono_ms(void);
/* At start: the lease and the epochs a previous agent held (mu free). */
void ga_lease_load(gv_gridagent *g);
/* A reply to the report sent at @sent_ms (monotonic) came: the lease
 * runs to sent_ms + lease (mu free). */
void ga_lease_renewed(gv_gridagent *g, uint64_t sent_ms, json_t *rep);
bool ga_lease_valid(gv_gridagent *g); /* mu held */
/* Wait (up to @ms) for a valid lease; mu held. */
bool ga_lease_wait(gv_gridagent *g, uint64_t ms);
int ga_watchdog_start(gv_gridagent *g);
void ga_watchdog_stop(gv_gridagent *g);
/* Write the held epochs and fences down (mu held). */
void ga_held_save(gv_gridagent *g);
/* Before anything else a reply asks: kill the VMs the grid says are
 * stale here, drop the orders older than the epoch held, take the newer
 * epochs, resume the fenced VMs bound here at the epoch held. Removes
 * refused orders from @rep. mu free. */
void ga_settle(gv_gridagent *g, json_t *rep);
/* A peer request carrying an epoch for a job (checkpoint writes, a
 * checkpoint to send for a restore): NULL if it may go on (the epoch is
 * taken as seen), else the refusal. */
json_t *ga_epoch_check(gv_gridagent *g, json_t *req);

/* ---- gridagent_keeper.c ---- */
/* Start the fence keeper (and kill one a previous agent left). mu free. */
int ga_keeper_start(gv_gridagent *g);
/* Tell it the lease deadline (each watchdog tick; mu held). */
void ga_keeper_beat(gv_gridagent *g);
/* The agent stops: the keeper goes on alone. */
void ga_keeper_stop(gv_gridagent *g);
/* Hold as fenced the VMs the keeper paused while the agent was away. mu free. */
void ga_keeper_claim(gv_gridagent *g);

/* ---- gridagent_replica.c ---- */
/* The binding @b of a job here says where its checkpoints go (mu held). */
void ga_replicas_set(gv_gridagent *g, struct gjob *j, json_t *b);
/* Mirror new checkpoints of the jobs here to their replicas (mu held). */
void ga_replicate_kick(gv_gridagent *g);
/* The report's facts of a job's checkpoints: {"checkpoints": [{id,
 * created}], "replicas": {addr: [ids]}} added to @vm (mu held). */
void ga_replica_report(gv_gridagent *g, struct gjob *j, json_t *vm);
/* Restore job @id's VM @name (created, not started) from the binding's
 * restore order; @e says why not. mu free. */
int ga_restore(gv_gridagent *g, uint64_t id, const char *name, json_t *binding, gv_err *e);
/* Checkpoints the controller says to drop (a finished job's replicas). */
void ga_drop_checkpoints(gv_gridagent *g, json_t *rep);
/* "ckpt-send": send a checkpoint held here to the restoring host. */
json_t *ga_ckpt_send(gv_host *h, json_t *req);

#endif
