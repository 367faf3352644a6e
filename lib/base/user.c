/* SPDX-License-Identifier: MIT */
/* user.c - who asks, what they own, what they may use (user.h). */
#include <gridvm/base/user.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

static bool in_group(const gv_user *u, gid_t g)
{
	if (u->gid >= 0 && (gid_t)u->gid == g)
		return true;
	for (int i = 0; i < u->ngroups; i++)
		if (u->groups[i] == g)
			return true;
	return false;
}

static void decide_admin(gv_user *u)
{
	struct group gr, *res = NULL;
	char buf[4096];

	u->admin = u->uid == 0 || (u->uid >= 0 && (uid_t)u->uid == geteuid());
	if (!u->admin && u->uid >= 0 &&
	    getgrnam_r(GV_ADMIN_GROUP, &gr, buf, sizeof(buf), &res) == 0 && res)
		u->admin = in_group(u, res->gr_gid);
}

/* The user name of @uid (its number when it has none) and primary gid. */
static void name_of(gv_user *u)
{
	struct passwd pw, *res = NULL;
	char buf[4096];

	if (getpwuid_r((uid_t)u->uid, &pw, buf, sizeof(buf), &res) == 0 && res) {
		snprintf(u->name, sizeof(u->name), "%s", pw.pw_name);
		if (u->gid < 0)
			u->gid = pw.pw_gid;
	} else {
		snprintf(u->name, sizeof(u->name), "%" PRId64, u->uid);
	}
}

int gv_user_of_socket(int fd, gv_user *u)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	memset(u, 0, sizeof(*u));
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return -errno;
	u->uid = cr.uid;
	u->gid = cr.gid;
	len = sizeof(u->groups);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, u->groups, &len) == 0)
		u->ngroups = (int)(len / sizeof(gid_t));
	else /* more groups than we keep, or an old kernel: the database's */
		u->ngroups = -1;
	name_of(u);
	if (u->ngroups < 0) {
		int n = GV_USER_GROUPS_MAX;
		if (getgrouplist(u->name, (gid_t)u->gid, u->groups, &n) < 0)
			n = GV_USER_GROUPS_MAX;
		u->ngroups = n;
	}
	decide_admin(u);
	return 0;
}

void gv_user_of_uid(uint32_t uid, gv_user *u)
{
	int n = GV_USER_GROUPS_MAX;

	memset(u, 0, sizeof(*u));
	u->uid = uid;
	u->gid = -1;
	name_of(u);
	if (u->gid >= 0 && getgrouplist(u->name, (gid_t)u->gid, u->groups, &n) >= 0)
		u->ngroups = n;
	decide_admin(u);
}

void gv_user_of_name(const char *name, gv_user *u)
{
	memset(u, 0, sizeof(*u));
	u->uid = u->gid = -1;
	snprintf(u->name, sizeof(u->name), "%s", name ? name : "");
}

void gv_user_root(gv_user *u)
{
	memset(u, 0, sizeof(*u));
	snprintf(u->name, sizeof(u->name), "root");
	u->admin = true;
}

json_t *gv_user_owner_json(const gv_user *u)
{
	return json_pack("{s:o, s:s}", "uid", u->uid >= 0 ? json_integer(u->uid) : json_null(),
			 "name", u->name);
}

const char *gv_owner_name(const json_t *owner)
{
	const char *n = json_string_value(json_object_get(owner, "name"));

	return n ? n : "root";
}

bool gv_user_is(const gv_user *u, const json_t *owner)
{
	json_t *uid = json_object_get(owner, "uid");

	if (!json_is_object(owner)) /* made before owners: root's */
		return u->uid == 0;
	if (json_is_integer(uid) && u->uid >= 0)
		return json_integer_value(uid) == u->uid;
	return !strcmp(gv_owner_name(owner), u->name);
}

bool gv_user_may(const gv_user *u, const json_t *owner)
{
	return u->admin || gv_user_is(u, owner);
}

int gv_user_socket_access(const char *path, gv_err *e)
{
	struct group gr, *res = NULL;
	char buf[4096];

	if (getgrnam_r(GV_USE_GROUP, &gr, buf, sizeof(buf), &res) == 0 && res) {
		if (chown(path, (uid_t)-1, res->gr_gid) < 0 || chmod(path, 0660) < 0)
			return gv_err_set(e, -errno, "cannot give %s to group %s: %s", path,
					  GV_USE_GROUP, strerror(errno));
		return 0;
	}
	if (chmod(path, 0666) < 0)
		return gv_err_set(e, -errno, "cannot open %s to local users: %s", path,
				  strerror(errno));
	return 0;
}

