/* SPDX-License-Identifier: MIT */
/*
 * expr.h - the requirements and rank language of grid jobs.
 *
 * A job says which hosts it can run on (`--requires`) and which it
 * prefers (`--rank`) with a small expression over the host's attributes
 * and resources, e.g.
 *
 *   memory >= 4G && arch == "x86_64" && "cell" in labels
 *   cpus * 2 + (accel == "kvm") * 10
 *
 * The attributes are a JSON object (strings, numbers, booleans, arrays of
 * strings). An attribute the host does not have is undefined, and so is
 * any comparison with it, a string compared with a number, arithmetic on
 * a string and a division by zero; && and || use three-valued logic
 * (false && undefined is false, true || undefined is true). Evaluation
 * never fails. Pure code: no I/O, no clock, no global state; a parsed
 * expression may be evaluated from several threads at once. The grammar,
 * the types and the host attributes are in docs/expressions.md.
 */
#ifndef GRIDVM_SCHED_EXPR_H
#define GRIDVM_SCHED_EXPR_H

#include <gridvm/base/err.h>
#include <jansson.h>
#include <stdbool.h>

typedef struct gv_expr gv_expr;

/* Parse and compile @src (at most 4096 characters, nested at most 64
 * deep) into *@out, which the caller frees with gv_expr_free.
 * @return 0, -EINVAL on a syntax error (*@out is NULL, and @e says where
 * with the 1-based position of the offending token: "at position 12:
 * expected a value after '&&'"), or -ENOMEM. */
int gv_expr_parse(const char *src, gv_expr **out, gv_err *e)
	__attribute__((warn_unused_result));
/* Free @x; NULL is fine. */
void gv_expr_free(gv_expr *x);
/* The text it was parsed from (owned by @x); NULL for NULL. */
const char *gv_expr_source(const gv_expr *x);

/* As a requirement: true when the expression is the boolean true for
 * @attrs (undefined, false or a non-boolean result is false). NULL @x
 * matches everything. */
bool gv_expr_match(const gv_expr *x, const json_t *attrs);
/* As a rank: its numeric value for @attrs (true 1, false 0; undefined, a
 * string or a list 0). Always finite. NULL @x ranks 0. */
double gv_expr_rank(const gv_expr *x, const json_t *attrs);

typedef enum gv_expr_kind {
	GV_EXPR_UNDEFINED,
	GV_EXPR_BOOL,
	GV_EXPR_NUMBER,
	GV_EXPR_STRING,
	GV_EXPR_LIST,
} gv_expr_kind;

/* The result's kind for @attrs, e.g. to explain why a job matches no
 * host ("undefined on every host"); *@num (if not NULL) gets what
 * gv_expr_rank would return. NULL @x is undefined. */
gv_expr_kind gv_expr_eval(const gv_expr *x, const json_t *attrs, double *num);
/* "undefined", "boolean", "number", "string" or "list". */
const char *gv_expr_kind_name(gv_expr_kind k);

#endif
