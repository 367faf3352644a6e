/* SPDX-License-Identifier: MIT */
/*
 * test-epoch.c - an agent refuses a grid job's peer request (a checkpoint
 * write, a restore, a migration's step) that carries an older binding
 * epoch than it has seen for that job, takes a newer one, lets requests
 * without an epoch through, and holds the epochs it saw across a restart
 * (DATA/grid/held.json). The agent's state is made by hand on a host
 * context in a temporary directory: no threads, no controller.
 * docs/host-loss.md.
 */
#include "../../lib/api/gridagent_internal.h"

#include <gridvm/base/util.h>
#include <gridvm/node/host.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

static char dir[64];

static gv_gridagent *agent(gv_host *h)
{
	gv_gridagent *g = calloc(1, sizeof(*g));

	assert_non_null(g);
	g->h = h;
	g->keeper_fd = -1;
	pthread_mutex_init(&g->mu, NULL);
	pthread_cond_init(&g->cv, NULL);
	return g;
}

static void agent_free(gv_gridagent *g)
{
	while (g->jobs) {
		struct gjob *j = g->jobs;
		g->jobs = j->next;
		json_decref(j->replicas);
		json_decref(j->held);
		free(j);
	}
	pthread_mutex_destroy(&g->mu);
	pthread_cond_destroy(&g->cv);
	free(g);
}

/* The refusal of @req (NULL: let through). */
static json_t *ask(gv_gridagent *g, const char *req_text)
{
	json_t *req = json_loads(req_text, 0, NULL), *rep;

	assert_non_null(req);
	rep = ga_epoch_check(g, req);
	json_decref(req);
	return rep;
}

static void refused(gv_gridagent *g, const char *req_text, const char *says)
{
	json_t *rep = ask(g, req_text);
	const char *msg;

	assert_non_null(rep);
	assert_false(json_is_true(json_object_get(rep, "ok")));
	msg = json_string_value(json_object_get(rep, "error"));
	assert_non_null(msg);
	if (!strstr(msg, says))
		fail_msg("'%s' does not say '%s'", msg, says);
	json_decref(rep);
}

static void test_epochs(void **state)
{
	gv_host *h;
	gv_gridagent *g;
	gv_err e;

	snprintf(dir, sizeof(dir), "/tmp/gv-epoch-XXXXXX");
	assert_non_null(mkdtemp(dir));
	assert_int_equal(gv_host_open(dir, &h, &e), 0);
	g = agent(h);

	/* the first epoch seen is taken; the same again and newer ones too */
	assert_null(ask(g, "{\"op\": \"live-in\", \"name\": \"job-5\", \"epoch\": 10}"));
	assert_null(ask(g, "{\"op\": \"ckpt-put\", \"name\": \"job-5\", \"epoch\": 10}"));
	/* older: refused, and it says which epochs */
	refused(g, "{\"op\": \"cold-in\", \"name\": \"job-5\", \"epoch\": 7}",
		"stale epoch 7 for job 5: this host has seen epoch 10");
	refused(g, "{\"op\": \"ckpt-add\", \"name\": \"job-5\", \"epoch\": 9}", "stale epoch 9");
	assert_null(ask(g, "{\"op\": \"ckpt-send\", \"name\": \"job-5\", \"epoch\": 12}"));
	refused(g, "{\"op\": \"live-in\", \"name\": \"job-5\", \"epoch\": 10}",
		"this host has seen epoch 12");
	/* another job has epochs of its own */
	assert_null(ask(g, "{\"op\": \"live-in\", \"name\": \"job-6\", \"epoch\": 3}"));
	/* no epoch, or not a grid job: not its business */
	assert_null(ask(g, "{\"op\": \"live-in\", \"name\": \"job-5\"}"));
	assert_null(ask(g, "{\"op\": \"live-in\", \"name\": \"myvm\", \"epoch\": 1}"));
	agent_free(g);

	/* a restarted agent holds what it had seen */
	g = agent(h);
	ga_lease_load(g);
	refused(g, "{\"op\": \"live-in\", \"name\": \"job-5\", \"epoch\": 11}",
		"this host has seen epoch 12");
	refused(g, "{\"op\": \"live-in\", \"name\": \"job-6\", \"epoch\": 2}",
		"this host has seen epoch 3");
	assert_null(ask(g, "{\"op\": \"live-in\", \"name\": \"job-5\", \"epoch\": 12}"));
	agent_free(g);
	gv_host_close(h);
	gv_rm_rf(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_epochs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
