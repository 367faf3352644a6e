/* SPDX-License-Identifier: MIT */
/*
 * kv_bench.c - the controller's store (kv.h) measured per backend:
 * latency of put, get, compare-and-swap, a 1000-key range, lease
 * keepalive, and the delay from a put to a waiting watch seeing it.
 *
 *   gridvm-kv-bench [-n N] URL...     (bench/kv.sh starts an etcd and runs it)
 *
 * Prints one table: per URL and operation, the median and 99th percentile
 * in microseconds and the operations per second of one client thread.
 */
#include <gridvm/base/util.h>
#include <gridvm/grid/kv.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void row(const char *url, const char *op, uint64_t *t, int n)
{
	uint64_t sum = 0;

	for (int i = 0; i < n; i++)
		sum += t[i];
	qsort(t, (size_t)n, sizeof(*t), cmp_u64);
	printf("%-34.34s %-16s %6d %10" PRIu64 " %10" PRIu64 " %10.0f\n", url, op, n, t[n / 2],
	       t[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1], sum ? n * 1e6 / (double)sum : 0);
}

struct waiter {
	gv_kv *kv;
	const char *prefix;
	int64_t from;
	uint64_t seen_us;
	int r;
};

static void *waiter_main(void *arg)
{
	struct waiter *w = arg;
	gv_kv_event *ev = NULL;
	size_t n = 0;
	int64_t next;
	gv_err e;

	w->r = gv_kv_watch(w->kv, w->prefix, w->from, 10000, &ev, &n, &next, &e);
	w->seen_us = now_us();
	if (w->r == 0 && n == 0)
		w->r = -1;
	gv_kv_events_free(ev, n);
	return NULL;
}

static int bench(const char *url, int n)
{
	uint64_t *t = calloc((size_t)n, sizeof(*t)), t0;
	char key[128], prefix[64];
	gv_kv_entry *en = NULL;
	gv_kv *kv = NULL, *kv2 = NULL;
	int64_t rev = 0, lease = 0;
	size_t cnt = 0;
	gv_err e;
	int r = 0;

	snprintf(prefix, sizeof(prefix), "bench/%d-%" PRIu64 "/", (int)getpid(), now_us());
	if (!t || gv_kv_open(url, &kv, &e) < 0 || gv_kv_open(url, &kv2, &e) < 0) {
		fprintf(stderr, "kv-bench: %s: %s\n", url, e.msg);
		free(t);
		gv_kv_close(kv);
		return -1;
	}
	for (int i = 0; i < n && r == 0; i++) {
		snprintf(key, sizeof(key), "%sk%06d", prefix, i);
		t0 = now_us();
		r = gv_kv_put(kv, key, "{\"state\":\"queued\",\"cpus\":2}", 0, &rev, &e);
		t[i] = now_us() - t0;
	}
	if (r == 0)
		row(url, "put", t, n);
	for (int i = 0; i < n && r == 0; i++) {
		snprintf(key, sizeof(key), "%sk%06d", prefix, i);
		t0 = now_us();
		r = gv_kv_get(kv, key, &en, &e);
		t[i] = now_us() - t0;
		gv_kv_entries_free(en, 1);
		en = NULL;
	}
	if (r == 0)
		row(url, "get", t, n);
	snprintf(key, sizeof(key), "%scas", prefix);
	rev = 0;
	for (int i = 0; i < n && r == 0; i++) { /* each CAS on the last one's revision */
		gv_kv_cmp c = { key, rev };
		gv_kv_op op = { GV_KV_PUT, key, "bound", 0 };
		bool ok = false;

		t0 = now_us();
		r = gv_kv_txn(kv, &c, 1, &op, 1, &ok, &rev, &e);
		t[i] = now_us() - t0;
		if (r == 0 && !ok)
			r = -1;
	}
	if (r == 0)
		row(url, "cas txn", t, n);
	for (int i = 0; i < n / 50 + 1 && r == 0; i++) {
		t0 = now_us();
		r = gv_kv_range(kv, prefix, &en, &cnt, NULL, &e);
		t[i] = now_us() - t0;
		gv_kv_entries_free(en, cnt);
		en = NULL;
	}
	if (r == 0)
		row(url, "range 1000+ keys", t, n / 50 + 1);
	if (r == 0)
		r = gv_kv_lease_grant(kv, 60, &lease, &e);
	for (int i = 0; i < n / 10 && r == 0; i++) {
		t0 = now_us();
		r = gv_kv_lease_keepalive(kv, lease, &e);
		t[i] = now_us() - t0;
	}
	if (r == 0)
		row(url, "lease keepalive", t, n / 10);
	/* put -> a watch of another handle, waiting in another thread */
	for (int i = 0; i < n / 10 && r == 0; i++) {
		struct waiter w = { kv2, prefix, 0, 0, 0 };
		pthread_t th;
		uint64_t put_at;

		r = gv_kv_revision(kv, &w.from, &e);
		w.from++;
		if (r < 0 || pthread_create(&th, NULL, waiter_main, &w) != 0)
			break;
		usleep(20000); /* (let it wait: this measures the wake-up, not the start) */
		snprintf(key, sizeof(key), "%sw", prefix);
		put_at = now_us();
		r = gv_kv_put(kv, key, "x", 0, NULL, &e);
		pthread_join(th, NULL);
		if (w.r < 0)
			r = -1;
		t[i] = w.seen_us - put_at;
	}
	if (r == 0)
		row(url, "put -> watch", t, n / 10);
	if (r < 0)
		fprintf(stderr, "kv-bench: %s: %s\n", url, e.msg);
	if (lease)
		(void)gv_kv_lease_revoke(kv, lease, NULL);
	gv_kv_close(kv);
	gv_kv_close(kv2);
	free(t);
	return r;
}

int main(int argc, char **argv)
{
	int n = 1000, i = 1, bad = 0;

	if (argc > 2 && !strcmp(argv[1], "-n")) {
		n = atoi(argv[2]);
		i = 3;
	}
	if (i >= argc || n < 10) {
		fprintf(stderr, "usage: gridvm-kv-bench [-n N (>= 10)] URL...\n");
		return 2;
	}
	printf("%-34s %-16s %6s %10s %10s %10s\n", "store", "operation", "n", "median_us", "p99_us",
	       "ops/s");
	for (; i < argc; i++)
		bad |= bench(argv[i], n) < 0;
	return bad;
}
