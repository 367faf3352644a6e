/* SPDX-License-Identifier: MIT */
/* jobout.c - parsing the job channel's frames. */
#include <gridvm/vmm/jobout.h>
#include <gridvm/base/util.h>

#include <errno.h>
#include <stdlib.h>

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

size_t gv_jobout_parse(const uint8_t *buf, size_t len, gv_frame_cb cb, void *ud)
{
	size_t off = 0;

	while (len - off >= GV_FRAME_HDR) {
		uint32_t n = be32(buf + off + 1);
		if (len - off - GV_FRAME_HDR < n)
			break;
		cb(ud, (char)buf[off], buf + off + GV_FRAME_HDR, n);
		off += GV_FRAME_HDR + n;
	}
	return off;
}

struct exit_scan {
	int code;
	int found;
};

static void exit_cb(void *ud, char type, const uint8_t *data, uint32_t len)
{
	struct exit_scan *s = ud;

	if (type == 'X' && len == 4) {
		s->code = (int)be32(data);
		s->found = 1;
	}
}

int gv_jobout_exit_code(const char *path, int *exit_code)
{
	char *buf;
	size_t len;
	struct exit_scan s = { 0 };
	int r = gv_read_file(path, &buf, &len);

	if (r < 0)
		return r;
	gv_jobout_parse((const uint8_t *)buf, len, exit_cb, &s);
	free(buf);
	if (!s.found)
		return -ENOENT;
	*exit_code = s.code;
	return 0;
}
