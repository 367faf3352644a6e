/* SPDX-License-Identifier: MIT */
/*
 * confine.h - QEMU confined (docs/security.md): the unprivileged users it
 * runs as, and a spawner that starts it detached from the agent, as such
 * a user, in a mount namespace whose root holds only what it needs (the
 * "chroot" of a QEMU we start unprivileged: its own -chroot needs root).
 *
 * The users: gridvm-qemu (a system user without a login; it runs the
 * QEMU that builds a template) and its subordinate uid and gid range in
 * /etc/subuid and /etc/subgid (scripts/setup.sh reserves 65536): every
 * VM's QEMU runs as a uid and gid of its own from that range, so that it
 * can open its own VM's files and no other VM's.
 */
#ifndef GRIDVM_CONFINE_H
#define GRIDVM_CONFINE_H

#include <gridvm/base/err.h>
#include <gridvm/base/util.h>
#include <stdbool.h>
#include <sys/types.h>

#define GV_QEMU_USER_DEFAULT "gridvm-qemu"

typedef struct gv_qemu_users {
	bool confined;  /* false: QEMU runs as the agent's own user (why) */
	char name[64];  /* the user */
	uid_t uid;      /* its uid and gid: template builds */
	gid_t gid;
	uid_t first_uid; /* the subordinate ranges: one id per VM */
	gid_t first_gid;
	unsigned count;  /* ids in both ranges */
	char why[200];   /* when not confined: why, for the agent's log */
} gv_qemu_users;

/* Look the users up (on every call: a user created meanwhile counts):
 * $GRIDVM_QEMU_USER (default gridvm-qemu) in the passwd database, its
 * ranges in /etc/subuid and /etc/subgid. Not confined, and why: an agent
 * that does not run as root, or GRIDVM_QEMU_USER=root (an explicit
 * opt-out). A missing user or range: -ENOENT and @e says what to do. */
int gv_qemu_users_load(gv_qemu_users *u, gv_err *e) GV_WUR;

/* How QEMU is started (every pointer is borrowed until the call ends). */
typedef struct gv_spawn {
	char *const *argv;   /* argv[0] an absolute path */
	int out_fd;          /* its stdout and stderr; stdin is /dev/null */
	const int *fds;      /* fds[i] becomes fd 3 + i in QEMU (-1: none) */
	int nfds;
	bool drop;           /* run as uid:gid, without supplementary groups */
	uid_t uid;
	gid_t gid;
	/* The mount namespace (needs root): a tmpfs mounted on @jail_dir (an
	 * existing empty directory, private to the agent) becomes its root,
	 * holding /usr (and /lib*, /bin, /sbin as the host has them), the
	 * dynamic loader's cache, /dev with null, zero, full, random, urandom
	 * (and kvm for @uid if @kvm), /proc (hidepid: QEMU sees only its own
	 * processes), and @ro and @rw (NULL-terminated lists of files or
	 * directories) bound read-only or read-write at their own paths. */
	bool jail;
	const char *jail_dir;
	const char *const *ro;
	const char *const *rw;
	bool kvm;
} gv_spawn;

/* Start @s->argv detached: in a session of its own and not our child (it
 * outlives the agent), with the fds, ids and jail of @s, and an
 * environment of PATH alone. On success *pid is its pid once it has
 * exec'd. A step that failed before QEMU ran (the jail, the ids, exec):
 * a negative errno and @e names the step and the path. */
int gv_spawn_detached(const gv_spawn *s, pid_t *pid, gv_err *e) GV_WUR;

/* The absolute path of qemu-system-x86_64 in $PATH (malloc'd), or NULL. */
char *gv_qemu_binary(void);

#endif
