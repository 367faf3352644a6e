/* SPDX-License-Identifier: MIT */
/*
 * user.h - who asks: the user behind a request, whether they administer
 * gridvm, what they own, what the administrator allows them (quotas).
 *
 * A local user is known by the kernel's word on a unix socket
 * (SO_PEERCRED, SO_PEERGROUPS); a grid user by the name in a certificate.
 * Whatever a user makes (a VM, a checkpoint, an image, a job) carries an
 * owner, {"uid": N or null, "name": NAME}; what has none belongs to root.
 * Administrators (root, the user the program runs as, members of group
 * GV_ADMIN_GROUP) see and change everything, and have no quotas.
 * docs/security.md#users says what each side may do.
 */
#ifndef GRIDVM_BASE_USER_H
#define GRIDVM_BASE_USER_H

#include <gridvm/base/err.h>
#include <gridvm/base/util.h>

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Members of this group administer gridvm (when the group exists). */
#define GV_ADMIN_GROUP "gridvm-admin"
/* When this group exists, only its members (and root) may open the
 * agent's socket; otherwise every local user may. */
#define GV_USE_GROUP "gridvm"

#define GV_USER_GROUPS_MAX 64

typedef struct gv_user {
	int64_t uid;   /* -1: not a local user (a certificate's name) */
	int64_t gid;   /* primary group, -1 unknown */
	char name[64]; /* the user name; a uid without one: its number */
	bool admin;
	int ngroups;   /* supplementary groups, as the kernel reported them */
	gid_t groups[GV_USER_GROUPS_MAX];
} gv_user;

/* The user at the other end of the unix socket @fd.
 * @return 0, or a negative errno (not a unix socket). */
int gv_user_of_socket(int fd, gv_user *u) GV_WUR;
/* Local user @uid (groups from the user database). */
void gv_user_of_uid(uint32_t uid, gv_user *u);
/* A grid user known only by a certificate's @name: never an admin. */
void gv_user_of_name(const char *name, gv_user *u);
/* Root: what the system itself does. */
void gv_user_root(gv_user *u);

/* {"uid": N or null, "name": NAME}: the owner of what @u makes. New
 * reference. */
json_t *gv_user_owner_json(const gv_user *u);
/* Whether @owner (an owner object; NULL or not an object: root) is @u:
 * the same uid when both have one, else the same name. */
bool gv_user_is(const gv_user *u, const json_t *owner);
/* Whether @u may see and change what @owner owns (@u owns it, or is an
 * admin). */
bool gv_user_may(const gv_user *u, const json_t *owner);
/* The owner's name ("root" when there is no owner). */
const char *gv_owner_name(const json_t *owner);

/* Make the unix socket @path usable by every local user (0666), or,
 * where group GV_USE_GROUP exists, by its members only (root:gridvm
 * 0660): every request on it is then its user's. */
int gv_user_socket_access(const char *path, gv_err *e) GV_WUR;

/* Open @path with @flags (and @mode) with the rights of local user @u
 * rather than ours (a child drops to @u's uid and groups, opens, and
 * hands the descriptor over): what @u could not open, we do not either.
 * @return the descriptor (O_CLOEXEC), or a negative errno. */
int gv_user_open(const gv_user *u, const char *path, int flags, mode_t mode) GV_WUR;

/* ---- quotas ----
 * The administrator's limits per user, in a JSON file:
 *   {"default": {"vms": 4, "vcpus": 8, "memory": "16G", "disk": "100G",
 *                "jobs": 20},
 *    "users": {"alice": {"vcpus": 16}, "bob": {"memory": null}}}
 * A user's entry overrides "default" key by key; null is no limit; a key
 * given nowhere is no limit; no file, no limits. Sizes are bytes or "16G".
 * Admins have none. */
typedef enum gv_quota_kind {
	GV_QUOTA_VMS,	 /* VMs that exist (any state) */
	GV_QUOTA_VCPUS,	 /* vCPUs of the running and paused VMs, or the unfinished jobs */
	GV_QUOTA_MEMORY, /* bytes of memory of the same */
	GV_QUOTA_DISK,	 /* bytes of disk in use (VM directories, images) */
	GV_QUOTA_JOBS,	 /* grid jobs not ended (queued or running) */
	GV_QUOTA_N
} gv_quota_kind;

typedef struct gv_quota {
	int64_t limit[GV_QUOTA_N]; /* -1: none */
} gv_quota;

const char *gv_quota_name(gv_quota_kind k);
/* @u's limits from the file @path. @return 0 (also without a file: no
 * limits), or -EINVAL with @e naming the file and what is wrong in it. */
int gv_quota_load(const char *path, const gv_user *u, gv_quota *q, gv_err *e) GV_WUR;
/* Whether @used plus @more of quota @k stays within @q (@more 0: whether
 * @used is below the limit): 0, or -EDQUOT with @e naming the quota, the
 * user, the limit and the usage. */
int gv_quota_check(const gv_quota *q, const gv_user *u, gv_quota_kind k, uint64_t used,
		   uint64_t more, gv_err *e) GV_WUR;

#endif
