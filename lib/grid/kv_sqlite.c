/* SPDX-License-Identifier: MIT */
/*
 * kv_sqlite.c - the state store in one SQLite file ("sqlite:PATH"): the
 * embedded backend of kv.h, with etcd's revisions, transactions, watches
 * and leases (docs/kv.md has the schema and the reasoning).
 *
 * Every change is one SQLite transaction (BEGIN IMMEDIATE) that reads the
 * store's revision from meta, applies its operations at the next one,
 * appends them to history (what watches read) and writes the revision
 * back. Leases expire lazily: every operation first deletes the keys of
 * the leases whose time (wall clock, ms, stored in the file) is up, each
 * lease at a revision of its own; a waiting watch does the same on every
 * poll. One mutex per handle serialises its SQLite use; a condition
 * variable wakes the handle's watches after each of its writes, and a
 * poll every POLL_MS sees the writes of other handles and processes.
 */
#include "kv_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SCHEMA_VERSION 1
#define BUSY_TIMEOUT_MS 5000
#define POLL_MS 50
/* automatic compaction: keep the last HISTORY_KEEP revisions, trimming
 * once HISTORY_SLACK more have piled up */
#define HISTORY_KEEP 10000
#define HISTORY_SLACK 1000

enum { EV_PUT = 0, EV_DELETE = 1 }; /* history.kind */

enum q {
	Q_META,
	Q_SET_REV,
	Q_SET_COMPACTED,
	Q_HIST_TRIM,
	Q_GET,
	Q_RANGE,
	Q_MODREV,
	Q_KV_PREV,
	Q_KV_PUT,
	Q_KV_DEL,
	Q_HIST_ADD,
	Q_HIST_SCAN,
	Q_LEASE_GET,
	Q_LEASE_ADD,
	Q_LEASE_RENEW,
	Q_LEASE_DEL,
	Q_LEASE_DUE,
	Q_LEASE_KEYS,
	Q_N
};

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

struct gv_kv_backend {
	sqlite3 *db;
	char *path;
	sqlite3_stmt *st[Q_N];
	pthread_mutex_t mu;
	pthread_cond_t changed; /* broadcast after each write of this handle */
	bool wrote;		/* the transaction being committed changed keys */
	unsigned batch;		/* depth of the open batch (0: none): each change
				 * is then a savepoint of its transaction */
	bool batch_wrote;	/* a change of the batch changed keys */
};

/* one change: the revision it starts from, how many operations so far */
struct chg {
	int64_t rev, compacted;
	int sub;
};

static int64_t wall_ms(void)
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

static int fail(gv_kv_backend *b, int rc, const char *what, gv_err *e)
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
static sqlite3_stmt *q(gv_kv_backend *b, enum q id, gv_err *e)
{
	int rc;

	if (!b->st[id]) {
		rc = sqlite3_prepare_v3(b->db, sql[id], -1, SQLITE_PREPARE_PERSISTENT, &b->st[id],
					NULL);
		if (rc != SQLITE_OK) {
			fail(b, rc, "prepare", e);
			return NULL;
		}
	}
	sqlite3_reset(b->st[id]);
	sqlite3_clear_bindings(b->st[id]);
	return b->st[id];
}

/* Run a statement that returns no rows (binding done); reset it. */
static int run(gv_kv_backend *b, sqlite3_stmt *st, const char *what, gv_err *e)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : fail(b, rc, what, e);
}

