/* SPDX-License-Identifier: MIT */
/*
 * kv.h - the controller's state store: a small key-value interface with
 * etcd v3's semantics, so that a replicated backend (etcd) drops in next
 * to the embedded one (SQLite). docs/kv.md says how each backend keeps it.
 *
 * Every change gets the store's next revision (one counter for the whole
 * store, like etcd's; an empty store is at revision 1, its first change
 * makes 2); each key remembers the revision that created it (create_rev),
 * that last changed it (mod_rev) and how many times it was written since
 * it was created (version; a key deleted and created again starts over at
 * 1 with a new create_rev). A transaction compares keys' mod_revs, then
 * applies all of its operations or none, at one new revision. A watch
 * returns the changes under a prefix from a revision on, so a client that
 * lost its connection continues exactly where it stopped (or learns that
 * the history it wants was compacted away: -ERANGE). A lease is a TTL
 * that keys can be attached to; when it is not kept alive in time it
 * expires and its keys are deleted (as changes, visible to watches).
 *
 * Backends are chosen by URL: "sqlite:PATH" (one machine; the default);
 * "etcd://HOST:PORT[,HOST:PORT...]" (etcd v3, replicated; its revisions
 * are etcd's own). Keys and values are NUL-terminated
 * strings; a key is not empty. All functions return 0 or a negative errno
 * with @e set; they are safe to call from several threads on one handle.
 */
#ifndef GRIDVM_GRID_KV_H
#define GRIDVM_GRID_KV_H

#include <gridvm/base/err.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gv_kv gv_kv;

typedef struct gv_kv_entry {
	char *key;
	char *value;	    /* NUL-terminated (values are JSON text here) */
	int64_t create_rev; /* revision that created the key */
	int64_t mod_rev;    /* revision of its last change */
	int64_t version;    /* writes since creation (1 after create) */
	int64_t lease;	    /* 0: none */
} gv_kv_entry;

/* Free an array of @n entries (and the array). NULL is fine. */
void gv_kv_entries_free(gv_kv_entry *v, size_t n);

/* Open the store at @url (see above). -EINVAL: a URL of no known shape;
 * -ENOTSUP: a backend this build does not have. */
int gv_kv_open(const char *url, gv_kv **out, gv_err *e) __attribute__((warn_unused_result));
/* NULL is fine. A watch must not be running on @kv. */
void gv_kv_close(gv_kv *kv);

/* The store's current revision (that of its last change). */
int gv_kv_revision(gv_kv *kv, int64_t *rev, gv_err *e);

/* One key: -ENOENT if absent. *out: one malloc'd entry (gv_kv_entries_free(out, 1)). */
int gv_kv_get(gv_kv *kv, const char *key, gv_kv_entry **out, gv_err *e);
/* Every key starting with @prefix ("" for all), sorted by key (bytewise);
 * *out malloc'd (NULL when *n is 0); *rev the revision the answer is
 * consistent with (watch from *rev + 1 to follow on). */
int gv_kv_range(gv_kv *kv, const char *prefix, gv_kv_entry **out, size_t *n, int64_t *rev,
		gv_err *e);

/* Put (@lease 0: none; a put without a lease detaches the key from the
 * one it had; -ENOENT: no such lease, or it expired) / delete (-ENOENT if
 * absent, and the revision does not move); *rev (may be NULL) the
 * revision of the change. */
int gv_kv_put(gv_kv *kv, const char *key, const char *value, int64_t lease, int64_t *rev,
	      gv_err *e);
int gv_kv_delete(gv_kv *kv, const char *key, int64_t *rev, gv_err *e);

/* A transaction: if every comparison holds, apply every operation (one
 * new revision for all of them), else none. A comparison holds when
 * @key's mod_rev equals @mod_rev (0: the key must be absent). */
typedef struct gv_kv_cmp {
	const char *key;
	int64_t mod_rev;
} gv_kv_cmp;
typedef enum { GV_KV_PUT, GV_KV_DELETE } gv_kv_op_kind;
typedef struct gv_kv_op {
	gv_kv_op_kind kind;
	const char *key;
	const char *value; /* PUT */
	int64_t lease;	   /* PUT */
} gv_kv_op;
/* *ok: whether the comparisons held; *rev (may be NULL): the revision of
 * the change when they did, else the current one. Operations apply in
 * order; a key may appear in at most one of them (-EINVAL, as etcd); a
 * DELETE of an absent key changes nothing, and a transaction that changes
 * nothing does not move the revision. An error (-ENOENT: a PUT names a
 * lease that does not exist) applies nothing. */
