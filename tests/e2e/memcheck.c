/* SPDX-License-Identifier: MIT */
/*
 * gridvm-memcheck: a job for the end-to-end tests that checks that a
 * copy of the guest's memory (a checkpoint, a saved state, a migration)
 * holds every write the guest made before the copy was taken.
 *
 * Round after round it fills two buffers with the same byte (the round's
 * number) and compares them. A copy that missed some writes has pages of
 * one buffer from another round than the other's: restored from it, the
 * job finds them different, prints "memory lost in round N" and exits 99.
 * Otherwise it prints how many rounds it has done, every SECONDS (default
 * 1), a number a line, as the counting jobs of the tests do; it runs until
 * it is stopped.
 *
 * Between two reports it makes no system call and so stays on the CPU:
 * a guest that switches tasks often hides lost writes (QEMU's TCG checks
 * the dirty state of a page again when its TLB is flushed).
 *
 * Usage: gridvm-memcheck [SECONDS]   (built static: it runs in any image)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BUF_SIZE (1 << 20)

static unsigned char buf_a[BUF_SIZE] __attribute__((aligned(4096)));
static unsigned char buf_b[BUF_SIZE] __attribute__((aligned(4096)));

static time_t now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

int main(int argc, char **argv)
{
	long every = argc > 1 ? strtol(argv[1], NULL, 10) : 1;
	unsigned long round = 0;
	time_t last = 0;

	if (argc > 2 || every < 1) {
		fprintf(stderr, "usage: gridvm-memcheck [SECONDS]\n");
		return 2;
	}
	for (;;) {
		memset(buf_a, (int)(round & 0xff), sizeof(buf_a));
		memset(buf_b, (int)(round & 0xff), sizeof(buf_b));
		if (memcmp(buf_a, buf_b, sizeof(buf_a))) {
			printf("memory lost in round %lu\n", round);
			return 99;
		}
		round++;
		if (now_s() >= last + every) {
			last = now_s();
			printf("%lu\n", round);
			fflush(stdout);
		}
	}
}
