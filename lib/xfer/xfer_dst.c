/* SPDX-License-Identifier: MIT */
/*
 * xfer_dst.c - the destination side of the block transfer (gv_fetch).
 *
 * Phases: connect and authenticate; receive the block index; prepare the
 * partial file (resuming: keep every block that already matches its hash);
 * rebuild blocks found on this host; ask for the rest in runs with a
 * window of requests in flight, verifying every block before writing;
 * copy blocks that repeat inside the image; check the whole-image SHA-256;
 * rename into place.
 */
#include "xfer_dst_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <zstd.h>

int fetch_fail(struct fetch *f, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(f->e->msg, sizeof(f->e->msg), fmt, ap);
	va_end(ap);
	return r;
}


uint64_t fetch_block_len(struct fetch *f, uint64_t b)
{
	uint64_t off = b * f->bs;

	return off + f->bs <= f->bi->image_size ? f->bs : f->bi->image_size - off;
}

bool fetch_hash_ok(struct fetch *f, uint64_t b, const uint8_t *data)
{
	uint8_t h[GV_HASH_LEN];

	EVP_Digest(data, fetch_block_len(f, b), h, NULL, EVP_sha256(), NULL);
	return memcmp(h, f->bi->hashes + b * GV_HASH_LEN, GV_HASH_LEN) == 0;
}

void fetch_progress(struct fetch *f, const char *phase, bool force)
{
	uint64_t now = gv_now_ms(), done;
	json_t *p;

	if (!f->o->progress || (!force && now - f->last_progress < 200))
		return;
	f->last_progress = now;
	done = f->n_zero + f->n_local + f->n_remote + f->n_resumed + f->n_dup;
	p = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f}", "phase", phase,
		      "blocks_total", (json_int_t)f->bi->nblocks, "blocks_done", (json_int_t)done,
		      "blocks_zero", (json_int_t)f->n_zero,
		      "blocks_local", (json_int_t)(f->n_local + f->n_dup + f->n_resumed),
		      "blocks_remote", (json_int_t)f->n_remote,
		      "bytes_on_wire", (json_int_t)(f->c.bytes_rx + f->c.bytes_tx),
		      "image_size", (json_int_t)f->bi->image_size, "seconds",
		      (double)(now - f->t0) / 1000.0);
	f->o->progress(f->o->ud, p);
	json_decref(p);
}

static int connect_peer(struct fetch *f)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai;
	char port[16];
	int fd, r, timeout = f->o->timeout_ms ? f->o->timeout_ms : 30000;

	if (f->o->host[0] == '/') { /* a unix socket here: the kernel vouches */
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->o->host);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			r = -errno;
			if (fd >= 0)
				close(fd);
			return fetch_fail(f, r, "cannot reach %s: %s", f->o->host, strerror(-r));
		}
		xconn_init(&f->c, fd, timeout);
		return xauth_local(&f->c, false, f->e);
	}
	snprintf(port, sizeof(port), "%d", f->o->port ? f->o->port : GV_XFER_PORT);
	r = getaddrinfo(f->o->host, port, &hints, &ai);
	if (r != 0)
		return fetch_fail(f, -EHOSTUNREACH, "unknown host %s: %s", f->o->host, gai_strerror(r));
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	r = fd < 0 ? -errno : connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 ? -errno : 0;
	freeaddrinfo(ai);
	if (r == -EINPROGRESS) {
		struct pollfd p = { fd, POLLOUT, 0 };
		socklen_t sl = sizeof(r);
		if (poll(&p, 1, timeout) != 1)
			r = -ETIMEDOUT;
		else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &r, &sl) == 0)
			r = -r;
	}
	if (r < 0) {
		if (fd >= 0)
			close(fd);
		return fetch_fail(f, r, "cannot reach %s:%s: %s", f->o->host, port, strerror(-r));
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	xconn_init(&f->c, fd, timeout);
	return xauth_client(&f->c, f->o->key, f->e);
}

