/* SPDX-License-Identifier: MIT */
/* test-chunk.c - the chunk store: whole and delta chunks come back as
 * stored, a delta of a lightly changed chunk is small, a delta's base is
 * always a whole chunk, gc keeps the bases of the deltas it keeps, and a
 * damaged base is an error, not wrong data. */
#include <gridvm/blocks/chunk.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#define LEN (64u << 10)

struct fx {
	char dir[40];
	gv_chunkstore *cs;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	strcpy(f->dir, "/tmp/gv-chunk-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	assert_int_equal(gv_chunkstore_open(f->dir, &f->cs), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	gv_chunkstore_close(f->cs);
	gv_rm_rf(f->dir);
	free(f);
	return 0;
}

static uint8_t *random_data(uint64_t seed)
{
	uint8_t *d = malloc(LEN);

	for (size_t i = 0; i < LEN; i++) {
		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		d[i] = (uint8_t)seed;
	}
	return d;
}

/* One byte changed in every 4 KiB page, as a job touching its memory. */
static uint8_t *touched(const uint8_t *d, uint8_t v)
{
	uint8_t *t = malloc(LEN);

	memcpy(t, d, LEN);
	for (size_t o = 100; o < LEN; o += 4096)
		t[o] = (uint8_t)(t[o] + v);
	return t;
}

static void assert_get(gv_chunkstore *cs, const uint8_t h[32], const uint8_t *want)
{
	uint8_t *got = NULL;
	size_t n = 0;

	assert_int_equal(gv_chunkstore_get(cs, h, &got, &n), 0);
	assert_int_equal(n, LEN);
	assert_memory_equal(got, want, LEN);
	free(got);
}

static char *path_of(struct fx *f, const uint8_t h[32])
{
	char hex[65];

	gv_hash_hex(h, hex);
	return gv_strdupf("%s/%.2s/%s.zst", f->dir, hex, hex);
}

static void test_delta_roundtrip(void **state)
{
	struct fx *f = *state;
	uint8_t *a = random_data(1), *b = touched(a, 1), *c = touched(a, 2);
	uint8_t ha[32], hb[32], hc[32], again[32];
	uint64_t added;

	assert_int_equal(gv_chunkstore_put(f->cs, a, LEN, ha, &added), 0);
	assert_true(added > LEN - 1024); /* random: zstd cannot shrink it */
	assert_int_equal(gv_chunkstore_put_delta(f->cs, b, LEN, ha, hb, &added), 0);
	assert_true(added > 0 && added < 1024); /* 16 changed bytes */
	assert_get(f->cs, hb, b);
	assert_get(f->cs, ha, a);
	/* the same content again: nothing added, same name */
	assert_int_equal(gv_chunkstore_put_delta(f->cs, b, LEN, ha, again, &added), 0);
	assert_int_equal(added, 0);
	assert_memory_equal(again, hb, 32);
	/* a delta as base: its own base (a) is used instead */
	assert_int_equal(gv_chunkstore_put_delta(f->cs, c, LEN, hb, hc, &added), 0);
	assert_true(added > 0 && added < 1024);
	assert_get(f->cs, hc, c);
	free(a);
	free(b);
	free(c);
}

static void test_no_base_or_unlike(void **state)
{
	struct fx *f = *state;
	uint8_t *a = random_data(2), *other = random_data(3), missing[32], ha[32], ho[32];
	uint64_t added;

	memset(missing, 0x42, sizeof(missing));
	assert_int_equal(gv_chunkstore_put_delta(f->cs, a, LEN, missing, ha, &added), 0);
	assert_true(added > LEN - 1024); /* stored whole */
	assert_get(f->cs, ha, a);
	/* nothing in common with the base: whole as well, still readable
	 * once the would-be base is gone */
	assert_int_equal(gv_chunkstore_put_delta(f->cs, other, LEN, ha, ho, &added), 0);
	char *p = path_of(f, ha);
	assert_int_equal(unlink(p), 0);
	free(p);
	assert_get(f->cs, ho, other);
	free(a);
	free(other);
}

struct keep1 {
	uint8_t h[32];
};

static bool keep_one(void *ud, const uint8_t h[32])
{
	return ud && !memcmp(((struct keep1 *)ud)->h, h, 32);
}

static void test_gc_keeps_bases(void **state)
{
	struct fx *f = *state;
	uint8_t *a = random_data(4), *b = touched(a, 1), *x = random_data(5);
	uint8_t ha[32], hb[32], hx[32];
	struct keep1 k;
	uint64_t added, freed;

	assert_int_equal(gv_chunkstore_put(f->cs, a, LEN, ha, &added), 0);
	assert_int_equal(gv_chunkstore_put_delta(f->cs, b, LEN, ha, hb, &added), 0);
	assert_int_equal(gv_chunkstore_put(f->cs, x, LEN, hx, &added), 0);
	/* only the delta is referenced: its base stays, the other goes */
	memcpy(k.h, hb, 32);
	assert_int_equal(gv_chunkstore_gc(f->cs, keep_one, &k, &freed), 0);
	assert_true(freed > LEN - 1024 && freed < LEN + 1024);
	assert_get(f->cs, hb, b);
	assert_get(f->cs, ha, a);
	uint8_t *got;
	size_t n;
	assert_int_equal(gv_chunkstore_get(f->cs, hx, &got, &n), -ENOENT);
	/* nothing referenced: all go */
	assert_int_equal(gv_chunkstore_gc(f->cs, keep_one, NULL, &freed), 0);
	assert_int_equal(gv_chunkstore_get(f->cs, ha, &got, &n), -ENOENT);
	assert_int_equal(gv_chunkstore_get(f->cs, hb, &got, &n), -ENOENT);
	free(a);
	free(b);
	free(x);
}

static void test_damaged_base(void **state)
{
	struct fx *f = *state;
	uint8_t *a = random_data(6), *b = touched(a, 3), ha[32], hb[32], *got = NULL;
	uint64_t added;
	size_t n;
	FILE *fp;

	assert_int_equal(gv_chunkstore_put(f->cs, a, LEN, ha, &added), 0);
	assert_int_equal(gv_chunkstore_put_delta(f->cs, b, LEN, ha, hb, &added), 0);
	char *p = path_of(f, ha);
	fp = fopen(p, "r+b");
	assert_non_null(fp);
	assert_int_equal(fseek(fp, 2000, SEEK_SET), 0);
	assert_int_equal(fputc(0x5a, fp), 0x5a);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(gv_chunkstore_get(f->cs, hb, &got, &n), -EBADMSG);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(gv_chunkstore_get(f->cs, hb, &got, &n), -EBADMSG);
	free(p);
	free(a);
	free(b);
}

/* Copying stored files between stores: as they are, deltas after their
 * base; bytes that do not read back as the name are refused, not kept. */
static void test_raw_copy(void **state)
{
	struct fx *f = *state;
	uint8_t *a = random_data(7), *b = touched(a, 5), ha[32], hb[32], base[32], *raw;
	uint64_t added;
	size_t n;
	bool delta;
	char other[] = "/tmp/gv-chunk2-XXXXXX";
	gv_chunkstore *cs2;

	assert_int_equal(gv_chunkstore_put(f->cs, a, LEN, ha, &added), 0);
	assert_int_equal(gv_chunkstore_put_delta(f->cs, b, LEN, ha, hb, &added), 0);
	assert_non_null(mkdtemp(other));
	assert_int_equal(gv_chunkstore_open(other, &cs2), 0);
	assert_int_equal(gv_chunkstore_raw(f->cs, hb, &raw, &n, &delta, base), 0);
	assert_true(delta);
	assert_memory_equal(base, ha, 32);
	/* the delta before its base: refused */
	assert_int_equal(gv_chunkstore_put_raw(cs2, hb, raw, n), -EBADMSG);
	assert_false(gv_chunkstore_has(cs2, hb));
	/* the right bytes under another name: refused */
	assert_int_equal(gv_chunkstore_put_raw(cs2, ha, raw, n), -EBADMSG);
	free(raw);
	assert_int_equal(gv_chunkstore_raw(f->cs, ha, &raw, &n, &delta, base), 0);
	assert_false(delta);
	assert_int_equal(gv_chunkstore_put_raw(cs2, hb, raw, n), -EBADMSG);
	assert_int_equal(gv_chunkstore_put_raw(cs2, ha, raw, n), 0);
	free(raw);
	assert_int_equal(gv_chunkstore_raw(f->cs, hb, &raw, &n, &delta, base), 0);
	assert_int_equal(gv_chunkstore_put_raw(cs2, hb, raw, n), 0);
	free(raw);
	assert_get(cs2, hb, b);
	gv_chunkstore_close(cs2);
	gv_rm_rf(other);
	free(a);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_delta_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_base_or_unlike, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gc_keeps_bases, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_base, setup, teardown),
		cmocka_unit_test_setup_teardown(test_raw_copy, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
