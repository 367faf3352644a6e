/* SPDX-License-Identifier: MIT */
/*
 * kv_sqlite.c - the state store in one SQLite file ("sqlite:PATH"): the
 * embedded backend of kv.h, with etcd's revisions, transactions, watches
 * and leases (docs/kv.md has the schema and the reasoning). This file
 * opens the store, makes changes, reads and watches;
 * kv_sqlite_commit.c has the transactions and the group commit,
 * kv_sqlite_lease.c the leases (kv_sqlite_internal.h).
 *
 * Every change is one SQLite transaction (BEGIN IMMEDIATE) that reads the
 * store's revision from meta, applies its operations at the next one,
 * appends them to history (what watches read) and writes the revision
 * back. Commits do not wait for the disk (WAL, synchronous=NORMAL): the
 * handle syncs the WAL itself before a change is reported done, one
 * fdatasync for every commit made meanwhile (kv_sqlite_commit.c). One
 * mutex per handle serialises its SQLite use; a condition variable wakes
 * the handle's watches after each of its writes, and a poll every
 * POLL_MS sees the writes of other handles and processes.
 */
#include "kv_sqlite_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SCHEMA_VERSION 1
#define POLL_MS 50
/* automatic compaction: keep the last HISTORY_KEEP revisions, trimming
 * once HISTORY_SLACK more have piled up */
#define HISTORY_KEEP 10000
#define HISTORY_SLACK 1000

enum { EV_PUT = 0, EV_DELETE = 1 }; /* history.kind */

static const char *const sql[Q_N] = {
	[Q_META] = "SELECT revision, compacted FROM meta",
	[Q_SET_REV] = "UPDATE meta SET revision = ?1",
	[Q_SET_COMPACTED] = "UPDATE meta SET compacted = ?1",
	[Q_HIST_TRIM] = "DELETE FROM history WHERE rev < ?1",
	[Q_GET] = "SELECT key, value, create_rev, mod_rev, version, lease FROM kv WHERE key = ?1",
	[Q_RANGE] = "SELECT key, value, create_rev, mod_rev, version, lease FROM kv"
		    " WHERE key >= ?1 AND (?2 IS NULL OR key < ?2) ORDER BY key",
	[Q_MODREV] = "SELECT mod_rev FROM kv WHERE key = ?1",
	[Q_KV_PREV] = "SELECT create_rev, version FROM kv WHERE key = ?1",
	[Q_KV_PUT] = "INSERT OR REPLACE INTO kv (key, value, create_rev, mod_rev, version, lease)"
		     " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[Q_KV_DEL] = "DELETE FROM kv WHERE key = ?1",
	[Q_HIST_ADD] = "INSERT INTO history (rev, sub, key, kind, value, create_rev, version, lease)"
		       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
	[Q_HIST_SCAN] = "SELECT rev, kind, key, value, create_rev, version, lease FROM history"
			" WHERE rev >= ?1 AND key >= ?2 AND (?3 IS NULL OR key < ?3)"
			" ORDER BY rev, sub",
	[Q_LEASE_GET] = "SELECT ttl, expires_at_ms FROM leases WHERE id = ?1",
	[Q_LEASE_ADD] = "INSERT INTO leases (ttl, expires_at_ms) VALUES (?1, ?2)",
	[Q_LEASE_RENEW] = "UPDATE leases SET expires_at_ms = ?2 + ttl * 1000"
			  " WHERE id = ?1 AND expires_at_ms > ?2",
	[Q_LEASE_DEL] = "DELETE FROM leases WHERE id = ?1",
	[Q_LEASE_DUE] = "SELECT id FROM leases WHERE expires_at_ms <= ?1 ORDER BY expires_at_ms, id",
	[Q_LEASE_KEYS] = "SELECT key FROM kv WHERE lease = ?1 ORDER BY key",
};

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS meta ("
	" id INTEGER PRIMARY KEY CHECK (id = 0),"
	" revision INTEGER NOT NULL, compacted INTEGER NOT NULL);"
	"INSERT OR IGNORE INTO meta (id, revision, compacted) VALUES (0, 1, 0);"
	"CREATE TABLE IF NOT EXISTS kv ("
	" key TEXT PRIMARY KEY, value TEXT NOT NULL, create_rev INTEGER NOT NULL,"
	" mod_rev INTEGER NOT NULL, version INTEGER NOT NULL, lease INTEGER NOT NULL)"
	" WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS kv_lease ON kv (lease) WHERE lease != 0;"
	"CREATE TABLE IF NOT EXISTS history ("
	" rev INTEGER NOT NULL, sub INTEGER NOT NULL, key TEXT NOT NULL,"
	" kind INTEGER NOT NULL, value TEXT, create_rev INTEGER NOT NULL,"
	" version INTEGER NOT NULL, lease INTEGER NOT NULL, PRIMARY KEY (rev, sub))"
	" WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS leases ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT, ttl INTEGER NOT NULL,"
	" expires_at_ms INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS leases_expiry ON leases (expires_at_ms);";

int64_t sq_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int sq_fail(gv_kv_backend *b, int rc, const char *what, gv_err *e)
{
	if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
		return gv_err_set(e, -EBUSY,
				  "store sqlite:%s: %s: busy (another process held it for %d ms)",
				  b->path, what, BUSY_TIMEOUT_MS);
	if (rc == SQLITE_NOMEM)
		return gv_err_set(e, -ENOMEM, "store sqlite:%s: %s: out of memory", b->path, what);
	return gv_err_set(e, -EIO, "store sqlite:%s: %s: %s", b->path, what, sqlite3_errmsg(b->db));
}

/* The prepared statement @id, reset and unbound; NULL with @e set. */
sqlite3_stmt *sq_q(gv_kv_backend *b, enum q id, gv_err *e)
{
	int rc;

	if (!b->st[id]) {
		rc = sqlite3_prepare_v3(b->db, sql[id], -1, SQLITE_PREPARE_PERSISTENT, &b->st[id],
					NULL);
		if (rc != SQLITE_OK) {
			sq_fail(b, rc, "prepare", e);
			return NULL;
		}
	}
	sqlite3_reset(b->st[id]);
	sqlite3_clear_bindings(b->st[id]);
	return b->st[id];
}

/* Run a statement that returns no rows (binding done); reset it. */
int sq_run(gv_kv_backend *b, sqlite3_stmt *st, const char *what, gv_err *e)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : sq_fail(b, rc, what, e);
}

