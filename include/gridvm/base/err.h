/* SPDX-License-Identifier: MIT */
/*
 * err.h - the library's one error convention.
 *
 * Every fallible library function returns 0 (or a count) on success and a
 * negative errno on failure, and fills a gv_err with one line a user can
 * read. Callers log it once, at the boundary (the CLI, the agent's reply).
 * A JSON reply that carries an error is built by gv_err_json only.
 */
#ifndef GRIDVM_BASE_ERR_H
#define GRIDVM_BASE_ERR_H

#include <jansson.h>

typedef struct gv_err {
	char msg[512];
} gv_err;

/* Format the message into @e (if not NULL). @return @code, so that
 * `return gv_err_set(e, -EINVAL, "...")` reads as one statement. */
int gv_err_set(gv_err *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prefix the message already in @e with "@prefix: ". @return @code. */
int gv_err_wrap(gv_err *e, int code, const char *prefix);

/* The error reply of the agents' protocols (the HTTP API's error bodies,
 * the agent-to-agent control replies, a streamed job's result):
 * {"ok": false, "error": MSG, "errno": -code}. New reference. */
json_t *gv_err_json(int code, const char *msg);

/* The same with the message formatted. */
json_t *gv_err_jsonf(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
