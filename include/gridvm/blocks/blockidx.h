/* SPDX-License-Identifier: MIT */
/*
 * blockidx.h - the block index of one image: the SHA-256 of every
 * fixed-size block, zero blocks marked, plus the SHA-256 of the whole
 * image. Written next to the image as NAME.gvidx (format: docs/blockidx.md)
 * and rebuilt when the image changes (size or mtime differ from what the
 * index recorded).
 */
#ifndef GRIDVM_BLOCKIDX_H
#define GRIDVM_BLOCKIDX_H

#include <gridvm/base/util.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define GV_HASH_LEN 32
#define GV_BLOCKIDX_DEFAULT_SHIFT 12 /* 4 KiB */

typedef struct gv_blockidx {
	uint32_t block_shift;     /* block size = 1 << block_shift (9..24) */
	uint64_t image_size;      /* bytes; the last block may be short */
	uint64_t nblocks;
	uint64_t image_mtime_ns;  /* of the image when indexed */
	uint8_t image_sha256[GV_HASH_LEN];
	uint8_t *hashes;          /* nblocks * 32 bytes; all-zero = zero block */
	uint64_t zero_blocks;
} gv_blockidx;

/* Is block @i all zeros (never stored, never sent)? */
static inline bool gv_blockidx_is_zero(const gv_blockidx *x, uint64_t i)
{
	static const uint8_t z[GV_HASH_LEN];
	return memcmp(x->hashes + i * GV_HASH_LEN, z, GV_HASH_LEN) == 0;
}

void gv_blockidx_free(gv_blockidx *x);

/* Hash the raw image file @path with @threads threads (0 = all CPUs).
 * @progress, if not NULL, is called now and then with bytes done.
 * @return 0 or a negative errno. */
int gv_blockidx_build(const char *path, uint32_t block_shift, unsigned threads,
		      void (*progress)(void *ud, uint64_t done, uint64_t total),
		      void *ud, gv_blockidx **out) GV_WUR;

/* The same for a file that is being written: no -EAGAIN; each block's
 * hash is of what was read at that moment, so the index may describe no
 * single instant of the file (the iterative transfer's early passes).
 * No whole-image digest (image_sha256 stays zero): every thread hashes
 * blocks, which halves the time on two cores. */
int gv_blockidx_build_live(const char *path, uint32_t block_shift,
			   gv_blockidx **out) GV_WUR;

/* A byte range of an image (written, for instance). */
typedef struct gv_extent {
	uint64_t off, len;
} gv_extent;

/* The index of the file @path now, from @base, an index of it at an
 * earlier time, and @ext, the ranges written since: only the blocks they
 * touch, and those past the base's last whole block, are read and hashed
 * again (*rehashed, if not NULL, counts them). Like build_live: no
 * whole-image digest, and the file may be written meanwhile. */
int gv_blockidx_update(const char *path, const gv_blockidx *base, const gv_extent *ext,
		       size_t n, gv_blockidx **out, uint64_t *rehashed) GV_WUR;

/* Serialize / parse the file format; load verifies the trailer checksum
 * and every header field (-EBADMSG for a corrupt file). */
int gv_blockidx_save(const gv_blockidx *x, const char *path) GV_WUR;
int gv_blockidx_load(const char *path, gv_blockidx **out) GV_WUR;
/* Parse from memory (for the fuzzer and the transfer protocol). */
int gv_blockidx_parse(const uint8_t *buf, size_t len, gv_blockidx **out) GV_WUR;
/* The serialized bytes (malloc'd). */
int gv_blockidx_serialize(const gv_blockidx *x, uint8_t **buf, size_t *len) GV_WUR;

/* The index kept at @idx_path if it is current for @image_path (block
 * size, size and modification time match); -ESTALE if it is not. */
int gv_blockidx_load_current(const char *image_path, const char *idx_path,
			     uint32_t block_shift, gv_blockidx **out) GV_WUR;
/* A copy of @x (NULL if out of memory). */
gv_blockidx *gv_blockidx_dup(const gv_blockidx *x);

/* The index of image file @image_path kept at @idx_path: loaded if it is
 * current, else (re)built and saved. */
int gv_blockidx_get(const char *image_path, const char *idx_path,
		    uint32_t block_shift, gv_blockidx **out) GV_WUR;

#endif
