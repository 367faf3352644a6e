/* SPDX-License-Identifier: MIT */
/*
 * kv.c - the state store's front: picks a backend by URL (a table of
 * schemes), checks arguments once for every backend, and builds put,
 * delete and get on the backends' txn and range (kv.h, kv_internal.h).
 */
#include <gridvm/grid/kv.h>

#include "kv_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct gv_kv {
	const gv_kv_ops *ops;
	gv_kv_backend *b;
	pthread_mutex_t mu; /* the fence */
	char *fence_key;    /* NULL: none */
	int64_t fence_rev;
};

/* URL schemes; a NULL ops: known, but not built yet */
static const struct {
	const char *scheme;
	const gv_kv_ops *ops;
} backends[] = {
	{ "sqlite:", &gv_kv_sqlite_ops },
	{ "etcd://", &gv_kv_etcd_ops }, /* kv_etcd.c: libcurl + jansson, etcd's JSON gateway */
	{ "etcds://", &gv_kv_etcds_ops }, /* the same over mutual TLS (the grid's certificates) */
};

void gv_kv_entries_free(gv_kv_entry *v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++) {
		free(v[i].key);
		free(v[i].value);
	}
	free(v);
}

void gv_kv_events_free(gv_kv_event *ev, size_t n)
{
	if (!ev)
		return;
	for (size_t i = 0; i < n; i++) {
		free(ev[i].kv.key);
		free(ev[i].kv.value);
	}
	free(ev);
}

static int grow(void **v, size_t size, size_t n, size_t *cap)
{
	void *nv;
	size_t ncap;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 16;
	nv = realloc(*v, ncap * size);
	if (!nv)
		return -ENOMEM;
	memset((char *)nv + *cap * size, 0, (ncap - *cap) * size);
	*v = nv;
	*cap = ncap;
	return 0;
}

int gv_kv_entries_grow(gv_kv_entry **v, size_t n, size_t *cap)
{
	return grow((void **)v, sizeof(**v), n, cap);
}

int gv_kv_events_grow(gv_kv_event **v, size_t n, size_t *cap)
{
	return grow((void **)v, sizeof(**v), n, cap);
}

int gv_kv_open(const char *url, gv_kv **out, gv_err *e)
{
	gv_kv *kv;
	size_t i, len;
	int r;

	*out = NULL;
	if (!url || !*url)
		return gv_err_set(e, -EINVAL, "no store URL (expected sqlite:PATH)");
	for (i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
		len = strlen(backends[i].scheme);
		if (!strncmp(url, backends[i].scheme, len))
			break;
	}
	if (i == sizeof(backends) / sizeof(backends[0]))
		return gv_err_set(e, -EINVAL,
				  "store URL '%s': unknown kind (expected sqlite:PATH, "
				  "etcd://HOST:PORT[,HOST:PORT...] or etcds://...)",
				  url);
	if (!backends[i].ops)
		return gv_err_set(e, -ENOTSUP, "store URL '%s': the %.*s backend is not built yet",
				  url, (int)strcspn(backends[i].scheme, ":"), backends[i].scheme);
	if (!url[len])
		return gv_err_set(e, -EINVAL, "store URL '%s': nothing after '%s'", url,
				  backends[i].scheme);
	kv = calloc(1, sizeof(*kv));
	if (!kv)
		return gv_err_set(e, -ENOMEM, "out of memory");
	kv->ops = backends[i].ops;
	r = kv->ops->open(url + len, &kv->b, e);
	if (r < 0) {
		free(kv);
		return r;
	}
	pthread_mutex_init(&kv->mu, NULL);
	*out = kv;
	return 0;
}

void gv_kv_close(gv_kv *kv)
{
	if (!kv)
		return;
	kv->ops->close(kv->b);
	pthread_mutex_destroy(&kv->mu);
	free(kv->fence_key);
	free(kv);
}

static int check_key(const char *key, gv_err *e)
{
	if (!key || !*key)
		return gv_err_set(e, -EINVAL, "store: an empty key");
	return 0;
}

