/* SPDX-License-Identifier: MIT */
/* cli.h - what the gridvm subcommands share: the agent connection,
 * errors printed once, JSON and table output. */
#ifndef GRIDVM_CLI_H
#define GRIDVM_CLI_H

#include <gridvm/api/client.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

struct cli_cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
};

/* Dispatch argv[1] among @cmds; prints help for "help", -h, --help. */
int cli_dispatch(const char *prog, const struct cli_cmd *cmds, int argc, char **argv);

/* Connected client (starting the agent if needed) or exit(1) with a message. */
gv_client *cli_connect(void);

/* Call the API; on failure print "gridvm: error: ..." and return -1. */
int cli_call(gv_client *c, const char *method, const char *path, json_t *body,
	     json_t **resp);

extern volatile sig_atomic_t cli_interrupted;

/* A long agent job (image build/fetch, migrate): POST @body to @path and
 * read its streamed lines: "PROGRESS <json>" go to @progress, other text
 * lines to @text (either may be NULL), and the last line
 * "GRIDVM-RESULT <json>" decides. @return 0 and *summary (new reference,
 * may be NULL) if the job succeeded; else prints the error, returns -1. */
int cli_stream(gv_client *c, const char *path, json_t *body,
	       void (*progress)(void *ud, json_t *p), void (*text)(void *ud, const char *l),
	       void *ud, json_t **summary);

/* Progress of a streamed migration (@ud points to a bool: show it). */
void cli_migrate_progress(void *ud, json_t *p);

int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_print_json(json_t *j);
bool cli_wants_help(int argc, char **argv);

/* Absolute form of a path that may not exist yet (its directory must). */
char *cli_abspath(const char *path);

/* URL-safe name check before it goes into a path. */
bool cli_name_ok(const char *name, const char *what);

int cmd_run(int argc, char **argv);
int cmd_vm(int argc, char **argv);
int cmd_image(int argc, char **argv);
int cmd_host(int argc, char **argv);
int cmd_checkpoint(int argc, char **argv);
int cmd_migrate(int argc, char **argv);

/* Print a VM's job output to stdout/stderr; with @follow until the job
 * ends. Returns
 * the job's exit code, or -1 if the VM ended without one. */
int cli_follow_job(gv_client *c, const char *name, bool follow);

#endif
