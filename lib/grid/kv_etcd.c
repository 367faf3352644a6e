/* SPDX-License-Identifier: MIT */
/*
 * kv_etcd.c - the state store in etcd v3 ("etcd://HOST:PORT[,...]"): the
 * replicated backend of kv.h, over etcd's JSON gateway (the transport is
 * kv_etcd_http.c; docs/kv.md has the mapping).
 *
 * etcd's model is kv.h's model: one revision for the whole store, keys
 * with create/mod revisions, versions and leases, transactions that
 * compare mod revisions, watches from a revision. So the store's
 * revisions are etcd's own (a job's binding epoch is the mod_revision of
 * its binding key in etcd), and most calls are one request.
 *
 * The watch is the one with a subtlety: a call of gv_kv_watch is a stream
 * opened from @from_rev and closed when the call returns, so a caller
 * that lost its connection simply calls again from its `next` and misses
 * nothing. For "every change up to now" the call must know when etcd has
 * sent all of the past; etcd says nothing when none of it matches the
 * prefix. So while the history up to the current revision R is read, the
 * stream watches every key (every revision above 1 has at least one event,
 * so the one at R arrives) and the prefix is applied here; a watch that
 * starts after R watches the prefix only.
 */
#include "kv_etcd_internal.h"
#include "kv_internal.h"

#include <gridvm/base/util.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PAGE 1000 /* keys per range request */
/* how long etcd may take to send the history a watch asks for */
#define CATCHUP_MS 10000
/* automatic compaction, as SQLite's: keep the last HISTORY_KEEP
 * revisions, compacting once HISTORY_SLACK more have piled up */
#define HISTORY_KEEP 10000
#define HISTORY_SLACK 1000

struct gv_kv_backend {
	etcd_conn *conn;
	pthread_mutex_t mu; /* compacted */
	int64_t compacted;  /* this handle's last compaction (or its opening revision) */
};

static json_t *key_json(const char *key)
{
	return etcd_b64_json(key, strlen(key));
}

/* etcd's current revision (any range answers with it) */
static int et_revision(gv_kv_backend *b, int64_t *rev, gv_err *e)
{
	json_t *req = json_pack("{s:o, s:b}", "key", etcd_b64_json("", 1), "count_only", 1);
	json_t *resp = NULL;
	int r = etcd_call(b->conn, "kv/range", req, ETCD_IDEMPOTENT, &resp, e);

	if (r == 0)
		*rev = etcd_i64(json_object_get(resp, "header"), "revision");
	json_decref(req);
	json_decref(resp);
	return r;
}

static void et_close(gv_kv_backend *b)
{
	if (!b)
		return;
	etcd_conn_free(b->conn);
	pthread_mutex_destroy(&b->mu);
	free(b);
}

static int et_open_any(const char *where, bool tls, gv_kv_backend **out, gv_err *e)
{
	gv_kv_backend *b = calloc(1, sizeof(*b));
	int r;

	if (!b)
		return gv_err_set(e, -ENOMEM, "out of memory");
	pthread_mutex_init(&b->mu, NULL);
	r = etcd_conn_new(where, tls, &b->conn, e);
	if (r == 0 && (r = et_revision(b, &b->compacted, e)) < 0)
		gv_err_wrap(e, r, "cannot reach etcd");
	if (r < 0) {
		et_close(b);
		return r;
	}
	*out = b;
	return 0;
}

static int et_open(const char *where, gv_kv_backend **out, gv_err *e)
{
	return et_open_any(where, false, out, e);
}

static int ets_open(const char *where, gv_kv_backend **out, gv_err *e)
{
	return et_open_any(where, true, out, e);
}

/* One key of etcd's answer ({key, value, create_revision, ...}). */
static int entry_from_json(const json_t *kv, gv_kv_entry *en, gv_err *e)
{
	en->key = etcd_b64_str(kv, "key", NULL);
	en->value = etcd_b64_str(kv, "value", NULL);
	en->create_rev = etcd_i64(kv, "create_revision");
	en->mod_rev = etcd_i64(kv, "mod_revision");
	en->version = etcd_i64(kv, "version");
	en->lease = etcd_i64(kv, "lease");
	if (!en->key || !en->value)
		return gv_err_set(e, -EIO, "etcd: a key or value that is not base64");
	return 0;
}

