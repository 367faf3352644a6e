/* SPDX-License-Identifier: MIT */
/*
 * xfer_proto.c - the transfer protocol's frames, its mutual
 * authentication (TLS 1.3 with certificates from the grid CA, xfer_tls.c,
 * where the host has them; else HMAC-SHA256 challenge-response over a
 * shared grid key, then a MAC on every frame with per-direction keys and
 * sequence numbers) and its compression codecs.
 */
#include "xfer_internal.h"

#include <openssl/evp.h>

#include <errno.h>
#include <fcntl.h>
#include <lz4.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

static const char *const codec_names[] = { "none", "zlib", "lz4", "zstd" };

int gv_codec_parse(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (s && !strcmp(s, codec_names[i]))
			return i;
	return -EINVAL;
}

const char *gv_codec_name(gv_codec c)
{
	return (unsigned)c < 4 ? codec_names[c] : "?";
}

int gv_xfer_peer_parse(const char *s, char *host, size_t len, int *port)
{
	const char *colon = s ? strrchr(s, ':') : NULL;

	*port = GV_XFER_PORT;
	if (!s || !*s)
		return -EINVAL;
	if (!strncmp(s, "unix:", 5))
		s += 5;
	if (s[0] == '/') { /* a unix socket on this machine */
		*port = 0;
		return strlen(s) < len && strlen(s) < 108 ? (snprintf(host, len, "%s", s), 0)
							   : -ENAMETOOLONG;
	}
	if (s[0] == '[') { /* [v6]:port */
		const char *end = strchr(s, ']');
		if (!end)
			return -EINVAL;
		snprintf(host, len, "%.*s", (int)(end - s - 1), s + 1);
		if (end[1] == ':')
			*port = atoi(end + 2);
	} else if (colon && strchr(s, ':') == colon) {
		snprintf(host, len, "%.*s", (int)(colon - s), s);
		*port = atoi(colon + 1);
	} else {
		snprintf(host, len, "%s", s);
	}
	return *host && *port > 0 && *port < 65536 ? 0 : -EINVAL;
}

int gv_xfer_key_load(const char *path, uint8_t key[GV_XFER_KEY_LEN])
{
	char *text = NULL;
	int r = gv_read_file(path, &text, NULL);

	/* a host with certificates needs no shared key: all zero, "none" */
	if (r == -ENOENT && gv_tls_enabled(gv_tls_default(), NULL)) {
		memset(key, 0, GV_XFER_KEY_LEN);
		return 0;
	}
	if (r < 0)
		return r;
	text[strcspn(text, "\n")] = '\0'; /* exactly 64 hex digits, then a newline */
	r = gv_hash_parse(text, key);
	OPENSSL_cleanse(text, strlen(text));
	free(text);
	return r;
}

void xconn_timeout(struct xconn *c, int timeout_ms)
{
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };

	c->timeout_ms = timeout_ms;
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

void xconn_deadline(struct xconn *c, int ms)
{
	c->deadline_ms = ms > 0 ? gv_now_ms() + (uint64_t)ms : 0;
}

void xconn_init(struct xconn *c, int fd, int timeout_ms)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	xconn_timeout(c, timeout_ms);
}

void xconn_close(struct xconn *c)
{
	xtls_close(c);
	if (c->fd >= 0)
		close(c->fd);
	EVP_MAC_CTX_free(c->mac_tx);
	EVP_MAC_CTX_free(c->mac_rx);
	free(c->buf);
	c->fd = -1;
	c->mac_tx = c->mac_rx = NULL;
	c->buf = NULL;
}

static int io_errno(void)
{
	return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
}

static int write_all(struct xconn *c, const void *p, size_t n, int flags)
{
	const uint8_t *b = p;

	if (c->ssl)
		return xtls_write_all(c, p, n);
	while (n > 0) {
		ssize_t w = send(c->fd, b, n, MSG_NOSIGNAL | flags);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return io_errno();
		b += w;
		n -= (size_t)w;
		c->bytes_tx += (uint64_t)w;
	}
	return 0;
}

