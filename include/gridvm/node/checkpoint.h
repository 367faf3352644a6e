/* SPDX-License-Identifier: MIT */
/*
 * checkpoint.h - complete VM checkpoints in the host's chunk store.
 *
 * A checkpoint is CPU, devices and RAM (QEMU's migration stream, read by
 * the agent from a unix socket and cut into content-defined chunks as it
 * arrives, never written to a temporary file) plus the VM's disk overlay
 * at the same instant, and the job's output up to that instant. Only new
 * chunks are stored, so a second checkpoint of one VM costs about what
 * changed. A manifest (JSON) lists the chunks:
 * DATA/checkpoints/VM/ID.json.
 */
#ifndef GRIDVM_CHECKPOINT_H
#define GRIDVM_CHECKPOINT_H

#include <gridvm/node/host.h>

/* Checkpoint a running or paused VM; *manifest (new reference) describes
 * it: id, pause_ms, qemu_downtime_ms, memory/disk bytes, bytes added. */
int gv_checkpoint_create(gv_host *h, const char *vm, json_t **manifest, gv_err *e) GV_WUR;
/* Summaries (no chunk lists) of @vm's checkpoints, oldest first; NULL vm:
 * all VMs. */
json_t *gv_checkpoint_list(gv_host *h, const char *vm);
int gv_checkpoint_show(gv_host *h, const char *vm, const char *id, json_t **out,
		       gv_err *e) GV_WUR;
/* Delete one checkpoint and the chunks nothing else uses. */
int gv_checkpoint_delete(gv_host *h, const char *vm, const char *id, gv_err *e) GV_WUR;
/* Put the VM back to checkpoint @id (NULL = the latest): disk, memory,
 * job output; a running QEMU of the VM is replaced. */
int gv_checkpoint_restore(gv_host *h, const char *vm, const char *id, gv_err *e) GV_WUR;


/* ---- a grid job's checkpoints on other hosts ---- */

/* Make the agent at @to (ADDR:PORT) hold exactly the checkpoints of @vm
 * this host holds: push the ones it lacks (only the chunks it lacks),
 * delete there the ones this host dropped (retention). Every request
 * carries @epoch, the job's binding, which the other agent checks.
 * *held (new reference, may be NULL): the ids @to holds afterwards;
 * *bytes: chunk bytes sent. */
int gv_checkpoint_replicate(gv_host *h, const char *vm, const char *to, int64_t epoch,
			    json_t **held, uint64_t *bytes, gv_err *e) GV_WUR;
/* Send this host's checkpoint @id of @vm to the agent at @to (which
 * restores the job from it); nothing if it holds it already. */
int gv_checkpoint_send(gv_host *h, const char *vm, const char *id, const char *to, int64_t epoch,
		       uint64_t *bytes, gv_err *e) GV_WUR;
/* Delete every checkpoint of @vm held here (a replica the grid drops). */
void gv_checkpoint_drop_all(gv_host *h, const char *vm);

#endif