static int et_range(gv_kv_backend *b, const char *prefix, bool exact, gv_kv_entry **out,
		    size_t *n, int64_t *rev, gv_err *e)
{
	gv_kv_entry *v = NULL;
	size_t cnt = 0, cap = 0, elen = 0;
	char *end = exact ? NULL : etcd_prefix_end(prefix, &elen);
	json_t *req = json_pack("{s:o}", "key", key_json(*prefix ? prefix : "\0"));
	bool more = true;
	int r = 0;

	if (*prefix == '\0')
		json_object_set_new(req, "key", etcd_b64_json("", 1));
	if (end) {
		json_object_set_new(req, "range_end", etcd_b64_json(end, elen));
		json_object_set_new(req, "sort_order", json_string("ASCEND"));
		json_object_set_new(req, "sort_target", json_string("KEY"));
		json_object_set_new(req, "limit", etcd_i64_json(PAGE));
	}
	/* page after page at the first page's revision: one snapshot */
	while (r == 0 && more) {
		json_t *resp = NULL, *kvs, *kv;
		size_t i;

		r = etcd_call(b->conn, "kv/range", req, ETCD_IDEMPOTENT, &resp, e);
		if (r < 0)
			break;
		if (!json_object_get(req, "revision")) {
			*rev = etcd_i64(json_object_get(resp, "header"), "revision");
			json_object_set_new(req, "revision", etcd_i64_json(*rev));
		}
		kvs = json_object_get(resp, "kvs");
		json_array_foreach(kvs, i, kv)
		{
			if ((r = gv_kv_entries_grow(&v, cnt, &cap)) < 0) {
				r = gv_err_set(e, -ENOMEM, "out of memory");
				break;
			}
			r = entry_from_json(kv, &v[cnt++], e);
			if (r < 0)
				break;
		}
		more = end && json_is_true(json_object_get(resp, "more")) && cnt > 0;
		if (r == 0 && more) { /* on after the last key: key + "\0" */
			size_t klen = strlen(v[cnt - 1].key);
			char *next = malloc(klen + 1);

			if (!next)
				abort();
			memcpy(next, v[cnt - 1].key, klen + 1);
			json_object_set_new(req, "key", etcd_b64_json(next, klen + 1));
			free(next);
		}
		json_decref(resp);
	}
	json_decref(req);
	free(end);
	if (r < 0) {
		gv_kv_entries_free(v, cnt);
		return r;
	}
	*out = v;
	*n = cnt;
	return 0;
}

/* Keep HISTORY_KEEP revisions of history, as the SQLite backend does
 * (etcd compacts nothing unless told to). Errors are ignored: another
 * handle may have compacted further already. */
static void autocompact(gv_kv_backend *b, int64_t rev)
{
	json_t *req, *resp = NULL;
	int64_t at = 0;
	gv_err e;

	pthread_mutex_lock(&b->mu);
	if (rev - b->compacted >= HISTORY_KEEP + HISTORY_SLACK)
		at = b->compacted = rev - HISTORY_KEEP;
	pthread_mutex_unlock(&b->mu);
	if (!at)
		return;
	req = json_pack("{s:o}", "revision", etcd_i64_json(at));
	(void)etcd_call(b->conn, "kv/compaction", req, ETCD_IDEMPOTENT, &resp, &e);
	json_decref(req);
	json_decref(resp);
}

static json_t *txn_request(const gv_kv_cmp *cmp, size_t ncmp, const gv_kv_op *ops, size_t nops)
{
	json_t *c = json_array(), *s = json_array();

	for (size_t i = 0; i < ncmp; i++)
		json_array_append_new(c, json_pack("{s:o, s:s, s:s, s:o}", "key",
						   key_json(cmp[i].key), "target", "MOD", "result",
						   "EQUAL", "mod_revision",
						   etcd_i64_json(cmp[i].mod_rev)));
	for (size_t i = 0; i < nops; i++) {
		json_t *op;

		if (ops[i].kind == GV_KV_PUT) {
			op = json_pack("{s:o, s:o}", "key", key_json(ops[i].key), "value",
				       etcd_b64_json(ops[i].value, strlen(ops[i].value)));
			if (ops[i].lease)
				json_object_set_new(op, "lease", etcd_i64_json(ops[i].lease));
			json_array_append_new(s, json_pack("{s:o}", "request_put", op));
		} else {
			op = json_pack("{s:o}", "key", key_json(ops[i].key));
			json_array_append_new(s, json_pack("{s:o}", "request_delete_range", op));
		}
	}
	return json_pack("{s:o, s:o}", "compare", c, "success", s);
}