int gv_kv_txn(gv_kv *kv, const gv_kv_cmp *cmp, size_t ncmp, const gv_kv_op *ops, size_t nops,
	      bool *ok, int64_t *rev, gv_err *e);

/* Fence every later change through @kv on @key: each put, delete and
 * transaction then also requires @key's mod_rev to be @mod_rev, and
 * fails with -ESTALE (nothing applied) once it is not (the key was
 * deleted, or written by someone else). A leader fences its writes on
 * its leader key this way, so that one deposed (its lease expired) cannot
 * write any more. @key NULL: no fence. */
int gv_kv_fence(gv_kv *kv, const char *key, int64_t mod_rev, gv_err *e);

/* Group the changes made through @kv until gv_kv_batch_end() into one
 * durable commit: with SQLite one transaction and one fsync instead of
 * one of each per change (each change keeps its own revision and is
 * still all or nothing; watches see the batch when it ends); etcd
 * commits every change at once and the calls do nothing. A change made
 * in a batch is durable only once gv_kv_batch_end() returned 0: act on it
 * (answer a client, hand out a binding) only after that; if the commit
 * fails, every change of the batch is lost. Batches nest (the outermost
 * end commits); changes other threads make through @kv meanwhile join
 * the batch, and reads through @kv see its changes before they are
 * committed. */
void gv_kv_batch_begin(gv_kv *kv);
int gv_kv_batch_end(gv_kv *kv, gv_err *e) __attribute__((warn_unused_result));
/* gv_kv_batch_end() in two steps, so that a caller need not hold its
 * own locks while the disk syncs (group commit): gv_kv_batch_commit()
 * commits the batch (visible at once, to watches too), and
 * gv_kv_sync() returns 0 once every change committed through @kv so
 * far, by any thread, is durable (one sync serves the threads that
 * wait at once). Until then the batch may be lost to a crash: act on
 * it only after gv_kv_sync() returned 0. A failed commit loses the
 * whole batch; after a failed sync every later one fails too (what the
 * disk dropped is unknown: close and open the store again). Calls
 * other than these two are durable when they return, as before; etcd
 * makes every change durable at once and gv_kv_sync() does nothing. */
int gv_kv_batch_commit(gv_kv *kv, gv_err *e) __attribute__((warn_unused_result));
int gv_kv_sync(gv_kv *kv, gv_err *e) __attribute__((warn_unused_result));

/* Changes under @prefix with revision >= @from_rev (0: from the next
 * change on), oldest first (in a transaction: in the order of its
 * operations), waiting up to @timeout_ms for the first one if there is
 * none yet (0: do not wait). A timeout is not an error: 0 with *n = 0.
 * One call returns at most about a thousand events, always whole
 * revisions. *next: the revision to watch from next time. -ERANGE:
 * @from_rev was compacted away (list again with gv_kv_range). */
typedef enum { GV_KV_EV_PUT, GV_KV_EV_DELETE } gv_kv_ev_kind;
typedef struct gv_kv_event {
	gv_kv_ev_kind kind;
	gv_kv_entry kv; /* DELETE: key and mod_rev (the deletion's revision) only */
} gv_kv_event;
int gv_kv_watch(gv_kv *kv, const char *prefix, int64_t from_rev, int timeout_ms,
		gv_kv_event **ev, size_t *n, int64_t *next, gv_err *e);
void gv_kv_events_free(gv_kv_event *ev, size_t n);
/* Forget the history before @rev (watches from earlier get -ERANGE).
 * Compacting at or below an earlier compaction does nothing; beyond the
 * current revision: -EINVAL. Backends may compact on their own too
 * (docs/kv.md). */
int gv_kv_compact(gv_kv *kv, int64_t rev, gv_err *e);

/* Leases: grant one of @ttl_s seconds (> 0); keep it alive for another
 * full TTL (-ENOENT once it expired); revoke it (its keys are deleted
 * now, at one revision; -ENOENT if it is gone). A backend may round a
 * TTL up to its minimum (etcd's is a few seconds). */
int gv_kv_lease_grant(gv_kv *kv, int ttl_s, int64_t *id, gv_err *e);
int gv_kv_lease_keepalive(gv_kv *kv, int64_t id, gv_err *e);
int gv_kv_lease_revoke(gv_kv *kv, int64_t id, gv_err *e);
/* A lease's granted TTL and the milliseconds it has left (either may be
 * NULL); -ENOENT once it expired or was revoked. */
int gv_kv_lease_ttl(gv_kv *kv, int64_t id, int *ttl_s, int64_t *remaining_ms, gv_err *e);

#endif
