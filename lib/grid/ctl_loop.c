/* SPDX-License-Identifier: MIT */
/*
 * ctl_loop.c - the controller's cycle: notice hosts that stopped
 * reporting, place queued jobs (online, or in batches), re-plan running
 * ones (moves), write every decision down as the job's event; and collect
 * a finished job's log and outputs from its host.
 */
#include "ctl_internal.h"

#include <gridvm/base/b64.h>
#include <gridvm/base/util.h>
#include <gridvm/vmm/jobio.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A host whose reports stopped for this many intervals is down. */
#define DOWN_AFTER_REPORTS 3
/* Output collection: attempts before a job ends without its outputs. */
#define COLLECT_TRIES 5

/* A job of a lost host goes back to the queue with a new binding to come
 * (the scheduler places it like any job): from its newest checkpoint a
 * replica holds, or from the beginning. Its host has paused it by now
 * (docs/host-loss.md); the new epoch makes that copy stale. */
static void recover_job(gv_ctl *c, struct ctl_host *h, struct ctl_job *j, double last_wall,
			double silent_s)
{
	json_t *rp = json_object_get(j->rec, "replicated"), *on = json_array(), *v;
	gv_job_state s = gv_job_record_state(j->rec);
	const char *id = json_string_value(json_object_get(rp, "id"));
	double started = json_number_value(json_object_get(j->rec, "started"));
	double since, lost;
	size_t i;

	json_array_foreach(json_object_get(rp, "on"), i, v) {
		struct ctl_host *r = ctl_host_find(c, json_string_value(v) ?: "");
		if (r && r != h && r->up && !r->lost)
			json_array_append(on, v);
	}
	if (!json_array_size(on))
		id = NULL;
	/* the work lost: what it ran since the state it goes on from, up to
	 * when its host was last heard from, and the lease after that (it
	 * may have run on until its agent paused it): at most this much */
	since = id ? json_number_value(json_object_get(rp, "created")) : started;
	lost = s == GV_JOB_S_RUNNING || s == GV_JOB_S_MIGRATING
		       ? last_wall + c->o.host_lease_s - since : 0;
	if (!(lost > 0) || !(since > 0))
		lost = 0;
	json_object_set_new(j->rec, "recoveries", json_integer(json_integer_value(
							  json_object_get(j->rec, "recoveries")) + 1));
	json_object_set_new(j->rec, "work_lost_s",
			    json_real(json_number_value(json_object_get(j->rec, "work_lost_s")) +
				      lost));
	if (id) {
		json_object_set_new(j->rec, "recover",
				    json_pack("{s:s, s:O, s:O, s:s, s:f}", "checkpoint", id,
					      "created", json_object_get(rp, "created"), "on", on,
					      "lost_host", h->name, "work_lost_s", lost));
		char ons[256] = "";
		json_array_foreach(on, i, v)
			snprintf(ons + strlen(ons), sizeof(ons) - strlen(ons), "%s%s", i ? ", " : "",
				 json_string_value(v));
		ctl_event(c, j, "recover", "its host %s is lost (no report for %.0f s): it goes on "
			  "from its checkpoint %s, held by %s; work lost: at most %.1f s (since that "
			  "checkpoint)", h->name, silent_s, id, ons, lost);
	} else {
		json_object_del(j->rec, "recover");
		ctl_event(c, j, "recover", "its host %s is lost (no report for %.0f s): %s; it "
			  "restarts from the beginning; work lost: at most %.1f s", h->name, silent_s,
			  rp ? "no host that holds its checkpoint is up"
			     : "it had no checkpoint on another host", lost);
	}
	json_decref(on);
	json_object_del(j->rec, "host");
	json_object_del(j->rec, "migrate_to");
	json_object_del(j->rec, "started");
	if (j->sidx != GV_SCHED_NONE)
		gv_sched_job_unbind(c->st, j->sidx);
	ctl_recover_sched(c, j);
	j->last_why = -1;
	c->count.recoveries++;
	ctl_job_set_state(c, j, GV_JOB_S_QUEUED, id ? "recovering from its checkpoint"
						     : "restarting: its host was lost");
}