int sq_exec(gv_kv_backend *b, const char *stmt, gv_err *e)
{
	int rc = sqlite3_exec(b->db, stmt, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : sq_fail(b, rc, stmt, e);
}

/* A read's snapshot (inside a batch: the batch's transaction). */
int sq_read_begin(gv_kv_backend *b, gv_err *e)
{
	return b->batch ? 0 : sq_exec(b, "BEGIN", e);
}

void sq_read_end(gv_kv_backend *b)
{
	if (!b->batch)
		sqlite3_exec(b->db, "COMMIT", NULL, NULL, NULL);
}

static int meta_read(gv_kv_backend *b, int64_t *rev, int64_t *compacted, gv_err *e)
{
	sqlite3_stmt *st = sq_q(b, Q_META, e);
	int rc;

	if (!st)
		return -EIO;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*rev = sqlite3_column_int64(st, 0);
		if (compacted)
			*compacted = sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	if (rc == SQLITE_DONE)
		return gv_err_set(e, -EIO, "store sqlite:%s: no meta row (not a store?)", b->path);
	return rc == SQLITE_ROW ? 0 : sq_fail(b, rc, "read the revision", e);
}

/* --- changes, inside a write transaction --- */

int sq_chg_start(gv_kv_backend *b, struct chg *c, gv_err *e)
{
	c->sub = 0;
	return meta_read(b, &c->rev, &c->compacted, e);
}

static int history_add(gv_kv_backend *b, struct chg *c, int kind, const char *key,
		       const char *value, int64_t create_rev, int64_t version, int64_t lease,
		       gv_err *e)
{
	sqlite3_stmt *st = sq_q(b, Q_HIST_ADD, e);

	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, c->rev + 1);
	sqlite3_bind_int(st, 2, c->sub++);
	sqlite3_bind_text(st, 3, key, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 4, kind);
	if (value)
		sqlite3_bind_text(st, 5, value, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, create_rev);
	sqlite3_bind_int64(st, 7, version);
	sqlite3_bind_int64(st, 8, lease);
	return sq_run(b, st, "append to the history", e);
}

