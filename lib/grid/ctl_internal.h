/* SPDX-License-Identifier: MIT */
/*
 * ctl_internal.h - the controller's state in memory, shared by its files:
 * ctl.c (open, load, store, events), ctl_api.c (users' requests),
 * ctl_hosts.c (agents' reports and their bindings), ctl_loop.c (the
 * deciding cycle, collecting outputs), ctl_metrics.c (the metrics),
 * ctl_elect.c (the leadership), ctl_peers.c and ctl_files.c (the other
 * controllers, and the job files each one holds).
 *
 * One mutex (mu) guards everything here; it is never held across a
 * network call (those copy what they need first). The store is the truth:
 * every change of a job or host is written there before it is acted on.
 */
#ifndef GRIDVM_GRID_CTL_INTERNAL_H
#define GRIDVM_GRID_CTL_INTERNAL_H

#include <gridvm/api/metrics.h>
#include <gridvm/blocks/blocksample.h>
#include <gridvm/grid/ctl.h>
#include <gridvm/grid/job.h>
#include <gridvm/grid/kv.h>
#include <gridvm/sched/sched.h>
#include <gridvm/xfer/xfer.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define CTL_KEY_JOBS "/grid/jobs/"
#define CTL_KEY_HOSTS "/grid/hosts/"
#define CTL_KEY_EVENTS "/grid/events/"
#define CTL_KEY_NEXT_ID "/grid/meta/next-id"
#define CTL_KEY_LEADER "/grid/leader" /* {"addr": ADDR:PORT}, under the leader's lease */
/* ADDR:PORT -> {"addr", "pid"}: every controller, each under a lease of its own */
#define CTL_KEY_CONTROLLERS "/grid/controllers/"
/* Measured moves the cost model is fitted to (the newest). */
#define CTL_MOVE_SAMPLES 32

/* An image's block sample (ctl_learn.c). */
struct ctl_sample {
	char name[128];
	gv_blocksample s;
};

struct ctl_host {
	char name[64];
	char addr[300];	     /* where its agent serves (ADDR:PORT) */
	uint32_t sidx;	     /* in the scheduling state */
	json_t *labels;	     /* {KEY: VALUE}, persisted */
	bool drained;	     /* persisted */
	json_t *report;	     /* its last report (resources, attributes, VMs) */
	uint64_t last_seen;  /* monotonic ms of the last report */
	bool up;
	bool lost;	     /* no report for the lease and the grace: its jobs
			      * were recovered elsewhere; it takes no work until
			      * a report shows none of their VMs (ctl_loop.c) */
	json_t *drops;	     /* VM names whose replicated checkpoints it is to drop */
	int64_t mod_rev;     /* of its record in the store */
	/* what it holds, as block samples (ctl_learn.c), and the bytes of each
	 * of the grid's reference images it lacks (-1: cannot tell) */
	struct ctl_sample *samples;
	size_t nsamples;
	bool samples_known;  /* it sent them since the controller started */
	unsigned samples_gen;
	int64_t *missing;
	size_t nmissing;
	unsigned missing_host_gen, missing_cat_gen;
	double move_rate; /* bytes/s of the moves into it (0: none measured) */
	/* the jobs bound to it, in id order (ctl_host_list_job adds one when
	 * it is bound here; a report drops those that ended, wait again or
	 * went elsewhere): a report looks at its own jobs, not the grid's */
	struct ctl_job **bound;
	size_t nbound, cap_bound;
};

struct ctl_job {
	uint64_t id;
	json_t *rec;	     /* the record, as stored */
	int64_t mod_rev;     /* of the record in the store */
	uint32_t sidx;	     /* in the scheduling state, or GV_SCHED_NONE */
	gv_expr *requires, *rank;
	unsigned events;     /* events written (the next one's number) */
	bool collecting;     /* its outputs are being fetched */
	int last_why;	     /* the scheduler's last reason code for it (-1: none) */
	uint64_t state_since; /* monotonic ms of the last state change */
	double moved_before;  /* its last move before the one under way (-1: none) */
	uint32_t listed;      /* on the bound list of c->hosts[listed - 1] (0: none) */
};

