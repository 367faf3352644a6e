/* SPDX-License-Identifier: MIT */
/*
 * test-ctl-store.c - the controller and its SQLite store (ctl.c,
 * ctl_api.c; docs/kv.md "Group commit"): submissions from many threads
 * at once share syncs, every one answered is there after a restart; a
 * commit or a sync that fails (the fault points kv.sqlite.commit and
 * kv.sqlite.sync) answers an error, never an acknowledgement or a
 * binding, and the controller steps down (gv_ctl_deposed) so that a new
 * one starts from what the store holds. Waits are polls with bounded
 * deadlines, never fixed sleeps.
 */
#include <gridvm/base/fault.h>
#include <gridvm/base/util.h>
#include <gridvm/grid/ctl.h>
#include <gridvm/xfer/xfer.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#define SUBMITTERS 8
#define SUBMITS 25 /* each */

static char dir[64];
static uint8_t key[GV_XFER_KEY_LEN];

static void fault_set(const char *spec)
{
	if (spec)
		setenv("GRIDVM_FAULT", spec, 1);
	else
		unsetenv("GRIDVM_FAULT");
	gv_fault_reset();
}

/* A port nothing listens on now. */
static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* A controller on the test's SQLite store (the same one every time). */
static gv_ctl *ctl_new(void)
{
	char *keyfile = gv_strdupf("%s/grid.key", dir);
	char listen[32];
	gv_ctl_opts o;
	gv_ctl *c = NULL;
	gv_err e = { "" };

	gv_ctl_opts_default(&o);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", free_port());
	o.listen = listen;
	o.datadir = dir;
	o.grid_key = keyfile;
	if (gv_ctl_start(&o, &c, &e) < 0)
		fail_msg("controller: %s", e.msg);
	free(keyfile);
	return c;
}

/* A request to @c: 0 and its reply, or a transport error. */
static int call(gv_ctl *c, json_t *req, json_t **rep, gv_err *e)
{
	char host[256];
	int port, r;

	*rep = NULL;
	r = gv_xfer_peer_parse(gv_ctl_addr(c), host, sizeof(host), &port);
	if (r == 0)
		r = gv_xfer_control(host, port, key, req, 30000, rep, e);
	json_decref(req);
	return r;
}

/* What `gridvm submit -- true` sends. */
static json_t *submit_req(void)
{
	return json_pack("{s:s, s:s, s:i, s:s, s:[s], s:i}", "op", "submit", "image", "bench",
			 "cpus", 1, "memory", "512M", "cmd", "true", "uid", 0);
}

/* The ids of the jobs @c holds, as `gridvm jobs` lists them. */
static size_t job_ids(gv_ctl *c, json_int_t *ids, size_t max)
{
	json_t *rep = NULL, *j;
	gv_err e = { "" };
	size_t i, n = 0;

	if (call(c, json_pack("{s:s}", "op", "jobs"), &rep, &e) < 0)
		fail_msg("jobs: %s", e.msg);
	assert_true(json_is_true(json_object_get(rep, "ok")));
	json_array_foreach(json_object_get(rep, "jobs"), i, j)
		if (n < max)
			ids[n++] = json_integer_value(json_object_get(j, "id"));
	json_decref(rep);
	return n;
}

static bool contains(const json_int_t *ids, size_t n, json_int_t id)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

/* Poll until @c is deposed (15 s at most). */
static bool deposed(gv_ctl *c)
{
	uint64_t t0 = gv_now_ms();

	while (!gv_ctl_deposed(c) && gv_now_ms() - t0 < 15000)
		usleep(20 * 1000);
	return gv_ctl_deposed(c);
}

struct submitter {
	gv_ctl *c;
	json_int_t ids[SUBMITS];
	int r; /* the first failure (the thread asserts nothing itself) */
	char msg[600];
};

static void *submit_thread(void *arg)
{
	struct submitter *s = arg;
	gv_err e = { "" };

	for (int i = 0; i < SUBMITS && s->r == 0; i++) {
		json_t *rep = NULL;
		int r = call(s->c, submit_req(), &rep, &e);
		if (r == 0 && !json_is_true(json_object_get(rep, "ok")))
			snprintf(e.msg, sizeof(e.msg), "%s",
				 json_string_value(json_object_get(rep, "error")) ?: "?"), r = -EIO;
		if (r < 0) {
			s->r = r;
			snprintf(s->msg, sizeof(s->msg), "%s", e.msg);
		} else {
			s->ids[i] = json_integer_value(json_object_get(rep, "id"));
		}
		json_decref(rep);
	}
	return NULL;
}