/* Is the VM of @j in the last report of @h? */
static bool reports_vm(struct ctl_host *h, struct ctl_job *j)
{
	json_t *vm;
	size_t i;

	json_array_foreach(json_object_get(h->report, "vms"), i, vm)
		if (gv_job_id_of_vm(json_string_value(json_object_get(vm, "name"))) == j->id)
			return true;
	return false;
}

/* Is @j bound to @h, not ended (nor queued)? */
static bool bound_here(struct ctl_host *h, struct ctl_job *j)
{
	const char *host = json_string_value(json_object_get(j->rec, "host"));
	gv_job_state s = gv_job_record_state(j->rec);

	return host && !strcmp(host, h->name) && !gv_job_state_final(s) && s != GV_JOB_S_QUEUED;
}

/* Jobs bound to @h, not ended (nor queued): on its list (ctl_host_list_job). */
static unsigned bound_jobs(struct ctl_host *h)
{
	unsigned n = 0;

	for (size_t k = 0; k < h->nbound; k++)
		n += bound_here(h, h->bound[k]);
	return n;
}

/* A host not heard from for the lease is down (suspect: nothing new goes
 * there; so after three report intervals already); after the lease and
 * the grace it is lost, and its jobs are recovered elsewhere. */
static void check_hosts(gv_ctl *c)
{
	uint64_t down = (uint64_t)(DOWN_AFTER_REPORTS * c->o.report_s + 2) * 1000;
	uint64_t lease = (uint64_t)c->o.host_lease_s * 1000;
	uint64_t lost = lease + (uint64_t)(c->o.host_grace_s ? c->o.host_grace_s
							    : c->o.host_lease_s) * 1000;
	uint64_t now = gv_now_ms();

	/* deciding from now on (started, or took the lead after standing
	 * by: the loop runs every second while it decides) */
	if (!c->checked_ms || now - c->checked_ms > 3000)
		c->started_ms = now;
	c->checked_ms = now;
	if (lease && lease < down)
		down = lease;
	for (size_t i = 0; i < c->nhosts; i++) {
		struct ctl_host *h = &c->hosts[i];
		/* a host not heard from since this controller began to decide:
		 * its lease counts from then (the one before may have renewed it
		 * just before it stopped) */
		uint64_t seen = h->last_seen > c->started_ms ? h->last_seen : c->started_ms;
		if (h->up && now - seen >= down) {
			h->up = false;
			ctl_host_to_sched(c, h);
			fprintf(stderr, "gridvmctld: host %s is down (no report for %llu s)\n",
				h->name, (unsigned long long)((now - seen) / 1000));
			for (size_t k = 0; k < h->nbound; k++)
				if (bound_here(h, h->bound[k]))
					ctl_event(c, h->bound[k], "host", "its host %s stopped "
						  "reporting", h->name);
		}
		if (h->up || h->lost || !lease || now - seen < lost)
			continue;
		unsigned n = 0;
		double silent = (double)(now - seen) / 1000.0;
		double last_wall = ctl_now() - silent;
		/* lost: with its jobs or without (a host not heard from since
		 * this controller started, and with none, stays down) */
		if (h->last_seen || bound_jobs(h)) {
			h->lost = true;
			fprintf(stderr, "gridvmctld: host %s is lost (no report for %.0f s)%s\n",
				h->name, silent, bound_jobs(h) ? ": its jobs are recovered "
							       "elsewhere" : "");
		}
		for (size_t k = 0; k < h->nbound && h->lost; k++) {
			struct ctl_job *j = h->bound[k];
			gv_job_state s = gv_job_record_state(j->rec);
			if (!bound_here(h, j) || j->collecting)
				continue;
			/* a move that arrived: its destination binds it */
			const char *to = json_string_value(json_object_get(j->rec, "migrate_to"));
			struct ctl_host *dst = to ? ctl_host_find(c, to) : NULL;
			if (s == GV_JOB_S_MIGRATING && dst && dst->up && reports_vm(dst, j))
				continue;
			recover_job(c, h, j, last_wall, silent);
			n++;
		}
		if (n)
			ctl_kick(c);
	}
}

