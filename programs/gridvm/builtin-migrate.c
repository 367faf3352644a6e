/* SPDX-License-Identifier: MIT */
/* builtin-migrate.c - `gridvm migrate VM --to HOST`: move a VM, live or cold. */
#include "cli.h"

#include <getopt.h>
#include <gridvm/base/util.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Phase lines and the memory copy's progress on a terminal (@ud: bool). */
void cli_migrate_progress(void *ud, json_t *p)
{
	json_t *ram = json_object_get(p, "info");
	const char *phase = json_string_value(json_object_get(p, "phase"));
	char a[32], b[32];

	if (!*(bool *)ud || !phase)
		return;
	if (ram && json_object_get(ram, "transferred"))
		fprintf(stderr, "\r%-10s %10s sent, %10s remaining, %.1f MB/s   ", phase,
			gv_fmt_size((uint64_t)json_integer_value(json_object_get(ram, "transferred")), a, sizeof(a)),
			gv_fmt_size((uint64_t)json_integer_value(json_object_get(ram, "remaining")), b, sizeof(b)),
			json_number_value(json_object_get(ram, "mbps")) / 8);
	else
		fprintf(stderr, "\r%-10s%50s\n", phase, "");
}

static int migrate_status(int argc, char **argv)
{
	json_t *out = NULL, *m;
	size_t i;
	gv_client *cl = cli_connect();

	if (cli_call(cl, "GET", "/v1/migrations", NULL, &out) < 0)
		return 1;
	if (argc > 1 && !strcmp(argv[1], "--json")) {
		cli_print_json(out);
	} else {
		printf("%-16s %-10s %-22s %-11s %8s  %s\n", "VM", "MODE", "TO", "PHASE", "SECONDS",
		       "NOTE");
		json_array_foreach(out, i, m) {
			json_t *info = json_object_get(m, "info");
			const char *note = json_string_value(json_object_get(info, "error"));
			if (!note && json_object_get(info, "unresolved"))
				note = "unsettled: the VM waits here, paused, for the destination";
			if (!note)
				note = json_string_value(json_object_get(info, "note"));
			printf("%-16s %-10s %-22s %-11s %8.1f  %s\n",
			       json_string_value(json_object_get(m, "vm")),
			       json_string_value(json_object_get(m, "mode")),
			       json_string_value(json_object_get(m, "to")),
			       json_string_value(json_object_get(m, "phase")),
			       json_number_value(json_object_get(m, "seconds")), note ? note : "");
		}
	}
	json_decref(out);
	gv_client_free(cl);
	return 0;
}

static int migrate_cancel(int argc, char **argv)
{
	char *path;
	int rc;
	gv_client *cl;

	if (argc < 2 || !cli_name_ok(argv[1], "VM"))
		return cli_error("usage: gridvm migrate cancel VM"), 2;
	cl = cli_connect();
	path = gv_strdupf("/v1/vms/%s/migrate-cancel", argv[1]);
	rc = cli_call(cl, "POST", path, NULL, NULL) < 0 ? 1 : 0;
	if (rc == 0)
		printf("asked the migration of %s to back out\n", argv[1]);
	free(path);
	gv_client_free(cl);
	return rc;
}

static int migrate_adopt(int argc, char **argv)
{
	json_t *out = NULL;
	char *path;
	int rc;
	gv_client *cl;

	if (argc < 2 || !cli_name_ok(argv[1], "VM"))
		return cli_error("usage: gridvm migrate adopt VM"), 2;
	cl = cli_connect();
	path = gv_strdupf("/v1/vms/%s/migrate-adopt", argv[1]);
	rc = cli_call(cl, "POST", path, NULL, &out) < 0 ? 1 : 0;
	if (rc == 0 && argc > 2 && !strcmp(argv[2], "--json"))
		cli_print_json(out);
	else if (rc == 0)
		printf("%s runs here now; its source, if it comes back, lets it go\n", argv[1]);
	json_decref(out);
	free(path);
	gv_client_free(cl);
	return rc;
}