static int exec(gv_kv_backend *b, const char *stmt, gv_err *e)
{
	int rc = sqlite3_exec(b->db, stmt, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : fail(b, rc, stmt, e);
}

static int begin_write(gv_kv_backend *b, gv_err *e)
{
	b->wrote = false;
	return exec(b, b->batch ? "SAVEPOINT w" : "BEGIN IMMEDIATE", e);
}

/* Commit when @r >= 0, else roll back; wake this handle's watches when
 * keys changed. In a batch, release or roll back the change's savepoint
 * (the batch's end commits). @return @r or the commit's error. */
static int end_write(gv_kv_backend *b, int r, gv_err *e)
{
	if (b->batch) {
		if (r >= 0)
			r = exec(b, "RELEASE w", e);
		if (r < 0) {
			sqlite3_exec(b->db, "ROLLBACK TO w", NULL, NULL, NULL);
			sqlite3_exec(b->db, "RELEASE w", NULL, NULL, NULL);
		} else if (b->wrote) {
			b->batch_wrote = true;
		}
		b->wrote = false;
		return r;
	}
	if (r >= 0) {
		r = exec(b, "COMMIT", e);
		if (r == 0 && b->wrote)
			pthread_cond_broadcast(&b->changed);
	}
	if (r < 0)
		sqlite3_exec(b->db, "ROLLBACK", NULL, NULL, NULL);
	b->wrote = false;
	return r;
}

/* A read's snapshot (inside a batch: the batch's transaction). */
static int read_begin(gv_kv_backend *b, gv_err *e)
{
	return b->batch ? 0 : exec(b, "BEGIN", e);
}

static void read_end(gv_kv_backend *b)
{
	if (!b->batch)
		sqlite3_exec(b->db, "COMMIT", NULL, NULL, NULL);
}

/* gv_kv_batch_begin/end: one transaction (one fsync) for the changes
 * until the outermost end. A begin that fails leaves each change its own
 * transaction. */
static int sq_batch(gv_kv_backend *b, bool begin, gv_err *e)
{
	int r = 0;

	pthread_mutex_lock(&b->mu);
	if (begin) {
		if (b->batch || (r = exec(b, "BEGIN IMMEDIATE", e)) == 0)
			b->batch++;
	} else if (b->batch && --b->batch == 0) {
		r = exec(b, "COMMIT", e);
		if (r < 0)
			sqlite3_exec(b->db, "ROLLBACK", NULL, NULL, NULL);
		else if (b->batch_wrote)
			pthread_cond_broadcast(&b->changed);
		b->batch_wrote = false;
	}
	pthread_mutex_unlock(&b->mu);
	return r;
}

static int meta_read(gv_kv_backend *b, int64_t *rev, int64_t *compacted, gv_err *e)
{
	sqlite3_stmt *st = q(b, Q_META, e);
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
	return rc == SQLITE_ROW ? 0 : fail(b, rc, "read the revision", e);
}

/* --- changes, inside a write transaction --- */

static int chg_start(gv_kv_backend *b, struct chg *c, gv_err *e)
{
	c->sub = 0;
	return meta_read(b, &c->rev, &c->compacted, e);
}

static int history_add(gv_kv_backend *b, struct chg *c, int kind, const char *key,
		       const char *value, int64_t create_rev, int64_t version, int64_t lease,
		       gv_err *e)
{
	sqlite3_stmt *st = q(b, Q_HIST_ADD, e);

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
	return run(b, st, "append to the history", e);
}

/* Does lease @id exist and has time left at @now? */
static int lease_alive(gv_kv_backend *b, int64_t id, int64_t now, int *ttl_s, int64_t *left,
		       gv_err *e)
{
	sqlite3_stmt *st = q(b, Q_LEASE_GET, e);
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
		return fail(b, rc, "read a lease", e);
	if (r < 0)
		return gv_err_set(e, -ENOENT, "store: lease %" PRId64 " not found (expired or revoked)",
				  id);
	return 0;
}

static int chg_put(gv_kv_backend *b, struct chg *c, const char *key, const char *value,
		   int64_t lease, gv_err *e)
{
	sqlite3_stmt *st = q(b, Q_KV_PREV, e);
	int64_t create_rev = c->rev + 1, version = 1;
	int rc, r;

	if (!st)
		return -EIO;
	if (lease) {
		r = lease_alive(b, lease, wall_ms(), NULL, NULL, e);
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
		return fail(b, rc, "read a key", e);
	st = q(b, Q_KV_PUT, e);
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, create_rev);
	sqlite3_bind_int64(st, 4, c->rev + 1);
	sqlite3_bind_int64(st, 5, version);
	sqlite3_bind_int64(st, 6, lease);
	r = run(b, st, "write a key", e);
	if (r < 0)
		return r;
	return history_add(b, c, EV_PUT, key, value, create_rev, version, lease, e);
}

/* *deleted: whether @key was there */
static int chg_delete(gv_kv_backend *b, struct chg *c, const char *key, bool *deleted,
		      gv_err *e)
{
	sqlite3_stmt *st = q(b, Q_KV_DEL, e);
	int r;

	*deleted = false;
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	r = run(b, st, "delete a key", e);
	if (r < 0 || sqlite3_changes(b->db) == 0)
		return r;
	*deleted = true;
	return history_add(b, c, EV_DELETE, key, NULL, 0, 0, 0, e);
}

static int compact_locked(gv_kv_backend *b, int64_t rev, gv_err *e)
{
	sqlite3_stmt *st = q(b, Q_HIST_TRIM, e);
	int r;

	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, rev);
	r = run(b, st, "compact the history", e);
	if (r < 0)
		return r;
	st = q(b, Q_SET_COMPACTED, e);
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, rev);
	return run(b, st, "compact the history", e);
}

/* Close one change: when it changed something, the store moves to the
 * next revision (and c->rev with it); old history is trimmed. */
