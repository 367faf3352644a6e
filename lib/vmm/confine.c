/* SPDX-License-Identifier: MIT */
/*
 * confine.c - QEMU confined (see <gridvm/vmm/confine.h>): its users, and
 * the spawner that drops privileges and builds its mount namespace.
 *
 * Why the agent does it and not QEMU's own -runas and -chroot: QEMU 7.2
 * installs its seccomp filter (-sandbox) while it parses its options and
 * changes user and root only at the end of its setup; with
 * elevateprivileges=deny the setuid of -runas is refused (SIGSYS), and
 * with spawn=deny so is the fork of -daemonize. So QEMU starts already
 * unprivileged, in the foreground of a detached process, and an
 * unprivileged process cannot chroot(2): its "chroot" is a mount
 * namespace the agent builds before exec.
 *
 * Everything the child does between fork and exec is a system call on
 * data prepared before the fork (the agent has threads: no malloc, no
 * locks there); a failed step is reported as (step, errno) on a pipe.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <gridvm/vmm/confine.h>
#include <gridvm/base/util.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <grp.h>

/* ---- the users ---- */

/* The first "NAME:START:COUNT" (or "UID:START:COUNT") line of @file. */
static int sub_range(const char *file, const char *name, uid_t uid, unsigned long *start,
		     unsigned long *count)
{
	FILE *f = fopen(file, "re");
	char line[256], num[32];
	int r = -ENOENT;

	snprintf(num, sizeof(num), "%u", (unsigned)uid);
	while (f && r < 0 && fgets(line, sizeof(line), f)) {
		char *save = NULL, *who = strtok_r(line, ":", &save);
		char *s = strtok_r(NULL, ":", &save), *c = strtok_r(NULL, ":\n", &save);
		if (who && s && c && (!strcmp(who, name) || !strcmp(who, num))) {
			*start = strtoul(s, NULL, 10);
			*count = strtoul(c, NULL, 10);
			r = *start > 0 && *count > 0 ? 0 : -ENOENT;
		}
	}
	if (f)
		fclose(f);
	return r;
}

int gv_qemu_users_load(gv_qemu_users *u, gv_err *e)
{
	const char *name = getenv("GRIDVM_QEMU_USER");
	struct passwd pw, *res = NULL;
	unsigned long us = 0, uc = 0, gs = 0, gc = 0;
	char buf[4096];

	memset(u, 0, sizeof(*u));
	snprintf(u->name, sizeof(u->name), "%s", name && *name ? name : GV_QEMU_USER_DEFAULT);
	u->uid = geteuid();
	u->gid = getegid();
	if (geteuid() != 0) {
		snprintf(u->why, sizeof(u->why), "the agent does not run as root: QEMU runs as "
			 "its user (uid %u), sandboxed but not confined", (unsigned)u->uid);
		return 0;
	}
	if (!strcmp(u->name, "root")) {
		snprintf(u->why, sizeof(u->why), "GRIDVM_QEMU_USER=root: QEMU runs as root, "
			 "sandboxed but not confined");
		return 0;
	}
	if (getpwnam_r(u->name, &pw, buf, sizeof(buf), &res) != 0 || !res)
		return gv_err_set(e, -ENOENT, "QEMU runs as the unprivileged user %s, which this "
				  "host lacks: run scripts/setup.sh (or see docs/security.md); "
				  "GRIDVM_QEMU_USER=root runs QEMU as root, unconfined", u->name);
	u->uid = pw.pw_uid;
	u->gid = pw.pw_gid;
	if (sub_range("/etc/subuid", u->name, u->uid, &us, &uc) < 0 ||
	    sub_range("/etc/subgid", u->name, u->uid, &gs, &gc) < 0)
		return gv_err_set(e, -ENOENT, "user %s has no subordinate uid or gid range in "
				  "/etc/subuid and /etc/subgid (each VM's QEMU runs as one of "
				  "them): run scripts/setup.sh (or see docs/security.md)", u->name);
	if (u->uid == 0 || us + uc > UINT_MAX || gs + gc > UINT_MAX)
		return gv_err_set(e, -EINVAL, "user %s cannot confine QEMU (uid 0, or a range "
				  "beyond 32 bits)", u->name);
	u->first_uid = (uid_t)us;
	u->first_gid = (gid_t)gs;
	u->count = (unsigned)(uc < gc ? uc : gc);
	u->confined = true;
	return 0;
}

