/* SPDX-License-Identifier: MIT */
/*
 * gridagent_lease.c - the agent's hold on its jobs: the lease each
 * answered report renews, the watchdog that pauses every grid VM when the
 * lease runs out (fencing), the binding epochs the agent has seen (it
 * refuses older orders), and the VMs the grid says are stale here (bound
 * elsewhere since: killed before anything else). docs/host-loss.md.
 *
 * The lease is measured from the moment the answered report was SENT,
 * on CLOCK_MONOTONIC: the controller took its note of the host after that
 * moment, so the agent's deadline always comes before the controller's.
 * The watchdog is a thread of its own: the report thread may sit for 15 s
 * in a network call that will never be answered.
 */
#include "gridagent_internal.h"

#include <gridvm/base/util.h>
#include <gridvm/node/checkpoint.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The watchdog looks this often (ms). */
#define WATCH_MS 100

uint64_t ga_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The monotonic clock counts from boot: a deadline written down holds for
 * a restarted agent only on the same boot. */
static void boot_id(char *buf, size_t len)
{
	char *s = NULL;

	if (gv_read_file("/proc/sys/kernel/random/boot_id", &s, NULL) < 0)
		s = NULL;
	snprintf(buf, len, "%s", s ? s : "");
	buf[strcspn(buf, "\n")] = '\0';
	free(s);
}

static char *grid_file(gv_gridagent *g, const char *name)
{
	return gv_strdupf("%s/grid/%s", gv_host_datadir(g->h), name);
}

static void lease_save(gv_gridagent *g, uint64_t until)
{
	char boot[64], *path = grid_file(g, "lease.json"), *dir = grid_file(g, "");
	json_t *o;
	char *text;

	boot_id(boot, sizeof(boot));
	o = json_pack("{s:s, s:I}", "boot", boot, "until_ms", (json_int_t)until);
	text = json_dumps(o, JSON_COMPACT);
	if (gv_mkdir_p(dir, 0700) < 0 || !text || gv_write_file_atomic(path, text, strlen(text)) < 0)
		fprintf(stderr, "gridvmd: cannot write %s\n", path);
	free(text);
	json_decref(o);
	free(path);
	free(dir);
}

void ga_held_save(gv_gridagent *g)
{
	char *path = grid_file(g, "held.json"), *dir = grid_file(g, ""), *text;
	json_t *o = json_object();

	for (struct gjob *j = g->jobs; j; j = j->next) {
		char id[32];
		if (!j->epoch && !j->fenced)
			continue;
		snprintf(id, sizeof(id), "%" PRIu64, j->id);
		json_object_set_new(o, id, json_pack("{s:I, s:b}", "epoch", (json_int_t)j->epoch,
						     "fenced", j->fenced));
	}
	text = json_dumps(o, JSON_COMPACT);
	if (gv_mkdir_p(dir, 0700) < 0 || !text || gv_write_file_atomic(path, text, strlen(text)) < 0)
		fprintf(stderr, "gridvmd: cannot write %s\n", path);
	free(text);
	json_decref(o);
	free(path);
	free(dir);
}

void ga_lease_load(gv_gridagent *g)
{
	char boot[64], *path = grid_file(g, "lease.json");
	json_t *o = json_load_file(path, 0, NULL), *v;
	const char *k;

	boot_id(boot, sizeof(boot));
	/* a restarted agent holds what its predecessor held; a new one (or
	 * after a reboot) holds nothing until the controller answers */
	if (o && !strcmp(json_string_value(json_object_get(o, "boot")) ?: "", boot))
		g->lease_until = (uint64_t)json_integer_value(json_object_get(o, "until_ms"));
	json_decref(o);
	free(path);
	path = grid_file(g, "held.json");
	o = json_load_file(path, 0, NULL);
	pthread_mutex_lock(&g->mu);
	json_object_foreach(o, k, v) {
		struct gjob *j = gjob_find(g, strtoull(k, NULL, 10), true);
		if (!j)
			continue;
		j->epoch = json_integer_value(json_object_get(v, "epoch"));
		j->fenced = json_is_true(json_object_get(v, "fenced"));
	}
	pthread_mutex_unlock(&g->mu);
	json_decref(o);
	free(path);
}

bool ga_lease_valid(gv_gridagent *g)
{
	return g->lease_until && ga_mono_ms() < g->lease_until;
}

bool ga_lease_wait(gv_gridagent *g, uint64_t ms)
{
	uint64_t end = ga_mono_ms() + ms;

	while (!ga_lease_valid(g) && !g->stop && ga_mono_ms() < end) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += WATCH_MS * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&g->cv, &g->mu, &until);
	}
	return ga_lease_valid(g);
}

