/* SPDX-License-Identifier: MIT */
/*
 * gridvm-sim run: read an SWF trace, simulate the default heterogeneous
 * grid of --hosts hosts under the chosen policy, print the metrics. The
 * decisions are the scheduling library's; this file only reads, times
 * and prints.
 */
#include "sim.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gridvm/sched/sim.h>
#include <gridvm/sched/workload.h>

static void usage(FILE *f)
{
	fprintf(f,
		"usage: gridvm-sim run --swf FILE --hosts N [--policy fcfs|easy|pack|spread|load|locality]\n"
		"                      [--mode online|batch] [--replan] [--fail-rate R]\n"
		"                      [--checkpoint-every D] [--seed S] [--json] [more below]\n\n"
		"Simulates a grid of N heterogeneous hosts (16-64 cpus, 4 sites with links of\n"
		"1 Gbit/s to 2 Mbit/s, an image mix with known overlap) running the jobs of an\n"
		"SWF trace, with the scheduling library gridvmctld runs; prints the metrics.\n\n"
		"  --swf FILE            the trace (Standard Workload Format; - for stdin)\n"
		"  --hosts N             hosts in the grid\n"
		"  --policy P            fcfs (strict order, pack), easy (EASY backfill, pack),\n"
		"                        or pack, spread, load, locality (with --queue's discipline)\n"
		"  --queue Q             backfill (default), strict, greedy\n"
		"  --mode M              online (default) or batch\n"
		"  --heuristic H         batch: min-min (default), max-min, sufferage\n"
		"  --batch-size N        batch: plan when N jobs wait (default 64)\n"
		"  --batch-wait D        batch: or when the oldest waited D (default 10s)\n"
		"  --locality-wait D     a job may wait up to D for a host holding its image\n"
		"                        (delay scheduling; default 0: off)\n"
		"  --replan              move running jobs when the cost model says it pays\n"
		"  --replan-interval D   how often (default 10s)\n"
		"  --fail-rate R         host failures per host per day (default 0)\n"
		"  --repair D            mean time a failed host stays down (default 1h)\n"
		"  --checkpoint-every D  checkpoint running jobs every D (default: never)\n"
		"  --cycle D             at most one scheduling cycle per D (default 1s)\n"
		"  --seed S              the grid, failures and background load (default 1)\n"
		"  --check               check the bookkeeping at every event (slow)\n"
		"  --json                one JSON object instead of the table\n");
}

struct run_opts {
	const char *swf;
	uint64_t hosts, seed;
	bool json;
	gv_sim_opts so;
};

