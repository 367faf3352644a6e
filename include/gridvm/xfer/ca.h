/* SPDX-License-Identifier: MIT */
/*
 * ca.h - the grid's certificate authority: a CA key and certificate, host
 * certificates that name a host (CN, subjectAltName with its name and
 * addresses) and its role (OU: agent or controller), and a revocation
 * list. What `gridvm ca` runs; the files are what tls.h reads.
 *
 * CA directory (DATA/ca): ca.key (0600), ca.crt, crl.pem, issued/HOST.crt,
 * revoked (one "SERIAL HOST TIME" line per revoked certificate).
 * Host directory (DATA/tls): ca.crt, host.crt, host.key (0600), crl.pem.
 */
#ifndef GRIDVM_XFER_CA_H
#define GRIDVM_XFER_CA_H

#include <gridvm/base/err.h>
#include <gridvm/base/util.h>
#include <stddef.h>

/* A new CA in @cadir named @name ("gridvm CA" if NULL), valid @days;
 * refuses to replace one (-EEXIST). */
int gv_ca_init(const char *cadir, const char *name, int days, gv_err *e) GV_WUR;

/* A key and certificate for @host with @role ("agent" or "controller")
 * and addresses @addrs (IPv4/IPv6 literals), valid @days, written with
 * the CA certificate and the current CRL into @outdir (created). */
int gv_ca_issue(const char *cadir, const char *host, const char *role,
		const char *const *addrs, size_t naddrs, int days, const char *outdir,
		gv_err *e) GV_WUR;

/* Revoke @host's last issued certificate and write the CRL anew
 * (cadir/crl.pem); *crl_path (malloc'd) says where. */
int gv_ca_revoke(const char *cadir, const char *host, char **crl_path, gv_err *e) GV_WUR;

#endif
