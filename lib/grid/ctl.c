/* SPDX-License-Identifier: MIT */
/*
 * ctl.c - the controller's state: start and stop, loading the grid from
 * the store, writing jobs, hosts and events back (ctl.h).
 */
#include "ctl_internal.h"

#include <gridvm/base/util.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double ctl_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void ctl_kick(gv_ctl *c)
{
	pthread_cond_signal(&c->wake);
}

char *ctl_job_dir(gv_ctl *c, uint64_t id)
{
	return gv_strdupf("%s/jobs/%" PRIu64, c->datadir, id);
}

static char *job_key(uint64_t id)
{
	return gv_strdupf(CTL_KEY_JOBS "%020" PRIu64, id);
}

struct ctl_job *ctl_job_find(gv_ctl *c, uint64_t id)
{
	size_t lo = 0, hi = c->njobs;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (c->jobs[mid]->id == id)
			return c->jobs[mid];
		if (c->jobs[mid]->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

struct ctl_host *ctl_host_of_sidx(gv_ctl *c, uint32_t sidx)
{
	if (sidx < c->nhosts && c->hosts[sidx].sidx == sidx)
		return &c->hosts[sidx]; /* hosts join both in the same order */
	for (size_t i = 0; i < c->nhosts; i++)
		if (c->hosts[i].sidx == sidx)
			return &c->hosts[i];
	return NULL;
}

struct ctl_host *ctl_host_find(gv_ctl *c, const char *name)
{
	for (size_t i = 0; name && i < c->nhosts; i++)
		if (!strcmp(c->hosts[i].name, name))
			return &c->hosts[i];
	return NULL;
}

void ctl_store_failed(gv_ctl *c, int r, const char *msg)
{
	if (c->deposed)
		return;
	if (r == -ESTALE && c->o.leader_ttl_s)
		fprintf(stderr, "gridvmctld: lost the leadership: a write was fenced (%s); it acts "
			"no more\n", msg);
	else
		fprintf(stderr, "gridvmctld: the store failed (%s): what this controller holds in "
			"memory may no longer be what the store holds, so it acts no more and starts "
			"again from the store\n", msg);
	c->store_failed = r != -ESTALE || !c->o.leader_ttl_s;
	c->leading = false;
	c->deposed = true;
	c->leader[0] = '\0';
}

int ctl_batch_commit(gv_ctl *c, gv_err *e)
{
	int r = gv_kv_batch_commit(c->kv, e);

	if (r < 0)
		ctl_store_failed(c, r, e->msg);
	return r;
}

int ctl_job_save(gv_ctl *c, struct ctl_job *j, gv_err *e)
{
	char *key = job_key(j->id), *text = json_dumps(j->rec, JSON_COMPACT);
	int64_t rev;
	gv_err local = { "" };
	int r;

	if (!e)
		e = &local;
	r = gv_kv_put(c->kv, key, text, 0, &rev, e);

	if (r == 0) {
		j->mod_rev = rev;
	} else {
		fprintf(stderr, "gridvmctld: cannot store job %" PRIu64 ": %s\n", j->id, e->msg);
		ctl_store_failed(c, r, e->msg);
	}
	free(key);
	free(text);
	return r;
}

int ctl_host_save(gv_ctl *c, struct ctl_host *h, gv_err *e)
{
	char *key = gv_strdupf(CTL_KEY_HOSTS "%s", h->name), *text;
	json_t *rec = json_pack("{s:s, s:s, s:O, s:b}", "name", h->name, "addr", h->addr,
				"labels", h->labels, "drained", h->drained);
	int64_t rev;
	int r;

	text = json_dumps(rec, JSON_COMPACT);
	r = gv_kv_put(c->kv, key, text, 0, &rev, e);
	if (r == 0)
		h->mod_rev = rev;
	else
		ctl_store_failed(c, r, e->msg);
	json_decref(rec);
	free(key);
	free(text);
	return r;
}

void ctl_event(gv_ctl *c, struct ctl_job *j, const char *kind, const char *fmt, ...)
{
	char text[600], *key, *val;
	json_t *ev;
	va_list ap;
	gv_err e;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	ev = json_pack("{s:f, s:s, s:s}", "time", ctl_now(), "kind", kind, "text", text);
	key = gv_strdupf(CTL_KEY_EVENTS "%020" PRIu64 "/%08u", j->id, j->events++);
	val = json_dumps(ev, JSON_COMPACT);
	int r = gv_kv_put(c->kv, key, val, 0, NULL, &e);
	if (r < 0) {
		fprintf(stderr, "gridvmctld: cannot store an event of job %" PRIu64 ": %s\n",
			j->id, e.msg);
		ctl_store_failed(c, r, e.msg);
	}
	fprintf(stderr, "gridvmctld: job %" PRIu64 ": %s: %s\n", j->id, kind, text);
	json_decref(ev);
	free(key);
	free(val);
}

int ctl_job_set_state(gv_ctl *c, struct ctl_job *j, gv_job_state s, const char *reason)
{
	gv_job_state old = gv_job_record_state(j->rec);
	gv_err e;

	json_object_set_new(j->rec, "state", json_string(gv_job_state_name(s)));
	if (reason)
		json_object_set_new(j->rec, "reason", json_string(reason));
	else
		json_object_del(j->rec, "reason");
	if (s == GV_JOB_S_RUNNING && !json_object_get(j->rec, "started"))
		json_object_set_new(j->rec, "started", json_real(ctl_now()));
	if (gv_job_state_final(s) && !json_object_get(j->rec, "ended"))
		json_object_set_new(j->rec, "ended", json_real(ctl_now()));
	if (old != s) {
		j->state_since = gv_now_ms();
		ctl_event(c, j, "state", "%s -> %s%s%s", gv_job_state_name(old),
			  gv_job_state_name(s), reason ? ": " : "", reason ? reason : "");
	}
	return ctl_job_save(c, j, &e);
}

/* The scheduler's view of a job record. */
static int job_to_sched(gv_ctl *c, struct ctl_job *j, gv_err *e)
{
	const json_t *rec = j->rec;
	gv_sched_job spec = {
		.id = j->id,
		.user = (uint32_t)json_integer_value(json_object_get(rec, "user")),
		.priority = (int32_t)json_integer_value(json_object_get(rec, "priority")),
		.submit = json_number_value(json_object_get(rec, "submitted")),
		.cpus = (uint32_t)json_integer_value(json_object_get(rec, "cpus")),
		.memory = (uint64_t)json_integer_value(json_object_get(rec, "memory")),
		.walltime = (double)json_integer_value(json_object_get(rec, "walltime")),
		.image = json_string_value(json_object_get(rec, "image")),
		.image_size = (uint64_t)json_integer_value(json_object_get(rec, "image_size")),
		.requires = j->requires,
		.rank = j->rank,
		.dirty_rate = json_number_value(json_object_get(rec, "dirty_rate")),
	};
	int r;

	if (!spec.image_size)
		spec.image_size = 1ull << 30; /* until a host says how big it is */
	r = gv_sched_job_add(c->st, &spec, &j->sidx, e);
	if (r < 0)
		j->sidx = GV_SCHED_NONE;
	else
		ctl_recover_sched(c, j);
	return r;
}

void ctl_job_unschedule(gv_ctl *c, struct ctl_job *j)
{
	if (j->sidx != GV_SCHED_NONE)
		gv_sched_job_remove(c->st, j->sidx);
	j->sidx = GV_SCHED_NONE;
}

struct ctl_job *ctl_job_add(gv_ctl *c, json_t *rec, int64_t mod_rev, gv_err *e)
{
	struct ctl_job *j = calloc(1, sizeof(*j));
	const char *req = json_string_value(json_object_get(rec, "requires"));
	const char *rank = json_string_value(json_object_get(rec, "rank"));
	gv_job_state s = gv_job_record_state(rec);
	size_t at;

	if (!j)
		abort();
	j->id = (uint64_t)json_integer_value(json_object_get(rec, "id"));
	j->rec = rec;
	j->mod_rev = mod_rev;
	j->sidx = GV_SCHED_NONE;
	j->last_why = -1;
	j->moved_before = -1;
	j->state_since = gv_now_ms();
	if ((req && gv_expr_parse(req, &j->requires, e) < 0) ||
	    (rank && gv_expr_parse(rank, &j->rank, e) < 0)) {
		gv_expr_free(j->requires);
		gv_expr_free(j->rank);
		free(j);
		return NULL;
	}
	if (!gv_job_state_final(s) && job_to_sched(c, j, e) < 0) {
		gv_expr_free(j->requires);
		gv_expr_free(j->rank);
		free(j);
		return NULL;
	}
	struct ctl_host *h = NULL;
	if (j->sidx != GV_SCHED_NONE && s != GV_JOB_S_QUEUED) {
		h = ctl_host_find(c, json_string_value(json_object_get(rec, "host")));
		double start = json_number_value(json_object_get(rec, "bound"));
		if (h && gv_sched_job_bind(c->st, j->sidx, h->sidx, start) < 0)
			fprintf(stderr, "gridvmctld: job %" PRIu64 ": cannot restore its binding\n",
				j->id);
		if (!h && json_object_get(rec, "host"))
			c->unlisted++; /* listed when its host joins (ctl_host_add) */
	}
	if (c->njobs == c->cap_jobs) {
		c->cap_jobs = c->cap_jobs ? 2 * c->cap_jobs : 64;
		c->jobs = realloc(c->jobs, c->cap_jobs * sizeof(*c->jobs));
		if (!c->jobs)
			abort();
	}
	for (at = c->njobs; at > 0 && c->jobs[at - 1]->id > j->id; at--)
		c->jobs[at] = c->jobs[at - 1];
	c->jobs[at] = j;
	c->njobs++;
	if (h)
		ctl_host_list_job(c, h, j);
	return j;
}

struct ctl_host *ctl_host_add(gv_ctl *c, const char *name, gv_err *e)
{
	struct ctl_host *h;
	gv_sched_host spec = { .name = name, .state = GV_HOST_DOWN };
	uint32_t sidx;

	if (gv_sched_host_add(c->st, &spec, &sidx, e) < 0)
		return NULL;
	if (c->nhosts == c->cap_hosts) {
		c->cap_hosts = c->cap_hosts ? 2 * c->cap_hosts : 16;
		c->hosts = realloc(c->hosts, c->cap_hosts * sizeof(*c->hosts));
		if (!c->hosts)
			abort();
	}
	h = &c->hosts[c->nhosts++];
	memset(h, 0, sizeof(*h));
	snprintf(h->name, sizeof(h->name), "%s", name);
	h->sidx = sidx;
	h->labels = json_object();
	/* jobs loaded bound to it before it was known */
	for (size_t i = 0; c->unlisted && i < c->njobs; i++) {
		struct ctl_job *j = c->jobs[i];
		const char *host = json_string_value(json_object_get(j->rec, "host"));
		if (j->listed || j->sidx == GV_SCHED_NONE || !host || strcmp(host, name))
			continue;
		ctl_host_list_job(c, h, j);
		c->unlisted--;
	}
	return h;
}

/* The grid as the store has it: hosts first (jobs name them). */
int ctl_load(gv_ctl *c, gv_err *e)
{
	gv_kv_entry *v = NULL, *meta = NULL;
	size_t n = 0;
	int64_t rev;
	int r;

	if ((r = gv_kv_range(c->kv, CTL_KEY_HOSTS, &v, &n, &rev, e)) < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		json_t *rec = json_loads(v[i].value, 0, NULL);
		const char *name = json_string_value(json_object_get(rec, "name"));
		struct ctl_host *h = name ? ctl_host_add(c, name, e) : NULL;
		if (h) {
			snprintf(h->addr, sizeof(h->addr), "%s",
				 json_string_value(json_object_get(rec, "addr")) ?: "");
			if (json_is_object(json_object_get(rec, "labels")))
				json_object_update(h->labels, json_object_get(rec, "labels"));
			h->drained = json_is_true(json_object_get(rec, "drained"));
			h->mod_rev = v[i].mod_rev;
		}
		json_decref(rec);
	}
	gv_kv_entries_free(v, n);
	v = NULL;
	if ((r = gv_kv_range(c->kv, CTL_KEY_JOBS, &v, &n, &rev, e)) < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		json_t *rec = json_loads(v[i].value, 0, NULL);
		struct ctl_job *j = rec ? ctl_job_add(c, rec, v[i].mod_rev, e) : NULL;
		if (!j) {
			fprintf(stderr, "gridvmctld: skipping the unreadable record %s\n", v[i].key);
			json_decref(rec);
			continue;
		}
		if (j->id >= c->next_id)
			c->next_id = j->id + 1;
		/* bound without its epoch: the write that gives a binding its epoch
		 * failed after the binding's own write (the controller that made
		 * it was deposed between them), so no agent was given it; its
		 * epoch is that binding's revision, the record's mod_rev */
		gv_job_state s = gv_job_record_state(rec);
		if (!gv_job_state_final(s) && s != GV_JOB_S_QUEUED &&
		    json_integer_value(json_object_get(rec, "epoch")) <= 0) {
			json_object_set_new(rec, "epoch", json_integer(j->mod_rev));
			if (ctl_job_save(c, j, NULL) == 0)
				fprintf(stderr, "gridvmctld: job %" PRIu64 " was bound without its "
					"epoch: it has now %" PRId64 "\n", j->id, (int64_t)
					json_integer_value(json_object_get(rec, "epoch")));
		}
	}
	gv_kv_entries_free(v, n);
	/* events are numbered on from what the store holds */
	for (size_t i = 0; i < c->njobs; i++) {
		char *prefix = gv_strdupf(CTL_KEY_EVENTS "%020" PRIu64 "/", c->jobs[i]->id);
		v = NULL;
		n = 0;
		if (gv_kv_range(c->kv, prefix, &v, &n, &rev, NULL) == 0)
			c->jobs[i]->events = (unsigned)n;
		gv_kv_entries_free(v, n);
		free(prefix);
	}
	if (gv_kv_get(c->kv, CTL_KEY_NEXT_ID, &meta, NULL) == 0) {
		uint64_t next = strtoull(meta->value, NULL, 10);
		if (next > c->next_id)
			c->next_id = next;
		gv_kv_entries_free(meta, 1);
	}
	if (c->next_id == 0)
		c->next_id = 1;
	ctl_learn_load(c);
	fprintf(stderr, "gridvmctld: loaded %zu hosts, %zu jobs and %zu measured moves from the "
		"store\n", c->nhosts, c->njobs, c->nmoves);
	return 0;
}

void gv_ctl_opts_default(gv_ctl_opts *o)
{
	memset(o, 0, sizeof(*o));
	gv_sched_params_default(&o->params);
	o->batch_wait_s = 10;
	o->report_s = 2;
	o->replan_s = 10;
	o->host_lease_s = 10;
	o->replicas = 1;
}

int gv_ctl_start(const gv_ctl_opts *o, gv_ctl **out, gv_err *e)
{
	gv_ctl *c = calloc(1, sizeof(*c));
	char *store = NULL, *jobs;
	int r;

	if (!c)
		abort();
	c->o = *o;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->wake, NULL);
	pthread_cond_init(&c->elect_wake, NULL);
	pthread_cond_init(&c->files_cv, NULL);
	ctl_metrics_init(c);
	c->datadir = strdup(o->datadir);
	c->quotas = o->quotas ? strdup(o->quotas) : gv_strdupf("%s/quotas.json", c->datadir);
	jobs = gv_strdupf("%s/jobs", c->datadir);
	r = gv_mkdir_p(jobs, 0700);
	free(jobs);
	if (r < 0) {
		gv_err_set(e, r, "cannot create %s/jobs: %s", c->datadir, strerror(-r));
		goto fail;
	}
	if ((r = gv_xfer_key_load(o->grid_key, c->key)) < 0) {
		gv_err_set(e, r, "cannot read the grid key %s (%s); make one with 'gridvm host "
			   "keygen' and copy it to every host", o->grid_key, strerror(-r));
		goto fail;
	}
	store = o->store ? strdup(o->store) : gv_strdupf("sqlite:%s/controller.db", c->datadir);
	if ((r = gv_kv_open(store, &c->kv, e)) < 0)
		goto fail;
	c->st = gv_sched_state_new();
	if (!c->st)
		abort();
	/* with an election, the grid is loaded when it wins (ctl_elect.c) */
	c->leading = !o->leader_ttl_s;
	c->lead_until = o->leader_ttl_s ? 0 : UINT64_MAX;
	if (!o->leader_ttl_s && (r = ctl_load(c, e)) < 0)
		goto fail;
	if ((r = gv_xfer_server_start(o->listen, c->key, ctl_resolve, c, &c->xs, e)) < 0)
		goto fail;
	gv_xfer_server_set_control(c->xs, ctl_request);
	gv_xfer_server_set_authorize(c->xs, ctl_authorize);
	gv_xfer_server_set_users(c->xs, true);
	if (o->socket && (r = gv_xfer_server_start(o->socket, c->key, ctl_resolve, c, &c->ls,
						   e)) < 0)
		goto fail;
	if (c->ls) {
		gv_xfer_server_set_control(c->ls, ctl_request);
		gv_xfer_server_set_authorize(c->ls, ctl_authorize);
	}
	{
		char host[256];
		int port;
		if (gv_xfer_peer_parse(o->listen, host, sizeof(host), &port) < 0)
			snprintf(host, sizeof(host), "%s", o->listen);
		c->listen_addr = gv_strdupf("%s:%d", host, gv_xfer_server_port(c->xs));
	}
	if (pthread_create(&c->loop, NULL, ctl_loop, c) != 0) {
		r = gv_err_set(e, -EAGAIN, "cannot start the controller's thread");
		goto fail;
	}
	c->loop_started = true;
	if (o->leader_ttl_s) {
		if (pthread_create(&c->elect, NULL, ctl_elect, c) != 0) {
			r = gv_err_set(e, -EAGAIN, "cannot start the election's thread");
			goto fail;
		}
		c->elect_started = true;
		/* the other controllers, and the job files it holds as they do */
		c->peers_started = pthread_create(&c->peers, NULL, ctl_peers, c) == 0;
		c->files_started = pthread_create(&c->files, NULL, ctl_files_sync, c) == 0;
		if (!c->peers_started || !c->files_started) {
			r = gv_err_set(e, -EAGAIN, "cannot start the controller's threads");
			goto fail;
		}
	}
	if (o->metrics && (r = gv_metrics_start(o->metrics, ctl_metrics, c, &c->metrics, e)) < 0)
		goto fail;
	free(store);
	*out = c;
	return 0;
fail:
	free(store);
	gv_ctl_stop(c);
	return r;
}

void gv_ctl_stop(gv_ctl *c)
{
	if (!c)
		return;
	gv_metrics_stop(c->metrics);
	pthread_mutex_lock(&c->mu);
	c->stopping = true;
	pthread_cond_broadcast(&c->wake);
	pthread_cond_broadcast(&c->elect_wake);
	pthread_mutex_unlock(&c->mu);
	if (c->elect_started)
		pthread_join(c->elect, NULL); /* a leader revokes its lease */
	if (c->peers_started)
		pthread_join(c->peers, NULL);
	if (c->files_started)
		pthread_join(c->files, NULL);
	if (c->loop_started)
		pthread_join(c->loop, NULL);
	gv_xfer_server_stop(c->xs);
	gv_xfer_server_stop(c->ls);
	/* output collections end by themselves (each of their requests times
	 * out; copies to the other controllers in a time by their size): wait
	 * for them all, they use the controller */
	for (;;) {
		pthread_mutex_lock(&c->mu);
		unsigned busy = c->collectors;
		pthread_mutex_unlock(&c->mu);
		if (!busy)
			break;
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	for (size_t i = 0; i < c->njobs; i++) {
		json_decref(c->jobs[i]->rec);
		gv_expr_free(c->jobs[i]->requires);
		gv_expr_free(c->jobs[i]->rank);
		free(c->jobs[i]);
	}
	ctl_learn_free(c);
	for (size_t i = 0; i < c->nhosts; i++) {
		json_decref(c->hosts[i].labels);
		json_decref(c->hosts[i].drops);
		json_decref(c->hosts[i].report);
		free(c->hosts[i].bound);
	}
	free(c->jobs);
	free(c->hosts);
	gv_sched_state_free(c->st);
	gv_kv_close(c->kv);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->wake);
	pthread_cond_destroy(&c->elect_wake);
	pthread_cond_destroy(&c->files_cv);
	free(c->datadir);
	free(c->quotas);
	free(c->listen_addr);
	free(c);
}

const char *gv_ctl_addr(const gv_ctl *c)
{
	return c->listen_addr;
}