int fetch_recv_frame(struct fetch *f, uint8_t want, uint8_t **p, size_t *n)
{
	uint8_t type;
	int r = xconn_recv(&f->c, &type, p, n);

	if (r == -ECONNRESET)
		return fetch_fail(f, r, "the source closed the connection");
	if (r == -ETIMEDOUT)
		return fetch_fail(f, r, "the source stopped answering (timeout)");
	if (r == -EBADMSG)
		return fetch_fail(f, r, "the source sent a frame that fails its MAC; disconnected");
	if (r < 0)
		return fetch_fail(f, r, "connection to the source failed: %s", strerror(-r));
	if (type == XT_ERROR)
		return fetch_fail(f, -EPROTO, "the source says: %.*s", (int)(*n > 200 ? 200 : *n), *p);
	if (type != want && !(want == XT_INDEX && type == XT_INDEX_DELTA && f->o->base_index))
		return fetch_fail(f, -EPROTO, "protocol error: unexpected frame 0x%02x", type);
	f->last_type = type;
	return 0;
}

/* An INDEX_DELTA frame: the changes from o->base_index to the image now. */
static int apply_delta(struct fetch *f, const uint8_t *p, size_t n, gv_blockidx **out)
{
	const gv_blockidx *base = f->o->base_index;
	size_t rawlen = n >= 8 ? get_be32(p) : 0, zlen = n >= 8 ? get_be32(p + 4) : 0;
	uint8_t *raw = NULL;
	gv_blockidx *bi = NULL;
	uint64_t count, prev = 0, tail;
	int r = -EBADMSG;

	/* the entries are mostly hashes, which do not compress: a delta that
	 * claims to grow more than 4x is a lie (and must not make us allocate) */
	if (n < 8 || zlen != n - 8 || rawlen < 61 || rawlen > 4 * zlen + 4096 ||
	    (rawlen - 61) % 40 || !(raw = malloc(rawlen)) ||
	    ZSTD_decompress(raw, rawlen, p + 8, zlen) != rawlen || raw[0] != 'D')
		goto out;
	count = get_be64(raw + 53);
	bi = calloc(1, sizeof(*bi));
	if (!bi || count != (rawlen - 61) / 40)
		goto out;
	bi->block_shift = get_be32(raw + 1);
	bi->image_size = get_be64(raw + 5);
	bi->nblocks = get_be64(raw + 13);
	memcpy(bi->image_sha256, raw + 21, GV_HASH_LEN);
	if (bi->block_shift != base->block_shift || bi->nblocks > (1u << 25) ||
	    bi->nblocks > base->nblocks + count || /* the new tail is all listed */
	    bi->nblocks != (bi->image_size + (1ULL << bi->block_shift) - 1) >> bi->block_shift ||
	    count > bi->nblocks)
		goto out;
	/* every block past the end of the base must be in the delta */
	tail = bi->nblocks > base->nblocks ? bi->nblocks - base->nblocks : 0;
	bi->hashes = calloc(bi->nblocks + 1, GV_HASH_LEN);
	f->changed = calloc(bi->nblocks + 1, 1);
	if (!bi->hashes || !f->changed)
		goto out;
	memcpy(bi->hashes, base->hashes,
	       (bi->nblocks < base->nblocks ? bi->nblocks : base->nblocks) * GV_HASH_LEN);
	for (uint64_t k = 0; k < count; k++) {
		uint64_t b = get_be64(raw + 61 + k * 40);
		if (b >= bi->nblocks || (k && b <= prev))
			goto out;
		memcpy(bi->hashes + b * GV_HASH_LEN, raw + 61 + k * 40 + 8, GV_HASH_LEN);
		f->changed[b] = 1;
		tail -= b >= base->nblocks;
		prev = b;
	}
	if (tail)
		goto out;
	for (uint64_t b = 0; b < bi->nblocks; b++)
		bi->zero_blocks += gv_blockidx_is_zero(bi, b);
	*out = bi;
	bi = NULL;
	r = 0;
out:
	free(raw);
	gv_blockidx_free(bi);
	if (r < 0) {
		free(f->changed);
		f->changed = NULL;
	}
	return r;
}