/* A change whose outcome etcd left open (it timed out, its leader
 * failed or changed, or the connection broke after it was sent) is sent
 * again while AMBIGUOUS_MS allow: applying a put or delete twice leaves
 * the same keys (one more revision); a compare-and-swap that did apply
 * the first time fails the second (the caller reads again and finds its
 * own value), never the reverse; a lease granted twice expires unused. */
#define AMBIGUOUS_MS 10000

static int call_change(gv_kv_backend *b, const char *path, json_t *req, json_t **resp,
		       gv_err *e)
{
	uint64_t until = gv_now_ms() + AMBIGUOUS_MS;
	int r;

	while ((r = etcd_call(b->conn, path, req, ETCD_ONCE, resp, e)) == -EAGAIN ||
	       r == -ETIMEDOUT || r == -EIO) {
		struct timespec pause = { 0, 200 * 1000000L }; /* an election takes a moment */

		if (gv_now_ms() >= until)
			break;
		json_decref(*resp);
		*resp = NULL;
		nanosleep(&pause, NULL);
	}
	return r;
}

static int et_txn(gv_kv_backend *b, const gv_kv_cmp *cmp, size_t ncmp, const gv_kv_op *ops,
		  size_t nops, bool *ok, int64_t *rev, size_t *changed, gv_err *e)
{
	json_t *req = txn_request(cmp, ncmp, ops, nops), *resp = NULL, *res;
	int r = call_change(b, "kv/txn", req, &resp, e);

	*changed = 0;
	if (r == 0) {
		*ok = json_is_true(json_object_get(resp, "succeeded"));
		*rev = etcd_i64(json_object_get(resp, "header"), "revision");
		res = json_object_get(resp, "responses");
		for (size_t i = 0; *ok && i < nops; i++) {
			json_t *del = json_object_get(json_array_get(res, i), "response_delete_range");
			if (ops[i].kind == GV_KV_PUT || etcd_i64(del, "deleted") > 0)
				(*changed)++;
		}
		if (*changed)
			autocompact(b, *rev);
	} else if (r == -ENOENT) {
		gv_err_set(e, r, "store: no such lease (or it expired)");
	}
	json_decref(req);
	json_decref(resp);
	return r;
}

/* --- watch --- */

struct watch {
	const char *prefix;
	size_t plen;
	int64_t from;
	int64_t target;	   /* the history up to it must be read (R) */
	bool caught_up;	   /* it has been */
	int64_t last_seen; /* the revision of the last event read (any key) */
	int64_t capped_at; /* GV_KV_WATCH_MAX reached: the first revision left */
	gv_kv_event *v;
	size_t n, cap;
	int64_t wait_until, *deadline;
	gv_err *e;
};

static int watch_event(struct watch *w, const json_t *ev)
{
	const json_t *kv = json_object_get(ev, "kv");
	int64_t rev = etcd_i64(kv, "mod_revision");
	const char *type = json_string_value(json_object_get(ev, "type"));
	gv_kv_event *out;
	size_t klen = 0;
	char *key;
	int r;

	if (rev < w->from)
		return 0;
	if (w->n >= GV_KV_WATCH_MAX && rev != w->v[w->n - 1].kv.mod_rev) {
		w->capped_at = rev;
		return 1;
	}
	w->last_seen = rev;
	key = etcd_b64_str(kv, "key", &klen);
	if (!key)
		return gv_err_set(w->e, -EIO, "etcd: a key that is not base64");
	if (klen < w->plen || memcmp(key, w->prefix, w->plen) != 0) {
		free(key);
		return 0;
	}
	free(key);
	if ((r = gv_kv_events_grow(&w->v, w->n, &w->cap)) < 0)
		return gv_err_set(w->e, -ENOMEM, "out of memory");
	out = &w->v[w->n++];
	out->kind = type && !strcmp(type, "DELETE") ? GV_KV_EV_DELETE : GV_KV_EV_PUT;
	if ((r = entry_from_json(kv, &out->kv, w->e)) < 0)
		return r;
	if (out->kind == GV_KV_EV_DELETE) { /* key and revision only */
		free(out->kv.value);
		out->kv.value = NULL;
		out->kv.create_rev = out->kv.version = out->kv.lease = 0;
	}
	return 0;
}

