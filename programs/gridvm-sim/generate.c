/* SPDX-License-Identifier: MIT */
/* gridvm-sim generate: a synthetic trace in SWF on stdout. */
#include "sim.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <gridvm/sched/sim.h>
#include <gridvm/sched/workload.h>

static void usage(FILE *f)
{
	fprintf(f,
		"usage: gridvm-sim generate --jobs N [--seed S] [--rate J] [--burst P]\n"
		"                           [--run-median D] [--run-sigma X] [--users U] > trace.swf\n\n"
		"Writes a synthetic trace in the Standard Workload Format; the same seed\n"
		"gives the same trace. Distributions (docs/simulator.md): Poisson arrivals\n"
		"with a daily cycle, in bursts; 1-32 processors; lognormal run times;\n"
		"walltime estimates 1-4x the run time; the application number is the\n"
		"image (1-%u, the simulator's image mix, Zipf by user).\n\n"
		"  --jobs N          how many jobs (required)\n"
		"  --seed S          the seed (default 1)\n"
		"  --rate J          jobs per hour on average (default 500)\n"
		"  --burst P         chance an arrival is a burst of 2-20 jobs (default 0.3)\n"
		"  --run-median D    median run time (default 20m)\n"
		"  --run-sigma X     sigma of the log of run times (default 1.5)\n"
		"  --users U         users (default 200)\n",
		gv_sim_image_count());
}

int cmd_generate(int argc, char **argv)
{
	static const struct option opts[] = {
		{"jobs", required_argument, NULL, 'n'},	   {"seed", required_argument, NULL, 's'},
		{"rate", required_argument, NULL, 'r'},	   {"burst", required_argument, NULL, 'b'},
		{"run-median", required_argument, NULL, 'm'},
		{"run-sigma", required_argument, NULL, 'g'},
		{"users", required_argument, NULL, 'u'},   {"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}};
	gv_workload_opts o = {.seed = 1, .images = gv_sim_image_count()};
	uint64_t n = 0, v;
	bool have_jobs = false;
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (sim_uint("--jobs", optarg, 1, 100000000, &n) < 0)
				return 2;
			have_jobs = true;
			break;
		case 's':
			if (sim_uint("--seed", optarg, 0, UINT64_MAX, &o.seed) < 0)
				return 2;
			break;
		case 'r':
			if (sim_real("--rate", optarg, 0.001, 1e9, &o.rate) < 0)
				return 2;
			break;
		case 'b':
			if (sim_real("--burst", optarg, 0.0001, 1, &o.burst_p) < 0)
				return 2;
			break;
		case 'm':
			if (sim_seconds("--run-median", optarg, &o.run_median) < 0)
				return 2;
			break;
		case 'g':
			if (sim_real("--run-sigma", optarg, 0.01, 5, &o.run_sigma) < 0)
				return 2;
			break;
		case 'u':
			if (sim_uint("--users", optarg, 1, 1000000, &v) < 0)
				return 2;
			o.users = (unsigned)v;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return sim_error("generate: unknown option '%s' (--help)", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return sim_error("generate: unexpected argument '%s'", argv[optind]);
	if (!have_jobs)
		return sim_error("generate: --jobs N is required");
	o.jobs = n;
	gv_workload w;
	if (gv_workload_init(&w, &o) < 0)
		return sim_error("out of memory");
	printf("; Version: 2.2\n; Computer: gridvm-sim synthetic grid workload\n"
	       "; Note: gridvm-sim generate --jobs %llu --seed %llu --rate %g --burst %g "
	       "--run-median %g --run-sigma %g --users %u\n"
	       "; Note: field 14 (application number) is the image: ",
	       (unsigned long long)n, (unsigned long long)w.o.seed, w.o.rate, w.o.burst_p,
	       w.o.run_median, w.o.run_sigma, w.o.users);
	for (unsigned i = 0; i < gv_sim_image_count(); i++)
		printf("%s%u=%s", i ? ", " : "", i + 1, gv_sim_image_name(i));
	printf("\n; MaxJobs: %llu\n; MaxRecords: %llu\n; UnixStartTime: 0\n",
	       (unsigned long long)n, (unsigned long long)n);
	for (uint64_t i = 0; i < n; i++) {
		gv_swf_job j;
		char line[512];
		gv_workload_next(&w, &j);
		gv_swf_format(&j, line, sizeof line);
		fputs(line, stdout);
	}
	gv_workload_free(&w);
	if (fflush(stdout) != 0 || ferror(stdout))
		return sim_error("generate: cannot write the trace");
	return 0;
}