int cmd_migrate(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "status"))
		return migrate_status(argc - 1, argv + 1);
	if (argc > 1 && !strcmp(argv[1], "cancel"))
		return migrate_cancel(argc - 1, argv + 1);
	if (argc > 1 && !strcmp(argv[1], "adopt"))
		return migrate_adopt(argc - 1, argv + 1);
	static const struct option opts[] = {
		{ "to", required_argument, NULL, 't' },
		{ "cold", no_argument, NULL, 'c' },
		{ "compress", required_argument, NULL, 'z' },
		{ "keep-checkpoints", no_argument, NULL, 'K' },
		{ "json", no_argument, NULL, 'J' },
		{ "help", no_argument, NULL, 'h' }, { 0 } };
	static const char help[] =
		"Usage: gridvm migrate VM --to HOST[:PORT] [--cold] [--compress zstd|none]\n"
		"                         [--keep-checkpoints] [--json]\n"
		"       gridvm migrate status [--json]     phase of each migration\n"
		"       gridvm migrate cancel VM           back out (before the switch)\n"
		"       gridvm migrate adopt VM [--json]   on the destination: run a VM whose\n"
		"                                          source host is lost for good\n"
		"Move a running VM to another host's agent (both agents need --listen and\n"
		"the same grid key). Live by default: the guest pauses only for the last\n"
		"memory and disk changes. --cold suspends it, moves state and disk, and\n"
		"resumes it there. Disk blocks the destination holds already are not sent.\n"
		"Whatever fails, the VM keeps running on exactly one host. A VM that arrived\n"
		"but was never confirmed waits, paused, for its source to settle it; adopt\n"
		"is for a source that will not come back (it refuses while the source\n"
		"answers).\n"
		"The VM's checkpoints follow it (only the chunks the other host lacks are\n"
		"sent) and leave this host; --keep-checkpoints leaves them here.\n"
		"--compress: the memory stream of a live migration, zstd (default: QEMU's\n"
		"multifd channels with zstd level 1) or none (one plain channel).\n";
	json_t *body = json_object(), *sum = NULL;
	bool tty = isatty(2), json = false;
	char *path;
	int c, rc;
	gv_client *cl;

	while ((c = getopt_long(argc, argv, "t:cz:h", opts, NULL)) != -1) {
		if (c == 't')
			json_object_set_new(body, "to", json_string(optarg));
		else if (c == 'c')
			json_object_set_new(body, "cold", json_true());
		else if (c == 'z')
			json_object_set_new(body, "compress", json_string(optarg));
		else if (c == 'K')
			json_object_set_new(body, "keep_checkpoints", json_true());
		else if (c == 'J')
			json = true;
		else
			return fputs(help, c == 'h' ? stdout : stderr), c == 'h' ? 0 : 2;
	}
	if (optind >= argc || !json_object_get(body, "to"))
		return cli_error("usage: gridvm migrate VM --to HOST[:PORT] [--cold]"), 2;
	if (!cli_name_ok(argv[optind], "VM"))
		return 2;
	cl = cli_connect();
	path = gv_strdupf("/v1/vms/%s/migrate", argv[optind]);
	rc = cli_stream(cl, path, body, cli_migrate_progress, NULL, &tty, &sum);
	if (rc == 0 && json)
		cli_print_json(sum);
	else if (rc == 0 && json_object_get(sum, "qemu_downtime_ms"))
		printf("migrated %s to %s (%s) in %.2f s, downtime %lld ms (QEMU), guest paused "
		       "%lld ms\n", argv[optind], json_string_value(json_object_get(sum, "to")),
		       json_string_value(json_object_get(sum, "mode")),
		       json_number_value(json_object_get(sum, "seconds")),
		       json_integer_value(json_object_get(sum, "qemu_downtime_ms")),
		       json_integer_value(json_object_get(sum, "paused_ms")));
	else if (rc == 0)
		printf("migrated %s to %s (%s) in %.2f s\n", argv[optind],
		       json_string_value(json_object_get(sum, "to")),
		       json_string_value(json_object_get(sum, "mode")),
		       json_number_value(json_object_get(sum, "seconds")));
	rc = rc == 0 ? 0 : 1;
	json_decref(sum);
	json_decref(body);
	free(path);
	gv_client_free(cl);
	return rc;
}