char *gv_qemu_binary(void)
{
	const char *path = getenv("PATH");
	char *copy = strdup(path && *path ? path : "/usr/bin:/bin"), *save = NULL, *found = NULL;

	for (char *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
		char *f = gv_strdupf("%s/qemu-system-x86_64", d);
		if (*d == '/' && access(f, X_OK) == 0)
			found = f;
		else
			free(f);
	}
	free(copy);
	return found;
}

/* ---- the plan of the child ---- */

enum op_kind { OP_MKDIR, OP_FILE, OP_BIND, OP_SYMLINK, OP_NODE, OP_PROC };

struct op {
	enum op_kind kind;
	char *path; /* in the jail, as seen before pivot_root: jail_dir + path */
	char *src;  /* OP_BIND: the host's file; OP_SYMLINK: the link's text */
	const char *shown; /* the path as QEMU sees it, for messages */
	bool ro;
	bool owned; /* OP_NODE: the QEMU's user owns it (/dev/kvm) */
	mode_t mode;
	dev_t dev;
};

struct plan {
	struct op *ops;
	size_t n, cap;
	char **dirs; /* directories made so far (jail paths) */
	size_t ndirs;
};

/* Steps outside the list of ops, for the error report. */
enum { ST_FDS = -1, ST_UNSHARE = -2, ST_PRIVATE = -3, ST_TMPFS = -4, ST_PIVOT = -5,
       ST_ROOT_RO = -6, ST_GROUPS = -7, ST_GID = -8, ST_UID = -9, ST_NNP = -10,
       ST_EXEC = -11, ST_FORK = -12 };

static struct op *op_add(struct plan *pl, enum op_kind k, char *path)
{
	struct op *o;

	if (pl->n == pl->cap) {
		pl->cap = pl->cap ? 2 * pl->cap : 32;
		pl->ops = realloc(pl->ops, pl->cap * sizeof(*pl->ops));
		if (!pl->ops)
			abort();
	}
	o = &pl->ops[pl->n++];
	memset(o, 0, sizeof(*o));
	o->kind = k;
	o->path = path;
	return o;
}

/* mkdir every directory above @path (absolute, as QEMU sees it) once. */
static void op_parents(struct plan *pl, const char *jail, const char *path)
{
	for (const char *s = strchr(path + 1, '/'); s; s = strchr(s + 1, '/')) {
		char *d = gv_strdupf("%s%.*s", jail, (int)(s - path), path);
		bool seen = false;

		for (size_t i = 0; i < pl->ndirs && !seen; i++)
			seen = !strcmp(pl->dirs[i], d);
		if (seen) {
			free(d);
			continue;
		}
		pl->dirs = realloc(pl->dirs, (pl->ndirs + 1) * sizeof(*pl->dirs));
		if (!pl->dirs)
			abort();
		pl->dirs[pl->ndirs++] = strdup(d);
		op_add(pl, OP_MKDIR, d)->mode = 0755;
	}
}

/* Bind @path (as QEMU will name it) at the same place in the jail. */
static int op_bind(struct plan *pl, const char *jail, const char *path, bool ro, gv_err *e)
{
	char real[PATH_MAX];
	struct stat st;
	struct op *o;

	if (path[0] != '/' || !realpath(path, real) || stat(real, &st) < 0)
		return gv_err_set(e, -ENOENT, "QEMU needs %s, which is not there: %s", path,
				  strerror(errno ? errno : EINVAL));
	op_parents(pl, jail, path);
	o = op_add(pl, S_ISDIR(st.st_mode) ? OP_MKDIR : OP_FILE, gv_strdupf("%s%s", jail, path));
	o->mode = S_ISDIR(st.st_mode) ? 0755 : 0644;
	o = op_add(pl, OP_BIND, gv_strdupf("%s%s", jail, path));
	o->src = strdup(real);
	o->shown = path;
	o->ro = ro;
	return 0;
}

