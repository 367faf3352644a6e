/* SPDX-License-Identifier: MIT */
/*
 * kv_sqlite_lease.c - the SQLite store's leases (docs/kv.md "Leases and
 * the clock"): a TTL whose expiry time (wall clock, ms) is stored in the
 * file. They expire lazily: every operation first deletes the keys of the
 * leases whose time is up, each lease at a revision of its own; a waiting
 * watch does the same on every poll.
 */
#include "kv_sqlite_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* Does lease @id exist and has time left at @now? */
int sq_lease_alive(gv_kv_backend *b, int64_t id, int64_t now, int *ttl_s, int64_t *left,
		       gv_err *e)
{
	sqlite3_stmt *st = sq_q(b, Q_LEASE_GET, e);
	int rc, r = -ENOENT;

	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && sqlite3_column_int64(st, 1) > now) {
		if (ttl_s)
			*ttl_s = sqlite3_column_int(st, 0);
		if (left)
			*left = sqlite3_column_int64(st, 1) - now;
		r = 0;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return sq_fail(b, rc, "read a lease", e);
	if (r < 0)
		return gv_err_set(e, -ENOENT, "store: lease %" PRId64 " not found (expired or revoked)",
				  id);
	return 0;
}

/* Delete lease @id's keys, at a revision of their own, and the lease. */
static int revoke_locked(gv_kv_backend *b, struct chg *c, int64_t id, gv_err *e)
{
	sqlite3_stmt *st = sq_q(b, Q_LEASE_KEYS, e);
	char **keys = NULL, **nk;
	size_t n = 0;
	bool deleted;
	int rc, r = 0;

	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		nk = realloc(keys, (n + 1) * sizeof(*keys));
		if (!nk || !(nk[n] = strdup((const char *)sqlite3_column_text(st, 0)))) {
			keys = nk ? nk : keys;
			r = gv_err_set(e, -ENOMEM, "out of memory");
			break;
		}
		keys = nk;
		n++;
	}
	sqlite3_reset(st);
	if (r == 0 && rc != SQLITE_DONE)
		r = sq_fail(b, rc, "list a lease's keys", e);
	for (size_t i = 0; i < n && r == 0; i++)
		r = sq_chg_delete(b, c, keys[i], &deleted, e);
	for (size_t i = 0; i < n; i++)
		free(keys[i]);
	free(keys);
	if (r == 0)
		r = sq_chg_finish(b, c, e);
	if (r == 0 && (st = sq_q(b, Q_LEASE_DEL, e)) == NULL)
		r = -EIO;
	if (r == 0) {
		sqlite3_bind_int64(st, 1, id);
		r = sq_run(b, st, "delete a lease", e);
	}
	return r;
}

/* Apply every lease whose time is up (the start of every operation). */
int sq_expire(gv_kv_backend *b, gv_err *e)
{
	int64_t now = sq_wall_ms(), *ids = NULL, *ni;
	sqlite3_stmt *st = sq_q(b, Q_LEASE_DUE, e);
	size_t n = 0;
	struct chg c;
	int rc, r;

	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, now);
	rc = sqlite3_step(st); /* the common case: none due, no write lock */
	sqlite3_reset(st);
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return sq_fail(b, rc, "look for expired leases", e);
	r = sq_begin_write(b, e);
	if (r < 0)
		return r;
	r = sq_chg_start(b, &c, e);
	if (r == 0 && (st = sq_q(b, Q_LEASE_DUE, e)) == NULL)
		r = -EIO;
	if (r == 0) {
		sqlite3_bind_int64(st, 1, now);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			ni = realloc(ids, (n + 1) * sizeof(*ids));
			if (!ni) {
				r = gv_err_set(e, -ENOMEM, "out of memory");
				break;
			}
			ids = ni;
			ids[n++] = sqlite3_column_int64(st, 0);
		}
		sqlite3_reset(st);
		if (r == 0 && rc != SQLITE_DONE)
			r = sq_fail(b, rc, "list expired leases", e);
	}
	for (size_t i = 0; i < n && r == 0; i++)
		r = revoke_locked(b, &c, ids[i], e);
	free(ids);
	return sq_end_write(b, r, e);
}

int sq_lease_grant(gv_kv_backend *b, int ttl_s, int64_t *id, gv_err *e)
{
	sqlite3_stmt *st;
	int r;

	int64_t got = 0;

	pthread_mutex_lock(&b->mu);
	uint64_t c0 = b->committed;
	r = sq_expire(b, e);
	st = r < 0 ? NULL : sq_q(b, Q_LEASE_ADD, e);
	if (st) {
		sqlite3_bind_int(st, 1, ttl_s);
		sqlite3_bind_int64(st, 2, sq_wall_ms() + (int64_t)ttl_s * 1000);
		r = sq_run(b, st, "grant a lease", e);
		if (r == 0)
			got = sqlite3_last_insert_rowid(b->db);
		if (r == 0 && !b->batch)
			sq_note_commit(b); /* its own transaction */
	} else if (r == 0) {
		r = -EIO;
	}
	r = sq_op_end(b, c0, r, e);
	if (r == 0)
		*id = got;
	return r;
}

int sq_lease_keepalive(gv_kv_backend *b, int64_t id, gv_err *e)
{
	sqlite3_stmt *st;
	int r;

	pthread_mutex_lock(&b->mu);
	uint64_t c0 = b->committed;
	r = sq_expire(b, e);
	st = r < 0 ? NULL : sq_q(b, Q_LEASE_RENEW, e);
	if (st) {
		sqlite3_bind_int64(st, 1, id);
		sqlite3_bind_int64(st, 2, sq_wall_ms());
		r = sq_run(b, st, "renew a lease", e);
		if (r == 0 && sqlite3_changes(b->db) == 0)
			r = gv_err_set(e, -ENOENT,
				       "store: lease %" PRId64 " not found (expired or revoked)", id);
		if (r == 0 && !b->batch)
			sq_note_commit(b);
	} else if (r == 0) {
		r = -EIO;
	}
	return sq_op_end(b, c0, r, e);
}

int sq_lease_revoke(gv_kv_backend *b, int64_t id, gv_err *e)
{
	struct chg c;
	int r;

	pthread_mutex_lock(&b->mu);
	uint64_t c0 = b->committed;
	r = sq_expire(b, e);
	if (r == 0)
		r = sq_begin_write(b, e);
	if (r < 0)
		goto out;
	r = sq_lease_alive(b, id, sq_wall_ms(), NULL, NULL, e);
	if (r == 0)
		r = sq_chg_start(b, &c, e);
	if (r == 0)
		r = revoke_locked(b, &c, id, e);
	r = sq_end_write(b, r, e);
out:
	return sq_op_end(b, c0, r, e);
}

int sq_lease_ttl(gv_kv_backend *b, int64_t id, int *ttl_s, int64_t *remaining_ms,
			gv_err *e)
{
	int r;

	pthread_mutex_lock(&b->mu);
	uint64_t c0 = b->committed;
	r = sq_expire(b, e);
	if (r == 0)
		r = sq_lease_alive(b, id, sq_wall_ms(), ttl_s, remaining_ms, e);
	return sq_op_end(b, c0, r, e);
}
