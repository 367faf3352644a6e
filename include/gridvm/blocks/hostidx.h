/* SPDX-License-Identifier: MIT */
/*
 * hostidx.h - the host-wide block index: for a block hash, a place on this
 * host where that block already is (a source, e.g. an image, and a block
 * number in it), across every source registered.
 *
 * Disk-backed and memory-bounded: an open-addressing hash table in one
 * file, mapped with mmap, so only the pages lookups touch are in memory
 * and the kernel may drop them at will. A slot is 16 bytes: the first 8
 * bytes of the block's SHA-256, the source id and the block number. A hit
 * is therefore a candidate: the caller reads the block and checks its
 * full SHA-256 before using it (the transfer verifies every block anyway).
 * The sources (id, name, image path, block-index path) are kept in a small
 * JSON file next to the table. The table is a cache: when it is found
 * damaged or was left dirty by a crash, it is rebuilt from the sources'
 * block indexes. Format and sizing: docs/hostidx.md. All calls are
 * thread-safe (a reader-writer lock: lookups run in parallel, add and
 * remove exclusively).
 */
#ifndef GRIDVM_HOSTIDX_H
#define GRIDVM_HOSTIDX_H

#include <gridvm/blocks/blockidx.h>

typedef struct gv_hostidx gv_hostidx;

typedef struct gv_hostidx_loc {
	uint32_t source;   /* source id */
	uint32_t block;    /* block number in that source */
} gv_hostidx_loc;

typedef struct gv_hostidx_stats {
	uint64_t slots, used, sources, file_bytes;
} gv_hostidx_stats;

/* A source whose path is a manifest (".json": a checkpoint, its blocks in
 * the chunk store) rather than a file holding the blocks. */
static inline bool gv_hostidx_is_manifest(const char *path)
{
	size_t n = strlen(path);
	return n > 5 && !strcmp(path + n - 5, ".json");
}

/* Open (creating) the index whose table is @dir/hostidx.tab and sources
 * @dir/hostidx.sources. */
int gv_hostidx_open(const char *dir, gv_hostidx **out) GV_WUR;
/* Flush and close; NULL is accepted. */
void gv_hostidx_close(gv_hostidx *h);

/* Register source @name (an image file at @path, its block index at
 * @idx_path, already built as @bi) and add its non-zero blocks. A source
 * of the same name is replaced. *id (if not NULL) gets its id. */
int gv_hostidx_add(gv_hostidx *h, const char *name, const char *path,
		   const char *idx_path, const gv_blockidx *bi, uint32_t *id) GV_WUR;
/* Forget source @name; its blocks are dropped (the table is rebuilt from
 * the remaining sources). -ENOENT if unknown. */
int gv_hostidx_remove(gv_hostidx *h, const char *name) GV_WUR;

/* Where is the block with SHA-256 @hash? 0 and *loc, or -ENOENT. */
int gv_hostidx_lookup(gv_hostidx *h, const uint8_t hash[GV_HASH_LEN],
		      gv_hostidx_loc *loc) GV_WUR;

/* Name and path (malloc'd copies, either pointer may be NULL) and block
 * size of source @id, or -ENOENT. */
int gv_hostidx_source(gv_hostidx *h, uint32_t id, char **name, char **path,
		      uint32_t *block_shift) GV_WUR;

void gv_hostidx_stats_get(gv_hostidx *h, gv_hostidx_stats *st);

#endif
