/* SPDX-License-Identifier: MIT */
/*
 * expr_eval.c - the requirements/rank language's evaluator: one pass over
 * the stack program (expr_internal.h) with the host's attributes. It
 * cannot fail: whatever does not make sense (an unknown attribute, a
 * string compared with a number, arithmetic on a string, a division by
 * zero) is undefined, and undefined spreads through every operator except
 * where && and || are decided by their other operand.
 */
#include "expr_internal.h"

#include <math.h>
#include <string.h>

static const gv_expr_val undef = { .type = GV_V_UNDEF };

static gv_expr_val boolv(bool b)
{
	gv_expr_val v = { .type = GV_V_BOOL, .u.b = b };

	return v;
}

static gv_expr_val numv(double n)
{
	gv_expr_val v = { .type = GV_V_NUM, .u.num = n };

	return isfinite(n) ? v : undef;
}

static gv_expr_val from_json(const json_t *j)
{
	gv_expr_val v = { .type = GV_V_UNDEF };

	if (!j)
		return v;
	switch (json_typeof(j)) {
	case JSON_STRING:
		v.type = GV_V_STR;
		v.u.str.s = json_string_value(j);
		v.u.str.len = json_string_length(j);
		break;
	case JSON_INTEGER:
		v.type = GV_V_NUM;
		v.u.num = (double)json_integer_value(j);
		break;
	case JSON_REAL:
		v.type = GV_V_NUM;
		v.u.num = json_real_value(j);
		break;
	case JSON_TRUE:
	case JSON_FALSE:
		v.type = GV_V_BOOL;
		v.u.b = json_is_true(j);
		break;
	case JSON_ARRAY:
		v.type = GV_V_LIST;
		v.u.list.json = j;
		break;
	default: /* null, object */
		break;
	}
	return v;
}

/* In arithmetic a boolean counts 1 or 0 (so a rank can add conditions:
 * `(accel == "kvm") * 10`). */
static bool arith(const gv_expr_val *v, double *d)
{
	if (v->type == GV_V_NUM)
		*d = v->u.num;
	else if (v->type == GV_V_BOOL)
		*d = v->u.b;
	else
		return false;
	return true;
}

/* -1, 0 or 1; 2 when @a and @b do not compare (different types, lists,
 * undefined). Strings compare bytewise, case-sensitive. */
static int cmp(const gv_expr_val *a, const gv_expr_val *b)
{
	size_t n;
	int c;

	if (a->type != b->type)
		return 2;
	switch (a->type) {
	case GV_V_NUM:
		return (a->u.num > b->u.num) - (a->u.num < b->u.num);
	case GV_V_BOOL:
		return (int)a->u.b - (int)b->u.b;
	case GV_V_STR:
		n = a->u.str.len < b->u.str.len ? a->u.str.len : b->u.str.len;
		c = n ? memcmp(a->u.str.s, b->u.str.s, n) : 0;
		if (c)
			return c < 0 ? -1 : 1;
		return (a->u.str.len > b->u.str.len) - (a->u.str.len < b->u.str.len);
	default:
		return 2;
	}
}

static gv_expr_val in(const gv_expr_val *a, const gv_expr_val *l)
{
	if (l->type != GV_V_LIST || a->type == GV_V_UNDEF || a->type == GV_V_LIST)
		return undef;
	if (l->u.list.json) {
		size_t i, n = json_array_size(l->u.list.json);

		for (i = 0; i < n; i++) {
			gv_expr_val el = from_json(json_array_get(l->u.list.json, i));

			if (cmp(a, &el) == 0)
				return boolv(true);
		}
	} else {
		for (uint32_t i = 0; i < l->u.list.n; i++)
			if (cmp(a, &l->u.list.lit[i].v) == 0)
				return boolv(true);
	}
	return boolv(false);
}

/* Kleene's three-valued logic; a non-boolean counts as undefined. */
static gv_expr_val logic(bool is_and, const gv_expr_val *a, const gv_expr_val *b)
{
	bool da = a->type == GV_V_BOOL, db = b->type == GV_V_BOOL;

	if ((da && a->u.b != is_and) || (db && b->u.b != is_and))
		return boolv(!is_and); /* false decides &&, true decides || */
	if (da && db)
		return boolv(is_and);
	return undef;
}