/* One answer of the watch stream (an etcd_stream_fn). */
static int watch_msg(void *ud, json_t *res)
{
	struct watch *w = ud;
	int64_t compacted = etcd_i64(res, "compact_revision");
	json_t *ev;
	size_t i;
	int r;

	if (compacted > 0)
		return gv_err_set(w->e, -ERANGE,
				  "store: revision %" PRId64 " was compacted (etcd's history "
				  "starts at %" PRId64 "): list again",
				  w->from, compacted);
	if (json_is_true(json_object_get(res, "canceled")))
		return gv_err_set(w->e, -EIO, "etcd canceled the watch: %s",
				  json_string_value(json_object_get(res, "cancel_reason")) ?: "?");
	json_array_foreach(json_object_get(res, "events"), i, ev)
	{
		if ((r = watch_event(w, ev)) != 0)
			return r;
	}
	if (!w->caught_up && w->last_seen >= w->target)
		w->caught_up = true;
	if (w->caught_up) {
		if (w->n > 0)
			return 1;
		*w->deadline = w->wait_until; /* now only the caller's timeout */
	}
	return 0;
}

static int et_watch(gv_kv_backend *b, const char *prefix, int64_t from, int timeout_ms,
		    gv_kv_event **ev, size_t *n, int64_t *next, gv_err *e)
{
	int64_t now = (int64_t)gv_now_ms(), rev, deadline;
	struct watch w = { .prefix = prefix, .plen = strlen(prefix), .e = e };
	json_t *create, *req;
	size_t elen = 0;
	unsigned got = 0;
	char *end;
	int r;

	w.deadline = &deadline;
	w.wait_until = now + timeout_ms;
	if ((r = et_revision(b, &rev, e)) < 0)
		return r;
	w.from = from ? from : rev + 1;
	w.target = rev;
	w.caught_up = w.from > rev || rev <= 1;
	if (w.caught_up && timeout_ms == 0) {
		*next = w.from;
		return 0;
	}
	if (w.caught_up) { /* only what comes: the prefix */
		end = etcd_prefix_end(prefix, &elen);
		create = json_pack("{s:o, s:o}", "key", key_json(*prefix ? prefix : "\0"),
				   "range_end", etcd_b64_json(end, elen));
		if (!*prefix)
			json_object_set_new(create, "key", etcd_b64_json("", 1));
		free(end);
		deadline = w.wait_until;
	} else { /* the past too: every key (see the top of the file) */
		create = json_pack("{s:o, s:o}", "key", etcd_b64_json("", 1), "range_end",
				   etcd_b64_json("", 1));
		deadline = now + CATCHUP_MS > w.wait_until ? now + CATCHUP_MS : w.wait_until;
	}
	json_object_set_new(create, "start_revision", etcd_i64_json(w.from));
	req = json_pack("{s:o}", "create_request", create);
	r = etcd_stream(b->conn, "watch", req, watch_msg, &w, &deadline, &got, e);
	json_decref(req);
	if (r == -ETIMEDOUT && w.caught_up)
		r = 0; /* the caller's timeout */
	else if (r == -ETIMEDOUT)
		r = gv_err_set(e, -ETIMEDOUT,
			       "etcd did not send the history from revision %" PRId64
			       " to %" PRId64 " in time",
			       w.from, w.target);
	else if (r == -EIO && w.n > 0)
		r = 0; /* it broke after whole answers: they stand */
	if (r < 0) {
		gv_kv_events_free(w.v, w.n);
		return r;
	}
	*ev = w.v;
	*n = w.n;
	if (w.capped_at)
		*next = w.capped_at;
	else
		*next = w.last_seen >= w.from ? w.last_seen + 1 : w.from;
	return 0;
}

