/* SPDX-License-Identifier: MIT */
/* cli.c - helpers shared by the gridvm subcommands. */
#include "cli.h"

#include <errno.h>
#include <gridvm/vmm/jobio.h>
#include <gridvm/vmm/vmdef.h>
#include <gridvm/vmm/jobout.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

volatile sig_atomic_t cli_interrupted;

int cli_error(const char *fmt, ...)
{
	va_list ap;

	fputs("gridvm: error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

bool cli_wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
			return true;
	}
	return false;
}

int cli_dispatch(const char *prog, const struct cli_cmd *cmds, int argc, char **argv)
{
	const char *verb = argc > 1 ? argv[1] : NULL;

	if (verb && strcmp(verb, "help") && strcmp(verb, "-h") && strcmp(verb, "--help")) {
		for (const struct cli_cmd *c = cmds; c->name; c++)
			if (!strcmp(c->name, verb))
				return c->fn(argc - 1, argv + 1);
		cli_error("unknown command '%s %s' (see '%s --help')", prog, verb, prog);
		return 2;
	}
	FILE *f = verb ? stdout : stderr;
	fprintf(f, "Usage: %s COMMAND [ARGS]\n\nCommands:\n", prog);
	for (const struct cli_cmd *c = cmds; c->name; c++)
		fprintf(f, "  %-10s %s\n", c->name, c->summary);
	fprintf(f, "\nRun '%s COMMAND --help' for more.\n", prog);
	return verb ? 0 : 2;
}

static char *agent_binary(void)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *p;

	if (getenv("GRIDVMD"))
		return strdup(getenv("GRIDVMD"));
	if (n > 0) {
		self[n] = '\0';
		p = gv_strdupf("%s/gridvmd", dirname(self));
		if (access(p, X_OK) == 0)
			return p;
		free(p);
	}
	return strdup("/usr/local/bin/gridvmd");
}

gv_client *cli_connect(void)
{
	char *sock = gv_client_socket_path(), *bin = agent_binary();
	gv_err e;
	gv_client *c = NULL;
	const char *no = getenv("GRIDVM_NO_AUTOSTART");

	if (gv_client_new(sock, no && *no ? NULL : bin, &c, &e) < 0) {
		cli_error("%s", e.msg);
		exit(1);
	}
	free(sock);
	free(bin);
	return c;
}

int cli_call(gv_client *c, const char *method, const char *path, json_t *body,
	     json_t **resp)
{
	gv_err e;

	if (gv_client_call(c, method, path, body, resp, &e) < 0) {
		cli_error("%s", e.msg);
		return -1;
	}
	return 0;
}

int cli_create_vm(gv_client *c, json_t *d)
{
	json_t *ins = json_object_get(d, "inputs"), *in, *guest;
	char tmpl[] = "/tmp/gridvm-input-XXXXXX", *tar = NULL, **paths = NULL;
	json_t *body = json_deep_copy(d);
	gv_err e = { "" };
	size_t i, n = json_array_size(ins);
	int r = 0;

	if (geteuid() != 0 && n && json_object_get(json_array_get(ins, 0), "path")) {
		if (!mkdtemp(tmpl)) {
			json_decref(body);
			return -cli_error("cannot make a temporary directory: %s", strerror(errno));
		}
		tar = gv_strdupf("%s/input.tar", tmpl);
		paths = calloc(n + 1, sizeof(char *));
		guest = json_array();
		json_array_foreach(ins, i, in) {
			const char *p = json_string_value(json_object_get(in, "path")) ?: "";
			const char *g = json_string_value(json_object_get(in, "guest"));
			const char *b = strrchr(p, '/');
			paths[i] = strdup(p);
			json_array_append_new(guest, json_pack("{s:s}", "guest",
							       g ? g : b && b[1] ? b + 1 : p));
			if (r == 0 && access(p, R_OK) < 0) /* tar would say it less clearly */
				r = -cli_error("input %s: %s", p, strerror(errno));
		}
		if (r == 0 && gv_jobio_pack_inputs(paths, tar, &e) < 0)
			r = -cli_error("%s", e.msg);
		json_object_set_new(body, "inputs", guest);
		json_object_set_new(body, "input_tar", json_string(tar));
		gv_strv_free(paths);
	}
	if (r == 0)
		r = cli_call(c, "POST", "/v1/vms", body, NULL);
	if (tar) {
		unlink(tar);
		rmdir(tmpl);
		free(tar);
	}
	json_decref(body);
	return r < 0 ? -1 : 0;
}

void cli_print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

	puts(s ? s : "null");
	free(s);
}

