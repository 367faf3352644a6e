/* SPDX-License-Identifier: MIT */
/*
 * kv_sqlite_internal.h - the SQLite backend's handle and helpers, shared
 * by its files: kv_sqlite.c (opening, changes, reads, watches),
 * kv_sqlite_commit.c (write transactions, batches, the group commit),
 * kv_sqlite_lease.c (leases and their expiry). Functions marked "mu
 * held" are called with the handle's mutex held.
 */
#ifndef GRIDVM_GRID_KV_SQLITE_INTERNAL_H
#define GRIDVM_GRID_KV_SQLITE_INTERNAL_H

#include "kv_internal.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>

#define BUSY_TIMEOUT_MS 5000

/* the prepared statements (kv_sqlite.c has their SQL) */
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
	/* group commit (WAL; false: synchronous=FULL, each commit synced) */
	bool group;
	int wal_fd;		/* the WAL, opened by us to fdatasync it */
	char *wal_path;
	int64_t changes;	/* sqlite3_total_changes64 at the last commit counted */
	uint64_t committed;	/* commits that wrote something */
	uint64_t synced;	/* of those, how many are on disk */
	bool syncing;		/* a thread is in fdatasync (without mu) */
	int sync_err;		/* a sync failed: every later one fails too */
	char sync_msg[512];
	pthread_cond_t sync_done;
	/* checkpoints, out of the commits: a connection of their own (NULL:
	 * SQLite's automatic ones, inside a commit), used by one thread at a
	 * time (checkpointing); the WAL's pages after the last commit */
	sqlite3 *ckpt;
	bool checkpointing;
	int wal_pages;
};

/* one change: the revision it starts from, how many operations so far */
struct chg {
	int64_t rev, compacted;
	int sub;
};

/* ---- kv_sqlite.c ---- */
int64_t sq_wall_ms(void);
/* @e from SQLite's result @rc while doing @what; the negative errno */
int sq_fail(gv_kv_backend *b, int rc, const char *what, gv_err *e);
/* The prepared statement @id, reset and unbound; NULL with @e set. */
sqlite3_stmt *sq_q(gv_kv_backend *b, enum q id, gv_err *e);
/* Run a statement that returns no rows (binding done); reset it. */
int sq_run(gv_kv_backend *b, sqlite3_stmt *st, const char *what, gv_err *e);
int sq_exec(gv_kv_backend *b, const char *stmt, gv_err *e);
/* A read's snapshot (inside a batch: the batch's transaction). */
int sq_read_begin(gv_kv_backend *b, gv_err *e);
void sq_read_end(gv_kv_backend *b);
/* A change inside a write transaction (mu held): start it at the
 * store's revision, delete a key (*deleted: it was there), finish it at
 * the next revision when it changed something. */
int sq_chg_start(gv_kv_backend *b, struct chg *c, gv_err *e);
int sq_chg_delete(gv_kv_backend *b, struct chg *c, const char *key, bool *deleted, gv_err *e);
int sq_chg_finish(gv_kv_backend *b, struct chg *c, gv_err *e);

/* ---- kv_sqlite_commit.c ---- */
/* A write transaction (mu held): BEGIN IMMEDIATE, or a savepoint inside
 * an open batch; its end commits (or releases) when @r >= 0, else rolls
 * back. @return @r or the commit's error. */
int sq_begin_write(gv_kv_backend *b, gv_err *e);
int sq_end_write(gv_kv_backend *b, int r, gv_err *e);
/* A transaction was committed (mu held): counted when it wrote. */
void sq_note_commit(gv_kv_backend *b);
/* fdatasync the WAL (the one syncing thread, without mu); @msg why not. */
int sq_wal_sync(gv_kv_backend *b, char *msg, size_t len);
/* The end of an operation that began (mu taken) at commit count @c0:
 * let go of mu, then sync if it committed something. @return @r or the
 * sync's error. */
int sq_op_end(gv_kv_backend *b, uint64_t c0, int r, gv_err *e);
/* gv_kv_ops.batch and .sync */
int sq_batch(gv_kv_backend *b, bool begin, gv_err *e);
int sq_sync(gv_kv_backend *b, gv_err *e);
/* Checkpoints on a connection of their own, after the syncs, instead of
 * SQLite's inside a commit (at open; without it, SQLite's stay). */
void sq_checkpointer(gv_kv_backend *b);

/* ---- kv_sqlite_lease.c ---- */
/* Does lease @id exist with time left at @now (mu held)? -ENOENT if not. */
int sq_lease_alive(gv_kv_backend *b, int64_t id, int64_t now, int *ttl_s, int64_t *left,
		   gv_err *e);
/* Apply every lease whose time is up (the start of every operation; mu held). */
int sq_expire(gv_kv_backend *b, gv_err *e);
/* gv_kv_ops.lease_* */
int sq_lease_grant(gv_kv_backend *b, int ttl_s, int64_t *id, gv_err *e);
int sq_lease_keepalive(gv_kv_backend *b, int64_t id, gv_err *e);
int sq_lease_revoke(gv_kv_backend *b, int64_t id, gv_err *e);
int sq_lease_ttl(gv_kv_backend *b, int64_t id, int *ttl_s, int64_t *remaining_ms, gv_err *e);

#endif
