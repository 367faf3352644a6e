/* SPDX-License-Identifier: MIT */
/* gridvm - the command-line interface: the host's verbs talk to gridvmd,
 * the grid's (submit, jobs, job, hosts) to the controller. */
#include "cli.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

static const struct cli_cmd commands[] = {
	{ "run", cmd_run, "run a command in a fresh VM and return its exit code" },
	{ "vm", cmd_vm, "create and manage VMs" },
	{ "image", cmd_image, "build, import, index, fetch and list images" },
	{ "checkpoint", cmd_checkpoint, "checkpoint VMs and restore them" },
	{ "migrate", cmd_migrate, "move a VM to another host, live or cold" },
	{ "template", cmd_template, "pre-booted guests VMs start from: build, list, delete" },
	{ "host", cmd_host, "facts about this host; drain, undrain, label grid hosts" },
	{ "ca", cmd_ca, "the grid's certificate authority: init, issue, revoke, status" },
	{ "submit", cmd_submit, "grid: submit a job; prints its id" },
	{ "jobs", cmd_jobs, "grid: the jobs, their state, host and why they wait" },
	{ "job", cmd_job, "grid: show, logs, wait, cancel, events, output of a job" },
	{ "hosts", cmd_hosts, "grid: the hosts, their state, free resources, load" },
	{ "status", cmd_status, "grid: policy, hosts up, jobs by state, the move cost model" },
	{ NULL, NULL, NULL } };

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	/* global options, before the command: where the grid is */
	while (argc > 1 && !strncmp(argv[1], "--", 2) && strcmp(argv[1], "--help")) {
		const char *opt = argv[1], *val = NULL, *eq = strchr(opt, '=');
		const char *env = NULL;
		int used = 1;
		size_t len = eq ? (size_t)(eq - opt) : strlen(opt);
		if (len == 12 && !strncmp(opt, "--controller", len))
			env = "GRIDVM_CONTROLLER";
		else if (len == 10 && !strncmp(opt, "--grid-key", len))
			env = "GRIDVM_GRID_KEY";
		else
			break;
		if (eq) {
			val = eq + 1;
		} else if (argc > 2) {
			val = argv[2];
			used = 2;
		} else {
			return cli_error("%s needs a value", opt), 2;
		}
		setenv(env, val, 1);
		argc -= used;
		argv += used;
	}
	return cli_dispatch("gridvm", commands, argc, argv);
}
