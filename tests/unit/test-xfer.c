/* SPDX-License-Identifier: MIT */
/*
 * test-xfer.c - the block transfer against the real server and against a
 * scripted hostile one: images arrive identical, zero blocks are holes,
 * local and repeated blocks are not sent, resume keeps verified blocks, a
 * wrong key and a tampered block are refused.
 */
#include "../../lib/xfer/xfer_internal.h"

#include <gridvm/blocks/hostidx.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cmocka.h>

#define NBLK 3000
static char dir[64];
static uint8_t key[GV_XFER_KEY_LEN] = { 1, 2, 3, 4, 5 };

/* Block kinds: i%5==0 zero, i%5==1 repeats of one content, else unique;
 * the last block is short. */
static void make_image(const char *path, uint32_t salt)
{
	FILE *f = fopen(path, "wb");
	uint8_t b[4096];

	assert_non_null(f);
	for (uint32_t i = 0; i < NBLK; i++) {
		memset(b, 0, sizeof(b));
		if (i % 5 == 1)
			memcpy(b, "the same block", 14);
		else if (i % 5)
			snprintf((char *)b, sizeof(b), "block %u salt %u", i, i % 2 ? 0 : salt);
		fwrite(b, 1, i == NBLK - 1 ? 1000 : sizeof(b), f);
	}
	fclose(f);
}

static int resolve(void *ud, const char *name, char **path, char **idx)
{
	if (strcmp(name, "img"))
		return -ENOENT;
	*path = gv_strdupf("%s/src.img", dir);
	*idx = gv_strdupf("%s/src.gvidx", dir);
	return 0;
}

static char *file_sha(const char *path)
{
	char *cmd = gv_strdupf("sha256sum < %s", path), *out = malloc(65);
	FILE *p = popen(cmd, "r");

	assert_non_null(p);
	assert_int_equal(fscanf(p, "%64s", out), 1);
	pclose(p);
	free(cmd);
	return out;
}

static int do_fetch(int port, const char *dest, gv_hostidx *hi, gv_codec codec,
		    const uint8_t *k, json_t **sum, gv_err *err)
{
	gv_fetch_opts o = { .host = "127.0.0.1", .port = port, .image = "img", .dest = dest,
			    .codec = codec, .hostidx = hi, .key = k, .timeout_ms = 5000 };
	*sum = NULL;
	return gv_fetch(&o, sum, err);
}

static long long field(json_t *j, const char *k)
{
	return json_integer_value(json_object_get(j, k));
}

