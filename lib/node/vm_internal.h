/* SPDX-License-Identifier: MIT */
/*
 * vm_internal.h - the VM runtime (vm.c, vmsave.c, monitor.c) for the node
 * modules above it: the frame of every verb, QEMU processes, the verbs'
 * bodies for callers that hold the VM's lock already.
 */
#ifndef GRIDVM_NODE_VM_INTERNAL_H
#define GRIDVM_NODE_VM_INTERNAL_H

#include "host_internal.h"

/* The frame of every verb: lock the VM, load and refresh its record, call
 * @fn with its paths, unlock. */
typedef int (*host_verb_fn)(gv_host *h, gv_vmrec *r, const gv_vmpaths *p,
			    const void *arg, gv_err *e);
int host_with_vm(gv_host *h, const char *name, host_verb_fn fn, const void *arg,
		 gv_err *e);
/* -EBUSY, "cannot VERB VM NAME: it is STATE". */
int host_bad_state(gv_vmrec *r, const char *verb, gv_err *e);

/* From vmspawn.c: start QEMU (paused, -S) for @r, confined; kill it;
 * wait for it. From vm.c: are the kernel and initramfs @d boots there? */
int vm_check_boot_files(gv_host *h, const gv_vmdef *d, const gv_vmpaths *p, gv_err *e);
int vm_spawn_qemu(gv_host *h, gv_vmrec *r, const gv_vmpaths *p, bool incoming,
		  gv_err *e);
void vm_kill_qemu(gv_vmrec *r, const gv_vmpaths *p);
void vm_wait_gone(int pid, const gv_vmpaths *p, uint64_t ms);

/* From template.c: start @r (lock held, QEMU not running) from a
 * template where one fits: 0 running (its job sent), 1 not from a
 * template (boot it cold; r->def->boot_note says why), or an error
 * (start "template" and none could serve). Sets r->def->tmpl. */
int vm_start_template(gv_host *h, gv_vmrec *r, const gv_vmpaths *p, gv_err *e);

/* The verbs' bodies, for callers that hold the VM's lock already
 * (migration). vm_delete_locked: @arg non-NULL forces. */
int vm_save_locked(gv_host *h, gv_vmrec *r, const gv_vmpaths *p, const char *path,
		   gv_err *e);
int vm_restore_locked(gv_host *h, gv_vmrec *r, const gv_vmpaths *p, const char *path,
		      gv_err *e);
int vm_delete_locked(gv_host *h, gv_vmrec *r, const gv_vmpaths *p, const void *arg,
		     gv_err *e);

/* From vmsave.c: the one loop that watches a QEMU migration. Poll
 * query-migrate every @interval_ms until its status is one of @until
 * (NULL-terminated; a reply without a status is "none"): 0; "failed" or
 * "cancelled" (unless in @until): -EIO; @timeout_ms passed: -ETIMEDOUT.
 * Any other status: wait on; @tick (may be NULL) sees each such reply,
 * and a negative return stops the wait with that code. *@last (may be
 * NULL) receives the final reply (new reference). */
typedef int (*vm_migration_tick_fn)(void *ud, json_t *status);
int vm_migration_wait(gv_qmp *q, const char *const until[], uint64_t timeout_ms,
		      unsigned interval_ms, vm_migration_tick_fn tick, void *ud, json_t **last,
		      gv_err *e);
/* Before a save or a checkpoint: one plain stream. A live migration
 * leaves its capabilities set on both QEMUs (multifd channels, a pause
 * before the switchover), which would make the stream wait forever. */
int vm_migration_plain(gv_qmp *q, gv_err *e);
/* Before QEMU streams the memory of a guest that runs (a checkpoint, a
 * live migration): under KVM it runs on (a live pre-copy); under TCG it
 * is stopped first, since QEMU's TCG loses writes the guest makes during
 * a pre-copy (vmsave.c). *@stopped: whether this stopped it (then the
 * caller resumes it where it goes on). */
int vm_precopy_prepare(gv_qmp *q, bool *stopped, gv_err *e);
/* Wait until completed (vm_migration_wait, 10 ms); run one command on an
 * open monitor connection. */
int host_wait_migration(gv_qmp *q, uint64_t timeout_ms, gv_err *e);
int host_qmp_run(gv_qmp *q, const char *cmd, json_t *args, gv_err *e);
/* Give QEMU @fd (a copy; ours stays open) as "fd:@name" for the next
 * migrate or migrate-incoming on this connection: QEMU never opens a
 * path nor runs a command for a stream (no exec:, no shell). */
int host_qmp_pass_fd(gv_qmp *q, const char *name, int fd, gv_err *e);
/* migrate (@incoming: migrate-incoming) over @fd, passed as above. */
int host_migrate_fd(gv_qmp *q, bool incoming, int fd, gv_err *e);

#endif