static int read_all(struct xconn *c, void *p, size_t n)
{
	uint8_t *b = p;

	while (c->ssl && n > 0) { /* the deadline bounds its waits */
		ssize_t r = xtls_read(c, b, n);
		if (r < 0)
			return (int)r;
		b += r;
		n -= (size_t)r;
	}
	while (n > 0) {
		if (c->deadline_ms) { /* what is left of it bounds this read */
			uint64_t now = gv_now_ms();
			if (now >= c->deadline_ms)
				return -ETIMEDOUT;
			uint64_t left = c->deadline_ms - now;
			struct timeval tv = { (time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000 };
			setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		}
		ssize_t r = recv(c->fd, b, n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return io_errno();
		if (r == 0)
			return -ECONNRESET;
		b += r;
		n -= (size_t)r;
		c->bytes_rx += (uint64_t)r;
	}
	return 0;
}

/* MAC over seq || type || a || b with @ctx. */
static void frame_mac(EVP_MAC_CTX *ctx, uint64_t seq, uint8_t type, const void *a,
		      size_t alen, const void *b, size_t blen, uint8_t out[32])
{
	uint8_t hdr[9];
	size_t outl;

	put_be64(hdr, seq);
	hdr[8] = type;
	EVP_MAC_init(ctx, NULL, 0, NULL);
	EVP_MAC_update(ctx, hdr, sizeof(hdr));
	if (alen)
		EVP_MAC_update(ctx, a, alen);
	if (blen)
		EVP_MAC_update(ctx, b, blen);
	EVP_MAC_final(ctx, out, &outl, 32);
}

int xconn_send(struct xconn *c, uint8_t type, const void *a, size_t alen,
	       const void *b, size_t blen)
{
	uint8_t hdr[5], mac[32];
	bool macs = c->mac_tx;
	size_t len = 1 + alen + blen + (macs ? XFER_MAC_LEN : 0);
	int r;

	if (len > XFER_MAX_FRAME)
		return -EMSGSIZE;
	put_be32(hdr, (uint32_t)len);
	hdr[4] = type;
	if (c->ssl && alen < 16384 - sizeof(hdr)) { /* one record for the small part */
		uint8_t buf[16384];
		memcpy(buf, hdr, sizeof(hdr));
		if (alen)
			memcpy(buf + sizeof(hdr), a, alen);
		r = xtls_write_all(c, buf, sizeof(hdr) + alen);
		return r == 0 && blen ? xtls_write_all(c, b, blen) : r;
	}
	/* MSG_MORE only where more of the frame follows: a corked last piece
	 * would wait for the kernel's 200 ms cork timeout */
	r = write_all(c, hdr, sizeof(hdr), alen || blen || macs ? MSG_MORE : 0);
	if (r == 0 && alen)
		r = write_all(c, a, alen, blen || macs ? MSG_MORE : 0);
	if (r == 0 && blen)
		r = write_all(c, b, blen, macs ? MSG_MORE : 0);
	if (r == 0 && macs) {
		frame_mac(c->mac_tx, c->seq_tx++, type, a, alen, b, blen, mac);
		r = write_all(c, mac, XFER_MAC_LEN, 0);
	}
	return r;
}

int xconn_recv(struct xconn *c, uint8_t *type, uint8_t **payload, size_t *len)
{
	uint8_t hdr[5], mac[32];
	size_t n, maclen = c->mac_rx ? XFER_MAC_LEN : 0;
	int r = read_all(c, hdr, sizeof(hdr));

	if (r < 0)
		return r;
	n = get_be32(hdr);
	if (n < 1 + maclen || n > (c->authed ? XFER_MAX_FRAME : XFER_MAX_PREAUTH))
		return -EBADMSG;
	n -= 1 + maclen;
	if (n + maclen > c->cap) {
		c->cap = n + maclen + 4096;
		c->buf = realloc(c->buf, c->cap);
		if (!c->buf)
			return -ENOMEM;
	}
	r = read_all(c, c->buf, n + maclen);
	if (r < 0)
		return r;
	if (maclen) {
		frame_mac(c->mac_rx, c->seq_rx++, hdr[4], c->buf, n, NULL, 0, mac);
		if (CRYPTO_memcmp(mac, c->buf + n, XFER_MAC_LEN))
			return -EBADMSG;
	}
	*type = hdr[4];
	*payload = c->buf;
	*len = n;
	return 0;
}

void xconn_send_error(struct xconn *c, const char *fmt, ...)
{
	char msg[300];
	va_list ap;
	int r;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	r = xconn_send(c, XT_ERROR, msg, strlen(msg), NULL, 0);
	(void)r;
}

/* HMAC-SHA256(key, label || cn || sn) */
static void derive(const uint8_t *key, const char *label, const uint8_t *cn,
		   const uint8_t *sn, uint8_t out[32])
{
	EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(m);
	OSSL_PARAM p[] = { OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
							    "SHA256", 0),
			   OSSL_PARAM_construct_end() };
	size_t outl;

	EVP_MAC_init(ctx, key, GV_XFER_KEY_LEN, p);
	EVP_MAC_update(ctx, (const uint8_t *)label, strlen(label));
	EVP_MAC_update(ctx, cn, XFER_NONCE_LEN);
	EVP_MAC_update(ctx, sn, XFER_NONCE_LEN);
	EVP_MAC_final(ctx, out, &outl, 32);
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(m);
}

static EVP_MAC_CTX *mac_ctx(const uint8_t key[32])
{
	EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(m);
	OSSL_PARAM p[] = { OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
							    "SHA256", 0),
			   OSSL_PARAM_construct_end() };

	EVP_MAC_init(ctx, key, 32, p);
	EVP_MAC_free(m);
	return ctx;
}