static int chg_finish(gv_kv_backend *b, struct chg *c, gv_err *e)
{
	sqlite3_stmt *st;
	int r;

	if (c->sub == 0)
		return 0;
	st = q(b, Q_SET_REV, e);
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, c->rev + 1);
	r = run(b, st, "write the revision", e);
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

/* Delete lease @id's keys, at a revision of their own, and the lease. */
static int revoke_locked(gv_kv_backend *b, struct chg *c, int64_t id, gv_err *e)
{
	sqlite3_stmt *st = q(b, Q_LEASE_KEYS, e);
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
		r = fail(b, rc, "list a lease's keys", e);
	for (size_t i = 0; i < n && r == 0; i++)
		r = chg_delete(b, c, keys[i], &deleted, e);
	for (size_t i = 0; i < n; i++)
		free(keys[i]);
	free(keys);
	if (r == 0)
		r = chg_finish(b, c, e);
	if (r == 0 && (st = q(b, Q_LEASE_DEL, e)) == NULL)
		r = -EIO;
	if (r == 0) {
		sqlite3_bind_int64(st, 1, id);
		r = run(b, st, "delete a lease", e);
	}
	return r;
}

/* Apply every lease whose time is up (the start of every operation). */
static int expire(gv_kv_backend *b, gv_err *e)
{
	int64_t now = wall_ms(), *ids = NULL, *ni;
	sqlite3_stmt *st = q(b, Q_LEASE_DUE, e);
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
		return fail(b, rc, "look for expired leases", e);
	r = begin_write(b, e);
	if (r < 0)
		return r;
	r = chg_start(b, &c, e);
	if (r == 0 && (st = q(b, Q_LEASE_DUE, e)) == NULL)
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
			r = fail(b, rc, "list expired leases", e);
	}
	for (size_t i = 0; i < n && r == 0; i++)
		r = revoke_locked(b, &c, ids[i], e);
	free(ids);
	return end_write(b, r, e);
}

/* --- the backend's operations --- */

static void sq_close(gv_kv_backend *b)
{
	if (!b)
		return;
	for (int i = 0; i < Q_N; i++)
		sqlite3_finalize(b->st[i]);
	sqlite3_close(b->db);
	pthread_cond_destroy(&b->changed);
	pthread_mutex_destroy(&b->mu);
	free(b->path);
	free(b);
}

static int sq_init(gv_kv_backend *b, gv_err *e)
{
	sqlite3_stmt *st = NULL;
	int rc, r, version = 0;

	sqlite3_busy_timeout(b->db, BUSY_TIMEOUT_MS);
	r = exec(b, "PRAGMA journal_mode=WAL", e);
	if (r == 0)
		r = exec(b, "PRAGMA synchronous=FULL", e);
	if (r == 0)
		r = exec(b, "BEGIN IMMEDIATE", e);
	if (r < 0)
		return r;
	rc = sqlite3_prepare_v2(b->db, "PRAGMA user_version", -1, &st, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
		version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW)
		r = fail(b, rc, "read the schema version", e);
	else if (version > SCHEMA_VERSION)
		r = gv_err_set(e, -EPROTO,
			       "store sqlite:%s: schema version %d is newer than this gridvm's (%d)",
			       b->path, version, SCHEMA_VERSION);
	if (r == 0)
		r = exec(b, schema, e);
	if (r == 0 && version < SCHEMA_VERSION)
		r = exec(b, "PRAGMA user_version = 1", e);
	return end_write(b, r, e);
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
	pthread_mutex_init(&b->mu, NULL);
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
	r = expire(b, e);
	if (r == 0)
		r = meta_read(b, rev, NULL, e);
	pthread_mutex_unlock(&b->mu);
	return r;
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
	r = expire(b, e);
	if (r == 0)
		r = read_begin(b, e); /* one snapshot for the revision and the rows */
	if (r < 0)
		goto out;
	r = meta_read(b, rev, NULL, e);
	st = r < 0 ? NULL : q(b, exact ? Q_GET : Q_RANGE, e);
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
			r = fail(b, rc, "read keys", e);
	} else if (r == 0) {
		r = -EIO;
	}
	read_end(b);
