/* SPDX-License-Identifier: MIT */
/*
 * gridagent_warm.c - the agent keeps templates warm for the grid: the
 * controller's reply names the job configurations in demand ("templates":
 * [{cpus, memory_mib}], docs/grid.md); the agent builds, one at a time on
 * a thread of its own, those it holds no ready template for, so the next
 * jobs of those sizes start from a template instead of booting
 * (docs/templates.md). A configuration whose build failed is not tried
 * again for WARM_RETRY_MS.
 */
#include "gridagent_internal.h"

#include <gridvm/base/util.h>
#include <gridvm/node/template.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WARM_RETRY_MS (10 * 60 * 1000)

struct warm {
	gv_gridagent *g;
	json_t *todo; /* [{cpus, memory_mib}] */
};

static bool have_ready(const json_t *list, json_int_t cpus, json_int_t mib)
{
	const json_t *t;
	size_t i;

	json_array_foreach(list, i, t)
		if (json_integer_value(json_object_get(t, "vcpus")) == cpus &&
		    json_integer_value(json_object_get(t, "memory_mib")) == mib &&
		    !strcmp(json_string_value(json_object_get(t, "state")) ?: "", "ready"))
			return true;
	return false;
}

static void *warm_thread(void *arg)
{
	struct warm *w = arg;
	gv_gridagent *g = w->g;
	json_t *c;
	size_t i;

	json_array_foreach(w->todo, i, c) {
		json_int_t cpus = json_integer_value(json_object_get(c, "cpus"));
		json_int_t mib = json_integer_value(json_object_get(c, "memory_mib"));
		json_t *out = NULL;
		gv_err e = { "" };
		uint64_t t0 = gv_now_ms();
		pthread_mutex_lock(&g->mu);
		bool stop = g->stop;
		pthread_mutex_unlock(&g->mu);
		if (stop)
			break;
		if (gv_template_build(g->h, (int)cpus, (uint64_t)mib, NULL, &out, &e) == 0) {
			fprintf(stderr, "gridvmd: template %s ready for the grid's jobs (built in "
				"%.1f s)\n", json_string_value(json_object_get(out, "name")) ?: "?",
				(double)(gv_now_ms() - t0) / 1000.0);
		} else {
			char key[64];
			snprintf(key, sizeof(key), "%" JSON_INTEGER_FORMAT "c-%" JSON_INTEGER_FORMAT "m",
				 cpus, mib);
			fprintf(stderr, "gridvmd: cannot keep a template of %s warm: %s (not tried "
				"again for %d min)\n", key, e.msg, WARM_RETRY_MS / 60000);
			pthread_mutex_lock(&g->mu);
			json_object_set_new(g->warm_failed, key, json_integer((json_int_t)gv_now_ms()));
			pthread_mutex_unlock(&g->mu);
		}
		json_decref(out);
	}
	pthread_mutex_lock(&g->mu);
	g->warming = false;
	g->threads--;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
	json_decref(w->todo);
	free(w);
	return NULL;
}

void ga_warm_templates(gv_gridagent *g, json_t *rep)
{
	json_t *want = json_object_get(rep, "templates"), *c, *todo, *have;
	pthread_attr_t attr;
	pthread_t th;
	size_t i;

	if (!json_array_size(want))
		return;
	pthread_mutex_lock(&g->mu);
	bool busy = g->warming || g->stop;
	pthread_mutex_unlock(&g->mu);
	if (busy)
		return;
	have = gv_template_list(g->h);
	todo = json_array();
	pthread_mutex_lock(&g->mu);
	json_array_foreach(want, i, c) {
		json_int_t cpus = json_integer_value(json_object_get(c, "cpus"));
		json_int_t mib = json_integer_value(json_object_get(c, "memory_mib"));
		char key[64];
		snprintf(key, sizeof(key), "%" JSON_INTEGER_FORMAT "c-%" JSON_INTEGER_FORMAT "m", cpus,
			 mib);
		json_t *failed = json_object_get(g->warm_failed, key);
		if (cpus < 1 || (uint64_t)cpus > g->cpus || mib < 64 ||
		    (uint64_t)mib << 20 > g->memory || have_ready(have, cpus, mib) ||
		    (failed && gv_now_ms() - (uint64_t)json_integer_value(failed) < WARM_RETRY_MS))
			continue; /* does not fit here, ready, or failed lately */
		json_array_append_new(todo, json_pack("{s:I, s:I}", "cpus", cpus, "memory_mib", mib));
	}
	struct warm *w = json_array_size(todo) ? calloc(1, sizeof(*w)) : NULL;
	if (w) {
		w->g = g;
		w->todo = todo;
		todo = NULL;
		g->warming = true;
		g->threads++;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&th, &attr, warm_thread, w) != 0) {
			g->warming = false;
			g->threads--;
			json_decref(w->todo);
			free(w);
		}
		pthread_attr_destroy(&attr);
	}
	pthread_mutex_unlock(&g->mu);
	json_decref(todo);
	json_decref(have);
}
