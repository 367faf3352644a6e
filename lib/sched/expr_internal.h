/* SPDX-License-Identifier: MIT */
/*
 * expr_internal.h - the compiled form of a requirements/rank expression,
 * shared by the parser (expr_parse.c) and the evaluator (expr_eval.c).
 *
 * An expression compiles to a small stack program in postfix order:
 * operands push a value, operators pop theirs and push the result. `&&`
 * and `||` skip their right operand with a jump when the left one already
 * decides (false / true), leaving it on the stack as the result. The
 * program never loops, so evaluation is one pass over it.
 */
#ifndef GRIDVM_SCHED_EXPR_INTERNAL_H
#define GRIDVM_SCHED_EXPR_INTERNAL_H

#include <gridvm/sched/expr.h>

#include <stdint.h>

#define GV_EXPR_MAX_LEN 4096 /* characters of source */
#define GV_EXPR_MAX_DEPTH 64 /* nested parentheses, brackets and unary operators */
/* Each of the 7 binary precedence levels keeps at most one pending left
 * operand per nesting level: 7 * (64 + 1) + 1 = 456 values at most. */
#define GV_EXPR_STACK_MAX 512

enum gv_expr_vtype {
	GV_V_UNDEF,
	GV_V_NUM,
	GV_V_STR,
	GV_V_BOOL,
	GV_V_LIST,
};

struct gv_expr_insn;

/* A value during evaluation. Strings and lists point into the program or
 * into the attribute object: nothing is owned, nothing is freed. */
typedef struct gv_expr_val {
	uint8_t type; /* enum gv_expr_vtype */
	union {
		double num;
		bool b;
		struct {
			const char *s;
			size_t len;
		} str;
		struct {
			const json_t *json;		 /* an attribute's array, or */
			const struct gv_expr_insn *lit; /* a literal's elements */
			uint32_t n;			 /* (count of lit) */
		} list;
	} u;
} gv_expr_val;

enum gv_expr_op {
	GV_OP_PUSH, /* push v */
	GV_OP_LIST, /* push a list literal: its v.u.list.n elements are the next
		     * instructions (GV_OP_PUSH of scalars), skipped here */
	GV_OP_ATTR, /* push attrs[v.u.str.s] (NUL-terminated) */
	GV_OP_NOT,
	GV_OP_NEG,
	GV_OP_MUL,
	GV_OP_DIV,
	GV_OP_ADD,
	GV_OP_SUB,
	GV_OP_LT,
	GV_OP_LE,
	GV_OP_GT,
	GV_OP_GE,
	GV_OP_EQ,
	GV_OP_NE,
	GV_OP_IN,
	GV_OP_AND,
	GV_OP_OR,
	GV_OP_JFALSE, /* top is false: jump to arg, keeping it (&&) */
	GV_OP_JTRUE,  /* top is true: jump to arg, keeping it (||) */
};

struct gv_expr_insn {
	uint8_t op; /* enum gv_expr_op */
	uint32_t arg;
	gv_expr_val v;
};

struct gv_expr {
	char *src;  /* the text, as given */
	char *pool; /* decoded string literals and attribute names */
	struct gv_expr_insn *code;
	uint32_t n;
	uint32_t stack; /* the most values on the stack at once */
};

#endif
