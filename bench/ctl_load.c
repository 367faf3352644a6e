/* SPDX-License-Identifier: MIT */
/*
 * ctl_load.c - load for a real gridvmctld: N fake agents that speak the
 * agent protocol (host-report over the authenticated control channel,
 * docs/grid.md "Agent ⇄ controller") and accept their bindings at once,
 * M jobs submitted with the request `gridvm submit` sends; it measures
 * bindings per second (first submit to the last job seen bound in an
 * agent's reply), jobs running, and completions per second (the agents
 * report every VM stopped; the controller collects each job's log from
 * them, a grid-log request this program answers, then releases it).
 *
 * Side by side, in the same run: the scheduling library alone on the
 * same hosts and jobs (one cycle per job, as the controller runs a cycle
 * per submit), and the controller's store alone (SQLite puts of the size
 * and count the controller writes per job: each its own commit, and a
 * batch per job from 4 threads with shared syncs, as the controller
 * commits now). bench/ctl.sh runs it.
 *
 *   gridvm-ctl-load --controller ADDR:PORT --key FILE [--hosts N] [--jobs M]
 *                   [--cpus C] [--interval S] [--agents T] [--submitters S]
 *                   [--store-dir DIR] [--json]
 *   gridvm-ctl-load --alone --hosts N --jobs M [--store-dir DIR] [--json]
 */
#include <gridvm/base/util.h>
#include <gridvm/grid/job.h>
#include <gridvm/grid/kv.h>
#include <gridvm/sched/sched.h>
#include <gridvm/xfer/xfer.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define IMAGE "bench"
#define IMAGE_SIZE (256ull << 20)
#define HOST_MEMORY (256ull << 30)

enum phase { PH_BIND, PH_STOP };

struct fjob {
	double submitted, bound, running, released; /* wall-clock s (0: not yet) */
	uint32_t host;
};

struct fhost {
	char name[32];
	uint64_t *jobs; /* ids it holds (bound, not released) */
	size_t n, cap;
	double due;	/* when it reports next (monotonic s) */
	unsigned phase; /* the phase it last reported in */
	bool seen;	/* the controller answered it once */
};

static struct {
	char ctl_host[256];
	int ctl_port;
	uint8_t key[GV_XFER_KEY_LEN];
	char agent_addr[64];
	unsigned n_hosts, n_jobs, cpus, agents, submitters;
	double interval;
	struct fhost *hosts;
	struct fjob *jobs; /* by id (ids 1..n_jobs on a fresh controller) */
	pthread_mutex_t mu;
	unsigned phase;
	bool stop;
	unsigned n_bound, n_running, n_released, n_seen, n_logs;
	uint64_t reports, report_errors, submit_errors;
	double report_s_sum, report_s_max;
	unsigned next_submit;
} G = { .mu = PTHREAD_MUTEX_INITIALIZER };

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void nap(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - floor(s)) * 1e9) };
	if (s > 0)
		nanosleep(&ts, NULL);
}

/* ---- the agents' side ---- */

/* What the controller asks of an agent directly: a job's log (empty). */
static json_t *agent_control(void *ud, json_t *req)
{
	const char *op = json_string_value(json_object_get(req, "op"));

	(void)ud;
	if (op && !strcmp(op, "grid-log")) {
		__atomic_add_fetch(&G.n_logs, 1, __ATOMIC_RELAXED);
		return json_pack("{s:b, s:s}", "ok", 1, "data", "");
	}
	return json_pack("{s:b, s:s}", "ok", 0, "error", "not served by the load generator");
}

static int agent_resolve(void *ud, const char *name, char **path, char **idx)
{
	(void)ud, (void)name, (void)path, (void)idx;
	return -ENOENT;
}