static double now_s(void *ctx)
{
	struct timespec ts;
	(void)ctx;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int parse(int argc, char **argv, struct run_opts *o)
{
	enum { O_SWF = 256, O_HOSTS, O_POLICY, O_QUEUE, O_MODE, O_HEUR, O_BSIZE, O_BWAIT,
	       O_REPLAN, O_RINT, O_FAIL, O_REPAIR, O_CKPT, O_CYCLE, O_SEED, O_CHECK, O_JSON,
	       O_LWAIT };
	static const struct option opts[] = {
		{"swf", required_argument, NULL, O_SWF},
		{"hosts", required_argument, NULL, O_HOSTS},
		{"policy", required_argument, NULL, O_POLICY},
		{"queue", required_argument, NULL, O_QUEUE},
		{"mode", required_argument, NULL, O_MODE},
		{"heuristic", required_argument, NULL, O_HEUR},
		{"batch-size", required_argument, NULL, O_BSIZE},
		{"batch-wait", required_argument, NULL, O_BWAIT},
		{"replan", no_argument, NULL, O_REPLAN},
		{"locality-wait", required_argument, NULL, O_LWAIT},
		{"replan-interval", required_argument, NULL, O_RINT},
		{"fail-rate", required_argument, NULL, O_FAIL},
		{"repair", required_argument, NULL, O_REPAIR},
		{"checkpoint-every", required_argument, NULL, O_CKPT},
		{"cycle", required_argument, NULL, O_CYCLE},
		{"seed", required_argument, NULL, O_SEED},
		{"check", no_argument, NULL, O_CHECK},
		{"json", no_argument, NULL, O_JSON},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}};
	const char *policy = "easy", *queue = NULL;
	gv_sched_params *p = &o->so.params;
	gv_err e;
	uint64_t v;
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case O_SWF: o->swf = optarg; break;
		case O_HOSTS:
			if (sim_uint("--hosts", optarg, 1, 1000000, &o->hosts) < 0)
				return -1;
			break;
		case O_POLICY: policy = optarg; break;
		case O_QUEUE: queue = optarg; break;
		case O_MODE:
			if (gv_sched_mode_parse(optarg, &p->mode, &e) < 0)
				return sim_error("--mode: %s", e.msg), -1;
			break;
		case O_HEUR:
			if (gv_sched_heuristic_parse(optarg, &p->heuristic, &e) < 0)
				return sim_error("--heuristic: %s", e.msg), -1;
			break;
		case O_BSIZE:
			if (sim_uint("--batch-size", optarg, 1, 1000000, &v) < 0)
				return -1;
			p->batch_max = (unsigned)v;
			break;
		case O_BWAIT:
			if (sim_seconds("--batch-wait", optarg, &o->so.batch_wait_s) < 0)
				return -1;
			break;
		case O_REPLAN: o->so.replan = true; break;
		case O_RINT:
			if (sim_seconds("--replan-interval", optarg, &o->so.replan_s) < 0)
				return -1;
			if (o->so.replan_s <= 0)
				return sim_error("--replan-interval must be more than 0"), -1;
			break;
		case O_FAIL:
			if (sim_real("--fail-rate", optarg, 0, 1000, &o->so.fail_rate) < 0)
				return -1;
			break;
		case O_REPAIR:
			if (sim_seconds("--repair", optarg, &o->so.repair_s) < 0)
				return -1;
			break;
		case O_CKPT:
			if (sim_seconds("--checkpoint-every", optarg, &o->so.checkpoint_every) < 0)
				return -1;
			if (o->so.checkpoint_every > 0 && o->so.checkpoint_every < 1)
				return sim_error("--checkpoint-every: at least 1s"), -1;
			break;
		case O_CYCLE:
			if (sim_seconds("--cycle", optarg, &o->so.cycle_s) < 0)
				return -1;
			break;
		case O_LWAIT:
			if (sim_seconds("--locality-wait", optarg, &o->so.params.locality_wait) < 0)
				return -1;
			break;
		case O_SEED:
			if (sim_uint("--seed", optarg, 0, UINT64_MAX, &o->seed) < 0)
				return -1;
			break;
		case O_CHECK: o->so.check = true; break;
		case O_JSON: o->json = true; break;
		case 'h': usage(stdout); exit(0);
		default:
			return sim_error("run: unknown option or missing value: '%s' (--help)",
					 argv[optind - 1]), -1;
		}
	}
	if (optind < argc)
		return sim_error("run: unexpected argument '%s'", argv[optind]), -1;
	if (!o->swf)
		return sim_error("run: --swf FILE is required"), -1;
	if (!o->hosts)
		return sim_error("run: --hosts N is required"), -1;
	if (!strcmp(policy, "fcfs")) {
		p->queue = GV_SCHED_QUEUE_STRICT;
	} else if (!strcmp(policy, "easy")) {
		p->queue = GV_SCHED_QUEUE_BACKFILL;
		p->reservations = 1;
	} else if (gv_sched_policy_parse(policy, &p->policy, &e) < 0) {
		return sim_error("--policy: '%s': fcfs, easy, pack, spread, load or locality",
				 policy), -1;
	}
	if (queue && gv_sched_queue_parse(queue, &p->queue, &e) < 0)
		return sim_error("--queue: %s", e.msg), -1;
	o->so.seed = o->seed;
	return 0;
}

/* Read the trace into @s, jobs cut to the largest host. */
static int load_trace(const struct run_opts *o, gv_sim *s, const gv_sim_swf_opts *so,
		      uint64_t *skipped, uint64_t *cut)
{
	FILE *f = strcmp(o->swf, "-") ? fopen(o->swf, "r") : stdin;
	char *line = NULL;
	size_t cap = 0;
	uint64_t ln = 0;
	int r = 0;

	if (!f)
		return sim_error("%s: %s", o->swf, strerror(errno));
	while (getline(&line, &cap, f) >= 0) {
		gv_swf_job sj;
		gv_sim_job j;
		gv_err e;
		bool was_cut;
		ln++;
		int k = gv_swf_parse_line(line, &sj, &e);
		if (k < 0) {
			r = sim_error("%s:%llu: %s", o->swf, (unsigned long long)ln, e.msg);
			break;
		}
		if (k == 0)
			continue;
		if (!gv_sim_job_from_swf(&sj, so, &j, &was_cut)) {
			(*skipped)++;
			continue;
		}
		*cut += was_cut;
		if (gv_sim_add_job(s, &j, &e) < 0) {
			r = sim_error("%s:%llu: %s", o->swf, (unsigned long long)ln, e.msg);
			break;
		}
	}
	if (r == 0 && ferror(f))
		r = sim_error("%s: read error", o->swf);
	free(line);
	if (f != stdin)
		fclose(f);
	return r;
}

