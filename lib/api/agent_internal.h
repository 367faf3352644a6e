/* SPDX-License-Identifier: MIT */
/*
 * agent_internal.h - the agent API's parts: the HTTP server and its
 * routes (agent.c), and who may do what (agent_users.c: owners, admins,
 * quotas; docs/security.md#users).
 */
#ifndef GRIDVM_API_AGENT_INTERNAL_H
#define GRIDVM_API_AGENT_INTERNAL_H

#include <gridvm/api/agent.h>
#include <gridvm/base/user.h>

#include <pthread.h>

struct agent_ulock;

struct gv_agent {
	gv_host *h;
	struct MHD_Daemon *mhd;
	int fd;
	char *sock;
	char *quotas; /* the quota file: DATA/quotas.json */
	/* a user's checks and what they admit (a create, a start) happen
	 * under the user's lock, so two requests cannot both pass a quota */
	pthread_mutex_t ulocks_mu;
	struct agent_ulock *ulocks;
	pthread_mutex_t import_mu; /* an image name's check, owner and import */
};

/* The error for a VM @u may not see: the same as for one that does not
 * exist (-ENOENT, "no such VM: NAME"). */
int agent_no_vm(const char *name, gv_err *e);
/* Whether @u may see and act on VM @name: it is @u's (or @u is an admin);
 * a VM gone with checkpoints left is their owner's. */
bool agent_vm_visible(gv_agent *a, const gv_user *u, const char *name);
/* Whether @u may see and use image @name (root's images are everyone's). */
bool agent_image_visible(gv_agent *a, const gv_user *u, const char *name);
/* -EACCES, "permission denied: @what needs root or group gridvm-admin",
 * unless @u is an admin (0). */
int agent_need_admin(const gv_user *u, const char *what, gv_err *e);
/* The members of array @list (stolen) that @u may see: by their "owner",
 * or (@vm_key) by the VM they name. New reference. */
json_t *agent_filter(gv_agent *a, const gv_user *u, json_t *list, const char *vm_key);

/* Before a VM is created from @body (a definition, changed in place): its
 * owner is @u; what reads host files with the agent's rights is an
 * admin's only (kernel, initrd, inputs by host path); an input_tar is
 * opened as @u and copied (*tmp: the copy, removed by the caller after
 * the create); the image must be one @u may use; quotas vms and disk. */
int agent_vm_admit(gv_agent *a, const gv_user *u, json_t *body, char **tmp, gv_err *e);
/* Before VM @name runs (start, restore, a checkpoint restored): quotas
 * vcpus, memory, disk. */
int agent_run_admit(gv_agent *a, const gv_user *u, const char *name, gv_err *e);
/* Before @u imports @file as an image: quota disk; the file opened as @u
 * and copied (*tmp, removed by the caller), so that what is checked and
 * imported is what @u could read, and stays so. */
int agent_import_admit(gv_agent *a, const gv_user *u, const char *file, char **tmp,
		       gv_err *e);

/* @u's lock (nothing for admins: no quotas); NULL is fine to unlock. */
struct agent_ulock *agent_user_lock(gv_agent *a, const gv_user *u);
void agent_user_unlock(gv_agent *a, struct agent_ulock *l);

#endif
