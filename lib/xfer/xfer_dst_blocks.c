/* SPDX-License-Identifier: MIT */
/*
 * xfer_dst_blocks.c - the block work of one fetch pass on the
 * destination: rebuild the blocks this host already holds (in any of its
 * images or checkpoints), group blocks that repeat inside the image, ask
 * the source for the rest in runs with a window of requests in flight
 * (each block verified against its hash before it is written), then copy
 * the repeats.
 */
#include "xfer_dst_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

static struct srcfd *source_of(struct fetch *f, uint32_t id)
{
	char *path = NULL;
	uint32_t shift;

	for (int i = 0; i < f->nsrc; i++)
		if (f->src[i].id == id)
			return &f->src[i];
	if (gv_hostidx_source(f->o->hostidx, id, NULL, &path, &shift) < 0 ||
	    shift != f->bi->block_shift || f->nsrc == 16) {
		free(path);
		return NULL;
	}
	f->src[f->nsrc] = (struct srcfd){ id, -1, path };
	/* a manifest (a checkpoint) is read by the caller's hook */
	if (!gv_hostidx_is_manifest(path))
		f->src[f->nsrc].fd = open(path, O_RDONLY | O_CLOEXEC);
	return &f->src[f->nsrc++];
}

static bool read_local(struct fetch *f, uint32_t id, uint64_t block, uint8_t *buf, uint64_t len)
{
	struct srcfd *s = source_of(f, id);
	uint64_t off = block * f->bs;

	if (!s)
		return false;
	if (s->fd >= 0)
		return pread(s->fd, buf, len, (off_t)off) == (ssize_t)len;
	return f->o->local_read && f->o->local_read(f->o->local_ud, s->path, buf, len, off) == 0;
}

static int write_block(struct fetch *f, uint64_t b, const uint8_t *data, uint64_t len)
{
	if (pwrite(f->fd, data, len, (off_t)(b * f->bs)) != (ssize_t)len)
		return fetch_fail(f, errno == ENOSPC ? -ENOSPC : -EIO, "cannot write %s: %s",
			    f->partial, strerror(errno ? errno : EIO));
	return 0;
}

/* Rebuild the blocks this host already holds anywhere. */
int fetch_local_blocks(struct fetch *f)
{
	uint8_t *buf = malloc(f->bs);
	int r = 0;

	if (!buf)
		return -ENOMEM;
	for (uint64_t b = 0; r == 0 && f->o->hostidx && b < f->bi->nblocks; b++) {
		gv_hostidx_loc loc;
		uint64_t len = fetch_block_len(f, b);
		if (f->state[b] != B_NEEDED ||
		    gv_hostidx_lookup(f->o->hostidx, f->bi->hashes + b * GV_HASH_LEN, &loc) < 0)
			continue;
		if (!read_local(f, loc.source, loc.block, buf, len) || !fetch_hash_ok(f, b, buf))
			continue; /* a stale or false candidate: fetch it */
		r = write_block(f, b, buf, len);
		f->state[b] = B_DONE;
		f->n_local++;
		fetch_progress(f, "local", false);
	}
	free(buf);
	return r;
}

static int cmp_hash(const void *a, const void *b, void *ud)
{
	const struct fetch *f = ud;
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	int c = memcmp(f->bi->hashes + x * GV_HASH_LEN, f->bi->hashes + y * GV_HASH_LEN,
		       GV_HASH_LEN);

	return c ? c : x < y ? -1 : x > y;
}

/* Blocks that repeat inside the image are fetched once: the first of
 * each group is the leader, the others follow it. */
int fetch_group_repeats(struct fetch *f)
{
	uint64_t *need = NULL, n = 0;

	for (uint64_t b = 0; b < f->bi->nblocks; b++)
		n += f->state[b] == B_NEEDED;
	need = malloc((n ? n : 1) * sizeof(*need));
	f->followers = malloc((n ? n : 1) * 2 * sizeof(uint64_t));
	if (!need || !f->followers) {
		free(need);
		return -ENOMEM;
	}
	n = 0;
	for (uint64_t b = 0; b < f->bi->nblocks; b++)
		if (f->state[b] == B_NEEDED)
			need[n++] = b;
	qsort_r(need, n, sizeof(*need), cmp_hash, f);
	for (uint64_t i = 1, lead = 0; i < n; i++) {
		if (memcmp(f->bi->hashes + need[i] * GV_HASH_LEN,
			   f->bi->hashes + need[lead] * GV_HASH_LEN, GV_HASH_LEN)) {
			lead = i;
			continue;
		}
		f->followers[2 * f->nfollow] = need[lead];
		f->followers[2 * f->nfollow++ + 1] = need[i];
		f->state[need[i]] = B_DONE; /* settled by copy_followers */
	}
	free(need);
	return 0;
}

struct run {
	uint64_t first;
	uint32_t count;
};

static struct run *make_runs(struct fetch *f, size_t *nruns)
{
	unsigned max = f->o->run_blocks ? f->o->run_blocks : 256;
	struct run *runs = NULL;
	size_t n = 0, cap = 0;

