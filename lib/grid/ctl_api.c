/* SPDX-License-Identifier: MIT */
/*
 * ctl_api.c - the controller's requests (docs/grid.md): from users
 * (submit, jobs, job-*, hosts, host-*) and agents (host-report), one
 * table; and the files it serves with the transfer (a job's input, its
 * output). Every request is some user's (docs/security.md#users): a job
 * is its submitter's, whom only it and administrators see; hosts act as
 * administrators.
 */
#include "ctl_internal.h"

#include <gridvm/base/b64.h>
#include <gridvm/base/user.h>
#include <gridvm/base/util.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define UPLOAD_MAX (4ull << 30) /* bytes of input per job */
#define LOG_CHUNK (1u << 20)	/* bytes of log per request */

static json_t *ok(void)
{
	return json_pack("{s:b}", "ok", 1);
}

static json_t *refuse(int code, const char *msg)
{
	return gv_err_json(code, msg);
}

/* ---- who asks ---- */

/* The user a connection proved: a local user on the unix socket (the
 * kernel's word), a user's certificate (role "user": its name); false
 * for a host (the grid key, an agent's or a controller's certificate),
 * which acts as an administrator. */
static bool peer_user(const gv_peer_id *p, gv_user *u)
{
	if (p->local) {
		*u = p->user;
		return true;
	}
	if (p->tls && !strcmp(p->role, "user")) {
		gv_user_of_name(p->name, u);
		return true;
	}
	gv_user_root(u);
	return false;
}

/* The same from a request's "_peer" (xfer.h). */
static void req_user(const json_t *req, gv_user *u)
{
	json_t *p = json_object_get(req, "_peer");
	gv_peer_id id = { 0 };

	id.tls = json_is_true(json_object_get(p, "tls"));
	id.local = json_is_true(json_object_get(p, "local"));
	snprintf(id.name, sizeof(id.name), "%s", json_string_value(json_object_get(p, "name")) ?: "");
	snprintf(id.role, sizeof(id.role), "%s", json_string_value(json_object_get(p, "role")) ?: "");
	if (id.local) {
		id.user.uid = json_integer_value(json_object_get(p, "uid"));
		id.user.gid = json_integer_value(json_object_get(p, "gid"));
		snprintf(id.user.name, sizeof(id.user.name), "%.63s", id.name);
		id.user.admin = json_is_true(json_object_get(p, "admin"));
	}
	peer_user(&id, u);
}

static json_t *need_admin(const gv_user *u, const char *what)
{
	return gv_err_jsonf(-EACCES, "permission denied: %s needs an administrator of the grid "
			    "(root, group %s, or a host's credentials; you are %s)", what,
			    GV_ADMIN_GROUP, u->name);
}

/* Whether new job @rec keeps @u within their quotas on the jobs not
 * ended (mu held): 0, or -EDQUOT (or the quota file's fault) with @e. */
static int job_quotas(gv_ctl *c, const gv_user *u, const json_t *rec, gv_err *e)
{
	uint64_t n = 0, cpus = 0, mem = 0;
	gv_quota q;
	int r = gv_quota_load(c->quotas, u, &q, e);

	for (size_t i = 0; r == 0 && i < c->njobs; i++) {
		const json_t *o = c->jobs[i]->rec;
		if (gv_job_state_final(gv_job_record_state(o)) ||
		    !gv_user_is(u, json_object_get(o, "owner")))
			continue;
		n++;
		cpus += (uint64_t)json_integer_value(json_object_get(o, "cpus"));
		mem += (uint64_t)json_integer_value(json_object_get(o, "memory"));
	}
	if (r == 0)
		r = gv_quota_check(&q, u, GV_QUOTA_JOBS, n, 1, e);
	if (r == 0)
		r = gv_quota_check(&q, u, GV_QUOTA_VCPUS, cpus,
				   (uint64_t)json_integer_value(json_object_get(rec, "cpus")), e);
	if (r == 0)
		r = gv_quota_check(&q, u, GV_QUOTA_MEMORY, mem,
				   (uint64_t)json_integer_value(json_object_get(rec, "memory")), e);
	return r;
}

