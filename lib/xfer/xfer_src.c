/* SPDX-License-Identifier: MIT */
/*
 * xfer_src.c - the source side of the block transfer: a TCP server that
 * authenticates each peer, sends the requested image's block index and
 * then the blocks it asks for, compressed, in the order asked.
 */
#include "xfer_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <zstd.h>

#define MAX_RUN 4096 /* blocks per request */

size_t xfer_index_part = XFER_INDEX_PART;

/* The last index sent of a live image, per name: a client that holds it
 * may ask for the changes only (OPEN "base"). */
#define IDX_CACHE 16
struct idx_cache {
	char name[256];
	uint8_t digest[GV_HASH_LEN]; /* SHA-256 of the serialized index */
	gv_blockidx *bi;	     /* its image_mtime_ns: before hashing */
	uint64_t hashed_at_ns;	     /* wall clock when hashing began */
	uint64_t track;		     /* write tracking token, 0: none */
	uint64_t used;
};

struct gv_xfer_server {
	struct idx_cache cache[IDX_CACHE]; /* under @mu */
	uint64_t cache_tick;
	int lfd;
	pthread_t thread;
	volatile int stop;
	int sessions; /* live session threads, under @mu */
	/* connections still proving themselves and authenticated sessions,
	 * per peer address and in all (the limits below), under @mu */
	struct peer *peers;
	size_t npeers;
	int preauth, authed;
	pthread_mutex_t mu;
	uint8_t key[GV_XFER_KEY_LEN];
	gv_tls *tls; /* certificate material (not owned) */
	gv_xfer_resolve_fn resolve;
	gv_xfer_control_fn control;
	gv_xfer_dirty_fn dirty;
	gv_xfer_authorize_fn authorize;
	char *unix_path; /* listening on a unix socket: local users */
	bool users_ok;	 /* takes users' certificates (a controller) */
	void *ud;
};

/* A peer address with connections alive. */
struct peer {
	uint8_t addr[16]; /* IPv6, or IPv4 mapped */
	int preauth, authed;
};

struct session {
	gv_xfer_server *srv;
	struct xconn c;
	uint8_t peer[16];
	bool authed; /* counted as an authenticated session */
	gv_blockidx *bi;
	int img;
	gv_codec codec;
	int level;
	char name[256];
	uint64_t hashed_at_ns; /* of s->bi, see live_index */
	uint64_t track;	       /* of s->bi, see tracked_index */
};

static int send_index(struct session *s)
{
	uint8_t *raw = NULL, *z = NULL, hdr[8];
	size_t rawlen = 0, zlen, cap;
	int r = gv_blockidx_serialize(s->bi, &raw, &rawlen);

	if (r < 0)
		return r;
	cap = ZSTD_compressBound(rawlen);
	z = malloc(cap);
	zlen = z ? ZSTD_compress(z, cap, raw, rawlen, 3) : 0;
	if (!z || ZSTD_isError(zlen) || rawlen > UINT32_MAX) {
		xconn_send_error(&s->c, "the block index is too large to send");
		r = -EIO;
	} else {
		/* parts of at most 16 MiB: an index may be larger than a frame */
		size_t first = zlen < xfer_index_part ? zlen : xfer_index_part;
		put_be32(hdr, (uint32_t)rawlen);
		put_be32(hdr + 4, (uint32_t)zlen);
		r = xconn_send(&s->c, XT_INDEX, hdr, 8, z, first);
		for (size_t off = first; r == 0 && off < zlen; off += xfer_index_part) {
			size_t part = zlen - off < xfer_index_part ? zlen - off : xfer_index_part;
			r = xconn_send(&s->c, XT_INDEX_MORE, z + off, part, NULL, 0);
		}
	}
	free(raw);
	free(z);
	return r;
}

/* The cached index of image @name, or NULL. Call with srv->mu held. */
static struct idx_cache *cache_find(gv_xfer_server *srv, const char *name)
{
	for (int i = 0; i < IDX_CACHE; i++)
		if (srv->cache[i].bi && !strcmp(srv->cache[i].name, name))
			return &srv->cache[i];
	return NULL;
}

