/* SPDX-License-Identifier: MIT */
/*
 * agent_users.c - who may do what through the agent's socket: a local
 * user sees and changes only the VMs, checkpoints and images they own
 * (what they may not see answers as if it did not exist), uses root's
 * images, leaves to admins what reads the host's files or builds shared
 * things with the agent's rights, and stays within the administrator's
 * quotas, checked before any QEMU starts (docs/security.md#users).
 */
#include "agent_internal.h"

#include <gridvm/node/checkpoint.h>
#include <gridvm/node/image.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct agent_ulock {
	int64_t uid;
	int refs;
	pthread_mutex_t mu;
	struct agent_ulock *next;
};

int agent_no_vm(const char *name, gv_err *e)
{
	return gv_err_set(e, -ENOENT, "no such VM: %s", name);
}

int agent_need_admin(const gv_user *u, const char *what, gv_err *e)
{
	if (u->admin)
		return 0;
	return gv_err_set(e, -EACCES, "permission denied: %s needs root or a member of group "
			  "%s (you are %s)", what, GV_ADMIN_GROUP, u->name);
}

/* The owner of VM @name, or of the checkpoints it left; NULL: none. */
static json_t *vm_owner(gv_agent *a, const char *name)
{
	json_t *o = gv_vm_owner(a->h, name), *ck;

	if (o || !gv_name_valid(name))
		return o;
	ck = gv_checkpoint_list(a->h, name);
	o = json_incref(json_object_get(json_array_get(ck, 0), "owner"));
	json_decref(ck);
	return o;
}

bool agent_vm_visible(gv_agent *a, const gv_user *u, const char *name)
{
	json_t *o;
	bool ok;

	if (u->admin)
		return true;
	o = vm_owner(a, name);
	ok = o && gv_user_is(u, o);
	json_decref(o);
	return ok;
}

/* Root's images are everyone's to use; a user's are theirs. */
static bool image_owner_ok(const gv_user *u, const json_t *owner)
{
	return u->admin || json_integer_value(json_object_get(owner, "uid")) == 0 ||
	       gv_user_is(u, owner);
}

bool agent_image_visible(gv_agent *a, const gv_user *u, const char *name)
{
	json_t *o = gv_image_owner(gv_host_datadir(a->h), name);
	bool ok = image_owner_ok(u, o);

	json_decref(o);
	return ok;
}

json_t *agent_filter(gv_agent *a, const gv_user *u, json_t *list, const char *vm_key)
{
	json_t *out, *v;
	size_t i;

	if (u->admin)
		return list;
	out = json_array();
	json_array_foreach(list, i, v) {
		const char *vm = vm_key ? json_string_value(json_object_get(v, vm_key)) : NULL;
		json_t *owner = json_object_get(v, "owner");
		bool ok = vm_key ? vm && agent_vm_visible(a, u, vm)
			: json_object_get(v, "format") ? image_owner_ok(u, owner) /* an image */
						       : gv_user_is(u, owner);
		if (ok)
			json_array_append(out, v);
	}
	json_decref(list);
	return out;
}

/* ---- quotas ---- */

static __thread uint64_t du_sum;

static int du_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)path, (void)flag, (void)f;
	du_sum += (uint64_t)st->st_blocks * 512;
	return 0;
}

/* Bytes allocated under @path. */
static uint64_t du(const char *path)
{
	du_sum = 0;
	(void)nftw(path, du_one, 16, FTW_PHYS);
	return du_sum;
}

struct usage {
	uint64_t vms, vcpus, memory, disk;
};