static bool token_ok(const char *t)
{
	if (!t || strlen(t) != 32)
		return false;
	for (; *t; t++)
		if (!((*t >= '0' && *t <= '9') || (*t >= 'a' && *t <= 'f')))
			return false;
	return true;
}

static char *upload_path(gv_ctl *c, const char *token)
{
	return gv_strdupf("%s/uploads/%s.tar", c->datadir, token);
}

/* {"op": "input-put", "upload": TOKEN, "offset": N, "data": BASE64}: a
 * piece of a job's input archive, before the job is submitted. */
static json_t *op_input_put(gv_ctl *c, json_t *req)
{
	const char *token = json_string_value(json_object_get(req, "upload"));
	const char *data = json_string_value(json_object_get(req, "data"));
	json_int_t off = json_integer_value(json_object_get(req, "offset"));
	uint8_t *buf = NULL;
	size_t len = 0;
	char *dir, *path;
	int fd, r;

	if (!token_ok(token) || !data || off < 0)
		return refuse(-EINVAL, "bad input upload");
	if (gv_b64_decode(data, strlen(data), &buf, &len) < 0)
		return refuse(-EINVAL, "bad input upload: not base64");
	if ((uint64_t)off + len > UPLOAD_MAX) {
		free(buf);
		return refuse(-EFBIG, "the job's inputs exceed 4 GiB");
	}
	dir = gv_strdupf("%s/uploads", c->datadir);
	r = gv_mkdir_p(dir, 0700);
	free(dir);
	path = upload_path(c, token);
	fd = r < 0 ? -1 : open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	r = fd < 0 || pwrite(fd, buf, len, (off_t)off) != (ssize_t)len ? -errno : 0;
	if (fd >= 0)
		close(fd);
	free(buf);
	free(path);
	return r < 0 ? refuse(r, "cannot store the input upload") : ok();
}

/* Is @image held by a host that reported? No host reported yet: any. */
static bool image_known(gv_ctl *c, const char *image, uint64_t *size)
{
	bool any = false;

	for (size_t i = 0; i < c->nhosts; i++) {
		json_t *imgs = json_object_get(c->hosts[i].report, "images"), *im;
		size_t k;
		if (!c->hosts[i].report)
			continue;
		any = true;
		json_array_foreach(imgs, k, im)
			if (!strcmp(json_string_value(json_object_get(im, "name")) ?: "", image)) {
				*size = (uint64_t)json_integer_value(json_object_get(im, "size"));
				return true;
			}
	}
	return !any;
}

