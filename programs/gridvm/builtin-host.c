/* SPDX-License-Identifier: MIT */
/* builtin-host.c - `gridvm host info`: accelerator choice and host facts. */
#include "cli.h"

#include <string.h>

static int host_info(int argc, char **argv)
{
	json_t *j = NULL;
	const char *k;
	json_t *v;
	gv_client *cl;

	if (cli_wants_help(argc, argv)) {
		puts("Usage: gridvm host info [--json]\n"
		     "Show the accelerator gridvm uses and why, QEMU, cgroups, the guest.");
		return 0;
	}
	cl = cli_connect();
	if (cli_call(cl, "GET", "/v1/host", NULL, &j) < 0)
		return 1;
	if (argc > 1 && !strcmp(argv[1], "--json")) {
		cli_print_json(j);
	} else {
		json_object_foreach(j, k, v) {
			char *s = json_is_string(v) ? strdup(json_string_value(v))
						    : json_dumps(v, JSON_ENCODE_ANY);
			printf("%-22s %s\n", k, s);
			free(s);
		}
	}
	json_decref(j);
	gv_client_free(cl);
	return 0;
}

static const struct cli_cmd host_cmds[] = {
	{ "info", host_info, "accelerator, QEMU version, cgroups, guest kernel" },
	{ NULL, NULL, NULL } };

int cmd_host(int argc, char **argv)
{
	return cli_dispatch("gridvm host", host_cmds, argc, argv);
}
