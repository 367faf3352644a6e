/* SPDX-License-Identifier: MIT */
/* test-hostidx.c - the host-wide block index finds every block of every
 * registered image, survives reopen, growth, removal, crashes, damage. */
#include <gridvm/blocks/hostidx.h>

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

static char dir[64];

/* An image of @nblocks 4 KiB blocks: block i holds the number seed+i, so
 * two images with overlapping ranges share blocks; every 7th is zero. */
static char *make_image(const char *name, uint32_t seed, uint32_t nblocks)
{
	char *path = gv_strdupf("%s/%s.img", dir, name);
	uint8_t buf[4096];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	for (uint32_t i = 0; i < nblocks; i++) {
		memset(buf, 0, sizeof(buf));
		if ((seed + i) % 7)
			snprintf((char *)buf, sizeof(buf), "block %u", seed + i);
		assert_int_equal(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	}
	close(fd);
	return path;
}

static gv_blockidx *add(gv_hostidx *h, const char *name, uint32_t seed, uint32_t n)
{
	char *img = make_image(name, seed, n), *idx = gv_strdupf("%s/%s.gvidx", dir, name);
	gv_blockidx *bi = NULL;

	assert_int_equal(gv_blockidx_get(img, idx, 12, &bi), 0);
	assert_int_equal(gv_hostidx_add(h, name, img, idx, bi, NULL), 0);
	free(img);
	free(idx);
	return bi;
}

/* Every non-zero block of @bi is found, in a source whose block @loc has
 * the same content number. */
static void assert_all_found(gv_hostidx *h, const gv_blockidx *bi)
{
	for (uint64_t b = 0; b < bi->nblocks; b++) {
		gv_hostidx_loc loc;
		if (gv_blockidx_is_zero(bi, b))
			continue;
		assert_int_equal(gv_hostidx_lookup(h, bi->hashes + b * 32, &loc), 0);
	}
}

static int count_found(gv_hostidx *h, const gv_blockidx *bi)
{
	int n = 0;

	for (uint64_t b = 0; b < bi->nblocks; b++) {
		gv_hostidx_loc loc;
		if (!gv_blockidx_is_zero(bi, b) &&
		    gv_hostidx_lookup(h, bi->hashes + b * 32, &loc) == 0)
			n++;
	}
	return n;
}

static void test_add_lookup_reopen(void **state)
{
	gv_hostidx *h;
	gv_blockidx *a, *b;
	gv_hostidx_stats st, st2;
	gv_hostidx_loc loc;
	char *name = NULL, *path = NULL;
	uint8_t none[32] = { 1, 2, 3 };

	snprintf(dir, sizeof(dir), "/tmp/gv-hostidx-XXXXXX");
	assert_non_null(mkdtemp(dir));
	assert_int_equal(gv_hostidx_open(dir, &h), 0);
	a = add(h, "a", 0, 70000);         /* more than fits the first table */
	b = add(h, "b", 35000, 70000);     /* half shared with a */
	assert_all_found(h, a);
	assert_all_found(h, b);
	assert_int_equal(gv_hostidx_lookup(h, none, &loc), -ENOENT);
	/* block 100 of b is content 35100, first stored as block 35100 of a */
	assert_int_equal(gv_hostidx_lookup(h, b->hashes + 100 * 32, &loc), 0);
	assert_int_equal(gv_hostidx_source(h, loc.source, &name, &path, NULL), 0);
	assert_string_equal(name, "a");
	assert_int_equal(loc.block, 35100);
	free(name);
	free(path);
	gv_hostidx_stats_get(h, &st);
	assert_int_equal(st.sources, 2);
	assert_int_equal(st.used, 105000 - 105000 / 7); /* distinct non-zero blocks */
	assert_true(st.used * 10 <= st.slots * 7);
	gv_hostidx_close(h);

	assert_int_equal(gv_hostidx_open(dir, &h), 0);
	gv_hostidx_stats_get(h, &st2);
	assert_int_equal(st2.used, st.used);
	assert_all_found(h, a);
	assert_all_found(h, b);

	/* removing a keeps what b holds and forgets the rest */
	assert_int_equal(gv_hostidx_remove(h, "a"), 0);
	assert_int_equal(gv_hostidx_remove(h, "a"), -ENOENT);
	assert_all_found(h, b);
	int shared = 0;
	for (uint32_t i = 35000; i < 70000; i++)
		shared += i % 7 != 0;
	assert_int_equal(count_found(h, a), shared);
	gv_hostidx_close(h);
	gv_blockidx_free(a);
	gv_blockidx_free(b);
	assert_int_equal(gv_rm_rf(dir), 0);
}

static void test_crash_and_damage(void **state)
{
	gv_hostidx *h;
	gv_blockidx *a, *b;
	char *tab;
	int fd;
	uint32_t one = 1;

	snprintf(dir, sizeof(dir), "/tmp/gv-hostidx-XXXXXX");
	assert_non_null(mkdtemp(dir));
	assert_int_equal(gv_hostidx_open(dir, &h), 0);
	a = add(h, "a", 0, 3000);
	b = add(h, "b", 10000, 3000);
	gv_hostidx_close(h);
	tab = gv_strdupf("%s/hostidx.tab", dir);

	/* a crash in the middle of a change leaves the dirty flag set */
	fd = open(tab, O_WRONLY);
	assert_int_equal(pwrite(fd, &one, 4, 12), 4);
	close(fd);
	assert_int_equal(gv_hostidx_open(dir, &h), 0);
	assert_all_found(h, a);
	assert_all_found(h, b);
	gv_hostidx_close(h);

	/* a damaged table is rebuilt from the sources */
	fd = open(tab, O_WRONLY);
	assert_int_equal(pwrite(fd, "garbage!", 8, 0), 8);
	close(fd);
	assert_int_equal(gv_hostidx_open(dir, &h), 0);
	assert_all_found(h, a);
	gv_hostidx_close(h);

	/* a source whose image vanished is dropped at the next rebuild */
	char *img = gv_strdupf("%s/a.img", dir), *idx = gv_strdupf("%s/a.gvidx", dir);
	unlink(img);
	unlink(idx);
	unlink(tab);
	assert_int_equal(gv_hostidx_open(dir, &h), 0);
	assert_int_equal(count_found(h, a), 0);
	assert_all_found(h, b);
	gv_hostidx_close(h);
	free(img);
	free(idx);
	free(tab);
	gv_blockidx_free(a);
	gv_blockidx_free(b);
	assert_int_equal(gv_rm_rf(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_lookup_reopen),
		cmocka_unit_test(test_crash_and_damage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