	for (uint64_t b = 0; b < f->bi->nblocks; b++) {
		if (f->state[b] != B_NEEDED)
			continue;
		if (n && runs[n - 1].first + runs[n - 1].count == b && runs[n - 1].count < max) {
			runs[n - 1].count++;
			continue;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 1024;
			runs = realloc(runs, cap * sizeof(*runs));
			if (!runs)
				abort();
		}
		runs[n++] = (struct run){ b, 1 };
	}
	*nruns = n;
	return runs;
}

static int send_req(struct fetch *f, const struct run *r)
{
	uint8_t req[12];

	put_be64(req, r->first);
	put_be32(req + 8, r->count);
	return xconn_send(&f->c, XT_REQ, req, sizeof(req), NULL, 0);
}

/* An early iterative pass: the source is being written, so a block may
 * have changed since it was hashed. Write the blocks that verify; leave
 * the others for the next pass (they are never written unverified). */
static int take_changing(struct fetch *f, const struct run *r, const uint8_t *buf)
{
	int rc = 0;

	for (uint32_t i = 0; rc == 0 && i < r->count; i++) {
		uint64_t b = r->first + i;
		if (!fetch_hash_ok(f, b, buf + i * f->bs)) {
			f->rejected++;
			continue;
		}
		rc = write_block(f, b, buf + i * f->bs, fetch_block_len(f, b));
		f->state[b] = B_DONE;
		f->n_remote++;
	}
	return rc;
}

/* One DATA frame answering run @r: decompress, verify every block, write. */
static int take_data(struct fetch *f, const struct run *r, uint8_t **buf, size_t *cap)
{
	uint64_t last = r->first + r->count - 1;
	size_t want = (size_t)((r->count - 1) * f->bs + fetch_block_len(f, last)), n;
	uint8_t *p;
	int rc = fetch_recv_frame(f, XT_DATA, &p, &n);

	if (rc < 0)
		return rc;
	if (n < 17 || get_be64(p) != r->first || get_be32(p + 8) != r->count ||
	    get_be32(p + 13) != want || p[12] > GV_CODEC_ZSTD)
		return fetch_fail(f, -EPROTO, "the source answered a request it was not asked");
	if (want > *cap) {
		*cap = want;
		*buf = realloc(*buf, want);
		if (!*buf)
			return -ENOMEM;
	}
	if (xcodec_decompress((gv_codec)p[12], p + 17, n - 17, *buf, want) < 0)
		return fetch_fail(f, -EBADMSG, "blocks %llu+%u do not decompress; disconnected",
			    (unsigned long long)r->first, r->count);
	for (uint32_t i = 0; i < r->count; i++) {
		if (fetch_hash_ok(f, r->first + i, *buf + i * f->bs))
			continue;
		if (f->tolerant)
			return take_changing(f, r, *buf);
		xconn_send_error(&f->c, "block %llu does not match its hash",
				 (unsigned long long)(r->first + i));
		return fetch_fail(f, -EBADMSG, "block %llu from the source does not match its "
			    "SHA-256; disconnected, nothing of it was written",
			    (unsigned long long)(r->first + i));
	}
	rc = write_block(f, r->first, *buf, want);
	for (uint32_t i = 0; rc == 0 && i < r->count; i++)
		f->state[r->first + i] = B_DONE;
	f->n_remote += r->count;
	return rc;
}

/* Ask for the missing runs with up to a window of requests in flight. */
int fetch_remote_blocks(struct fetch *f)
{
	unsigned window = f->o->window ? f->o->window : 64;
	size_t nruns, head = 0, next = 0, cap = 0;
	struct run *runs = make_runs(f, &nruns);
	uint8_t *buf = NULL;
	int r = 0;

	while (r == 0 && head < nruns) {
		while (r == 0 && next < nruns && next - head < window)
			r = send_req(f, &runs[next++]);
		if (r < 0) {
			fetch_fail(f, r, "cannot send to the source: %s", strerror(-r));
			break;
		}
		r = take_data(f, &runs[head++], &buf, &cap);
		fetch_progress(f, "remote", false);
	}
	free(buf);
	free(runs);
	return r;
}

int fetch_copy_followers(struct fetch *f)
{
	uint8_t *buf = malloc(f->bs);
	int r = 0;

	for (size_t i = 0; buf && r == 0 && i < f->nfollow; i++) {
		uint64_t lead = f->followers[2 * i], b = f->followers[2 * i + 1];
		uint64_t len = fetch_block_len(f, b);
		if (f->state[lead] != B_DONE) { /* its leader changed under us */
			f->state[b] = B_NEEDED;
			continue;
		}
		if (pread(f->fd, buf, len, (off_t)(lead * f->bs)) != (ssize_t)len ||
		    !fetch_hash_ok(f, b, buf))
			r = fetch_fail(f, -EIO, "cannot read back block %llu", (unsigned long long)lead);
		else
			r = write_block(f, b, buf, len);
		f->n_dup++;
	}
	free(buf);
	return buf ? r : -ENOMEM;
}