static void test_fetch_codecs_and_dedup(void **state)
{
	gv_xfer_server *s;
	gv_err err;
	char *src, *want;
	int port;

	snprintf(dir, sizeof(dir), "/tmp/gv-xfer-XXXXXX");
	assert_non_null(mkdtemp(dir));
	src = gv_strdupf("%s/src.img", dir);
	make_image(src, 7);
	want = file_sha(src);
	assert_int_equal(
	    gv_xfer_server_start("127.0.0.1:0", key, resolve, NULL, &s, &err), 0);
	port = gv_xfer_server_port(s);
	/* the block index in many small parts, as a huge image's would be */
	xfer_index_part = 1000;
	for (int c = GV_CODEC_NONE; c <= GV_CODEC_ZSTD; c++) {
		if (c == GV_CODEC_ZLIB)
			xfer_index_part = XFER_INDEX_PART;
		char *dest = gv_strdupf("%s/dst-%d.img", dir, c), *got;
		json_t *sum;
		struct stat st;
		assert_int_equal(do_fetch(port, dest, NULL, (gv_codec)c, key, &sum, &err), 0);
		got = file_sha(dest);
		assert_string_equal(got, want);
		assert_int_equal(field(sum, "blocks_total"), NBLK);
		assert_int_equal(field(sum, "blocks_zero"), NBLK / 5);
		/* the repeated block is sent once, its copies are made locally */
		assert_int_equal(field(sum, "blocks_local"), NBLK / 5 - 1);
		assert_int_equal(field(sum, "blocks_remote"), NBLK - 2 * (NBLK / 5) + 1);
		assert_int_equal(stat(dest, &st), 0);
		assert_true(st.st_blocks * 512 < st.st_size); /* zero blocks are holes */
		json_decref(sum);
		free(got);
		free(dest);
	}

	/* with a similar image on this host, only what differs is sent */
	char *other = gv_strdupf("%s/other.img", dir), *oidx = gv_strdupf("%s/other.gvidx", dir);
	char *hdir = gv_strdupf("%s/hidx", dir), *dest = gv_strdupf("%s/dst-local.img", dir);
	gv_hostidx *hi;
	gv_blockidx *bi;
	json_t *sum;
	make_image(other, 8); /* differs in the even unique blocks */
	assert_int_equal(gv_hostidx_open(hdir, &hi), 0);
	assert_int_equal(gv_blockidx_get(other, oidx, 12, &bi), 0);
	assert_int_equal(gv_hostidx_add(hi, "other", other, oidx, bi, NULL), 0);
	assert_int_equal(do_fetch(port, dest, hi, GV_CODEC_ZSTD, key, &sum, &err), 0);
	char *got = file_sha(dest);
	assert_string_equal(got, want);
	int even_unique = 0;
	for (int i = 0; i < NBLK; i++)
		even_unique += i % 5 > 1 && i % 2 == 0;
	assert_int_equal(field(sum, "blocks_remote"), even_unique);
	json_decref(sum);
	free(got);
	gv_blockidx_free(bi);
	gv_hostidx_close(hi);
	free(other);
	free(oidx);
	free(hdir);
	free(dest);

	/* a peer without the key gets nothing */
	uint8_t bad[GV_XFER_KEY_LEN] = { 9 };
	dest = gv_strdupf("%s/dst-bad.img", dir);
	assert_int_equal(do_fetch(port, dest, NULL, GV_CODEC_ZSTD, bad, &sum, &err), -EACCES);
	assert_non_null(strstr(err.msg, "authentication failed"));
	assert_int_equal(access(dest, F_OK), -1);
	free(dest);

	/* unknown image */
	gv_fetch_opts o = { .host = "127.0.0.1", .port = port, .image = "nope",
			    .dest = "/nonexistent/x", .key = key, .timeout_ms = 5000 };
	assert_true(gv_fetch(&o, &sum, &err) < 0);
	assert_non_null(strstr(err.msg, "no such image: nope"));

	gv_xfer_server_stop(s);
	free(src);
	free(want);
}

static void test_resume(void **state)
{
	gv_xfer_server *s;
	gv_err err;
	char *src = gv_strdupf("%s/src.img", dir), *want = file_sha(src);
	char *dest = gv_strdupf("%s/resumed.img", dir);
	char *partial = gv_strdupf("%s.partial", dest), *marker = gv_strdupf("%s.partial.src", dest);
	char *cmd;
	json_t *sum;
	gv_blockidx *bi;

	/* an earlier attempt wrote the first 1000 blocks, one of them torn */
	char *idx = gv_strdupf("%s/src.gvidx", dir);
	assert_int_equal(gv_blockidx_load(idx, &bi), 0);
	free(idx);
	cmd = gv_strdupf("cp %s %s && printf torn | dd of=%s bs=1 seek=%d conv=notrunc "
			 "2>/dev/null && dd if=/dev/zero of=%s bs=4096 seek=1000 count=2000 "
			 "conv=notrunc 2>/dev/null && truncate -s %llu %s", src, partial,
			 partial, 4096 * 7 + 10, partial, (unsigned long long)bi->image_size,
			 partial);
	assert_int_equal(system(cmd), 0);
	FILE *m = fopen(marker, "w");
	for (int i = 0; i < 32; i++)
		fprintf(m, "%02x", bi->image_sha256[i]);
	fclose(m);
	assert_int_equal(
	    gv_xfer_server_start("127.0.0.1:0", key, resolve, NULL, &s, &err), 0);
	assert_int_equal(do_fetch(gv_xfer_server_port(s), dest, NULL, GV_CODEC_LZ4, key,
				  &sum, &err), 0);
	char *got = file_sha(dest);
	assert_string_equal(got, want);
	/* blocks 0..999 that are not zero, minus the torn block 7, were kept */
	int kept = 0;
	for (int i = 0; i < 1000; i++)
		kept += i % 5 != 0 && i != 7;
	assert_int_equal(field(sum, "blocks_resumed"), kept);
	assert_int_equal(access(partial, F_OK), -1);
	assert_int_equal(access(marker, F_OK), -1);
	json_decref(sum);
	gv_xfer_server_stop(s);
	gv_blockidx_free(bi);
	free(got);
	free(cmd);
	free(src);
	free(want);
	free(dest);
	free(partial);
	free(marker);
}