static json_t *report_of(struct fhost *h, unsigned phase)
{
	json_t *vms = json_array();
	char vm[40];

	for (size_t i = 0; i < h->n; i++) {
		snprintf(vm, sizeof(vm), "job-%" PRIu64, h->jobs[i]);
		if (phase == PH_STOP)
			json_array_append_new(vms, json_pack("{s:s, s:s, s:i, s:I}", "name", vm,
							     "state", "stopped", "exit_code", 0,
							     "disk_written", (json_int_t)0));
		else
			json_array_append_new(vms, json_pack("{s:s, s:s, s:I}", "name", vm, "state",
							     "running", "disk_written",
							     (json_int_t)0));
	}
	return json_pack("{s:s, s:s, s:s, s:{s:i, s:I, s:I}, s:f, s:f, s:{s:s, s:s, s:s}, "
			 "s:{}, s:[{s:s, s:I}], s:o, s:[]}",
			 "op", "host-report", "name", h->name, "addr", G.agent_addr, "resources",
			 "cpus", (int)G.cpus, "memory", (json_int_t)HOST_MEMORY, "disk",
			 (json_int_t)(1ull << 40), "load", 0.0, "speed", 1.0, "attrs", "arch",
			 "x86_64", "accel", "tcg", "site", "bench", "labels", "images", "name",
			 IMAGE, "size", (json_int_t)IMAGE_SIZE, "vms", vms, "moved");
}

static bool holds(struct fhost *h, uint64_t id)
{
	for (size_t i = 0; i < h->n; i++)
		if (h->jobs[i] == id)
			return true;
	return false;
}

/* The reply: new bindings (accepted at once: the next report says the VM
 * runs), bindings that say running, VMs released. @return true when the
 * host has news to report at once. */
static bool obey(uint32_t hi, json_t *rep)
{
	struct fhost *h = &G.hosts[hi];
	json_t *b, *v;
	size_t i;
	double now = wall();
	bool news = false;

	pthread_mutex_lock(&G.mu);
	json_array_foreach(json_object_get(rep, "bindings"), i, b) {
		uint64_t id = (uint64_t)json_integer_value(json_object_get(b, "id"));
		const char *st = json_string_value(json_object_get(b, "state")) ?: "";
		if (!id || id > G.n_jobs)
			continue;
		struct fjob *j = &G.jobs[id];
		if (!holds(h, id)) {
			if (h->n == h->cap) {
				h->cap = h->cap ? 2 * h->cap : 16;
				h->jobs = realloc(h->jobs, h->cap * sizeof(*h->jobs));
				if (!h->jobs)
					abort();
			}
			h->jobs[h->n++] = id;
			news = true;
		}
		if (!j->bound) {
			j->bound = now;
			j->host = hi;
			G.n_bound++;
		}
		if (!strcmp(st, "running") && !j->running) {
			j->running = now;
			G.n_running++;
		}
	}
	json_array_foreach(json_object_get(rep, "release"), i, v) {
		uint64_t id = gv_job_id_of_vm(json_string_value(v));
		for (size_t k = 0; k < h->n; k++) {
			if (h->jobs[k] != id)
				continue;
			h->jobs[k] = h->jobs[--h->n];
			if (id && id <= G.n_jobs && !G.jobs[id].released) {
				G.jobs[id].released = now;
				G.n_released++;
			}
			break;
		}
	}
	if (!h->seen) {
		h->seen = true;
		G.n_seen++;
	}
	pthread_mutex_unlock(&G.mu);
	return news;
}

static void *agent_thread(void *arg)
{
	unsigned t = (unsigned)(uintptr_t)arg;

	while (!__atomic_load_n(&G.stop, __ATOMIC_RELAXED)) {
		unsigned phase = __atomic_load_n(&G.phase, __ATOMIC_ACQUIRE);
		double now = mono(), next = now + G.interval;
		for (uint32_t hi = t; hi < G.n_hosts; hi += G.agents) {
			struct fhost *h = &G.hosts[hi];
			if (h->phase != phase) { /* a VM ended: agents report at once */
				h->phase = phase;
				h->due = 0;
			}
			if (h->due > now) {
				if (h->due < next)
					next = h->due;
				continue;
			}
			pthread_mutex_lock(&G.mu);
			json_t *req = report_of(h, phase), *rep = NULL;
			pthread_mutex_unlock(&G.mu);
			gv_err e = { "" };
			double t0 = mono();
			int r = gv_xfer_control(G.ctl_host, G.ctl_port, G.key, req, 30000, &rep, &e);
			double dt = mono() - t0;
			json_decref(req);
			bool news = false;
			if (r == 0 && json_is_true(json_object_get(rep, "ok")))
				news = obey(hi, rep);
			pthread_mutex_lock(&G.mu);
			G.reports++;
			G.report_s_sum += dt;
			if (dt > G.report_s_max)
				G.report_s_max = dt;
			if (r < 0 || !json_is_true(json_object_get(rep, "ok"))) {
				if (!G.report_errors++)
					fprintf(stderr, "ctl-load: report of %s: %s\n", h->name,
						r < 0 ? e.msg : json_string_value(json_object_get(rep, "error")) ?: "refused");
			}
			pthread_mutex_unlock(&G.mu);
			json_decref(rep);
			now = mono();
			h->due = news ? now : now + G.interval;
			if (h->due < next)
				next = h->due;
		}
		double wait = next - mono();
		nap(wait > 0.02 ? 0.02 : wait);
	}
	return NULL;
}

