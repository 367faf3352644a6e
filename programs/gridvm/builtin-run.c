/* SPDX-License-Identifier: MIT */
/* builtin-run.c - `gridvm run -- CMD`: a fresh VM, the job, its exit code. */
#include "cli.h"
#include "vmopts.h"

#include <errno.h>
#include <gridvm/base/util.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: gridvm run [OPTIONS] -- COMMAND [ARGS...]\n"
		"Start a fresh VM, run COMMAND in it, stream its output and exit\n"
		"with its exit code (125 if the VM itself failed, or its outputs\n"
		"could not be fetched). Example:\n"
		"  gridvm run --input data.csv --output result.txt -- sh -c \\\n"
		"      'sort data.csv > result.txt'\n\n" VMOPTS_HELP
		"      --output-dir DIR  where the outputs arrive (default: the current\n"
		"                        directory), under their guest basenames\n"
		"  -n, --name NAME       name of the VM (default run-<random>)\n"
		"      --keep            keep the VM afterwards (see 'gridvm vm list')\n"
		"  -h, --help            show this help\n");
}

static void on_sigint(int sig)
{
	cli_interrupted = sig;
}

/* --input PATH[:GUEST_PATH]: split at the first ':' unless all of it
 * names a file here; the path must exist now (before any VM is made). */
static int add_input(json_t *d, const char *arg)
{
	char *path = strdup(arg), *colon = strchr(path, ':'), *abs;
	struct stat st;
	json_t *in;

	if (colon && stat(arg, &st) < 0)
		*colon = '\0';
	else
		colon = NULL;
	abs = *path ? cli_abspath(path) : NULL;
	if (!abs || stat(abs, &st) < 0) {
		cli_error("--input %s: %s", path, *path ? strerror(errno) : "no path");
		free(abs);
		free(path);
		return -1;
	}
	in = json_pack("{s:s}", "path", abs);
	if (colon && colon[1])
		json_object_set_new(in, "guest", json_string(colon + 1));
	if (!json_object_get(d, "inputs"))
		json_object_set_new(d, "inputs", json_array());
	json_array_append_new(json_object_get(d, "inputs"), in);
	free(abs);
	free(path);
	return 1;
}

int vmopts_apply(json_t *d, int c, const char *arg)
{
	uint64_t v;

	switch (c) {
	case 'i':
		json_object_set_new(d, "image", json_string(arg));
		return 1;
	case 'c':
		json_object_set_new(d, "vcpus", json_integer(atoi(arg)));
		if (atoi(arg) < 1)
			return cli_error("invalid --cpus '%s'", arg), -1;
		return 1;
	case 'm':
		if (gv_parse_size(arg, 1 << 20, &v) < 0 || v < (1 << 20))
			return cli_error("invalid memory size '%s' (e.g. 512M, 2G)", arg), -1;
		json_object_set_new(d, "memory_mib", json_integer((json_int_t)(v >> 20)));
		return 1;
	case 'e':
		if (!strchr(arg, '='))
			return cli_error("--env wants NAME=VALUE, not '%s'", arg), -1;
		json_array_append_new(json_object_get(d, "env"), json_string(arg));
		return 1;
	case 'w':
		json_object_set_new(d, "workdir", json_string(arg));
		return 1;
	case 1001:
		json_object_set_new(d, "cpu_weight", json_integer(atoi(arg)));
		return 1;
	case 1002:
		json_object_set_new(d, "cpu_cap_pct", json_integer(atoi(arg)));
		return 1;
	case 1003:
		json_object_set_new(d, "disk_iops", json_integer(atoll(arg)));
		return 1;
	case 1004:
		if (gv_parse_size(arg, 1, &v) < 0)
			return cli_error("invalid --disk-bps '%s'", arg), -1;
		json_object_set_new(d, "disk_bps", json_integer((json_int_t)v));
		return 1;
	case 1005:
		json_object_set_new(d, "accel", json_string(arg));
		return 1;
	case 1006:
		if (strcmp(arg, "disk") && strcmp(arg, "kernel"))
			return cli_error("--boot wants disk or kernel, not '%s'", arg), -1;
		json_object_set_new(d, "boot_disk", json_boolean(!strcmp(arg, "disk")));
		return 1;
	case 1007:
	case 1008: {
		char *abs = cli_abspath(arg);
		if (!abs)
			return cli_error("no such file: %s", arg), -1;
		json_object_set_new(d, c == 1007 ? "kernel" : "initrd", json_string(abs));
		free(abs);
		return 1;
	}
	case 1009:
		json_object_set_new(d, "append", json_string(arg));
		return 1;
	case 1010:
		if (gv_parse_duration_ms(arg, &v) < 0 || v < 1000)
			return cli_error("invalid --checkpoint-every '%s' (e.g. 30s, 10m)", arg), -1;
		json_object_set_new(d, "checkpoint_every_s", json_integer((json_int_t)(v / 1000)));
		return 1;
	case 1011:
		json_object_set_new(d, "checkpoint_keep", json_integer(atoi(arg)));
		return 1;
	case 1012:
		json_object_set_new(d, "checkpoint_drop_on_success", json_true());
		return 1;
	case 1013:
		return add_input(d, arg);
	case 1014:
		if (!json_object_get(d, "outputs"))
			json_object_set_new(d, "outputs", json_array());
		json_array_append_new(json_object_get(d, "outputs"), json_string(arg));
		return 1;
	case 1015:
		if (gv_parse_size(arg, 1, &v) < 0 || v < (1 << 20))
			return cli_error("invalid --output-max '%s' (e.g. 100M, 4G)", arg), -1;
		json_object_set_new(d, "output_max", json_integer((json_int_t)v));
		return 1;
	case 1016:
		arg = "cold";
		/* fall through */
	case 1017:
		if (strcmp(arg, "auto") && strcmp(arg, "cold") && strcmp(arg, "template"))
			return cli_error("--start wants auto, cold or template, not '%s'", arg), -1;
		json_object_set_new(d, "start", json_string(arg));
		return 1;
	}
	return 0;
}

