/* SPDX-License-Identifier: MIT */
/*
 * gridagent_replica.c - a grid job's checkpoints outlive its host: the
 * agent that runs the job mirrors its checkpoints, as they are made, to
 * the replica hosts the controller names in the binding (only the chunks
 * a replica lacks; what retention dropped here is dropped there), and
 * says in its report which checkpoints each replica holds. When the
 * controller recovers a job of a lost host, the binding carries a
 * restore order: the new host gets the checkpoint from a replica (unless
 * it is one) and continues from it. docs/host-loss.md.
 */
#include "gridagent_internal.h"

#include <gridvm/base/util.h>
#include <gridvm/node/checkpoint.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* After a failed copy to a replica, wait this long before the next. */
#define RETRY_MS 5000

void ga_replicas_set(gv_gridagent *g, struct gjob *j, json_t *b)
{
	json_t *want = json_object_get(b, "replicas"), *v;
	const char *k;
	void *tmp;

	if (!json_is_array(want) || json_equal(want, j->replicas))
		return;
	json_decref(j->replicas);
	j->replicas = json_deep_copy(want);
	if (!j->held)
		j->held = json_object();
	json_object_foreach_safe(j->held, tmp, k, v) { /* a replica no longer */
		bool still = false;
		size_t i;
		json_t *a;
		json_array_foreach(want, i, a)
			still = still || !strcmp(json_string_value(a) ?: "", k);
		if (!still)
			json_object_del(j->held, k);
	}
	j->repl_newest[0] = '\0'; /* a new replica gets them all */
}

struct repl {
	gv_gridagent *g;
	uint64_t id;
	char vm[40];
	int64_t epoch;
	json_t *to;
};

static void *replicate_thread(void *arg)
{
	struct repl *w = arg;
	gv_gridagent *g = w->g;
	json_t *list = gv_checkpoint_list(g->h, w->vm), *a, *got = json_object();
	const char *newest = json_string_value(json_object_get(
		json_array_get(list, json_array_size(list) - 1), "id")) ?: "";
	size_t i;
	bool ok = true;

	json_array_foreach(w->to, i, a) {
		const char *addr = json_string_value(a);
		json_t *held = NULL;
		uint64_t bytes = 0, t0 = ga_mono_ms();
		gv_err e = { "" };
		if (!addr)
			continue;
		if (gv_checkpoint_replicate(g->h, w->vm, addr, w->epoch, &held, &bytes, &e) < 0) {
			fprintf(stderr, "gridvmd: cannot copy the checkpoints of %s to %s: %s\n",
				w->vm, addr, e.msg);
			ok = false;
			continue;
		}
		if (bytes)
			fprintf(stderr, "gridvmd: checkpoint %s of %s copied to %s: %llu bytes of "
				"chunks it lacked, %llu ms\n", newest, w->vm, addr,
				(unsigned long long)bytes, (unsigned long long)(ga_mono_ms() - t0));
		json_object_set_new(got, addr, held);
	}
	pthread_mutex_lock(&g->mu);
	struct gjob *j = gjob_find(g, w->id, false);
	if (j) {
		const char *k;
		json_t *v;
		if (!j->held)
			j->held = json_object();
		json_object_foreach(got, k, v)
			json_object_set(j->held, k, v);
		j->replicating = false;
		if (ok)
			snprintf(j->repl_newest, sizeof(j->repl_newest), "%s", newest);
		else
			j->repl_after = ga_mono_ms() + RETRY_MS;
	}
	g->kick = true; /* the controller learns at once what is safe */
	g->threads--;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
	json_decref(got);
	json_decref(list);
	json_decref(w->to);
	free(w);
	return NULL;
}

void ga_replicate_kick(gv_gridagent *g)
{
	for (struct gjob *j = g->jobs; j; j = j->next) {
		if (!json_array_size(j->replicas) || j->replicating || j->busy || j->fenced ||
		    ga_mono_ms() < j->repl_after || g->stop)
			continue;
		/* (the catalogue is files: cheap to look at every report) */
		json_t *list = gv_checkpoint_list(g->h, j->vm);
		const char *newest = json_string_value(json_object_get(
			json_array_get(list, json_array_size(list) - 1), "id"));
		bool due = newest && strcmp(newest, j->repl_newest);
		json_decref(list);
		if (!due)
			continue;
		struct repl *w = calloc(1, sizeof(*w));
		pthread_attr_t attr;
		pthread_t th;
		if (!w)
			abort();
		w->g = g;
		w->id = j->id;
		w->epoch = j->epoch;
		snprintf(w->vm, sizeof(w->vm), "%s", j->vm);
		w->to = json_deep_copy(j->replicas);
		j->replicating = true;
		g->threads++;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&th, &attr, replicate_thread, w) != 0) {
			j->replicating = false;
			g->threads--;
			json_decref(w->to);
			free(w);
		}
		pthread_attr_destroy(&attr);
	}
}