static void cache_put(struct session *s)
{
	gv_xfer_server *srv = s->srv;
	uint8_t d[GV_HASH_LEN];
	gv_blockidx *copy = gv_blockidx_dup(s->bi);
	struct idx_cache *c;

	if (!copy || xfer_index_digest(s->bi, d) < 0) {
		gv_blockidx_free(copy);
		return;
	}
	pthread_mutex_lock(&srv->mu);
	c = cache_find(srv, s->name);
	for (int i = 0; i < IDX_CACHE && !c; i++)
		if (!srv->cache[i].bi)
			c = &srv->cache[i];
	if (!c) { /* else the least recently used */
		c = &srv->cache[0];
		for (int i = 1; i < IDX_CACHE; i++)
			if (srv->cache[i].used < c->used)
				c = &srv->cache[i];
	}
	gv_blockidx_free(c->bi);
	snprintf(c->name, sizeof(c->name), "%s", s->name);
	memcpy(c->digest, d, sizeof(d));
	c->bi = copy;
	c->hashed_at_ns = s->hashed_at_ns;
	c->track = s->track;
	c->used = ++srv->cache_tick;
	pthread_mutex_unlock(&srv->mu);
}

/* The changes from the cached index @base (same block size) to s->bi:
 * 'D', u32 shift, u64 size, u64 nblocks, sha256, u64 count, then count
 * times (u64 block, hash), blocks ascending. */
static int send_delta(struct session *s, const gv_blockidx *base)
{
	const gv_blockidx *bi = s->bi;
	uint64_t count = 0, k = 0;
	size_t rawlen, cap, zlen;
	uint8_t *raw, *z = NULL, hdr[8];
	int r = 0;

	for (uint64_t b = 0; b < bi->nblocks; b++)
		count += b >= base->nblocks || memcmp(bi->hashes + b * GV_HASH_LEN,
						      base->hashes + b * GV_HASH_LEN, GV_HASH_LEN);
	if (count > bi->nblocks / 2) /* hardly smaller: the whole index */
		return send_index(s);
	rawlen = 1 + 4 + 8 + 8 + GV_HASH_LEN + 8 + count * (8 + GV_HASH_LEN);
	raw = malloc(rawlen);
	if (!raw)
		return -ENOMEM;
	raw[0] = 'D';
	put_be32(raw + 1, bi->block_shift);
	put_be64(raw + 5, bi->image_size);
	put_be64(raw + 13, bi->nblocks);
	memcpy(raw + 21, bi->image_sha256, GV_HASH_LEN);
	put_be64(raw + 53, count);
	for (uint64_t b = 0; b < bi->nblocks; b++) {
		const uint8_t *h = bi->hashes + b * GV_HASH_LEN;
		if (b < base->nblocks && !memcmp(h, base->hashes + b * GV_HASH_LEN, GV_HASH_LEN))
			continue;
		put_be64(raw + 61 + k * 40, b);
		memcpy(raw + 61 + k * 40 + 8, h, GV_HASH_LEN);
		k++;
	}
	cap = ZSTD_compressBound(rawlen);
	z = malloc(cap);
	zlen = z ? ZSTD_compress(z, cap, raw, rawlen, 3) : 0;
	if (!z || ZSTD_isError(zlen) || zlen > xfer_index_part) {
		free(raw);
		free(z);
		return send_index(s);
	}
	put_be32(hdr, (uint32_t)rawlen);
	put_be32(hdr + 4, (uint32_t)zlen);
	r = xconn_send(&s->c, XT_INDEX_DELTA, hdr, 8, z, zlen);
	free(raw);
	free(z);
	return r;
}

/* Send s->bi whole, or as changes to the client's @base if we cached
 * that; a live image's index is cached for the next request. */
