/* SPDX-License-Identifier: MIT */
/*
 * expr_parse.c - the requirements/rank language's front end: an on-demand
 * lexer and a recursive-descent parser that emits the stack program of
 * expr_internal.h directly (no tree). Errors name the 1-based position of
 * the offending token; the first error from the left wins.
 */
#include "expr_internal.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum tok {
	T_END,
	T_NUM,
	T_STR,
	T_IDENT,
	T_TRUE,
	T_FALSE,
	T_IN,
	T_LPAREN,
	T_RPAREN,
	T_LBRACK,
	T_RBRACK,
	T_COMMA,
	T_NOT,
	T_MINUS,
	T_PLUS,
	T_STAR,
	T_SLASH,
	T_LT,
	T_LE,
	T_GT,
	T_GE,
	T_EQ,
	T_NE,
	T_AND,
	T_OR,
};

struct token {
	enum tok t;
	size_t pos, len; /* 0-based, in the source */
	double num;	 /* T_NUM */
	const char *s;	 /* T_STR, T_IDENT: decoded, NUL-terminated, in the pool */
	size_t slen;
};

struct parser {
	const char *src;
	size_t len, p; /* p: where the lexer goes on */
	struct token cur, prev;
	bool have_prev;
	int depth;
	gv_expr *x;
	size_t pool_used;
	uint32_t cap, sp;
	gv_err *e;
};

/* Binary operators by precedence level, loosest first. */
#define NLEVELS 7
static const struct {
	enum tok t;
	enum gv_expr_op op;
} binops[NLEVELS][4] = {
	{ { T_OR, GV_OP_OR } },
	{ { T_AND, GV_OP_AND } },
	{ { T_IN, GV_OP_IN } },
	{ { T_EQ, GV_OP_EQ }, { T_NE, GV_OP_NE } },
	{ { T_LT, GV_OP_LT }, { T_LE, GV_OP_LE },
	  { T_GT, GV_OP_GT }, { T_GE, GV_OP_GE } },
	{ { T_PLUS, GV_OP_ADD }, { T_MINUS, GV_OP_SUB } },
	{ { T_STAR, GV_OP_MUL }, { T_SLASH, GV_OP_DIV } },
};

static int perr(struct parser *ps, size_t pos, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int perr(struct parser *ps, size_t pos, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return gv_err_set(ps->e, -EINVAL, "at position %zu: %s", pos + 1, msg);
}

/* Source text for a message: at most 32 bytes, bytes outside printable
 * ASCII as \xNN (messages end up in JSON, which must be UTF-8), "..."
 * when cut. @buf holds at least 140 bytes. */
static const char *show(const char *s, size_t len, char *buf)
{
	size_t i, o = 0;

	for (i = 0; i < len && i < 32; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c < 0x7f)
			buf[o++] = (char)c;
		else
			o += (size_t)sprintf(buf + o, "\\x%02x", c);
	}
	if (i < len)
		o += (size_t)sprintf(buf + o, "...");
	buf[o] = '\0';
	return buf;
}

