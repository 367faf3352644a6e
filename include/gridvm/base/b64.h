/* SPDX-License-Identifier: MIT */
/* b64.h - base64 (RFC 4648, with padding) for bytes carried in JSON. */
#ifndef GRIDVM_BASE_B64_H
#define GRIDVM_BASE_B64_H

#include <stddef.h>
#include <stdint.h>

/* @len bytes as base64 text (malloc'd, NUL-terminated). */
char *gv_b64_encode(const void *buf, size_t len);
/* Decode @text (its length @tlen); *out malloc'd (may be empty), *len its
 * size. @return 0 or -EINVAL (not base64), -ENOMEM. */
int gv_b64_decode(const char *text, size_t tlen, uint8_t **out, size_t *len)
	__attribute__((warn_unused_result));

#endif
