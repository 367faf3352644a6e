/* SPDX-License-Identifier: MIT */
/*
 * template.h - instant start: pre-booted guests a VM is restored from
 * instead of booting (lib/node/template.c, docs/templates.md).
 *
 * A template is one guest configuration that changes the machine (vCPUs,
 * memory, accelerator; the host's kernel, initramfs and QEMU), booted up
 * to where the guest's init waits for its job and saved: the guest's RAM
 * as a file every VM started from it maps copy-on-write, and QEMU's
 * device state. Its name says the configuration: "tcg-1c-256m".
 */
#ifndef GRIDVM_NODE_TEMPLATE_H
#define GRIDVM_NODE_TEMPLATE_H

#include <gridvm/node/host.h>

/* Build (again, if one exists) the template for @vcpus, @memory_mib and
 * @accel (NULL: the host's choice); *@out (may be NULL): its listing
 * entry. */
int gv_template_build(gv_host *h, int vcpus, uint64_t memory_mib, const char *accel,
		      json_t **out, gv_err *e) GV_WUR;
/* The templates: [{name, vcpus, memory_mib, accel, state ("ready", or
 * "stale": the guest or QEMU changed since; it is rebuilt on next use),
 * bytes (on disk), created, build_ms}]. */
json_t *gv_template_list(gv_host *h);
/* Delete one; VMs started from it keep running (they hold its memory). */
int gv_template_delete(gv_host *h, const char *name, gv_err *e) GV_WUR;

#endif
