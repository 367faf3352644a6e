/* SPDX-License-Identifier: MIT */
/*
 * qmp.h - a small client for the QEMU Machine Protocol.
 *
 * Connects to a QEMU monitor socket, negotiates capabilities, sends
 * commands with ids and waits for their replies while queueing any
 * asynchronous events that arrive in between. The byte stream is parsed
 * incrementally, so a reply split across reads, or several objects in one
 * read, are both handled. Every wait has a timeout; a peer that goes away
 * gives -ECONNRESET instead of hanging.
 */
#ifndef GRIDVM_QMP_H
#define GRIDVM_QMP_H

#include <gridvm/base/err.h>
#include <jansson.h>

typedef struct gv_qmp gv_qmp;

/* Connect to the unix socket at @path, read the greeting and send
 * qmp_capabilities. @timeout_ms bounds the whole handshake.
 * @return 0 and *out set, or a negative errno. */
int gv_qmp_connect(const char *path, int timeout_ms, gv_qmp **out)
    __attribute__((warn_unused_result));

/* Same as gv_qmp_connect on an already connected stream @fd; the fd is
 * owned by the returned handle (closed by gv_qmp_free, also on failure). */
int gv_qmp_open_fd(int fd, int timeout_ms, gv_qmp **out)
    __attribute__((warn_unused_result));

/* Close the connection and free queued events. NULL is accepted. */
void gv_qmp_free(gv_qmp *q);

/* Run @cmd with @args (a JSON object or NULL; borrowed, not stolen).
 * On success returns 0 and, if @ret is not NULL, *ret holds a new
 * reference to the "return" member. If QEMU answers with an error,
 * returns -EIO and @e (if not NULL) holds the error's "desc" as QEMU
 * wrote it. -ETIMEDOUT after @timeout_ms, -ECONNRESET if the peer
 * closes, -EPROTO on garbage, -EINVAL on bad arguments: then @e holds
 * strerror of the code. Events seen meanwhile are queued. */
int gv_qmp_execute(gv_qmp *q, const char *cmd, json_t *args, int timeout_ms,
                   json_t **ret, gv_err *e)
    __attribute__((warn_unused_result));

/* Hand QEMU a copy of @fd (SCM_RIGHTS with QMP "getfd"), named @fdname
 * on this monitor: "fd:NAME" migration URIs and fd socket addresses of
 * commands sent later on this same connection take it. @fd stays ours.
 * @return as gv_qmp_execute (-EIO: QEMU refused, the reason in @e). */
int gv_qmp_getfd(gv_qmp *q, const char *fdname, int fd, int timeout_ms, gv_err *e)
    __attribute__((warn_unused_result));

/* gv_qmp_execute with a copy of @fd attached (SCM_RIGHTS), for the
 * commands that take one: getfd, add-fd. @fd stays ours. */
int gv_qmp_execute_fd(gv_qmp *q, const char *cmd, json_t *args, int fd, int timeout_ms,
		      json_t **ret, gv_err *e) __attribute__((warn_unused_result));

/* Wait for an event named @name (NULL = any event). Queued events are
 * looked at first; non-matching events stay queued. On success *event
 * (if not NULL) holds a new reference to the whole event object.
 * @return 0, -ETIMEDOUT, -ECONNRESET or -EPROTO. */
int gv_qmp_wait_event(gv_qmp *q, const char *name, int timeout_ms,
                      json_t **event) __attribute__((warn_unused_result));

/* The underlying file descriptor, for poll() in an event loop. */
int gv_qmp_fd(const gv_qmp *q);

#endif
