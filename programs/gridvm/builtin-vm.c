/* SPDX-License-Identifier: MIT */
/* builtin-vm.c - `gridvm vm VERB`: the lifecycle of named VMs. */
#include "cli.h"
#include "vmopts.h"

#include <errno.h>
#include <gridvm/base/util.h>
#include <gridvm/vmm/jobio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int vm_usage(FILE *f, const char *verb, const char *args, const char *text,
		    const char *opts)
{
	fprintf(f, "Usage: gridvm vm %s %s\n%s\n%s%s", verb, args, text,
		opts ? "\nOptions:\n" : "", opts ? opts : "");
	return f == stdout ? 0 : 2;
}

static int vm_create(int argc, char **argv)
{
	static const struct option opts[] = { VMOPTS_LONG,
		{ "job", required_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' }, { 0 } };
	const char *help = VMOPTS_HELP
		"  -j, --job CMD         the job, a shell command line (sh -c CMD);\n"
		"                        or give the job's argv after --\n";
	json_t *d = json_pack("{s:s, s:[]}", "image", "default", "env");
	const char *name = NULL;
	int c, rc;
	gv_client *cl;

	vmopts_init(d);
	if (argc > 1 && argv[1][0] != '-') { /* NAME before the options */
		name = argv[1];
		argv[1] = argv[0];
		argc--;
		argv++;
	}
	while ((c = getopt_long(argc, argv, "+" VMOPTS_SHORT "j:h", opts, NULL)) != -1) {
		int r = vmopts_apply(d, c, optarg);
		if (r < 0)
			return 2;
		if (r)
			continue;
		if (c == 'j')
			json_object_set_new(d, "job", json_pack("[s,s,s]", "/bin/sh", "-c", optarg));
		else
			return vm_usage(c == 'h' ? stdout : stderr, "create",
					"NAME [OPTIONS] [-- COMMAND...]",
					"Define a VM (it is started by 'gridvm vm start').", help);
	}
	if (!name && optind < argc)
		name = argv[optind++];
	if (!name)
		return cli_error("missing VM name (gridvm vm create NAME ...)"), 2;
	if (!cli_name_ok(name, "VM"))
		return 2;
	json_object_set_new(d, "name", json_string(name));
	if (optind < argc) {
		json_t *job = json_array();
		int i = optind;
		if (!strcmp(argv[i], "--"))
			i++;
		for (; i < argc; i++)
			json_array_append_new(job, json_string(argv[i]));
		json_object_set_new(d, "job", job);
	}
	cl = cli_connect();
	rc = cli_create_vm(cl, d) < 0 ? 1 : 0;
	if (rc == 0)
		printf("created VM %s\n", name);
	json_decref(d);
	gv_client_free(cl);
	return rc;
}

/* Verbs of the form `gridvm vm VERB NAME [ARG]` with a POST. */
static int simple_verb(int argc, char **argv, const char *verb, const char *done)
{
	static const struct option opts[] = {
		{ "timeout", required_argument, NULL, 't' },
		{ "force", no_argument, NULL, 'f' },
		{ "json", no_argument, NULL, 'J' },
		{ "help", no_argument, NULL, 'h' }, { 0 } };
	json_t *body = json_object(), *resp = NULL;
	bool json = false, is_stop = !strcmp(verb, "stop");
	bool needs_path = false, may_path = !strcmp(verb, "save") || !strcmp(verb, "restore");
	uint64_t ms;
	char *path;
	int c, rc;
	gv_client *cl;

	while ((c = getopt_long(argc, argv, "t:fh", opts, NULL)) != -1) {
		if (c == 't' && is_stop && gv_parse_duration_ms(optarg, &ms) == 0)
			json_object_set_new(body, "timeout_ms", json_integer((json_int_t)ms));
		else if (c == 'f' && is_stop)
			json_object_set_new(body, "timeout_ms", json_integer(0));
		else if (c == 'J')
			json = true;
		else {
			const char *args = needs_path ? "NAME FILE" : may_path ? "NAME [FILE]" : "NAME";
			const char *o = is_stop ? "  -t, --timeout DUR  wait this long for a clean "
						  "power-off before forcing (default 10s)\n"
						  "  -f, --force        stop at once\n"
						  "      --json         print the VM as JSON\n"
						: "      --json         print the VM as JSON\n";
			return vm_usage(c == 'h' ? stdout : stderr, verb, args, done, o);
		}
	}
	if (optind >= argc)
		return cli_error("missing VM name (gridvm vm %s NAME)", verb), 2;
	if (!cli_name_ok(argv[optind], "VM"))
		return 2;
	if (needs_path && optind + 1 >= argc)
		return cli_error("missing state file (gridvm vm save NAME FILE)"), 2;
	if ((needs_path || may_path) && optind + 1 < argc) {
		char *abs = cli_abspath(argv[optind + 1]);
		if (!abs)
			return cli_error("no such directory for %s", argv[optind + 1]), 1;
		json_object_set_new(body, "path", json_string(abs));
		free(abs);
	}
	cl = cli_connect();
	path = gv_strdupf("/v1/vms/%s/%s", argv[optind], verb);
	rc = cli_call(cl, "POST", path, body, &resp) < 0 ? 1 : 0;
	if (rc == 0 && json)
		cli_print_json(resp);
	else if (rc == 0)
		printf("%s: %s\n", argv[optind],
		       json_string_value(json_object_get(resp, "state")) ?: "ok");
	free(path);
	json_decref(body);
	json_decref(resp);
	gv_client_free(cl);
	return rc;
}

static int vm_start(int argc, char **argv)
{
	return simple_verb(argc, argv, "start", "Boot the VM and start its job.");
}

static int vm_pause(int argc, char **argv)
{
	return simple_verb(argc, argv, "pause", "Pause the VM's CPUs.");
}

static int vm_resume(int argc, char **argv)
{
	return simple_verb(argc, argv, "resume", "Resume a paused VM.");
}

static int vm_stop(int argc, char **argv)
{
	return simple_verb(argc, argv, "stop",
			   "Power the VM off (ACPI), forcing it after the timeout.");
}

static int vm_save(int argc, char **argv)
{
	return simple_verb(argc, argv, "save",
			   "Suspend the VM to FILE (default, and for users other than root\n"
			   "and group gridvm-admin: its own directory); its QEMU exits.");
}

static int vm_restore(int argc, char **argv)
{
	return simple_verb(argc, argv, "restore",
			   "Continue a saved VM from FILE (default: where it was saved).");
}

static int vm_delete(int argc, char **argv)
{
	const char *name = NULL;
	bool force = false;
	char *path;
	int rc;
	gv_client *cl;

	if (cli_wants_help(argc, argv))
		return vm_usage(stdout, "delete", "NAME [--force]",
				"Delete a VM and its disk overlay (--force: also a running one).",
				NULL);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-f") || !strcmp(argv[i], "--force"))
			force = true;
		else if (argv[i][0] == '-')
			return cli_error("unknown option %s", argv[i]), 2;
		else if (!name)
			name = argv[i];
		else
			return cli_error("one VM name at a time"), 2;
	}
	if (!name)
		return cli_error("missing VM name (gridvm vm delete NAME)"), 2;
	if (!cli_name_ok(name, "VM"))
		return 2;
	cl = cli_connect();
	path = gv_strdupf("/v1/vms/%s%s", name, force ? "?force=1" : "");
	rc = cli_call(cl, "DELETE", path, NULL, NULL) < 0 ? 1 : 0;
	if (rc == 0)
		printf("deleted VM %s\n", name);
	free(path);
	gv_client_free(cl);
	return rc;
}

static bool has_flag(int argc, char **argv, const char *flag)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], flag))
			return true;
	return false;
}