static void start_macs(struct xconn *c, const uint8_t *key, const uint8_t *cn,
		       const uint8_t *sn, bool client)
{
	uint8_t c2s[32], s2c[32];

	derive(key, "gridvm-xfer c2s", cn, sn, c2s);
	derive(key, "gridvm-xfer s2c", cn, sn, s2c);
	c->mac_tx = mac_ctx(client ? c2s : s2c);
	c->mac_rx = mac_ctx(client ? s2c : c2s);
	c->authed = true;
	OPENSSL_cleanse(c2s, sizeof(c2s));
	OPENSSL_cleanse(s2c, sizeof(s2c));
}

static int expect(struct xconn *c, uint8_t want, uint8_t **p, size_t *n, gv_err *e)
{
	uint8_t type;
	int r = xconn_recv(c, &type, p, n);

	if (r < 0)
		return gv_err_set(e, r, "%s",
				  r == -ECONNRESET ? "the peer closed the connection"
				  : r == -EBADMSG  ? "the peer sent a malformed frame"
						   : strerror(-r));
	if (type == XT_ERROR)
		return gv_err_set(e, -EPROTO, "the peer says: %.*s",
				  (int)(*n > 200 ? 200 : *n), *p);
	if (type != want)
		return gv_err_set(e, -EPROTO, "protocol error: expected frame '%c', got 0x%02x",
				  want, type);
	return 0;
}