static void *submit_thread(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_mutex_lock(&G.mu);
		unsigned k = G.next_submit < G.n_jobs ? ++G.next_submit : 0;
		pthread_mutex_unlock(&G.mu);
		if (!k)
			break;
		/* what `gridvm submit --cpus 1 --memory 512M -- true` sends */
		json_t *req = json_pack("{s:s, s:s, s:i, s:s, s:[s], s:i, s:s}", "op", "submit",
					"image", IMAGE, "cpus", 1, "memory", "512M", "cmd", "true",
					"uid", 0, "name", "load"), *rep = NULL;
		gv_err e = { "" };
		double t = wall();
		int r;
		/* a busy controller may refuse a session: as the CLI's user, again */
		for (int tries = 0;; tries++) {
			r = gv_xfer_control(G.ctl_host, G.ctl_port, G.key, req, 30000, &rep, &e);
			if (r == 0 || tries == 20)
				break;
			nap(0.05);
		}
		json_int_t id = json_integer_value(json_object_get(rep, "id"));
		pthread_mutex_lock(&G.mu);
		if (r == 0 && id > 0 && (uint64_t)id <= G.n_jobs)
			G.jobs[id].submitted = t;
		else if (!G.submit_errors++)
			fprintf(stderr, "ctl-load: submit: %s (id %lld)\n",
				r < 0 ? e.msg : json_string_value(json_object_get(rep, "error")) ?: "?",
				(long long)id);
		pthread_mutex_unlock(&G.mu);
		json_decref(req);
		json_decref(rep);
	}
	return NULL;
}

static unsigned count(unsigned *n)
{
	pthread_mutex_lock(&G.mu);
	unsigned v = *n;
	pthread_mutex_unlock(&G.mu);
	return v;
}

/* Wait until *@n reaches @want (or @limit s pass). @return the time. */
static double wait_for(unsigned *n, unsigned want, double limit, const char *what)
{
	double t0 = mono();
	while (count(n) < want) {
		if (mono() - t0 > limit) {
			fprintf(stderr, "ctl-load: %u of %u %s after %.0f s; giving up\n", count(n),
				want, what, limit);
			return NAN;
		}
		nap(0.005);
	}
	return wall();
}

/* ---- side by side: the library alone, the store alone ---- */

/* One cycle per job, as the controller runs one per submit: add the job,
 * gv_sched_schedule, gv_sched_apply. @return placements/s. */
static double library_alone(unsigned n_hosts, unsigned n_jobs, unsigned cpus)
{
	gv_sched_state *st = gv_sched_state_new();
	gv_sched_params p;
	gv_sched_plan plan;
	json_t *attrs = json_pack("{s:s, s:s, s:s}", "arch", "x86_64", "accel", "tcg", "site",
				  "bench");
	char name[32];
	uint32_t idx;
	gv_err e;
	unsigned placed = 0;

	gv_sched_params_default(&p);
	p.max_moves = 0;
	gv_sched_plan_init(&plan);
	for (unsigned i = 0; i < n_hosts; i++) {
		snprintf(name, sizeof(name), "fh%05u", i);
		gv_sched_host spec = { .name = name, .state = GV_HOST_UP, .cpus = cpus,
				       .memory = HOST_MEMORY, .disk = 1ull << 40, .attrs = attrs };
		if (gv_sched_host_add(st, &spec, &idx, &e) < 0 ||
		    gv_sched_host_set_image(st, idx, IMAGE, 0) < 0)
			abort();
	}
	double t0 = mono(), now = wall();
	for (unsigned k = 1; k <= n_jobs; k++) {
		gv_sched_job js = { .id = k, .submit = now, .cpus = 1, .memory = 512ull << 20,
				    .image = IMAGE, .image_size = IMAGE_SIZE };
		if (gv_sched_job_add(st, &js, &idx, &e) < 0)
			abort();
		gv_sched_plan_clear(&plan);
		if (gv_sched_schedule(st, now, &p, &plan) < 0)
			abort();
		for (size_t i = 0; i < plan.n_acts; i++)
			placed += gv_sched_apply(st, &plan.acts[i], now, NULL) == 0;
	}
	double dt = mono() - t0;
	gv_sched_plan_free(&plan);
	gv_sched_state_free(st);
	json_decref(attrs);
	return placed / dt;
}

