/* SPDX-License-Identifier: MIT */
/* test-similarity.c - shares of blocks in common, counted exactly. */
#include <gridvm/blocks/similarity.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* An index whose block i has content id ids[i] (0 = zero block). */
static gv_blockidx *synth(const uint32_t *ids, size_t n)
{
	gv_blockidx *b = calloc(1, sizeof(*b));

	b->block_shift = 12;
	b->nblocks = n;
	b->hashes = calloc(n, GV_HASH_LEN);
	for (size_t i = 0; i < n; i++) {
		if (!ids[i]) {
			b->zero_blocks++;
			continue;
		}
		memcpy(b->hashes + i * GV_HASH_LEN, &ids[i], 4);
		b->hashes[i * GV_HASH_LEN + 31] = 0x5a; /* not all zero */
	}
	return b;
}

static void test_shares(void **state)
{
	const uint32_t a[] = { 1, 2, 3, 4, 0, 0, 5, 5 };   /* 6 non-zero */
	const uint32_t b[] = { 1, 2, 9, 9, 9, 0 };         /* 5 non-zero */
	const uint32_t c[] = { 3, 7, 8, 0 };               /* 3 non-zero */
	gv_blockidx *x[3] = { synth(a, 8), synth(b, 6), synth(c, 4) };
	gv_similarity *s = NULL;

	assert_int_equal(gv_similarity_compute(x, 3, &s), 0);
	assert_int_equal(s->nonzero[0], 6);
	assert_int_equal(s->nonzero[1], 5);
	assert_int_equal(s->in[0 * 3 + 1], 2);  /* 1, 2 of a are in b */
	assert_int_equal(s->in[0 * 3 + 2], 1);  /* 3 */
	assert_int_equal(s->in_others[0], 3);   /* 1, 2, 3 */
	assert_int_equal(s->in[1 * 3 + 0], 2);
	assert_int_equal(s->in[1 * 3 + 2], 0);
	assert_int_equal(s->in_others[1], 2);
	assert_int_equal(s->in[2 * 3 + 0], 1);
	assert_int_equal(s->in_others[2], 1);
	assert_int_equal(s->in[0 * 3 + 0], 6);  /* an image holds itself */
	gv_similarity_free(s);

	assert_int_equal(gv_similarity_compute(x, 1, &s), -EINVAL);
	x[2]->block_shift = 16;
	assert_int_equal(gv_similarity_compute(x, 3, &s), -EINVAL);
	for (int i = 0; i < 3; i++)
		gv_blockidx_free(x[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = { cmocka_unit_test(test_shares) };
	return cmocka_run_group_tests(tests, NULL, NULL);
}