static int legacy_client(struct xconn *c, const uint8_t *key, gv_err *e)
{
	uint8_t hello[8 + 2 + XFER_NONCE_LEN], cn[XFER_NONCE_LEN], proof[32], *p;
	size_t n;
	int r;

	RAND_bytes(cn, sizeof(cn));
	memcpy(hello, XFER_MAGIC, 8);
	hello[8] = 0;
	hello[9] = XFER_VERSION;
	memcpy(hello + 10, cn, sizeof(cn));
	r = xconn_send(c, XT_HELLO, hello, sizeof(hello), NULL, 0);
	if (r == 0)
		r = expect(c, XT_HELLO_OK, &p, &n, e);
	if (r < 0)
		return r;
	if (n != 2 + XFER_NONCE_LEN + 32 || p[0] != 0 || p[1] != XFER_VERSION)
		return gv_err_set(e, -EPROTO, "the peer speaks another protocol version");
	uint8_t sn[XFER_NONCE_LEN], sproof[32];
	memcpy(sn, p + 2, sizeof(sn));
	memcpy(sproof, p + 2 + XFER_NONCE_LEN, 32);
	derive(key, "gridvm-xfer server", cn, sn, proof);
	if (CRYPTO_memcmp(proof, sproof, 32))
		return gv_err_set(e, -EACCES, "the peer does not hold the grid key "
				  "(authentication failed)");
	derive(key, "gridvm-xfer client", cn, sn, proof);
	r = xconn_send(c, XT_AUTH, proof, 32, NULL, 0);
	if (r == 0) {
		start_macs(c, key, cn, sn, true);
		r = expect(c, XT_AUTH_OK, &p, &n, e);
	}
	return r;
}

static int legacy_server(struct xconn *c, const uint8_t *key, gv_err *e)
{
	uint8_t sn[XFER_NONCE_LEN], cn[XFER_NONCE_LEN], out[2 + XFER_NONCE_LEN + 32];
	uint8_t proof[32], *p;
	size_t n;
	int r = expect(c, XT_HELLO, &p, &n, e);

	if (r < 0)
		return r;
	if (n != 10 + XFER_NONCE_LEN || memcmp(p, XFER_MAGIC, 8) || p[8] != 0 ||
	    p[9] != XFER_VERSION) {
		xconn_send_error(c, "unsupported protocol or version");
		return gv_err_set(e, -EPROTO, "peer sent a bad hello");
	}
	memcpy(cn, p + 10, sizeof(cn));
	RAND_bytes(sn, sizeof(sn));
	out[0] = 0;
	out[1] = XFER_VERSION;
	memcpy(out + 2, sn, sizeof(sn));
	derive(key, "gridvm-xfer server", cn, sn, out + 2 + XFER_NONCE_LEN);
	r = xconn_send(c, XT_HELLO_OK, out, sizeof(out), NULL, 0);
	if (r == 0)
		r = expect(c, XT_AUTH, &p, &n, e);
	if (r < 0)
		return r;
	derive(key, "gridvm-xfer client", cn, sn, proof);
	if (n != 32 || CRYPTO_memcmp(proof, p, 32)) {
		xconn_send_error(c, "authentication failed");
		return gv_err_set(e, -EACCES, "peer failed authentication");
	}
	start_macs(c, key, cn, sn, false);
	return xconn_send(c, XT_AUTH_OK, NULL, 0, NULL, 0);
}

/* ---- which authentication: TLS where the host has certificates ---- */

static bool key_set(const uint8_t *key)
{
	uint8_t any = 0;

	for (int i = 0; key && i < GV_XFER_KEY_LEN; i++)
		any |= key[i];
	return any != 0;
}

/* A new connection to the same peer in place of c->fd (same number). */
static int redial(struct xconn *c, const struct sockaddr_storage *sa, socklen_t sl)
{
	int fd, r = 0;

	fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	xtls_close(c);
	if (dup3(fd, c->fd, O_CLOEXEC) < 0)
		r = -errno;
	close(fd);
	xconn_timeout(c, c->timeout_ms); /* connect(2) honours the send timeout */
	if (r == 0 && connect(c->fd, (const struct sockaddr *)sa, sl) < 0)
		r = io_errno();
	c->npre = 0;
	return r;
}