static json_t *op_submit(gv_ctl *c, json_t *req)
{
	const char *token = json_string_value(json_object_get(req, "upload"));
	json_t *rec = NULL;
	gv_user u;
	char *dir = NULL, *key = NULL, *text = NULL, nid[32];
	uint64_t id, size = 0;
	gv_err e = { "" };
	int r = 0;

	if (token && !token_ok(token))
		return refuse(-EINVAL, "bad input upload");
	/* the input is the job's, on the other controllers too, before the
	 * job exists: a job is never seen without its input (ctl_files.c) */
	if (token && (r = ctl_input_adopt(c, token, json_integer_value(json_object_get(
							      req, "input_bytes")),
					  json_string_value(json_object_get(req, "input_sha256")),
					  &e)) < 0)
		return refuse(r, e.msg);
	req_user(req, &u);
	pthread_mutex_lock(&c->mu);
	if (!ctl_leading(c)) { /* deposed while this request waited */
		pthread_mutex_unlock(&c->mu);
		return ctl_standby_reply(c);
	}
	gv_kv_batch_begin(c->kv); /* the job and its first event: one commit */
	id = c->next_id;
	r = gv_job_from_submit(req, id, u.uid > 0 ? (uint32_t)u.uid : 0, ctl_now(), &rec, &e);
	if (r == 0) /* the submitter proved it; what the request says does not count */
		json_object_set_new(rec, "owner", gv_user_owner_json(&u));
	/* quotas before anything is kept: the check and the job are one
	 * step under the lock */
	if (r == 0)
		r = job_quotas(c, &u, rec, &e);
	if (r == 0 && !image_known(c, json_string_value(json_object_get(rec, "image")), &size))
		r = gv_err_set(&e, -ENOENT, "unknown image '%s': no host of the grid holds it",
			       json_string_value(json_object_get(rec, "image")));
	if (r == 0 && size)
		json_object_set_new(rec, "image_size", json_integer((json_int_t)size));
	/* nothing of an earlier job of this id (one whose submission failed)
	 * stays in its directory, which is made when its log is collected
	 * (ctl_loop.c) or copied from a peer (ctl_files.c): not here, under
	 * the lock (an ext4 mkdir showed in the profile) */
	if (r == 0) {
		dir = ctl_job_dir(c, id);
		(void)gv_rm_rf(dir);
	}
	if (r == 0 && token) /* its input: DATA/inputs/TOKEN.tar */
		json_object_set_new(rec, "upload", json_string(token));
	if (r == 0) {
		gv_kv_op ops[2];
		bool done = false;
		int64_t rev;
		key = gv_strdupf(CTL_KEY_JOBS "%020" PRIu64, id);
		text = json_dumps(rec, JSON_COMPACT);
		snprintf(nid, sizeof(nid), "%" PRIu64, id + 1);
		ops[0] = (gv_kv_op){ GV_KV_PUT, key, text, 0 };
		ops[1] = (gv_kv_op){ GV_KV_PUT, CTL_KEY_NEXT_ID, nid, 0 };
		r = gv_kv_txn(c->kv, NULL, 0, ops, 2, &done, &rev, &e);
		if (r == 0 && ctl_job_add(c, rec, rev, &e)) {
			rec = NULL; /* the job's now */
			c->next_id = id + 1;
			c->count.submitted++;
			if (u.uid >= 0)
				ctl_event(c, ctl_job_find(c, id), "submit",
					  "submitted by %s (uid %lld)", u.name, (long long)u.uid);
			else
				ctl_event(c, ctl_job_find(c, id), "submit", "submitted by %s",
					  u.name);
			ctl_kick(c);
		} else if (r == 0) {
			(void)gv_kv_delete(c->kv, key, NULL, NULL);
			r = -EINVAL;
		}
	}
	/* committed here, synced before the user hears of it (ctl_request:
	 * one sync for the submissions and reports committed meanwhile); a
	 * failed commit loses the job, and the controller starts again from
	 * the store (ctl_store_failed) */
	if (ctl_batch_commit(c, &e) < 0 && r == 0) {
		fprintf(stderr, "gridvmctld: cannot store job %" PRIu64 ": %s\n", id, e.msg);
		r = gv_err_set(&e, -EIO, "the job could not be stored: %s", e.msg);
	}
	pthread_mutex_unlock(&c->mu);
	if (r < 0 && dir)
		(void)gv_rm_rf(dir);
	if (r < 0 && token)
		ctl_input_drop(c, token);
	json_decref(rec);
	free(dir);
	free(key);
	free(text);
	if (r < 0)
		return refuse(r, e.msg);
	return json_pack("{s:b, s:I}", "ok", 1, "id", (json_int_t)id);
}

/* mu held: the job @req names, if its user may see it; else NULL and
 * *rep the refusal, the same as for a job that does not exist. */
static struct ctl_job *job_of(gv_ctl *c, json_t *req, json_t **rep)
{
	json_int_t id = json_integer_value(json_object_get(req, "id"));
	struct ctl_job *j = id > 0 ? ctl_job_find(c, (uint64_t)id) : NULL;
	gv_user u;