static int et_compact(gv_kv_backend *b, int64_t rev, gv_err *e)
{
	json_t *req = json_pack("{s:o}", "revision", etcd_i64_json(rev)), *resp = NULL;
	int r = etcd_call(b->conn, "kv/compaction", req, ETCD_IDEMPOTENT, &resp, e);

	if (r == -ERANGE) /* compacted there or beyond already */
		r = 0;
	json_decref(req);
	json_decref(resp);
	return r;
}

/* --- leases --- */

static int lease_call(gv_kv_backend *b, const char *path, json_t *req, etcd_retry retry,
		      json_t **resp, int64_t id, gv_err *e)
{
	int r = etcd_call(b->conn, path, req, retry, resp, e);

	json_decref(req);
	if (r == -ENOENT)
		gv_err_set(e, r, "store: no lease %" PRId64 " (it expired or was revoked)", id);
	return r;
}

static int et_lease_grant(gv_kv_backend *b, int ttl_s, int64_t *id, gv_err *e)
{
	json_t *resp = NULL;
	json_t *req = json_pack("{s:i}", "TTL", ttl_s);
	int r = call_change(b, "lease/grant", req, &resp, e);

	if (r == 0 && !(*id = etcd_i64(resp, "ID")))
		r = gv_err_set(e, -EIO, "etcd granted no lease");
	json_decref(req);
	json_decref(resp);
	return r;
}

static int et_lease_keepalive(gv_kv_backend *b, int64_t id, gv_err *e)
{
	json_t *resp = NULL;
	int r = lease_call(b, "lease/keepalive", json_pack("{s:o}", "ID", etcd_i64_json(id)),
			   ETCD_IDEMPOTENT, &resp, id, e);

	/* a stream of one answer: {"result": {ID, TTL}}; no TTL: gone */
	if (r == 0 && etcd_i64(json_object_get(resp, "result"), "TTL") <= 0)
		r = gv_err_set(e, -ENOENT, "store: no lease %" PRId64 " (it expired or was revoked)",
			       id);
	json_decref(resp);
	return r;
}

static int et_lease_revoke(gv_kv_backend *b, int64_t id, gv_err *e)
{
	json_t *resp = NULL;
	int r = lease_call(b, "lease/revoke", json_pack("{s:o}", "ID", etcd_i64_json(id)),
			   ETCD_ONCE, &resp, id, e);

	json_decref(resp);
	return r;
}

static int et_lease_ttl(gv_kv_backend *b, int64_t id, int *ttl_s, int64_t *remaining_ms,
			gv_err *e)
{
	json_t *resp = NULL;
	int r = lease_call(b, "lease/timetolive", json_pack("{s:o}", "ID", etcd_i64_json(id)),
			   ETCD_IDEMPOTENT, &resp, id, e);
	int64_t left = etcd_i64(resp, "TTL");

	if (r == 0 && left < 0)
		r = gv_err_set(e, -ENOENT, "store: no lease %" PRId64 " (it expired or was revoked)",
			       id);
	if (r == 0) {
		*ttl_s = (int)etcd_i64(resp, "grantedTTL");
		*remaining_ms = left * 1000; /* etcd counts whole seconds */
	}
	json_decref(resp);
	return r;
}

const gv_kv_ops gv_kv_etcd_ops = {
	.name = "etcd",
	.open = et_open,
	.close = et_close,
	.revision = et_revision,
	.range = et_range,
	.txn = et_txn,
	.watch = et_watch,
	.compact = et_compact,
	.lease_grant = et_lease_grant,
	.lease_keepalive = et_lease_keepalive,
	.lease_revoke = et_lease_revoke,
	.lease_ttl = et_lease_ttl,
};

/* etcds://: the same over mutual TLS */
const gv_kv_ops gv_kv_etcds_ops = {
	.name = "etcds",
	.open = ets_open,
	.close = et_close,
	.revision = et_revision,
	.range = et_range,
	.txn = et_txn,
	.watch = et_watch,
	.compact = et_compact,
	.lease_grant = et_lease_grant,
	.lease_keepalive = et_lease_keepalive,
	.lease_revoke = et_lease_revoke,
	.lease_ttl = et_lease_ttl,
};