struct gv_ctl {
	pthread_mutex_t mu;
	pthread_cond_t wake; /* something changed: decide now */
	gv_ctl_opts o;
	char *datadir, *listen_addr;
	uint8_t key[GV_XFER_KEY_LEN];
	gv_kv *kv;
	gv_xfer_server *xs;
	gv_xfer_server *ls; /* the unix socket of local users (o.socket) */
	char *quotas;	    /* the users' quota file */
	gv_sched_state *st;
	struct ctl_host *hosts;
	size_t nhosts, cap_hosts;
	struct ctl_job **jobs; /* sorted by id */
	bool recover_hint; /* some job may wait to restore a checkpoint (ctl_recover_sched) */
	size_t njobs, cap_jobs;
	uint64_t next_id;
	/* jobs loaded bound to a host the store did not name (yet): listed
	 * when a host of that name joins */
	size_t unlisted;
	pthread_t loop;
	bool loop_started, stopping;
	uint64_t last_replan;
	uint64_t started_ms; /* monotonic ms it began to decide (the lease of
			      * a host not heard from since counts from then) */
	uint64_t checked_ms; /* the last look at the hosts (ctl_loop.c) */
	unsigned collectors; /* output collections running */
	gv_metrics_server *metrics;
	/* leadership (ctl_elect.c; without an election it leads from the
	 * start, until UINT64_MAX); under mu */
	pthread_t elect;
	bool elect_started;
	bool leading, deposed;
	bool store_failed;	 /* a write, commit or sync failed: deposed */
	uint64_t lead_until;	 /* monotonic ms: it acts only before this */
	char leader[300];	 /* the leader's address ("": none known) */
	pthread_cond_t elect_wake; /* stopping */
	/* the other controllers (ctl_peers.c) and the job files copied from
	 * them (ctl_files.c); with an election only */
	pthread_t peers, files;
	bool peers_started, files_started;
	struct ctl_fetching *fetching; /* files being fetched, under mu */
	pthread_cond_t files_cv;       /* one of them arrived (or failed) */
	/* learned from the agents (ctl_learn.c) */
	struct ctl_sample *cat; /* the first sample seen of each image */
	size_t ncat;
	unsigned cat_gen;
	gv_sched_cost cost_base; /* the configured model, before calibration */
	gv_sched_move_sample moves[CTL_MOVE_SAMPLES];
	size_t nmoves;
	uint64_t moves_measured;
	json_t *demand;	     /* the job sizes in demand (ctl_templates_wanted) */
	uint64_t demand_ms;  /* when it was counted */
	struct { /* counted for the metrics (ctl_metrics.c), under mu */
		uint64_t submitted, placements, cycles, replans;
		uint64_t moves_started, moves_completed, moves_failed;
		uint64_t recoveries; /* jobs of lost hosts put back to run */
		gv_metrics_hist decide_s; /* time of each gv_sched_schedule */
	} count;
};

/* ---- ctl.c ---- */
struct ctl_job *ctl_job_find(gv_ctl *c, uint64_t id);
struct ctl_host *ctl_host_find(gv_ctl *c, const char *name);
/* The host of the scheduler's host @sidx, or NULL. */
struct ctl_host *ctl_host_of_sidx(gv_ctl *c, uint32_t sidx);
/* Write the job's record (after changing it in memory); mu held. */
int ctl_job_save(gv_ctl *c, struct ctl_job *j, gv_err *e);
int ctl_host_save(gv_ctl *c, struct ctl_host *h, gv_err *e);
/* Set the job's state (and a reason) and save; mu held. */
int ctl_job_set_state(gv_ctl *c, struct ctl_job *j, gv_job_state s, const char *reason);
/* A write to the store failed (@r, @msg): the memory of the grid no
 * longer matches the store, so this controller acts no more (deposed;
 * the program starts a new one, which loads the grid from the store);
 * mu held. -ESTALE: fenced, another controller leads. */
