/* SPDX-License-Identifier: MIT */
/*
 * gridvm-sim - the grid simulator: synthetic traces in the Standard
 * Workload Format, and runs of the real scheduling library over a
 * simulated grid (docs/simulator.md).
 */
#include "sim.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gridvm/base/util.h>

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *help;
} verbs[] = {
	{"generate", cmd_generate, "write a synthetic trace in SWF to stdout"},
	{"run", cmd_run, "simulate a grid running a trace; print the metrics"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: gridvm-sim COMMAND [OPTIONS]\n\n"
		   "Simulates a grid running the same scheduling library as gridvmctld.\n\n");
	for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
		fprintf(f, "  %-10s %s\n", verbs[i].name, verbs[i].help);
	fprintf(f, "\n`gridvm-sim COMMAND --help` for its options; docs/simulator.md for the model.\n");
}

int sim_error(const char *fmt, ...)
{
	va_list ap;

	fputs("gridvm-sim: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 2;
}

int sim_uint(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;

	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (!*s || *end || errno || *s == '-' || v < min || v > max) {
		sim_error("%s: '%s' is not a whole number from %llu to %llu", opt, s,
			  (unsigned long long)min, (unsigned long long)max);
		return -1;
	}
	*out = v;
	return 0;
}

int sim_real(const char *opt, const char *s, double min, double max, double *out)
{
	char *end;

	errno = 0;
	double v = strtod(s, &end);
	if (!*s || *end || errno || !isfinite(v) || v < min || v > max) {
		sim_error("%s: '%s' is not a number from %g to %g", opt, s, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

int sim_seconds(const char *opt, const char *s, double *out)
{
	uint64_t ms;
	size_t n = strlen(s);

	if (n > 1 && s[n - 1] == 'd') { /* days, which gv_parse_duration_ms lacks */
		char buf[64];
		double d;
		snprintf(buf, sizeof buf, "%.*s", (int)(n - 1), s);
		if (sim_real(opt, buf, 0, 3650, &d) < 0)
			return -1;
		*out = d * 86400;
		return 0;
	}
	if (gv_parse_duration_ms(s, &ms) < 0) {
		sim_error("%s: '%s' is not a duration (600, 90s, 10m, 1h, 2d)", opt, s);
		return -1;
	}
	*out = (double)ms / 1000;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
		if (!strcmp(argv[1], verbs[i].name))
			return verbs[i].fn(argc - 1, argv + 1);
	sim_error("unknown command '%s' (generate, run; --help)", argv[1]);
	return 2;
}
