/* SPDX-License-Identifier: MIT */
/* dirty_internal.h - disk write tracking (dirtytrack.c) for migration. */
#ifndef GRIDVM_NODE_DIRTY_INTERNAL_H
#define GRIDVM_NODE_DIRTY_INTERNAL_H

#include "host_internal.h"

/* Disk write tracking (dirtytrack.c): at the switchover, read the last
 * written ranges while the guest is stopped and QEMU still owns the disk;
 * when the migration is over, forget the VM (and drop QEMU's bitmap if
 * @qemu_goes_on). */
void host_dirty_freeze(gv_host *h, const char *vm);
void host_dirty_stop(gv_host *h, const char *vm, bool qemu_goes_on);
/* The module that frees the table when the host closes (node.c). */
extern const host_module host_dirty_module;

#endif
