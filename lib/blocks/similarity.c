/* SPDX-License-Identifier: MIT */
/*
 * similarity.c - block-sharing between images. One hash table maps every
 * distinct block hash to the set of images holding it (a 64-bit mask);
 * then every image's blocks are looked up once.
 */
#include <gridvm/blocks/similarity.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct entry {
	uint8_t hash[GV_HASH_LEN];
	uint64_t mask; /* images holding this block; 0 = empty slot */
};

struct table {
	struct entry *e;
	uint64_t size; /* a power of two */
};

static struct entry *slot_of(struct table *t, const uint8_t *hash)
{
	uint64_t k, mask = t->size - 1;

	memcpy(&k, hash, sizeof(k));
	for (uint64_t i = k & mask;; i = (i + 1) & mask)
		if (!t->e[i].mask || !memcmp(t->e[i].hash, hash, GV_HASH_LEN))
			return &t->e[i];
}

static int table_fill(struct table *t, gv_blockidx *const *idx, size_t n)
{
	uint64_t total = 0;

	for (size_t i = 0; i < n; i++)
		total += idx[i]->nblocks - idx[i]->zero_blocks;
	t->size = 1024;
	while (t->size < total * 2)
		t->size *= 2;
	t->e = calloc(t->size, sizeof(*t->e));
	if (!t->e)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		for (uint64_t b = 0; b < idx[i]->nblocks; b++) {
			const uint8_t *h = idx[i]->hashes + b * GV_HASH_LEN;
			if (gv_blockidx_is_zero(idx[i], b))
				continue;
			struct entry *e = slot_of(t, h);
			memcpy(e->hash, h, GV_HASH_LEN);
			e->mask |= 1ULL << i;
		}
	}
	return 0;
}

int gv_similarity_compute(gv_blockidx *const *idx, size_t n, gv_similarity **out)
{
	struct table t = { 0 };
	gv_similarity *s;
	int r;

	if (n < 2 || n > GV_SIMILARITY_MAX)
		return -EINVAL;
	for (size_t i = 1; i < n; i++)
		if (idx[i]->block_shift != idx[0]->block_shift)
			return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s || !(s->in = calloc(n * n, sizeof(*s->in)))) {
		free(s);
		return -ENOMEM;
	}
	s->n = n;
	r = table_fill(&t, idx, n);
	for (size_t i = 0; r == 0 && i < n; i++) {
		for (uint64_t b = 0; b < idx[i]->nblocks; b++) {
			if (gv_blockidx_is_zero(idx[i], b))
				continue;
			uint64_t m = slot_of(&t, idx[i]->hashes + b * GV_HASH_LEN)->mask;
			s->nonzero[i]++;
			if (m & ~(1ULL << i))
				s->in_others[i]++;
			for (size_t j = 0; j < n; j++)
				if (m & (1ULL << j))
					s->in[i * n + j]++;
		}
	}
	free(t.e);
	if (r < 0) {
		gv_similarity_free(s);
		return r;
	}
	*out = s;
	return 0;
}

void gv_similarity_free(gv_similarity *s)
{
	if (!s)
		return;
	free(s->in);
	free(s);
}