static gv_expr_val binary(enum gv_expr_op op, const gv_expr_val *a, const gv_expr_val *b)
{
	double x, y;
	int c;

	switch (op) {
	case GV_OP_MUL:
	case GV_OP_DIV:
	case GV_OP_ADD:
	case GV_OP_SUB:
		if (!arith(a, &x) || !arith(b, &y))
			return undef;
		if (op == GV_OP_MUL)
			return numv(x * y);
		if (op == GV_OP_ADD)
			return numv(x + y);
		if (op == GV_OP_SUB)
			return numv(x - y);
		return y == 0 ? undef : numv(x / y);
	case GV_OP_LT:
	case GV_OP_LE:
	case GV_OP_GT:
	case GV_OP_GE:
		if (a->type != GV_V_NUM && a->type != GV_V_STR)
			return undef;
		c = cmp(a, b);
		if (c == 2)
			return undef;
		if (op == GV_OP_LT)
			return boolv(c < 0);
		if (op == GV_OP_LE)
			return boolv(c <= 0);
		if (op == GV_OP_GT)
			return boolv(c > 0);
		return boolv(c >= 0);
	case GV_OP_EQ:
	case GV_OP_NE:
		c = cmp(a, b);
		if (c == 2)
			return undef;
		return boolv((c == 0) == (op == GV_OP_EQ));
	case GV_OP_IN:
		return in(a, b);
	case GV_OP_AND:
	case GV_OP_OR:
		return logic(op == GV_OP_AND, a, b);
	default:
		return undef;
	}
}

static gv_expr_val run(const gv_expr *x, const json_t *attrs)
{
	gv_expr_val st[GV_EXPR_STACK_MAX], *top;
	uint32_t sp = 0, pc = 0;
	double d;

	while (pc < x->n) {
		const struct gv_expr_insn *in = &x->code[pc++];

		top = sp ? &st[sp - 1] : NULL;
		switch ((enum gv_expr_op)in->op) {
		case GV_OP_PUSH:
			st[sp++] = in->v;
			break;
		case GV_OP_LIST:
			st[sp] = in->v;
			st[sp++].u.list.lit = in + 1;
			pc += in->v.u.list.n;
			break;
		case GV_OP_ATTR:
			st[sp++] = from_json(json_object_get(attrs, in->v.u.str.s));
			break;
		case GV_OP_NOT:
			*top = top->type == GV_V_BOOL ? boolv(!top->u.b) : undef;
			break;
		case GV_OP_NEG:
			*top = arith(top, &d) ? numv(-d) : undef;
			break;
		case GV_OP_JFALSE:
			if (top->type == GV_V_BOOL && !top->u.b)
				pc = in->arg;
			break;
		case GV_OP_JTRUE:
			if (top->type == GV_V_BOOL && top->u.b)
				pc = in->arg;
			break;
		default: /* binary: the result replaces the left operand */
			top[-1] = binary((enum gv_expr_op)in->op, &top[-1], top);
			sp--;
			break;
		}
	}
	return sp ? st[sp - 1] : undef;
}

gv_expr_kind gv_expr_eval(const gv_expr *x, const json_t *attrs, double *num)
{
	gv_expr_val v = x ? run(x, attrs) : undef;
	gv_expr_kind k;
	double n = 0;

	switch (v.type) {
	case GV_V_NUM:
		k = GV_EXPR_NUMBER;
		n = v.u.num;
		break;
	case GV_V_BOOL:
		k = GV_EXPR_BOOL;
		n = v.u.b;
		break;
	case GV_V_STR:
		k = GV_EXPR_STRING;
		break;
	case GV_V_LIST:
		k = GV_EXPR_LIST;
		break;
	default:
		k = GV_EXPR_UNDEFINED;
		break;
	}
	if (num)
		*num = n;
	return k;
}

bool gv_expr_match(const gv_expr *x, const json_t *attrs)
{
	double n;

	if (!x)
		return true;
	return gv_expr_eval(x, attrs, &n) == GV_EXPR_BOOL && n != 0;
}

double gv_expr_rank(const gv_expr *x, const json_t *attrs)
{
	double n;

	(void)gv_expr_eval(x, attrs, &n);
	return n;
}

const char *gv_expr_kind_name(gv_expr_kind k)
{
	static const char *const names[] = {
		[GV_EXPR_UNDEFINED] = "undefined", [GV_EXPR_BOOL] = "boolean",
		[GV_EXPR_NUMBER] = "number",	   [GV_EXPR_STRING] = "string",
		[GV_EXPR_LIST] = "list",
	};

	return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}
