/* SPDX-License-Identifier: MIT */
/* hash_bench.c - build the block index of one file and print what the
 * benchmark needs: hash_bench FILE [THREADS [BLOCK_SHIFT]] prints
 * "<image sha256> <zero blocks> <nblocks> <seconds>". Built and run by
 * bench/hash_bench.py. */
#include <gridvm/blocks/blockidx.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv)
{
	unsigned threads = argc > 2 ? (unsigned)atoi(argv[2]) : 0;
	uint32_t shift = argc > 3 ? (uint32_t)atoi(argv[3]) : GV_BLOCKIDX_DEFAULT_SHIFT;
	struct timespec t0, t1;
	gv_blockidx *x;
	int r;

	if (argc < 2) {
		fprintf(stderr, "usage: hash_bench FILE [THREADS [BLOCK_SHIFT]]\n");
		return 2;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = gv_blockidx_build(argv[1], shift, threads, NULL, NULL, &x);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (r < 0) {
		fprintf(stderr, "hash_bench: %s: error %d\n", argv[1], r);
		return 1;
	}
	for (int i = 0; i < GV_HASH_LEN; i++)
		printf("%02x", x->image_sha256[i]);
	printf(" %llu %llu %.6f\n", (unsigned long long)x->zero_blocks,
	       (unsigned long long)x->nblocks,
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	gv_blockidx_free(x);
	return 0;
}