/* An INDEX frame: the block index, zstd-compressed. */
static int recv_index(struct fetch *f, gv_blockidx **bi)
{
	uint8_t *p, *raw = NULL, *z = NULL;
	size_t n, rawlen, zlen, have;
	int r;

	/* the source may hash a large image first: wait longer for this */
	xconn_timeout(&f->c, 30 * 60 * 1000);
	r = fetch_recv_frame(f, XT_INDEX, &p, &n);
	if (r == 0 && f->last_type == XT_INDEX_DELTA) {
		r = apply_delta(f, p, n, bi);
		goto out;
	}
	if (r < 0 || n < 8)
		goto out;
	rawlen = get_be32(p);
	zlen = get_be32(p + 4);
	have = n - 8;
	/* at most 1 GiB of index (32 M blocks); compressed data never grows
	 * by more than a little; memory follows what actually arrives */
	if (!rawlen || rawlen > (1u << 30) || !zlen || zlen > rawlen + rawlen / 64 + 4096 ||
	    have > zlen || !(z = malloc(have ? have : 1))) {
		r = -EBADMSG;
		goto out;
	}
	memcpy(z, p + 8, have);
	while (r == 0 && have < zlen && (r = fetch_recv_frame(f, XT_INDEX_MORE, &p, &n)) == 0) {
		/* an empty part is refused: realloc(z, 0) would free z */
		uint8_t *nz = n && n <= zlen - have ? realloc(z, have + n) : NULL;
		if (!nz) {
			r = -EBADMSG;
			break;
		}
		z = nz;
		memcpy(z + have, p, n);
		have += n;
	}
	if (r == 0 && !(raw = malloc(rawlen)))
		r = -ENOMEM;
	if (r == 0 && (ZSTD_decompress(raw, rawlen, z, zlen) != rawlen ||
		       gv_blockidx_parse(raw, rawlen, bi) < 0))
		r = -EBADMSG;
out:
	xconn_timeout(&f->c, f->o->timeout_ms ? f->o->timeout_ms : 30000);
	free(raw);
	free(z);
	if (r == -EBADMSG || (r == 0 && !*bi) || (r == 0 && n < 8 && !*bi))
		return fetch_fail(f, -EBADMSG, "the source sent a damaged block index");
	return r;
}

static int get_index(struct fetch *f)
{
	json_t *j = json_pack("{s:s, s:s, s:i, s:b}", "image", f->o->image, "codec",
			      gv_codec_name(f->o->codec), "level", f->o->level, "live",
			      f->o->iterative || f->o->base_index);
	uint8_t d[GV_HASH_LEN];
	char hex[65], *text;

	if (f->o->base_index && f->o->in_place &&
	    xfer_index_digest(f->o->base_index, d) == 0) {
		gv_hash_hex(d, hex);
		json_object_set_new(j, "base", json_string(hex));
	}
	text = json_dumps(j, JSON_COMPACT);
	int r = xconn_send(&f->c, XT_OPEN, text, strlen(text), NULL, 0);

	free(text);
	json_decref(j);
	if (r == 0)
		r = recv_index(f, &f->bi);
	if (r < 0)
		return r;
	f->bs = 1ULL << f->bi->block_shift;
	f->state = calloc(f->bi->nblocks + 1, 1);
	return f->state ? 0 : -ENOMEM;
}

/* Keep the blocks of an earlier attempt that match their hashes; make
 * the zero blocks holes. Afterwards every block is verified or to fetch.
 * Reads in runs of up to 1 MiB (a block at a time costs a system call
 * per 4 KiB, which counts while a migrating guest is paused). */
static int resume_scan(struct fetch *f)
{
	const uint64_t run = f->bs >= (1 << 20) ? 1 : (1 << 20) / f->bs;
	uint8_t *buf = malloc(run * f->bs);
	static const uint8_t zero[1 << 16];
	int r = 0;

	if (!buf)
		return -ENOMEM;
	for (uint64_t b0 = 0; r == 0 && b0 < f->bi->nblocks; b0 += run) {
		uint64_t n = f->bi->nblocks - b0 < run ? f->bi->nblocks - b0 : run;
		uint64_t want = (n - 1) * f->bs + fetch_block_len(f, b0 + n - 1);
		ssize_t got = pread(f->fd, buf, want, (off_t)(b0 * f->bs));
		for (uint64_t b = b0; r == 0 && b < b0 + n; b++) {
			uint64_t len = fetch_block_len(f, b), at = (b - b0) * f->bs;
			bool have = got >= 0 && (uint64_t)got >= at + len;
			if (gv_blockidx_is_zero(f->bi, b)) {
				bool dirty = !have;
				for (uint64_t o = 0; have && !dirty && o < len; o += sizeof(zero))
					dirty = memcmp(buf + at + o, zero,
						       len - o < sizeof(zero) ? len - o
									  : sizeof(zero)) != 0;
				if (dirty && fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
						       (off_t)(b * f->bs), (off_t)len) < 0)
					r = fetch_fail(f, -errno, "cannot clear a block of %s: %s",
						 f->partial, strerror(errno));
				f->state[b] = B_ZERO;
				f->n_zero++;
			} else if (have && fetch_hash_ok(f, b, buf + at)) {
				f->state[b] = B_DONE;
				f->n_resumed++;
			}
		}
		fetch_progress(f, "resume", false);
	}
	free(buf);
	return r;
}