static int send_index_for(struct session *s, const char *base, bool live)
{
	uint8_t want[GV_HASH_LEN];
	gv_blockidx *b = NULL;
	int r;

	if (base && live && gv_hash_parse(base, want) == 0) {
		pthread_mutex_lock(&s->srv->mu);
		struct idx_cache *c = cache_find(s->srv, s->name);
		if (c && !memcmp(c->digest, want, GV_HASH_LEN) &&
		    c->bi->block_shift == s->bi->block_shift)
			b = gv_blockidx_dup(c->bi);
		pthread_mutex_unlock(&s->srv->mu);
	}
	r = b ? send_delta(s, b) : send_index(s);
	gv_blockidx_free(b);
	if (r == 0 && live)
		cache_put(s);
	return r;
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* With write tracking: the index we sent last, updated from the ranges
 * written since, or the whole image hashed when tracking (re)starts.
 * Tracking starts before the hashing, so a write that races with it is
 * reported next time. 1: no tracking for this image. */
static int tracked_index(struct session *s, const char *path, gv_blockidx **out)
{
	uint64_t since = 0, tok = 0, now = realtime_ns(), k = 0, t0 = gv_now_ms();
	gv_blockidx *base = NULL;
	gv_extent *ext = NULL;
	size_t n = 0;
	int r;

	pthread_mutex_lock(&s->srv->mu);
	struct idx_cache *c = cache_find(s->srv, s->name);
	if (c && c->track && (base = gv_blockidx_dup(c->bi)))
		since = c->track;
	pthread_mutex_unlock(&s->srv->mu);
	r = s->srv->dirty(s->srv->ud, s->name, since, &tok, &ext, &n);
	if (r < 0) {
		gv_blockidx_free(base);
		s->track = 0;
		return 1;
	}
	s->track = tok;
	s->hashed_at_ns = now;
	if (r == 0 && base && gv_blockidx_update(path, base, ext, n, out, &k) == 0) {
		fprintf(stderr, "gridvmd: %s: %zu ranges written since the last index (QEMU's "
			"dirty bitmap), %llu blocks hashed again in %llu ms\n", s->name, n,
			(unsigned long long)k, (unsigned long long)(gv_now_ms() - t0));
	} else {
		r = gv_blockidx_build_live(path, GV_BLOCKIDX_DEFAULT_SHIFT, out);
		if (r < 0)
			s->track = 0;
	}
	gv_blockidx_free(base);
	free(ext);
	return r;
}

/* The index of a live image: hashed now, unless the file provably did not
 * change since the index we sent last was hashed. A write sets the file's
 * modification time to the (coarse, a few ms) clock; if that time is
 * still what it was before the last hashing began, and lies well before
 * that start, no write happened since (one right after the start would
 * have moved it). A quiet disk then costs no hashing in the final pass
 * of a migration, while the guest is paused. */
static int live_index(struct session *s, const char *path, gv_blockidx **out)
{
	const uint64_t margin = 50ULL * 1000 * 1000; /* clock coarseness, generously */
	uint64_t now = realtime_ns();
	gv_blockidx *copy = NULL;
	struct stat st;
	int r;

	if (s->srv->dirty && (r = tracked_index(s, path, out)) <= 0)
		return r;
	if (stat(path, &st) == 0) {
		uint64_t m = gv_stat_mtime_ns(&st);
		pthread_mutex_lock(&s->srv->mu);
		struct idx_cache *c = cache_find(s->srv, s->name);
		if (c && c->bi->image_size == (uint64_t)st.st_size && c->bi->image_mtime_ns == m &&
		    m + margin < c->hashed_at_ns && (copy = gv_blockidx_dup(c->bi)))
			s->hashed_at_ns = c->hashed_at_ns;
		pthread_mutex_unlock(&s->srv->mu);
	}
	if (copy) {
		fprintf(stderr, "gridvmd: %s unchanged since its last index: not hashed again\n",
			s->name);
		*out = copy;
		return 0;
	}
	r = gv_blockidx_build_live(path, GV_BLOCKIDX_DEFAULT_SHIFT, out);
	if (r == 0)
		s->hashed_at_ns = now;
	return r;
}

static int open_image(struct session *s, const uint8_t *p, size_t n)
{
	json_t *j = json_loadb((const char *)p, n, 0, NULL);
	const char *name = json_string_value(json_object_get(j, "image"));
	const char *codec = json_string_value(json_object_get(j, "codec"));
	char *path = NULL, *idx = NULL;
	int r, c = gv_codec_parse(codec ? codec : "none");

	s->level = (int)json_integer_value(json_object_get(j, "level"));
	if (!name || c < 0) {
		xconn_send_error(&s->c, "bad OPEN request");
		json_decref(j);
		return -EPROTO;
	}
	s->codec = (gv_codec)c;
	snprintf(s->name, sizeof(s->name), "%s", name);
	r = s->srv->authorize ? s->srv->authorize(s->srv->ud, &s->c.peer, name) : 0;
	if (r == 0)
		r = s->srv->resolve(s->srv->ud, name, &path, &idx);
	if (r < 0)
		xconn_send_error(&s->c, "no such image: %s", name);
	/* a live (iterative) transfer hashes the image as it is being written */
	if (r == 0 && json_is_true(json_object_get(j, "live")))
		r = live_index(s, path, &s->bi);
	else if (r == 0)
		r = gv_blockidx_get(path, idx, GV_BLOCKIDX_DEFAULT_SHIFT, &s->bi);
	if (r < 0 && r != -ENOENT)
		xconn_send_error(&s->c, "cannot index image %s: %s", name, strerror(-r));
	if (r == 0 && (s->img = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		r = -errno;
		xconn_send_error(&s->c, "cannot open image %s", name);
	}
	free(path);
	free(idx);
	if (r == 0)
		r = send_index_for(s, json_string_value(json_object_get(j, "base")),
				   json_is_true(json_object_get(j, "live")));
	json_decref(j);
	return r;
}

static int send_run(struct session *s, const uint8_t *p, size_t n)
{
	uint64_t first = n == 12 ? get_be64(p) : 0, bs = 1ULL << s->bi->block_shift;
	uint32_t count = n == 12 ? get_be32(p + 8) : 0;
	uint8_t hdr[17], *buf, *z = NULL;
	size_t len, zlen = 0;
	ssize_t got;
	int r;

	if (n != 12 || count == 0 || count > MAX_RUN || first >= s->bi->nblocks ||
	    count > s->bi->nblocks - first) {
		xconn_send_error(&s->c, "bad block request");
		return -EPROTO;
	}
	len = count * bs;
	if (first * bs + len > s->bi->image_size)
		len = s->bi->image_size - first * bs;
	buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	got = pread(s->img, buf, len, (off_t)(first * bs));
	r = got == (ssize_t)len ? xcodec_compress(s->codec, s->level, buf, len, &z, &zlen)
				: -EIO;
	if (r == 0) {
		put_be64(hdr, first);
		put_be32(hdr + 8, count);
		hdr[12] = (uint8_t)s->codec;
		put_be32(hdr + 13, (uint32_t)len);
		r = xconn_send(&s->c, XT_DATA, hdr, sizeof(hdr), z, zlen);
	} else {
		xconn_send_error(&s->c, "cannot read blocks %llu+%u", (unsigned long long)first,
				 count);
	}
	free(buf);
	free(z);
	return r;
}

/* Iterative transfers: hash the image again (it may be changing; the
 * final pass, with the writer frozen, must see a stable file). */
static int rehash(struct session *s, const uint8_t *p, size_t n)
{
	json_t *j = json_loadb((const char *)p, n, 0, NULL);
	bool final = json_is_true(json_object_get(j, "final"));
	char *path = NULL, *idx = NULL;
	gv_blockidx *bi = NULL;
	int r = s->srv->resolve(s->srv->ud, s->name, &path, &idx);

	uint64_t t = realtime_ns();
	json_decref(j);
	if (r == 0)
		r = final ? gv_blockidx_build(path, GV_BLOCKIDX_DEFAULT_SHIFT, 0, NULL, NULL, &bi)
			  : live_index(s, path, &bi);
	if (r == 0 && final)
		s->hashed_at_ns = t;
	if (r < 0) {
		xconn_send_error(&s->c, "%s", r == -EAGAIN ? "the image is still being written "
				 "(the final pass needs the writer frozen)"
				 : "cannot hash the image again");
	} else {
		gv_blockidx_free(s->bi);
		s->bi = bi;
		r = send_index_for(s, NULL, true);
	}
	free(path);
	free(idx);
	return r;
}

static int control(struct session *s, const uint8_t *p, size_t n)
{
	json_t *req = json_loadb((const char *)p, n, 0, NULL), *rep;
	char *text;
	int r;

	if (!req || !s->srv->control) {
		json_decref(req);
		xconn_send_error(&s->c, "%s", req ? "this agent takes no control requests"
						  : "bad control request");
		return -EPROTO;
	}
	/* who asks: only what the handshake proved, never what the peer says */
	json_object_del(req, "_peer");
	if (s->c.peer.local)
		json_object_set_new(req, "_peer",
				    json_pack("{s:b, s:I, s:I, s:s, s:b}", "local", 1, "uid",
					      (json_int_t)s->c.peer.user.uid, "gid",
					      (json_int_t)s->c.peer.user.gid, "name",
					      s->c.peer.user.name, "admin", s->c.peer.user.admin));
	else if (s->c.peer.tls)
		json_object_set_new(req, "_peer",
				    json_pack("{s:b, s:s, s:s, s:s}", "tls", 1, "name",
					      s->c.peer.name, "role", s->c.peer.role, "dn",
					      s->c.peer.dn));
	rep = s->srv->control(s->srv->ud, req);
	text = json_dumps(rep, JSON_COMPACT);
	r = xconn_send(&s->c, XT_CTRL_OK, text, strlen(text), NULL, 0);
	free(text);
	json_decref(rep);
	json_decref(req);
	return r;
}

/* ---- limits: how many connections a peer, and all peers, may hold ----
 * A connection must prove itself (the handshake) within HANDSHAKE_MS of
 * being accepted, however slowly it sends; until then it counts against
 * MAX_PREAUTH, and against MAX_PEER_PREAUTH for its address, so that idle
 * or slow strangers cannot take every slot. Authenticated sessions (each
 * transfer or control request is one) count against MAX_SESSIONS and
 * MAX_PEER_SESSIONS. A connection over a limit is told why and closed. */
#define MAX_SESSIONS 128
#define MAX_PEER_SESSIONS 32
#define MAX_PREAUTH 64
#define MAX_PEER_PREAUTH 16
#define HANDSHAKE_MS 10000

/* mu held: the peer's counters (created at zero), or NULL (no memory). */
static struct peer *peer_of(gv_xfer_server *srv, const uint8_t addr[16])
{
	for (size_t i = 0; i < srv->npeers; i++)
		if (!memcmp(srv->peers[i].addr, addr, 16))
			return &srv->peers[i];
	struct peer *v = realloc(srv->peers, (srv->npeers + 1) * sizeof(*v));
	if (!v)
		return NULL;
	srv->peers = v;
	memset(&v[srv->npeers], 0, sizeof(*v));
	memcpy(v[srv->npeers].addr, addr, 16);
	return &v[srv->npeers++];
}

/* mu held: forget a peer with nothing alive. */
static void peer_tidy(gv_xfer_server *srv, struct peer *p)
{
	if (p->preauth || p->authed)
		return;
	*p = srv->peers[--srv->npeers];
}

/* After the handshake (@proved: it succeeded): from proving itself to an
 * authenticated session, if the limits allow (else a reason, and the
 * session ends). */
static const char *admit(struct session *s, bool proved)
{
	gv_xfer_server *srv = s->srv;
	const char *why = NULL;

	pthread_mutex_lock(&srv->mu);
	struct peer *p = peer_of(srv, s->peer);
	if (p)
		p->preauth--;
	srv->preauth--;
	if (!proved)
		why = "not authenticated";
	else if (!p)
		why = "out of memory";
	else if (srv->authed >= MAX_SESSIONS)
		why = "too many sessions on this agent; try again";
	else if (p->authed >= MAX_PEER_SESSIONS)
		why = "too many sessions from your address; try again";
	if (!why) {
		p->authed++;
		srv->authed++;
		s->authed = true;
	}
	if (p)
		peer_tidy(srv, p);
	pthread_mutex_unlock(&srv->mu);
	return why;
}

static void serve(struct session *s)
{
	uint8_t type, *p;
	size_t n;
	int r;
	const char *full;

	s->c.tls = s->srv->tls;
	s->c.users_ok = s->srv->users_ok;
	r = s->srv->unix_path ? xauth_local(&s->c, true, NULL)
			      : xauth_server(&s->c, s->srv->key, NULL);
	full = admit(s, r == 0);

	if (r == 0 && full) {
		xconn_send_error(&s->c, "%s", full);
		r = -EBUSY;
	}
	/* an authenticated peer may take its time (hashing its own disk for a
	 * resume, say) between requests */
	xconn_deadline(&s->c, 0);
	if (r == 0)
		xconn_timeout(&s->c, 30 * 60 * 1000);
	if (r == 0)
		r = xconn_recv(&s->c, &type, &p, &n);
	while (r == 0 && type == XT_CTRL) { /* control requests, then maybe data */
		r = control(s, p, n);
		if (r == 0)
			r = xconn_recv(&s->c, &type, &p, &n);
	}
	if (r == 0 && type == XT_OPEN)
		r = open_image(s, p, n);
	else if (r == 0)
		r = -EPROTO;
	while (r == 0) {
		r = xconn_recv(&s->c, &type, &p, &n);
		if (r < 0 || type == XT_DONE || type == XT_ERROR)
			break;
		if (type == XT_REHASH) {
			r = rehash(s, p, n);
			continue;
		}
		if (type != XT_REQ) {
			xconn_send_error(&s->c, "unexpected frame 0x%02x", type);
			break;
		}
		r = send_run(s, p, n);
	}
}

static void *session_thread(void *arg)
{
	struct session *s = arg;
	gv_xfer_server *srv = s->srv;

	serve(s);
	xconn_close(&s->c);
	if (s->img >= 0)
		close(s->img);
	gv_blockidx_free(s->bi);
	pthread_mutex_lock(&srv->mu);
	if (s->authed) {
		struct peer *p = peer_of(srv, s->peer);
		if (p) {
			p->authed--;
			peer_tidy(srv, p);
		}
		srv->authed--;
	}
	srv->sessions--;
	pthread_mutex_unlock(&srv->mu);
	free(s);
	return NULL;
}

/* The peer's address as 16 bytes (IPv4 mapped into IPv6). */
static void peer_addr(const struct sockaddr_storage *sa, uint8_t out[16])
{
	memset(out, 0, 16);
	if (sa->ss_family == AF_INET) {
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa->ss_family == AF_INET6) {
		memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	}
}

/* Say why a connection is refused, without waiting on the peer. */
static void refuse(int fd, const char *why)
{
	struct xconn c;

	xconn_init(&c, fd, 100);
	xconn_send_error(&c, "%s", why);
	xconn_close(&c);
}

static void *accept_thread(void *arg)
{
	gv_xfer_server *srv = arg;

	while (!srv->stop) {
		struct pollfd pfd = { srv->lfd, POLLIN, 0 };
		if (poll(&pfd, 1, 200) <= 0)
			continue;
		struct sockaddr_storage sa;
		socklen_t salen = sizeof(sa);
		int fd = accept4(srv->lfd, (struct sockaddr *)&sa, &salen, SOCK_CLOEXEC);
		if (fd < 0) {
			usleep(100000); /* EMFILE and friends: do not spin */
			continue;
		}
		struct session *s = calloc(1, sizeof(*s));
		const char *why = NULL;
		if (!s) {
			close(fd);
			continue;
		}
		peer_addr(&sa, s->peer);
		if (srv->unix_path) { /* a local user's limits are the user's */
			struct ucred cr;
			socklen_t cl = sizeof(cr);
			if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0)
				memcpy(s->peer + 8, &cr.uid, sizeof(cr.uid));
			s->peer[0] = 0xfe;
		}
		pthread_mutex_lock(&srv->mu);
		struct peer *p = peer_of(srv, s->peer);
		if (!p)
			why = "out of memory";
		else if (srv->preauth >= MAX_PREAUTH)
			why = "too many connections waiting to authenticate; try again";
		else if (p->preauth >= MAX_PEER_PREAUTH)
			why = "too many connections from your address waiting to authenticate";
		if (!why) {
			p->preauth++;
			srv->preauth++;
			srv->sessions++;
		} else if (p) {
			peer_tidy(srv, p);
		}
		pthread_mutex_unlock(&srv->mu);
		if (why) {
			refuse(fd, why);
			free(s);
			continue;
		}
		s->srv = srv;
		s->img = -1;
		xconn_init(&s->c, fd, HANDSHAKE_MS);
		xconn_deadline(&s->c, HANDSHAKE_MS); /* in all, not per read */
		pthread_t t;
		if (pthread_create(&t, NULL, session_thread, s) != 0) {
			xconn_close(&s->c);
			pthread_mutex_lock(&srv->mu);
			p = peer_of(srv, s->peer);
			if (p) {
				p->preauth--;
				peer_tidy(srv, p);
			}
			srv->preauth--;
			srv->sessions--;
			pthread_mutex_unlock(&srv->mu);
			free(s);
			continue;
		}
		pthread_detach(t);
	}
	return NULL;
}

static int listen_on(const char *addr, gv_err *e)
{
	char host[256], port[16] = "7878";
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE }, *ai = NULL;
	const char *colon = strrchr(addr, ':');
	int fd = -1, one = 1, r;

	snprintf(host, sizeof(host), "%.*s", colon ? (int)(colon - addr) : (int)strlen(addr),
		 addr);
	if (colon)
		snprintf(port, sizeof(port), "%s", colon + 1);
	r = getaddrinfo(*host ? host : NULL, port, &hints, &ai);
	if (r != 0)
		return gv_err_set(e, -EINVAL, "bad listen address %s: %s", addr, gai_strerror(r));
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
		r = gv_err_set(e, -errno, "cannot listen on %s: %s", addr, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = r;
	}
	freeaddrinfo(ai);
	return fd;
}

