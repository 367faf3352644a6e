/* SPDX-License-Identifier: MIT */
/*
 * test-replicate.c - a grid job's checkpoints copied to other hosts
 * (gv_checkpoint_replicate, gv_checkpoint_send): three host contexts in
 * temporary directories, two of them serving the peer requests on
 * loopback, checkpoints made of chunks written by hand (no VM). The
 * replica gets every checkpoint with its job output, a second copy sends
 * nothing, what retention drops on the source goes on the replica, and a
 * replica sends one checkpoint on to a third host, as for a restore there.
 */
#include <gridvm/base/util.h>
#include <gridvm/blocks/chunk.h>
#include <gridvm/node/checkpoint.h>
#include <gridvm/node/host.h>
#include <gridvm/node/image.h>
#include <gridvm/node/migrate.h>
#include <gridvm/xfer/xfer.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#define VM "job-7"
#define ID1 "20260101-000000-000"
#define ID2 "20260101-000010-000"

static const char *key_hex = "0101010101010101010101010101010101010101010101010101010101010101";

struct peer {
	char dir[64];
	gv_host *h;
	gv_xfer_server *xs;
	char addr[64];
};

static void peer_open(struct peer *p, bool serve)
{
	uint8_t key[GV_XFER_KEY_LEN];
	gv_err e;
	char *kf;

	snprintf(p->dir, sizeof(p->dir), "/tmp/gv-repl-XXXXXX");
	assert_non_null(mkdtemp(p->dir));
	assert_int_equal(gv_host_open(p->dir, &p->h, &e), 0);
	kf = gv_strdupf("%s/grid.key", p->dir);
	assert_int_equal(gv_write_file_atomic(kf, key_hex, strlen(key_hex)), 0);
	gv_host_set_grid_key(p->h, kf);
	free(kf);
	if (!serve)
		return;
	assert_int_equal(gv_xfer_key_load(gv_host_grid_key(p->h), key), 0);
	assert_int_equal(gv_xfer_server_start("127.0.0.1:0", key, gv_image_xfer_resolve, p->h,
					      &p->xs, &e), 0);
	gv_xfer_server_set_control(p->xs, gv_migrate_control);
	snprintf(p->addr, sizeof(p->addr), "127.0.0.1:%d", gv_xfer_server_port(p->xs));
}

static void peer_close(struct peer *p)
{
	gv_xfer_server_stop(p->xs);
	gv_host_close(p->h);
	gv_rm_rf(p->dir);
}

/* A chunk of @len bytes of @fill into @cs: [hex, len]. */
static json_t *chunk(gv_chunkstore *cs, int fill, size_t len)
{
	uint8_t *buf = malloc(len), h[32];
	uint64_t added;
	char hex[65];

	memset(buf, fill, len);
	for (size_t i = 0; i < len; i += 97)
		buf[i] = (uint8_t)(i / 97 + fill); /* not all one byte */
	assert_int_equal(gv_chunkstore_put(cs, buf, len, h, &added), 0);
	free(buf);
	gv_hash_hex(h, hex);
	return json_pack("[s, I]", hex, (json_int_t)len);
}

