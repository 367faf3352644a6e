/* SPDX-License-Identifier: MIT */
/*
 * builtin-hosts.c - `gridvm hosts` and `gridvm host drain|undrain|label`:
 * the grid's hosts, through its controller.
 */
#include "cli.h"

#include <gridvm/base/util.h>
#include <stdlib.h>
#include <string.h>

int cmd_hosts(int argc, char **argv)
{
	json_t *rep = NULL, *h;
	size_t i;

	if (cli_wants_help(argc, argv)) {
		puts("Usage: gridvm hosts [--json]\n"
		     "The grid's hosts: state, free and total resources, load, jobs, labels.");
		return 0;
	}
	if (cli_grid_call(json_pack("{s:s}", "op", "hosts"), &rep) < 0)
		return 1;
	if (argc > 1 && !strcmp(argv[1], "--json")) {
		cli_print_json(json_object_get(rep, "hosts"));
		json_decref(rep);
		return 0;
	}
	printf("%-12s %-8s %-9s %-19s %-5s %-4s %s\n", "NAME", "STATE", "CPUS", "MEMORY", "LOAD",
	       "JOBS", "LABELS");
	json_array_foreach(json_object_get(rep, "hosts"), i, h) {
		json_t *res = json_object_get(h, "resources"), *fr = json_object_get(h, "free");
		char cpus[32], mem[64], a[32], b[32], *labels;
		snprintf(cpus, sizeof(cpus), "%lld/%lld",
			 (long long)json_integer_value(json_object_get(fr, "cpus")),
			 (long long)json_integer_value(json_object_get(res, "cpus")));
		snprintf(mem, sizeof(mem), "%s/%s",
			 gv_fmt_size((uint64_t)json_integer_value(json_object_get(fr, "memory")), a,
				     sizeof(a)),
			 gv_fmt_size((uint64_t)json_integer_value(json_object_get(res, "memory")), b,
				     sizeof(b)));
		labels = json_dumps(json_object_get(h, "labels"), JSON_COMPACT | JSON_SORT_KEYS);
		printf("%-12s %-8s %-9s %-19s %-5.2f %-4lld %s\n",
		       json_string_value(json_object_get(h, "name")),
		       json_string_value(json_object_get(h, "state")), cpus, mem,
		       json_number_value(json_object_get(h, "load")),
		       (long long)json_integer_value(json_object_get(fr, "jobs")),
		       labels && strcmp(labels, "{}") ? labels : "");
		free(labels);
	}
	json_decref(rep);
	return 0;
}

static int host_op(int argc, char **argv, const char *op, const char *help)
{
	json_t *rep = NULL;

	if (cli_wants_help(argc, argv))
		return puts(help), 0;
	if (argc != 2)
		return cli_error("usage: gridvm host %s HOST", op + 5), 2;
	if (cli_grid_call(json_pack("{s:s, s:s}", "op", op, "host", argv[1]), &rep) < 0)
		return 1;
	json_decref(rep);
	return 0;
}

int cli_host_drain(int argc, char **argv)
{
	return host_op(argc, argv, "host-drain",
		       "Usage: gridvm host drain HOST\n"
		       "Take no new jobs on HOST and move its running jobs away live (none\n"
		       "restarts); 'gridvm jobs' shows them move. Undo with 'host undrain'.");
}

int cli_host_undrain(int argc, char **argv)
{
	return host_op(argc, argv, "host-undrain",
		       "Usage: gridvm host undrain HOST\nHOST takes jobs again.");
}

int cli_host_label(int argc, char **argv)
{
	json_t *rep = NULL, *req;
	char *kv, *eq;
	size_t n;

	if (cli_wants_help(argc, argv)) {
		puts("Usage: gridvm host label HOST KEY=VALUE | KEY | KEY-\n"
		     "Set an attribute of HOST that jobs' --requires and --rank see (KEY\n"
		     "alone: true; it is also listed in `labels`, so '\"KEY\" in labels'\n"
		     "matches). KEY- removes it.");
		return 0;
	}
	if (argc != 3)
		return cli_error("usage: gridvm host label HOST KEY=VALUE"), 2;
	kv = strdup(argv[2]);
	eq = strchr(kv, '=');
	n = strlen(kv);
	if (eq)
		*eq = '\0';
	else if (n > 1 && kv[n - 1] == '-')
		kv[n - 1] = '\0';
	req = json_pack("{s:s, s:s, s:s}", "op", "host-label", "host", argv[1], "key", kv);
	if (eq)
		json_object_set_new(req, "value", json_string(eq + 1));
	else if (!(n > 1 && argv[2][n - 1] == '-'))
		json_object_set_new(req, "value", json_true());
	free(kv);
	if (cli_grid_call(req, &rep) < 0)
		return 1;
	json_decref(rep);
	return 0;
}

int cmd_status(int argc, char **argv)
{
	json_t *rep = NULL, *v, *moves, *model;
	const char *k;

	if (cli_wants_help(argc, argv)) {
		puts("Usage: gridvm status [--json]\n"
		     "The grid at a glance: how it schedules, hosts up, jobs by state, and the\n"
		     "move cost model as calibrated from the moves the agents measured.");
		return 0;
	}
	if (argc > 2 || (argc == 2 && strcmp(argv[1], "--json")))
		return cli_error("usage: gridvm status [--json]"), 2;
	if (cli_grid_call(json_pack("{s:s}", "op", "grid-status"), &rep) < 0)
		return 1;
	json_object_del(rep, "ok");
	if (argc == 2) {
		cli_print_json(rep);
		json_decref(rep);
		return 0;
	}
	printf("policy %s, mode %s\nhosts: %lld up of %lld\njobs:",
	       json_string_value(json_object_get(rep, "policy")),
	       json_string_value(json_object_get(rep, "mode")),
	       (long long)json_integer_value(json_object_get(json_object_get(rep, "hosts"), "up")),
	       (long long)json_integer_value(json_object_get(json_object_get(rep, "hosts"), "total")));
	json_object_foreach(json_object_get(rep, "jobs"), k, v)
		printf(" %lld %s", (long long)json_integer_value(v), k);
	moves = json_object_get(rep, "moves");
	model = json_object_get(moves, "model");
	printf("\nmove cost model (from %lld measured moves): setup %.1f s, %.0f%% of the link "
	       "rate, %.2f bytes sent per byte of memory, downtime %.0f ms\n",
	       (long long)json_integer_value(json_object_get(moves, "moves_measured")),
	       json_number_value(json_object_get(model, "setup_s")),
	       json_number_value(json_object_get(model, "rate_factor")) * 100,
	       json_number_value(json_object_get(model, "mem_ratio")),
	       json_number_value(json_object_get(model, "switchover_s")) * 1000);
	json_decref(rep);
	return 0;
}
