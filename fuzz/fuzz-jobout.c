/* SPDX-License-Identifier: MIT */
/* fuzz-jobout.c - libFuzzer harness for the job channel's frame parser,
 * fed in two pieces to exercise frames split across reads. */
#include <gridvm/vmm/jobout.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void on_frame(void *ud, char type, const uint8_t *d, uint32_t len)
{
	size_t *total = ud;
	volatile uint8_t sink = 0;

	for (uint32_t i = 0; i < len; i++) /* touch every byte: ASan checks */
		sink ^= d[i];
	(void)sink;
	*total += len + (size_t)(unsigned char)type;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t total = 0, cut = size ? data[0] % (size + 1) : 0;
	uint8_t *buf = malloc(size + 1);
	size_t used;

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	used = gv_jobout_parse(buf, cut, on_frame, &total);
	if (used > cut)
		abort();
	used += gv_jobout_parse(buf + used, size - used, on_frame, &total);
	if (used > size)
		abort();
	free(buf);
	return 0;
}