void ga_lease_renewed(gv_gridagent *g, uint64_t sent_ms, json_t *rep)
{
	json_int_t lease_s = json_integer_value(json_object_get(rep, "lease_s"));
	uint64_t until;

	pthread_mutex_lock(&g->mu);
	if (lease_s > 0 && lease_s < 24 * 3600)
		g->lease_ms = (unsigned)lease_s * 1000;
	until = sent_ms + (g->lease_ms ? g->lease_ms : 10000);
	if (until > g->lease_until) {
		g->lease_until = until;
		lease_save(g, until);
	}
	if (g->fencing && ga_lease_valid(g)) {
		g->fencing = false;
		fprintf(stderr, "gridvmd: the controller answers again: lease renewed\n");
	}
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

/* The lease ran out: pause every grid VM that runs (each pass, so a VM
 * a worker started meanwhile is caught too). */
static void fence_pass(gv_gridagent *g)
{
	json_t *recs = gv_vm_records(g->h), *v;
	size_t i;

	json_array_foreach(recs, i, v) {
		const char *name = json_string_value(json_object_get(v, "name")) ?: "";
		const char *state = json_string_value(json_object_get(v, "state")) ?: "";
		uint64_t id = strncmp(name, "job-", 4) ? 0 : strtoull(name + 4, NULL, 10);
		gv_err e = { "" };
		bool paused = !strcmp(state, "paused");
		if (!id || (strcmp(state, "running") && !paused))
			continue;
		pthread_mutex_lock(&g->mu);
		struct gjob *j = gjob_find(g, id, true);
		bool was = j && j->fenced;
		pthread_mutex_unlock(&g->mu);
		if (!paused && gv_vm_pause(g->h, name, &e) < 0) {
			fprintf(stderr, "gridvmd: cannot fence %s: %s\n", name, e.msg);
			continue;
		}
		pthread_mutex_lock(&g->mu);
		if ((j = gjob_find(g, id, true)) && !was) {
			j->fenced = true;
			ga_held_save(g);
			fprintf(stderr, "gridvmd: fenced %s (paused): no lease\n", name);
		}
		pthread_mutex_unlock(&g->mu);
	}
	json_decref(recs);
}

static void *watchdog(void *arg)
{
	gv_gridagent *g = arg;

	pthread_mutex_lock(&g->mu);
	while (!g->stop) {
		bool expired = !ga_lease_valid(g);
		if (expired && !g->fencing) {
			g->fencing = true;
			if (g->lease_until) /* (not before the first answer) */
					fprintf(stderr, "gridvmd: no answer from the controller %s within the lease "
					"(%u s from the last answered report): fencing the grid's "
					"VMs\n", g->controller,
					(g->lease_ms ? g->lease_ms : 10000) / 1000);
		}
		ga_keeper_beat(g);
		pthread_mutex_unlock(&g->mu);
		ga_keeper_claim(g);
		if (expired)
			fence_pass(g);
		pthread_mutex_lock(&g->mu);
		struct timespec ts = { 0, WATCH_MS * 1000000L };
		pthread_mutex_unlock(&g->mu);
		nanosleep(&ts, NULL);
		pthread_mutex_lock(&g->mu);
	}
	pthread_mutex_unlock(&g->mu);
	return NULL;
}

int ga_watchdog_start(gv_gridagent *g)
{
	if (pthread_create(&g->wd, NULL, watchdog, g) != 0)
		return -EAGAIN;
	g->wd_started = true;
	return 0;
}

void ga_watchdog_stop(gv_gridagent *g)
{
	if (g->wd_started)
		pthread_join(g->wd, NULL);
	g->wd_started = false;
}

/* The VM of a job the grid bound elsewhere (or back in its queue): it
 * must never run again here. */
static void kill_stale(gv_gridagent *g, const char *name)
{
	uint64_t id = strncmp(name, "job-", 4) ? 0 : strtoull(name + 4, NULL, 10);
	gv_err e = { "" };

	pthread_mutex_lock(&g->mu);
	struct gjob *j = id ? gjob_find(g, id, false) : NULL;
	bool busy = j && j->busy;
	pthread_mutex_unlock(&g->mu);
	if (!id || busy || !ga_vm_exists(g, name))
		return; /* (a move that ends deletes it itself) */
	if (gv_vm_delete(g->h, name, true, &e) < 0) {
		fprintf(stderr, "gridvmd: cannot kill the stale %s: %s\n", name, e.msg);
		return;
	}
	/* its checkpoints are older than the ones it goes on from elsewhere */
	gv_checkpoint_drop_all(g->h, name);
	fprintf(stderr, "gridvmd: killed %s: the grid has bound its job elsewhere since (a stale "
		"copy)\n", name);
	pthread_mutex_lock(&g->mu);
	if ((j = gjob_find(g, id, false))) {
		j->fenced = false;
		j->state = NULL;
		ga_held_save(g);
	}
	pthread_mutex_unlock(&g->mu);
}

/* Take @epoch for job @id, or refuse it: false if older than the one held. */
static bool epoch_take(gv_gridagent *g, uint64_t id, int64_t epoch, const char *what)
{
	struct gjob *j = gjob_find(g, id, true);

	if (!j)
		return false;
	if (epoch < j->epoch) {
		fprintf(stderr, "gridvmd: refused %s of job %" PRIu64 " at epoch %" PRId64
			": this host has seen epoch %" PRId64 "\n", what, id, epoch, j->epoch);
		return false;
	}
	if (epoch > j->epoch) {
		j->epoch = epoch;
		ga_held_save(g);
	}
	return true;
}

/* Drop from @list (bindings or moves) the orders older than the epoch
 * held; take the newer ones. A fresh binding (to start) newer than the
 * epoch of a VM still here means that VM is stale: it goes first. */
static void settle_orders(gv_gridagent *g, json_t *list, const char *what)
{
	for (size_t i = 0; i < json_array_size(list);) {
		json_t *b = json_array_get(list, i);
		uint64_t id = (uint64_t)json_integer_value(json_object_get(b, "id"));
		int64_t epoch = json_integer_value(json_object_get(b, "epoch"));
		const char *state = json_string_value(json_object_get(b, "state")) ?: "";
		bool fresh = !strcmp(state, "scheduled") || !strcmp(state, "staging");
		char vm[40];
		snprintf(vm, sizeof(vm), "job-%" PRIu64, id);
		pthread_mutex_lock(&g->mu);
		struct gjob *j = gjob_find(g, id, true);
		int64_t held = j ? j->epoch : 0;
		bool busy = j && j->busy;
		pthread_mutex_unlock(&g->mu);
		if (fresh && held && epoch > held && !busy && ga_vm_exists(g, vm))
			kill_stale(g, vm);
		pthread_mutex_lock(&g->mu);
		bool ok = epoch_take(g, id, epoch, what);
		pthread_mutex_unlock(&g->mu);
		if (ok)
			i++;
		else
			json_array_remove(list, i);
	}
}

/* Is job @id bound here (a binding or a move) at exactly @epoch? */
static bool bound_at(json_t *rep, uint64_t id, int64_t epoch)
{
	const char *lists[] = { "bindings", "moves" };
	json_t *b;
	size_t i;

	for (size_t k = 0; k < 2; k++)
		json_array_foreach(json_object_get(rep, lists[k]), i, b)
			if ((uint64_t)json_integer_value(json_object_get(b, "id")) == id &&
			    json_integer_value(json_object_get(b, "epoch")) == epoch)
				return true;
	return false;
}

void ga_settle(gv_gridagent *g, json_t *rep)
{
	json_t *v;
	size_t i;

	json_array_foreach(json_object_get(rep, "stale"), i, v)
		kill_stale(g, json_string_value(v) ?: "");
	settle_orders(g, json_object_get(rep, "bindings"), "a binding");
	settle_orders(g, json_object_get(rep, "moves"), "a move");
	/* fenced VMs the grid still binds here at the epoch held: go on */
	for (;;) {
		uint64_t id = 0;
		int64_t epoch = 0;
		pthread_mutex_lock(&g->mu);
		for (struct gjob *j = g->jobs; j && !id; j = j->next)
			if (j->fenced && !j->busy && bound_at(rep, j->id, j->epoch) &&
			    ga_lease_valid(g)) {
				id = j->id;
				epoch = j->epoch;
				j->fenced = false; /* (once per reply; a failure says so) */
			}
		if (id)
			ga_held_save(g);
		pthread_mutex_unlock(&g->mu);
		if (!id)
			break;
		char vm[40];
		gv_err e = { "" };
		json_t *out = NULL;
		snprintf(vm, sizeof(vm), "job-%" PRIu64, id);
		if (gv_vm_show(g->h, vm, &out, &e) == 0 &&
		    !strcmp(json_string_value(json_object_get(out, "state")) ?: "", "paused")) {
			if (gv_vm_resume(g->h, vm, &e) < 0)
				fprintf(stderr, "gridvmd: cannot resume %s: %s\n", vm, e.msg);
			else
				fprintf(stderr, "gridvmd: resumed %s: the grid still binds it here "
					"(epoch %" PRId64 ")\n", vm, epoch);
		}
		json_decref(out);
	}
}

json_t *ga_epoch_check(gv_gridagent *g, json_t *req)
{
	json_t *ep = json_object_get(req, "epoch");
	const char *name = json_string_value(json_object_get(req, "name")) ?: "";
	uint64_t id = strncmp(name, "job-", 4) ? 0 : strtoull(name + 4, NULL, 10);
	json_t *rep = NULL;

	if (!json_is_integer(ep) || !id || !g)
		return NULL; /* not a grid job's request */
	pthread_mutex_lock(&g->mu);
	struct gjob *j = gjob_find(g, id, true);
	int64_t held = j ? j->epoch : 0;
	if (!epoch_take(g, id, json_integer_value(ep), json_string_value(json_object_get(req, "op"))))
		rep = gv_err_jsonf(-ESTALE, "stale epoch %" PRId64 " for job %" PRIu64 ": this host "
				   "has seen epoch %" PRId64, (int64_t)json_integer_value(ep), id,
				   held);
	pthread_mutex_unlock(&g->mu);
	return rep;
}
