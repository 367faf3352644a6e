/* SPDX-License-Identifier: MIT */
/*
 * kv_internal.h - the state store's backend interface (kv.c dispatches a
 * URL to one backend: kv_sqlite.c or kv_etcd.c).
 *
 * kv.c checks the arguments every backend would check (keys not empty,
 * no key twice in a transaction, TTL > 0, from_rev >= 0) before it calls
 * a backend, and builds put, delete and get on txn and range. A backend
 * keeps the semantics of kv.h and docs/kv.md, does its own locking (the
 * handle is shared by threads), sets @e on every failure, and leaves its
 * outputs untouched (or empty) when it fails.
 */
#ifndef GRIDVM_GRID_KV_INTERNAL_H
#define GRIDVM_GRID_KV_INTERNAL_H

#include <gridvm/grid/kv.h>

typedef struct gv_kv_backend gv_kv_backend; /* each backend's own handle */

typedef struct gv_kv_ops {
	const char *name; /* "sqlite", "etcd": for messages */
	/* @where: the URL after its scheme ("sqlite:" or "etcd://") */
	int (*open)(const char *where, gv_kv_backend **out, gv_err *e);
	void (*close)(gv_kv_backend *b);
	int (*revision)(gv_kv_backend *b, int64_t *rev, gv_err *e);
	/* @exact: only the key @prefix itself (gv_kv_get) */
	int (*range)(gv_kv_backend *b, const char *prefix, bool exact, gv_kv_entry **out,
		     size_t *n, int64_t *rev, gv_err *e);
	/* *changed: how many operations changed a key (a DELETE of an
	 * absent one does not); 0 when the comparisons failed */
	int (*txn)(gv_kv_backend *b, const gv_kv_cmp *cmp, size_t ncmp, const gv_kv_op *ops,
		   size_t nops, bool *ok, int64_t *rev, size_t *changed, gv_err *e);
	int (*watch)(gv_kv_backend *b, const char *prefix, int64_t from_rev, int timeout_ms,
		     gv_kv_event **ev, size_t *n, int64_t *next, gv_err *e);
	int (*compact)(gv_kv_backend *b, int64_t rev, gv_err *e);
	int (*lease_grant)(gv_kv_backend *b, int ttl_s, int64_t *id, gv_err *e);
	int (*lease_keepalive)(gv_kv_backend *b, int64_t id, gv_err *e);
	int (*lease_revoke)(gv_kv_backend *b, int64_t id, gv_err *e);
	int (*lease_ttl)(gv_kv_backend *b, int64_t id, int *ttl_s, int64_t *remaining_ms,
			 gv_err *e);
	/* gv_kv_batch_begin (@begin) and gv_kv_batch_commit; NULL: each
	 * change commits on its own (the calls do nothing) */
	int (*batch)(gv_kv_backend *b, bool begin, gv_err *e);
	/* gv_kv_sync; NULL: every change is durable when its call returns */
	int (*sync)(gv_kv_backend *b, gv_err *e);
} gv_kv_ops;

extern const gv_kv_ops gv_kv_sqlite_ops;
extern const gv_kv_ops gv_kv_etcd_ops;
extern const gv_kv_ops gv_kv_etcds_ops;

/* A watch returns at most this many events per call (whole revisions:
 * a revision is never split, so one large transaction may exceed it). */
#define GV_KV_WATCH_MAX 1000

/* Append to a growing array of entries/events (*cap doubles); -ENOMEM. */
int gv_kv_entries_grow(gv_kv_entry **v, size_t n, size_t *cap);
int gv_kv_events_grow(gv_kv_event **v, size_t n, size_t *cap);

#endif