/* A writer that keeps changing blocks of the source until frozen. */
static volatile int writer_stop;
static pthread_t writer_thread;
static int writes;

static void *writer(void *arg)
{
	char *path = gv_strdupf("%s/live.img", dir);
	int fd = open(path, O_WRONLY);
	unsigned seed = 42;

	while (!writer_stop) {
		char b[64];
		int blk = (int)(rand_r(&seed) % NBLK);
		snprintf(b, sizeof(b), "changed %d", writes++);
		assert_true(pwrite(fd, b, strlen(b), (off_t)blk * 4096 + 100) > 0);
		usleep(200);
	}
	close(fd);
	free(path);
	return NULL;
}

static int freeze(void *ud)
{
	writer_stop = 1;
	pthread_join(writer_thread, NULL);
	(*(int *)ud)++;
	return 0;
}

static void thaw(void *ud)
{
	(*(int *)ud) += 10;
}

static int resolve_live(void *ud, const char *name, char **path, char **idx)
{
	*path = gv_strdupf("%s/live.img", dir);
	*idx = gv_strdupf("%s/live.gvidx", dir);
	return 0;
}

static void test_iterative(void **state)
{
	gv_xfer_server *s;
	gv_err err;
	char *src = gv_strdupf("%s/live.img", dir), *dest = gv_strdupf("%s/it.img", dir);
	char *want, *got;
	json_t *sum, *passes, *last;
	int frozen = 0;

	make_image(src, 3);
	writer_stop = 0;
	pthread_create(&writer_thread, NULL, writer, NULL);
	assert_int_equal(
	    gv_xfer_server_start("127.0.0.1:0", key, resolve_live, NULL, &s, &err), 0);
	gv_fetch_opts o = { .host = "127.0.0.1", .port = gv_xfer_server_port(s), .image = "live",
			    .dest = dest, .codec = GV_CODEC_ZSTD, .key = key, .timeout_ms = 5000,
			    .iterative = true, .max_passes = 4, .run_blocks = 16, .window = 2,
			    .freeze = freeze, .thaw = thaw, .ud = &frozen };
	assert_int_equal(gv_fetch(&o, &sum, &err), 0);
	assert_int_equal(frozen, 11); /* frozen once, thawed once */
	assert_true(writes > 0);
	want = file_sha(src);
	got = file_sha(dest);
	assert_string_equal(got, want); /* identical to the source as frozen */
	passes = json_object_get(sum, "passes");
	assert_true(json_array_size(passes) >= 2);
	last = json_array_get(passes, json_array_size(passes) - 1);
	assert_true(json_is_true(json_object_get(last, "frozen")));
	assert_false(json_is_true(json_object_get(json_array_get(passes, 0), "frozen")));
	json_decref(sum);
	gv_xfer_server_stop(s);
	free(src);
	free(dest);
	free(want);
	free(got);
}

/* Live passes in place that keep their index, then a pull with that
 * index as the base: only the changed blocks cross (a delta index), the
 * file ends identical; a base the source does not know gets a whole
 * index and the same result. */
