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
 * strings); an attribute the host does not have is undefined, and any
 * comparison with an undefined value is false. Pure code: no I/O, no
 * clock. The grammar is in docs/expressions.md.
 */
#ifndef GRIDVM_SCHED_EXPR_H
#define GRIDVM_SCHED_EXPR_H

#include <gridvm/base/err.h>
#include <jansson.h>
#include <stdbool.h>

typedef struct gv_expr gv_expr;

/* Parse @src. On a syntax error @return -EINVAL and @e says where:
 * "at position 14 (1-based column): expected a value after '&&'". */
int gv_expr_parse(const char *src, gv_expr **out, gv_err *e)
	__attribute__((warn_unused_result));
void gv_expr_free(gv_expr *x);
/* The text it was parsed from. */
const char *gv_expr_source(const gv_expr *x);

/* As a requirement: true when the expression holds for @attrs (an
 * undefined result is false). NULL @x matches everything. */
bool gv_expr_match(const gv_expr *x, const json_t *attrs);
/* As a rank: its numeric value for @attrs (true 1, false 0, undefined or
 * a string 0). NULL @x ranks 0. */
double gv_expr_rank(const gv_expr *x, const json_t *attrs);

#endif
