/* SPDX-License-Identifier: MIT */
/* b64.c - base64 with OpenSSL's block coder (b64.h). */
#include <gridvm/base/b64.h>

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>

char *gv_b64_encode(const void *buf, size_t len)
{
	char *out = malloc(4 * ((len + 2) / 3) + 1);

	if (!out)
		abort();
	EVP_EncodeBlock((unsigned char *)out, buf, (int)len);
	return out;
}

int gv_b64_decode(const char *text, size_t tlen, uint8_t **out, size_t *len)
{
	uint8_t *buf;
	int n;

	*out = NULL;
	*len = 0;
	if (tlen % 4 || tlen > (size_t)INT32_MAX)
		return -EINVAL;
	buf = malloc(tlen / 4 * 3 + 1);
	if (!buf)
		return -ENOMEM;
	n = tlen ? EVP_DecodeBlock(buf, (const unsigned char *)text, (int)tlen) : 0;
	if (n < 0) {
		free(buf);
		return -EINVAL;
	}
	/* the block decoder counts the padding as bytes */
	if (tlen >= 1 && text[tlen - 1] == '=')
		n -= 1 + (tlen >= 2 && text[tlen - 2] == '=');
	*out = buf;
	*len = (size_t)n;
	return 0;
}