/* Bind a placed job in the store: its host, a new epoch. */
static void bind_job(gv_ctl *c, struct ctl_job *j, const gv_sched_decision *d, const char *why)
{
	const gv_sched_host *h = gv_sched_host_get(c->st, d->host);
	struct ctl_host *ch = ctl_host_of_sidx(c, d->host);

	json_object_set_new(j->rec, "host", json_string(h->name));
	json_object_set_new(j->rec, "bound", json_real(ctl_now()));
	if (ch)
		ctl_host_list_job(c, ch, j);
	j->last_why = -1;
	c->count.placements++;
	ctl_event(c, j, "place", "%s", why);
	if (ctl_job_set_state(c, j, GV_JOB_S_SCHEDULED, NULL) == 0) {
		/* the epoch is the revision of the binding */
		json_object_set_new(j->rec, "epoch", json_integer(j->mod_rev));
		(void)ctl_job_save(c, j, NULL);
	}
}

/* A job that waits or stays: its reason in the record (the text is kept
 * current in memory); an event and a write to the store only when the
 * reason itself changes, not its numbers. */
static void note_reason(gv_ctl *c, struct ctl_job *j, const gv_sched_decision *d,
			const char *field, const char *kind)
{
	char why[512];
	bool never = gv_sched_why_is_never(d->reason.why);

	gv_sched_reason_text(c->st, d, why, sizeof(why));
	json_object_set_new(j->rec, field, json_string(why));
	if (j->last_why == (int)d->reason.why)
		return;
	j->last_why = (int)d->reason.why;
	json_object_set_new(j->rec, "never", json_boolean(never));
	ctl_event(c, j, never ? "never" : kind, "%s", why);
	(void)ctl_job_save(c, j, NULL);
}

static struct ctl_job *job_at(gv_ctl *c, const gv_sched_decision *d)
{
	struct ctl_job *j = ctl_job_find(c, d->job_id);

	return j && j->sidx == d->job ? j : NULL;
}

/* Batch mode plans when enough jobs wait, or the oldest waited long. */
static bool batch_due(gv_ctl *c, double now)
{
	unsigned queued = 0;
	double oldest = now;

	for (size_t i = 0; i < c->njobs; i++) {
		const json_t *rec = c->jobs[i]->rec;
		if (gv_job_record_state(rec) != GV_JOB_S_QUEUED)
			continue;
		queued++;
		if (json_number_value(json_object_get(rec, "submitted")) < oldest)
			oldest = json_number_value(json_object_get(rec, "submitted"));
	}
	return queued && (queued >= c->o.params.batch_max || now - oldest >= c->o.batch_wait_s);
}