	req_user(req, &u);
	if (j && !gv_user_may(&u, json_object_get(j->rec, "owner")))
		j = NULL;
	if (!j) {
		char msg[64];
		snprintf(msg, sizeof(msg), "no such job: %lld", (long long)id);
		*rep = refuse(-ENOENT, msg);
	}
	return j;
}

/* What `gridvm jobs` shows of a job. */
static json_t *job_summary(gv_ctl *c, struct ctl_job *j)
{
	json_t *s = json_deep_copy(j->rec);
	double start = json_number_value(json_object_get(j->rec, "started"));
	double end = json_number_value(json_object_get(j->rec, "ended"));

	if (start > 0)
		json_object_set_new(s, "runtime", json_real((end > 0 ? end : ctl_now()) - start));
	json_object_set_new(s, "events", json_integer(j->events));
	return s;
}

static json_t *op_jobs(gv_ctl *c, json_t *req)
{
	json_t *list = json_array();
	gv_user u;

	req_user(req, &u);
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < c->njobs; i++)
		if (gv_user_may(&u, json_object_get(c->jobs[i]->rec, "owner")))
			json_array_append_new(list, job_summary(c, c->jobs[i]));
	pthread_mutex_unlock(&c->mu);
	return json_pack("{s:b, s:o}", "ok", 1, "jobs", list);
}

static json_t *op_job_show(gv_ctl *c, json_t *req)
{
	json_t *rep = NULL;

	pthread_mutex_lock(&c->mu);
	struct ctl_job *j = job_of(c, req, &rep);
	if (j)
		rep = json_pack("{s:b, s:o}", "ok", 1, "job", job_summary(c, j));
	pthread_mutex_unlock(&c->mu);
	return rep;
}

static json_t *op_job_events(gv_ctl *c, json_t *req)
{
	json_t *rep = NULL, *list;
	gv_kv_entry *v = NULL;
	size_t n = 0;
	int64_t rev;
	gv_err e;
	char *prefix;

	pthread_mutex_lock(&c->mu);
	struct ctl_job *j = job_of(c, req, &rep);
	pthread_mutex_unlock(&c->mu);
	if (!j)
		return rep;
	prefix = gv_strdupf(CTL_KEY_EVENTS "%020" PRIu64 "/",
			    (uint64_t)json_integer_value(json_object_get(req, "id")));
	if (gv_kv_range(c->kv, prefix, &v, &n, &rev, &e) < 0) {
		free(prefix);
		return refuse(-EIO, e.msg);
	}
	list = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *ev = json_loads(v[i].value, 0, NULL);
		if (ev)
			json_array_append_new(list, ev);
	}
	gv_kv_entries_free(v, n);
	free(prefix);
	return json_pack("{s:b, s:o}", "ok", 1, "events", list);
}

/* A change a user asked for (cancel, drain, label): @r its write's
 * result; the batch it was made in committed (synced by ctl_request). */
static json_t *change_reply(gv_ctl *c, int r, const char *what)
{
	gv_err e = { "" };

	if (ctl_batch_commit(c, &e) < 0 || r < 0)
		return gv_err_jsonf(-EIO, "cannot %s: the store failed%s%s", what, *e.msg ? ": " : "",
				    e.msg);
	return ok();
}

static json_t *op_job_cancel(gv_ctl *c, json_t *req)
{
	json_t *rep = NULL;
	char msg[128];

	pthread_mutex_lock(&c->mu);
	if (!ctl_leading(c)) {
		pthread_mutex_unlock(&c->mu);
		return ctl_standby_reply(c);
	}
	struct ctl_job *j = job_of(c, req, &rep);
	if (j) {
		gv_job_state s = gv_job_record_state(j->rec);
		if (gv_job_state_final(s)) {
			snprintf(msg, sizeof(msg), "job %" PRIu64 " has ended already (%s)", j->id,
				 gv_job_state_name(s));
			rep = refuse(-EALREADY, msg);
		} else {
			/* its host (if any) drops the VM when it sees the job
			 * cancelled in its bindings */
			gv_kv_batch_begin(c->kv);
			ctl_job_unschedule(c, j);
			int r = ctl_job_set_state(c, j, GV_JOB_S_CANCELLED, "cancelled by the user");
			rep = change_reply(c, r, "cancel the job");
			ctl_kick(c);
		}
	}
	pthread_mutex_unlock(&c->mu);
	return rep;
}