/* What @u uses on this host; the VM @except does not count as running. */
static void usage_of(gv_agent *a, const gv_user *u, const char *except, struct usage *s)
{
	json_t *recs = gv_vm_records(a->h), *r, *imgs, *im;
	const char *dd = gv_host_datadir(a->h);
	size_t i;

	memset(s, 0, sizeof(*s));
	json_array_foreach(recs, i, r) {
		const char *name = json_string_value(json_object_get(r, "name"));
		const char *st = json_string_value(json_object_get(r, "state"));
		if (!name || !gv_user_is(u, json_object_get(r, "owner")))
			continue;
		s->vms++;
		if ((!except || strcmp(name, except)) && st &&
		    (!strcmp(st, "running") || !strcmp(st, "paused"))) {
			s->vcpus += (uint64_t)json_integer_value(json_object_get(r, "vcpus"));
			s->memory += (uint64_t)json_integer_value(json_object_get(r, "memory_mib"))
				     << 20;
		}
		char *dir = gv_strdupf("%s/vms/%s", dd, name);
		s->disk += du(dir);
		free(dir);
	}
	json_decref(recs);
	imgs = gv_image_list(dd);
	json_array_foreach(imgs, i, im)
		if (gv_user_is(u, json_object_get(im, "owner")) &&
		    json_integer_value(json_object_get(json_object_get(im, "owner"), "uid")) != 0)
			s->disk += (uint64_t)json_integer_value(json_object_get(im, "allocated"));
	json_decref(imgs);
}

static int quotas_of(gv_agent *a, const gv_user *u, gv_quota *q, gv_err *e)
{
	return gv_quota_load(a->quotas, u, q, e);
}

/* Copy what @fd reads into a new private file under DATA/vms (*tmp). */
static int copy_in(gv_agent *a, int fd, const char *what, char **tmp, gv_err *e)
{
	char *t = gv_strdupf("%s/vms/.upload-XXXXXX", gv_host_datadir(a->h));
	int out = mkostemp(t, O_CLOEXEC), r = 0;
	struct stat st;

	if (out < 0 || fstat(fd, &st) < 0) {
		r = gv_err_set(e, -errno, "cannot take %s: %s", what, strerror(errno));
		goto out;
	}
	for (off_t done = 0; r == 0 && done < st.st_size;) {
		ssize_t n = copy_file_range(fd, NULL, out, NULL, (size_t)(st.st_size - done), 0);
		if (n <= 0)
			r = gv_err_set(e, n < 0 ? -errno : -EIO, "cannot copy %s: %s", what,
				       n < 0 ? strerror(errno) : "it shrank");
		done += n > 0 ? n : 0;
	}
out:
	if (out >= 0)
		close(out);
	if (r < 0 || out < 0) {
		if (out >= 0)
			unlink(t);
		free(t);
		return r;
	}
	*tmp = t;
	return 0;
}

/* @path opened as @u, a regular file; *size its bytes. */
static int open_as(const gv_user *u, const char *what, const char *path, uint64_t *size,
		   gv_err *e)
{
	struct stat st;
	int fd;

	if (!path || path[0] != '/')
		return gv_err_set(e, -EINVAL, "%s must be an absolute path", what);
	fd = gv_user_open(u, path, O_RDONLY, 0);
	if (fd < 0)
		return gv_err_set(e, fd, "%s %s: %s (opened as %s)", what, path, strerror(-fd),
				  u->name);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return gv_err_set(e, -EINVAL, "%s %s is not a regular file", what, path);
	}
	*size = (uint64_t)st.st_size;
	return fd;
}

int agent_vm_admit(gv_agent *a, const gv_user *u, json_t *body, char **tmp, gv_err *e)
{
	const char *image = json_string_value(json_object_get(body, "image"));
	const char *tar = json_string_value(json_object_get(body, "input_tar"));
	json_t *in;
	struct usage s;
	uint64_t more = 0;
	gv_quota q;
	size_t i;
	int r, fd = -1;

	*tmp = NULL;
	if (!json_is_object(body))
		return gv_err_set(e, -EINVAL, "a VM definition is a JSON object");
	json_object_set_new(body, "owner", gv_user_owner_json(u));
	if (u->admin)
		return 0;
	if (json_object_get(body, "kernel") || json_object_get(body, "initrd"))
		return agent_need_admin(u, "a kernel or an initrd from a host path", e);
	json_array_foreach(json_object_get(body, "inputs"), i, in)
		if (json_object_get(in, "path"))
			return agent_need_admin(u, "an input given by host path (read with the "
						"agent's rights; gridvm sends yours packed, as "
						"input_tar)", e);
	if (image && !agent_image_visible(a, u, image))
		return gv_err_set(e, -ENOENT, "no such image: %s (see 'gridvm image list')", image);
	if ((r = quotas_of(a, u, &q, e)) < 0)
		return r;
	if (tar && (fd = r = open_as(u, "input_tar", tar, &more, e)) < 0)
		return r;
	usage_of(a, u, NULL, &s);
	r = gv_quota_check(&q, u, GV_QUOTA_VMS, s.vms, 1, e);
	if (r == 0)
		r = gv_quota_check(&q, u, GV_QUOTA_DISK, s.disk, more, e);
	if (r == 0 && fd >= 0 && (r = copy_in(a, fd, "input_tar", tmp, e)) == 0)
		json_object_set_new(body, "input_tar", json_string(*tmp));
	if (fd >= 0)
		close(fd);
	return r;
}

