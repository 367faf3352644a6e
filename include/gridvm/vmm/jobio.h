/* SPDX-License-Identifier: MIT */
/*
 * jobio.h - a job's files in and out of its VM (docs/guest-protocol.md).
 *
 * The inputs travel on a read-only raw disk: a tar (made by GNU tar)
 * whose member N (and N/...) is the Nth input; the guest's init unpacks
 * it before the job starts. The outputs come back on a second, writable
 * raw disk, sparse, that the host creates empty: when the job has ended
 * the init writes one tar of the output paths from its offset 0 and a
 * text manifest into its last GV_JOBIO_MANIFEST_SIZE bytes, then syncs,
 * all before it reports the exit status. The file is therefore a valid
 * tar as it is (`tar -xf output.tar`); the manifest says how each output
 * fared.
 */
#ifndef GRIDVM_VMM_JOBIO_H
#define GRIDVM_VMM_JOBIO_H

#include <gridvm/base/err.h>
#include <gridvm/base/util.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define GV_JOBIO_OUTPUT_MAX_DEFAULT (1ULL << 30) /* room for the outputs */
#define GV_JOBIO_MANIFEST_SIZE 65536u

/* Pack the host paths @inputs (absolute; files or directories; a
 * symlink is followed at the top) into the input disk @tar, replacing it
 * atomically. -ENOENT etc. with the path in @e if one cannot be read. */
int gv_jobio_pack_inputs(char *const *inputs, const char *tar, gv_err *e) GV_WUR;

/* The inputs packed already (that layout) at @src become the input disk
 * @tar: a hard link, or a copy on another file system. */
int gv_jobio_use_input_tar(const char *src, const char *tar, gv_err *e) GV_WUR;

/* A fresh, empty (sparse) output disk at @path with room for @max bytes
 * of outputs (0: GV_JOBIO_OUTPUT_MAX_DEFAULT). */
int gv_jobio_output_create(const char *path, uint64_t max, gv_err *e) GV_WUR;

/* Has the guest written on the output disk at @path (it does only once
 * its job has ended)? false if there is none. */
bool gv_jobio_output_written(const char *path);

/* The manifest of the output disk at @path, as JSON (new reference):
 * {"collected": false} if the guest wrote none (the job has not ended,
 * or its VM did not end it normally; also if there is no disk yet), else {"collected": true,
 * "tar_bytes": N, "outputs": [{"path": P, "status": "ok" | "missing" |
 * "toolarge" | "error"}, ...]}. */
int gv_jobio_output_manifest(const char *path, json_t **out, gv_err *e) GV_WUR;

/* The manifest text (the disk's last bytes, up to @len) as above. */
json_t *gv_jobio_manifest_parse(const char *text, size_t len);

/* A tar stream unpacked into a directory as it arrives (GNU tar -x:
 * no absolute names, no "..", files owned by the caller). */
typedef struct gv_untar gv_untar;
int gv_untar_new(const char *dir, gv_untar **out, gv_err *e) GV_WUR;
int gv_untar_write(gv_untar *u, const void *buf, size_t len, gv_err *e) GV_WUR;
/* Ends the stream, waits for tar, frees @u (NULL is fine): 0, or tar's
 * complaint in @e. */
int gv_untar_finish(gv_untar *u, gv_err *e);

#endif
