/* SPDX-License-Identifier: MIT */
/*
 * gridagent.h - an agent in a grid (gridvmd --controller): it reports to
 * the controller every few seconds (resources, attributes, load, images,
 * its grid VMs) and does what the reply says: run the jobs bound to it
 * (fetching their image and inputs first), move the ones the controller
 * moves, drop the ones it releases. It also answers the controller's
 * questions about a job (its log, its output) on the authenticated
 * channel between hosts. Protocol: docs/grid.md.
 */
#ifndef GRIDVM_API_GRIDAGENT_H
#define GRIDVM_API_GRIDAGENT_H

#include <gridvm/node/host.h>

typedef struct gv_gridagent gv_gridagent;

typedef struct gv_gridagent_opts {
	const char *controller; /* ADDR:PORT of the controller */
	const char *name;	/* this host's name in the grid (NULL: hostname) */
	const char *addr;	/* where the controller and peers reach this agent */
	const char *site;	/* attribute "site" (may be NULL) */
	unsigned cpus;		/* vcpus offered to the grid (0: online cpus) */
	uint64_t memory;	/* bytes offered (0: MemTotal less 512 MiB) */
	const char *labels;	/* "K=V,K2" attributes it starts with (may be NULL) */
	double speed;		/* CPU speed relative to the grid's reference (0: 1) */
} gv_gridagent_opts;

/* Start reporting (a thread of its own). The host stays the caller's. */
int gv_gridagent_start(gv_host *h, const gv_gridagent_opts *o, gv_gridagent **out, gv_err *e)
	__attribute__((warn_unused_result));
void gv_gridagent_stop(gv_gridagent *g);
/* Whether the controller answered the last report (for the metrics). */
bool gv_gridagent_joined(gv_gridagent *g);

/* The agent's handler of peer requests (a gv_xfer_control_fn with the
 * gv_host as @ud): "grid-log" here, the rest by gv_migrate_control. */
json_t *gv_gridagent_control(void *ud, json_t *req);

/* The fence keeper's process (gridvmd --fence-keeper DATA, started by
 * the agent with its pipe as fd 3): pauses the grid's VMs when the agent
 * is away past its lease. Returns when its agent is gone and it has
 * fenced (or held no lease). */
int gv_fence_keeper_main(const char *datadir);

#endif
