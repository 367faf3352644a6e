/* SPDX-License-Identifier: MIT */
/* test-blocksample.c - block-hash samples: how much of an image another
 * host's images cover, estimated from a few thousand hashes. */
#include <gridvm/blocks/blocksample.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* A 64-bit mix (splitmix64's finalizer), to make hash-like bytes. */
static uint64_t mix(uint64_t x)
{
	x += UINT64_C(0x9e3779b97f4a7c15);
	x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
	return x ^ (x >> 31);
}

/* An index of @n blocks of 4 KiB: block i holds content content(i)
 * (0: a zero block); equal contents have equal hashes. */
static gv_blockidx *synth(size_t n, uint64_t (*content)(size_t i, void *ud), void *ud)
{
	gv_blockidx *b = calloc(1, sizeof(*b));

	b->block_shift = 12;
	b->nblocks = n;
	b->image_size = (uint64_t)n << 12;
	b->hashes = calloc(n, GV_HASH_LEN);
	for (size_t i = 0; i < n; i++) {
		uint64_t c = content(i, ud);
		if (!c) {
			b->zero_blocks++;
			continue;
		}
		for (int k = 0; k < 4; k++) {
			uint64_t v = mix(c * 4 + (uint64_t)k);
			memcpy(b->hashes + i * GV_HASH_LEN + k * 8, &v, 8);
		}
	}
	return b;
}

static uint64_t base_content(size_t i, void *ud)
{
	(void)ud;
	return i % 7 == 3 ? 0 : i + 1; /* one block in 7 is zero */
}

/* The base with every block i where i % 10 == 0 rewritten: 10% new. */
static uint64_t derived_content(size_t i, void *ud)
{
	(void)ud;
	if (i % 7 == 3)
		return 0;
	return i % 10 == 0 ? 1000000 + i : i + 1;
}

static uint64_t other_content(size_t i, void *ud)
{
	(void)ud;
	return 5000000 + i;
}

static uint64_t zero_content(size_t i, void *ud)
{
	(void)ud;
	(void)i;
	return 0;
}

static uint64_t repeat_content(size_t i, void *ud)
{
	(void)ud;
	return i % 3 + 1; /* three distinct blocks, many times each */
}

static void test_make(void **state)
{
	(void)state;
	gv_blockidx *x = synth(70000, base_content, NULL);
	gv_blocksample s;

	assert_int_equal(gv_blocksample_make(x, 1000, &s), 0);
	assert_int_equal(s.nonzero, 60000);
	assert_int_equal(s.block_size, 4096);
	assert_true(s.n <= 1000);
	assert_true(s.n >= 250); /* the smallest shift that fits: more than half */
	assert_true(s.shift >= 6);
	for (size_t i = 0; i < s.n; i++) {
		assert_int_equal(s.h[i] & ((UINT64_C(1) << s.shift) - 1), 0);
		if (i)
			assert_true(s.h[i] > s.h[i - 1]);
	}
	gv_blocksample_clear(&s);
	/* a small image keeps every block, once each */
	gv_blockidx *r = synth(300, repeat_content, NULL);
	assert_int_equal(gv_blocksample_make(r, 1000, &s), 0);
	assert_int_equal(s.shift, 0);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.nonzero, 300);
	gv_blocksample_clear(&s);
	assert_int_equal(gv_blocksample_make(r, 0, &s), -EINVAL);
	gv_blockidx_free(x);
	gv_blockidx_free(r);
}