/* {"op": "job-log", "id", "offset", "wait_ms"}: the job's output frames
 * from @offset: from its host while it runs, from the controller's copy
 * once it ended. Reply: {"data": BASE64, "next": N, "state", "final"}. */
static json_t *op_job_log(gv_ctl *c, json_t *req)
{
	json_int_t off = json_integer_value(json_object_get(req, "offset"));
	json_int_t wait = json_integer_value(json_object_get(req, "wait_ms"));
	json_t *rep = NULL, *fwd, *arep = NULL;
	char host[256], addr[300] = "", vm[40], *path = NULL, *b64;
	gv_job_state s;
	bool stored;
	int port;
	gv_err e;

	pthread_mutex_lock(&c->mu);
	struct ctl_job *j = job_of(c, req, &rep);
	if (j) {
		struct ctl_host *h = ctl_host_find(c, json_string_value(json_object_get(j->rec, "host")));
		s = gv_job_record_state(j->rec);
		stored = json_is_true(json_object_get(j->rec, "log_kept"));
		if (h)
			snprintf(addr, sizeof(addr), "%s", h->addr);
		gv_job_vm_name(j->id, vm, sizeof(vm));
		path = gv_strdupf("%s/jobs/%" PRIu64 "/job.out", c->datadir, j->id);
	}
	pthread_mutex_unlock(&c->mu);
	if (!j)
		return rep;
	if (stored || gv_job_state_final(s) || !*addr) {
		/* the controller's copy (or nothing yet: a queued job); one
		 * collected while another controller led may be there only */
		char sid[24];
		snprintf(sid, sizeof(sid), "%" PRIu64, (uint64_t)json_integer_value(
							     json_object_get(req, "id")));
		if (stored && ctl_files_ensure(c, "log", sid, NULL, &e) < 0) {
			free(path);
			return refuse(-EIO, e.msg);
		}
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		uint8_t *buf = malloc(LOG_CHUNK);
		ssize_t n = fd >= 0 && off >= 0 ? pread(fd, buf, LOG_CHUNK, (off_t)off) : 0;
		if (fd >= 0)
			close(fd);
		if (n < 0)
			n = 0;
		b64 = gv_b64_encode(buf, (size_t)n);
		rep = json_pack("{s:b, s:s, s:I, s:s, s:b}", "ok", 1, "data", b64, "next",
				(json_int_t)(off + n), "state", gv_job_state_name(s), "final",
				gv_job_state_final(s) && (stored || s == GV_JOB_S_CANCELLED));
		free(b64);
		free(buf);
		free(path);
		return rep;
	}
	free(path);
	if (wait > 5000)
		wait = 5000;
	fwd = json_pack("{s:s, s:s, s:I, s:I}", "op", "grid-log", "name", vm, "offset", off,
			"wait_ms", wait);
	if (gv_xfer_peer_parse(addr, host, sizeof(host), &port) < 0 ||
	    gv_xfer_control(host, port, c->key, fwd, (int)wait + 15000, &arep, &e) < 0 ||
	    !json_is_true(json_object_get(arep, "ok"))) {
		/* the host is unreachable, or the VM moved: nothing new now */
		rep = json_pack("{s:b, s:s, s:I, s:s, s:b}", "ok", 1, "data", "", "next", off,
				"state", gv_job_state_name(s), "final", 0);
	} else {
		rep = json_pack("{s:b, s:O, s:O, s:s, s:b}", "ok", 1, "data",
				json_object_get(arep, "data"), "next",
				json_object_get(arep, "next"), "state", gv_job_state_name(s),
				"final", 0);
	}
	json_decref(fwd);
	json_decref(arep);
	return rep;
}

