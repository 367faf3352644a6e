/* SPDX-License-Identifier: MIT */
/*
 * accel.h - choosing QEMU's accelerator.
 *
 * KVM only where the CPU exposes hardware virtualization (vmx or svm in
 * /proc/cpuinfo) and /dev/kvm answers KVM_GET_API_VERSION; otherwise TCG
 * with one thread per vCPU. A /dev/kvm without vmx/svm is a paravirtual
 * backend (PVM) on which stock guest kernels hang, so its mere presence
 * never selects KVM. An explicit override always wins.
 */
#ifndef GRIDVM_ACCEL_H
#define GRIDVM_ACCEL_H

#include <stdbool.h>

typedef struct gv_accel {
	char name[8];     /* "kvm" or "tcg" */
	char reason[200]; /* one sentence a person can read */
} gv_accel;

/* Decide from the given facts; pure, for tests. @override may be NULL,
 * "auto", "kvm" or "tcg". @return 0 or -EINVAL for an unknown override. */
int gv_accel_decide(const char *override, const char *cpuinfo, bool kvm_works,
		    gv_accel *out);

/* Decide for this host: reads /proc/cpuinfo and probes /dev/kvm. The
 * override comes from @override, else $GRIDVM_ACCEL. */
int gv_accel_choose(const char *override, gv_accel *out);

/* The -accel argument QEMU should get for @a. */
const char *gv_accel_qemu_arg(const gv_accel *a);

#endif