static int by_len(const void *a, const void *b)
{
	size_t la = strlen(*(const char *const *)a), lb = strlen(*(const char *const *)b);

	return la < lb ? -1 : la > lb;
}

static void plan_free(struct plan *pl)
{
	for (size_t i = 0; i < pl->n; i++) {
		free(pl->ops[i].path);
		free(pl->ops[i].src);
	}
	for (size_t i = 0; i < pl->ndirs; i++)
		free(pl->dirs[i]);
	free(pl->ops);
	free(pl->dirs);
}

/* The jail's contents, parents before children. */
static int plan_jail(struct plan *pl, const gv_spawn *s, gv_err *e)
{
	static const char *const roots[] = { "/usr", "/lib", "/lib32", "/lib64", "/libx32",
					     "/bin", "/sbin" };
	static const char *const etc[] = { "/etc/ld.so.cache", "/etc/localtime" };
	static const struct { const char *name; unsigned maj, min; } devs[] = {
		{ "null", 1, 3 }, { "zero", 1, 5 }, { "full", 1, 7 }, { "random", 1, 8 },
		{ "urandom", 1, 9 } };
	const char *j = s->jail_dir;
	const char **list;
	size_t n = 0, nro = 0;
	int r = 0;

	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]) && r == 0; i++) {
		char link[PATH_MAX];
		struct stat st;
		ssize_t len;

		if (lstat(roots[i], &st) < 0)
			continue;
		if (S_ISLNK(st.st_mode) && (len = readlink(roots[i], link, sizeof(link) - 1)) > 0) {
			link[len] = '\0';
			op_add(pl, OP_SYMLINK, gv_strdupf("%s%s", j, roots[i]))->src = strdup(link);
		} else if (S_ISDIR(st.st_mode)) {
			r = op_bind(pl, j, roots[i], true, e);
		}
	}
	for (size_t i = 0; i < sizeof(etc) / sizeof(etc[0]) && r == 0; i++)
		if (access(etc[i], R_OK) == 0)
			r = op_bind(pl, j, etc[i], true, e);
	if (r < 0)
		return r;
	op_add(pl, OP_MKDIR, gv_strdupf("%s/dev", j))->mode = 0755;
	for (size_t i = 0; i < sizeof(devs) / sizeof(devs[0]); i++) {
		struct op *o = op_add(pl, OP_NODE, gv_strdupf("%s/dev/%s", j, devs[i].name));
		o->mode = S_IFCHR | 0666;
		o->dev = makedev(devs[i].maj, devs[i].min);
	}
	if (s->kvm) {
		struct stat st;
		if (stat("/dev/kvm", &st) < 0 || !S_ISCHR(st.st_mode))
			return gv_err_set(e, -ENODEV, "QEMU needs /dev/kvm: %s", strerror(errno));
		struct op *o = op_add(pl, OP_NODE, gv_strdupf("%s/dev/kvm", j));
		o->mode = S_IFCHR | 0600;
		o->dev = st.st_rdev;
		o->owned = true;
	}
	op_add(pl, OP_MKDIR, gv_strdupf("%s/proc", j))->mode = 0555;
	op_add(pl, OP_PROC, gv_strdupf("%s/proc", j));
	/* the caller's files, shorter paths first (a directory before what
	 * is bound inside it) */
	for (size_t i = 0; s->ro && s->ro[i]; i++)
		nro++;
	for (size_t i = 0; s->rw && s->rw[i]; i++)
		n++;
	list = calloc(nro + n + 1, sizeof(*list));
	if (!list)
		abort();
	for (size_t i = 0; i < nro; i++)
		list[i] = s->ro[i];
	for (size_t i = 0; i < n; i++)
		list[nro + i] = s->rw[i];
	qsort(list, nro + n, sizeof(*list), by_len);
	for (size_t i = 0; i < nro + n && r == 0; i++) {
		bool rw = false;
		for (size_t k = 0; k < n; k++)
			rw = rw || list[i] == s->rw[k];
		r = op_bind(pl, j, list[i], !rw, e);
	}
	free(list);
	return r;
}

