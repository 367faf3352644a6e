/* SPDX-License-Identifier: MIT */
/*
 * host.h - one host's VMs: the runtime the node agent is built on.
 *
 * A gv_host owns the data directory (VM directories, images, the guest
 * kernel and initramfs, the SQLite database). Every VM verb is a function
 * here; each takes the VM's lock, so verbs on one VM are serialized while
 * different VMs proceed in parallel. QEMU processes are daemonized: they
 * outlive the agent, and a new agent finds them again through the
 * database, their pid files and their QMP sockets.
 *
 * Functions return 0 or a negative errno and, on failure, leave a one-line
 * message a user can read in @err.
 */
#ifndef GRIDVM_HOST_H
#define GRIDVM_HOST_H

#include <gridvm/base/err.h>
#include <gridvm/vmm/accel.h>
#include <gridvm/node/store.h>
#include <gridvm/blocks/blockidx.h>

typedef struct gv_host gv_host;

int gv_host_open(const char *datadir, gv_host **out, gv_err *e) GV_WUR;
void gv_host_close(gv_host *h);
const char *gv_host_datadir(const gv_host *h);

/* Call @fn(@ud, VM name) whenever a VM is found ended (its QEMU gone, its
 * job stopped or failed), once its record says so; one observer, NULL
 * to stop (no call is in flight when this returns). @fn runs with the
 * VM's lock held: it must not call back into the host. */
void gv_host_on_vm_end(gv_host *h, void (*fn)(void *ud, const char *name), void *ud);

/* Host facts for `gridvm host info`. New reference. */
json_t *gv_host_info(gv_host *h);

/* Find the running VMs of a previous agent again: check their QEMU is
 * alive and reconnect to its monitor; record the ones that died. */
void gv_host_reattach(gv_host *h);
/* Bring every running VM's record up to date (a job may have ended). */
void gv_host_refresh_all(gv_host *h);

/* Create a VM from @def (ownership passes to the host, also on failure).
 * Nothing is left behind when it fails. */
int gv_vm_create(gv_host *h, gv_vmdef *def, gv_err *e) GV_WUR;
int gv_vm_start(gv_host *h, const char *name, gv_err *e) GV_WUR;
int gv_vm_pause(gv_host *h, const char *name, gv_err *e) GV_WUR;
int gv_vm_resume(gv_host *h, const char *name, gv_err *e) GV_WUR;
/* Stop: ACPI power-down, then forced after @timeout_ms (0 = at once). */
int gv_vm_stop(gv_host *h, const char *name, uint64_t timeout_ms, gv_err *e) GV_WUR;
/* Suspend to @path: QEMU's migration stream to a file; QEMU exits and
 * the VM keeps its disk overlay. */
int gv_vm_save(gv_host *h, const char *name, const char *path, gv_err *e) GV_WUR;
/* Continue a saved VM from @path (NULL = where it was saved). */
int gv_vm_restore(gv_host *h, const char *name, const char *path, gv_err *e) GV_WUR;
/* Delete a VM that is not running (or any, with @force). */
int gv_vm_delete(gv_host *h, const char *name, bool force, gv_err *e) GV_WUR;

/* The VM's record, refreshed, as JSON (adds resource and path facts). */
int gv_vm_show(gv_host *h, const char *name, json_t **out, gv_err *e) GV_WUR;
/* Who owns VM @name, {"uid", "name"} (base/user.h; root for a VM made
 * before owners), from its record as stored; NULL if there is no such VM.
 * New reference. */
json_t *gv_vm_owner(gv_host *h, const char *name);
/* All VMs as a JSON array. */
json_t *gv_vm_list(gv_host *h);
/* The same, without waiting for a VM that an operation holds (a start, a
 * checkpoint, a migration can take many seconds): such a VM is its record
 * as last stored, with "busy": true. For the grid agent's reports, which
 * must not wait past the host's lease. */
json_t *gv_vm_list_nowait(gv_host *h);
/* A VM of that name exists (its record; without its lock). */
bool gv_vm_exists(gv_host *h, const char *name);
/* All VMs' records as last stored, without taking their locks or asking
 * QEMU (the agent refreshes them every second): a quick look that a long
 * migration or checkpoint does not hold up, e.g. for the metrics. */
json_t *gv_vm_records(gv_host *h);

/* Read the job channel (@which = "job") or console log (@which =
 * "console") from @offset, waiting up to @wait_ms for new bytes while the
 * VM runs. *data is malloc'd (possibly empty), *state the VM's state
 * after the read. */
int gv_vm_read_log(gv_host *h, const char *name, const char *which,
		   uint64_t offset, uint64_t wait_ms, size_t max, char **data,
		   size_t *len, gv_vmstate *state, gv_err *e) GV_WUR;

/* The job's outputs (--output): the manifest of its output disk (see
 * <gridvm/vmm/jobio.h>; "collected" false until its job has ended), and
 * up to @max bytes of their tar from @offset (malloc'd, empty at its
 * end; -EBUSY while there is none). The file DATA/vms/NAME/output.tar is
 * the disk itself, also for "vm:NAME:output" transfers. */
int gv_vm_output(gv_host *h, const char *name, json_t **manifest, gv_err *e) GV_WUR;
int gv_vm_output_read(gv_host *h, const char *name, uint64_t offset, size_t max,
		      char **data, size_t *len, gv_err *e) GV_WUR;

/* The grid key file the host uses (default DATADIR/grid.key). */
void gv_host_set_grid_key(gv_host *h, const char *path);
const char *gv_host_grid_key(gv_host *h);
/* The address peers reach this agent's transfer service on. */
void gv_host_set_xfer_addr(gv_host *h, const char *addr);

/* The transfer server's write tracking (a gv_xfer_dirty_fn, @ud the
 * host): the ranges of a running VM's disk file ("vm:NAME:disk") written
 * since the previous call, from QEMU's dirty bitmap (lib/node/dirtytrack.c). */
int gv_host_disk_dirty(void *ud, const char *name, uint64_t since, uint64_t *token,
		       gv_extent **ext, size_t *n);

#endif