int gv_kv_fence(gv_kv *kv, const char *key, int64_t mod_rev, gv_err *e)
{
	char *k = NULL;

	if (key && (check_key(key, e) < 0 || mod_rev <= 0))
		return gv_err_set(e, -EINVAL, "store: a fence needs a key and its mod_rev");
	if (key && !(k = strdup(key)))
		return gv_err_set(e, -ENOMEM, "out of memory");
	pthread_mutex_lock(&kv->mu);
	free(kv->fence_key);
	kv->fence_key = k;
	kv->fence_rev = mod_rev;
	pthread_mutex_unlock(&kv->mu);
	return 0;
}

/* The backend's txn, with the fence's comparison added when there is
 * one; when the comparisons fail, -ESTALE if it was the fence's. */
static int fenced_txn(gv_kv *kv, const gv_kv_cmp *cmp, size_t ncmp, const gv_kv_op *ops,
		      size_t nops, bool *ok, int64_t *rev, size_t *changed, gv_err *e)
{
	gv_kv_cmp *all;
	gv_kv_entry *en = NULL;
	char *key = NULL;
	int64_t want, now;
	size_t n = 0;
	int r;

	pthread_mutex_lock(&kv->mu);
	if (kv->fence_key && !(key = strdup(kv->fence_key))) {
		pthread_mutex_unlock(&kv->mu);
		return gv_err_set(e, -ENOMEM, "out of memory");
	}
	want = kv->fence_rev;
	pthread_mutex_unlock(&kv->mu);
	if (!key)
		return kv->ops->txn(kv->b, cmp, ncmp, ops, nops, ok, rev, changed, e);
	all = malloc((ncmp + 1) * sizeof(*all));
	if (!all) {
		free(key);
		return gv_err_set(e, -ENOMEM, "out of memory");
	}
	if (ncmp)
		memcpy(all, cmp, ncmp * sizeof(*cmp));
	all[ncmp] = (gv_kv_cmp){ key, want };
	r = kv->ops->txn(kv->b, all, ncmp + 1, ops, nops, ok, rev, changed, e);
	if (r == 0 && !*ok) {
		r = kv->ops->range(kv->b, key, true, &en, &n, &now, e);
		if (r == 0 && (n == 0 || en[0].mod_rev != want))
			r = gv_err_set(e, -ESTALE,
				       "store: fenced: '%s' is no longer at revision %" PRId64
				       " (this writer lost its lease)",
				       key, want);
		gv_kv_entries_free(en, n);
	}
	free(all);
	free(key);
	return r;
}

void gv_kv_batch_begin(gv_kv *kv)
{
	gv_err e;

	if (kv->ops->batch)
		(void)kv->ops->batch(kv->b, true, &e); /* failed: no batch, no harm */
}

int gv_kv_batch_commit(gv_kv *kv, gv_err *e)
{
	return kv->ops->batch ? kv->ops->batch(kv->b, false, e) : 0;
}

int gv_kv_sync(gv_kv *kv, gv_err *e)
{
	return kv->ops->sync ? kv->ops->sync(kv->b, e) : 0;
}

int gv_kv_batch_end(gv_kv *kv, gv_err *e)
{
	int r = gv_kv_batch_commit(kv, e);

	return r < 0 ? r : gv_kv_sync(kv, e);
}

int gv_kv_revision(gv_kv *kv, int64_t *rev, gv_err *e)
{
	return kv->ops->revision(kv->b, rev, e);
}

int gv_kv_get(gv_kv *kv, const char *key, gv_kv_entry **out, gv_err *e)
{
	gv_kv_entry *v = NULL;
	size_t n = 0;
	int64_t rev;
	int r;

	*out = NULL;
	r = check_key(key, e);
	if (r < 0)
		return r;
	r = kv->ops->range(kv->b, key, true, &v, &n, &rev, e);
	if (r < 0)
		return r;
	if (n == 0) {
		gv_kv_entries_free(v, 0);
		return gv_err_set(e, -ENOENT, "store: no key '%s'", key);
	}
	*out = v;
	return 0;
}

int gv_kv_range(gv_kv *kv, const char *prefix, gv_kv_entry **out, size_t *n, int64_t *rev,
		gv_err *e)
{
	int64_t r64;

	*out = NULL;
	*n = 0;
	return kv->ops->range(kv->b, prefix ? prefix : "", false, out, n, rev ? rev : &r64, e);
}