static int chg_put(gv_kv_backend *b, struct chg *c, const char *key, const char *value,
		   int64_t lease, gv_err *e)
{
	sqlite3_stmt *st = sq_q(b, Q_KV_PREV, e);
	int64_t create_rev = c->rev + 1, version = 1;
	int rc, r;

	if (!st)
		return -EIO;
	if (lease) {
		r = sq_lease_alive(b, lease, sq_wall_ms(), NULL, NULL, e);
		if (r < 0)
			return r;
	}
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		create_rev = sqlite3_column_int64(st, 0);
		version = sqlite3_column_int64(st, 1) + 1;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return sq_fail(b, rc, "read a key", e);
	st = sq_q(b, Q_KV_PUT, e);
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, create_rev);
	sqlite3_bind_int64(st, 4, c->rev + 1);
	sqlite3_bind_int64(st, 5, version);
	sqlite3_bind_int64(st, 6, lease);
	r = sq_run(b, st, "write a key", e);
	if (r < 0)
		return r;
	return history_add(b, c, EV_PUT, key, value, create_rev, version, lease, e);
}

/* *deleted: whether @key was there */
int sq_chg_delete(gv_kv_backend *b, struct chg *c, const char *key, bool *deleted,
		      gv_err *e)
{
	sqlite3_stmt *st = sq_q(b, Q_KV_DEL, e);
	int r;

	*deleted = false;
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	r = sq_run(b, st, "delete a key", e);
	if (r < 0 || sqlite3_changes(b->db) == 0)
		return r;
	*deleted = true;
	return history_add(b, c, EV_DELETE, key, NULL, 0, 0, 0, e);
}

static int compact_locked(gv_kv_backend *b, int64_t rev, gv_err *e)
{
	sqlite3_stmt *st = sq_q(b, Q_HIST_TRIM, e);
	int r;

	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, rev);
	r = sq_run(b, st, "compact the history", e);
	if (r < 0)
		return r;
	st = sq_q(b, Q_SET_COMPACTED, e);
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, rev);
	return sq_run(b, st, "compact the history", e);
}

/* Close one change: when it changed something, the store moves to the
 * next revision (and c->rev with it); old history is trimmed. */
int sq_chg_finish(gv_kv_backend *b, struct chg *c, gv_err *e)
{
	sqlite3_stmt *st;
	int r;

	if (c->sub == 0)
		return 0;
	st = sq_q(b, Q_SET_REV, e);
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, c->rev + 1);
	r = sq_run(b, st, "write the revision", e);
	if (r < 0)
		return r;
	c->rev++;
	c->sub = 0;
	b->wrote = true;
	if (c->rev - c->compacted > HISTORY_KEEP + HISTORY_SLACK) {
		r = compact_locked(b, c->rev - HISTORY_KEEP, e);
		if (r < 0)
			return r;
		c->compacted = c->rev - HISTORY_KEEP;
	}
	return 0;
}

/* --- the backend's operations --- */

static void sq_close(gv_kv_backend *b)
{
	if (!b)
		return;
	for (int i = 0; i < Q_N; i++)
		sqlite3_finalize(b->st[i]);
	sqlite3_close(b->ckpt);
	sqlite3_close(b->db);
	if (b->wal_fd >= 0)
		close(b->wal_fd);
	pthread_cond_destroy(&b->changed);
	pthread_cond_destroy(&b->sync_done);
	pthread_mutex_destroy(&b->mu);
	free(b->wal_path);
	free(b->path);
	free(b);
}