/* The child of gv_user_open: only system calls from here on. */
static void open_as_child(const gv_user *u, int sock, const char *path, int flags,
			  mode_t mode)
{
	int err = 0, fd = -1;
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &err, sizeof(err) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (setgroups((size_t)u->ngroups, u->groups) < 0 ||
	    setresgid((gid_t)u->gid, (gid_t)u->gid, (gid_t)u->gid) < 0 ||
	    setresuid((uid_t)u->uid, (uid_t)u->uid, (uid_t)u->uid) < 0)
		err = errno;
	else if ((fd = open(path, flags | O_NOCTTY, mode)) < 0)
		err = errno;
	if (fd >= 0) {
		memset(cbuf, 0, sizeof(cbuf));
		m.msg_control = cbuf;
		m.msg_controllen = sizeof(cbuf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	(void)!sendmsg(sock, &m, 0);
	_exit(0);
}

int gv_user_open(const gv_user *u, const char *path, int flags, mode_t mode)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	int err = EIO, fd = -1, sv[2], st;
	struct iovec iov = { &err, sizeof(err) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf) };
	pid_t pid;

	if (u->uid < 0 || u->gid < 0)
		return -EPERM;
	if ((uid_t)u->uid == geteuid()) { /* ourselves: nothing to drop */
		fd = open(path, flags | O_CLOEXEC | O_NOCTTY, mode);
		return fd < 0 ? -errno : fd;
	}
	if (geteuid() != 0)
		return -EPERM; /* cannot become another user */
	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		err = errno;
		close(sv[0]);
		close(sv[1]);
		return -err;
	}
	if (pid == 0)
		open_as_child(u, sv[1], path, flags | O_CLOEXEC, mode);
	close(sv[1]);
	if (recvmsg(sv[0], &m, MSG_CMSG_CLOEXEC) < (ssize_t)sizeof(int))
		err = EIO;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			memcpy(&fd, CMSG_DATA(c), sizeof(int));
	close(sv[0]);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (fd >= 0 && err == 0)
		return fd;
	if (fd >= 0)
		close(fd);
	return -(err ? err : EIO);
}

/* ---- quotas ---- */

static const char *const quota_names[GV_QUOTA_N] = { "vms", "vcpus", "memory", "disk",
						      "jobs" };

const char *gv_quota_name(gv_quota_kind k)
{
	return (unsigned)k < GV_QUOTA_N ? quota_names[k] : "?";
}

static bool quota_is_size(int k)
{
	return k == GV_QUOTA_MEMORY || k == GV_QUOTA_DISK;
}

/* The limits @entry sets (a key given overrides @q's). */
static int quota_apply(const char *path, const char *who, json_t *entry, gv_quota *q,
		       gv_err *e)
{
	const char *key;
	json_t *v;

	if (!json_is_object(entry))
		return gv_err_set(e, -EINVAL, "quota file %s: %s is not an object", path, who);
	json_object_foreach(entry, key, v) {
		int k = 0;
		uint64_t n = 0;
		while (k < GV_QUOTA_N && strcmp(key, quota_names[k]))
			k++;
		if (k == GV_QUOTA_N)
			return gv_err_set(e, -EINVAL, "quota file %s: %s: unknown quota '%s' (vms, "
					  "vcpus, memory, disk, jobs)", path, who, key);
		if (json_is_null(v)) {
			q->limit[k] = -1;
			continue;
		}
		if (json_is_integer(v) && json_integer_value(v) >= 0)
			n = (uint64_t)json_integer_value(v);
		else if (!quota_is_size(k) || !json_is_string(v) ||
			 gv_parse_size(json_string_value(v), 1, &n) < 0)
			return gv_err_set(e, -EINVAL, "quota file %s: %s: %s is %s or null", path,
					  who, key, quota_is_size(k)
					  ? "a size (bytes, or such as \"16G\")"
					  : "a count >= 0");
		q->limit[k] = (int64_t)n;
	}
	return 0;
}

int gv_quota_load(const char *path, const gv_user *u, gv_quota *q, gv_err *e)
{
	json_error_t je;
	json_t *j, *users;
	char who[96];
	int r;

	for (int k = 0; k < GV_QUOTA_N; k++)
		q->limit[k] = -1;
	if (u->admin || access(path, F_OK) < 0)
		return 0;
	j = json_load_file(path, 0, &je);
	if (!j)
		return gv_err_set(e, -EINVAL, "quota file %s: line %d: %s", path, je.line, je.text);
	users = json_object_get(j, "users");
	r = json_is_object(j) ? 0
			      : gv_err_set(e, -EINVAL, "quota file %s is not a JSON object", path);
	if (r == 0 && users && !json_is_object(users))
		r = gv_err_set(e, -EINVAL, "quota file %s: \"users\" is not an object", path);
	if (r == 0 && json_object_get(j, "default"))
		r = quota_apply(path, "default", json_object_get(j, "default"), q, e);
	snprintf(who, sizeof(who), "user %s", u->name);
	if (r == 0 && json_object_get(users, u->name))
		r = quota_apply(path, who, json_object_get(users, u->name), q, e);
	json_decref(j);
	return r;
}

int gv_quota_check(const gv_quota *q, const gv_user *u, gv_quota_kind k, uint64_t used,
		   uint64_t more, gv_err *e)
{
	char l[32], us[32], m[32];
	int64_t lim = q->limit[k];

	/* nothing more asked (a start: its disk grows as it runs): what is
	 * in use must be below the limit */
	if (lim < 0 || (more ? used + more <= (uint64_t)lim : used < (uint64_t)lim))
		return 0;
	if (quota_is_size(k)) {
		gv_fmt_size((uint64_t)lim, l, sizeof(l));
		gv_fmt_size(used, us, sizeof(us));
		gv_fmt_size(more, m, sizeof(m));
	} else {
		snprintf(l, sizeof(l), "%" PRId64, lim);
		snprintf(us, sizeof(us), "%" PRIu64, used);
		snprintf(m, sizeof(m), "%" PRIu64, more);
	}
	return gv_err_set(e, -EDQUOT, "quota exceeded: %s of user %s: limit %s, in use %s%s%s%s",
			  gv_quota_name(k), u->name, l, us, more ? ", this needs " : "",
			  more ? m : "", more ? " more" : "");
}