static int prepare_in_place(struct fetch *f)
{
	struct stat st;

	f->fd = open(f->partial, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (f->fd < 0)
		return fetch_fail(f, -errno, "cannot open %s: %s", f->partial, strerror(errno));
	if (fstat(f->fd, &st) == 0 && (uint64_t)st.st_size != f->bi->image_size &&
	    ftruncate(f->fd, (off_t)f->bi->image_size) < 0)
		return fetch_fail(f, -errno, "cannot size %s: %s", f->partial, strerror(errno));
	if (!f->changed)
		return resume_scan(f); /* keep every block that already matches */
	/* a delta against the base index, which the file matches (the
	 * caller's promise): only the changed blocks need work */
	for (uint64_t b = 0; b < f->bi->nblocks; b++) {
		bool zero = gv_blockidx_is_zero(f->bi, b);
		if (zero && f->changed[b] &&
		    fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)(b * f->bs), (off_t)fetch_block_len(f, b)) < 0)
			return fetch_fail(f, -errno, "cannot clear a block of %s: %s", f->partial,
				    strerror(errno));
		f->state[b] = zero ? B_ZERO : f->changed[b] ? B_NEEDED : B_DONE;
		f->n_zero += zero;
		f->n_resumed += !zero && !f->changed[b];
	}
	/* blocks the file does not hold as the base says: fetched too */
	for (size_t i = 0; i < f->o->n_base_stale; i++) {
		uint64_t b = f->o->base_stale[i];
		if (b >= f->bi->nblocks || f->state[b] != B_DONE)
			continue;
		f->state[b] = B_NEEDED;
		f->n_resumed--;
	}
	return 0;
}

static int prepare(struct fetch *f)
{
	char want[65], *have = NULL;
	struct stat st;
	bool resume;
	int r = 0;

	if (f->o->in_place)
		return prepare_in_place(f);
	gv_hash_hex(f->bi->image_sha256, want);
	resume = gv_read_file(f->marker, &have, NULL) == 0 && !strcmp(have, want) &&
		 stat(f->partial, &st) == 0 && (uint64_t)st.st_size == f->bi->image_size;

	f->fd = open(f->partial, O_RDWR | O_CREAT | O_CLOEXEC | (resume ? 0 : O_TRUNC), 0644);
	if (f->fd < 0)
		r = fetch_fail(f, -errno, "cannot create %s: %s", f->partial, strerror(errno));
	else if (!resume && ftruncate(f->fd, (off_t)f->bi->image_size) < 0)
		r = fetch_fail(f, -errno, "cannot size %s: %s", f->partial, strerror(errno));
	else if (!resume && (r = gv_write_file_atomic(f->marker, want, strlen(want))) < 0)
		fetch_fail(f, r, "cannot write %s", f->marker);
	if (r == 0 && resume)
		r = resume_scan(f);
	for (uint64_t b = 0; r == 0 && !resume && b < f->bi->nblocks; b++)
		if (gv_blockidx_is_zero(f->bi, b)) {
			f->state[b] = B_ZERO;
			f->n_zero++;
		}
	free(have);
	return r;
}

static int whole_sha256(int fd, uint8_t out[GV_HASH_LEN])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t *buf = malloc(1 << 20);
	off_t off = 0;
	ssize_t n;
	int r = 0;

	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	while (buf && (n = pread(fd, buf, 1 << 20, off)) > 0) {
		EVP_DigestUpdate(ctx, buf, (size_t)n);
		off += n;
	}
	if (!buf || n < 0)
		r = -EIO;
	EVP_DigestFinal_ex(ctx, out, NULL);
	EVP_MD_CTX_free(ctx);
	free(buf);
	return r;
}