char *cli_abspath(const char *path)
{
	char *dup = strdup(path), *dir = dirname(dup), real[PATH_MAX], *r;
	char *base = strdup(path);

	if (!realpath(dir, real)) {
		free(dup);
		free(base);
		return NULL;
	}
	r = gv_strdupf("%s/%s", strcmp(real, "/") ? real : "", basename(base));
	free(dup);
	free(base);
	return r;
}

bool cli_name_ok(const char *name, const char *what)
{
	if (gv_name_valid(name))
		return true;
	cli_error("invalid %s name '%s' (use 1-63 letters, digits, '.', '_', '-')",
		  what, name);
	return false;
}

/* Frames to stdout/stderr. */
struct follow {
	int exit_code;
};

static void write_all(FILE *f, const uint8_t *d, uint32_t n)
{
	/* the reader went away (e.g. `gridvm run ... | head -1`): stop, so
	 * the VM is removed instead of running on unread */
	if (fwrite(d, 1, n, f) != n || fflush(f) != 0)
		cli_interrupted = SIGPIPE;
}

static void on_frame(void *ud, char type, const uint8_t *d, uint32_t n)
{
	struct follow *fl = ud;

	switch (type) {
	case 'O': write_all(stdout, d, n); break;
	case 'E': write_all(stderr, d, n); break;
	case 'M': fprintf(stderr, "gridvm: guest: %.*s\n", (int)n, d); break;
	case 'X':
		if (n == 4)
			fl->exit_code = (int)((uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 |
					      (uint32_t)d[2] << 8 | d[3]);
		break;
	}
}

size_t cli_frames_out(const uint8_t *buf, size_t len, int *exit_code)
{
	struct follow fl = { *exit_code };
	size_t used = gv_jobout_parse(buf, len, on_frame, &fl);

	*exit_code = fl.exit_code;
	return used;
}

int cli_follow_job(gv_client *c, const char *name, bool follow)
{
	struct follow fl = { -1 };
	uint64_t off = 0, next;
	char *buf = NULL, state[16];
	gv_err e;
	size_t blen = 0;

	while (!cli_interrupted) {
		char *data = NULL, *path;
		size_t len = 0;
		path = gv_strdupf("/v1/vms/%s/log/job?offset=%llu&wait=%d", name,
				  (unsigned long long)off, follow ? 1000 : 0);
		int r = gv_client_get_raw(c, path, &data, &len, state, &next, &e);
		free(path);
		if (r < 0) {
			cli_error("%s", e.msg);
			fl.exit_code = -2;
			break;
		}
		buf = realloc(buf, blen + len + 1);
		if (len)
			memcpy(buf + blen, data, len);
		blen += len;
		off = next;
		free(data);
		size_t used = gv_jobout_parse((uint8_t *)buf, blen, on_frame, &fl);
		memmove(buf, buf + used, blen - used);
		blen -= used;
		bool live = !strcmp(state, "running") || !strcmp(state, "paused");
		if ((!live || !follow) && len == 0)
			break;
	}
	free(buf);
	return fl.exit_code;
}

struct stream_ui {
	void (*progress)(void *ud, json_t *p);
	void (*text)(void *ud, const char *l);
	void *ud;
	json_t *result;
};

static void on_stream_line(void *ud, const char *line)
{
	struct stream_ui *s = ud;

	if (!strncmp(line, "GRIDVM-RESULT ", 14)) {
		json_decref(s->result);
		s->result = json_loads(line + 14, 0, NULL);
	} else if (!strncmp(line, "PROGRESS ", 9)) {
		json_t *p = json_loads(line + 9, 0, NULL);
		if (p && s->progress)
			s->progress(s->ud, p);
		json_decref(p);
	} else if (s->text) {
		s->text(s->ud, line);
	}
}

int cli_stream(gv_client *c, const char *path, json_t *body,
	       void (*progress)(void *ud, json_t *p), void (*text)(void *ud, const char *l),
	       void *ud, json_t **summary)
{
	struct stream_ui s = { progress, text, ud, NULL };
	gv_err e;
	int rc = gv_client_stream(c, path, body, on_stream_line, &s, &e);

	*summary = NULL;
	if (rc < 0)
		cli_error("%s", e.msg);
	else if (!json_is_true(json_object_get(s.result, "ok")))
		cli_error("%s", json_string_value(json_object_get(s.result, "error"))
				? json_string_value(json_object_get(s.result, "error"))
				: "the job ended without a result");
	else
		*summary = json_incref(json_object_get(s.result, "summary"));
	rc = rc == 0 && json_is_true(json_object_get(s.result, "ok")) ? 0 : -1;
	json_decref(s.result);
	return rc;
}
