/* SPDX-License-Identifier: MIT */
/*
 * client.h - the CLI's side of the agent API (libcurl over the unix
 * socket). Starts a local agent when none answers.
 */
#ifndef GRIDVM_CLIENT_H
#define GRIDVM_CLIENT_H

#include <gridvm/base/err.h>
#include <gridvm/base/util.h>
#include <jansson.h>

typedef struct gv_client gv_client;

/* The agent's socket: $GRIDVM_SOCKET, else DATADIR/gridvmd.sock. */
char *gv_client_socket_path(void);

/* Connect to the agent at @sock. If nothing answers and @autostart_bin is
 * not NULL, start that gridvmd binary in the background and wait for it.
 * On failure a negative errno, and @e says why. */
int gv_client_new(const char *sock, const char *autostart_bin, gv_client **out,
		  gv_err *e) GV_WUR;
void gv_client_free(gv_client *c);

/* Send @method @path with @body (JSON or NULL, borrowed). On HTTP 2xx
 * returns 0 and *resp (new reference; may be NULL when not JSON). On an
 * API error returns -ENOENT (404), -EBUSY (409) or -EIO with @e holding
 * the body's "error"; -ECONNREFUSED if the agent cannot be reached. */
int gv_client_call(gv_client *c, const char *method, const char *path,
		   json_t *body, json_t **resp, gv_err *e) GV_WUR;

/* GET returning raw bytes plus two headers (for logs). */
int gv_client_get_raw(gv_client *c, const char *path, char **data, size_t *len,
		      char state[16], uint64_t *next_offset, gv_err *e) GV_WUR;

/* POST whose text response is streamed to @cb line by line. */
typedef void (*gv_line_cb)(void *ud, const char *line);
int gv_client_stream(gv_client *c, const char *path, json_t *body, gv_line_cb cb,
		     void *ud, gv_err *e) GV_WUR;

#endif