static void test_base_delta(void **state)
{
	gv_xfer_server *s;
	gv_err err;
	char *src = gv_strdupf("%s/live.img", dir), *dest = gv_strdupf("%s/base.img", dir);
	char *idx = gv_strdupf("%s/base.gvidx", dir), *want, *got;
	gv_blockidx *base = NULL;
	json_t *sum = NULL;
	FILE *f;

	(void)state;
	make_image(src, 5);
	assert_int_equal(
	    gv_xfer_server_start("127.0.0.1:0", key, resolve_live, NULL, &s, &err), 0);
	gv_fetch_opts o = { .host = "127.0.0.1", .port = gv_xfer_server_port(s), .image = "live",
			    .dest = dest, .codec = GV_CODEC_ZSTD, .key = key, .timeout_ms = 5000,
			    .in_place = true, .iterative = true, .no_final = true,
			    .max_passes = 2, .index_dest = idx };
	assert_int_equal(gv_fetch(&o, &sum, &err), 0);
	json_decref(sum);
	/* three blocks change at the source; the destination is untouched */
	f = fopen(src, "r+b");
	assert_non_null(f);
	for (long b = 2; b < 5; b++) {
		fseek(f, b * 4096, SEEK_SET);
		fprintf(f, "changed block %ld", b);
	}
	fclose(f);
	assert_int_equal(gv_blockidx_load(idx, &base), 0);
	gv_fetch_opts o2 = { .host = "127.0.0.1", .port = gv_xfer_server_port(s), .image = "live",
			     .dest = dest, .codec = GV_CODEC_ZSTD, .key = key, .timeout_ms = 5000,
			     .in_place = true, .base_index = base };
	assert_int_equal(gv_fetch(&o2, &sum, &err), 0);
	assert_int_equal(field(sum, "blocks_remote"), 3);
	assert_true(field(sum, "bytes_received") < 8000); /* no whole index */
	want = file_sha(src);
	got = file_sha(dest);
	assert_string_equal(got, want);
	json_decref(sum);
	free(got);
	/* a block the file does not hold as the base says (an early live
	 * pass could not take it): without the .stale list the delta path
	 * leaves it wrong, with it the block is fetched */
	uint64_t *loaded = NULL;
	size_t nloaded = 9;
	uint8_t be[8] = { 0, 0, 0, 0, 0, 0, 0, 6 };
	char *stalef = gv_strdupf("%s.stale", idx);
	assert_int_equal(gv_fetch(&o, &sum, &err), 0); /* base = the source's */
	json_decref(sum);
	assert_int_equal(gv_fetch_load_stale(idx, &loaded, &nloaded), 0);
	assert_int_equal(nloaded, 0); /* every block was taken */
	f = fopen(dest, "r+b");
	assert_non_null(f);
	fseek(f, 6 * 4096, SEEK_SET);
	fprintf(f, "never arrived");
	fclose(f);
	gv_blockidx_free(base);
	assert_int_equal(gv_blockidx_load(idx, &base), 0);
	o2.base_index = base;
	assert_int_equal(gv_fetch(&o2, &sum, &err), 0);
	json_decref(sum);
	got = file_sha(dest);
	assert_string_not_equal(got, want);
	free(got);
	assert_int_equal(gv_write_file_atomic(stalef, (char *)be, 8), 0);
	assert_int_equal(gv_fetch_load_stale(idx, &loaded, &nloaded), 0);
	assert_int_equal(nloaded, 1);
	assert_int_equal(loaded[0], 6);
	o2.base_stale = loaded;
	o2.n_base_stale = nloaded;
	assert_int_equal(gv_fetch(&o2, &sum, &err), 0);
	assert_int_equal(field(sum, "blocks_remote"), 1);
	json_decref(sum);
	got = file_sha(dest);
	assert_string_equal(got, want);
	free(got);
	free(loaded);
	free(stalef);
	o2.base_stale = NULL;
	o2.n_base_stale = 0;
	/* a base the source never sent: the whole index, the same file */
	memset(base->hashes, 0x5a, GV_HASH_LEN);
	f = fopen(src, "r+b");
	fseek(f, 7 * 4096, SEEK_SET);
	fprintf(f, "changed again");
	fclose(f);
	free(want);
	want = file_sha(src);
	assert_int_equal(gv_fetch(&o2, &sum, &err), 0);
	got = file_sha(dest);
	assert_string_equal(got, want);
	json_decref(sum);
	gv_blockidx_free(base);
	gv_xfer_server_stop(s);
	free(src);
	free(dest);
	free(idx);
	free(want);
	free(got);
}