/* Wait for the server's word that it took us (AUTH_OK), or its reason. */
static int tls_admitted(struct xconn *c, gv_err *e)
{
	uint8_t type, *p;
	size_t n;
	int r = xconn_recv(c, &type, &p, &n);

	if (r == -EPROTO)
		return gv_err_set(e, -EACCES, "the peer refused this host's certificate (%s)",
				  c->tls_why);
	if (r < 0)
		return gv_err_set(e, r, "%s", r == -ECONNRESET ? "the peer closed the connection"
						    : strerror(-r));
	if (type == XT_ERROR)
		return gv_err_set(e, -EACCES, "the peer says: %.*s", (int)(n > 200 ? 200 : n), p);
	if (type != XT_AUTH_OK)
		return gv_err_set(e, -EPROTO, "protocol error: expected frame 'a', got 0x%02x", type);
	return 0;
}

int xauth_client(struct xconn *c, const uint8_t *key, gv_err *e)
{
	gv_tls *t = c->tls ? c->tls : gv_tls_default();
	struct sockaddr_storage sa; /* before a refusal resets the socket */
	socklen_t sl = sizeof(sa);
	int r = getpeername(c->fd, (struct sockaddr *)&sa, &sl) < 0 ? -errno : 0;

	if (r == 0)
		r = xtls_client(c, t, e);
	if (r == 0) {
		c->authed = true;
		return tls_admitted(c, e);
	}
	/* no certificates here, or (while this host still holds the grid key:
	 * the switch to TLS, host by host) a peer without them */
	if (r == -EPROTONOSUPPORT && key_set(key) && redial(c, &sa, sl) == 0)
		r = -ENOENT;
	if (r != -ENOENT)
		return r;
	if (!key_set(key))
		return gv_err_set(e, -EACCES, "this host has neither TLS certificates nor the grid "
				  "key; see 'gridvm ca --help'");
	return legacy_client(c, key, e);
}

int xauth_local(struct xconn *c, bool server, gv_err *e)
{
	int r = server ? gv_user_of_socket(c->fd, &c->peer.user) : 0;

	if (r < 0)
		return gv_err_set(e, r, "cannot tell the local peer's user: %s", strerror(-r));
	c->peer.local = server;
	c->authed = true;
	return 0;
}

/* The first byte the peer sends, left in the socket, within the deadline. */
static int peek_first(struct xconn *c, uint8_t *b)
{
	for (;;) {
		int ms = c->timeout_ms > 0 ? c->timeout_ms : -1;
		if (c->deadline_ms) {
			uint64_t now = gv_now_ms();
			if (now >= c->deadline_ms)
				return -ETIMEDOUT;
			if (ms < 0 || c->deadline_ms - now < (uint64_t)ms)
				ms = (int)(c->deadline_ms - now);
		}
		struct pollfd p = { c->fd, POLLIN, 0 };
		int r = poll(&p, 1, ms);
		if (r == 0)
			return -ETIMEDOUT;
		if (r < 0 && errno != EINTR)
			return -errno;
		ssize_t n = r > 0 ? recv(c->fd, b, 1, MSG_PEEK | MSG_DONTWAIT) : -1;
		if (n == 1)
			return 0;
		if (n == 0)
			return -ECONNRESET;
		if (n < 0 && errno != EAGAIN && errno != EINTR && errno != EWOULDBLOCK)
			return -errno;
	}
}

