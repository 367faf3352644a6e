/* SPDX-License-Identifier: MIT */
/* gridvm - the command-line interface; every verb talks to gridvmd. */
#include "cli.h"

#include <signal.h>

static const struct cli_cmd commands[] = {
	{ "run", cmd_run, "run a command in a fresh VM and return its exit code" },
	{ "vm", cmd_vm, "create and manage VMs" },
	{ "image", cmd_image, "build, import, index, fetch and list images" },
	{ "checkpoint", cmd_checkpoint, "checkpoint VMs and restore them" },
	{ "migrate", cmd_migrate, "move a VM to another host, live or cold" },
	{ "host", cmd_host, "facts about this host (accelerator, QEMU, cgroups)" },
	{ NULL, NULL, NULL } };

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	return cli_dispatch("gridvm", commands, argc, argv);
}