/* {"op": "job-output", "id"}: where to fetch the job's output archive. */
static json_t *op_job_output(gv_ctl *c, json_t *req)
{
	json_t *rep = NULL;
	char msg[160];

	pthread_mutex_lock(&c->mu);
	struct ctl_job *j = job_of(c, req, &rep);
	if (j) {
		gv_job_state s = gv_job_record_state(j->rec);
		if (!gv_job_state_final(s) || j->collecting) {
			snprintf(msg, sizeof(msg), "job %" PRIu64 " has not ended yet (%s)", j->id,
				 gv_job_state_name(s));
			rep = refuse(-EAGAIN, msg);
		} else if (!json_is_true(json_object_get(j->rec, "output_kept"))) {
			snprintf(msg, sizeof(msg), "job %" PRIu64 " has no outputs%s", j->id,
				 json_array_size(json_object_get(j->rec, "outputs"))
					 ? " (they could not be collected; see 'gridvm job events')"
					 : " (submit with --output PATH)");
			rep = refuse(-ENOENT, msg);
		} else {
			char name[64];
			snprintf(name, sizeof(name), "job:%" PRIu64 ":output", j->id);
			rep = json_pack("{s:b, s:s, s:O?}", "ok", 1, "name", name, "missing",
					json_object_get(j->rec, "outputs_missing"));
		}
	}
	pthread_mutex_unlock(&c->mu);
	if (json_is_true(json_object_get(rep, "ok"))) {
		/* here before the user asks for it (it may be on another
		 * controller only: collected while that one led) */
		char sid[24];
		gv_err e;
		snprintf(sid, sizeof(sid), "%" PRIu64, (uint64_t)json_integer_value(
							     json_object_get(req, "id")));
		if (ctl_files_ensure(c, "output", sid, NULL, &e) < 0) {
			json_decref(rep);
			rep = refuse(-EIO, e.msg);
		}
	}
	return rep;
}

static json_t *op_hosts(gv_ctl *c, json_t *req)
{
	json_t *list;

	pthread_mutex_lock(&c->mu);
	list = ctl_hosts_json(c);
	pthread_mutex_unlock(&c->mu);
	return json_pack("{s:b, s:o}", "ok", 1, "hosts", list);
}

static struct ctl_host *host_of(gv_ctl *c, json_t *req, json_t **rep)
{
	const char *name = json_string_value(json_object_get(req, "host"));
	struct ctl_host *h = ctl_host_find(c, name);

	if (!h) {
		char msg[120];
		snprintf(msg, sizeof(msg), "no such host: %s (see 'gridvm hosts')", name ? name : "");
		*rep = refuse(-ENOENT, msg);
	}
	return h;
}

static json_t *op_host_drain(gv_ctl *c, json_t *req, bool drain)
{
	json_t *rep = NULL;
	gv_err e;
	gv_user u;

	req_user(req, &u);
	if (!u.admin)
		return need_admin(&u, drain ? "draining a host" : "undraining a host");
	pthread_mutex_lock(&c->mu);
	if (!ctl_leading(c)) {
		pthread_mutex_unlock(&c->mu);
		return ctl_standby_reply(c);
	}
	struct ctl_host *h = host_of(c, req, &rep);
	if (h) {
		h->drained = drain;
		gv_kv_batch_begin(c->kv);
		rep = change_reply(c, ctl_host_save(c, h, &e), drain ? "drain the host"
								      : "undrain the host");
		ctl_host_to_sched(c, h);
		fprintf(stderr, "gridvmctld: host %s %s\n", h->name, drain ? "drained" : "undrained");
		c->last_replan = 0; /* re-plan now */
		ctl_kick(c);
	}
	pthread_mutex_unlock(&c->mu);
	return rep;
}