static void print_table(const gv_sim_metrics *m, uint64_t skipped, uint64_t cut,
			double wall)
{
	printf("jobs                  %llu (%llu completed, %llu never runnable; %llu records "
	       "skipped, %llu cut to the largest host)\n",
	       (unsigned long long)m->jobs, (unsigned long long)m->jobs_completed,
	       (unsigned long long)m->jobs_never, (unsigned long long)skipped,
	       (unsigned long long)cut);
	printf("decisions             %.0f placements/s; cycle p50 %.3f ms, p99 %.3f ms, max "
	       "%.3f ms (%llu cycles)\n",
	       m->decisions_per_second, m->decision_ms_p50, m->decision_ms_p99,
	       m->decision_ms_max, (unsigned long long)m->cycles);
	printf("utilization           %.1f %%\n", 100 * m->utilization);
	printf("makespan              %.0f s (%.1f h)\n", m->makespan_s, m->makespan_s / 3600);
	printf("wait                  mean %.0f s, p95 %.0f s\n", m->wait_s_mean, m->wait_s_p95);
	printf("bounded slowdown      mean %.2f\n", m->bounded_slowdown_mean);
	printf("moves                 %llu (%.1f GB sent)\n", (unsigned long long)m->migrations,
	       m->bytes_migrated / 1e9);
	printf("staged                %.1f GB\n", m->bytes_staged / 1e9);
	printf("host-hours busy       %.0f\n", m->host_hours);
	printf("failures              %llu (%llu jobs restarted, %.0f s of work lost; %llu "
	       "checkpoints, %.1f GB)\n",
	       (unsigned long long)m->failures, (unsigned long long)m->restarts, m->work_lost_s,
	       (unsigned long long)m->checkpoints, m->bytes_checkpointed / 1e9);
	printf("simulation took       %.2f s\n", wall);
}

int cmd_run(int argc, char **argv)
{
	struct run_opts o = {.seed = 1};
	gv_sim_metrics m;
	gv_err e;
	uint64_t skipped = 0, cut = 0;
	int r = 2;

	gv_sim_opts_default(&o.so);
	if (parse(argc, argv, &o) < 0)
		return 2;
	o.so.timer = now_s;
	gv_sim_host *hosts = calloc(o.hosts, sizeof *hosts);
	gv_sim *s = gv_sim_new(&o.so);
	if (!hosts || !s) {
		sim_error("out of memory");
		goto out;
	}
	gv_sim_grid_make(hosts, (unsigned)o.hosts, o.seed);
	gv_sim_swf_opts so = {0};
	for (uint64_t i = 0; i < o.hosts; i++) {
		if (hosts[i].cpus > so.max_cpus)
			so.max_cpus = hosts[i].cpus;
		if (hosts[i].memory > so.max_memory)
			so.max_memory = hosts[i].memory;
		if (gv_sim_add_host(s, &hosts[i], &e) < 0) {
			sim_error("%s", e.msg);
			goto out;
		}
	}
	if (load_trace(&o, s, &so, &skipped, &cut) != 0)
		goto out;
	double t0 = now_s(NULL);
	if (gv_sim_run(s, &e) < 0) {
		sim_error("%s", e.msg);
		r = 1;
		goto out;
	}
	double wall = now_s(NULL) - t0;
	gv_sim_metrics_get(s, &m);
	if (o.json) {
		json_t *j = gv_sim_metrics_json(&m);
		if (!j) {
			sim_error("out of memory");
			goto out;
		}
		json_object_set_new(j, "jobs_skipped", json_integer((json_int_t)skipped));
		json_object_set_new(j, "jobs_cut", json_integer((json_int_t)cut));
		json_object_set_new(j, "hosts", json_integer((json_int_t)o.hosts));
		json_object_set_new(j, "sim_seconds", json_real(wall));
		json_dumpf(j, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(j);
	} else {
		print_table(&m, skipped, cut, wall);
	}
	r = fflush(stdout) == 0 ? 0 : 1;
out:
	gv_sim_free(s);
	free(hosts);
	return r;
}
