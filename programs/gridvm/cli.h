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

/* POST the VM definition @d (borrowed) to /v1/vms. A user other than
 * root sends its inputs packed (input_tar, made here with the user's
 * rights): the agent reads host paths only for admins. -1: said why. */
int cli_create_vm(gv_client *c, json_t *d);

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
int cmd_ca(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_checkpoint(int argc, char **argv);
int cmd_migrate(int argc, char **argv);

/* Print a VM's job output to stdout/stderr; with @follow until the job
 * ends. Returns the job's exit code, -1 if the VM ended without one, -2
 * if the log could not be read (said why). */
int cli_follow_job(gv_client *c, const char *name, bool follow);

/* Print the job frames in @buf (stdout, stderr, guest messages); an exit
 * frame sets *exit_code. @return the bytes used (a partial frame stays). */
size_t cli_frames_out(const uint8_t *buf, size_t len, int *exit_code);

/* ---- the grid (grid.c): requests to the controller ---- */

/* Is a controller given (--controller or GRIDVM_CONTROLLER)? */
bool cli_grid_configured(void);
/* Send @req (reference taken) to the controller; on failure print the
 * error once and return -1. *rep: the reply (new reference). */
int cli_grid_call(json_t *req, json_t **rep);
/* The same, waiting up to @timeout_ms (cli_grid_call: 60 s). */
int cli_grid_call_within(json_t *req, json_t **rep, int timeout_ms);
/* The controller's address and the grid key (for transfers). */
int cli_grid_peer(char *host, size_t len, int *port, uint8_t key[32]);

/* Pack the inputs (PATH[:GUEST_PATH] strings) and upload them to the
 * controller; add "upload", "input_bytes", "input_paths" to @req. */
int cli_grid_upload_inputs(json_t *specs, json_t *req);

int cmd_submit(int argc, char **argv);
int cmd_jobs(int argc, char **argv);
int cmd_job(int argc, char **argv);
int cmd_hosts(int argc, char **argv);
int cmd_status(int argc, char **argv);
/* gridvm host drain|undrain|label (builtin-hosts.c) */
int cli_host_drain(int argc, char **argv);
int cli_host_undrain(int argc, char **argv);
int cli_host_label(int argc, char **argv);

#endif