static int sq_init(gv_kv_backend *b, gv_err *e)
{
	sqlite3_stmt *st = NULL;
	int rc, r, version = 0;

	sqlite3_busy_timeout(b->db, BUSY_TIMEOUT_MS);
	/* WAL: commits write the log without a sync (NORMAL) and sq_sync
	 * syncs it before a change is reported done; a file system without
	 * WAL keeps the rollback journal and FULL (a sync per commit) */
	rc = sqlite3_prepare_v2(b->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
		b->group = !sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal");
	sqlite3_finalize(st);
	st = NULL;
	if (rc != SQLITE_ROW)
		return sq_fail(b, rc, "PRAGMA journal_mode=WAL", e);
	r = sq_exec(b, b->group ? "PRAGMA synchronous=NORMAL" : "PRAGMA synchronous=FULL", e);
	if (r == 0)
		r = sq_exec(b, "BEGIN IMMEDIATE", e);
	if (r < 0)
		return r;
	rc = sqlite3_prepare_v2(b->db, "PRAGMA user_version", -1, &st, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
		version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW)
		r = sq_fail(b, rc, "read the schema version", e);
	else if (version > SCHEMA_VERSION)
		r = gv_err_set(e, -EPROTO,
			       "store sqlite:%s: schema version %d is newer than this gridvm's (%d)",
			       b->path, version, SCHEMA_VERSION);
	if (r == 0)
		r = sq_exec(b, schema, e);
	if (r == 0 && version < SCHEMA_VERSION)
		r = sq_exec(b, "PRAGMA user_version = 1", e);
	return sq_end_write(b, r, e);
}

static int sq_open(const char *where, gv_kv_backend **out, gv_err *e)
{
	gv_kv_backend *b = calloc(1, sizeof(*b));
	pthread_condattr_t ca;
	int rc, r;

	*out = NULL;
	if (!b || !(b->path = strdup(where))) {
		free(b);
		return gv_err_set(e, -ENOMEM, "out of memory");
	}
	b->wal_fd = -1;
	pthread_mutex_init(&b->mu, NULL);
	pthread_cond_init(&b->sync_done, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&b->changed, &ca);
	pthread_condattr_destroy(&ca);
	rc = sqlite3_open_v2(where, &b->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
	if (rc != SQLITE_OK) {
		r = gv_err_set(e, rc == SQLITE_NOMEM ? -ENOMEM : -EIO,
			       "store sqlite:%s: cannot open: %s", where,
			       b->db ? sqlite3_errmsg(b->db) : sqlite3_errstr(rc));
		sq_close(b);
		return r;
	}
	r = sq_init(b, e);
	if (r == 0 && b->group) {
		/* the log on disk, and its name in the directory, from now on */
		char msg[sizeof(b->sync_msg)];
		const char *wal = sqlite3_filename_wal(sqlite3_db_filename(b->db, "main"));
		if (!wal || !*wal || !(b->wal_path = strdup(wal)))
			r = gv_err_set(e, -EIO, "store sqlite:%s: no WAL file name", where);
		else if ((r = sq_wal_sync(b, msg, sizeof(msg))) < 0)
			gv_err_set(e, r, "%s", msg);
		b->synced = b->committed;
		if (r == 0)
			sq_checkpointer(b);
	}
	if (r < 0) {
		sq_close(b);
		return r;
	}
	*out = b;
	return 0;
}

static int sq_revision(gv_kv_backend *b, int64_t *rev, gv_err *e)
{
	int r;

	pthread_mutex_lock(&b->mu);
	uint64_t c0 = b->committed;
	r = sq_expire(b, e);
	if (r == 0)
		r = meta_read(b, rev, NULL, e);
	return sq_op_end(b, c0, r, e);
}

static int entry_from_row(sqlite3_stmt *st, gv_kv_entry *en)
{
	en->key = strdup((const char *)sqlite3_column_text(st, 0));
	en->value = strdup((const char *)sqlite3_column_text(st, 1));
	en->create_rev = sqlite3_column_int64(st, 2);
	en->mod_rev = sqlite3_column_int64(st, 3);
	en->version = sqlite3_column_int64(st, 4);
	en->lease = sqlite3_column_int64(st, 5);
	return en->key && en->value ? 0 : -ENOMEM;
}

/* The end of the key range of @prefix (etcd's "prefix end": the prefix
 * with its last byte below 0xff incremented); NULL: no end. */
static char *prefix_end(const char *prefix, size_t *len)
{
	size_t n = strlen(prefix);
	char *end;

	while (n > 0 && (unsigned char)prefix[n - 1] == 0xff)
		n--;
	if (n == 0)
		return NULL;
	end = strndup(prefix, n);
	if (end)
		end[n - 1] = (char)((unsigned char)end[n - 1] + 1);
	*len = n;
	return end;
}

static int sq_range(gv_kv_backend *b, const char *prefix, bool exact, gv_kv_entry **out,
		    size_t *n, int64_t *rev, gv_err *e)
{
	gv_kv_entry *v = NULL;
	size_t cnt = 0, cap = 0, elen = 0;
	char *end = exact ? NULL : prefix_end(prefix, &elen);
	sqlite3_stmt *st;
	int rc = SQLITE_DONE, r;

	pthread_mutex_lock(&b->mu);
	uint64_t c0 = b->committed;
	r = sq_expire(b, e);
	if (r == 0)
		r = sq_read_begin(b, e); /* one snapshot for the revision and the rows */
	if (r < 0)
		goto out;
	r = meta_read(b, rev, NULL, e);
	st = r < 0 ? NULL : sq_q(b, exact ? Q_GET : Q_RANGE, e);
	if (st) {
		sqlite3_bind_text(st, 1, prefix, -1, SQLITE_STATIC);
		if (end)
			sqlite3_bind_text(st, 2, end, (int)elen, SQLITE_STATIC);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			r = gv_kv_entries_grow(&v, cnt, &cap);
			if (r == 0)
				r = entry_from_row(st, &v[cnt]);
			cnt++;
			if (r < 0) {
				r = gv_err_set(e, -ENOMEM, "out of memory");
				break;
			}
		}
		sqlite3_reset(st);
		if (r == 0 && rc != SQLITE_DONE)
			r = sq_fail(b, rc, "read keys", e);
	} else if (r == 0) {
		r = -EIO;
	}
	sq_read_end(b);
out:
	r = sq_op_end(b, c0, r, e);
	free(end);
	if (r < 0) {
		gv_kv_entries_free(v, cnt);
		return r;
	}
	*out = v;
	*n = cnt;
	return 0;
}

/* Does @cmp hold? */
static int cmp_holds(gv_kv_backend *b, const gv_kv_cmp *cmp, bool *holds, gv_err *e)
{
	sqlite3_stmt *st = sq_q(b, Q_MODREV, e);
	int64_t mod = 0;
	int rc;

	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, cmp->key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		mod = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return sq_fail(b, rc, "compare a key", e);
	*holds = mod == cmp->mod_rev;
	return 0;
}

static int sq_txn(gv_kv_backend *b, const gv_kv_cmp *cmp, size_t ncmp, const gv_kv_op *ops,
		  size_t nops, bool *ok, int64_t *rev, size_t *changed, gv_err *e)
{
	bool holds = true, deleted;
	struct chg c;
	size_t cnt = 0;
	int r;

	pthread_mutex_lock(&b->mu);
	uint64_t c0 = b->committed;
	r = sq_expire(b, e);
	if (r == 0)
		r = sq_begin_write(b, e);
	if (r < 0)
		goto out;
	r = sq_chg_start(b, &c, e);
	for (size_t i = 0; i < ncmp && r == 0 && holds; i++)
		r = cmp_holds(b, &cmp[i], &holds, e);
	for (size_t i = 0; i < nops && r == 0 && holds; i++) {
		if (ops[i].kind == GV_KV_PUT) {
			r = chg_put(b, &c, ops[i].key, ops[i].value, ops[i].lease, e);
			cnt++;
		} else {
			r = sq_chg_delete(b, &c, ops[i].key, &deleted, e);
			cnt += deleted;
		}
	}
	if (r == 0)
		r = sq_chg_finish(b, &c, e);
	r = sq_end_write(b, r, e);
out:
	r = sq_op_end(b, c0, r, e);
	if (r == 0) {
		*ok = holds;
		*rev = c.rev;
		*changed = cnt;
	}
	return r;
}

static int event_from_row(sqlite3_stmt *st, gv_kv_event *ev)
{
	ev->kind = sqlite3_column_int(st, 1) == EV_DELETE ? GV_KV_EV_DELETE : GV_KV_EV_PUT;
	ev->kv.mod_rev = sqlite3_column_int64(st, 0);
	ev->kv.key = strdup((const char *)sqlite3_column_text(st, 2));
	if (!ev->kv.key)
		return -ENOMEM;
	if (ev->kind == GV_KV_EV_DELETE)
		return 0;
	ev->kv.value = strdup((const char *)sqlite3_column_text(st, 3));
	ev->kv.create_rev = sqlite3_column_int64(st, 4);
	ev->kv.version = sqlite3_column_int64(st, 5);
	ev->kv.lease = sqlite3_column_int64(st, 6);
	return ev->kv.value ? 0 : -ENOMEM;
}

/* The events under @prefix from @from on, at most GV_KV_WATCH_MAX (but
 * whole revisions), from one snapshot. */
static int events_read(gv_kv_backend *b, const char *prefix, int64_t from, gv_kv_event **out,
		       size_t *n, int64_t *next, gv_err *e)
{
	gv_kv_event *v = NULL;
	size_t cnt = 0, cap = 0, elen = 0;
	char *end = prefix_end(prefix, &elen);
	int64_t rev, compacted, last = 0;
	bool capped = false;
	sqlite3_stmt *st = NULL;
	int rc = SQLITE_DONE, r;

	r = sq_read_begin(b, e);
	if (r == 0)
		r = meta_read(b, &rev, &compacted, e);
	if (r == 0 && from < compacted)
		r = gv_err_set(e, -ERANGE,
			       "store: revision %" PRId64 " was compacted (the history starts at %"
			       PRId64 "): list again",
			       from, compacted);
	if (r == 0 && !(st = sq_q(b, Q_HIST_SCAN, e)))
		r = -EIO;
	if (r == 0) {
		sqlite3_bind_int64(st, 1, from);
		sqlite3_bind_text(st, 2, prefix, -1, SQLITE_STATIC);
		if (end)
			sqlite3_bind_text(st, 3, end, (int)elen, SQLITE_STATIC);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			if (cnt >= GV_KV_WATCH_MAX && sqlite3_column_int64(st, 0) != last) {
				capped = true;
				break;
			}
			r = gv_kv_events_grow(&v, cnt, &cap);
			if (r == 0)
				r = event_from_row(st, &v[cnt]);
			cnt++;
			if (r < 0) {
				r = gv_err_set(e, -ENOMEM, "out of memory");
				break;
			}
			last = v[cnt - 1].kv.mod_rev;
		}
		sqlite3_reset(st);
		if (r == 0 && !capped && rc != SQLITE_DONE)
			r = sq_fail(b, rc, "read the history", e);
	}
	sq_read_end(b);
	free(end);
	if (r < 0) {
		gv_kv_events_free(v, cnt);
		return r;
	}
	*out = v;
	*n = cnt;
	/* everything up to the snapshot's revision was seen, unless capped */
	*next = capped ? last + 1 : (from > rev + 1 ? from : rev + 1);
	return 0;
}

