/* SPDX-License-Identifier: MIT */
/*
 * similarity.h - how much of each image's content the others already
 * hold: for every image, the share of its non-zero blocks whose hash is
 * present in each other image, and in all the others together.
 */
#ifndef GRIDVM_SIMILARITY_H
#define GRIDVM_SIMILARITY_H

#include <gridvm/blocks/blockidx.h>

#define GV_SIMILARITY_MAX 64

typedef struct gv_similarity {
	size_t n;
	uint64_t nonzero[GV_SIMILARITY_MAX];  /* non-zero blocks of image i */
	uint64_t *in;      /* in[i * n + j]: blocks of i present in j */
	uint64_t in_others[GV_SIMILARITY_MAX]; /* blocks of i present in any other */
} gv_similarity;

/* Compare @n (2..64) block indexes of the same block size. */
int gv_similarity_compute(gv_blockidx *const *idx, size_t n, gv_similarity **out) GV_WUR;
void gv_similarity_free(gv_similarity *s);

#endif
