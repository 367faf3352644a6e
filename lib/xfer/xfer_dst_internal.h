/* SPDX-License-Identifier: MIT */
/*
 * xfer_dst_internal.h - one fetch on the destination, shared by its
 * phases (xfer_dst.c) and its block work (xfer_dst_blocks.c).
 */
#ifndef GRIDVM_XFER_DST_INTERNAL_H
#define GRIDVM_XFER_DST_INTERNAL_H

#include "xfer_internal.h"

enum { B_NEEDED = 0, B_DONE = 1, B_ZERO = 2 };

struct srcfd {
	uint32_t id;
	int fd;     /* -1: read through local_read */
	char *path;
};

struct fetch {
	const gv_fetch_opts *o;
	struct xconn c;
	gv_blockidx *bi;
	uint64_t bs;
	int fd;
	char *partial, *marker;
	uint8_t *state;
	uint64_t *followers; /* pairs (leader, follower) */
	size_t nfollow;
	uint64_t n_zero, n_local, n_remote, n_resumed, n_dup;
	bool tolerant;     /* early iterative passes: a changed block is retried */
	uint64_t rejected; /* blocks that changed under us in this pass */
	json_t *passes;
	uint64_t t0, last_progress;
	uint8_t *changed;  /* the index came as a delta: blocks it changed */
	uint8_t last_type; /* of the last frame recv_frame took */
	struct srcfd src[16];
	int nsrc;
	gv_err *e; /* never NULL: the caller's, or one of gv_fetch's own */
};

/* Say why the fetch failed (into f->e); @return @r. */
int fetch_fail(struct fetch *f, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

uint64_t fetch_block_len(struct fetch *f, uint64_t b);
bool fetch_hash_ok(struct fetch *f, uint64_t b, const uint8_t *data);
void fetch_progress(struct fetch *f, const char *phase, bool force);
int fetch_recv_frame(struct fetch *f, uint8_t want, uint8_t **p, size_t *n);

/* The block phases of one pass (xfer_dst_blocks.c): blocks this host
 * holds, blocks that repeat inside the image, the rest from the source
 * (a window of requests in flight), then copies of the repeats. */
int fetch_local_blocks(struct fetch *f);
int fetch_group_repeats(struct fetch *f);
int fetch_remote_blocks(struct fetch *f);
int fetch_copy_followers(struct fetch *f);

#endif