void ctl_store_failed(gv_ctl *c, int r, const char *msg);
/* Commit the batch begun with gv_kv_batch_begin (mu held; the caller
 * syncs with gv_kv_sync once it let go of mu, ctl_request does for
 * requests); a failed commit is ctl_store_failed. */
int ctl_batch_commit(gv_ctl *c, gv_err *e);
/* Append an event to the job's history ("place", "wait", "move",
 * "state", ...); mu held. */
void ctl_event(gv_ctl *c, struct ctl_job *j, const char *kind, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Add a job (record taken) to memory and to the scheduler if it waits or
 * runs; mu held. */
struct ctl_job *ctl_job_add(gv_ctl *c, json_t *rec, int64_t mod_rev, gv_err *e);
/* Its job leaves the scheduler (it ended). */
void ctl_job_unschedule(gv_ctl *c, struct ctl_job *j);
/* A host seen for the first time; mu held. */
struct ctl_host *ctl_host_add(gv_ctl *c, const char *name, gv_err *e);
/* DATADIR/jobs/ID (malloc'd). */
char *ctl_job_dir(gv_ctl *c, uint64_t id);
double ctl_now(void);
/* Wake the deciding loop. */
void ctl_kick(gv_ctl *c);

/* Read the grid from the store into memory (at start, or on winning
 * the leadership); mu held when other threads run. */
int ctl_load(gv_ctl *c, gv_err *e);

/* ---- ctl_elect.c ---- */
/* It leads and its lease has not run out on its own clock; mu held.
 * Deciding, answering and writing happen only while it does. */
bool ctl_leading(gv_ctl *c);
/* NULL while it leads; else a standby's reply (a redirect to the
 * leader, ctlcall.h). Takes mu. */
json_t *ctl_standby_reply(gv_ctl *c);
/* The election's thread (opts.leader_ttl_s > 0). */
void *ctl_elect(void *arg);
/* Wait up to @ms (woken when the controller stops); false once it
 * stops. mu not held. */
bool ctl_sleep(gv_ctl *c, uint64_t ms);
bool ctl_stopping(gv_ctl *c);
/* @rep (taken), unless a write of the request was fenced (-ESTALE: another
 * controller leads now; nothing of that write applied): then it is
 * deposed, and the reply is a standby's, so that the client asks the new
 * leader. */
json_t *ctl_fenced_reply(gv_ctl *c, json_t *rep);

/* ---- ctl_api.c ---- */
json_t *ctl_request(void *ud, json_t *req);

/* ---- ctl_peers.c ---- */
/* The thread that registers this controller among the grid's and keeps
 * its lease alive (opts.leader_ttl_s > 0). */
void *ctl_peers(void *arg);
/* The other controllers registered now: their addresses, NULL-terminated
 * (none without an election); free with ctl_peers_free. */
char **ctl_peers_list(gv_ctl *c);
void ctl_peers_free(char **v);
/* Send @req (borrowed) to every other controller at once and wait for
 * their replies (each up to @timeout_ms): how many answered ok; *asked,
 * how many were asked; the others' reasons in @why. mu not held. */
int ctl_peers_call(gv_ctl *c, json_t *req, int timeout_ms, unsigned *asked, char *why,
		   size_t len);

/* ---- ctl_files.c (mu not held in any) ---- */
/* The transfer server's resolver: "job:ID:input", "job:ID:output" (for
 * agents and users; one this controller lacks is fetched from a peer
 * first), "peer:KIND:ARG" (for the other controllers). */
int ctl_resolve(void *ud, const char *name, char **path, char **idx_path);
/* This controller holds the file @kind ("input", "log", "output") of
 * @arg (the upload token of an input, else the job id), fetched from
 * @from (may be NULL) or another peer if it did not: 0, or a negative
 * errno with @e saying why. */
int ctl_files_ensure(gv_ctl *c, const char *kind, const char *arg, const char *from, gv_err *e);
/* Have every other controller copy the file (they fetch it from this
 * one): 0 once at least one did, or when none is registered. */
int ctl_files_push(gv_ctl *c, const char *kind, const char *arg, gv_err *e);
/* A submission's input: the upload @token of @bytes (and SHA-256 @sha256,
 * hex; NULL: not checked) becomes DATA/inputs/TOKEN.tar (it may be there
 * already: a submission sent again after the leader changed), copied to
 * the other controllers. */
int ctl_input_adopt(gv_ctl *c, const char *token, int64_t bytes, const char *sha256,
		    gv_err *e);
/* The input of a submission that failed after it was adopted. */
void ctl_input_drop(gv_ctl *c, const char *token);
/* {"op": "ctl-file-get", "kind", "arg", "from"}: another controller asks
 * this one to hold a copy (answered also while standing by). */
json_t *ctl_files_op(gv_ctl *c, json_t *req);
/* The thread that copies, in the background, the files the job records
 * say this controller should hold and it lacks. */
void *ctl_files_sync(void *arg);
/* Whether @peer may fetch @name: a user only their own jobs' files. */
int ctl_authorize(void *ud, const gv_peer_id *peer, const char *name);

/* ---- ctl_hosts.c ---- */
json_t *ctl_host_report(gv_ctl *c, json_t *req);
/* @j is bound to @h now (its record names @h): it goes on @h's list of
 * bound jobs, and off the list it was on; mu held. */
void ctl_host_list_job(gv_ctl *c, struct ctl_host *h, struct ctl_job *j);
/* Push what a host's report says into the scheduler's host; mu held. */
void ctl_host_to_sched(gv_ctl *c, struct ctl_host *h);
json_t *ctl_hosts_json(gv_ctl *c);

/* ---- ctl_learn.c ---- */
/* What a report teaches: samples, measured moves, disks written; mu held. */
void ctl_learn_report(gv_ctl *c, struct ctl_host *h, json_t *req);
/* Its images into the scheduler: held ones, and the estimated bytes it
 * lacks of the others; mu held. */
void ctl_host_images_to_sched(gv_ctl *c, struct ctl_host *h);
/* A recovered job's checkpoint for the scheduler: its holders hold it (ctl_learn.c). */
void ctl_recover_sched(gv_ctl *c, struct ctl_job *j);
/* After @h's images were recorded anew: the checkpoints it holds of them. */
void ctl_recover_holdings(gv_ctl *c, struct ctl_host *h);
/* {image: bytes it lacks} for the images it does not hold. */
json_t *ctl_host_missing_json(gv_ctl *c, struct ctl_host *h);
/* The measured moves from the store, and the model fitted to them. */
void ctl_learn_load(gv_ctl *c);
/* The job configurations in demand, for the agents to keep templates of:
 * [{cpus, memory_mib}], the 3 most common among jobs waiting or bound
 * (counted again at most once a second). New reference; mu held. */
json_t *ctl_templates_wanted(gv_ctl *c);
/* {"moves_measured", "samples": [...], "model": {...}} */
json_t *ctl_cost_json(gv_ctl *c);
void ctl_learn_free(gv_ctl *c);

/* ---- ctl_metrics.c ---- */
/* The controller's metrics (a gv_metrics_fn with the gv_ctl as @ud). */
void ctl_metrics(void *ud, gv_metrics_buf *b);
void ctl_metrics_init(gv_ctl *c);

/* ---- ctl_hosts.c: host loss ---- */
/* The newest checkpoint of @j that a host other than its own holds, as
 * its report says (record "replicated"); mu held. */
void ctl_note_replicas(gv_ctl *c, struct ctl_host *h, struct ctl_job *j, json_t *vm);

/* ---- ctl_loop.c ---- */
void *ctl_loop(void *arg);
/* Fetch a finished job's log and outputs from its host (own thread). */
void ctl_collect(gv_ctl *c, struct ctl_job *j, int exit_code, const char *error);

#endif