int xauth_server(struct xconn *c, const uint8_t *key, gv_err *e)
{
	gv_tls *t = c->tls ? c->tls : gv_tls_default();
	gv_err why = { "" };
	uint8_t first;
	bool tls = gv_tls_enabled(t, &why);
	int r = peek_first(c, &first);

	if (r < 0)
		return gv_err_set(e, r, "the peer sent nothing (%s)", strerror(-r));
	if (first == 0x16 && !tls) { /* a TLS ClientHello */
		xconn_send_error(c, "this host has no %sTLS certificate; it takes only the "
				 "shared grid key", why.msg[0] ? "usable " : "");
		return gv_err_set(e, -EPROTONOSUPPORT, "a peer asked for TLS; this host has no "
				  "usable certificate");
	}
	if (first != 0x16) {
		if (key_set(key))
			return legacy_server(c, key, e);
		xconn_send_error(c, "this host takes only mutual TLS with a certificate from "
				 "the grid CA (see 'gridvm ca issue')");
		return gv_err_set(e, -EACCES, "a peer without TLS was refused");
	}
	r = xtls_server(c, t, &why);
	if (r == 0) {
		c->authed = true;
		return xconn_send(c, XT_AUTH_OK, NULL, 0, NULL, 0);
	}
	if (c->ssl && SSL_is_init_finished(c->ssl)) /* the role, say: tell it */
		xconn_send_error(c, "%s", why.msg);
	return gv_err_set(e, r, "%s", why.msg);
}

int xcodec_compress(gv_codec codec, int level, const uint8_t *in, size_t n,
		    uint8_t **out, size_t *outlen)
{
	size_t cap;

	switch (codec) {
	case GV_CODEC_NONE: cap = n; break;
	case GV_CODEC_ZLIB: cap = compressBound(n); break;
	case GV_CODEC_LZ4: cap = (size_t)LZ4_compressBound((int)n); break;
	case GV_CODEC_ZSTD: cap = ZSTD_compressBound(n); break;
	default: return -EINVAL;
	}
	*out = malloc(cap ? cap : 1);
	if (!*out)
		return -ENOMEM;
	if (codec == GV_CODEC_NONE) {
		memcpy(*out, in, n);
		*outlen = n;
	} else if (codec == GV_CODEC_ZLIB) {
		uLongf dl = cap;
		if (compress2(*out, &dl, in, n, level ? level : 6) != Z_OK)
			goto fail;
		*outlen = dl;
	} else if (codec == GV_CODEC_LZ4) {
		int w = LZ4_compress_fast((const char *)in, (char *)*out, (int)n, (int)cap,
					  level > 1 ? level : 1);
		if (w <= 0)
			goto fail;
		*outlen = (size_t)w;
	} else {
		size_t w = ZSTD_compress(*out, cap, in, n, level ? level : 3);
		if (ZSTD_isError(w))
			goto fail;
		*outlen = w;
	}
	return 0;
fail:
	free(*out);
	*out = NULL;
	return -EIO;
}

int xcodec_decompress(gv_codec codec, const uint8_t *in, size_t n, uint8_t *out,
		      size_t rawlen)
{
	switch (codec) {
	case GV_CODEC_NONE:
		if (n != rawlen)
			return -EBADMSG;
		memcpy(out, in, n);
		return 0;
	case GV_CODEC_ZLIB: {
		uLongf dl = rawlen;
		return uncompress(out, &dl, in, n) == Z_OK && dl == rawlen ? 0 : -EBADMSG;
	}
	case GV_CODEC_LZ4:
		return LZ4_decompress_safe((const char *)in, (char *)out, (int)n,
					   (int)rawlen) == (int)rawlen ? 0 : -EBADMSG;
	case GV_CODEC_ZSTD: {
		size_t w = ZSTD_decompress(out, rawlen, in, n);
		return !ZSTD_isError(w) && w == rawlen ? 0 : -EBADMSG;
	}
	}
	return -EBADMSG;
}

int xfer_index_digest(const gv_blockidx *bi, uint8_t out[GV_HASH_LEN])
{
	gv_blockidx content = *bi; /* the file's time is the holder's business */
	uint8_t *raw = NULL;
	size_t len = 0;
	int r;

	content.image_mtime_ns = 0;
	r = gv_blockidx_serialize(&content, &raw, &len);

	if (r == 0 && !EVP_Digest(raw, len, out, NULL, EVP_sha256(), NULL))
		r = -EIO;
	free(raw);
	return r;
}
