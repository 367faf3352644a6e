/* SPDX-License-Identifier: MIT */
/*
 * agent.h - the node agent's HTTP+JSON API over a unix socket.
 *
 * Every request is its peer's: the local user behind the socket
 * (SO_PEERCRED) sees and changes only what they own, root and group
 * gridvm-admin everything; quotas per user (docs/security.md#users).
 *
 * Routes (all JSON unless noted; errors are gv_err_json's {"ok": false,
 * "error": "...", "errno": N} with 4xx/5xx):
 *   GET    /v1/host
 *   GET    /v1/vms                    POST /v1/vms            (definition)
 *   GET    /v1/vms/NAME               DELETE /v1/vms/NAME[?force=1]
 *   POST   /v1/vms/NAME/{start,pause,resume,stop,save,restore}
 *          body: {"path": "...", "timeout_ms": N} where it applies
 *   GET    /v1/vms/NAME/log/{job,console}?offset=N&wait=MS
 *          raw bytes; headers X-Gridvm-State and X-Gridvm-Offset
 *   POST   /v1/vms/NAME/checkpoints   create; GET: list
 *   GET    /v1/vms/NAME/checkpoints/ID        DELETE: delete
 *   POST   /v1/vms/NAME/checkpoints/restore   {"id": ID or absent = latest}
 *   GET    /v1/checkpoints            all VMs' checkpoints
 *   POST   /v1/vms/NAME/migrate       {"to": "HOST[:PORT]", "cold": bool}
 *          streams "PROGRESS <json>" lines, then "GRIDVM-RESULT <json>"
 *   POST   /v1/vms/NAME/migrate-cancel    back out before the switch
 *   GET    /v1/migrations             last recorded phase of each migration
 *   GET    /v1/images                 DELETE /v1/images/NAME
 *   POST   /v1/images/import          {"name", "file"}
 *   POST   /v1/images/NAME/index      block index + host-wide index
 *   POST   /v1/images/similarity      {"names": [...]}
 *   POST   /v1/images/fetch           {"name", "from", "as", "codec", "level"}
 *          streams "PROGRESS <json>" lines, then "GRIDVM-RESULT <json>"
 *   POST   /v1/images/build           {"name", "suite", "packages", "mirror"}
 *          streams log lines as text/plain, then a last line
 *          "GRIDVM-RESULT <json>": {"ok": true, "summary"} or the error
 *          form above
 */
#ifndef GRIDVM_AGENT_H
#define GRIDVM_AGENT_H

#include <gridvm/api/metrics.h>
#include <gridvm/node/host.h>

typedef struct gv_agent gv_agent;

/* Serve @h on the unix socket @sock_path (replacing a stale socket). The
 * host stays owned by the caller. */
int gv_agent_start(gv_host *h, const char *sock_path, gv_agent **out,
		   gv_err *e) GV_WUR;
void gv_agent_stop(gv_agent *a);
/* The administrator's quota file (base/user.h; NULL: DATA/quotas.json,
 * the default), read at each check. */
void gv_agent_set_quotas(gv_agent *a, const char *path);

/* The agent's metrics (a gv_metrics_fn with the gv_host as @host): its
 * VMs, the host, its images, checkpoints and migrations (docs/grid.md). */
void gv_agent_metrics(void *host, gv_metrics_buf *b);

#endif