static int finish(struct fetch *f)
{
	uint8_t h[GV_HASH_LEN];
	int r = xconn_send(&f->c, XT_DONE, NULL, 0, NULL, 0);

	(void)r;
	fetch_progress(f, "verify", true);
	if (fsync(f->fd) < 0)
		return fetch_fail(f, -errno, "cannot sync %s: %s", f->partial, strerror(errno));
	/* in place, this pass checked every block of the file (resume_scan:
	 * the blocks it kept; on arrival: the others), so reading it all
	 * back again would only add to a migrating guest's pause */
	if (f->o->in_place)
		return 0;
	if (whole_sha256(f->fd, h) < 0)
		return fetch_fail(f, -EIO, "cannot read back %s", f->partial);
	if (memcmp(h, f->bi->image_sha256, GV_HASH_LEN)) {
		unlink(f->partial);
		unlink(f->marker);
		return fetch_fail(f, -EBADMSG, "the assembled image does not match the source's "
			    "SHA-256; discarded");
	}
	/* never over an image that appeared meanwhile */
	if (renameat2(AT_FDCWD, f->partial, AT_FDCWD, f->o->dest, RENAME_NOREPLACE) < 0)
		return fetch_fail(f, -errno, "cannot rename into %s: %s", f->o->dest, strerror(errno));
	unlink(f->marker);
	return 0;
}

/* Ask the source to hash its image again and mark every block that
 * changed since the index we worked from. */
static int rehash_diff(struct fetch *f, bool final, uint64_t *changed)
{
	char body[32];
	gv_blockidx *nb = NULL;
	uint8_t *st;
	int r;

	snprintf(body, sizeof(body), "{\"final\": %s}", final ? "true" : "false");
	r = xconn_send(&f->c, XT_REHASH, body, strlen(body), NULL, 0);
	if (r == 0)
		r = recv_index(f, &nb);
	if (r < 0)
		return r;
	if (nb->block_shift != f->bi->block_shift || !(st = calloc(nb->nblocks + 1, 1))) {
		gv_blockidx_free(nb);
		return fetch_fail(f, -EPROTO, "the source changed the block size");
	}
	if (nb->image_size != f->bi->image_size && ftruncate(f->fd, (off_t)nb->image_size) < 0) {
		free(st);
		gv_blockidx_free(nb);
		return fetch_fail(f, -errno, "cannot resize %s", f->partial);
	}
	*changed = 0;
	f->n_zero = 0;
	for (uint64_t b = 0; b < nb->nblocks; b++) {
		bool known = b < f->bi->nblocks && nb->image_size == f->bi->image_size;
		uint8_t old = b < f->bi->nblocks ? f->state[b] : B_NEEDED;
		const uint8_t *h = nb->hashes + b * GV_HASH_LEN;
		if (gv_blockidx_is_zero(nb, b)) {
			if (old != B_ZERO)
				fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					  (off_t)(b * f->bs), (off_t)f->bs);
			*changed += old != B_ZERO;
			st[b] = B_ZERO;
			f->n_zero++;
		} else if (old == B_DONE && known &&
			   !memcmp(h, f->bi->hashes + b * GV_HASH_LEN, GV_HASH_LEN)) {
			st[b] = B_DONE;
		} else {
			*changed += old != B_NEEDED;
			st[b] = B_NEEDED;
		}
	}
	free(f->state);
	f->state = st;
	gv_blockidx_free(f->bi);
	f->bi = nb;
	return 0;
}

static int one_pass(struct fetch *f)
{
	int r = fetch_local_blocks(f);

	if (r == 0)
		r = fetch_group_repeats(f);
	if (r == 0)
		r = fetch_remote_blocks(f);
	if (r == 0)
		r = fetch_copy_followers(f);
	free(f->followers);
	f->followers = NULL;
	f->nfollow = 0;
	return r;
}

static void record_pass(struct fetch *f, unsigned pass, uint64_t changed, uint64_t wire0,
			uint64_t sent0, uint64_t t0, bool frozen)
{
	json_array_append_new(
		f->passes,
		json_pack("{s:i, s:I, s:I, s:I, s:I, s:f, s:b}", "pass", pass, "blocks_changed",
			  (json_int_t)changed, "blocks_sent", (json_int_t)(f->n_remote - sent0),
			  "blocks_changing", (json_int_t)f->rejected, "bytes_on_wire",
			  (json_int_t)(f->c.bytes_rx + f->c.bytes_tx - wire0), "seconds",
			  (double)(gv_now_ms() - t0) / 1000.0, "frozen", frozen));
}

static int final_pass(struct fetch *f);

