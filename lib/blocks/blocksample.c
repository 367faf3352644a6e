/* SPDX-License-Identifier: MIT */
/*
 * blocksample.c - content-defined samples of an image's block hashes
 * (blocksample.h). A hash's key is the big-endian value of its first 8
 * bytes; the sample at shift s keeps the keys whose low s bits are zero,
 * so the sample at a coarser shift is a subset of the one at a finer
 * shift, and two images sampled apart can still be compared.
 */
#include <gridvm/blocks/blocksample.h>

#include <gridvm/base/b64.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t key_of(const uint8_t *hash)
{
	uint64_t k = 0;

	for (int i = 0; i < 8; i++)
		k = k << 8 | hash[i];
	return k;
}

static bool kept(uint64_t k, uint32_t shift)
{
	return shift >= 64 ? k == 0 : (k & ((UINT64_C(1) << shift) - 1)) == 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

void gv_blocksample_clear(gv_blocksample *s)
{
	if (!s)
		return;
	free(s->h);
	memset(s, 0, sizeof(*s));
}

int gv_blocksample_make(const gv_blockidx *x, size_t max, gv_blocksample *out)
{
	uint64_t count[65] = { 0 }, nonzero = 0;
	uint32_t shift = 0;

	memset(out, 0, sizeof(*out));
	if (!x || !max || x->block_shift > 31)
		return -EINVAL;
	/* how many keys each shift keeps: a key with t trailing zero bits is
	 * kept at every shift up to t */
	for (uint64_t i = 0; i < x->nblocks; i++) {
		if (gv_blockidx_is_zero(x, i))
			continue;
		uint64_t k = key_of(x->hashes + i * GV_HASH_LEN);
		count[k ? __builtin_ctzll(k) : 64]++;
		nonzero++;
	}
	uint64_t at = nonzero; /* kept at the current shift (duplicates too) */
	while (at > max && shift < 64)
		at -= count[shift++];
	out->shift = shift;
	out->block_size = UINT32_C(1) << x->block_shift;
	out->nonzero = nonzero;
	if (at && !(out->h = malloc(at * sizeof(uint64_t))))
		return -ENOMEM;
	for (uint64_t i = 0; i < x->nblocks && out->n < at; i++) {
		if (gv_blockidx_is_zero(x, i))
			continue;
		uint64_t k = key_of(x->hashes + i * GV_HASH_LEN);
		if (kept(k, shift))
			out->h[out->n++] = k;
	}
	if (out->n)
		qsort(out->h, out->n, sizeof(uint64_t), cmp_u64);
	size_t w = 0; /* the same block in many places counts once */
	for (size_t i = 0; i < out->n; i++)
		if (!w || out->h[w - 1] != out->h[i])
			out->h[w++] = out->h[i];
	out->n = w;
	return 0;
}

char *gv_blocksample_encode(const gv_blocksample *s)
{
	uint8_t *raw = malloc(s->n * 8 + 1);
	char *b64, *text = NULL;

	if (!raw)
		return NULL;
	for (size_t i = 0; i < s->n; i++)
		for (int b = 0; b < 8; b++)
			raw[i * 8 + (size_t)b] = (uint8_t)(s->h[i] >> (56 - 8 * b));
	b64 = gv_b64_encode(raw, s->n * 8);
	free(raw);
	if (!b64)
		return NULL;
	size_t len = strlen(b64) + 80;
	if ((text = malloc(len)))
		snprintf(text, len, "gvs1:%" PRIu32 ":%" PRIu32 ":%" PRIu64 ":%s", s->shift,
			 s->block_size, s->nonzero, b64);
	free(b64);
	return text;
}

int gv_blocksample_decode(const char *text, gv_blocksample *out)
{
	unsigned shift, bs;
	unsigned long long nonzero;
	int used = 0;
	uint8_t *raw = NULL;
	size_t len = 0;

	memset(out, 0, sizeof(*out));
	if (!text || sscanf(text, "gvs1:%u:%u:%llu:%n", &shift, &bs, &nonzero, &used) != 3 ||
	    !used || shift > 64 || bs < 512 || (bs & (bs - 1)))
		return -EINVAL;
	if (gv_b64_decode(text + used, strlen(text + used), &raw, &len) < 0 || len % 8 ||
	    len / 8 > nonzero) {
		free(raw);
		return -EINVAL;
	}
	out->shift = shift;
	out->block_size = bs;
	out->nonzero = nonzero;
	out->n = len / 8;
	if (out->n && !(out->h = malloc(out->n * sizeof(uint64_t)))) {
		free(raw);
		return -ENOMEM;
	}
	for (size_t i = 0; i < out->n; i++) {
		uint64_t k = 0;
		for (int b = 0; b < 8; b++)
			k = k << 8 | raw[i * 8 + (size_t)b];
		if (!kept(k, shift) || (i && k <= out->h[i - 1])) {
			free(raw);
			gv_blocksample_clear(out);
			return -EINVAL;
		}
		out->h[i] = k;
	}
	free(raw);
	return 0;
}

static bool holds(const gv_blocksample *s, uint64_t k)
{
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->h[mid] < k)
			lo = mid + 1;
		else if (s->h[mid] > k)
			hi = mid;
		else
			return true;
	}
	return false;
}

double gv_blocksample_covered(const gv_blocksample *img, const gv_blocksample *const *have,
			      size_t n)
{
	uint32_t shift = img->shift;
	size_t all = 0, found = 0;

	if (!img->nonzero)
		return 1;
	for (size_t i = 0; i < n; i++) {
		if (have[i]->block_size != img->block_size)
			return -1;
		if (have[i]->shift > shift)
			shift = have[i]->shift;
	}
	for (size_t k = 0; k < img->n; k++) {
		if (!kept(img->h[k], shift))
			continue;
		all++;
		for (size_t i = 0; i < n; i++)
			if (holds(have[i], img->h[k])) {
				found++;
				break;
			}
	}
	return all ? (double)found / (double)all : -1;
}

uint64_t gv_blocksample_missing(const gv_blocksample *img, const gv_blocksample *const *have,
				size_t n, uint64_t fallback)
{
	double c = gv_blocksample_covered(img, have, n);

	if (c < 0)
		return fallback;
	return (uint64_t)((1 - c) * (double)img->nonzero * (double)img->block_size + 0.5);
}