/* ---- the child ---- */

struct report {
	int step;
	int err;
};

static void __attribute__((noreturn)) child_fail(int fd, int step)
{
	struct report rep = { step, errno };

	if (write(fd, &rep, sizeof(rep)) < 0) {
		/* nothing left to tell anyone */
	}
	_exit(127);
}

static int do_op(const struct op *o)
{
	int fd;

	switch (o->kind) {
	case OP_MKDIR:
		return mkdir(o->path, o->mode) < 0 && errno != EEXIST ? -1 : 0;
	case OP_FILE:
		fd = open(o->path, O_RDONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, o->mode);
		if (fd < 0)
			return errno == EEXIST ? 0 : -1;
		close(fd);
		return 0;
	case OP_BIND:
		if (mount(o->src, o->path, NULL, MS_BIND | MS_REC, NULL) < 0)
			return -1;
		return mount(NULL, o->path, NULL, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV |
			     (o->ro ? MS_RDONLY : 0), NULL);
	case OP_SYMLINK:
		return symlink(o->src, o->path) < 0 && errno != EEXIST ? -1 : 0;
	case OP_NODE: /* the mode exactly, whatever the umask */
		return mknod(o->path, o->mode, o->dev) < 0 || chmod(o->path, o->mode & 07777) < 0
			       ? -1 : 0;
	case OP_PROC:
		/* QEMU sees its own processes only; older kernels lack the
		 * per-mount option "invisible" */
		if (mount("proc", o->path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
			  "hidepid=invisible") == 0 ||
		    mount("proc", o->path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
			  "hidepid=2") == 0)
			return 0;
		return -1;
	}
	return -1;
}

