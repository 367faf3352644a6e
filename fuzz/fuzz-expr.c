/* SPDX-License-Identifier: MIT */
/*
 * fuzz-expr.c - libFuzzer harness for the requirements/rank language.
 * The input is a job's --requires or --rank text: it is parsed, and when
 * it parses, evaluated against a fixed host. Beyond crashes, leaks and
 * hangs, it aborts when a rule of the API breaks: a failed parse leaves
 * no expression and says "at position N: " with N within the text, in a
 * message that is printable ASCII; a rank is finite; match agrees with
 * eval; the source is kept as given.
 */
#include <gridvm/sched/expr.h>

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *host;

static const char host_json[] =
	"{\"name\": \"h1\", \"arch\": \"x86_64\", \"accel\": \"kvm\","
	" \"cpu_model\": \"AMD EPYC 7302\", \"cpu_flags\": [\"avx2\", \"sse4_2\"],"
	" \"cpus\": 8, \"cpus_free\": 6, \"memory\": 17179869184,"
	" \"memory_free\": 8589934592, \"disk\": 107374182400, \"disk_free\": 0,"
	" \"load\": 0.25, \"vms\": 2, \"site\": \"lyon\","
	" \"labels\": [\"cell\", \"gpu\"],"
	" \"images\": [\"bookworm\", \"trixie\"], \"a\": 1, \"b\": -2.5, \"c\": true,"
	" \"d\": null, \"e\": {\"x\": 1}, \"f\": [1, \"1\", true, null, [2]],"
	" \"s\": \"a\\u0000b\", \"big\": 9223372036854775807}";

static void check_msg(const char *msg, size_t len)
{
	unsigned long pos;
	int n = 0;

	for (const char *p = msg; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			abort();
	if (sscanf(msg, "at position %lu: %n", &pos, &n) != 1 || n == 0)
		abort();
	if (pos < 1 || pos > len + 1)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	gv_expr *x = (gv_expr *)&host;
	gv_err e = { "" };
	char *src;
	double n;
	gv_expr_kind k;
	int r;

	if (!host && !(host = json_loads(host_json, JSON_ALLOW_NUL, NULL)))
		abort();
	if (!(src = malloc(size + 1)))
		return 0;
	memcpy(src, data, size);
	src[size] = '\0';
	r = gv_expr_parse(src, &x, &e);
	if (r) {
		if (r != -EINVAL || x)
			abort();
		check_msg(e.msg, strlen(src));
	} else {
		if (!x || strcmp(gv_expr_source(x), src))
			abort();
		k = gv_expr_eval(x, host, &n);
		if (!isfinite(n) || gv_expr_rank(x, host) != n)
			abort();
		if (gv_expr_match(x, host) != (k == GV_EXPR_BOOL && n == 1))
			abort();
		(void)gv_expr_eval(x, NULL, &n); /* no attributes at all */
		if (!isfinite(n))
			abort();
		gv_expr_free(x);
	}
	free(src);
	return 0;
}
