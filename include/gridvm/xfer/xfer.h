/* SPDX-License-Identifier: MIT */
/*
 * xfer.h - the deduplicating block transfer between gridvm hosts.
 *
 * The source serves its images to peers that prove they hold the grid's
 * shared key. The destination receives the image's block index first,
 * rebuilds every block it already holds anywhere on the host (host-wide
 * block index, each candidate verified by its SHA-256), then asks for the
 * missing blocks in runs with many requests in flight; the source sends
 * them compressed (none, zlib, lz4 or zstd). Every received block is
 * checked against its hash before it is written; zero blocks are holes;
 * the whole-image SHA-256 is checked at the end; the image appears under
 * its name only when complete. An interrupted fetch resumes: blocks
 * already in the partial file that match their hash are kept.
 * Protocol: docs/transfer-protocol.md.
 */
#ifndef GRIDVM_XFER_H
#define GRIDVM_XFER_H

#include <gridvm/base/err.h>
#include <gridvm/blocks/hostidx.h>
#include <gridvm/xfer/tls.h>
#include <jansson.h>

#define GV_XFER_PORT 7878
#define GV_XFER_KEY_LEN 32

typedef enum gv_codec {
	GV_CODEC_NONE = 0,
	GV_CODEC_ZLIB = 1,
	GV_CODEC_LZ4 = 2,
	GV_CODEC_ZSTD = 3,
} gv_codec;

/* "none", "zlib", "lz4", "zstd" <-> enum; -EINVAL if unknown. */
int gv_codec_parse(const char *s);
const char *gv_codec_name(gv_codec c);

/* "host", "host:port" or "[v6]:port"; *port defaults to GV_XFER_PORT. A
 * unix socket: "/path" or "unix:/path" (*host the path, *port 0). */
int gv_xfer_peer_parse(const char *s, char *host, size_t len, int *port) GV_WUR;

/* Read a grid key file: 64 hex characters (32 bytes). */
int gv_xfer_key_load(const char *path, uint8_t key[GV_XFER_KEY_LEN]) GV_WUR;

/* --- source side --------------------------------------------------- */

/* Resolve an image name to its raw file and block index path; the
 * server calls it for every OPEN. Returns 0 or a negative errno. */
typedef int (*gv_xfer_resolve_fn)(void *ud, const char *name, char **path,
				  char **idx_path);

/* Agent-to-agent requests (migration) arriving on an authenticated
 * connection: answer with a new JSON reference (e.g. {"ok": true} or
 * {"ok": false, "error": "..."}). Over TLS the request carries "_peer":
 * {"tls": true, "name", "role", "dn"} from the peer's verified
 * certificate (a "_peer" the peer sent itself is always removed). */
typedef json_t *(*gv_xfer_control_fn)(void *ud, json_t *request);

/* Write tracking for live images (a running VM's disk: QEMU's dirty
 * bitmap), asked before each index of live image @name is made. With
 * @since the token of the previous call: returns 0, *ext and *n the byte
 * ranges written since that call (malloc'd; none: NULL and 0) and *token
 * the token for the next one. With @since 0 or a token that is no longer
 * current: tracking starts anew and 1 is returned with *token (hash the
 * whole image). Negative: @name is not tracked. */
typedef int (*gv_xfer_dirty_fn)(void *ud, const char *name, uint64_t since,
				uint64_t *token, gv_extent **ext, size_t *n);

typedef struct gv_xfer_server gv_xfer_server;

/* Listen on @addr ("IP:PORT" or "IP") and serve each peer in a thread.
 * On a unix socket (@addr a path): no handshake, the kernel names each
 * peer's local user (control requests get "_peer": {"local": true,
 * "uid", "gid", "name", "admin"}), and the socket is open to local users
 * (gv_user_socket_access).
 * @return 0, or a negative errno with the reason in @e. */
int gv_xfer_server_start(const char *addr, const uint8_t key[GV_XFER_KEY_LEN],
			 gv_xfer_resolve_fn resolve, void *ud,
			 gv_xfer_server **out, gv_err *e) GV_WUR;
void gv_xfer_server_stop(gv_xfer_server *s);
/* Handle control requests with @fn (NULL: refuse them). */
void gv_xfer_server_set_control(gv_xfer_server *s, gv_xfer_control_fn fn);
/* Take peers with @tls's certificates (not owned; NULL: the process's,
 * gv_tls_default(), which is also what a new server uses). */
typedef struct gv_tls gv_tls;
void gv_xfer_server_set_tls(gv_xfer_server *s, gv_tls *tls);
/* Ask @fn(ud, peer, name) before serving @name to @peer (an OPEN): 0, or
 * a negative errno and the peer is told there is no such image. NULL:
 * every authenticated peer may fetch whatever resolves. */
