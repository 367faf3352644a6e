/* SPDX-License-Identifier: MIT */
/*
 * blocksample.h - a compact summary of an image's blocks, so that a grid
 * controller can estimate how much of an image a host lacks without the
 * host's block index: the first 8 bytes of the SHA-256 of every non-zero
 * block, kept when their low SHIFT bits are zero (content-defined
 * sampling, so two images keep the same hashes for the same blocks).
 * SHIFT is the smallest that keeps at most a given number of hashes; two
 * samples are compared at the coarser of their shifts, where each is
 * exactly what it would have been had it been taken at that shift.
 */
#ifndef GRIDVM_BLOCKS_BLOCKSAMPLE_H
#define GRIDVM_BLOCKS_BLOCKSAMPLE_H

#include <gridvm/blocks/blockidx.h>

#include <stddef.h>
#include <stdint.h>

#define GV_BLOCKSAMPLE_MAX 4096 /* hashes kept by default (32 KiB) */

typedef struct gv_blocksample {
	uint32_t shift;	     /* a hash is kept when its low @shift bits are zero */
	uint32_t block_size; /* of the index it was taken from */
	uint64_t nonzero;    /* non-zero blocks of the image */
	size_t n;
	uint64_t *h; /* sorted, distinct */
} gv_blocksample;

/* Sample @x keeping at most @max (>= 1) hashes. @return 0, -EINVAL or
 * -ENOMEM. */
int gv_blocksample_make(const gv_blockidx *x, size_t max, gv_blocksample *out) GV_WUR;
void gv_blocksample_clear(gv_blocksample *s);

/* As text for JSON: "gvs1:SHIFT:BLOCK_SIZE:NONZERO:BASE64" (malloc'd, NULL
 * on out-of-memory), and back (-EINVAL on anything malformed: not sorted,
 * a hash that the shift would not keep, a count that does not add up). */
char *gv_blocksample_encode(const gv_blocksample *s);
int gv_blocksample_decode(const char *text, gv_blocksample *out) GV_WUR;

/* The share (0..1) of @img's blocks found in any of the @n samples
 * @have, estimated at the coarsest shift among them; -1 when it cannot be
 * told (block sizes differ, or no hash of @img is kept at that shift).
 * An image with no non-zero block is held whole (1). */
double gv_blocksample_covered(const gv_blocksample *img, const gv_blocksample *const *have,
			      size_t n);

/* Bytes of @img a host holding the @n samples @have would fetch: its
 * non-zero blocks not covered. @img's @fallback when it cannot be told. */
uint64_t gv_blocksample_missing(const gv_blocksample *img, const gv_blocksample *const *have,
				size_t n, uint64_t fallback);

#endif
