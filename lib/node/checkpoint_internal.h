/* SPDX-License-Identifier: MIT */
/*
 * checkpoint_internal.h - what the checkpoint files share: making
 * (checkpoint.c), the catalogue (checkpoint_store.c), restoring
 * (checkpoint_restore.c) and pushing to another host (checkpoint_push.c).
 */
#ifndef GRIDVM_NODE_CHECKPOINT_INTERNAL_H
#define GRIDVM_NODE_CHECKPOINT_INTERNAL_H

#include "vm_internal.h"

#include <gridvm/blocks/chunk.h>
#include <gridvm/node/checkpoint.h>

/* A checkpoint's disk is stored in fixed chunks of this size (qcow2's
 * cluster size). */
#define DISK_CHUNK (64u << 10)

/* DATA/checkpoints/VM (malloc'd). */
char *ckpt_dir(gv_host *h, const char *vm);
/* The sorted checkpoint ids of @vm (NULL-terminated, gv_strv_free). */
char **ckpt_list_ids(gv_host *h, const char *vm);
/* Manifest @id of @vm; ckpt_load_chosen: @id, or the newest if NULL/"". */
int ckpt_load_manifest(gv_host *h, const char *vm, const char *id, json_t **out, gv_err *e);
int ckpt_load_chosen(gv_host *h, const char *vm, const char *id, json_t **out, gv_err *e);
/* Register checkpoint @id of @vm in the host-wide block index / drop it. */
void ckpt_index_add(gv_host *h, gv_chunkstore *cs, const char *vm, const char *id,
		    json_t *chunks, uint64_t size);
void ckpt_index_remove(gv_host *h, const char *vm, const char *id);

/* Make what was written under @dir durable (syncfs). */
void ckpt_sync_dir(const char *dir);

/* ---- for the rest of the node layer (migration, image fetch) ---- */

/* Periodic checkpoints, retention on success (node.c registers it). */
extern const host_module host_checkpoint_module;

/* Retention: keep the VM's last N; drop all; when the newest was made
 * (0 if none). */
void host_checkpoint_retain(gv_host *h, const char *vm);
void host_checkpoint_drop_all(gv_host *h, const char *vm);
/* Copy @vm's checkpoints to another host (after a migration): @ask sends
 * one control request there ({"op": "ckpt-have"|"ckpt-put"|"ckpt-add"})
 * and returns its reply. Returns how many were copied (*bytes: chunk bytes
 * sent) or a negative errno; the destination side answers those requests
 * with host_checkpoint_receive. */
typedef int (*gv_checkpoint_ask)(void *ud, json_t *req, json_t **rep, gv_err *e);
int host_checkpoint_push(gv_host *h, const char *vm, gv_checkpoint_ask ask, void *ud,
			 uint64_t *bytes, gv_err *e);
json_t *host_checkpoint_receive(gv_host *h, const char *op, json_t *req);
int64_t host_checkpoint_last(gv_host *h, const char *vm);
int host_checkpoint_export(gv_host *h, gv_vmrec *r, const gv_vmpaths *p, const char *id,
			   gv_err *e);
void host_checkpoint_unexport(const gv_vmpaths *p);
/* Reading checkpoint blocks the host index points at (gv_fetch_opts
 * local_read with the reader as local_ud). */
void *host_checkpoint_reader(gv_host *h);
void host_checkpoint_reader_free(void *reader);
int host_checkpoint_read(void *reader, const char *path, void *buf, size_t len, uint64_t off);
#endif
