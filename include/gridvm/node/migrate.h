/* SPDX-License-Identifier: MIT */
/*
 * migrate.h - moving a VM to another host's agent, cold or live.
 *
 * Both agents must serve transfers (gridvmd --listen) and hold the grid
 * key. The source drives; the destination answers control requests on
 * the authenticated transfer connection and pulls the VM's files with the
 * deduplicating transfer (a base image it already holds is not sent).
 *
 * Cold: suspend to a state file; the destination fetches disk overlay,
 * state and job output, restores, and reports the VM running; only then
 * does the source delete its copy. On any failure the source restores
 * the VM from its state file.
 *
 * Live: the destination copies the disk overlay while the guest runs and
 * starts an incoming QEMU; memory goes QEMU to QEMU with
 * pause-before-switchover; while the guest is paused there, the
 * destination copies the disk blocks that changed since (each verified),
 * then the source lets QEMU switch over; the destination confirms the VM
 * runs before the source removes its copy. Until that confirmation the
 * source can always cancel and resume: the VM runs on exactly one host.
 *
 * Checkpoint restore on another host: like cold, but the files are those
 * of a checkpoint (exported from the chunk store); the instance here keeps
 * running untouched until the destination reports the VM running.
 */
#ifndef GRIDVM_MIGRATE_H
#define GRIDVM_MIGRATE_H

#include <gridvm/blocks/blockidx.h>
#include <gridvm/node/host.h>

typedef void (*gv_migrate_progress)(void *ud, const char *phase, const json_t *info);

typedef struct gv_migrate_opts {
	const char *to;		 /* the destination agent, "HOST[:PORT]" */
	bool cold;		 /* suspend, move, resume (default: live) */
	const char *compress;	 /* live: the memory stream, "zstd" (multifd
				  * with zstd, the default) or "none" */
	const char *checkpoint;	 /* instead: restore this checkpoint of the VM on
				  * @to ("" = the latest); the instance here is
				  * deleted once the VM runs there */
	bool keep_checkpoints;	 /* leave the VM's checkpoints here (default:
				  * they follow it, and leave this host) */
	int64_t epoch;		 /* a grid job's move: its binding epoch, sent
				  * in every request (the destination's agent
				  * refuses one older than it has seen); 0: none */
	gv_migrate_progress progress;
	void *ud;
} gv_migrate_opts;

/* Move VM @name to another agent (see gv_migrate_opts). */
int gv_vm_migrate(gv_host *h, const char *name, const gv_migrate_opts *o, json_t **summary,
		  gv_err *e) GV_WUR;

/* Ask the running migration of @name to back out (before the switch). */
int gv_migrate_cancel(gv_host *h, const char *name, gv_err *e) GV_WUR;
/* Run here a VM that arrived by live migration but was never confirmed,
 * because its source host is lost: only if the disk and memory arrived
 * complete and the source does not answer at all (else the source settles
 * it). A source that comes back finds it running here and lets it go.
 * *out: the timing summary. */
int gv_migrate_adopt(gv_host *h, const char *name, json_t **out, gv_err *e) GV_WUR;
/* The last recorded phase of every VM's migration on this host. */
json_t *gv_migrate_status(gv_host *h);

/* The destination's handler of control requests (gv_xfer_control_fn,
 * with the gv_host as @ud). */
json_t *gv_migrate_control(void *ud, json_t *request);

#endif