typedef int (*gv_xfer_authorize_fn)(void *ud, const gv_peer_id *peer, const char *name);
void gv_xfer_server_set_authorize(gv_xfer_server *s, gv_xfer_authorize_fn fn);
/* Take peers with a user's certificate (role user; off by default, as on
 * agents, which refuse them at the handshake): a controller does, and its
 * handlers see "_peer": {"tls": true, "role": "user", "name": USER}. */
void gv_xfer_server_set_users(gv_xfer_server *s, bool on);
/* Index live images from @fn's written ranges (NULL: hash them whole). */
void gv_xfer_server_set_dirty(gv_xfer_server *s, gv_xfer_dirty_fn fn);

/* Send one control request to the agent at @host:@port and wait up to
 * @timeout_ms for its reply (*reply: new reference; over TLS it carries
 * "_peer", the answering host's certificate as in a request). @return 0,
 * or a negative errno with the reason in @e. */
int gv_xfer_control(const char *host, int port, const uint8_t key[GV_XFER_KEY_LEN],
		    json_t *request, int timeout_ms, json_t **reply, gv_err *e) GV_WUR;
/* The TCP port the server listens on (useful after asking for port 0). */
int gv_xfer_server_port(const gv_xfer_server *s);

/* --- destination side ---------------------------------------------- */

typedef struct gv_fetch_opts {
	const char *host;          /* peer address */
	int port;                  /* 0 = GV_XFER_PORT */
	const char *image;         /* name on the source */
	const char *dest;          /* final path of the image file */
	gv_codec codec;
	int level;                 /* codec level, 0 = its default */
	unsigned window;           /* requests in flight, 0 = default (64) */
	unsigned run_blocks;       /* max blocks per request, 0 = 256 */
	const char *index_dest;    /* if set, save the received block index
				    * there, current for @dest (no re-hash);
				    * blocks an early iterative pass could
				    * not take (they changed while sent) are
				    * listed in INDEX_DEST.stale: @dest does
				    * not hold what the index says there */
	bool in_place;             /* write into @dest itself (it may be open
				    * elsewhere, e.g. by an incoming QEMU) and
				    * keep every block that already matches */
	const gv_blockidx *base_index; /* in_place: the index @dest matches
				    * exactly (saved by an earlier in-place
				    * fetch with @index_dest, file untouched
				    * since); the source then sends only the
				    * changes if it still has that index, and
				    * only changed blocks are read or written */
	const uint64_t *base_stale; /* blocks of @dest that do not match
				    * @base_index (the .stale list above) */
	size_t n_base_stale;
	gv_hostidx *hostidx;       /* local blocks, may be NULL */
	/* reads a local block of a source that is not a plain file (e.g. a
	 * checkpoint, whose path is its manifest): 0 or -errno; NULL: every
	 * source is a file, read with pread */
	int (*local_read)(void *ud, const char *path, void *buf, size_t len, uint64_t off);
	void *local_ud;
	const uint8_t *key;        /* GV_XFER_KEY_LEN bytes */
	int timeout_ms;            /* per read/write, 0 = 30000 */
	/* iterative mode, for a disk that is being written: passes that send
	 * only what changed since the previous one, until fewer than
	 * @converge_blocks changed (default 64) or @max_passes (default 5);
	 * then @freeze (the caller stops the writer), a last exact pass, and
	 * @thaw (also after a failure). */
	bool iterative;
	unsigned max_passes;
	uint64_t converge_blocks;
	bool no_final;             /* iterative: stop after the early passes,
				    * no freeze, no final check (the caller
				    * finishes later with an in-place fetch) */
	int (*freeze)(void *ud);
	void (*thaw)(void *ud);
	/* progress, called now and then; @done_bytes counts every block
	 * settled (zero, local, remote) */
	void (*progress)(void *ud, const json_t *p);
	void *ud;
} gv_fetch_opts;

/* The .stale list saved beside @index_path (none: *n = 0, *out NULL). */
int gv_fetch_load_stale(const char *index_path, uint64_t **out, size_t *n) GV_WUR;

/* Fetch; on success 0 and *summary (blocks_total, blocks_zero,
 * blocks_local, blocks_remote, blocks_resumed, bytes_on_wire, seconds,
 * image_sha256, ...); on failure a negative errno and the reason in @e.
 * The partial file DEST.partial is kept for a resume unless the error
 * makes it useless. */
int gv_fetch(const gv_fetch_opts *o, json_t **summary, gv_err *e) GV_WUR;

#endif
