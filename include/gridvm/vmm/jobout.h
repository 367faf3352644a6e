/* SPDX-License-Identifier: MIT */
/*
 * jobout.h - the frames the in-guest init writes on the job channel.
 *
 * Each frame: 1 byte type, 4 bytes big-endian length, payload. Types:
 * 'S' job started, 'O' stdout bytes, 'E' stderr bytes, 'M' a message from
 * the guest init, 'X' exit status (4-byte big-endian int). QEMU appends
 * the frames to the VM's job.out file, which is therefore the durable
 * record of the job's output and result.
 */
#ifndef GRIDVM_JOBOUT_H
#define GRIDVM_JOBOUT_H

#include <stddef.h>
#include <stdint.h>

#define GV_FRAME_HDR 5

typedef void (*gv_frame_cb)(void *ud, char type, const uint8_t *data,
			    uint32_t len);

/* Call @cb for every complete frame in @buf; @return the bytes consumed
 * (a trailing partial frame is left for the next call). */
size_t gv_jobout_parse(const uint8_t *buf, size_t len, gv_frame_cb cb, void *ud);

/* Scan the whole job.out at @path for an exit frame. @return 0 and
 * *exit_code, -ENOENT if there is none (yet), or another negative errno. */
int gv_jobout_exit_code(const char *path, int *exit_code);

#endif
