/* SPDX-License-Identifier: MIT */
/*
 * ctlcall.h - a request to the grid's leading controller, whichever
 * controller a user or an agent was given.
 *
 * Several controllers may share one store (etcd); one leads, the others
 * stand by and answer every request with {"ok": false, "standby": true,
 * "leader": ADDR} (ADDR null while an election is under way). A caller
 * holds the addresses it was given ("HOST:PORT[,HOST:PORT...]") and a
 * cache of the leader it found last; gv_ctl_call tries the cache first,
 * follows a standby's redirect, falls back to the given addresses when the
 * leader it knew does not answer, and waits through an election (pausing
 * between rounds) until @timeout_ms has passed. With one controller (no
 * election) it is one gv_xfer_control.
 */
#ifndef GRIDVM_API_CTLCALL_H
#define GRIDVM_API_CTLCALL_H

#include <gridvm/base/err.h>
#include <gridvm/xfer/xfer.h>

#include <jansson.h>
#include <stddef.h>

/* Send @req (borrowed) to the leader; *rep its reply (new reference: the
 * leader's own, ok or not; or a standby's when none leads by the
 * deadline). @leader (@len bytes, "" at first): in, the leader found last
 * time; out, the controller that answered. @return 0, or a negative errno
 * (no controller answered: the last one's reason in @e). */
int gv_ctl_call(const char *controllers, char *leader, size_t len,
		const uint8_t key[GV_XFER_KEY_LEN], json_t *req, int timeout_ms, json_t **rep,
		gv_err *e) __attribute__((warn_unused_result));

/* Whether @rep is a standby's answer (a redirect, or "no leader yet"). */
bool gv_ctl_reply_standby(const json_t *rep);

#endif
