/* SPDX-License-Identifier: MIT */
/* builtin-template.c - `gridvm template build|list|delete`: the pre-booted
 * guests VMs start from instead of booting (docs/templates.md). */
#include "cli.h"

#include <getopt.h>
#include <gridvm/base/util.h>
#include <stdlib.h>
#include <string.h>

static void print_entry(json_t *t)
{
	char size[32];

	printf("%-16s %-6s %5lld %8lld MiB %10s %8.1f s\n",
	       json_string_value(json_object_get(t, "name")),
	       json_string_value(json_object_get(t, "state")),
	       (long long)json_integer_value(json_object_get(t, "vcpus")),
	       (long long)json_integer_value(json_object_get(t, "memory_mib")),
	       gv_fmt_size((uint64_t)json_integer_value(json_object_get(t, "bytes")), size,
			   sizeof(size)),
	       (double)json_integer_value(json_object_get(t, "build_ms")) / 1000.0);
}

static void print_header(void)
{
	printf("%-16s %-6s %5s %12s %10s %10s\n", "NAME", "STATE", "CPUS", "MEMORY", "DISK",
	       "BUILT IN");
}

static int tmpl_build(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "cpus", required_argument, NULL, 'c' },
		{ "memory", required_argument, NULL, 'm' },
		{ "accel", required_argument, NULL, 'a' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' }, { 0 } };
	json_t *req = json_pack("{s:i, s:i}", "vcpus", 1, "memory_mib", 256), *out = NULL;
	bool json = false;
	uint64_t v;
	gv_client *cl;
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:m:h", opts, NULL)) != -1) {
		if (c == 'c' && atoi(optarg) >= 1) {
			json_object_set_new(req, "vcpus", json_integer(atoi(optarg)));
		} else if (c == 'm' && gv_parse_size(optarg, 1 << 20, &v) == 0 && v >= (1 << 20)) {
			json_object_set_new(req, "memory_mib", json_integer((json_int_t)(v >> 20)));
		} else if (c == 'a') {
			json_object_set_new(req, "accel", json_string(optarg));
		} else if (c == 'j') {
			json = true;
		} else if (c == 'h') {
			puts("Usage: gridvm template build [--cpus N] [--memory SIZE] [--accel A] [--json]\n"
			     "Boot the guest for VMs of N vCPUs and SIZE memory (default 1, 256M)\n"
			     "and save it where its init waits for a job: VMs of that size then\n"
			     "start from it instead of booting. Builds it again if it exists.\n"
			     "Templates are also built on first use, and again when the guest's\n"
			     "kernel, initramfs or QEMU changed.");
			json_decref(req);
			return 0;
		} else {
			cli_error("usage: gridvm template build [--cpus N] [--memory SIZE] [--accel A]");
			json_decref(req);
			return 2;
		}
	}
	cl = cli_connect();
	rc = cli_call(cl, "POST", "/v1/templates", req, &out) < 0 ? 1 : 0;
	if (rc == 0 && json) {
		cli_print_json(out);
	} else if (rc == 0) {
		print_header();
		print_entry(out);
	}
	json_decref(out);
	json_decref(req);
	gv_client_free(cl);
	return rc;
}

static int tmpl_list(int argc, char **argv)
{
	json_t *a = NULL, *t;
	gv_client *cl;
	size_t i;

	if (cli_wants_help(argc, argv)) {
		puts("Usage: gridvm template list [--json]\n"
		     "The templates of this host: ready, or stale (the guest or QEMU changed;\n"
		     "rebuilt when next used).");
		return 0;
	}
	cl = cli_connect();
	if (cli_call(cl, "GET", "/v1/templates", NULL, &a) < 0)
		return 1;
	if (argc > 1 && !strcmp(argv[1], "--json")) {
		cli_print_json(a);
	} else {
		print_header();
		json_array_foreach(a, i, t)
			print_entry(t);
	}
	json_decref(a);
	gv_client_free(cl);
	return 0;
}

static int tmpl_delete(int argc, char **argv)
{
	gv_client *cl;
	char *path;
	int rc = 0;

	if (cli_wants_help(argc, argv) || argc < 2) {
		puts("Usage: gridvm template delete NAME...\n"
		     "Delete templates; VMs started from them go on.");
		return argc < 2 ? 2 : 0;
	}
	cl = cli_connect();
	for (int i = 1; i < argc; i++) {
		path = gv_strdupf("/v1/templates/%s", argv[i]);
		if (cli_call(cl, "DELETE", path, NULL, NULL) < 0)
			rc = 1;
		free(path);
	}
	gv_client_free(cl);
	return rc;
}

static const struct cli_cmd tmpl_cmds[] = {
	{ "build", tmpl_build, "boot and save a template (a guest waiting for its job)" },
	{ "list", tmpl_list, "the templates, ready or stale" },
	{ "delete", tmpl_delete, "delete templates" },
	{ NULL, NULL, NULL } };

int cmd_template(int argc, char **argv)
{
	return cli_dispatch("gridvm template", tmpl_cmds, argc, argv);
}
