/* SPDX-License-Identifier: MIT */
/* fuzz-blockidx.c - libFuzzer harness for the block index file parser.
 * Each input is parsed as is and again with its trailer recomputed, so
 * the checks behind the checksum are reached too. Whatever parses must
 * serialize back to the same bytes. */
#include <gridvm/blocks/blockidx.h>

#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check(const uint8_t *data, size_t size)
{
	gv_blockidx *x;
	uint8_t *buf;
	size_t len;
	uint64_t zero = 0;

	if (gv_blockidx_parse(data, size, &x) < 0)
		return;
	for (uint64_t i = 0; i < x->nblocks; i++)
		zero += gv_blockidx_is_zero(x, i);
	if (zero != x->zero_blocks)
		abort();
	if (gv_blockidx_serialize(x, &buf, &len) < 0 || len != size ||
	    memcmp(buf, data, size) != 0)
		abort();
	free(buf);
	gv_blockidx_free(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy;

	check(data, size);
	if (size < GV_HASH_LEN || !(copy = malloc(size)))
		return 0;
	memcpy(copy, data, size);
	EVP_Digest(copy, size - GV_HASH_LEN, copy + size - GV_HASH_LEN, NULL,
		   EVP_sha256(), NULL);
	check(copy, size);
	free(copy);
	return 0;
}