/* {"op": "host-label", "host", "key", "value"}: value null removes it. */
static json_t *op_host_label(gv_ctl *c, json_t *req)
{
	const char *key = json_string_value(json_object_get(req, "key"));
	json_t *val = json_object_get(req, "value"), *rep = NULL;
	gv_err e;
	gv_user u;

	req_user(req, &u);
	if (!u.admin)
		return need_admin(&u, "labelling a host");
	if (!key || !gv_name_valid(key))
		return refuse(-EINVAL, "a label's key is 1-63 characters of [A-Za-z0-9_.-]");
	if (val && !json_is_null(val) && !json_is_string(val) && !json_is_boolean(val))
		return refuse(-EINVAL, "a label's value is a string or true");
	pthread_mutex_lock(&c->mu);
	if (!ctl_leading(c)) {
		pthread_mutex_unlock(&c->mu);
		return ctl_standby_reply(c);
	}
	struct ctl_host *h = host_of(c, req, &rep);
	if (h) {
		if (!val || json_is_null(val))
			json_object_del(h->labels, key);
		else
			json_object_set(h->labels, key, val);
		gv_kv_batch_begin(c->kv);
		rep = change_reply(c, ctl_host_save(c, h, &e), "label the host");
		ctl_host_to_sched(c, h);
		ctl_kick(c);
	}
	pthread_mutex_unlock(&c->mu);
	return rep;
}

static json_t *op_host_report(gv_ctl *c, json_t *req)
{
	json_t *peer = json_object_get(req, "_peer");
	const char *name = json_string_value(json_object_get(req, "name"));
	const char *cn = json_string_value(json_object_get(peer, "name"));
	const char *role = json_string_value(json_object_get(peer, "role"));
	gv_user u;

	req_user(req, &u);
	if (!u.admin) /* a report speaks for a host */
		return need_admin(&u, "reporting as a host");
	if (json_is_true(json_object_get(peer, "local")))
		peer = NULL; /* root on this machine: as with the grid key */
	/* over TLS an agent reports for the host its certificate names only */
	if (peer && (!role || strcmp(role, "agent") || !name || !cn || strcmp(name, cn)))
		return gv_err_jsonf(-EACCES, "a report for host %s from the certificate of %s "
				    "(%s) is refused: an agent reports as the host its "
				    "certificate names", name ? name : "?", cn ? cn : "?",
				    role ? role : "no role");
	return ctl_host_report(c, req);
}
static json_t *op_drain(gv_ctl *c, json_t *req)
{
	return op_host_drain(c, req, true);
}
static json_t *op_undrain(gv_ctl *c, json_t *req)
{
	return op_host_drain(c, req, false);
}
/* {"op": "grid-status"}: how the grid decides, what it holds, and the
 * move cost model as calibrated so far. */
static json_t *op_grid_status(gv_ctl *c, json_t *req)
{
	json_t *states = json_object();
	size_t up = 0;

	(void)req;
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < c->nhosts; i++)
		up += c->hosts[i].up;
	for (size_t i = 0; i < c->njobs; i++) {
		const char *s = gv_job_state_name(gv_job_record_state(c->jobs[i]->rec));
		json_object_set_new(states, s, json_integer(json_integer_value(
							  json_object_get(states, s)) + 1));
	}
	json_t *rep = json_pack("{s:b, s:s, s:s, s:{s:I, s:I}, s:o, s:o}", "ok", 1, "policy",
				gv_sched_policy_name(c->o.params.policy), "mode",
				gv_sched_mode_name(c->o.params.mode), "hosts", "up", (json_int_t)up,
				"total", (json_int_t)c->nhosts, "jobs", states, "moves",
				ctl_cost_json(c));
	pthread_mutex_unlock(&c->mu);
	return rep;
}