/* The controller's writes of one job up to its binding: the submit (a
 * transaction of the record and the next id), then 5 puts (events
 * "submit", "place", "state"; the record twice). @return puts/s. */
#define PUTS_PER_BINDING 6
static double store_alone(const char *dir, unsigned n_jobs, double *jobs_per_s)
{
	char *url = gv_strdupf("sqlite:%s/alone.db", dir), key[96];
	char rec[700], ev[200];
	gv_kv *kv = NULL;
	gv_err e = { "" };
	int64_t rev;

	if (gv_kv_open(url, &kv, &e) < 0) {
		fprintf(stderr, "ctl-load: %s\n", e.msg);
		free(url);
		return NAN;
	}
	memset(rec, 'x', sizeof(rec) - 1);
	rec[sizeof(rec) - 1] = 0;
	memset(ev, 'y', sizeof(ev) - 1);
	ev[sizeof(ev) - 1] = 0;
	double t0 = mono();
	for (unsigned k = 1; k <= n_jobs; k++) {
		snprintf(key, sizeof(key), "/grid/jobs/%020u", k);
		gv_kv_op ops[2] = { { GV_KV_PUT, key, rec, 0 },
				    { GV_KV_PUT, "/grid/meta/next-id", "1", 0 } };
		bool done;
		if (gv_kv_txn(kv, NULL, 0, ops, 2, &done, &rev, &e) < 0)
			abort();
		for (int i = 0; i < PUTS_PER_BINDING - 1; i++) {
			if (i % 2)
				snprintf(key, sizeof(key), "/grid/jobs/%020u", k);
			else
				snprintf(key, sizeof(key), "/grid/events/%020u/%08d", k, i);
			if (gv_kv_put(kv, key, i % 2 ? rec : ev, 0, &rev, &e) < 0)
				abort();
		}
	}
	double dt = mono() - t0;
	gv_kv_close(kv);
	free(url);
	*jobs_per_s = n_jobs / dt;
	return n_jobs * PUTS_PER_BINDING / dt;
}

/* The same writes as the controller makes them now: 4 threads (the
 * submitters), each binding's puts one batch committed under a shared
 * lock and synced without it (gv_kv_batch_commit, gv_kv_sync: syncs
 * shared by the threads that wait at once). @return bindings/s. */
#define GROUP_THREADS 4
struct grouped {
	gv_kv *kv;
	pthread_mutex_t *mu;
	unsigned *next, n_jobs;
	int failed;
};

static void *grouped_thread(void *arg)
{
	struct grouped *g = arg;
	char key[96], rec[700], ev[200];
	gv_err e = { "" };
	int64_t rev;

	memset(rec, 'x', sizeof(rec) - 1);
	rec[sizeof(rec) - 1] = 0;
	memset(ev, 'y', sizeof(ev) - 1);
	ev[sizeof(ev) - 1] = 0;
	for (;;) {
		int r = 0;
		pthread_mutex_lock(g->mu);
		unsigned k = *g->next < g->n_jobs ? ++*g->next : 0;
		if (!k) {
			pthread_mutex_unlock(g->mu);
			break;
		}
		gv_kv_batch_begin(g->kv);
		snprintf(key, sizeof(key), "/grid/jobs/%020u", k);
		gv_kv_op ops[2] = { { GV_KV_PUT, key, rec, 0 },
				    { GV_KV_PUT, "/grid/meta/next-id", "1", 0 } };
		bool done;
		r = gv_kv_txn(g->kv, NULL, 0, ops, 2, &done, &rev, &e);
		for (int i = 0; i < PUTS_PER_BINDING - 1 && r == 0; i++) {
			if (i % 2)
				snprintf(key, sizeof(key), "/grid/jobs/%020u", k);
			else
				snprintf(key, sizeof(key), "/grid/events/%020u/%08d", k, i);
			r = gv_kv_put(g->kv, key, i % 2 ? rec : ev, 0, &rev, &e);
		}
		int rc = gv_kv_batch_commit(g->kv, &e);
		pthread_mutex_unlock(g->mu);
		if (r < 0 || rc < 0 || gv_kv_sync(g->kv, &e) < 0) {
			fprintf(stderr, "ctl-load: store alone, grouped: %s\n", e.msg);
			g->failed = 1;
			break;
		}
	}
	return NULL;
}

