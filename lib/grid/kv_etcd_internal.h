/* SPDX-License-Identifier: MIT */
/*
 * kv_etcd_internal.h - how the etcd backend (kv_etcd.c) talks to etcd:
 * JSON over HTTP to etcd's gRPC gateway (kv_etcd_http.c), one request at
 * a time or as a stream of answers (the watch), failing over among the
 * endpoints of the URL.
 *
 * etcd's JSON: keys and values are base64, 64-bit integers are strings
 * (etcd_i64 reads either), a field at its default value is left out.
 */
#ifndef GRIDVM_GRID_KV_ETCD_INTERNAL_H
#define GRIDVM_GRID_KV_ETCD_INTERNAL_H

#include <gridvm/base/err.h>

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct etcd_conn etcd_conn;

/* @where: "HOST:PORT[,HOST:PORT...]" (the URL after "etcd://").
 * -EINVAL: not of that shape. Nothing is contacted yet. */
/* @tls: https, with this host's certificate as the client's and the
 * grid CA (and its CRL) to verify etcd's (docs/kv.md). */
int etcd_conn_new(const char *where, bool tls, etcd_conn **out, gv_err *e);
void etcd_conn_free(etcd_conn *c); /* NULL is fine */

/* How much a request may be repeated on another endpoint after it was
 * sent and its answer did not come back. */
typedef enum {
	ETCD_ONCE,	/* a change: repeated only when it surely did not arrive */
	ETCD_IDEMPOTENT /* a read: repeated on any transport failure */
} etcd_retry;

/* POST @req to /v3/@path; *resp: the answer (new reference). Tries the
 * endpoint that answered last, then the others. Errors: etcd's own
 * (mapped: -ENOENT not found, -EINVAL invalid, -ERANGE compacted or out
 * of range, -EAGAIN unavailable, -ETIMEDOUT), -EIO when no endpoint
 * answers. @req is borrowed. */
int etcd_call(etcd_conn *c, const char *path, json_t *req, etcd_retry retry, json_t **resp,
	      gv_err *e);

/* A streamed answer: each JSON object of it is given to @fn (borrowed),
 * which returns 0 for more, 1 to stop (the stream is closed), or a
 * negative errno to stop with that error. @deadline_ms (monotonic, may be
 * changed by @fn through the pointer it gave) ends the stream with
 * -ETIMEDOUT; *got counts the objects delivered (so a caller knows
 * whether an endpoint failed before or after answering). A transport
 * failure before any object tries the next endpoint while the deadline
 * allows; after one it is -EIO. */
typedef int (*etcd_stream_fn)(void *ud, json_t *msg);
int etcd_stream(etcd_conn *c, const char *path, json_t *req, etcd_stream_fn fn, void *ud,
		int64_t *deadline_ms, unsigned *got, gv_err *e);

/* --- etcd's JSON --- */
/* An int64 member (a string or a number; absent: 0). */
int64_t etcd_i64(const json_t *obj, const char *name);
/* A string for an int64 member (new reference). */
json_t *etcd_i64_json(int64_t v);
/* Base64 of @s (new reference) / a base64 member decoded as a
 * NUL-terminated string (absent: ""); NULL when it is not base64. */
json_t *etcd_b64_json(const char *s, size_t len);
char *etcd_b64_str(const json_t *obj, const char *name, size_t *len);
/* The end of the range of keys that start with @prefix (etcd's range_end:
 * the prefix with its last byte that is not 0xff incremented; "\0", every
 * key, when there is none). malloc'd, *len its length. */
char *etcd_prefix_end(const char *prefix, size_t *len);

#endif