/* Passes while the source is written, then one with the writer frozen. */
static int iterate(struct fetch *f)
{
	unsigned maxp = f->o->max_passes ? f->o->max_passes : 5;
	uint64_t conv = f->o->converge_blocks ? f->o->converge_blocks : 64, changed = 0;
	int r = 0;

	f->passes = json_array();
	f->tolerant = true;
	for (unsigned pass = 1; r == 0 && pass <= maxp; pass++) {
		uint64_t w0 = f->c.bytes_rx + f->c.bytes_tx, s0 = f->n_remote, t0 = gv_now_ms();
		f->rejected = 0;
		if (pass > 1)
			r = rehash_diff(f, false, &changed);
		else
			for (uint64_t b = 0; b < f->bi->nblocks; b++)
				changed += f->state[b] == B_NEEDED;
		if (r == 0)
			r = one_pass(f);
		record_pass(f, pass, changed, w0, s0, t0, false);
		if (pass > 1 && changed + f->rejected <= conv)
			break;
	}
	if (r < 0 || f->o->no_final)
		return r;
	return final_pass(f);
}

static int final_pass(struct fetch *f)
{
	uint64_t changed = 0;
	int r;

	if (f->o->freeze && f->o->freeze(f->o->ud) < 0) {
		if (f->o->thaw) /* whatever it froze must go on */
			f->o->thaw(f->o->ud);
		return fetch_fail(f, -ECANCELED, "the freeze of the writer failed");
	}
	uint64_t w0 = f->c.bytes_rx + f->c.bytes_tx, s0 = f->n_remote, t0 = gv_now_ms();
	f->tolerant = false;
	f->rejected = 0;
	r = rehash_diff(f, true, &changed);
	if (r == 0)
		r = one_pass(f);
	record_pass(f, (unsigned)json_array_size(f->passes) + 1, changed, w0, s0, t0, true);
	if (f->o->thaw)
		f->o->thaw(f->o->ud);
	return r;
}

static json_t *fetch_summary(struct fetch *f)
{
	char sha[65];

	gv_hash_hex(f->bi->image_sha256, sha);
	json_t *j = json_pack(
		"{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:s, s:s}",
		"image", f->o->image, "image_size", (json_int_t)f->bi->image_size,
		"block_size", (json_int_t)f->bs, "blocks_total", (json_int_t)f->bi->nblocks,
		"blocks_zero", (json_int_t)f->n_zero,
		"blocks_local", (json_int_t)(f->n_local + f->n_dup),
		"blocks_resumed", (json_int_t)f->n_resumed,
		"blocks_remote", (json_int_t)f->n_remote,
		"bytes_on_wire", (json_int_t)(f->c.bytes_rx + f->c.bytes_tx),
		"bytes_received", (json_int_t)f->c.bytes_rx,
		"seconds", (double)(gv_now_ms() - f->t0) / 1000.0, "image_sha256", sha,
		"codec", gv_codec_name(f->o->codec));
	if (f->passes)
		json_object_set(j, "passes", f->passes);
	return j;
}

/* The index we received describes the file we built (the whole-image
 * digest matched): keep it, with this file's mtime, so it is current. */
/* Save the index we fetched by and, beside it, the blocks @dest does not
 * hold as it says (a live pass left them for later: they changed while
 * being sent). The index itself is kept as the source sent it, so that
 * the source still recognizes it as a base for a delta. */
static void save_index(struct fetch *f)
{
	char *stale = gv_strdupf("%s.stale", f->o->index_dest);
	uint8_t *list = NULL;
	size_t n = 0;
	struct stat st;

	if (stat(f->o->dest, &st) < 0 || !stale)
		goto out;
	for (uint64_t b = 0; b < f->bi->nblocks; b++) {
		if (f->state[b] != B_NEEDED)
			continue;
		uint8_t *nl = realloc(list, (n + 1) * 8);
		if (!nl)
			goto out; /* no index then: rebuilt when needed */
		list = nl;
		put_be64(list + 8 * n++, b);
	}
	f->bi->image_mtime_ns = gv_stat_mtime_ns(&st);
	if ((n ? gv_write_file_atomic(stale, (char *)list, n * 8) : (unlink(stale), 0)) == 0 &&
	    gv_blockidx_save(f->bi, f->o->index_dest) == 0) {
		free(list);
		free(stale);
		return;
	}
out:
	unlink(f->o->index_dest);
	free(list);
	free(stale);
}