int agent_run_admit(gv_agent *a, const gv_user *u, const char *name, gv_err *e)
{
	json_t *recs, *r, *me = NULL;
	struct usage s;
	gv_quota q;
	size_t i;
	int rc;

	if (u->admin)
		return 0;
	if ((rc = quotas_of(a, u, &q, e)) < 0)
		return rc;
	recs = gv_vm_records(a->h);
	json_array_foreach(recs, i, r)
		if (!strcmp(json_string_value(json_object_get(r, "name")) ?: "", name))
			me = r;
	if (!me) { /* it will say so itself */
		json_decref(recs);
		return 0;
	}
	usage_of(a, u, name, &s);
	rc = gv_quota_check(&q, u, GV_QUOTA_VCPUS, s.vcpus,
			    (uint64_t)json_integer_value(json_object_get(me, "vcpus")), e);
	if (rc == 0)
		rc = gv_quota_check(&q, u, GV_QUOTA_MEMORY, s.memory,
				    (uint64_t)json_integer_value(json_object_get(me, "memory_mib"))
					    << 20, e);
	if (rc == 0)
		rc = gv_quota_check(&q, u, GV_QUOTA_DISK, s.disk, 0, e);
	json_decref(recs);
	return rc;
}

int agent_import_admit(gv_agent *a, const gv_user *u, const char *file, char **tmp,
		       gv_err *e)
{
	struct usage s;
	uint64_t size = 0;
	gv_quota q;
	int r, fd;

	*tmp = NULL;
	if (u->admin)
		return 0;
	if ((r = quotas_of(a, u, &q, e)) < 0)
		return r;
	if ((fd = open_as(u, "file", file, &size, e)) < 0)
		return fd;
	usage_of(a, u, NULL, &s);
	r = gv_quota_check(&q, u, GV_QUOTA_DISK, s.disk, size, e);
	if (r == 0)
		r = copy_in(a, fd, file, tmp, e);
	close(fd);
	return r;
}

struct agent_ulock *agent_user_lock(gv_agent *a, const gv_user *u)
{
	struct agent_ulock *l;

	if (u->admin)
		return NULL;
	pthread_mutex_lock(&a->ulocks_mu);
	for (l = a->ulocks; l && l->uid != u->uid; l = l->next)
		;
	if (!l) {
		l = calloc(1, sizeof(*l));
		if (!l)
			abort();
		l->uid = u->uid;
		pthread_mutex_init(&l->mu, NULL);
		l->next = a->ulocks;
		a->ulocks = l;
	}
	l->refs++;
	pthread_mutex_unlock(&a->ulocks_mu);
	pthread_mutex_lock(&l->mu);
	return l;
}

void agent_user_unlock(gv_agent *a, struct agent_ulock *l)
{
	if (!l)
		return;
	pthread_mutex_unlock(&l->mu);
	pthread_mutex_lock(&a->ulocks_mu);
	if (--l->refs == 0) {
		struct agent_ulock **p = &a->ulocks;
		while (*p != l)
			p = &(*p)->next;
		*p = l->next;
		pthread_mutex_destroy(&l->mu);
		free(l);
	}
	pthread_mutex_unlock(&a->ulocks_mu);
}
