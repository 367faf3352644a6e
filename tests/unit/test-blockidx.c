/* SPDX-License-Identifier: MIT */
/* test-blockidx.c - the block index against a single-threaded reference
 * computed here with OpenSSL; its file format, every corruption rejected;
 * gv_blockidx_get rebuilding stale or corrupt indexes. */
#include <gridvm/blocks/blockidx.h>

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#define UNIT 4096

struct fx {
	char dir[32];
	char *img, *idx;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	strcpy(f->dir, "/tmp/gv-blockidx-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->img = gv_strdupf("%s/disk.img", f->dir);
	f->idx = gv_strdupf("%s/disk.img.gvidx", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	gv_rm_rf(f->dir);
	free(f->img);
	free(f->idx);
	free(f);
	return 0;
}

/* Deterministic content of @size bytes: 4 KiB units that are random,
 * a repeated pattern, or (in aligned 128 KiB runs) zero. A zero @tail
 * makes the last 128 KiB and the short end zero too. */
static uint8_t *make_data(size_t size, bool zero_tail)
{
	uint8_t *d = malloc(size + 1);
	uint64_t s = 0x9e3779b97f4a7c15ull;

	for (size_t o = 0; o < size; o += UNIT) {
		size_t i = o / UNIT, n = size - o < UNIT ? size - o : UNIT;

		for (size_t j = 0; j < n; j++) {
			s ^= s << 13, s ^= s >> 7, s ^= s << 17;
			if ((i / 32) % 5 == 2 || (zero_tail && size - o <= (128 << 10)))
				d[o + j] = 0;
			else if (i % 7 == 3)
				d[o + j] = (uint8_t)(j * 31 + 7);
			else
				d[o + j] = (uint8_t)s;
		}
	}
	return d;
}

static void write_data(const char *path, const uint8_t *d, size_t size)
{
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	assert_int_equal(fwrite(d, 1, size, fp), size);
	assert_int_equal(fclose(fp), 0);
}

static void sha(const void *p, size_t n, uint8_t *out)
{
	assert_int_equal(EVP_Digest(p, n, out, NULL, EVP_sha256(), NULL), 1);
}

/* Compare @x with a straightforward reference computation over @d. */
static void check_index(const gv_blockidx *x, const uint8_t *d, size_t size,
			uint32_t shift, const char *path)
{
	static const uint8_t z[8192];
	size_t bs = (size_t)1 << shift;
	uint64_t zero = 0, nb = (size + bs - 1) / bs;
	uint8_t h[GV_HASH_LEN];
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(x->block_shift, shift);
	assert_int_equal(x->image_size, size);
	assert_int_equal(x->nblocks, nb);
	assert_int_equal(x->image_mtime_ns, (uint64_t)st.st_mtim.tv_sec * 1000000000u +
						(uint64_t)st.st_mtim.tv_nsec);
	for (uint64_t i = 0; i < nb; i++) {
		size_t off = i * bs, n = size - off < bs ? size - off : bs;
		bool is_zero = true;

		for (size_t o = 0; o < n && is_zero; o += sizeof(z))
			is_zero = !memcmp(d + off + o, z,
					  n - o < sizeof(z) ? n - o : sizeof(z));
		if (is_zero)
			memset(h, 0, sizeof(h));
		else
			sha(d + off, n, h);
		zero += is_zero;
		assert_memory_equal(x->hashes + i * GV_HASH_LEN, h, GV_HASH_LEN);
		assert_int_equal(gv_blockidx_is_zero(x, i), is_zero);
	}
	assert_int_equal(x->zero_blocks, zero);
	sha(d, size, h);
	assert_memory_equal(x->image_sha256, h, GV_HASH_LEN);
}

struct prog {
	int calls;
	uint64_t last, total;
	bool monotonic;
};

static void on_progress(void *ud, uint64_t done, uint64_t total)
{
	struct prog *p = ud;

	if (p->calls++ && done < p->last)
		p->monotonic = false;
	p->last = done;
	p->total = total;
}

static void test_build_matches_reference(void **state)
{
	struct fx *f = *state;
	static const size_t sizes[] = {3 * 1048576 + 1234, 640 * 1024 + 100, 4096 * 3, 1};
	static const uint32_t shifts[] = {12, 16};
	static const unsigned threads[] = {1, 2, 3, 0};

	for (size_t s = 0; s < 4; s++) {
		uint8_t *d = make_data(sizes[s], s == 1);

		write_data(f->img, d, sizes[s]);
		for (size_t k = 0; k < 2; k++)
			for (size_t t = 0; t < 4; t++) {
				struct prog p = {.monotonic = true};
				gv_blockidx *x;

				assert_int_equal(gv_blockidx_build(f->img, shifts[k],
								   threads[t],
								   on_progress, &p, &x),
						 0);
				check_index(x, d, sizes[s], shifts[k], f->img);
				assert_true(p.calls >= 2 && p.monotonic);
				assert_int_equal(p.last, sizes[s]);
				assert_int_equal(p.total, sizes[s]);
				gv_blockidx_free(x);
			}
		free(d);
	}
}

static void test_empty_and_errors(void **state)
{
	struct fx *f = *state;
	uint8_t empty[GV_HASH_LEN];
	gv_blockidx *x;

	write_data(f->img, (const uint8_t *)"", 0);
	assert_int_equal(gv_blockidx_build(f->img, 12, 2, NULL, NULL, &x), 0);
	assert_int_equal(x->nblocks, 0);
	assert_int_equal(x->zero_blocks, 0);
	sha("", 0, empty);
	assert_memory_equal(x->image_sha256, empty, GV_HASH_LEN);
	gv_blockidx_free(x);
	assert_int_equal(gv_blockidx_build(f->img, 8, 1, NULL, NULL, &x), -EINVAL);
	assert_int_equal(gv_blockidx_build(f->img, 25, 1, NULL, NULL, &x), -EINVAL);
	assert_int_equal(gv_blockidx_build(f->dir, 12, 1, NULL, NULL, &x), -EINVAL);
	assert_int_equal(gv_blockidx_build(f->idx, 12, 1, NULL, NULL, &x), -ENOENT);
	assert_null(x);
	gv_blockidx_free(NULL);
}

/* Progress callback that writes to the image while it is being hashed. */
static void meddle(void *ud, uint64_t done, uint64_t total)
{
	const char *path = ud;
	struct timespec ts[2] = {{1000000, 0}, {1000000, 0}};

	if (done == 0 && total > 1)
		assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static void shrink(void *ud, uint64_t done, uint64_t total)
{
	if (done == 0)
		assert_int_equal(truncate(ud, 4096), 0);
}

static void test_image_changed_while_hashing(void **state)
{
	struct fx *f = *state;
	uint8_t *d = make_data(2 << 20, false);
	gv_blockidx *x;

	for (unsigned t = 1; t <= 2; t++) {
		write_data(f->img, d, 2 << 20);
		assert_int_equal(gv_blockidx_build(f->img, 12, t, meddle, f->img, &x),
				 -EAGAIN);
		assert_null(x);
		assert_int_equal(gv_blockidx_build(f->img, 12, t, shrink, f->img, &x),
				 -EAGAIN);
		assert_null(x);
	}
	free(d);
}

static gv_blockidx *build_sample(struct fx *f, uint8_t **data, size_t *size)
{
	gv_blockidx *x;

	*size = 700 * 1024 + 10;
	*data = make_data(*size, false);
	write_data(f->img, *data, *size);
	assert_int_equal(gv_blockidx_build(f->img, 12, 2, NULL, NULL, &x), 0);
	assert_true(x->zero_blocks > 0);
	return x;
}

static void assert_same(const gv_blockidx *a, const gv_blockidx *b)
{
	assert_int_equal(a->block_shift, b->block_shift);
	assert_int_equal(a->image_size, b->image_size);
	assert_int_equal(a->nblocks, b->nblocks);
	assert_int_equal(a->image_mtime_ns, b->image_mtime_ns);
	assert_int_equal(a->zero_blocks, b->zero_blocks);
	assert_memory_equal(a->image_sha256, b->image_sha256, GV_HASH_LEN);
	if (a->nblocks)
		assert_memory_equal(a->hashes, b->hashes, a->nblocks * GV_HASH_LEN);
}

static void test_save_load(void **state)
{
	struct fx *f = *state;
	gv_blockidx *x = NULL, *y = NULL;
	uint8_t *d, *buf;
	size_t size, len;

	x = build_sample(f, &d, &size);
	assert_int_equal(gv_blockidx_save(x, f->idx), 0);
	assert_int_equal(gv_blockidx_load(f->idx, &y), 0);
	assert_same(x, y);
	check_index(y, d, size, 12, f->img);
	gv_blockidx_free(y);
	assert_int_equal(gv_blockidx_serialize(x, &buf, &len), 0);
	assert_int_equal(len, 128 + x->nblocks * 32 + 32);
	assert_memory_equal(buf, "GVBIDX\0\1", 8);
	assert_int_equal(gv_blockidx_parse(buf, len, &y), 0);
	assert_same(x, y);
	gv_blockidx_free(y);
	free(buf);
	gv_blockidx_free(x);
	write_data(f->img, d, 0); /* an empty image round-trips too */
	assert_int_equal(gv_blockidx_build(f->img, 16, 0, NULL, NULL, &x), 0);
	assert_int_equal(gv_blockidx_save(x, f->idx), 0);
	assert_int_equal(gv_blockidx_load(f->idx, &y), 0);
	assert_same(x, y);
	gv_blockidx_free(y);
	gv_blockidx_free(x);
	assert_int_equal(gv_blockidx_load("/nonexistent/x.gvidx", &y), -ENOENT);
	free(d);
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Recompute the trailer so only the semantic checks can catch a change. */
static void reseal(uint8_t *buf, size_t len)
{
	sha(buf, len - GV_HASH_LEN, buf + len - GV_HASH_LEN);
}

static void expect_bad(const uint8_t *buf, size_t len)
{
	gv_blockidx *y = (gv_blockidx *)1;

	assert_int_equal(gv_blockidx_parse(buf, len, &y), -EBADMSG);
	assert_null(y);
}

static void test_corruption_rejected(void **state)
{
	struct fx *f = *state;
	uint8_t *d, *buf, *c;
	size_t size, len, hoff;
	gv_blockidx *x = build_sample(f, &d, &size), *y;

	assert_int_equal(gv_blockidx_serialize(x, &buf, &len), 0);
	c = malloc(len + 64);
	/* any flipped byte: header, hashes, trailer */
	for (size_t i = 0; i < len; i += (i < 160 ? 1 : 997)) {
		memcpy(c, buf, len);
		c[i] ^= 0x20;
		expect_bad(c, len);
	}
	memcpy(c, buf, len);
	c[len - 1] ^= 1;
	expect_bad(c, len);
	/* truncated, extended */
	for (size_t n = 0; n < len; n += (n < 200 ? 1 : 4099))
		expect_bad(buf, n);
	expect_bad(buf, len - 1);
	memcpy(c, buf, len);
	c[len] = 0;
	expect_bad(c, len + 1);
	/* semantically wrong with a valid trailer */
	struct {
		size_t off;
		int n;
		uint64_t v;
	} edits[] = {
	    {8, 4, 2}, /* version */
	    {12, 4, 8},
	    {12, 4, 25},		   /* block_shift */
	    {12, 4, 13},		   /* nblocks no longer matches */
	    {16, 8, x->image_size + 4096}, /* image size vs nblocks */
	    {16, 8, UINT64_MAX},	   /* huge, overflows naive math */
	    {24, 8, x->nblocks - 1},
	    {24, 8, UINT64_MAX / 32},
	    {40, 8, x->zero_blocks + 1}, /* zero count */
	    {40, 8, x->zero_blocks - 1},
	    {100, 1, 1}, /* reserved */
	};
	for (size_t e = 0; e < sizeof(edits) / sizeof(edits[0]); e++) {
		memcpy(c, buf, len);
		put_le(c + edits[e].off, edits[e].v, edits[e].n);
		reseal(c, len);
		expect_bad(c, len);
	}
	/* a block hash made all zero without counting it */
	hoff = 128 + 5 * GV_HASH_LEN;
	assert_false(gv_blockidx_is_zero(x, 5));
	memcpy(c, buf, len);
	memset(c + hoff, 0, GV_HASH_LEN);
	reseal(c, len);
	expect_bad(c, len);
	/* the unedited buffer still parses; a corrupt file does not load */
	assert_int_equal(gv_blockidx_parse(buf, len, &y), 0);
	gv_blockidx_free(y);
	memcpy(c, buf, len);
	c[300] ^= 1;
	write_data(f->idx, c, len);
	assert_int_equal(gv_blockidx_load(f->idx, &y), -EBADMSG);
	write_data(f->idx, buf, 100);
	assert_int_equal(gv_blockidx_load(f->idx, &y), -EBADMSG);
	write_data(f->idx, buf, len - 32);
	assert_int_equal(gv_blockidx_load(f->idx, &y), -EBADMSG);
	free(c);
	free(buf);
	free(d);
	gv_blockidx_free(x);
}

static ino_t inode(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_ino;
}

static void test_get_rebuilds(void **state)
{
	struct fx *f = *state;
	struct timespec ts[2] = {{2000000, 5}, {2000000, 5}};
	gv_blockidx *x = NULL, *y = NULL;
	uint8_t *d;
	size_t size;
	ino_t ino;
	FILE *fp;

	gv_blockidx_free(build_sample(f, &d, &size));
	assert_int_equal(gv_blockidx_get(f->img, f->idx, 12, &x), 0); /* built */
	check_index(x, d, size, 12, f->img);
	ino = inode(f->idx);
	assert_int_equal(gv_blockidx_get(f->img, f->idx, 12, &y), 0); /* loaded */
	assert_same(x, y);
	assert_int_equal(inode(f->idx), ino);
	gv_blockidx_free(y);
	gv_blockidx_free(x);

	/* the image changes: a block rewritten, then its mtime set */
	memset(d + 8192, 0x5a, 100);
	fp = fopen(f->img, "r+b");
	assert_non_null(fp);
	assert_int_equal(fseek(fp, 8192, SEEK_SET), 0);
	assert_int_equal(fwrite(d + 8192, 1, 100, fp), 100);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(utimensat(AT_FDCWD, f->img, ts, 0), 0);
	assert_int_equal(gv_blockidx_get(f->img, f->idx, 12, &x), 0);
	assert_int_not_equal(inode(f->idx), ino);
	check_index(x, d, size, 12, f->img);
	gv_blockidx_free(x);

	/* another block size: rebuilt */
	assert_int_equal(gv_blockidx_get(f->img, f->idx, 16, &x), 0);
	check_index(x, d, size, 16, f->img);
	gv_blockidx_free(x);

	/* the index file is corrupted: rebuilt, not an error */
	fp = fopen(f->idx, "r+b");
	assert_non_null(fp);
	assert_int_equal(fseek(fp, 200, SEEK_SET), 0);
	assert_int_equal(fputc('X', fp), 'X');
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(gv_blockidx_load(f->idx, &y), -EBADMSG);
	assert_int_equal(gv_blockidx_get(f->img, f->idx, 16, &x), 0);
	check_index(x, d, size, 16, f->img);
	assert_int_equal(gv_blockidx_load(f->idx, &y), 0);
	assert_same(x, y);
	gv_blockidx_free(y);
	gv_blockidx_free(x);
	free(d);
}

static void patch(const char *path, size_t off, const uint8_t *d, size_t n)
{
	FILE *fp = fopen(path, "r+b");

	assert_non_null(fp);
	assert_int_equal(fseek(fp, (long)off, SEEK_SET), 0);
	assert_int_equal(fwrite(d, 1, n, fp), n);
	assert_int_equal(fclose(fp), 0);
}

/* Same as a full (live) hash of the file, except the whole-image digest. */
static void assert_same_live(const gv_blockidx *x, const char *path)
{
	gv_blockidx *y;

	assert_int_equal(gv_blockidx_build_live(path, x->block_shift, &y), 0);
	assert_same(x, y);
	gv_blockidx_free(y);
}

/* An index updated from the ranges written equals one hashed anew; blocks
 * outside those ranges are taken from the base, not read. */
static void test_update_from_extents(void **state)
{
	struct fx *f = *state;
	uint8_t *d, ones[20000];
	size_t size;
	uint64_t n = 0, old_whole;
	gv_blockidx *base = build_sample(f, &d, &size), *x = NULL;
	static const uint8_t z[4096];

	old_whole = size / 4096;
	memset(ones, 0x11, sizeof(ones));
	patch(f->img, 8192, ones, 100);		/* one block */
	patch(f->img, 4096 * 73 - 10, ones, 20);	/* two blocks */
	patch(f->img, 40960, z, sizeof(z));	/* a block becomes zero */
	patch(f->img, size, ones, sizeof(ones)); /* grows: short block + 4 new */
	gv_extent ext[] = { { 8192, 100 }, { 4096 * 73 - 10, 20 }, { 40960, 4096 },
			    { 1ull << 40, 10 } /* past the end: ignored */ };
	assert_int_equal(gv_blockidx_update(f->img, base, ext, 4, &x, &n), 0);
	assert_same_live(x, f->img);
	assert_true(gv_blockidx_is_zero(x, 10));
	assert_int_equal(n, 1 + 2 + 1 + (x->nblocks - old_whole));
	gv_blockidx_free(base);
	base = x;

	/* a write nobody reported: that block keeps the base's hash */
	patch(f->img, 4096 * 3, ones, 10);
	assert_int_equal(gv_blockidx_update(f->img, base, NULL, 0, &x, &n), 0);
	assert_int_equal(n, 0);
	assert_memory_equal(x->hashes + 3 * GV_HASH_LEN, base->hashes + 3 * GV_HASH_LEN,
			    GV_HASH_LEN);
	gv_blockidx_free(x);
	ext[0] = (gv_extent){ 4096 * 3 + 5, 1 };
	assert_int_equal(gv_blockidx_update(f->img, base, ext, 1, &x, &n), 0);
	assert_int_equal(n, 1);
	assert_same_live(x, f->img);
	gv_blockidx_free(base);
	base = x;

	/* shrinks to a short last block: that one is hashed again */
	assert_int_equal(truncate(f->img, 100000), 0);
	assert_int_equal(gv_blockidx_update(f->img, base, NULL, 0, &x, &n), 0);
	assert_int_equal(n, 1);
	assert_same_live(x, f->img);
	gv_blockidx_free(x);
	assert_int_equal(truncate(f->img, 4096 * 20 + 7), 0);
	assert_int_equal(gv_blockidx_update(f->img, base, ext, 1, &x, &n), 0);
	assert_int_equal(n, 2); /* block 3 and the short block 20 */
	assert_same_live(x, f->img);
	gv_blockidx_free(x);
	gv_blockidx_free(base);
	free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_build_matches_reference, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_empty_and_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_image_changed_while_hashing, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_corruption_rejected, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_get_rebuilds, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_update_from_extents, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
