/* SPDX-License-Identifier: MIT */
/* xfer_internal.h - framing, authentication and codecs shared by the
 * transfer's source (xfer_src.c) and destination (xfer_dst.c). */
#ifndef GRIDVM_XFER_INTERNAL_H
#define GRIDVM_XFER_INTERNAL_H

#include <gridvm/xfer/tls.h>
#include <gridvm/xfer/xfer.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <sys/types.h>

#define XFER_MAGIC "GRIDVMX1"
#define XFER_VERSION 1
#define XFER_MAX_FRAME (32u << 20)
#define XFER_MAX_PREAUTH 256 /* frames before authentication are tiny */
#define XFER_INDEX_PART (16u << 20)
/* The size of the index parts the source sends (XFER_INDEX_PART; tests
 * make it small to exercise the reassembly). */
extern size_t xfer_index_part;
/* SHA-256 of @bi serialized without its file time (how a client names
 * the index it holds in OPEN "base"). */
int xfer_index_digest(const gv_blockidx *bi, uint8_t out[GV_HASH_LEN]);
#define XFER_MAC_LEN 16
#define XFER_NONCE_LEN 32

enum xfer_type {
	XT_HELLO = 'H',      /* c->s: magic, u16 version, nonce */
	XT_HELLO_OK = 'h',   /* s->c: u16 version, nonce, server proof */
	XT_AUTH = 'A',       /* c->s: client proof */
	XT_AUTH_OK = 'a',    /* s->c: empty; from here on frames carry MACs */
	XT_OPEN = 'O',       /* c->s: JSON {"image", "codec", "level"} */
	XT_INDEX = 'I',      /* s->c: u32 raw length, u32 compressed length, first part
			      * of zstd(serialized block index); the rest follows in
			      * XT_INDEX_MORE frames */
	XT_INDEX_MORE = 'i', /* s->c: next part of the compressed index */
	XT_INDEX_DELTA = 'J', /* s->c: u32 raw length, u32 compressed length, a
			       * zstd-compressed delta against the index the
			       * client named in OPEN "base" (docs) */
	XT_REQ = 'R',        /* c->s: u64 first block, u32 count */
	XT_DATA = 'D',       /* s->c: u64 first, u32 count, u8 codec, u32 raw length, data */
	XT_REHASH = 'X',     /* c->s: JSON {"final": bool}; answered by a new INDEX */
	XT_CTRL = 'C',       /* c->s: JSON control request (agent to agent) */
	XT_CTRL_OK = 'c',    /* s->c: JSON reply */
	XT_DONE = 'Q',       /* c->s: empty, the end */
	XT_ERROR = 'E',      /* either: UTF-8 text, then the sender closes */
};

struct xconn {
	int fd;
	bool authed;
	EVP_MAC_CTX *mac_tx, *mac_rx;
	uint64_t seq_tx, seq_rx;
	uint64_t bytes_tx, bytes_rx;
	uint8_t *buf;
	size_t cap;
	uint64_t deadline_ms; /* monotonic: reads fail after it (0: none) */
	/* TLS (xfer_tls.c): with @ssl set, frames carry no MAC (the records
	 * are authenticated) and the socket is non-blocking */
	gv_tls *tls;	   /* material to use; NULL: the process's */
	SSL *ssl;
	int timeout_ms;	   /* per read/write */
	int sock_err;	   /* the socket's last error under TLS */
	uint8_t pre[8];	   /* the first bytes the peer sent (is it TLS?) */
	size_t npre;
	char tls_why[200]; /* the TLS library's reason for the last failure */
	gv_peer_id peer;   /* once authenticated */
	bool users_ok;	   /* a server that takes users' certificates (role
			    * user); a client never does */
};

/* Set up @c on connected socket @fd with read/write timeouts. */
void xconn_init(struct xconn *c, int fd, int timeout_ms);
void xconn_close(struct xconn *c);
/* Change the read/write timeout (e.g. while the peer hashes an image). */
void xconn_timeout(struct xconn *c, int timeout_ms);
/* Every read must be done within @ms from now, however slowly the peer
 * trickles its bytes (0: no deadline; the per-read timeout again). */
void xconn_deadline(struct xconn *c, int ms);

/* Send one frame whose payload is @a then @b (either may be empty). */
int xconn_send(struct xconn *c, uint8_t type, const void *a, size_t alen,
	       const void *b, size_t blen);
/* Receive one frame; *payload points into the connection's buffer and
 * stays valid until the next receive. -EBADMSG on a bad MAC or frame,
 * -ECONNRESET on EOF, -ETIMEDOUT. */
int xconn_recv(struct xconn *c, uint8_t *type, uint8_t **payload, size_t *len);
/* Send an ERROR frame (best effort). */
void xconn_send_error(struct xconn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Mutual authentication with the shared key; on success both sides MAC
 * every later frame. */
int xauth_client(struct xconn *c, const uint8_t *key, gv_err *e);
int xauth_server(struct xconn *c, const uint8_t *key, gv_err *e);
/* On a unix socket: no handshake (the kernel vouches for the peer); the
 * server finds the peer's user (SO_PEERCRED) in c->peer. */
int xauth_local(struct xconn *c, bool server, gv_err *e);

/* TLS 1.3 on a connected xconn with @t's material, the peer verified
 * (client: its certificate must name the address dialled); the peer's
 * identity in c->peer. -ENOENT (no message): @t holds no material;
 * -EPROTONOSUPPORT: the peer does not speak TLS (what it said in @e). */
int xtls_client(struct xconn *c, gv_tls *t, gv_err *e);
int xtls_server(struct xconn *c, gv_tls *t, gv_err *e);
ssize_t xtls_read(struct xconn *c, void *p, size_t n);
int xtls_write_all(struct xconn *c, const void *p, size_t n);
void xtls_close(struct xconn *c);

/* Compress @n bytes; *out is malloc'd. */
int xcodec_compress(gv_codec codec, int level, const uint8_t *in, size_t n,
		    uint8_t **out, size_t *outlen);
/* Decompress into @out which must receive exactly @rawlen bytes. */
int xcodec_decompress(gv_codec codec, const uint8_t *in, size_t n, uint8_t *out,
		      size_t rawlen);

static inline void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static inline uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static inline void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

#endif
