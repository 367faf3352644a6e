/* SPDX-License-Identifier: MIT */
/*
 * hostidx_bench.c - lookup rate and memory of the host-wide block index.
 * Registers synthetic images (random block hashes, as SHA-256 outputs are)
 * totalling N blocks, then looks up present and absent hashes in random
 * order, and reports lookups per second, file size per block and the
 * process's resident memory.
 *
 *   gridvm-hostidx-bench [BLOCKS (default 4000000)] [DIR (default /var/tmp)]
 *                        [LOOKUPS (default 4000000)]
 */
#include <gridvm/blocks/hostidx.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static uint64_t rng = 88172645463325252ULL;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kib(void)
{
	char *s = NULL, *p;
	long v = -1;

	if (gv_read_file("/proc/self/status", &s, NULL) == 0 && (p = strstr(s, "VmRSS:")))
		v = strtol(p + 6, NULL, 10);
	free(s);
	return v;
}

static gv_blockidx *synth(uint64_t n)
{
	gv_blockidx *b = calloc(1, sizeof(*b));

	b->block_shift = 12;
	b->nblocks = n;
	b->image_size = n << 12;
	b->hashes = malloc(n * GV_HASH_LEN);
	for (uint64_t i = 0; i < n * GV_HASH_LEN / 8; i++) {
		uint64_t v = next();
		memcpy(b->hashes + i * 8, &v, 8);
	}
	return b;
}

static double lookups(gv_hostidx *h, gv_blockidx *b, uint64_t count, bool present,
		      uint64_t *hits)
{
	uint8_t miss[GV_HASH_LEN];
	double t0 = now();

	*hits = 0;
	for (uint64_t i = 0; i < count; i++) {
		gv_hostidx_loc loc;
		const uint8_t *hash = b->hashes + (next() % b->nblocks) * GV_HASH_LEN;
		if (!present) {
			for (int k = 0; k < 4; k++) {
				uint64_t v = next();
				memcpy(miss + 8 * k, &v, 8);
			}
			hash = miss;
		}
		*hits += gv_hostidx_lookup(h, hash, &loc) == 0;
	}
	return (double)count / (now() - t0);
}

int main(int argc, char **argv)
{
	uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 4000000, hits;
	uint64_t nl = argc > 3 ? strtoull(argv[3], NULL, 10) : 4000000;
	char *dir = gv_strdupf("%s/gv-hostidx-bench.%d", argc > 2 ? argv[2] : "/var/tmp",
			       (int)getpid());
	gv_hostidx *h;
	gv_hostidx_stats st;
	gv_blockidx *b[4];
	double t0, add_s, hit_rate, miss_rate;
	long rss_before;

	if (gv_hostidx_open(dir, &h) < 0)
		return 1;
	for (int i = 0; i < 4; i++)
		b[i] = synth(n / 4);
	rss_before = rss_kib();
	t0 = now();
	for (int i = 0; i < 4; i++) {
		char name[16];
		snprintf(name, sizeof(name), "img%d", i);
		if (gv_hostidx_add(h, name, "/nonexistent", "/nonexistent", b[i], NULL) < 0)
			return 1;
	}
	add_s = now() - t0;
	gv_hostidx_stats_get(h, &st);
	hit_rate = lookups(h, b[0], nl, true, &hits);
	if (hits != nl)
		return fprintf(stderr, "missed present blocks\n"), 1;
	miss_rate = lookups(h, b[0], nl, false, &hits);
	printf("| blocks indexed | %llu (%.1f GiB of 4 KiB blocks) |\n", (unsigned long long)st.used,
	       (double)st.used * 4096 / (1 << 30));
	printf("| table file | %.1f MiB, %.1f bytes per block (16-byte slots, load %.2f) |\n",
	       (double)st.file_bytes / (1 << 20), (double)st.file_bytes / (double)st.used,
	       (double)st.used / (double)st.slots);
	printf("| insert rate | %.2f M blocks/s |\n", (double)st.used / add_s / 1e6);
	printf("| lookups, present | %.2f M/s |\n", hit_rate / 1e6);
	printf("| lookups, absent | %.2f M/s |\n", miss_rate / 1e6);
	printf("| process RSS growth | %.1f MiB (the table is a shared file mapping: page cache the kernel may reclaim) |\n",
	       (double)(rss_kib() - rss_before) / 1024);
	gv_hostidx_close(h);
	gv_rm_rf(dir);
	return 0;
}