static json_t *op_ping(gv_ctl *c, json_t *req)
{
	return json_pack("{s:b, s:s}", "ok", 1, "role", "controller");
}

static const struct {
	const char *op;
	json_t *(*fn)(gv_ctl *c, json_t *req);
} ctl_ops[] = {
	{ "ping", op_ping },
	{ "input-put", op_input_put },
	{ "submit", op_submit },
	{ "jobs", op_jobs },
	{ "job-show", op_job_show },
	{ "job-events", op_job_events },
	{ "job-cancel", op_job_cancel },
	{ "job-log", op_job_log },
	{ "job-output", op_job_output },
	{ "hosts", op_hosts },
	{ "host-drain", op_drain },
	{ "host-undrain", op_undrain },
	{ "host-label", op_host_label },
	{ "host-report", op_host_report },
	{ "grid-status", op_grid_status },
};

/* A reply goes out only once what it says is on disk: the request's own
 * changes, and those of other requests and cycles it may have read, all
 * committed before it (one sync serves the requests that end at once:
 * group commit). A reply built from memory that a failed write made
 * different from the store never goes out: a reader is asked to ask
 * again (the controller starts again from the store); a submission
 * (whose handler acts only while the memory is sound) keeps its answer. */
static json_t *durable_reply(gv_ctl *c, const char *op, json_t *rep)
{
	gv_err e = { "" };
	bool failed;

	if (gv_kv_sync(c->kv, &e) < 0) {
		pthread_mutex_lock(&c->mu);
		ctl_store_failed(c, -EIO, e.msg);
		pthread_mutex_unlock(&c->mu);
		json_decref(rep);
		return gv_err_jsonf(-EIO, "the controller could not make this durable (%s): it may "
				    "or may not have been stored; the controller starts again from "
				    "its store", e.msg);
	}
	pthread_mutex_lock(&c->mu);
	failed = c->store_failed;
	pthread_mutex_unlock(&c->mu);
	if (failed && json_is_true(json_object_get(rep, "ok")) && strcmp(op, "submit")) {
		json_decref(rep);
		return ctl_standby_reply(c);
	}
	return rep;
}

json_t *ctl_request(void *ud, json_t *req)
{
	const char *op = json_string_value(json_object_get(req, "op"));
	json_t *standby = ctl_standby_reply(ud);
	char msg[128];

	/* a copy of a job's file, asked by the leader: also while standing by */
	if (op && !strcmp(op, "ctl-file-get")) {
		gv_user u;
		json_decref(standby);
		req_user(req, &u);
		return u.admin ? ctl_files_op(ud, req) /* a controller: a host */
			       : need_admin(&u, "copying a controller's file");
	}
	if (standby)
		return standby; /* another controller leads (ctl_elect.c) */
	for (size_t i = 0; op && i < sizeof(ctl_ops) / sizeof(ctl_ops[0]); i++)
		if (!strcmp(op, ctl_ops[i].op))
			return durable_reply(ud, op, ctl_fenced_reply(ud, ctl_ops[i].fn(ud, req)));
	snprintf(msg, sizeof(msg), "unknown request '%s' (is this a grid controller?)",
		 op ? op : "");
	return refuse(-EINVAL, msg);
}

int ctl_authorize(void *ud, const gv_peer_id *peer, const char *name)
{
	gv_ctl *c = ud;
	unsigned long long id;
	struct ctl_job *j;
	gv_user u;
	bool ok;

	if (!peer_user(peer, &u) || u.admin)
		return 0; /* a host, an administrator */
	if (sscanf(name, "job:%llu:", &id) != 1)
		return -ENOENT;
	pthread_mutex_lock(&c->mu);
	j = ctl_job_find(c, (uint64_t)id);
	ok = j && gv_user_is(&u, json_object_get(j->rec, "owner"));
	pthread_mutex_unlock(&c->mu);
	return ok ? 0 : -ENOENT;
}
