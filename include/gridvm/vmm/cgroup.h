/* SPDX-License-Identifier: MIT */
/*
 * cgroup.h - CPU weight and CPU cap of a VM's QEMU process through the
 * cgroup cpu controller, v2 (cpu.weight, cpu.max) or v1 (cpu.shares,
 * cpu.cfs_quota_us), whichever the host mounts. Each VM gets the group
 * gridvm/<scope>-<name>, the scope derived from the agent's data directory.
 */
#ifndef GRIDVM_CGROUP_H
#define GRIDVM_CGROUP_H

#include <gridvm/base/util.h>
#include <jansson.h>

/* Set the scope (once per process) from the agent's data directory. */
void gv_cgroup_set_scope(const char *datadir);

/* "v2", "v1" or NULL when no cpu controller is available. */
const char *gv_cgroup_version(void);

/* Put @pid into the VM's group with @weight (1..10000, 100 = normal; 0
 * means 100) and @cap_pct (percent of one CPU, 0 = none). */
int gv_cgroup_apply(const char *vm, int pid, int weight, int cap_pct) GV_WUR;

/* Remove the VM's group (it must be empty). */
void gv_cgroup_remove(const char *vm);

/* What the kernel reports for the VM's group, or NULL. New reference. */
json_t *gv_cgroup_show(const char *vm);

#endif
