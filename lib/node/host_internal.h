/* SPDX-License-Identifier: MIT */
/* host_internal.h - what host.c and vm.c share inside the library. */
#ifndef GRIDVM_HOST_INTERNAL_H
#define GRIDVM_HOST_INTERNAL_H

#include <gridvm/node/host.h>
#include <gridvm/blocks/hostidx.h>
#include <gridvm/vmm/qmp.h>
#include <pthread.h>
#include <stdatomic.h>

struct vmlock {
	char name[64];
	pthread_mutex_t mu;
	int refs;
	struct vmlock *next;
};

struct gv_host {
	char *datadir;
	gv_store *store;
	gv_accel accel;
	pthread_mutex_t mu; /* protects the lock list */
	struct vmlock *locks;
	gv_hostidx *hostidx; /* opened on first use, under @idx_mu */
	pthread_mutex_t idx_mu;
	pthread_mutex_t ckpt_mu; /* checkpoint creation vs chunk GC */
	char *grid_key;      /* path of the grid key file */
	char *xfer_addr;     /* where peers reach this agent (--listen) */
	/* migrations are settled on a thread of their own: a destination
	 * that does not answer must not hold up the monitor */
	pthread_t settle_th;
	bool settle_started;
	atomic_bool settle_busy;
	/* disk write tracking per VM (dirtytrack.c), under @dirty_mu */
	pthread_mutex_t dirty_mu;
	struct dirtytrack *dirty;
	uint64_t dirty_tick;
};

/* The host-wide block index, opened on first use. Call with h->idx_mu held. */
int host_hostidx(gv_host *h, gv_hostidx **out, gv_err *e);
/* Register source @name (its data at @path, its block index @bi saved at
 * @idx) in the host index / forget it and delete @idx; these take idx_mu. */
int host_hostidx_add(gv_host *h, const char *name, const char *path, const char *idx,
		     const gv_blockidx *bi, gv_err *e);
void host_hostidx_drop(gv_host *h, const char *name, const char *idx);

/* Per-VM lock; unlock with host_vm_unlock. */
struct vmlock *host_vm_lock(gv_host *h, const char *name);
void host_vm_unlock(gv_host *h, struct vmlock *l);
/* The lock if it is free now, else NULL. */
struct vmlock *host_vm_trylock(gv_host *h, const char *name);

/* Load @name's record, mapping -ENOENT to a message. */
int host_get(gv_host *h, const char *name, gv_vmrec **out, gv_err *e);
int host_put(gv_host *h, gv_vmrec *r, gv_err *e);
/* A VM's overlay names its base image relative to its own directory
 * (DATA/vms/NAME/), the same on every host: "../../images/FILE". */
char *host_backing_path(const char *image_path);
/* Does the qcow2 file @qcow2 name @want as its backing file? */
bool host_backing_is(const char *qcow2, const char *want);

/* If QEMU of a running/paused VM is gone, record how the VM ended.
 * @return true if the record changed (and was stored). Lock held. */
bool host_refresh(gv_host *h, gv_vmrec *r);

/* Is @pid the QEMU process of this VM (alive, and its command line names
 * the VM's QMP socket)? */
bool host_qemu_alive(int pid, const gv_vmpaths *p);

/* Connect to the VM's monitor. */
int host_qmp(const gv_vmpaths *p, gv_qmp **q, gv_err *e);
/* One command on a fresh connection. */
int host_qmp_cmd(const gv_vmpaths *p, const char *cmd, json_t *args,
		 int timeout_ms, json_t **ret, gv_err *e);

/* The frame of every verb: lock the VM, load and refresh its record, call
 * @fn with its paths, unlock. */
typedef int (*host_verb_fn)(gv_host *h, gv_vmrec *r, const gv_vmpaths *p,
			    const void *arg, gv_err *e);
int host_with_vm(gv_host *h, const char *name, host_verb_fn fn, const void *arg,
		 gv_err *e);
/* -EBUSY, "cannot VERB VM NAME: it is STATE". */
int host_bad_state(gv_vmrec *r, const char *verb, gv_err *e);

/* From vm.c: start QEMU (paused, -S) for @r, kill it, wait for it. */
int vm_spawn_qemu(gv_host *h, gv_vmrec *r, const gv_vmpaths *p, bool incoming,
		  gv_err *e);
void vm_kill_qemu(gv_vmrec *r, const gv_vmpaths *p);
void vm_wait_gone(int pid, const gv_vmpaths *p, uint64_t ms);

/* The verbs' bodies, for callers that hold the VM's lock already
 * (migration). vm_delete_locked: @arg non-NULL forces. */
int vm_save_locked(gv_host *h, gv_vmrec *r, const gv_vmpaths *p, const char *path,
		   gv_err *e);
int vm_restore_locked(gv_host *h, gv_vmrec *r, const gv_vmpaths *p, const char *path,
		      gv_err *e);
int vm_delete_locked(gv_host *h, gv_vmrec *r, const gv_vmpaths *p, const void *arg,
		     gv_err *e);

/* From vmsave.c: poll query-migrate until completed (0) or failed; run
 * one command on an open monitor connection. */
int host_wait_migration(gv_qmp *q, uint64_t timeout_ms, gv_err *e);
int host_qmp_run(gv_qmp *q, const char *cmd, json_t *args, gv_err *e);

/* Disk write tracking (dirtytrack.c): at the switchover, read the last
 * written ranges while the guest is stopped and QEMU still owns the disk;
 * when the migration is over, forget the VM (and drop QEMU's bitmap if
 * @qemu_goes_on); at exit, free the table. */
void host_dirty_freeze(gv_host *h, const char *vm);
void host_dirty_stop(gv_host *h, const char *vm, bool qemu_goes_on);
void host_dirty_free(gv_host *h);

/* Checkpoint retention (checkpoint.c): keep the VM's last N; drop all;
 * when the newest was made (0 if none). */
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
/* migrate.c: a VM whose migration is not settled yet (its driver died, or
 * the destination's answer is missing) must not run here meanwhile. */
bool host_migration_unsettled(gv_host *h, const char *name, gv_err *e);
/* Did VM @name, arriving by live migration, get its last disk changes (so
 * the source may have switched over to it)? Such a VM is kept across an
 * agent restart until the source settles it; an earlier one is dropped. */
bool host_incoming_keep(gv_host *h, const char *name);
/* Where VM @name, arriving by migration and not confirmed yet, comes from
 * (malloc'd; "" if unknown), or NULL if it is not arriving. */
char *host_incoming_from(gv_host *h, const char *name);
/* Settle such migrations (the monitor, every few seconds; @wait: wait
 * for the VMs' locks instead of skipping busy VMs). */
void host_migrations_settle(gv_host *h, bool wait);

/* Forget an image's block index (it left the store). */
void image_unindex(gv_host *h, const char *name);

#endif