static double store_grouped(const char *dir, unsigned n_jobs)
{
	char *url = gv_strdupf("sqlite:%s/grouped.db", dir);
	pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	pthread_t th[GROUP_THREADS];
	struct grouped g[GROUP_THREADS];
	unsigned next = 0;
	gv_kv *kv = NULL;
	gv_err e = { "" };
	bool failed = false;

	if (gv_kv_open(url, &kv, &e) < 0) {
		fprintf(stderr, "ctl-load: %s\n", e.msg);
		free(url);
		return NAN;
	}
	double t0 = mono();
	for (int t = 0; t < GROUP_THREADS; t++) {
		g[t] = (struct grouped){ .kv = kv, .mu = &mu, .next = &next, .n_jobs = n_jobs };
		pthread_create(&th[t], NULL, grouped_thread, &g[t]);
	}
	for (int t = 0; t < GROUP_THREADS; t++) {
		pthread_join(th[t], NULL);
		failed |= g[t].failed;
	}
	double dt = mono() - t0;
	gv_kv_close(kv);
	free(url);
	return failed ? NAN : n_jobs / dt;
}

/* ---- main ---- */

/* The controller's own times (its records' "bound" and "ended"): the
 * last binding after @t0 and the last end after @t1, wall clock. */
static void ctl_times(double t0, double t1, double *bound, double *ended)
{
	json_t *req = json_pack("{s:s}", "op", "jobs"), *rep = NULL, *j;
	gv_err e = { "" };
	size_t i;

	*bound = *ended = NAN;
	if (gv_xfer_control(G.ctl_host, G.ctl_port, G.key, req, 60000, &rep, &e) == 0) {
		json_array_foreach(json_object_get(rep, "jobs"), i, j) {
			double b = json_number_value(json_object_get(j, "bound"));
			double x = json_number_value(json_object_get(j, "ended"));
			if (b >= t0 && !(b <= *bound))
				*bound = b;
			if (x >= t1 && !(x <= *ended))
				*ended = x;
		}
	}
	json_decref(req);
	json_decref(rep);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: gridvm-ctl-load --controller ADDR:PORT --key FILE [OPTIONS]\n"
		   "       gridvm-ctl-load --alone [OPTIONS]   (the library and the store only)\n"
		   "  --hosts N        fake agents (default 1000)\n"
		   "  --jobs M         jobs submitted (default 5000)\n"
		   "  --cpus C         cpus per fake host (default 8)\n"
		   "  --interval S     seconds between an agent's reports (default 2)\n"
		   "  --agents T       threads the agents share (default 12; with the\n"
		   "                   submitters at most 16: the connections one address\n"
		   "                   may have waiting to authenticate)\n"
		   "  --submitters S   threads that submit (default 4)\n"
		   "  --store-dir DIR  where the store-alone run writes (default /tmp)\n"
		   "  --json           one JSON object\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "controller", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "hosts", required_argument, NULL, 'n' },
		{ "jobs", required_argument, NULL, 'm' },
		{ "cpus", required_argument, NULL, 'p' },
		{ "interval", required_argument, NULL, 'i' },
		{ "agents", required_argument, NULL, 't' },
		{ "submitters", required_argument, NULL, 's' },
		{ "store-dir", required_argument, NULL, 'd' },
		{ "alone", no_argument, NULL, 'a' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 } };
	const char *ctl = NULL, *keyfile = NULL, *store_dir = "/tmp";
	bool as_json = false, alone = false;
	int ch;

	G.n_hosts = 1000;
	G.n_jobs = 5000;
	G.cpus = 8;
	G.interval = 2;
	G.agents = 12; /* with the submitters, within the 16 connections one
			* address may have waiting to authenticate (every fake
			* agent is 127.0.0.1; xfer_src.c) */
	G.submitters = 4;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': ctl = optarg; break;
		case 'k': keyfile = optarg; break;
		case 'n': G.n_hosts = (unsigned)atoi(optarg); break;
		case 'm': G.n_jobs = (unsigned)atoi(optarg); break;
		case 'p': G.cpus = (unsigned)atoi(optarg); break;
		case 'i': G.interval = atof(optarg); break;
		case 't': G.agents = (unsigned)atoi(optarg); break;
		case 's': G.submitters = (unsigned)atoi(optarg); break;
		case 'd': store_dir = optarg; break;
		case 'a': alone = true; break;
		case 'j': as_json = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!G.n_hosts || !G.n_jobs || !G.cpus || !G.agents || !G.submitters ||
	    !(G.interval > 0) || (!alone && (!ctl || !keyfile))) {
		usage(stderr);
		return 2;
	}
	if ((uint64_t)G.n_hosts * G.cpus < G.n_jobs) {
		fprintf(stderr, "ctl-load: %u jobs of 1 cpu do not all fit on %u hosts of %u cpus "
			"(every job is bound before any ends)\n", G.n_jobs, G.n_hosts, G.cpus);
		return 2;
	}
	if (alone) {
		double jps = NAN, lib = library_alone(G.n_hosts, G.n_jobs, G.cpus);
		double puts = store_alone(store_dir, G.n_jobs, &jps);
		double grouped = store_grouped(store_dir, G.n_jobs);
		if (as_json)
			printf("{\"hosts\": %u, \"jobs\": %u, \"library_placements_per_s\": %.1f, "
			       "\"store_puts_per_s\": %.1f, \"store_puts_per_binding\": %d, "
			       "\"store_bindings_per_s\": %.1f, \"store_grouped_bindings_per_s\": %.1f}\n",
			       G.n_hosts, G.n_jobs, lib, puts, PUTS_PER_BINDING, jps, grouped);
		else
			printf("library alone: %.0f placements/s; store alone: %.0f puts/s "
			       "(%d per binding: %.0f bindings/s; a batch per binding from %d threads, "
			       "syncs shared: %.0f bindings/s)\n",
			       lib, puts, PUTS_PER_BINDING, jps, GROUP_THREADS, grouped);
		return 0;
	}
	if (gv_xfer_peer_parse(ctl, G.ctl_host, sizeof(G.ctl_host), &G.ctl_port) < 0 ||
	    gv_xfer_key_load(keyfile, G.key) < 0) {
		fprintf(stderr, "ctl-load: bad --controller or --key\n");
		return 2;
	}
	gv_xfer_server *xs = NULL;
	gv_err e = { "" };
	if (gv_xfer_server_start("127.0.0.1:0", G.key, agent_resolve, NULL, &xs, &e) < 0) {
		fprintf(stderr, "ctl-load: %s\n", e.msg);
		return 1;
	}
	gv_xfer_server_set_control(xs, agent_control);
	snprintf(G.agent_addr, sizeof(G.agent_addr), "127.0.0.1:%d", gv_xfer_server_port(xs));
	G.hosts = calloc(G.n_hosts, sizeof(*G.hosts));
	G.jobs = calloc(G.n_jobs + 1, sizeof(*G.jobs));
	if (!G.hosts || !G.jobs)
		abort();
	for (unsigned i = 0; i < G.n_hosts; i++)
		snprintf(G.hosts[i].name, sizeof(G.hosts[i].name), "fh%05u", i);

	/* the hosts join */
	pthread_t *at = calloc(G.agents, sizeof(*at)), *st = calloc(G.submitters, sizeof(*st));
	double t_join = wall();
	for (unsigned t = 0; t < G.agents; t++)
		pthread_create(&at[t], NULL, agent_thread, (void *)(uintptr_t)t);
	double t_joined = wait_for(&G.n_seen, G.n_hosts, 120, "hosts joined");
	nap(G.interval); /* a round of plain reports: the steady state */

	/* submit; the agents take their bindings */
	double t0 = wall();
	for (unsigned t = 0; t < G.submitters; t++)
		pthread_create(&st[t], NULL, submit_thread, NULL);
	for (unsigned t = 0; t < G.submitters; t++)
		pthread_join(st[t], NULL);
	double t_submitted = wall();
	double t_bound = wait_for(&G.n_bound, G.n_jobs, 600, "jobs bound");
	double t_running = wait_for(&G.n_running, G.n_jobs, 600, "jobs running");
	uint64_t rep_bind = G.reports;
	double rep_bind_s = G.report_s_sum;

	/* every VM stops; the controller collects and releases each job */
	nap(G.interval);
	double t1 = wall();
	__atomic_store_n(&G.phase, PH_STOP, __ATOMIC_RELEASE);
	double t_done = wait_for(&G.n_released, G.n_jobs, 600, "jobs released");
	__atomic_store_n(&G.stop, true, __ATOMIC_RELAXED);
	for (unsigned t = 0; t < G.agents; t++)
		pthread_join(at[t], NULL);

	/* latencies, submit to bound as the agent saw it */
	double *lat = calloc(G.n_jobs, sizeof(*lat));
	unsigned nl = 0;
	for (unsigned k = 1; k <= G.n_jobs; k++)
		if (G.jobs[k].submitted > 0 && G.jobs[k].bound > 0)
			lat[nl++] = G.jobs[k].bound - G.jobs[k].submitted;
	qsort(lat, nl, sizeof(*lat), cmp_double);
	double p50 = nl ? lat[nl / 2] : NAN, p99 = nl ? lat[(size_t)(nl * 0.99)] : NAN;
	free(lat);

	double c_bound, c_ended;
	ctl_times(t0, t1, &c_bound, &c_ended);
	double bind_rate = G.n_jobs / (t_bound - t0);
	double c_bind_rate = G.n_jobs / (c_bound - t0), c_done_rate = G.n_jobs / (c_ended - t1);
	double submit_rate = G.n_jobs / (t_submitted - t0);
	double run_rate = G.n_jobs / (t_running - t0);
	double done_rate = G.n_jobs / (t_done - t1);
	double rep_mean = rep_bind ? rep_bind_s / rep_bind * 1000 : NAN;
	if (as_json)
		printf("{\"hosts\": %u, \"jobs\": %u, \"cpus_per_host\": %u, \"interval_s\": %g, "
		       "\"join_s\": %.3f, \"submit_s\": %.3f, \"submits_per_s\": %.1f, "
		       "\"bind_s\": %.3f, \"bindings_per_s\": %.1f, \"running_per_s\": %.1f, "
		       "\"ctl_bind_s\": %.3f, \"ctl_bindings_per_s\": %.1f, \"ctl_complete_s\": %.3f, "
		       "\"ctl_completions_per_s\": %.1f, \"bind_latency_p50_s\": %.3f, \"bind_latency_p99_s\": %.3f, "
		       "\"complete_s\": %.3f, \"completions_per_s\": %.1f, \"reports\": %" PRIu64
		       ", \"report_ms_mean\": %.2f, \"report_ms_max\": %.1f, \"report_errors\": %" PRIu64
		       ", \"submit_errors\": %" PRIu64 ", \"logs_served\": %u}\n",
		       G.n_hosts, G.n_jobs, G.cpus, G.interval, t_joined - t_join, t_submitted - t0,
		       submit_rate, t_bound - t0, bind_rate, run_rate, c_bound - t0, c_bind_rate,
		       c_ended - t1, c_done_rate, p50, p99, t_done - t1,
		       done_rate, G.reports, rep_mean, G.report_s_max * 1000, G.report_errors,
		       G.submit_errors, G.n_logs);
	else
		printf("%u hosts joined in %.2f s; %u jobs submitted in %.2f s (%.0f/s), all bound "
		       "in %.2f s (%.0f bindings/s; the controller's last binding at %.2f s: %.0f/s; submit to bound p50 %.2f s, p99 %.2f s), "
		       "running in %.2f s; completed in %.2f s (%.0f/s); %" PRIu64 " reports "
		       "(mean %.1f ms while binding), %" PRIu64 " errors\n",
		       G.n_hosts, t_joined - t_join, G.n_jobs, t_submitted - t0, submit_rate,
		       t_bound - t0, bind_rate, c_bound - t0, c_bind_rate, p50, p99, t_running - t0, t_done - t1, done_rate,
		       G.reports, rep_mean, G.report_errors + G.submit_errors);
	gv_xfer_server_stop(xs);
	return isnan(t_done) || isnan(t_bound) ? 1 : 0;
}
