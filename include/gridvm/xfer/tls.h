/* SPDX-License-Identifier: MIT */
/*
 * tls.h - mutual TLS 1.3 between hosts: a host's certificate material
 * (a directory holding ca.crt, host.crt, host.key and optionally crl.pem,
 * as `gridvm ca issue` writes it) and who the peer of a connection is.
 *
 * With material present, the transfer and control channel (xfer.h) runs
 * over TLS 1.3 and both sides verify the peer's certificate against the
 * grid CA and its revocation list; without, it uses the shared grid key.
 * The files are read again when they change (a new CRL takes effect at
 * the next connection). Certificates name the host (CN, subjectAltName)
 * and its role (OU: agent or controller). Protocol: docs/transfer-protocol.md;
 * modes and threats: docs/security.md.
 */
#ifndef GRIDVM_XFER_TLS_H
#define GRIDVM_XFER_TLS_H

#include <gridvm/base/err.h>
#include <gridvm/base/user.h>
#include <gridvm/base/util.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct gv_tls gv_tls;

/* Certificate material in @dir (read now and again whenever its files
 * change). A directory without host.crt is valid: TLS is then off until
 * the files appear. @return 0, or a negative errno with the reason in @e. */
int gv_tls_new(const char *dir, gv_tls **out, gv_err *e) GV_WUR;
void gv_tls_free(gv_tls *t);

/* Is material present and usable? (false also when it is broken: then
 * @e, if not NULL, says why.) */
bool gv_tls_enabled(gv_tls *t, gv_err *e);
/* This host's name and role from its certificate (empty if none). */
void gv_tls_identity(gv_tls *t, char *name, size_t nlen, char *role, size_t rlen);
/* The directory of the material. */
const char *gv_tls_dir(const gv_tls *t);

/* The process's material: $GRIDVM_TLS_DIR, else DATA/tls (looked up at
 * the first call). Outgoing connections and servers started without
 * their own use it. Never NULL. */
gv_tls *gv_tls_default(void);
/* Point the process's material at @dir (tests; NULL: DATA/tls); the
 * object stays the same (gv_tls_dir's old answer is no longer valid). */
int gv_tls_set_default_dir(const char *dir, gv_err *e) GV_WUR;

/* Who is on the other side of an authenticated connection: with TLS, the
 * verified certificate's host name (CN), role (OU) and subject (as
 * QEMU's tls-authz sees it: "O=gridvm,OU=agent,CN=h1"); with the shared
 * key, only that the peer holds it; on a unix socket (a server listening
 * on a path), the local user the kernel names (@local, @user). */
typedef struct gv_peer_id {
	bool tls;
	char name[256];
	char role[32];
	char dn[512];
	bool local;
	gv_user user;
} gv_peer_id;

#endif