void vmopts_init(json_t *d)
{
	const char *s = getenv("GRIDVM_START");

	if (s && *s)
		json_object_set_new(d, "start", json_string(s));
}

static json_t *job_argv(int argc, char **argv)
{
	json_t *a = json_array();

	for (int i = 0; i < argc; i++)
		json_array_append_new(a, json_string(argv[i]));
	return a;
}

static char *random_name(void)
{
	unsigned v = (unsigned)getpid() ^ (unsigned)gv_now_ms() * 2654435761u;

	return gv_strdupf("run-%08x", v);
}

int cmd_run(int argc, char **argv)
{
	static const struct option opts[] = { VMOPTS_LONG,
		{ "name", required_argument, NULL, 'n' },
		{ "keep", no_argument, NULL, 'k' },
		{ "output-dir", required_argument, NULL, 'O' },
		{ "help", no_argument, NULL, 'h' }, { 0 } };
	json_t *d = json_pack("{s:s, s:[], s:b}", "image", "default", "env", "ephemeral", 1);
	char *name = NULL, *path, *outdir = NULL;
	const char *boot;
	json_t *vm = NULL;
	bool keep = false;
	int c, code;
	gv_client *cl;

	vmopts_init(d);
	while ((c = getopt_long(argc, argv, "+" VMOPTS_SHORT "n:h", opts, NULL)) != -1) {
		int r = vmopts_apply(d, c, optarg);
		if (r < 0)
			return 2;
		if (r)
			continue;
		if (c == 'n')
			name = strdup(optarg);
		else if (c == 'k')
			keep = true;
		else if (c == 'O')
			outdir = strdup(optarg);
		else if (c == 'h')
			return usage(stdout), 0;
		else
			return usage(stderr), 2;
	}
	if (optind >= argc)
		return cli_error("no command given (gridvm run [OPTIONS] -- COMMAND)"), 2;
	if (!name)
		name = random_name();
	if (!cli_name_ok(name, "VM"))
		return 2;
	json_object_set_new(d, "name", json_string(name));
	json_object_set_new(d, "job", job_argv(argc - optind, argv + optind));
	json_object_set_new(d, "ephemeral", json_boolean(!keep));
	if (!outdir)
		outdir = strdup(".");
	/* where the outputs go must work before a VM is made */
	if (json_object_get(d, "outputs") &&
	    (gv_mkdir_p(outdir, 0755) < 0 || access(outdir, W_OK) < 0))
		return cli_error("--output-dir %s: %s", outdir, strerror(errno)), 2;
	cl = cli_connect();
	if (cli_create_vm(cl, d) < 0)
		return 125;
	signal(SIGINT, on_sigint);
	signal(SIGTERM, on_sigint);
	signal(SIGHUP, on_sigint);
	if (isatty(2))
		fprintf(stderr, "gridvm: booting VM %s (image %s)...\n", name,
			json_string_value(json_object_get(d, "image")) ?: "none");
	path = gv_strdupf("/v1/vms/%s/start", name);
	code = cli_call(cl, "POST", path, NULL, &vm) < 0 ? -2 : 0;
	free(path);
	/* a template that failed: say so (the VM booted cold instead) */
	boot = json_string_value(json_object_get(vm, "boot"));
	if (code == 0 && boot && !strncmp(boot, "cold boot: template", 19))
		fprintf(stderr, "gridvm: warning: %s\n", boot);
	json_decref(vm);
	if (code == 0)
		code = cli_follow_job(cl, name, true);
	/* the guest collected them before it reported the exit status */
	if (code >= 0 && json_object_get(d, "outputs") && !cli_interrupted &&
	    vm_fetch_outputs(cl, name, outdir) < 0)
		code = -2;
	if (code == -1 && !cli_interrupted) {
		vm = NULL;
		path = gv_strdupf("/v1/vms/%s", name);
		if (gv_client_call(cl, "GET", path, NULL, &vm, NULL) == 0)
			cli_error("VM %s failed: %s%s", name,
				  json_string_value(json_object_get(vm, "error"))
					  ?: "no exit status",
				  json_object_get(d, "outputs") ? " (no outputs collected)" : "");
		json_decref(vm);
		free(path);
	}
	if (!keep || cli_interrupted) {
		path = gv_strdupf("/v1/vms/%s?force=1", name);
		(void)cli_call(cl, "DELETE", path, NULL, NULL);
		free(path);
	}
	json_decref(d);
	gv_client_free(cl);
	free(name);
	free(outdir);
	if (cli_interrupted) /* 130 for Ctrl-C, 141 for a closed pipe, ... */
		return 128 + cli_interrupted;
	return code >= 0 ? code : 125;
}