static int sq_watch(gv_kv_backend *b, const char *prefix, int64_t from, int timeout_ms,
		    gv_kv_event **ev, size_t *n, int64_t *next, gv_err *e)
{
	int64_t deadline = mono_ms() + timeout_ms, now, until, rev;
	struct timespec ts;
	int r = 0;

	pthread_mutex_lock(&b->mu);
	uint64_t c0 = b->committed;
	if (from == 0) {
		r = meta_read(b, &rev, NULL, e);
		from = rev + 1;
	}
	while (r == 0) {
		r = sq_expire(b, e);
		if (r == 0)
			r = events_read(b, prefix, from, ev, n, next, e);
		if (r < 0 || *n > 0)
			break;
		now = mono_ms();
		if (now >= deadline)
			break;
		/* woken by this handle's writes; polls for other handles'
		 * writes and for leases running out */
		until = now + POLL_MS < deadline ? now + POLL_MS : deadline;
		ts.tv_sec = until / 1000;
		ts.tv_nsec = (until % 1000) * 1000000;
		pthread_cond_timedwait(&b->changed, &b->mu, &ts);
		gv_kv_events_free(*ev, 0);
		*ev = NULL;
	}
	r = sq_op_end(b, c0, r, e);
	if (r < 0) {
		gv_kv_events_free(*ev, *n);
		*ev = NULL;
		*n = 0;
	}
	return r;
}