void ga_replica_report(gv_gridagent *g, struct gjob *j, json_t *vm)
{
	json_t *list = gv_checkpoint_list(g->h, j->vm), *c, *out = json_array();
	size_t i;

	json_array_foreach(list, i, c)
		json_array_append_new(out, json_pack("{s:O, s:O}", "id", json_object_get(c, "id"),
						     "created", json_object_get(c, "created")));
	json_decref(list);
	json_object_set_new(vm, "checkpoints", out);
	if (j->held)
		json_object_set(vm, "replicas", j->held);
}

int ga_restore(gv_gridagent *g, uint64_t id, const char *name, json_t *binding, gv_err *e)
{
	json_t *rs = json_object_get(binding, "restore"), *man = NULL;
	const char *cid = json_string_value(json_object_get(rs, "checkpoint"));
	const char *from = json_string_value(json_object_get(rs, "from"));
	int64_t epoch = json_integer_value(json_object_get(binding, "epoch"));
	int r = 0;

	if (!cid)
		return gv_err_set(e, -EINVAL, "a restore order without a checkpoint");
	if (gv_checkpoint_show(g->h, name, cid, &man, e) < 0) { /* not here: ask a replica */
		char host[256];
		int port;
		json_t *req = json_pack("{s:s, s:s, s:s, s:s, s:I}", "op", "ckpt-send", "name", name,
					"id", cid, "to", g->addr, "epoch", (json_int_t)epoch);
		json_t *rep = NULL;
		uint64_t t0 = ga_mono_ms();
		if (!from || gv_xfer_peer_parse(from, host, sizeof(host), &port) < 0)
			r = gv_err_set(e, -ENOENT, "checkpoint %s is not here and no replica is named",
				       cid);
		else if ((r = gv_xfer_control(host, port, g->key, req, 60 * 60 * 1000, &rep, e)) < 0)
			gv_err_wrap(e, r, "cannot reach the replica");
		else if (!json_is_true(json_object_get(rep, "ok")))
			r = gv_err_set(e, -EREMOTEIO, "the replica %s: %s", from,
				       json_string_value(json_object_get(rep, "error")) ?: "refused");
		if (r == 0)
			fprintf(stderr, "gridvmd: checkpoint %s of %s came from %s in %llu ms\n", cid,
				name, from, (unsigned long long)(ga_mono_ms() - t0));
		json_decref(req);
		json_decref(rep);
	}
	json_decref(man);
	if (r == 0) {
		/* not one guest instruction without the lease */
		pthread_mutex_lock(&g->mu);
		bool leased = ga_lease_wait(g, 60000);
		pthread_mutex_unlock(&g->mu);
		if (!leased)
			r = gv_err_set(e, -ETIMEDOUT, "no lease from the controller: not restored");
	}
	if (r == 0 && (r = gv_checkpoint_restore(g->h, name, cid, e)) == 0)
		fprintf(stderr, "gridvmd: job %" PRIu64 " continues here from checkpoint %s\n", id,
			cid);
	return r;
}

void ga_drop_checkpoints(gv_gridagent *g, json_t *rep)
{
	json_t *v;
	size_t i;

	json_array_foreach(json_object_get(rep, "drop_checkpoints"), i, v) {
		const char *name = json_string_value(v);
		if (!name || strncmp(name, "job-", 4) || ga_vm_exists(g, name))
			continue; /* (a VM here keeps its own) */
		gv_checkpoint_drop_all(g->h, name);
		fprintf(stderr, "gridvmd: dropped the replicated checkpoints of %s\n", name);
	}
}

json_t *ga_ckpt_send(gv_host *h, json_t *req)
{
	const char *name = json_string_value(json_object_get(req, "name"));
	const char *id = json_string_value(json_object_get(req, "id"));
	const char *to = json_string_value(json_object_get(req, "to"));
	uint64_t bytes = 0, t0 = ga_mono_ms();
	gv_err e = { "" };

	if (!name || !to || gv_checkpoint_send(h, name, id, to,
					       json_integer_value(json_object_get(req, "epoch")),
					       &bytes, &e) < 0)
		return gv_err_json(-EIO, e.msg[0] ? e.msg : "bad ckpt-send request");
	fprintf(stderr, "gridvmd: sent checkpoint %s of %s to %s: %llu bytes of chunks, %llu ms\n",
		id, name, to, (unsigned long long)bytes, (unsigned long long)(ga_mono_ms() - t0));
	return json_pack("{s:b, s:I}", "ok", 1, "bytes", (json_int_t)bytes);
}
