/* SPDX-License-Identifier: MIT */
/*
 * test-kv-cluster.c - the etcd backend on a real three-member etcd
 * cluster (kv_etcd_http.c's failover; docs/kv.md "Endpoints and
 * failover"): the store is opened with all three endpoints; the member
 * the client talks to is SIGKILLed while a watch waits on it; the watch
 * resumes on another member without losing or repeating a change, and
 * puts, gets, compare-and-swap and lease keepalives go on through the
 * other two (a quorum). The cluster runs on loopback on free ports with
 * data in /tmp; the etcd binary and GV_TEST_ETCD as in etcd.h.
 */
#include <gridvm/base/util.h>
#include <gridvm/grid/kv.h>

#include "etcd.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#define MEMBERS 3

static struct {
	char dir[64];
	int client[MEMBERS], peer[MEMBERS];
	pid_t pid[MEMBERS];
	char url[256]; /* etcd://all three */
} cl;

static int member_start(int i, const char *cluster)
{
	char name[8], client[64], peer[64], data[96], log[96];

	snprintf(name, sizeof(name), "m%d", i);
	snprintf(client, sizeof(client), "http://127.0.0.1:%d", cl.client[i]);
	snprintf(peer, sizeof(peer), "http://127.0.0.1:%d", cl.peer[i]);
	snprintf(data, sizeof(data), "%s/%s", cl.dir, name);
	snprintf(log, sizeof(log), "%s/%s.log", cl.dir, name);
	cl.pid[i] = fork();
	if (cl.pid[i] < 0)
		return -1;
	if (cl.pid[i] == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl(etcd.bin, "etcd", "--name", name, "--data-dir", data,
		      "--listen-client-urls", client, "--advertise-client-urls", client,
		      "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		      "--initial-cluster", cluster, "--initial-cluster-token", cl.dir,
		      "--logger", "zap", "--log-outputs", "stderr", (char *)NULL);
		_exit(127);
	}
	return 0;
}

static void member_kill(int i)
{
	if (cl.pid[i] > 0) {
		kill(cl.pid[i], SIGKILL);
		waitpid(cl.pid[i], NULL, 0);
	}
	cl.pid[i] = 0;
}

/* Three members; ready when a write through the URL succeeds (polled,
 * 60 s at most). */
static int cluster_start(void)
{
	char cluster[256] = "", one[64];
	uint64_t t0 = gv_now_ms();
	int len = 0;
	gv_err e = { "" };

	strcpy(cl.dir, "/tmp/gv-etcdc-XXXXXX");
	if (!mkdtemp(cl.dir))
		return -1;
	for (int i = 0; i < MEMBERS; i++) {
		cl.client[i] = free_port();
		cl.peer[i] = free_port();
		snprintf(one, sizeof(one), "%sm%d=http://127.0.0.1:%d", i ? "," : "", i, cl.peer[i]);
		strcat(cluster, one);
		len += snprintf(cl.url + len, sizeof(cl.url) - (size_t)len, "%s127.0.0.1:%d",
				i ? "," : "etcd://", cl.client[i]);
	}
	for (int i = 0; i < MEMBERS; i++)
		if (member_start(i, cluster) < 0)
			return -1;
	while (gv_now_ms() - t0 < 60000) {
		gv_kv *kv = NULL;
		int r = gv_kv_open(cl.url, &kv, &e);

		if (r == 0)
			r = gv_kv_put(kv, "ready", "1", 0, NULL, &e);
		gv_kv_close(kv);
		if (r == 0)
			return 0;
		usleep(100 * 1000);
	}
	fprintf(stderr, "the etcd cluster did not start (%s): %s\n", cl.dir, e.msg);
	return -1;
}

struct follower {
	gv_kv *kv;
	int64_t from;
	gv_kv_event got[8];
	size_t n;
	int errors;
	bool done;
	pthread_mutex_t mu;
	pthread_cond_t cond;
};

/* As in test-kv.c: follow "k/" until three changes came (60 s at most). */
static void *follower_main(void *arg)
{
	struct follower *f = arg;
	uint64_t t0 = gv_now_ms();
	int64_t from = f->from;

	while (f->n < 3 && gv_now_ms() - t0 < 60000) {
		gv_kv_event *ev = NULL;
		size_t n = 0;
		int64_t next;
		gv_err e;

		if (gv_kv_watch(f->kv, "k/", from, 2000, &ev, &n, &next, &e) < 0) {
			f->errors++;
			continue;
		}
		pthread_mutex_lock(&f->mu);
		for (size_t i = 0; i < n && f->n < 8; i++) {
			f->got[f->n++] = ev[i];
			ev[i].kv.key = ev[i].kv.value = NULL;
		}
		pthread_cond_signal(&f->cond);
		pthread_mutex_unlock(&f->mu);
		gv_kv_events_free(ev, n);
		from = next;
	}
	pthread_mutex_lock(&f->mu);
	f->done = true;
	pthread_cond_signal(&f->cond);
	pthread_mutex_unlock(&f->mu);
	return NULL;
}