static int sq_compact(gv_kv_backend *b, int64_t rev, gv_err *e)
{
	struct chg c;
	int r;

	pthread_mutex_lock(&b->mu);
	uint64_t c0 = b->committed;
	r = sq_begin_write(b, e);
	if (r < 0)
		goto out;
	r = sq_chg_start(b, &c, e);
	if (r == 0 && rev > c.rev)
		r = gv_err_set(e, -EINVAL,
			       "store: cannot compact at %" PRId64 ", beyond the revision %" PRId64,
			       rev, c.rev);
	if (r == 0 && rev > c.compacted)
		r = compact_locked(b, rev, e);
	r = sq_end_write(b, r, e);
out:
	return sq_op_end(b, c0, r, e);
}

const gv_kv_ops gv_kv_sqlite_ops = {
	.name = "sqlite",
	.open = sq_open,
	.close = sq_close,
	.revision = sq_revision,
	.range = sq_range,
	.txn = sq_txn,
	.watch = sq_watch,
	.compact = sq_compact,
	.lease_grant = sq_lease_grant,
	.lease_keepalive = sq_lease_keepalive,
	.lease_revoke = sq_lease_revoke,
	.lease_ttl = sq_lease_ttl,
	.batch = sq_batch,
	.sync = sq_sync,
};