static void print_vm_row(json_t *vm)
{
	char mem[32];
	json_t *ec = json_object_get(vm, "exit_code");

	printf("%-20s %-8s %4lld %9s  %-12s %s\n",
	       json_string_value(json_object_get(vm, "name")),
	       json_string_value(json_object_get(vm, "state")),
	       json_integer_value(json_object_get(vm, "vcpus")),
	       gv_fmt_size((uint64_t)json_integer_value(json_object_get(vm, "memory_mib")) << 20,
			   mem, sizeof(mem)),
	       json_string_value(json_object_get(vm, "image")) ?: "-",
	       json_is_integer(ec) ? gv_strdupf("%lld", json_integer_value(ec)) : "-");
}

static int vm_list(int argc, char **argv)
{
	json_t *vms = NULL, *vm;
	size_t i;
	gv_client *cl;

	if (cli_wants_help(argc, argv))
		return vm_usage(stdout, "list", "[--json]", "List this host's VMs.", NULL);
	cl = cli_connect();
	if (cli_call(cl, "GET", "/v1/vms", NULL, &vms) < 0)
		return 1;
	if (has_flag(argc, argv, "--json")) {
		cli_print_json(vms);
	} else {
		printf("%-20s %-8s %4s %9s  %-12s %s\n", "NAME", "STATE", "CPUS", "MEMORY",
		       "IMAGE", "EXIT");
		json_array_foreach(vms, i, vm)
			print_vm_row(vm);
	}
	json_decref(vms);
	gv_client_free(cl);
	return 0;
}

