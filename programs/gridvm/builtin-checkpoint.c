/* SPDX-License-Identifier: MIT */
/* builtin-checkpoint.c - `gridvm checkpoint VERB`: VM checkpoints. */
#include "cli.h"

#include <getopt.h>
#include <gridvm/base/util.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool want_json(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--json"))
			return true;
	return false;
}

/* Positional arguments, skipping options. */
static const char *arg_n(int argc, char **argv, int n)
{
	for (int i = 1; i < argc; i++)
		if (argv[i][0] != '-' && n-- == 0)
			return argv[i];
	return NULL;
}

static void print_ckpt_row(json_t *m)
{
	char a[32], b[32], c[32];
	json_t *mem = json_object_get(m, "memory"), *disk = json_object_get(m, "disk");

	printf("%-12s %-22s %-8s %9.1f %10s %10s %10s\n",
	       json_string_value(json_object_get(m, "vm")),
	       json_string_value(json_object_get(m, "id")),
	       json_string_value(json_object_get(m, "state")),
	       json_number_value(json_object_get(m, "pause_ms")),
	       gv_fmt_size((uint64_t)json_integer_value(json_object_get(mem, "bytes")), a, sizeof(a)),
	       gv_fmt_size((uint64_t)json_integer_value(json_object_get(disk, "bytes")), b, sizeof(b)),
	       gv_fmt_size((uint64_t)json_integer_value(json_object_get(m, "bytes_added")), c, sizeof(c)));
}

static void print_header(void)
{
	printf("%-12s %-22s %-8s %9s %10s %10s %10s\n", "VM", "ID", "STATE", "PAUSE ms",
	       "MEMORY", "DISK", "STORED");
}

static int ck_create(int argc, char **argv)
{
	const char *vm = arg_n(argc, argv, 0);
	json_t *out = NULL;
	char *path;
	int rc;
	gv_client *cl;

	if (cli_wants_help(argc, argv)) {
		puts("Usage: gridvm checkpoint create VM [--json]\n"
		     "Checkpoint a running or paused VM: memory, devices, disk and job output,\n"
		     "stored in the host's chunk store (only chunks not stored yet).");
		return 0;
	}
	if (!vm || !cli_name_ok(vm, "VM"))
		return cli_error("usage: gridvm checkpoint create VM"), 2;
	cl = cli_connect();
	path = gv_strdupf("/v1/vms/%s/checkpoints", vm);
	rc = cli_call(cl, "POST", path, NULL, &out) < 0 ? 1 : 0;
	if (rc == 0 && want_json(argc, argv))
		cli_print_json(out);
	else if (rc == 0) {
		print_header();
		print_ckpt_row(out);
	}
	json_decref(out);
	free(path);
	gv_client_free(cl);
	return rc;
}

static int ck_list(int argc, char **argv)
{
	const char *vm = arg_n(argc, argv, 0);
	json_t *out = NULL, *m;
	char *path;
	size_t i;
	int rc;
	gv_client *cl;

	if (cli_wants_help(argc, argv)) {
		puts("Usage: gridvm checkpoint list [VM] [--json]");
		return 0;
	}
	if (vm && !cli_name_ok(vm, "VM"))
		return 2;
	cl = cli_connect();
	path = vm ? gv_strdupf("/v1/vms/%s/checkpoints", vm) : strdup("/v1/checkpoints");
	rc = cli_call(cl, "GET", path, NULL, &out) < 0 ? 1 : 0;
	if (rc == 0 && want_json(argc, argv))
		cli_print_json(out);
	else if (rc == 0) {
		print_header();
		json_array_foreach(out, i, m)
			print_ckpt_row(m);
	}
	json_decref(out);
	free(path);
	gv_client_free(cl);
	return rc;
}

static int ck_one(int argc, char **argv, const char *method, const char *usage)
{
	const char *vm = arg_n(argc, argv, 0), *id = arg_n(argc, argv, 1);
	json_t *out = NULL;
	char *path;
	int rc;
	gv_client *cl;

	if (cli_wants_help(argc, argv)) {
		puts(usage);
		return 0;
	}
	if (!vm || !id || !cli_name_ok(vm, "VM") || !cli_name_ok(id, "checkpoint"))
		return cli_error("%s", usage), 2;
	cl = cli_connect();
	path = gv_strdupf("/v1/vms/%s/checkpoints/%s", vm, id);
	rc = cli_call(cl, method, path, NULL, &out) < 0 ? 1 : 0;
	if (rc == 0 && !strcmp(method, "GET"))
		cli_print_json(out);
	else if (rc == 0)
		printf("deleted checkpoint %s of %s\n", id, vm);
	json_decref(out);
	free(path);
	gv_client_free(cl);
	return rc;
}

