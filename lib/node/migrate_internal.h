/* SPDX-License-Identifier: MIT */
/*
 * migrate_internal.h - what the migration's three roles share: the
 * source's driver (migrate_src.c), the destination (migrate_dst.c) and
 * recovery (migrate_recover.c). Not for the rest of the node layer.
 */
#ifndef GRIDVM_NODE_MIGRATE_INTERNAL_H
#define GRIDVM_NODE_MIGRATE_INTERNAL_H

#include "checkpoint_internal.h"
#include "dirty_internal.h"
#include "vm_internal.h"

#include <gridvm/node/migrate.h>
#include <gridvm/xfer/xfer.h>

/* Requests while settling: short, the monitor thread waits for them. */
#define SETTLE_MS 15000

/* One migration, on its source. */
struct mig {
	gv_host *h;
	const char *mode;
	const char *ckpt; /* restore this checkpoint there ("" = the latest) */
	const char *compress; /* the memory stream: "zstd" or "none" */
	char to[300];
	gv_vmrec *r;
	const gv_vmpaths *p;
	char host[256];
	int port;
	uint8_t key[GV_XFER_KEY_LEN];
	gv_migrate_progress progress;
	void *ud;
	uint64_t t0;
	bool was_running; /* the guest ran when the migration began */
	bool keep_ckpts;  /* its checkpoints stay here */
	bool held;	  /* a fault point held it already */
	int64_t epoch;	  /* gv_migrate_opts.epoch */
	gv_err *e;
};

/* Phases, in the order they happen: the index of @name (-1 unknown). */
int mig_phase_index(const char *name);
/* Persist phase @name (never an earlier one) with @info (reference
 * taken) to VMDIR/migration.json. */
void mig_src_phase(struct mig *m, const char *name, json_t *info);
/* One control request @op about the VM to the destination; *rep the
 * reply (may be NULL). -EREMOTEIO: the destination refused. */
int mig_src_op(struct mig *m, const char *op, int timeout_ms, json_t **rep, gv_err *e);
/* Tell the destination to drop the VM; true if it answered. */
bool mig_src_tell_abort(struct mig *m, int timeout_ms);
/* Undo the source's side of a live migration: the VM runs here again. */
bool mig_src_back_out(struct mig *m, gv_qmp *q);
/* After the VM runs there: its checkpoints follow it (unless kept). */
void mig_src_push_checkpoints(struct mig *m);
/* The switch happened but the confirmation is missing: the VM stays
 * paused here until recovery settles it. */
void mig_src_unresolved(struct mig *m);
/* Recovery: settle from the recorded phase @ph; 0 or -EAGAIN. */
int mig_src_settle(struct mig *m, const char *ph);
/* The memory stream's form, the same on both QEMUs. */
int mig_any_stream_setup(gv_qmp *q, const char *compress, gv_err *e);
/* The memory stream over TLS (migrate_tls.c), where this host has
 * certificates: is that so; the destination refuses a request that did
 * not come over TLS (@req's "_peer"), and sets its incoming QEMU to take
 * only the requesting host's certificate (*tls: it did); the source
 * refuses a destination that does not (@rep: its live-prepare reply) and
 * sets its QEMU to check the destination's. Without certificates: 0. */
bool mig_any_tls_on(void);
int mig_dst_tls_check(json_t *req, gv_err *e);
int mig_dst_tls_setup(gv_qmp *q, const gv_vmpaths *p, json_t *req, bool *tls, gv_err *e);
int mig_src_tls_setup(gv_qmp *q, const gv_vmpaths *p, json_t *rep, gv_err *e);
/* The destination runs an arrived VM (confirm or adopt). */
json_t *mig_dst_run(gv_host *h, const char *name, gv_err *err);

/* Unsettled migrations, incoming VMs, settling in the background
 * (node.c registers it with the host). */
extern const host_module host_migrate_module;
/* A VM whose migration is not settled yet (its driver died, or the
 * destination's answer is missing) must not run here meanwhile. */
bool mig_unsettled(gv_host *h, const char *name, gv_err *e);
/* Did VM @name, arriving by live migration, get its last disk changes (so
 * the source may have switched over to it)? Such a VM is kept across an
 * agent restart until the source settles it; an earlier one is dropped. */
bool mig_dst_incoming_keep(gv_host *h, const char *name);
/* Where VM @name, arriving by migration and not confirmed yet, comes from
 * (malloc'd; "" if unknown), or NULL if it is not arriving. */
char *mig_dst_incoming_from(gv_host *h, const char *name);
/* Settle such migrations (@wait: wait for the VMs' locks instead of
 * skipping busy VMs). */
void mig_settle_all(gv_host *h, bool wait);

#endif