/* Many submissions at once: each answered with its own id, and every
 * one answered is in the store: a new controller on it lists them all. */
static void test_submits_survive_restart(void **state)
{
	struct submitter s[SUBMITTERS];
	pthread_t th[SUBMITTERS];
	json_int_t ids[SUBMITTERS * SUBMITS + 16];
	gv_ctl *c = ctl_new();
	size_t n;

	for (int t = 0; t < SUBMITTERS; t++) {
		s[t] = (struct submitter){ .c = c };
		assert_int_equal(pthread_create(&th[t], NULL, submit_thread, &s[t]), 0);
	}
	for (int t = 0; t < SUBMITTERS; t++)
		pthread_join(th[t], NULL);
	for (int t = 0; t < SUBMITTERS; t++)
		if (s[t].r < 0)
			fail_msg("submitter %d: %s", t, s[t].msg);
	gv_ctl_stop(c);
	c = ctl_new();
	n = job_ids(c, ids, sizeof(ids) / sizeof(ids[0]));
	assert_int_equal(n, SUBMITTERS * SUBMITS);
	for (int t = 0; t < SUBMITTERS; t++)
		for (int i = 0; i < SUBMITS; i++)
			assert_true(contains(ids, n, s[t].ids[i]));
	for (size_t i = 1; i < n; i++)
		assert_int_not_equal(ids[i], ids[i - 1]);
	assert_false(gv_ctl_deposed(c));
	gv_ctl_stop(c);
}

/* A fault on every commit or every sync from now on: a submission is
 * answered with an error (its own, or that of a controller that stepped
 * down when its cycle's commit failed first), the controller is deposed,
 * and a new controller starts from the store: it takes submissions. A
 * failed commit leaves no job behind; after a failed sync the job may
 * or may not be there (it was written, its sync was not confirmed). */
static void store_fault(const char *spec, bool may_stay)
{
	json_int_t before[SUBMITTERS * SUBMITS + 16], after[SUBMITTERS * SUBMITS + 16];
	gv_ctl *c = ctl_new();
	size_t n0 = job_ids(c, before, sizeof(before) / sizeof(before[0])), n1;
	json_t *rep = NULL;
	gv_err e = { "" };

	fault_set(spec);
	assert_int_equal(call(c, submit_req(), &rep, &e), 0);
	assert_false(json_is_true(json_object_get(rep, "ok")));
	assert_non_null(json_string_value(json_object_get(rep, "error")));
	json_decref(rep);
	assert_true(deposed(c));
	/* nothing but errors from it now (a report gets no orders) */
	assert_int_equal(call(c, json_pack("{s:s, s:s, s:s}", "op", "host-report", "name", "h1",
					   "addr", "127.0.0.1:1"), &rep, &e), 0);
	assert_false(json_is_true(json_object_get(rep, "ok")));
	assert_null(json_object_get(rep, "bindings"));
	json_decref(rep);
	fault_set(NULL);
	gv_ctl_stop(c);
	c = ctl_new();
	n1 = job_ids(c, after, sizeof(after) / sizeof(after[0]));
	assert_true(n1 == n0 || (may_stay && n1 == n0 + 1));
	assert_int_equal(call(c, submit_req(), &rep, &e), 0);
	assert_true(json_is_true(json_object_get(rep, "ok")));
	json_decref(rep);
	assert_false(gv_ctl_deposed(c));
	gv_ctl_stop(c);
}

static void test_commit_fails(void **state)
{
	store_fault("kv.sqlite.commit=fail", false);
}

static void test_sync_fails(void **state)
{
	store_fault("kv.sqlite.sync=fail", true);
}

/* No fault left from a test that failed half-way. */
static int no_fault(void **state)
{
	fault_set(NULL);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_submits_survive_restart, no_fault),
		cmocka_unit_test_setup(test_commit_fails, no_fault),
		cmocka_unit_test_setup(test_sync_fails, no_fault),
	};
	char *keyfile;
	FILE *f;
	int failed;

	setenv("GRIDVM_TLS_DIR", "/nonexistent/gridvm-tls", 1); /* the grid key, no TLS */
	strcpy(dir, "/tmp/gv-ctl-store-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)(i * 7 + 1);
	keyfile = gv_strdupf("%s/grid.key", dir);
	f = fopen(keyfile, "w");
	if (!f)
		return 1;
	for (size_t i = 0; i < sizeof(key); i++)
		fprintf(f, "%02x", key[i]);
	fclose(f);
	free(keyfile);
	failed = cmocka_run_group_tests_name("ctl-store", tests, NULL, NULL);
	gv_rm_rf(dir);
	return failed;
}
