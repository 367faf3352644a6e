/* SPDX-License-Identifier: MIT */
/*
 * ctl.h - the grid controller (gridvmctld): takes jobs from users, decides
 * where and when they run (the pure scheduling library, sched.h), binds
 * them to hosts, follows them, collects their outputs, moves them when the
 * plan changes. It owns the grid's state in a store (kv.h); restarting it
 * loses nothing. It talks to hosts only through their API: agents report
 * to it and receive their bindings in the reply (gridagent.h), and it asks
 * an agent for a job's log or output over the same authenticated channel.
 * docs/grid.md describes the protocol and the records.
 */
#ifndef GRIDVM_GRID_CTL_H
#define GRIDVM_GRID_CTL_H

#include <gridvm/base/err.h>
#include <gridvm/sched/sched.h>
#include <jansson.h>

typedef struct gv_ctl gv_ctl;

typedef struct gv_ctl_opts {
	const char *listen;	/* ADDR:PORT for agents and users (grid key) */
	const char *socket;	/* a unix socket for this machine's users, each
				 * known by the kernel (NULL: none) */
	const char *quotas;	/* users' quota file (NULL: DATADIR/quotas.json) */
	const char *store;	/* "sqlite:PATH"; NULL: sqlite:DATADIR/controller.db */
	const char *datadir;	/* job inputs, outputs and logs */
	const char *grid_key;	/* the grid's key file */
	gv_sched_params params; /* policy, mode, ... (gv_sched_params_default) */
	unsigned batch_wait_s;	/* batch mode: plan when batch_max jobs wait or
				 * the oldest waited this long */
	unsigned report_s;	/* agents report every this many seconds (2) */
	unsigned replan_s;	/* re-plan running jobs this often (10) */
	/* host loss (docs/host-loss.md): a host whose reports stop for
	 * host_lease_s is suspect (nothing new goes there), lost after
	 * host_lease_s + host_grace_s (its jobs are recovered elsewhere);
	 * its agent has paused its VMs by then (fencing) */
	unsigned host_lease_s;	/* 10 */
	unsigned host_grace_s;	/* 0: as host_lease_s */
	unsigned replicas;	/* hosts each job's checkpoints are copied to (1) */
	const char *metrics;	/* ADDR:PORT to serve Prometheus metrics on (NULL: none) */
	/* several controllers on one store (etcd; docs/grid.md): > 0, it
	 * campaigns for the leadership with a lease of this many seconds
	 * and stands by while another leads; 0: it leads alone */
	unsigned leader_ttl_s;
} gv_ctl_opts;

void gv_ctl_opts_default(gv_ctl_opts *o);

/* Open the store, load the grid's state, listen and start deciding.
 * @return 0, or a negative errno with @e saying why. */
int gv_ctl_start(const gv_ctl_opts *o, gv_ctl **out, gv_err *e)
	__attribute__((warn_unused_result));
/* Stop deciding and serving; the state stays in the store. */
void gv_ctl_stop(gv_ctl *c);
/* The address it listens on (with the port chosen). */
const char *gv_ctl_addr(const gv_ctl *c);
/* Whether it leads now (always, without an election). */
bool gv_ctl_leading(gv_ctl *c);
/* Whether it led and lost the leadership (its lease ran out: cut off
 * from the store, or paused too long), or a write to its store failed
 * (a commit, a sync). It acts no more and never leads again (its memory
 * of the grid may be stale): stop it and start a new one, which loads
 * the grid from the store (and stands by, with an election). */
bool gv_ctl_deposed(gv_ctl *c);

#endif