static void __attribute__((noreturn)) child(const gv_spawn *s, const struct plan *pl,
					    int null_fd, int rep)
{
	static char *const env[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };
	int high[64];

	/* fds: each to a free high number first, then to 3 + i */
	if (s->nfds > 64)
		child_fail(rep, ST_FDS);
	for (int i = 0; i < s->nfds; i++)
		if (s->fds[i] >= 0 && (high[i] = fcntl(s->fds[i], F_DUPFD_CLOEXEC, 100)) < 0)
			child_fail(rep, ST_FDS);
	if (dup2(null_fd, 0) < 0 || dup2(s->out_fd, 1) < 0 || dup2(s->out_fd, 2) < 0)
		child_fail(rep, ST_FDS);
	for (int i = 0; i < s->nfds; i++)
		if (s->fds[i] >= 0 && dup2(high[i], 3 + i) < 0)
			child_fail(rep, ST_FDS);
	if (syscall(SYS_close_range, 3 + s->nfds, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */) < 0)
		child_fail(rep, ST_FDS);
	if (s->jail) {
		if (unshare(CLONE_NEWNS) < 0)
			child_fail(rep, ST_UNSHARE);
		if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
			child_fail(rep, ST_PRIVATE);
		if (mount("gridvm-qemu", s->jail_dir, "tmpfs", MS_NOSUID, "mode=0755,size=1m") < 0)
			child_fail(rep, ST_TMPFS);
		for (size_t i = 0; i < pl->n; i++)
			if (do_op(&pl->ops[i]) < 0)
				child_fail(rep, (int)i);
		for (size_t i = 0; i < pl->n; i++) /* the /dev/kvm of this QEMU's user */
			if (pl->ops[i].owned && chown(pl->ops[i].path, s->uid, s->gid) < 0)
				child_fail(rep, (int)i);
		if (chdir(s->jail_dir) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 ||
		    umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
			child_fail(rep, ST_PIVOT);
		if (mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID, NULL) < 0)
			child_fail(rep, ST_ROOT_RO);
	}
	if (s->drop) {
		if (setgroups(0, NULL) < 0)
			child_fail(rep, ST_GROUPS);
		if (setresgid(s->gid, s->gid, s->gid) < 0)
			child_fail(rep, ST_GID);
		if (setresuid(s->uid, s->uid, s->uid) < 0)
			child_fail(rep, ST_UID);
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		child_fail(rep, ST_NNP);
	execve(s->argv[0], s->argv, env);
	child_fail(rep, ST_EXEC);
}

static int report_error(const gv_spawn *s, const struct plan *pl, struct report rep,
			gv_err *e)
{
	static const char *const steps[] = { "", "pass its file descriptors",
					     "make its mount namespace",
					     "make its mounts private", "mount its root (tmpfs)",
					     "enter its root (pivot_root)", "make its root read-only",
					     "drop supplementary groups", "set its gid", "set its uid",
					     "set no_new_privs", "exec", "fork" };
	int err = rep.err ? -rep.err : -EIO;

	if (rep.step >= 0 && (size_t)rep.step < pl->n) {
		const struct op *o = &pl->ops[rep.step];
		return gv_err_set(e, err, "cannot start QEMU: its jail (%s): %s %s: %s",
				  s->jail_dir, o->kind == OP_BIND ? "bind" : "make",
				  o->shown ? o->shown : o->path + strlen(s->jail_dir),
				  strerror(rep.err));
	}
	if (rep.step < 0 && -rep.step < (int)(sizeof(steps) / sizeof(steps[0])))
		return gv_err_set(e, err, "cannot start QEMU: %s%s%s: %s", steps[-rep.step],
				  rep.step == ST_EXEC ? " " : "",
				  rep.step == ST_EXEC ? s->argv[0] : "", strerror(rep.err));
	return gv_err_set(e, err, "cannot start QEMU (step %d): %s", rep.step, strerror(rep.err));
}

static ssize_t read_full(int fd, void *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = read(fd, (char *)buf + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	return (ssize_t)off;
}

int gv_spawn_detached(const gv_spawn *s, pid_t *pid, gv_err *e)
{
	struct plan pl = { 0 };
	struct report rep;
	int pidp[2] = { -1, -1 }, repp[2] = { -1, -1 }, null_fd, st, r = 0;
	pid_t c1, qemu = -1;

	*pid = -1;
	if (!s->argv || !s->argv[0] || s->argv[0][0] != '/')
		return gv_err_set(e, -EINVAL, "QEMU's binary must be an absolute path");
	if (s->jail && (r = plan_jail(&pl, s, e)) < 0) {
		plan_free(&pl);
		return r;
	}
	null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null_fd < 0 || pipe2(pidp, O_CLOEXEC) < 0 || pipe2(repp, O_CLOEXEC) < 0) {
		r = gv_err_set(e, -errno, "cannot start QEMU: %s", strerror(errno));
		goto out;
	}
	c1 = fork();
	if (c1 < 0) {
		r = gv_err_set(e, -errno, "cannot start QEMU: fork: %s", strerror(errno));
		goto out;
	}
	if (c1 == 0) { /* detach: a new session, and the grandchild is QEMU */
		pid_t c2;

		setsid();
		c2 = fork();
		if (c2 == 0)
			child(s, &pl, null_fd, repp[1]);
		if (c2 < 0)
			c2 = -errno;
		if (write(pidp[1], &c2, sizeof(c2)) < 0)
			_exit(1);
		_exit(0);
	}
	close(pidp[1]);
	close(repp[1]);
	pidp[1] = repp[1] = -1;
	while (waitpid(c1, &st, 0) < 0 && errno == EINTR)
		;
	if (read_full(pidp[0], &qemu, sizeof(qemu)) != sizeof(qemu) || qemu <= 0) {
		r = gv_err_set(e, qemu < 0 ? qemu : -EIO, "cannot start QEMU: fork: %s",
			       strerror(qemu < 0 ? -qemu : EIO));
		goto out;
	}
	/* EOF without a report: exec'd (the pipe closed on exec) */
	if (read_full(repp[0], &rep, sizeof(rep)) == sizeof(rep)) {
		r = report_error(s, &pl, rep, e);
		goto out;
	}
	*pid = qemu;
out:
	for (int i = 0; i < 2; i++) {
		if (pidp[i] >= 0)
			close(pidp[i]);
		if (repp[i] >= 0)
			close(repp[i]);
	}
	if (null_fd >= 0)
		close(null_fd);
	plan_free(&pl);
	return r;
}
