/* SPDX-License-Identifier: MIT */
/*
 * host_internal.h - the host context, the bottom of the node layer
 * (host.c): the data directory, the VM records, per-VM locks, the
 * host-wide block index, QMP helpers. It calls nothing above it: the
 * modules above (checkpoints, migration, dirty tracking) register what
 * they add to the host's life with host_module_add(), and node.c wires
 * them when the host is opened.
 */
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

#define HOST_MODS_MAX 8

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
	/* who is told when a VM ends (gv_host_on_vm_end), under @obs_mu */
	pthread_mutex_t obs_mu;
	void (*on_vm_end)(void *ud, const char *name);
	void *on_vm_end_ud;
	/* the modules above the context (host_module_add), in order */
	struct host_mod {
		const struct host_module *def;
		gv_host *h;
		pthread_t th; /* its periodic work, if on a thread of its own */
		bool started;
		atomic_bool busy;
	} mods[HOST_MODS_MAX];
	int nmods;
	/* disk write tracking per VM (dirtytrack.c), under @dirty_mu */
	pthread_mutex_t dirty_mu;
	struct dirtytrack *dirty;
	uint64_t dirty_tick;
};

/* What a module above the host context adds; every member may be NULL. */
typedef struct host_module {
	const char *name;
	/* a VM's job ended (its record says how; the lock is held) */
	void (*job_ended)(gv_host *h, const gv_vmrec *r);
	/* may VM @name run (start, resume, restore) now? false + why in @e */
	bool (*may_run)(gv_host *h, const char *name, gv_err *e);
	/* VM @name arriving by migration and not confirmed: where from
	 * (malloc'd, "" if unknown), else NULL; and whether it arrived
	 * complete, so it is kept across an agent restart */
	char *(*incoming_from)(gv_host *h, const char *name);
	bool (*incoming_keep)(gv_host *h, const char *name);
	/* periodic work, every @tick_every monitor ticks (about 1 s each),
	 * inline or on a thread of its own (one pass at a time) */
	void (*tick)(gv_host *h);
	unsigned tick_every;
	bool tick_thread;
	/* the host closes (its thread, if any, has ended) */
	void (*close)(gv_host *h);
} host_module;

/* Open the context alone (gv_host_open in node.c adds the modules). */
int host_open(const char *datadir, gv_host **out, gv_err *e);
/* Register @m (static storage) on @h. -ENOSPC past HOST_MODS_MAX. */
int host_module_add(gv_host *h, const host_module *m);
/* The hooks, over every module that has them. */
void host_job_ended(gv_host *h, const gv_vmrec *r);
bool host_may_run(gv_host *h, const char *name, gv_err *e);
char *host_incoming_from(gv_host *h, const char *name);
bool host_incoming_keep(gv_host *h, const char *name);
/* Run the modules' periodic work due at monitor tick @tick. */
void host_modules_tick(gv_host *h, unsigned tick);

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
 * the VM's console log)? */
bool host_qemu_alive(int pid, const gv_vmpaths *p);

/* Connect to the VM's monitor. */
int host_qmp(const gv_vmpaths *p, gv_qmp **q, gv_err *e);
/* One command on a fresh connection. */
int host_qmp_cmd(const gv_vmpaths *p, const char *cmd, json_t *args,
		 int timeout_ms, json_t **ret, gv_err *e);

#endif