static void schedule(gv_ctl *c, double now)
{
	gv_sched_plan plan;
	gv_sched_reason stale;
	char why[512];

	if (c->o.params.mode == GV_SCHED_BATCH && !batch_due(c, now))
		return;
	gv_sched_plan_init(&plan);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int r = gv_sched_schedule(c->st, now, &c->o.params, &plan);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	c->count.cycles++;
	gv_metrics_hist_observe(&c->count.decide_s, (double)(t1.tv_sec - t0.tv_sec) +
							    (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	if (r < 0) {
		fprintf(stderr, "gridvmctld: out of memory while scheduling\n");
		gv_sched_plan_free(&plan);
		return;
	}
	for (size_t i = 0; i < plan.n_acts; i++) {
		const gv_sched_decision *d = &plan.acts[i];
		struct ctl_job *j = job_at(c, d);
		if (!j || d->act != GV_ACT_PLACE)
			continue;
		gv_sched_reason_text(c->st, d, why, sizeof(why));
		if (gv_sched_apply(c->st, d, now, &stale) < 0)
			continue; /* raced: the next cycle decides again */
		bind_job(c, j, d, why);
	}
	for (size_t i = 0; i < plan.n_held; i++) {
		const gv_sched_decision *d = &plan.held[i];
		struct ctl_job *j = job_at(c, d);
		if (!j || d->act != GV_ACT_WAIT)
			continue;
		note_reason(c, j, d, "reason", "wait");
	}
	gv_sched_plan_free(&plan);
}

static void replan(gv_ctl *c, double now)
{
	gv_sched_plan plan;
	gv_sched_reason stale;
	char why[512];

	gv_sched_plan_init(&plan);
	c->count.replans++;
	if (gv_sched_replan(c->st, now, &c->o.params, &plan) < 0) {
		gv_sched_plan_free(&plan);
		return;
	}
	for (size_t i = 0; i < plan.n_acts; i++) {
		const gv_sched_decision *d = &plan.acts[i];
		struct ctl_job *j = job_at(c, d);
		if (!j || d->act != GV_ACT_MOVE ||
		    gv_job_record_state(j->rec) != GV_JOB_S_RUNNING)
			continue;
		gv_sched_reason_text(c->st, d, why, sizeof(why));
		const gv_sched_job *sj = gv_sched_job_get(c->st, d->job);
		double before = sj && sj->moved ? sj->last_move : -1;
		if (gv_sched_apply(c->st, d, now, &stale) < 0)
			continue;
		j->moved_before = before;
		const gv_sched_host *to = gv_sched_host_get(c->st, d->host);
		json_object_set_new(j->rec, "migrate_to", json_string(to->name));
		/* the estimate, to set against what the move measures */
		json_object_set_new(j->rec, "move_est",
				    json_pack("{s:f, s:f, s:f}", "total_s",
					      d->reason.v[2] + d->reason.v[3], "downtime_s",
					      d->reason.v[3], "bytes", d->reason.v[4]));
		j->last_why = -1;
		c->count.moves_started++;
		ctl_event(c, j, "move", "%s%s", why,
			  json_is_true(json_object_get(j->rec, "live_failed"))
				  ? "; cold, since its live move failed" : "");
		ctl_job_set_state(c, j, GV_JOB_S_MIGRATING, NULL);
	}
	for (size_t i = 0; i < plan.n_held; i++) {
		const gv_sched_decision *d = &plan.held[i];
		struct ctl_job *j = job_at(c, d);
		if (!j || d->act != GV_ACT_STAY)
			continue;
		note_reason(c, j, d, "stay", "stay");
	}
	gv_sched_plan_free(&plan);
}

void *ctl_loop(void *arg)
{
	gv_ctl *c = arg;

	pthread_mutex_lock(&c->mu);
	while (!c->stopping) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 1;
		pthread_cond_timedwait(&c->wake, &c->mu, &until);
		if (c->stopping)
			break;
		if (!ctl_leading(c))
			continue; /* standing by (ctl_elect.c) */
		double now = ctl_now();
		gv_err e;
		gv_kv_batch_begin(c->kv); /* one commit for the cycle's decisions */
		check_hosts(c);
		schedule(c, now);
		if (!c->last_replan || gv_now_ms() - c->last_replan >= c->o.replan_s * 1000ull) {
			c->last_replan = gv_now_ms();
			replan(c, now);
		}
		if (ctl_batch_commit(c, &e) < 0)
			continue; /* deposed: the store no longer holds what memory does */
		/* on disk without holding up the requests (a reply that tells of
		 * a decision syncs first anyway: ctl_request) */
		pthread_mutex_unlock(&c->mu);
		int r = gv_kv_sync(c->kv, &e);
		pthread_mutex_lock(&c->mu);
		if (r < 0)
			ctl_store_failed(c, r, e.msg);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/* ---- collecting a finished job's log and outputs ---- */

struct collect {
	gv_ctl *c;
	uint64_t id;
	char host[256];
	int port;
	char vm[40];
	bool outputs;
	int exit_code;
	char error[512];
	json_t *missing;
};

/* The job channel, whole, into DIR/job.out. */
static int collect_log(struct collect *k, const char *dir, gv_err *e)
{
	char *tmp = gv_strdupf("%s/job.out.partial", dir), *path = gv_strdupf("%s/job.out", dir);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), r = 0;
	json_int_t off = 0;

	if (fd < 0)
		r = gv_err_set(e, -errno, "cannot write %s", tmp);
	while (r == 0) {
		json_t *req = json_pack("{s:s, s:s, s:I, s:i}", "op", "grid-log", "name", k->vm,
					"offset", off, "wait_ms", 0), *rep = NULL;
		const char *b64;
		uint8_t *buf = NULL;
		size_t n = 0;
		r = gv_xfer_control(k->host, k->port, k->c->key, req, 30000, &rep, e);
		json_decref(req);
		if (r == 0 && !json_is_true(json_object_get(rep, "ok")))
			r = gv_err_set(e, -EIO, "%s", json_string_value(json_object_get(rep, "error"))
							      ?: "the host refused");
		b64 = json_string_value(json_object_get(rep, "data"));
		if (r == 0 && (!b64 || gv_b64_decode(b64, strlen(b64), &buf, &n) < 0))
			r = gv_err_set(e, -EPROTO, "the host sent a damaged log");
		if (r == 0 && n && pwrite(fd, buf, n, (off_t)off) != (ssize_t)n)
			r = gv_err_set(e, -EIO, "cannot write %s", tmp);
		off += (json_int_t)n;
		free(buf);
		json_decref(rep);
		if (n == 0)
			break;
	}
	if (fd >= 0 && (fsync(fd) < 0 || close(fd) < 0) && r == 0)
		r = gv_err_set(e, -EIO, "cannot write %s", tmp);
	if (r == 0 && rename(tmp, path) < 0)
		r = gv_err_set(e, -errno, "cannot write %s", path);
	if (r < 0)
		unlink(tmp);
	free(tmp);
	free(path);
	return r;
}

static int collect_outputs(struct collect *k, const char *dir, gv_err *e)
{
	char *name = gv_strdupf("vm:%s:output", k->vm), *dest = gv_strdupf("%s/output.tar", dir);
	gv_fetch_opts fo = { .host = k->host, .port = k->port, .image = name, .dest = dest,
			     .codec = GV_CODEC_ZSTD, .key = k->c->key };
	json_t *sum = NULL;
	int r = gv_fetch(&fo, &sum, e);

	json_decref(sum);
	free(name);
	free(dest);
	return r;
}

/* A job that succeeded and drops its checkpoints on success: every host
 * that held a replica of them drops them too (told in its next reply). */
static void drop_replicas(gv_ctl *c, struct ctl_job *j, int exit_code)
{
	json_t *v;
	size_t i;
	char vm[40];

	if (exit_code != 0 || !json_is_true(json_object_get(json_object_get(j->rec, "checkpoint"),
							       "drop_on_success")))
		return;
	gv_job_vm_name(j->id, vm, sizeof(vm));
	json_array_foreach(json_object_get(j->rec, "replica_hosts"), i, v) {
		struct ctl_host *h = ctl_host_find(c, json_string_value(v) ?: "");
		if (!h)
			continue;
		if (!h->drops)
			h->drops = json_array();
		json_array_append_new(h->drops, json_string(vm));
	}
}

static void *collect_thread(void *arg)
{
	struct collect *k = arg;
	gv_ctl *c = k->c;
	char *dir = ctl_job_dir(c, k->id);
	gv_err e = { "" };
	int r = gv_mkdir_p(dir, 0700);
	bool log_ok = false, out_ok = false, sync = false;

	if (r == 0)
		log_ok = (r = collect_log(k, dir, &e)) == 0;
	if (r == 0 && k->outputs)
		out_ok = (r = collect_outputs(k, dir, &e)) == 0;
	/* on another controller too before the record says they are kept
	 * (its host then drops the VM): none is lost with this one */
	if (r == 0) {
		char sid[24];
		snprintf(sid, sizeof(sid), "%" PRIu64, k->id);
		if ((r = ctl_files_push(c, "log", sid, &e)) == 0 && out_ok)
			r = ctl_files_push(c, "output", sid, &e);
	}
	if (out_ok) { /* which outputs the job did not write */
		char *tar = gv_strdupf("%s/output.tar", dir);
		json_t *man = NULL, *o;
		size_t i;
		if (gv_jobio_output_manifest(tar, &man, NULL) == 0) {
			k->missing = json_array();
			json_array_foreach(json_object_get(man, "outputs"), i, o)
				if (strcmp(json_string_value(json_object_get(o, "status")) ?: "", "ok"))
					json_array_append(k->missing, json_object_get(o, "path"));
		}
		json_decref(man);
		free(tar);
	}
	pthread_mutex_lock(&c->mu);
	gv_kv_batch_begin(c->kv);
	/* (deposed meanwhile: its memory is not the store's; the controller
	 * that comes next collects again) */
	struct ctl_job *j = ctl_leading(c) ? ctl_job_find(c, k->id) : NULL;
	if (j) {
		int tries = (int)json_integer_value(json_object_get(j->rec, "collect_tries")) + 1;
		j->collecting = false;
		if (r < 0 && tries < COLLECT_TRIES) {
			json_object_set_new(j->rec, "collect_tries", json_integer(tries));
			ctl_event(c, j, "collect", "cannot collect its output from its host (%s); "
				  "trying again", e.msg);
			(void)ctl_job_save(c, j, NULL);
		} else {
			if (r < 0)
				ctl_event(c, j, "collect", "gave up collecting its output: %s", e.msg);
			json_object_set_new(j->rec, "log_kept", json_boolean(log_ok));
			json_object_set_new(j->rec, "output_kept", json_boolean(out_ok));
			if (k->missing)
				json_object_set(j->rec, "outputs_missing", k->missing);
			if (k->exit_code >= 0)
				json_object_set_new(j->rec, "exit_code", json_integer(k->exit_code));
			if (*k->error)
				json_object_set_new(j->rec, "error", json_string(k->error));
			ctl_job_unschedule(c, j);
			drop_replicas(c, j, k->exit_code);
			ctl_job_set_state(c, j, k->exit_code >= 0 ? GV_JOB_S_COMPLETED : GV_JOB_S_FAILED,
					  k->exit_code >= 0 ? NULL : (*k->error ? k->error : NULL));
			ctl_kick(c);
		}
	}
	c->collectors--;
	if (ctl_batch_commit(c, &e) < 0)
		fprintf(stderr, "gridvmctld: cannot store job %" PRIu64 "'s end: %s\n", k->id, e.msg);
	else
		sync = true;
	pthread_mutex_unlock(&c->mu);
	if (sync && gv_kv_sync(c->kv, &e) < 0) {
		pthread_mutex_lock(&c->mu);
		ctl_store_failed(c, -EIO, e.msg);
		pthread_mutex_unlock(&c->mu);
	}
	json_decref(k->missing);
	free(dir);
	free(k);
	return NULL;
}

void ctl_collect(gv_ctl *c, struct ctl_job *j, int exit_code, const char *error)
{
	struct ctl_host *h = ctl_host_find(c, json_string_value(json_object_get(j->rec, "host")));
	struct collect *k = calloc(1, sizeof(*k));
	pthread_attr_t attr;
	pthread_t th;

	if (!k)
		abort();
	k->c = c;
	k->id = j->id;
	k->exit_code = exit_code;
	snprintf(k->error, sizeof(k->error), "%s", error ? error : "");
	gv_job_vm_name(j->id, k->vm, sizeof(k->vm));
	k->outputs = json_array_size(json_object_get(j->rec, "outputs")) > 0;
	if (!h || gv_xfer_peer_parse(h->addr, k->host, sizeof(k->host), &k->port) < 0) {
		free(k);
		return;
	}
	j->collecting = true;
	c->collectors++;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&th, &attr, collect_thread, k) != 0) {
		j->collecting = false;
		c->collectors--;
		free(k);
	}
	pthread_attr_destroy(&attr);
}
