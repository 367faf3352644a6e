/* SPDX-License-Identifier: MIT */
/*
 * migrate_tls.c - QEMU's live-migration stream over TLS between hosts
 * that have certificates (DATA/tls, tls.h): both QEMUs get a
 * tls-creds-x509 object made from the host's material (the grid CA, the
 * host's certificate and key, the CRL) with verify-peer on; the
 * destination's tls-authz (authz-simple) names the subject of the
 * certificate the source proved on the control channel, so only that host
 * may feed the incoming QEMU; the source's tls-hostname is the address it
 * dials, which the destination's certificate must list. A host with
 * certificates neither sends nor takes a memory stream without TLS.
 */
#include "migrate_internal.h"

#include <gridvm/xfer/tls.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CREDS_ID "gv-mig-tls"
#define AUTHZ_ID "gv-mig-authz"

bool mig_any_tls_on(void)
{
	return gv_tls_enabled(gv_tls_default(), NULL);
}

/* The names QEMU's tls-creds-x509 reads, and the host's files they are. */
static const char *const creds_files[][2] = {
	{ "ca-cert.pem", "ca.crt" },	 { "server-cert.pem", "host.crt" },
	{ "server-key.pem", "host.key" }, { "client-cert.pem", "host.crt" },
	{ "client-key.pem", "host.key" }, { "ca-crl.pem", "crl.pem" },
};

static int copy_file(const char *from, const char *to, gid_t gid)
{
	char *buf = NULL;
	size_t len = 0;
	int fd, r = gv_read_file(from, &buf, &len);

	if (r < 0)
		return r;
	fd = open(to, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
	if (fd < 0 || write(fd, buf, len) != (ssize_t)len || fchown(fd, 0, gid) < 0)
		r = -errno;
	if (fd >= 0)
		close(fd);
	free(buf);
	return r;
}

/* VMDIR/tls: the host's material under QEMU's names, readable by this
 * VM's QEMU alone (its group, lib/node/vmspawn.c), for as long as QEMU
 * takes to load it (object-add); removed right after. */
static char *creds_dir(const gv_vmpaths *p, gv_err *e)
{
	const char *tls = gv_tls_dir(gv_tls_default());
	char *dir = gv_strdupf("%s/tls", p->dir);
	struct stat st;
	int r = stat(p->dir, &st) < 0 ? -errno : 0;

	gv_rm_rf(dir);
	if (r == 0 && (mkdir(dir, 0750) < 0 || chown(dir, 0, st.st_gid) < 0))
		r = -errno;
	for (size_t i = 0; r == 0 && i < sizeof(creds_files) / sizeof(creds_files[0]); i++) {
		char *from = gv_strdupf("%s/%s", tls, creds_files[i][1]);
		char *to = gv_strdupf("%s/%s", dir, creds_files[i][0]);
		if (i < 5 || access(from, F_OK) == 0)
			r = copy_file(from, to, st.st_gid);
		free(from);
		free(to);
	}
	if (r < 0) {
		gv_err_set(e, r, "cannot give QEMU the TLS material in %s: %s", dir, strerror(-r));
		gv_rm_rf(dir);
		free(dir);
		return NULL;
	}
	return dir;
}

/* object-add @props (reference taken), replacing an object of that id
 * left by an earlier attempt on this QEMU. */
static int add_object(gv_qmp *q, const char *id, json_t *props, gv_err *e)
{
	json_t *del = json_pack("{s:s}", "id", id), *rep = NULL;
	int r;

	if (gv_qmp_execute(q, "object-del", del, 5000, &rep, NULL) == 0)
		json_decref(rep);
	json_decref(del);
	r = host_qmp_run(q, "object-add", props, e);
	json_decref(props);
	return r;
}

static int add_creds(gv_qmp *q, const gv_vmpaths *p, bool server, gv_err *e)
{
	char *dir = creds_dir(p, e);
	int r;

	if (!dir)
		return -EIO;
	r = add_object(q, CREDS_ID,
		       json_pack("{s:s, s:s, s:s, s:s, s:b}", "qom-type", "tls-creds-x509",
				 "id", CREDS_ID, "endpoint", server ? "server" : "client",
				 "dir", dir, "verify-peer", 1),
		       e);
	gv_rm_rf(dir); /* loaded: QEMU reads them when the object is made */
	free(dir);
	return r;
}

int mig_dst_tls_check(json_t *req, gv_err *e)
{
	json_t *peer = json_object_get(req, "_peer");

	/* the source says so at once; its own check of the reply stands */
	if (json_is_true(json_object_get(req, "tls")) && !mig_any_tls_on())
		return gv_err_set(e, -EACCES, "the source has TLS certificates and sends a "
				  "memory stream only over TLS; this host has none, so it is "
				  "refused (see 'gridvm ca issue')");
	if (mig_any_tls_on() && !json_is_true(json_object_get(peer, "tls")))
		return gv_err_set(e, -EACCES, "this host has TLS certificates: it takes a "
				  "migration's memory stream only over TLS, from a source that "
				  "proved its certificate (this one connected with the grid key)");
	return 0;
}

int mig_dst_tls_setup(gv_qmp *q, const gv_vmpaths *p, json_t *req, bool *tls, gv_err *e)
{
	const char *dn = json_string_value(json_object_get(json_object_get(req, "_peer"), "dn"));
	json_t *par;
	int r = mig_dst_tls_check(req, e);

	*tls = false;
	if (r < 0 || !mig_any_tls_on())
		return r;
	if (!dn || !*dn)
		return gv_err_set(e, -EACCES, "the source's certificate has no subject");
	r = add_creds(q, p, true, e);
	if (r == 0)
		r = add_object(q, AUTHZ_ID,
			       json_pack("{s:s, s:s, s:s}", "qom-type", "authz-simple", "id",
					 AUTHZ_ID, "identity", dn),
			       e);
	par = json_pack("{s:s, s:s}", "tls-creds", CREDS_ID, "tls-authz", AUTHZ_ID);
	if (r == 0)
		r = host_qmp_run(q, "migrate-set-parameters", par, e);
	json_decref(par);
	*tls = r == 0;
	return r;
}

int mig_src_tls_setup(gv_qmp *q, const gv_vmpaths *p, json_t *rep, gv_err *e)
{
	const char *uri = json_string_value(json_object_get(rep, "uri"));
	char host[256] = "";
	json_t *par;
	int r;

	if (!mig_any_tls_on())
		return 0;
	if (!json_is_true(json_object_get(rep, "tls")))
		return gv_err_set(e, -EACCES, "this host has TLS certificates and the destination "
				  "offers the memory stream without TLS: refused (give it a "
				  "certificate, see 'gridvm ca issue')");
	/* tcp:HOST:PORT or tcp:[V6]:PORT: the name QEMU checks the
	 * destination's certificate against */
	if (uri && !strncmp(uri, "tcp:", 4)) {
		const char *h = uri + 4, *colon = strrchr(h, ':');
		if (colon && *h == '[')
			snprintf(host, sizeof(host), "%.*s", (int)(colon - h - 2), h + 1);
		else if (colon)
			snprintf(host, sizeof(host), "%.*s", (int)(colon - h), h);
	}
	if (!host[0])
		return gv_err_set(e, -EINVAL, "the destination's migration address '%s' is not "
				  "tcp:HOST:PORT", uri ? uri : "");
	r = add_creds(q, p, false, e);
	par = json_pack("{s:s, s:s}", "tls-creds", CREDS_ID, "tls-hostname", host);
	if (r == 0)
		r = host_qmp_run(q, "migrate-set-parameters", par, e);
	json_decref(par);
	return r;
}
