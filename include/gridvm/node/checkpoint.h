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

#endif
