/* SPDX-License-Identifier: MIT */
/*
 * fuzz-xfer.c - libFuzzer harness for the destination side of the block
 * transfer (lib/xfer_dst.c): a source that authenticates properly (a
 * hostile peer may hold the grid key) and then sends frames built from
 * the fuzz input. Byte 0 selects what is fuzzed: bit 0, the block index
 * frame or the data frames after a valid index of a small image; bit 1,
 * a fetch in place with a base index (so index deltas are parsed). The
 * real gv_fetch parses them; any crash, hang, leak or write of unverified
 * data is a bug (the harness checks that no file appears under the final
 * name unless it matches the index; in place the file exists anyway).
 */
#include "../lib/xfer/xfer_internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const uint8_t key[GV_XFER_KEY_LEN] = { 7, 7, 7 };
static int lfd = -1, port;
static const uint8_t *in;
static size_t in_len;

static void setup(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t sl = sizeof(sa);

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 4) < 0)
		abort();
	getsockname(lfd, (struct sockaddr *)&sa, &sl);
	port = ntohs(sa.sin_port);
}

/* A valid index of 8 blocks of 4 KiB: block i is filled with byte i. */
static uint8_t hashes[8 * 32];
static gv_blockidx valid = { .block_shift = 12, .image_size = 8 * 4096, .nblocks = 8,
			     .hashes = hashes };

static void make_valid(void)
{
	uint8_t block[4096];

	for (int i = 0; i < 8; i++) {
		memset(block, i + 1, sizeof(block));
		EVP_Digest(block, sizeof(block), hashes + 32 * i, NULL, EVP_sha256(), NULL);
	}
}

static void send_valid_index(struct xconn *c)
{
	gv_blockidx bi = valid;
	uint8_t *raw = NULL, *z = NULL, len[8];
	size_t rawlen, zlen;

	if (gv_blockidx_serialize(&bi, &raw, &rawlen) == 0 &&
	    xcodec_compress(GV_CODEC_ZSTD, 1, raw, rawlen, &z, &zlen) == 0) {
		put_be32(len, (uint32_t)rawlen);
		put_be32(len + 4, (uint32_t)zlen);
		(void)xconn_send(c, XT_INDEX, len, 8, z, zlen);
	}
	free(raw);
	free(z);
}

/* Frames from the input: u8 type, u16 length, payload. */
static void *server(void *arg)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	struct xconn c;
	gv_err err;
	uint8_t type, *p;
	size_t n, off = 1;

	xconn_init(&c, fd, 1000);
	if (xauth_server(&c, key, &err) == 0 && xconn_recv(&c, &type, &p, &n) == 0) {
		if (in[0] & 1)
			send_valid_index(&c);
		while (off + 3 <= in_len) {
			size_t len = (size_t)in[off + 1] << 8 | in[off + 2];
			if (len > in_len - off - 3)
				len = in_len - off - 3;
			if (xconn_send(&c, in[off], in + off + 3, len, NULL, 0) < 0)
				break;
			off += 3 + len;
		}
	}
	xconn_close(&c);
	return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char dest[] = "/tmp/gv-fuzz-xfer-XXXXXX", *partial, *marker;
	gv_err err;
	gv_fetch_opts o = { .host = "127.0.0.1", .image = "x", .key = key,
			    .timeout_ms = 300, .window = 4, .run_blocks = 2 };
	json_t *sum = NULL;
	pthread_t t;
	int fd;

	if (size < 1 || size > 65536)
		return 0;
	if (lfd < 0) {
		/* the shared-key framing, whatever this machine's DATA/tls holds */
		setenv("GRIDVM_TLS_DIR", "/nonexistent/gridvm-tls", 1);
		setup();
		make_valid();
	}
	if (data[0] & 2) {
		o.in_place = true;
		o.base_index = &valid;
	}
	in = data;
	in_len = size;
	fd = mkstemp(dest);
	close(fd);
	unlink(dest);
	partial = gv_strdupf("%s.partial", dest);
	marker = gv_strdupf("%s.partial.src", dest);
	o.port = port;
	o.dest = dest;
	pthread_create(&t, NULL, server, NULL);
	if (gv_fetch(&o, &sum, &err) == 0) {
		/* only an image that matches its index may appear */
		if (access(dest, F_OK) != 0)
			abort();
		json_decref(sum);
	} else if (!o.in_place && access(dest, F_OK) == 0) {
		abort();
	}
	pthread_join(t, NULL);
	unlink(dest);
	unlink(partial);
	unlink(marker);
	free(partial);
	free(marker);
	return 0;
}