/* A hostile source: authenticates properly, then sends a wrong block. */
static void *evil_server(void *arg)
{
	int lfd = *(int *)arg, fd = accept(lfd, NULL, NULL);
	struct xconn c;
	gv_err err;
	uint8_t type, *p, hdr[17];
	size_t n;
	gv_blockidx *bi;
	char *idx = gv_strdupf("%s/src.gvidx", dir);

	xconn_init(&c, fd, 5000);
	if (xauth_server(&c, key, &err) == 0 &&
	    xconn_recv(&c, &type, &p, &n) == 0 && gv_blockidx_load(idx, &bi) == 0) {
		uint8_t *raw, *z, lenb[8];
		size_t rawlen;
		int r = gv_blockidx_serialize(bi, &raw, &rawlen);
		size_t zl = 0;
		(void)r;
		xcodec_compress(GV_CODEC_ZSTD, 3, raw, rawlen, &z, &zl);
		put_be32(lenb, (uint32_t)rawlen);
		put_be32(lenb + 4, (uint32_t)zl);
		r = xconn_send(&c, XT_INDEX, lenb, 8, z, zl);
		free(raw);
		free(z);
		if (xconn_recv(&c, &type, &p, &n) == 0 && type == XT_REQ) {
			uint64_t first = get_be64(p);
			uint32_t count = get_be32(p + 8);
			uint8_t *data = calloc(count, 4096);
			memset(data, 'X', 4096); /* not what the hash says */
			put_be64(hdr, first);
			put_be32(hdr + 8, count);
			hdr[12] = GV_CODEC_NONE;
			put_be32(hdr + 13, count * 4096);
			r = xconn_send(&c, XT_DATA, hdr, 17, data, count * 4096);
			free(data);
		}
		gv_blockidx_free(bi);
	}
	sleep(1);
	xconn_close(&c);
	free(idx);
	return NULL;
}

static void test_tampered_block(void **state)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t sl = sizeof(sa);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	pthread_t t;
	gv_err err;
	char *dest = gv_strdupf("%s/evil.img", dir);
	char *partial = gv_strdupf("%s.partial", dest);
	json_t *sum;
	uint8_t buf[4096], zero[4096] = { 0 };

	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	getsockname(lfd, (struct sockaddr *)&sa, &sl);
	pthread_create(&t, NULL, evil_server, &lfd);
	assert_int_equal(do_fetch(ntohs(sa.sin_port), dest, NULL, GV_CODEC_NONE, key, &sum,
				  &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "does not match its SHA-256"));
	assert_int_equal(access(dest, F_OK), -1); /* nothing under the image's name */
	int fd = open(partial, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, 4096, 4096), 4096); /* block 1 was asked first */
	assert_memory_equal(buf, zero, 4096);                  /* and never written */
	close(fd);
	pthread_join(t, NULL);
	close(lfd);
	free(dest);
	free(partial);
	assert_int_equal(gv_rm_rf(dir), 0);
}

/* ---- connection limits: strangers cannot take every slot ---- */

static json_t *answer_ok(void *ud, json_t *req)
{
	(void)ud;
	(void)req;
	return json_pack("{s:b}", "ok", 1);
}

/* A raw TCP connection from source address @src to the server. */
static int raw_connect(const char *src, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET }, to = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	inet_pton(AF_INET, src, &a.sin_addr);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	to.sin_port = htons((uint16_t)port);
	assert_int_equal(connect(fd, (struct sockaddr *)&to, sizeof(to)), 0);
	return fd;
}