int gv_xfer_server_start(const char *addr, const uint8_t key[GV_XFER_KEY_LEN],
			 gv_xfer_resolve_fn resolve, void *ud, gv_xfer_server **out,
			 gv_err *e)
{
	gv_xfer_server *s = calloc(1, sizeof(*s));
	int r;

	if (!s)
		return gv_err_set(e, -ENOMEM, "%s", strerror(ENOMEM));
	if (addr[0] == '/') {
		s->lfd = gv_unix_listen(addr, 64);
		if (s->lfd < 0)
			gv_err_set(e, s->lfd, "cannot listen on %s: %s", addr, strerror(-s->lfd));
		else if ((r = gv_user_socket_access(addr, e)) < 0) {
			close(s->lfd);
			s->lfd = r;
		}
		s->unix_path = strdup(addr);
	} else {
		s->lfd = listen_on(addr, e);
	}
	if (s->lfd < 0) {
		r = s->lfd;
		free(s->unix_path);
		free(s);
		return r;
	}
	memcpy(s->key, key, GV_XFER_KEY_LEN);
	s->tls = gv_tls_default();
	pthread_mutex_init(&s->mu, NULL);
	s->resolve = resolve;
	s->ud = ud;
	if (pthread_create(&s->thread, NULL, accept_thread, s) != 0) {
		close(s->lfd);
		free(s);
		return gv_err_set(e, -EAGAIN, "cannot start the transfer server thread");
	}
	*out = s;
	return 0;
}