int gv_fetch_load_stale(const char *index_path, uint64_t **out, size_t *n)
{
	char *path = gv_strdupf("%s.stale", index_path), *buf = NULL;
	size_t len = 0;
	int r = gv_read_file(path, &buf, &len);

	free(path);
	*out = NULL;
	*n = 0;
	if (r == -ENOENT)
		return 0;
	if (r < 0 || len % 8) {
		free(buf);
		return r < 0 ? r : -EBADMSG;
	}
	*out = malloc(len ? len : 1);
	if (!*out) {
		free(buf);
		return -ENOMEM;
	}
	for (size_t i = 0; i < len / 8; i++)
		(*out)[i] = get_be64((uint8_t *)buf + 8 * i);
	*n = len / 8;
	free(buf);
	return 0;
}

int gv_fetch(const gv_fetch_opts *o, json_t **out, gv_err *e)
{
	gv_err own;
	struct fetch f = { .o = o, .fd = -1, .e = e ? e : &own };
	int r;

	f.c.fd = -1;
	f.t0 = gv_now_ms();
	f.partial = o->in_place ? strdup(o->dest) : gv_strdupf("%s.partial", o->dest);
	f.marker = gv_strdupf("%s.partial.src", o->dest);
	f.e->msg[0] = '\0';
	r = connect_peer(&f);
	if (r == 0)
		r = get_index(&f);
	if (r == 0)
		r = prepare(&f);
	if (r == 0)
		r = o->iterative ? iterate(&f) : one_pass(&f);
	if (r == 0 && o->iterative && o->no_final && fsync(f.fd) < 0)
		r = fetch_fail(&f, -errno, "cannot sync %s", f.partial);
	else if (r == 0 && !(o->iterative && o->no_final))
		r = finish(&f);
	if (r == 0 && o->index_dest && (!o->in_place || o->no_final))
		save_index(&f);
	if (r == 0) {
		fetch_progress(&f, "done", true);
		*out = fetch_summary(&f);
	} else if (!f.e->msg[0]) {
		fetch_fail(&f, r, "transfer failed: %s", strerror(-r));
	}
	xconn_close(&f.c);
	if (f.fd >= 0)
		close(f.fd);
	for (int i = 0; i < f.nsrc; i++) {
		if (f.src[i].fd >= 0)
			close(f.src[i].fd);
		free(f.src[i].path);
	}
	gv_blockidx_free(f.bi);
	free(f.state);
	free(f.changed);
	free(f.followers);
	json_decref(f.passes);
	free(f.partial);
	free(f.marker);
	return r;
}

int gv_xfer_control(const char *host, int port, const uint8_t key[GV_XFER_KEY_LEN],
		    json_t *request, int timeout_ms, json_t **reply, gv_err *e)
{
	gv_err own;
	gv_fetch_opts o = { .host = host, .port = port, .key = key,
			    .timeout_ms = timeout_ms < 30000 ? timeout_ms : 30000 };
	struct fetch f = { .o = &o, .fd = -1, .e = e ? e : &own };
	char *text = json_dumps(request, JSON_COMPACT);
	uint8_t *p;
	size_t n;
	int r;

	f.c.fd = -1;
	f.e->msg[0] = '\0';
	r = connect_peer(&f);
	if (r == 0)
		r = xconn_send(&f.c, XT_CTRL, text, strlen(text), NULL, 0);
	if (r == 0) {
		xconn_timeout(&f.c, timeout_ms);
		r = fetch_recv_frame(&f, XT_CTRL_OK, &p, &n);
	}
	if (r == 0 && !(*reply = json_loadb((const char *)p, n, 0, NULL)))
		r = fetch_fail(&f, -EBADMSG, "the peer sent a reply that is not JSON");
	/* who answered: only what its certificate proved */
	if (r == 0 && json_is_object(*reply)) {
		json_object_del(*reply, "_peer");
		if (f.c.peer.tls)
			json_object_set_new(*reply, "_peer",
					    json_pack("{s:b, s:s, s:s, s:s}", "tls", 1, "name",
						      f.c.peer.name, "role", f.c.peer.role, "dn",
						      f.c.peer.dn));
	}
	if (r < 0 && !f.e->msg[0])
		fetch_fail(&f, r, "%s", strerror(-r));
	xconn_close(&f.c);
	free(text);
	return r;
}
