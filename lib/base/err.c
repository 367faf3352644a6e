/* SPDX-License-Identifier: MIT */
/* err.c - gv_err: one readable line per failure (see err.h). */
#include <gridvm/base/err.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int gv_err_set(gv_err *e, int code, const char *fmt, ...)
{
	va_list ap;

	if (e) {
		va_start(ap, fmt);
		vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
		va_end(ap);
	}
	return code;
}

int gv_err_wrap(gv_err *e, int code, const char *prefix)
{
	size_t plen, mlen;

	if (!e)
		return code;
	plen = strlen(prefix);
	if (plen + 2 >= sizeof(e->msg))
		plen = sizeof(e->msg) - 3;
	mlen = strnlen(e->msg, sizeof(e->msg) - 1);
	if (plen + 2 + mlen >= sizeof(e->msg))
		mlen = sizeof(e->msg) - 1 - plen - 2;
	memmove(e->msg + plen + 2, e->msg, mlen);
	memcpy(e->msg, prefix, plen);
	memcpy(e->msg + plen, ": ", 2);
	e->msg[plen + 2 + mlen] = '\0';
	return code;
}

json_t *gv_err_json(int code, const char *msg)
{
	return json_pack("{s:b, s:s, s:i}", "ok", 0, "error", msg ? msg : "failed",
			 "errno", code < 0 ? -code : code);
}

json_t *gv_err_jsonf(int code, const char *fmt, ...)
{
	gv_err e;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(e.msg, sizeof(e.msg), fmt, ap);
	va_end(ap);
	return gv_err_json(code, e.msg);
}