void gv_xfer_server_set_control(gv_xfer_server *s, gv_xfer_control_fn fn)
{
	s->control = fn;
}

void gv_xfer_server_set_tls(gv_xfer_server *s, gv_tls *tls)
{
	s->tls = tls ? tls : gv_tls_default();
}

void gv_xfer_server_set_dirty(gv_xfer_server *s, gv_xfer_dirty_fn fn)
{
	s->dirty = fn;
}

void gv_xfer_server_set_authorize(gv_xfer_server *s, gv_xfer_authorize_fn fn)
{
	s->authorize = fn;
}

void gv_xfer_server_set_users(gv_xfer_server *s, bool on)
{
	s->users_ok = on;
}

int gv_xfer_server_port(const gv_xfer_server *s)
{
	struct sockaddr_storage sa;
	socklen_t len = sizeof(sa);

	if (getsockname(s->lfd, (struct sockaddr *)&sa, &len) < 0)
		return -errno;
	return ntohs(sa.ss_family == AF_INET ? ((struct sockaddr_in *)&sa)->sin_port
					     : ((struct sockaddr_in6 *)&sa)->sin6_port);
}

void gv_xfer_server_stop(gv_xfer_server *s)
{
	if (!s)
		return;
	s->stop = 1;
	pthread_join(s->thread, NULL);
	close(s->lfd);
	if (s->unix_path)
		unlink(s->unix_path);
	/* sessions use the server's key and resolver: wait for them (they
	 * end within their timeouts); a server still in use is leaked, never
	 * freed under a session */
	for (int i = 0; i < 100; i++) {
		pthread_mutex_lock(&s->mu);
		int left = s->sessions;
		pthread_mutex_unlock(&s->mu);
		if (!left) {
			OPENSSL_cleanse(s->key, sizeof(s->key));
			for (int k = 0; k < IDX_CACHE; k++)
				gv_blockidx_free(s->cache[k].bi);
			free(s->peers);
			free(s->unix_path);
			pthread_mutex_destroy(&s->mu);
			free(s);
			return;
		}
		usleep(50000);
	}
}