static void print_vm(json_t *vm)
{
	const char *keys[] = { "name", "state", "vcpus", "memory_mib", "image", "job",
			       "exit_code", "pid", "cpu_weight", "cpu_cap_pct",
			       "disk_iops", "disk_bps", "accel", "state_file", "error",
			       "dir", "disk_overlay_bytes", "cgroup", "inputs", "outputs",
			       "outputs_missing", "outputs_failed", NULL };

	for (const char **k = keys; *k; k++) {
		json_t *v = json_object_get(vm, *k);
		char *s;
		if (!v || json_is_null(v))
			continue;
		s = json_is_string(v) ? strdup(json_string_value(v))
				      : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		printf("%-20s %s\n", *k, s);
		free(s);
	}
}

static int vm_show(int argc, char **argv)
{
	json_t *vm = NULL;
	char *path;
	gv_client *cl;
	int rc;

	if (cli_wants_help(argc, argv))
		return vm_usage(stdout, "show", "NAME [--json]",
				"Show a VM: state, resources and limits, exit code.", NULL);
	if (argc < 2 || argv[1][0] == '-')
		return cli_error("missing VM name (gridvm vm show NAME)"), 2;
	if (!cli_name_ok(argv[1], "VM"))
		return 2;
	cl = cli_connect();
	path = gv_strdupf("/v1/vms/%s", argv[1]);
	rc = cli_call(cl, "GET", path, NULL, &vm) < 0 ? 1 : 0;
	if (rc == 0 && has_flag(argc, argv, "--json"))
		cli_print_json(vm);
	else if (rc == 0)
		print_vm(vm);
	free(path);
	json_decref(vm);
	gv_client_free(cl);
	return rc;
}

/* console and logs: print (and with --follow keep printing) a log. */
static int show_log(int argc, char **argv, const char *which)
{
	bool follow = has_flag(argc, argv, "-f") || has_flag(argc, argv, "--follow");
	uint64_t off = 0, next;
	char state[16];
	gv_err e;
	gv_client *cl;

	if (cli_wants_help(argc, argv))
		return vm_usage(stdout, !strcmp(which, "job") ? "logs" : "console",
				"NAME [--follow]",
				!strcmp(which, "job")
					? "Print the job's output (stdout and stderr)."
					: "Print the VM's serial console (kernel and init).",
				"  -f, --follow  keep printing until the VM stops\n");
	if (argc < 2 || argv[1][0] == '-')
		return cli_error("missing VM name"), 2;
	if (!cli_name_ok(argv[1], "VM"))
		return 2;
	cl = cli_connect();
	if (!strcmp(which, "job")) {
		int code = cli_follow_job(cl, argv[1], follow);
		gv_client_free(cl);
		return code == -2 ? 1 : 0;
	}
	for (;;) {
		char *data = NULL;
		size_t len = 0;
		char *path = gv_strdupf("/v1/vms/%s/log/console?offset=%llu&wait=%d", argv[1],
					(unsigned long long)off, follow ? 1000 : 0);
		int r = gv_client_get_raw(cl, path, &data, &len, state, &next, &e);
		free(path);
		if (r < 0) {
			cli_error("%s", e.msg);
			gv_client_free(cl);
			return 1;
		}
		fwrite(data, 1, len, stdout);
		fflush(stdout);
		free(data);
		off = next;
		bool live = !strcmp(state, "running") || !strcmp(state, "paused");
		if (len == 0 && (!follow || !live || cli_interrupted))
			break;
	}
	gv_client_free(cl);
	return 0;
}