static void test_covered(void **state)
{
	(void)state;
	gv_blockidx *a = synth(70000, base_content, NULL), *d = synth(70000, derived_content, NULL);
	gv_blockidx *o = synth(20000, other_content, NULL), *z = synth(100, zero_content, NULL);
	gv_blocksample sa, sd, so, sz, sa_coarse;

	assert_int_equal(gv_blocksample_make(a, GV_BLOCKSAMPLE_MAX, &sa), 0);
	assert_int_equal(gv_blocksample_make(d, GV_BLOCKSAMPLE_MAX, &sd), 0);
	assert_int_equal(gv_blocksample_make(o, GV_BLOCKSAMPLE_MAX, &so), 0);
	assert_int_equal(gv_blocksample_make(z, GV_BLOCKSAMPLE_MAX, &sz), 0);
	assert_int_equal(gv_blocksample_make(a, 300, &sa_coarse), 0);
	const gv_blocksample *has_a[] = { &sa }, *has_o[] = { &so }, *has_oa[] = { &so, &sa };
	const gv_blocksample *has_coarse[] = { &sa_coarse };

	/* the derived image shares 90% of its non-zero blocks with the base:
	 * the estimate is within a few points of it */
	double c = gv_blocksample_covered(&sd, has_a, 1);
	assert_true(c > 0.85 && c < 0.95);
	assert_true(gv_blocksample_covered(&sa, has_a, 1) == 1.0);
	assert_true(gv_blocksample_covered(&sd, has_o, 1) == 0.0);
	/* any of the host's images may hold a block */
	assert_true(gv_blocksample_covered(&sd, has_oa, 2) == c);
	/* compared at the coarser shift of a smaller sample: still close */
	double cc = gv_blocksample_covered(&sd, has_coarse, 1);
	assert_true(sa_coarse.shift > sd.shift);
	assert_true(cc > 0.75 && cc < 1.0);
	/* bytes: the new tenth of 60000 blocks of 4 KiB, roughly */
	uint64_t miss = gv_blocksample_missing(&sd, has_a, 1, 123);
	uint64_t want = 6000ull * 4096;
	assert_true(miss > want / 2 && miss < want * 3 / 2);
	assert_int_equal(gv_blocksample_missing(&sd, has_o, 1, 123), 60000ull * 4096);
	/* nothing held: everything missing; an all-zero image: nothing */
	assert_int_equal(gv_blocksample_missing(&sd, NULL, 0, 123), 60000ull * 4096);
	assert_int_equal(gv_blocksample_missing(&sz, has_o, 1, 123), 0);
	/* block sizes that differ cannot be compared: the fallback */
	sa.block_size = 65536;
	assert_true(gv_blocksample_covered(&sd, has_a, 1) < 0);
	assert_int_equal(gv_blocksample_missing(&sd, has_a, 1, 123), 123);
	gv_blocksample_clear(&sa);
	gv_blocksample_clear(&sd);
	gv_blocksample_clear(&so);
	gv_blocksample_clear(&sz);
	gv_blocksample_clear(&sa_coarse);
	gv_blockidx_free(a);
	gv_blockidx_free(d);
	gv_blockidx_free(o);
	gv_blockidx_free(z);
}

static void test_text(void **state)
{
	(void)state;
	gv_blockidx *a = synth(70000, base_content, NULL);
	gv_blocksample s, t;

	assert_int_equal(gv_blocksample_make(a, 500, &s), 0);
	char *text = gv_blocksample_encode(&s);
	assert_non_null(text);
	assert_int_equal(strncmp(text, "gvs1:", 5), 0);
	assert_int_equal(gv_blocksample_decode(text, &t), 0);
	assert_int_equal(t.shift, s.shift);
	assert_int_equal(t.block_size, s.block_size);
	assert_int_equal(t.nonzero, s.nonzero);
	assert_int_equal(t.n, s.n);
	assert_memory_equal(t.h, s.h, s.n * 8);
	gv_blocksample_clear(&t);
	/* damaged: another version, a bad block size, not base64, a key the
	 * shift would not keep, more hashes than blocks */
	const char *bad[] = { "gvs2:0:4096:1:AAAAAAAAAAA=", "gvs1:0:1000:1:AAAAAAAAAAA=",
			      "gvs1:0:4096:1:!!!!", "gvs1:3:4096:1:AAAAAAAAAAE=",
			      "gvs1:0:4096:0:AAAAAAAAAAE=", "gvs1:0:4096", "", NULL };
	for (int i = 0; bad[i]; i++)
		assert_int_equal(gv_blocksample_decode(bad[i], &t), -EINVAL);
	assert_int_equal(gv_blocksample_decode(NULL, &t), -EINVAL);
	/* not sorted: swap two keys */
	uint64_t k = s.h[0];
	s.h[0] = s.h[1];
	s.h[1] = k;
	char *swapped = gv_blocksample_encode(&s);
	assert_int_equal(gv_blocksample_decode(swapped, &t), -EINVAL);
	free(swapped);
	free(text);
	gv_blocksample_clear(&s);
	gv_blockidx_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_make),
		cmocka_unit_test(test_covered),
		cmocka_unit_test(test_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