int gv_kv_put(gv_kv *kv, const char *key, const char *value, int64_t lease, int64_t *rev,
	      gv_err *e)
{
	gv_kv_op op = { .kind = GV_KV_PUT, .key = key, .value = value, .lease = lease };
	bool ok;

	return gv_kv_txn(kv, NULL, 0, &op, 1, &ok, rev, e);
}

int gv_kv_delete(gv_kv *kv, const char *key, int64_t *rev, gv_err *e)
{
	gv_kv_op op = { .kind = GV_KV_DELETE, .key = key };
	size_t changed = 0;
	int64_t r64;
	bool ok;
	int r;

	r = check_key(key, e);
	if (r < 0)
		return r;
	r = fenced_txn(kv, NULL, 0, &op, 1, &ok, rev ? rev : &r64, &changed, e);
	if (r < 0)
		return r;
	if (changed == 0)
		return gv_err_set(e, -ENOENT, "store: no key '%s'", key);
	return 0;
}

int gv_kv_txn(gv_kv *kv, const gv_kv_cmp *cmp, size_t ncmp, const gv_kv_op *ops, size_t nops,
	      bool *ok, int64_t *rev, gv_err *e)
{
	size_t changed;
	int64_t r64;
	int r;

	*ok = false;
	for (size_t i = 0; i < ncmp; i++) {
		r = check_key(cmp[i].key, e);
		if (r < 0)
			return r;
		if (cmp[i].mod_rev < 0)
			return gv_err_set(e, -EINVAL, "store: a negative mod_rev for '%s'",
					  cmp[i].key);
	}
	for (size_t i = 0; i < nops; i++) {
		r = check_key(ops[i].key, e);
		if (r < 0)
			return r;
		if (ops[i].kind == GV_KV_PUT && !ops[i].value)
			return gv_err_set(e, -EINVAL, "store: no value for '%s'", ops[i].key);
		if (ops[i].kind != GV_KV_PUT && ops[i].kind != GV_KV_DELETE)
			return gv_err_set(e, -EINVAL, "store: unknown operation on '%s'",
					  ops[i].key);
		for (size_t j = 0; j < i; j++)
			if (!strcmp(ops[i].key, ops[j].key))
				return gv_err_set(e, -EINVAL,
						  "store: key '%s' twice in one transaction",
						  ops[i].key);
	}
	return fenced_txn(kv, cmp, ncmp, ops, nops, ok, rev ? rev : &r64, &changed, e);
}

int gv_kv_watch(gv_kv *kv, const char *prefix, int64_t from_rev, int timeout_ms,
		gv_kv_event **ev, size_t *n, int64_t *next, gv_err *e)
{
	*ev = NULL;
	*n = 0;
	if (from_rev < 0)
		return gv_err_set(e, -EINVAL, "store: watch from a negative revision");
	return kv->ops->watch(kv->b, prefix ? prefix : "", from_rev,
			      timeout_ms < 0 ? 0 : timeout_ms, ev, n, next, e);
}

int gv_kv_compact(gv_kv *kv, int64_t rev, gv_err *e)
{
	return kv->ops->compact(kv->b, rev, e);
}

int gv_kv_lease_grant(gv_kv *kv, int ttl_s, int64_t *id, gv_err *e)
{
	if (ttl_s <= 0)
		return gv_err_set(e, -EINVAL, "store: a lease's TTL must be at least 1 s");
	return kv->ops->lease_grant(kv->b, ttl_s, id, e);
}

int gv_kv_lease_keepalive(gv_kv *kv, int64_t id, gv_err *e)
{
	return kv->ops->lease_keepalive(kv->b, id, e);
}

int gv_kv_lease_revoke(gv_kv *kv, int64_t id, gv_err *e)
{
	return kv->ops->lease_revoke(kv->b, id, e);
}

int gv_kv_lease_ttl(gv_kv *kv, int64_t id, int *ttl_s, int64_t *remaining_ms, gv_err *e)
{
	int t;
	int64_t ms;

	return kv->ops->lease_ttl(kv->b, id, ttl_s ? ttl_s : &t,
				  remaining_ms ? remaining_ms : &ms, e);
}
