/* SPDX-License-Identifier: MIT */
/*
 * fuzz-qmp.c - libFuzzer harness for the QMP client's stream parser.
 * The input is everything a hostile "QEMU" sends: it is written into one
 * end of a socketpair, then the real client does a handshake, a command
 * and event waits against it. Any crash, leak or hang is a bug.
 */
#include <gridvm/vmm/qmp.h>

#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2];
	gv_qmp *q = NULL;
	json_t *ret = NULL, *ev = NULL;
	gv_err e;
	size_t off = 0;

	if (size > 65536 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return 0;
	while (off < size) {
		ssize_t n = write(sv[1], data + off, size - off);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	shutdown(sv[1], SHUT_WR);
	if (gv_qmp_open_fd(sv[0], 50, &q) == 0) {
		if (gv_qmp_execute(q, "query-status", NULL, 50, &ret, &e) == 0)
			json_decref(ret);
		for (int i = 0; i < 4; i++) {
			if (gv_qmp_wait_event(q, i % 2 ? NULL : "STOP", 10, &ev) < 0)
				break;
			json_decref(ev);
		}
		gv_qmp_free(q);
	}
	close(sv[1]);
	return 0;
}
