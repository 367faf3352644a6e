/* SPDX-License-Identifier: MIT */
/*
 * chunk.h - content-defined chunking and the host's chunk store.
 *
 * The chunker cuts a byte stream where a gear rolling hash of the last
 * bytes matches a mask, so boundaries follow content: inserting bytes
 * (QEMU's migration stream shifts with every page header) moves only the
 * nearby boundaries, and two checkpoints of one VM share most chunks.
 * The gear table comes from a fixed seed, so every host cuts alike.
 *
 * The store keeps each distinct chunk once, zstd-compressed (whole, or as
 * a delta to another chunk), named by the SHA-256 of its uncompressed
 * bytes: DIR/ab/abcd....zst.
 */
#ifndef GRIDVM_CHUNK_H
#define GRIDVM_CHUNK_H

#include <gridvm/base/util.h>
#include <stdbool.h>
#include <stdint.h>

#define GV_CDC_MIN (16u << 10)
#define GV_CDC_AVG (64u << 10) /* a power of two */
#define GV_CDC_MAX (256u << 10)

typedef struct gv_cdc gv_cdc;

/* Called for every chunk; a negative return stops the chunker. */
typedef int (*gv_chunk_cb)(void *ud, const uint8_t *data, size_t len);

gv_cdc *gv_cdc_new(void);
void gv_cdc_free(gv_cdc *c);
/* Feed bytes; complete chunks go to @cb. */
int gv_cdc_feed(gv_cdc *c, const uint8_t *p, size_t n, gv_chunk_cb cb, void *ud) GV_WUR;
/* The end of the stream: the last (short) chunk goes to @cb. */
int gv_cdc_finish(gv_cdc *c, gv_chunk_cb cb, void *ud) GV_WUR;

typedef struct gv_chunkstore gv_chunkstore;

int gv_chunkstore_open(const char *dir, gv_chunkstore **out) GV_WUR;
void gv_chunkstore_close(gv_chunkstore *s);
/* Store a chunk (if new). *added: compressed bytes written, 0 if the
 * store had it already. Not synced: syncfs() before relying on it. */
int gv_chunkstore_put(gv_chunkstore *s, const uint8_t *data, size_t len,
		      uint8_t hash[32], uint64_t *added) GV_WUR;
/* The same, stored as the difference to chunk @base (zstd with the base
 * as prefix) when that is smaller: for a chunk that differs from one the
 * store has in a few scattered bytes (a checkpoint's memory page changed
 * here and there), a few hundred bytes instead of the whole chunk. The
 * base of a delta is always a whole chunk (a delta given as @base is
 * replaced by its own base), so reading takes one step; gc keeps the
 * bases of the deltas it keeps. No usable @base: stored whole. */
int gv_chunkstore_put_delta(gv_chunkstore *s, const uint8_t *data, size_t len,
			    const uint8_t base[32], uint8_t hash[32], uint64_t *added) GV_WUR;
/* Load a chunk and check its hash (-EBADMSG if damaged, -ENOENT). */
int gv_chunkstore_get(gv_chunkstore *s, const uint8_t hash[32], uint8_t **data,
		      size_t *len) GV_WUR;
/* Chunks as stored, for copying them to another host's store: whether
 * the store has @hash; its file's bytes (*delta: a delta to @base, which
 * must be copied first); store such bytes under @hash, checked (it must
 * read back as @hash, else nothing is kept and -EBADMSG). */
bool gv_chunkstore_has(gv_chunkstore *s, const uint8_t hash[32]);
/* 1 if chunk @hash is stored as a delta (its base in @base), 0 if whole,
 * or a negative errno; reads the file's header only. */
int gv_chunkstore_base_of(gv_chunkstore *s, const uint8_t hash[32], uint8_t base[32]) GV_WUR;
int gv_chunkstore_raw(gv_chunkstore *s, const uint8_t hash[32], uint8_t **buf, size_t *len,
		      bool *delta, uint8_t base[32]) GV_WUR;
int gv_chunkstore_put_raw(gv_chunkstore *s, const uint8_t hash[32], const uint8_t *buf,
			  size_t len) GV_WUR;
/* Delete every chunk @keep does not return true for. *freed: bytes. */
int gv_chunkstore_gc(gv_chunkstore *s, bool (*keep)(void *ud, const uint8_t hash[32]),
		     void *ud, uint64_t *freed) GV_WUR;


#endif