static int ck_show(int argc, char **argv)
{
	return ck_one(argc, argv, "GET", "Usage: gridvm checkpoint show VM ID");
}

static int ck_delete(int argc, char **argv)
{
	return ck_one(argc, argv, "DELETE", "Usage: gridvm checkpoint delete VM ID");
}

static int ck_restore(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "on", required_argument, NULL, 'o' },
		{ "keep-checkpoints", no_argument, NULL, 'K' },
		{ "json", no_argument, NULL, 'J' },
		{ "help", no_argument, NULL, 'h' }, { 0 } };
	static const char help[] =
		"Usage: gridvm checkpoint restore VM [ID] [--on HOST[:PORT] [--keep-checkpoints]] [--json]\n"
		"Put the VM back to a checkpoint (default: the latest): disk, memory and\n"
		"job output; a running instance of the VM is replaced.\n"
		"--on HOST restores it on another host's agent instead (both agents need\n"
		"--listen and the grid key): that host fetches what it lacks with the\n"
		"deduplicating transfer and continues the computation; the instance here\n"
		"runs on untouched until then, and is deleted once the VM runs there;\n"
		"its checkpoints go along unless --keep-checkpoints.\n";
	const char *vm, *id, *on = NULL;
	json_t *body = json_object(), *sum = NULL;
	bool tty = isatty(2), json = false;
	char *path;
	int c, rc;
	gv_client *cl;

	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		if (c == 'o')
			on = optarg;
		else if (c == 'K')
			json_object_set_new(body, "keep_checkpoints", json_true());
		else if (c == 'J')
			json = true;
		else
			return fputs(help, c == 'h' ? stdout : stderr), c == 'h' ? 0 : 2;
	}
	vm = optind < argc ? argv[optind] : NULL;
	id = optind + 1 < argc ? argv[optind + 1] : NULL;
	if (!vm || optind + 2 < argc || !cli_name_ok(vm, "VM") ||
	    (id && !cli_name_ok(id, "checkpoint")))
		return cli_error("usage: gridvm checkpoint restore VM [ID] [--on HOST]"), 2;
	if (!on && json_object_get(body, "keep_checkpoints"))
		return cli_error("--keep-checkpoints goes with --on HOST"), 2;
	cl = cli_connect();
	if (on) {
		json_object_set_new(body, "to", json_string(on));
		json_object_set_new(body, "checkpoint", json_string(id ? id : ""));
		/* (keep_checkpoints, if given, is in the body already) */
		path = gv_strdupf("/v1/vms/%s/migrate", vm);
		rc = cli_stream(cl, path, body, cli_migrate_progress, NULL, &tty, &sum) < 0;
		if (rc == 0 && json)
			cli_print_json(sum);
		else if (rc == 0)
			printf("%s: restored from checkpoint %s on %s in %.2f s\n", vm,
			       id ? id : "(latest)", on,
			       json_number_value(json_object_get(sum, "seconds")));
	} else {
		if (id)
			json_object_set_new(body, "id", json_string(id));
		path = gv_strdupf("/v1/vms/%s/checkpoints/restore", vm);
		rc = cli_call(cl, "POST", path, body, NULL) < 0 ? 1 : 0;
		if (rc == 0 && json) {
			sum = json_pack("{s:s, s:s}", "vm", vm, "checkpoint", id ? id : "latest");
			cli_print_json(sum);
		}
		else if (rc == 0)
			printf("%s: restored from checkpoint %s\n", vm, id ? id : "(latest)");
	}
	json_decref(sum);
	free(path);
	json_decref(body);
	gv_client_free(cl);
	return rc;
}

static const struct cli_cmd ck_cmds[] = {
	{ "create", ck_create, "checkpoint a running VM" },
	{ "list", ck_list, "list checkpoints (--json)" },
	{ "show", ck_show, "show one checkpoint" },
	{ "delete", ck_delete, "delete a checkpoint (and chunks no one uses)" },
	{ "restore", ck_restore, "put a VM back to a checkpoint" },
	{ NULL, NULL, NULL } };

int cmd_checkpoint(int argc, char **argv)
{
	return cli_dispatch("gridvm checkpoint", ck_cmds, argc, argv);
}