out:
	pthread_mutex_unlock(&b->mu);
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
	sqlite3_stmt *st = q(b, Q_MODREV, e);
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
		return fail(b, rc, "compare a key", e);
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
	r = expire(b, e);
	if (r == 0)
		r = begin_write(b, e);
	if (r < 0)
		goto out;
	r = chg_start(b, &c, e);
	for (size_t i = 0; i < ncmp && r == 0 && holds; i++)
		r = cmp_holds(b, &cmp[i], &holds, e);
	for (size_t i = 0; i < nops && r == 0 && holds; i++) {
		if (ops[i].kind == GV_KV_PUT) {
			r = chg_put(b, &c, ops[i].key, ops[i].value, ops[i].lease, e);
			cnt++;
		} else {
			r = chg_delete(b, &c, ops[i].key, &deleted, e);
			cnt += deleted;
		}
	}
	if (r == 0)
		r = chg_finish(b, &c, e);
	r = end_write(b, r, e);
	if (r == 0) {
		*ok = holds;
		*rev = c.rev;
		*changed = cnt;
	}
out:
	pthread_mutex_unlock(&b->mu);
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

	r = read_begin(b, e);
	if (r == 0)
		r = meta_read(b, &rev, &compacted, e);
	if (r == 0 && from < compacted)
		r = gv_err_set(e, -ERANGE,
			       "store: revision %" PRId64 " was compacted (the history starts at %"
			       PRId64 "): list again",
			       from, compacted);
	if (r == 0 && !(st = q(b, Q_HIST_SCAN, e)))
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
			r = fail(b, rc, "read the history", e);
	}
	read_end(b);
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
	if (from == 0) {
		r = meta_read(b, &rev, NULL, e);
		from = rev + 1;
	}
	while (r == 0) {
		r = expire(b, e);
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
	pthread_mutex_unlock(&b->mu);
	return r;
}

static int sq_compact(gv_kv_backend *b, int64_t rev, gv_err *e)
{
	struct chg c;
	int r;

	pthread_mutex_lock(&b->mu);
	r = begin_write(b, e);
	if (r < 0)
		goto out;
	r = chg_start(b, &c, e);
	if (r == 0 && rev > c.rev)
		r = gv_err_set(e, -EINVAL,
			       "store: cannot compact at %" PRId64 ", beyond the revision %" PRId64,
			       rev, c.rev);
	if (r == 0 && rev > c.compacted)
		r = compact_locked(b, rev, e);
	r = end_write(b, r, e);
out:
	pthread_mutex_unlock(&b->mu);
	return r;
}

static int sq_lease_grant(gv_kv_backend *b, int ttl_s, int64_t *id, gv_err *e)
{
	sqlite3_stmt *st;
	int r;

	pthread_mutex_lock(&b->mu);
	r = expire(b, e);
	st = r < 0 ? NULL : q(b, Q_LEASE_ADD, e);
	if (st) {
		sqlite3_bind_int(st, 1, ttl_s);
		sqlite3_bind_int64(st, 2, wall_ms() + (int64_t)ttl_s * 1000);
		r = run(b, st, "grant a lease", e);
		if (r == 0)
			*id = sqlite3_last_insert_rowid(b->db);
	} else if (r == 0) {
		r = -EIO;
	}
	pthread_mutex_unlock(&b->mu);
	return r;
}

static int sq_lease_keepalive(gv_kv_backend *b, int64_t id, gv_err *e)
{
	sqlite3_stmt *st;
	int r;

	pthread_mutex_lock(&b->mu);
	r = expire(b, e);
	st = r < 0 ? NULL : q(b, Q_LEASE_RENEW, e);
	if (st) {
		sqlite3_bind_int64(st, 1, id);
		sqlite3_bind_int64(st, 2, wall_ms());
		r = run(b, st, "renew a lease", e);
		if (r == 0 && sqlite3_changes(b->db) == 0)
			r = gv_err_set(e, -ENOENT,
				       "store: lease %" PRId64 " not found (expired or revoked)", id);
	} else if (r == 0) {
		r = -EIO;
	}
	pthread_mutex_unlock(&b->mu);
	return r;
}

static int sq_lease_revoke(gv_kv_backend *b, int64_t id, gv_err *e)
{
	struct chg c;
	int r;

	pthread_mutex_lock(&b->mu);
	r = expire(b, e);
	if (r == 0)
		r = begin_write(b, e);
	if (r < 0)
		goto out;
	r = lease_alive(b, id, wall_ms(), NULL, NULL, e);
	if (r == 0)
		r = chg_start(b, &c, e);
	if (r == 0)
		r = revoke_locked(b, &c, id, e);
	r = end_write(b, r, e);
out:
	pthread_mutex_unlock(&b->mu);
	return r;
}

static int sq_lease_ttl(gv_kv_backend *b, int64_t id, int *ttl_s, int64_t *remaining_ms,
			gv_err *e)
{
	int r;

	pthread_mutex_lock(&b->mu);
	r = expire(b, e);
	if (r == 0)
		r = lease_alive(b, id, wall_ms(), ttl_s, remaining_ms, e);
	pthread_mutex_unlock(&b->mu);
	return r;
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
};