/* What the server says before it closes @fd (up to 4 KiB, NUL-ended). */
static void read_until_closed(int fd, char *out, size_t cap)
{
	struct timeval tv = { 60, 0 }; /* only if the server never closes */
	size_t n = 0;
	ssize_t r;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (n + 1 < cap && (r = recv(fd, out + n, cap - 1 - n, 0)) > 0)
		n += (size_t)r;
	out[n] = '\0';
	for (size_t i = 0; i < n; i++) /* the frame's header bytes */
		if (!out[i])
			out[i] = ' ';
}

static bool control_ok(int port)
{
	json_t *req = json_pack("{s:s}", "op", "ping"), *rep = NULL;
	gv_err e;
	int r = gv_xfer_control("127.0.0.1", port, key, req, 5000, &rep, &e);
	bool ok = r == 0 && json_is_true(json_object_get(rep, "ok"));

	json_decref(req);
	json_decref(rep);
	return ok;
}

static void test_connection_limits(void **state)
{
	(void)state;
	gv_xfer_server *s = NULL;
	gv_err err;
	int held[80], nheld = 0;
	char said[4096];

	assert_int_equal(gv_xfer_server_start("127.0.0.1:0", key, resolve, NULL, &s, &err), 0);
	gv_xfer_server_set_control(s, answer_ok);
	int port = gv_xfer_server_port(s);

	/* one address: 16 connections that never authenticate; the 17th is
	 * told why and closed, while another address is served */
	for (int i = 0; i < 16; i++)
		held[nheld++] = raw_connect("127.0.0.2", port);
	int extra = raw_connect("127.0.0.2", port);
	read_until_closed(extra, said, sizeof(said));
	close(extra);
	assert_non_null(strstr(said, "too many connections from your address"));
	assert_true(control_ok(port));
	/* in all: 64 waiting (4 addresses x 16) fill the server's room for
	 * strangers; a 65th from yet another address is told so */
	for (int a = 3; a <= 5; a++) {
		char src[32];
		snprintf(src, sizeof(src), "127.0.0.%d", a);
		for (int i = 0; i < 16; i++)
			held[nheld++] = raw_connect(src, port);
	}
	extra = raw_connect("127.0.0.6", port);
	read_until_closed(extra, said, sizeof(said));
	close(extra);
	assert_non_null(strstr(said, "too many connections waiting to authenticate"));
	for (int i = 0; i < nheld; i++)
		close(held[i]);
	/* the slots come back once they are closed */
	bool served = false;
	for (int i = 0; i < 200 && !served; i++)
		if (!(served = control_ok(port)))
			usleep(50000);
	assert_true(served);

	/* a stranger that trickles its hello a byte at a time, each byte well
	 * within the per-read timeout, is still cut off: the handshake has a
	 * deadline in all */
	int slow = raw_connect("127.0.0.7", port);
	const uint8_t hdr[5] = { 0, 0, 0, 200, XT_HELLO }; /* a hello of 199 bytes */
	bool cut = false;
	assert_int_equal(send(slow, hdr, sizeof(hdr), MSG_NOSIGNAL), (ssize_t)sizeof(hdr));
	for (int i = 0; i < 120 && !cut; i++) { /* 60 s at most: 6x the deadline */
		char b = 'G', tmp[64];
		if (send(slow, &b, 1, MSG_NOSIGNAL) < 0)
			cut = true;
		else if (recv(slow, tmp, sizeof(tmp), MSG_DONTWAIT) == 0)
			cut = true;
		else
			usleep(500000);
	}
	close(slow);
	assert_true(cut);
	gv_xfer_server_stop(s);
}

int main(void)
{
	/* the shared-key protocol, whatever this machine's DATA/tls holds
	 * (TLS: test-tls.c) */
	setenv("GRIDVM_TLS_DIR", "/nonexistent/gridvm-tls", 1);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fetch_codecs_and_dedup),
		cmocka_unit_test(test_resume),
		cmocka_unit_test(test_iterative),
		cmocka_unit_test(test_base_delta),
		cmocka_unit_test(test_tampered_block),
		cmocka_unit_test(test_connection_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
