/* SPDX-License-Identifier: MIT */
/* builtin-host.c - `gridvm host info`: accelerator choice and host facts. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <gridvm/base/util.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static int host_keygen(int argc, char **argv)
{
	uint8_t key[32];
	char hex[65], *path;
	int fd;

	if (cli_wants_help(argc, argv)) {
		puts("Usage: gridvm host keygen [FILE]\n"
		     "Make a new grid key (default DATA/grid.key). Copy the same file to\n"
		     "every host of the grid: agents serve images only to peers holding it.");
		return 0;
	}
	path = argc > 1 ? strdup(argv[1]) : gv_strdupf("%s/grid.key", gv_data_dir());
	if (RAND_bytes(key, sizeof(key)) != 1)
		return cli_error("no randomness"), 1;
	gv_hash_hex(key, hex);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		cli_error("cannot create %s: %s%s", path, strerror(errno),
			  errno == EEXIST ? " (remove it first to replace the key)" : "");
		free(path);
		return 1;
	}
	dprintf(fd, "%s\n", hex);
	close(fd);
	printf("wrote a new grid key to %s\n", path);
	free(path);
	return 0;
}

static const struct cli_cmd host_cmds[] = {
	{ "keygen", host_keygen, "make a new grid key for authenticating hosts" },
	{ "info", host_info, "accelerator, QEMU version, cgroups, guest kernel" },
	{ "drain", cli_host_drain, "grid: move a host's jobs away, take no new ones" },
	{ "undrain", cli_host_undrain, "grid: a drained host takes jobs again" },
	{ "label", cli_host_label, "grid: set an attribute jobs' expressions see" },
	{ NULL, NULL, NULL } };

int cmd_host(int argc, char **argv)
{
	return cli_dispatch("gridvm host", host_cmds, argc, argv);
}