static const char *show_tok(const struct parser *ps, const struct token *t, char *buf)
{
	return show(ps->src + t->pos, t->len, buf);
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_ident_start(char c)
{
	return is_alpha(c) || c == '_';
}

static bool is_ident_char(char c)
{
	return is_ident_start(c) || is_digit(c) || c == '.';
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static size_t ident_run(const char *s, size_t p)
{
	size_t q = p;

	while (is_ident_char(s[q]))
		q++;
	return q - p;
}

static int lex_string(struct parser *ps, size_t p)
{
	const char *s = ps->src;
	char *out = ps->x->pool + ps->pool_used, *o = out, buf[140];
	size_t q = p + 1;

	for (;;) {
		if (q >= ps->len)
			return perr(ps, p, "unterminated string");
		if (s[q] == '"')
			break;
		if (s[q] == '\\') {
			if (q + 1 >= ps->len)
				return perr(ps, p, "unterminated string");
			if (s[q + 1] != '"' && s[q + 1] != '\\')
				return perr(ps, q,
					    "unknown escape '%s' in a string (only \\\" "
					    "and \\\\ are escapes)",
					    show(s + q, 2, buf));
			q++;
		}
		*o++ = s[q++];
	}
	*o++ = '\0';
	ps->cur.t = T_STR;
	ps->cur.s = out;
	ps->cur.slen = (size_t)(o - out) - 1;
	ps->cur.len = q + 1 - p;
	ps->pool_used += (size_t)(o - out);
	ps->p = q + 1;
	return 0;
}

/* The multiplier of a size unit at s[q] (K, Ki, KiB, KB in either case, B),
 * and its length in *n; 0 when it is none. */
static double unit_at(const char *s, size_t q, size_t *n)
{
	double mult;
	size_t k = 1;

	switch (s[q]) {
	case 'K': case 'k': mult = 0x1p10; break;
	case 'M': case 'm': mult = 0x1p20; break;
	case 'G': case 'g': mult = 0x1p30; break;
	case 'T': case 't': mult = 0x1p40; break;
	case 'B': case 'b': *n = 1; return 1;
	default: return 0;
	}
	if (s[q + k] == 'i')
		k++;
	if (s[q + k] == 'B' || s[q + k] == 'b')
		k++;
	*n = k;
	return mult;
}

static int lex_number(struct parser *ps, size_t p)
{
	const char *s = ps->src;
	double m = 0, scale = 1, mult = 1;
	size_t q = p, ulen = 0;
	char buf[140];

	while (is_digit(s[q]))
		m = m * 10 + (s[q++] - '0');
	if (s[q] == '.' && is_digit(s[q + 1])) {
		for (q++; is_digit(s[q]); q++) {
			m = m * 10 + (s[q] - '0');
			scale *= 10;
		}
	}
	if (is_alpha(s[q])) {
		mult = unit_at(s, q, &ulen);
		if (!mult || is_ident_char(s[q + ulen]))
			return perr(ps, q, "unknown unit '%s' (%s)",
				    show(s + q, ident_run(s, q), buf),
				    "K, M, G, T or KiB, MiB, GiB, TiB");
	} else if (is_ident_char(s[q])) {
		return perr(ps, p, "malformed number '%s'",
			    show(s + p, ident_run(s, p), buf));
	}
	ps->cur.num = m / scale * mult;
	if (!isfinite(ps->cur.num))
		return perr(ps, p, "number too large '%s'",
			    show(s + p, q + ulen - p, buf));
	ps->cur.t = T_NUM;
	ps->cur.len = q + ulen - p;
	ps->p = q + ulen;
	return 0;
}

static int lex_ident(struct parser *ps, size_t p)
{
	size_t n = ident_run(ps->src, p);
	char *out = ps->x->pool + ps->pool_used;

	memcpy(out, ps->src + p, n);
	out[n] = '\0';
	if (!strcmp(out, "true")) {
		ps->cur.t = T_TRUE;
	} else if (!strcmp(out, "false")) {
		ps->cur.t = T_FALSE;
	} else if (!strcmp(out, "in")) {
		ps->cur.t = T_IN;
	} else {
		ps->cur.t = T_IDENT;
		ps->cur.s = out;
		ps->cur.slen = n;
		ps->pool_used += n + 1;
	}
	ps->cur.len = n;
	ps->p = p + n;
	return 0;
}

static int op1(struct parser *ps, enum tok t)
{
	ps->cur.t = t;
	ps->cur.len = 1;
	ps->p = ps->cur.pos + 1;
	return 0;
}

/* An operator of one or two characters: @two when s[p+1] is @second. */
static int op2(struct parser *ps, char second, enum tok two, enum tok one)
{
	size_t p = ps->cur.pos;

	if (ps->src[p + 1] == second) {
		ps->cur.t = two;
		ps->cur.len = 2;
	} else {
		ps->cur.t = one;
		ps->cur.len = 1;
	}
	ps->p = p + ps->cur.len;
	return 0;
}

/* The next token into ps->cur. */
static int lex(struct parser *ps)
{
	const char *s = ps->src;
	size_t p = ps->p;
	unsigned char c;

	while (p < ps->len && is_space(s[p]))
		p++;
	memset(&ps->cur, 0, sizeof(ps->cur));
	ps->cur.pos = p;
	ps->p = p;
	if (p >= ps->len) {
		ps->cur.t = T_END;
		return 0;
	}
	c = (unsigned char)s[p];
	switch (c) {
	case '(': return op1(ps, T_LPAREN);
	case ')': return op1(ps, T_RPAREN);
	case '[': return op1(ps, T_LBRACK);
	case ']': return op1(ps, T_RBRACK);
	case ',': return op1(ps, T_COMMA);
	case '+': return op1(ps, T_PLUS);
	case '-': return op1(ps, T_MINUS);
	case '*': return op1(ps, T_STAR);
	case '/': return op1(ps, T_SLASH);
	case '!': return op2(ps, '=', T_NE, T_NOT);
	case '<': return op2(ps, '=', T_LE, T_LT);
	case '>': return op2(ps, '=', T_GE, T_GT);
	case '=':
		if (s[p + 1] != '=')
			return perr(ps, p, "'=' is not an operator: use '==' to compare");
		return op2(ps, '=', T_EQ, T_END);
	case '&':
		if (s[p + 1] != '&')
			return perr(ps, p, "'&' is not an operator: use '&&'");
		return op2(ps, '&', T_AND, T_END);
	case '|':
		if (s[p + 1] != '|')
			return perr(ps, p, "'|' is not an operator: use '||'");
		return op2(ps, '|', T_OR, T_END);
	case '"': return lex_string(ps, p);
	}
	if (is_digit((char)c))
		return lex_number(ps, p);
	if (is_ident_start((char)c))
		return lex_ident(ps, p);
	if (c > 0x20 && c < 0x7f)
		return perr(ps, p, "unknown character '%c'", c);
	return perr(ps, p, "unknown character '\\x%02x'", c);
}

static int advance(struct parser *ps)
{
	ps->prev = ps->cur;
	ps->have_prev = true;
	return lex(ps);
}

/* Append an instruction that changes the stack's height by @delta. */
static int emit(struct parser *ps, enum gv_expr_op op, const gv_expr_val *v, int delta)
{
	gv_expr *x = ps->x;
	struct gv_expr_insn *in;

	if (x->n == ps->cap) {
		uint32_t cap = ps->cap ? ps->cap * 2 : 16;
		void *p = realloc(x->code, cap * sizeof(*x->code));

		if (!p)
			return gv_err_set(ps->e, -ENOMEM, "out of memory");
		x->code = p;
		ps->cap = cap;
	}
	in = &x->code[x->n++];
	memset(in, 0, sizeof(*in));
	in->op = (uint8_t)op;
	if (v)
		in->v = *v;
	ps->sp = (uint32_t)((int)ps->sp + delta);
	if (ps->sp > GV_EXPR_STACK_MAX) /* cannot happen within the depth limit */
		return perr(ps, ps->cur.pos, "the expression is too complex");
	if (ps->sp > x->stack)
		x->stack = ps->sp;
	return 0;
}

static int deeper(struct parser *ps, const struct token *t)
{
	if (++ps->depth > GV_EXPR_MAX_DEPTH)
		return perr(ps, t->pos, "nested deeper than %d levels",
			    GV_EXPR_MAX_DEPTH);
	return 0;
}

static int expected_value(struct parser *ps)
{
	char buf[140];

	if (ps->have_prev)
		return perr(ps, ps->cur.pos, "expected a value after '%s'",
			    show_tok(ps, &ps->prev, buf));
	if (ps->cur.t == T_END)
		return perr(ps, ps->cur.pos, "empty expression");
	return perr(ps, ps->cur.pos, "expected a value, not '%s'",
		    show_tok(ps, &ps->cur, buf));
}

/* A scalar literal's value; false when the token is none. */
static bool literal(const struct token *t, gv_expr_val *v)
{
	memset(v, 0, sizeof(*v));
	switch (t->t) {
	case T_NUM:
		v->type = GV_V_NUM;
		v->u.num = t->num;
		return true;
	case T_STR:
		v->type = GV_V_STR;
		v->u.str.s = t->s;
		v->u.str.len = t->slen;
		return true;
	case T_TRUE:
	case T_FALSE:
		v->type = GV_V_BOOL;
		v->u.b = t->t == T_TRUE;
		return true;
	default:
		return false;
	}
}

/* '[' [ ELEM { ',' ELEM } ] ']' with ELEM a string, boolean or (negative)
 * number: LIST, then one PUSH per element. */
static int parse_list(struct parser *ps)
{
	uint32_t at = ps->x->n, count = 0;
	gv_expr_val v = { .type = GV_V_LIST };
	char buf[140];
	int r;

	if ((r = deeper(ps, &ps->cur)) || (r = emit(ps, GV_OP_LIST, &v, 1)) ||
	    (r = advance(ps)))
		return r;
	while (ps->cur.t != T_RBRACK || count) {
		bool neg = ps->cur.t == T_MINUS;

		if (neg && (r = advance(ps)))
			return r;
		if ((neg && ps->cur.t != T_NUM) || !literal(&ps->cur, &v))
			return perr(ps, ps->cur.pos,
				    "expected a string, number or boolean after '%s'",
				    show_tok(ps, &ps->prev, buf));
		if (neg)
			v.u.num = -v.u.num;
		if ((r = emit(ps, GV_OP_PUSH, &v, 0)) || (r = advance(ps)))
			return r;
		count++;
		if (ps->cur.t == T_RBRACK)
			break;
		if (ps->cur.t != T_COMMA)
			return perr(ps, ps->cur.pos, "',' or ']' expected");
		if ((r = advance(ps)))
			return r;
	}
	ps->x->code[at].v.u.list.n = count;
	ps->depth--;
	return advance(ps);
}

static int parse_level(struct parser *ps, int level);

static int parse_primary(struct parser *ps)
{
	gv_expr_val v;
	int r;

	if (literal(&ps->cur, &v)) {
		r = emit(ps, GV_OP_PUSH, &v, 1);
	} else if (ps->cur.t == T_IDENT) {
		v.type = GV_V_STR;
		v.u.str.s = ps->cur.s;
		v.u.str.len = ps->cur.slen;
		r = emit(ps, GV_OP_ATTR, &v, 1);
	} else if (ps->cur.t == T_LBRACK) {
		return parse_list(ps);
	} else if (ps->cur.t == T_LPAREN) {
		if ((r = deeper(ps, &ps->cur)) || (r = advance(ps)) ||
		    (r = parse_level(ps, 0)))
			return r;
		if (ps->cur.t != T_RPAREN)
			return perr(ps, ps->cur.pos, "')' expected");
		ps->depth--;
	} else {
		return expected_value(ps);
	}
	return r ? r : advance(ps);
}

/* { '!' | '-' } PRIMARY; a negated number literal is folded. */
static int parse_unary(struct parser *ps)
{
	enum gv_expr_op op;
	uint32_t at;
	int r;

	if (ps->cur.t != T_NOT && ps->cur.t != T_MINUS)
		return parse_primary(ps);
	op = ps->cur.t == T_NOT ? GV_OP_NOT : GV_OP_NEG;
	if ((r = deeper(ps, &ps->cur)) || (r = advance(ps)))
		return r;
	at = ps->x->n;
	if ((r = parse_unary(ps)))
		return r;
	ps->depth--;
	if (op == GV_OP_NEG && ps->x->n == at + 1 && ps->x->code[at].op == GV_OP_PUSH &&
	    ps->x->code[at].v.type == GV_V_NUM) {
		ps->x->code[at].v.u.num = -ps->x->code[at].v.u.num;
		return 0;
	}
	return emit(ps, op, NULL, 0);
}

static int binop(int level, enum tok t)
{
	for (int i = 0; i < 4 && binops[level][i].t != T_END; i++)
		if (binops[level][i].t == t)
			return (int)binops[level][i].op;
	return -1;
}

/* LEVEL(n) = LEVEL(n+1) { OP(n) LEVEL(n+1) }, left-associative. && and ||
 * jump over their right operand when the left one decides. */
static int parse_level(struct parser *ps, int level)
{
	int r, op;

	if (level == NLEVELS)
		return parse_unary(ps);
	r = parse_level(ps, level + 1);
	while (!r && (op = binop(level, ps->cur.t)) >= 0) {
		bool jumps = op == GV_OP_AND || op == GV_OP_OR;
		enum gv_expr_op jop = op == GV_OP_AND ? GV_OP_JFALSE : GV_OP_JTRUE;
		uint32_t jump = ps->x->n;

		if (jumps && (r = emit(ps, jop, NULL, 0)))
			break;
		if ((r = advance(ps)) || (r = parse_level(ps, level + 1)) ||
		    (r = emit(ps, (enum gv_expr_op)op, NULL, -1)))
			break;
		if (jumps)
			ps->x->code[jump].arg = ps->x->n;
	}
	return r;
}

int gv_expr_parse(const char *src, gv_expr **out, gv_err *e)
{
	struct parser ps = { .e = e };
	char buf[140];
	gv_expr *x;
	size_t len;
	int r;

	if (out)
		*out = NULL;
	if (!src || !out)
		return gv_err_set(e, -EINVAL, "no expression");
	len = strnlen(src, GV_EXPR_MAX_LEN + 1);
	if (len > GV_EXPR_MAX_LEN)
		return gv_err_set(e, -EINVAL, "at position %d: %s %d characters",
				  GV_EXPR_MAX_LEN + 1, "the expression is longer than",
				  GV_EXPR_MAX_LEN);
	x = calloc(1, sizeof(*x));
	if (x) {
		x->src = strdup(src);
		/* each token decodes to at most its length plus a NUL */
		x->pool = malloc(2 * len + 2);
	}
	if (!x || !x->src || !x->pool) {
		gv_expr_free(x);
		return gv_err_set(e, -ENOMEM, "out of memory");
	}
	ps.src = x->src;
	ps.len = len;
	ps.x = x;
	r = lex(&ps);
	if (!r)
		r = parse_level(&ps, 0);
	if (!r && ps.cur.t != T_END)
		r = perr(&ps, ps.cur.pos, "unexpected '%s' after the end of %s",
			 show_tok(&ps, &ps.cur, buf), "the expression");
	if (r) {
		gv_expr_free(x);
		return r;
	}
	*out = x;
	return 0;
}

void gv_expr_free(gv_expr *x)
{
	if (!x)
		return;
	free(x->src);
	free(x->pool);
	free(x->code);
	free(x);
}

const char *gv_expr_source(const gv_expr *x)
{
	return x ? x->src : NULL;
}