/* Each output that did not arrive, and why. */
static void report_outputs(json_t *m)
{
	static const char *const why[][2] = {
		{ "missing", "not found in the guest" },
		{ "toolarge", "did not fit on the output disk (see --output-max)" },
		{ "error", "could not be packed in the guest (see 'gridvm vm console')" } };
	json_t *o;
	size_t i;

	json_array_foreach(json_object_get(m, "outputs"), i, o) {
		const char *st = json_string_value(json_object_get(o, "status")) ?: "";
		for (size_t k = 0; k < sizeof(why) / sizeof(why[0]); k++)
			if (!strcmp(st, why[k][0]))
				fprintf(stderr, "gridvm: output %s: %s\n",
					json_string_value(json_object_get(o, "path")), why[k][1]);
	}
}

int vm_fetch_outputs(gv_client *c, const char *name, const char *dir)
{
	char *path = gv_strdupf("/v1/vms/%s/output", name), state[16];
	uint64_t off = 0, next = 0;
	gv_untar *u = NULL;
	json_t *m = NULL;
	gv_err e;
	int r = cli_call(c, "GET", path, NULL, &m);

	free(path);
	if (r < 0)
		return -1;
	if (!json_is_true(json_object_get(m, "collected"))) {
		json_decref(m);
		return cli_error("the outputs of VM %s were not collected: its job has not "
				 "ended in the guest (a VM stopped by force, or failed)", name), -1;
	}
	report_outputs(m);
	json_decref(m);
	if (gv_mkdir_p(dir, 0755) < 0)
		return cli_error("cannot create %s: %s", dir, strerror(errno)), -1;
	r = gv_untar_new(dir, &u, &e);
	while (r == 0) {
		char *data = NULL;
		size_t len = 0;
		path = gv_strdupf("/v1/vms/%s/output/tar?offset=%llu", name,
				  (unsigned long long)off);
		r = gv_client_get_raw(c, path, &data, &len, state, &next, &e);
		free(path);
		if (r == 0 && len == 0) {
			free(data);
			break;
		}
		if (r == 0)
			r = gv_untar_write(u, data, len, &e);
		off = next;
		free(data);
	}
	if (gv_untar_finish(u, r == 0 ? &e : NULL) < 0 && r == 0)
		r = -1;
	if (r < 0)
		return cli_error("outputs of VM %s: %s", name, e.msg), -1;
	return 0;
}

static int vm_output(int argc, char **argv)
{
	const char *dir;

	if (cli_wants_help(argc, argv))
		return vm_usage(stdout, "output", "NAME [DIR]",
				"Fetch the files the VM's job left at its --output paths into DIR\n"
				"(default: the current directory), under their guest basenames.\n"
				"Each output that did not arrive is named on stderr.",
				NULL);
	if (argc < 2 || argv[1][0] == '-')
		return cli_error("missing VM name (gridvm vm output NAME [DIR])"), 2;
	if (!cli_name_ok(argv[1], "VM"))
		return 2;
	dir = argc > 2 ? argv[2] : ".";
	gv_client *cl = cli_connect();
	int rc = vm_fetch_outputs(cl, argv[1], dir) < 0 ? 1 : 0;
	gv_client_free(cl);
	return rc;
}

static int vm_console(int argc, char **argv)
{
	return show_log(argc, argv, "console");
}

static int vm_logs(int argc, char **argv)
{
	return show_log(argc, argv, "job");
}

static const struct cli_cmd vm_cmds[] = {
	{ "create", vm_create, "define a VM with its image, resources and job" },
	{ "start", vm_start, "boot a VM and start its job" },
	{ "pause", vm_pause, "pause a running VM" },
	{ "resume", vm_resume, "resume a paused VM" },
	{ "save", vm_save, "suspend a VM to a file (QEMU exits)" },
	{ "restore", vm_restore, "continue a saved VM from its file" },
	{ "stop", vm_stop, "power a VM off" },
	{ "delete", vm_delete, "delete a VM and its disk overlay" },
	{ "list", vm_list, "list VMs (--json)" },
	{ "show", vm_show, "show one VM (--json)" },
	{ "console", vm_console, "print a VM's serial console (--follow)" },
	{ "logs", vm_logs, "print a VM's job output" },
	{ "output", vm_output, "fetch the files its job left at its --output paths" },
	{ NULL, NULL, NULL } };

int cmd_vm(int argc, char **argv)
{
	return cli_dispatch("gridvm vm", vm_cmds, argc, argv);
}