/* The member whose watch count is not 0 (-1: none, or several) */
static int watched_member(void)
{
	int found = -1;

	for (int i = 0; i < MEMBERS; i++)
		if (cl.pid[i] > 0 && etcd_watchers_on(cl.client[i]) > 0) {
			if (found >= 0)
				return -1;
			found = i;
		}
	return found;
}

/* The member the client talks to (kv_etcd_http.c tries the one that
 * answered last first) dies under a waiting watch. */
static void test_member_dies(void **state)
{
	struct follower f = { 0 };
	gv_kv *kv = NULL;
	gv_kv_entry *en = NULL;
	gv_err e = { "" };
	int64_t r1, rb, rc, lease = 0, rev = 0;
	gv_kv_cmp cmp;
	gv_kv_op op = { GV_KV_PUT, "k/c", "3", 0 };
	pthread_t th;
	bool ok = false;
	int victim = -1;

	(void)state;
	assert_int_equal(gv_kv_open(cl.url, &kv, &e), 0);
	assert_int_equal(gv_kv_lease_grant(kv, 10, &lease, &e), 0);
	assert_int_equal(gv_kv_put(kv, "k/a", "1", lease, &r1, &e), 0);
	pthread_mutex_init(&f.mu, NULL);
	pthread_cond_init(&f.cond, NULL);
	f.kv = kv;
	f.from = r1;
	assert_int_equal(pthread_create(&th, NULL, follower_main, &f), 0);
	pthread_mutex_lock(&f.mu);
	while (f.n < 1 && !f.done)
		pthread_cond_wait(&f.cond, &f.mu);
	pthread_mutex_unlock(&f.mu);
	assert_int_equal(f.n, 1);

	/* the member that serves the follower's waiting watch (its watcher
	 * count says so; polled, 30 s at most) dies: its client port
	 * refuses from now on */
	for (uint64_t t0 = gv_now_ms(); (victim = watched_member()) < 0 && gv_now_ms() - t0 < 30000;)
		usleep(20 * 1000);
	assert_true(victim >= 0);
	fprintf(stderr, "    (killing member %d, the one the client talks to)\n", victim);
	member_kill(victim);
	if (gv_kv_put(kv, "k/b", "2", 0, &rb, &e) < 0)
		fail_msg("put after the kill: %s", e.msg);
	assert_int_equal(gv_kv_get(kv, "k/b", &en, &e), 0);
	assert_int_equal(en->mod_rev, rb);
	gv_kv_entries_free(en, 1);
	cmp = (gv_kv_cmp){ "k/c", 0 };
	assert_int_equal(gv_kv_txn(kv, &cmp, 1, &op, 1, &ok, &rc, &e), 0);
	assert_true(ok);
	assert_int_equal(gv_kv_lease_keepalive(kv, lease, &e), 0);
	pthread_join(th, NULL);
	fprintf(stderr, "    (the follower saw %d failed calls)\n", f.errors);
	assert_int_equal(f.n, 3);
	assert_string_equal(f.got[0].kv.key, "k/a");
	assert_int_equal(f.got[0].kv.mod_rev, r1);
	assert_string_equal(f.got[1].kv.key, "k/b");
	assert_int_equal(f.got[1].kv.mod_rev, rb);
	assert_string_equal(f.got[2].kv.key, "k/c");
	assert_int_equal(f.got[2].kv.mod_rev, rc);
	for (size_t i = 0; i < f.n; i++) {
		free(f.got[i].kv.key);
		free(f.got[i].kv.value);
	}
	/* a handle opened now, with the dead member first, works too */
	gv_kv_close(kv);
	kv = NULL;
	assert_int_equal(gv_kv_open(cl.url, &kv, &e), 0);
	assert_int_equal(gv_kv_revision(kv, &rev, &e), 0);
	assert_int_equal(rev, rc);
	assert_int_equal(gv_kv_lease_revoke(kv, lease, &e), 0);
	assert_int_equal(gv_kv_get(kv, "k/a", &en, &e), -ENOENT);
	gv_kv_close(kv);
	pthread_mutex_destroy(&f.mu);
	pthread_cond_destroy(&f.cond);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_member_dies),
	};
	bool required = getenv("GV_TEST_ETCD") && !strcmp(getenv("GV_TEST_ETCD"), "require");
	int failed;

	if (!etcd_find()) {
		fprintf(stderr, "%s: no etcd binary ($GV_ETCD or etcd on PATH)\n",
			required ? "FAIL" : "SKIP");
		return required ? 1 : 0;
	}
	if (cluster_start() < 0) {
		for (int i = 0; i < MEMBERS; i++)
			member_kill(i);
		return 1;
	}
	failed = cmocka_run_group_tests_name("kv-etcd-cluster", tests, NULL, NULL);
	for (int i = 0; i < MEMBERS; i++)
		member_kill(i);
	gv_rm_rf(cl.dir);
	return failed ? 1 : 0;
}