/* A checkpoint of VM on @p: memory @mem, a 64 KiB disk @disk, output @out. */
static void checkpoint(struct peer *p, const char *id, int mem, int disk, const char *out)
{
	char *csdir = gv_strdupf("%s/chunks", p->dir), *dir = gv_strdupf("%s/checkpoints/" VM,
									 p->dir);
	char *path = gv_strdupf("%s/%s.json", dir, id), *text;
	gv_chunkstore *cs = NULL;
	uint8_t h[32];
	uint64_t added;
	char hex[65];

	assert_int_equal(gv_mkdir_p(csdir, 0755), 0);
	assert_int_equal(gv_mkdir_p(dir, 0755), 0);
	assert_int_equal(gv_chunkstore_open(csdir, &cs), 0);
	assert_int_equal(gv_chunkstore_put(cs, (const uint8_t *)out, strlen(out), h, &added), 0);
	gv_hash_hex(h, hex);
	json_t *man = json_pack("{s:i, s:s, s:s, s:I, s:s, s:I, s:{s:I, s:[o]}, s:{s:I, s:i, s:[o]},"
				" s:{s:I, s:i, s:[[s, I]]}}",
				"version", 1, "id", id, "vm", VM, "created", (json_int_t)1767225600,
				"state", "running", "jobout_bytes", (json_int_t)strlen(out),
				"memory", "bytes", (json_int_t)100000, "chunks", chunk(cs, mem, 100000),
				"disk", "bytes", (json_int_t)65536, "chunk_size", 65536, "chunks",
				chunk(cs, disk, 65536), "jobout", "bytes", (json_int_t)strlen(out),
				"chunk_size", 65536, "chunks", hex, (json_int_t)strlen(out));
	text = json_dumps(man, 0);
	assert_int_equal(gv_write_file_atomic(path, text, strlen(text)), 0);
	free(text);
	json_decref(man);
	gv_chunkstore_close(cs);
	free(csdir);
	free(dir);
	free(path);
}

static bool holds(struct peer *p, const char *id)
{
	json_t *out = NULL;
	gv_err e;
	bool yes = gv_checkpoint_show(p->h, VM, id, &out, &e) == 0;

	json_decref(out);
	return yes;
}

static void test_replicate(void **state)
{
	struct peer a = { 0 }, b = { 0 }, c = { 0 };
	json_t *held = NULL;
	uint64_t bytes = 0, first;
	gv_err e;

	peer_open(&a, false);
	peer_open(&b, true);
	peer_open(&c, true);
	checkpoint(&a, ID1, 1, 2, "1\n2\n3\n");
	checkpoint(&a, ID2, 3, 2, "1\n2\n3\n4\n5\n"); /* the same disk */

	/* the replica gets both, chunks it lacks only */
	assert_int_equal(gv_checkpoint_replicate(a.h, VM, b.addr, 5, &held, &bytes, &e), 0);
	assert_int_equal(json_array_size(held), 2);
	assert_string_equal(json_string_value(json_array_get(held, 1)), ID2);
	assert_true(holds(&b, ID1) && holds(&b, ID2));
	first = bytes;
	assert_true(first > 0);
	json_decref(held);

	/* again: nothing to send */
	assert_int_equal(gv_checkpoint_replicate(a.h, VM, b.addr, 5, &held, &bytes, &e), 0);
	assert_int_equal(bytes, 0);
	json_decref(held);

	/* retention dropped the first here: dropped there too */
	assert_int_equal(gv_checkpoint_delete(a.h, VM, ID1, &e), 0);
	assert_int_equal(gv_checkpoint_replicate(a.h, VM, b.addr, 6, &held, &bytes, &e), 0);
	assert_int_equal(json_array_size(held), 1);
	assert_false(holds(&b, ID1));
	assert_true(holds(&b, ID2));
	json_decref(held);

	/* the replica sends one on, with its job output, for a restore */
	assert_int_equal(gv_checkpoint_send(b.h, VM, ID2, c.addr, 6, &bytes, &e), 0);
	assert_true(bytes > 0 && bytes < first);
	assert_true(holds(&c, ID2));
	assert_false(holds(&c, ID1));
	json_t *sum = NULL;
	assert_int_equal(gv_checkpoint_show(c.h, VM, ID2, &sum, &e), 0);
	assert_int_equal(json_integer_value(json_object_get(sum, "jobout_bytes")), 10);
	json_decref(sum);

	/* nothing to send of a checkpoint it does not hold */
	assert_true(gv_checkpoint_send(b.h, VM, ID1, c.addr, 6, &bytes, &e) < 0);
	assert_non_null(strstr(e.msg, "no checkpoint"));
	/* nor to a host that does not answer */
	assert_true(gv_checkpoint_replicate(a.h, VM, "127.0.0.1:1", 6, NULL, &bytes, &e) < 0);

	/* a replica drops them all when told */
	gv_checkpoint_drop_all(b.h, VM);
	assert_false(holds(&b, ID2));

	peer_close(&a);
	peer_close(&b);
	peer_close(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_replicate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
