/* SPDX-License-Identifier: MIT */
/*
 * grid.c - how the gridvm commands reach the grid controller: its address
 * (--controller or GRIDVM_CONTROLLER), the grid key (--grid-key, or
 * GRIDVM_GRID_KEY, or DATA/grid.key), one request per call over the
 * authenticated channel between hosts, to the leading controller when
 * several share the grid (the address may be a list; a standby redirects:
 * ctlcall.h).
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <gridvm/base/b64.h>
#include <limits.h>
#include <openssl/rand.h>
#include <unistd.h>
#include <gridvm/api/ctlcall.h>
#include <gridvm/base/util.h>
#include <gridvm/vmm/jobio.h>
#include <gridvm/vmm/vmdef.h>
#include <gridvm/xfer/tls.h>
#include <gridvm/xfer/xfer.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define UPLOAD_CHUNK (4u << 20) /* bytes of input per request */

/* the controller that answered the last request (the leader) */
static char leader[300];

/* --controller (GRIDVM_CONTROLLER), else the controller of this machine
 * when its socket for local users is there (DATA/gridvmctld.sock). */
static const char *controllers(void)
{
	static char *local;
	const char *c = getenv("GRIDVM_CONTROLLER");

	if (c && *c)
		return c;
	if (!local)
		local = gv_strdupf("%s/gridvmctld.sock", gv_data_dir());
	return access(local, F_OK) == 0 ? local : NULL;
}

bool cli_grid_configured(void)
{
	return controllers() != NULL;
}

int cli_grid_peer(char *host, size_t len, int *port, uint8_t key[32])
{
	const char *ctl = controllers();
	const char *kf = getenv("GRIDVM_GRID_KEY");
	char *path = kf && *kf ? strdup(kf) : gv_strdupf("%s/grid.key", gv_data_dir());
	int r;

	if (!ctl) {
		free(path);
		return cli_error("no controller: give --controller ADDR:PORT (or set "
				 "GRIDVM_CONTROLLER; on the controller's machine, its socket "
				 "%s/gridvmctld.sock)", gv_data_dir()), -1;
	}
	if (gv_xfer_peer_parse(leader[0] ? leader : ctl, host, len, port) < 0 &&
	    gv_xfer_peer_parse(strtok(strdupa(ctl), ","), host, len, port) < 0) {
		free(path);
		return cli_error("invalid controller address '%s' (HOST:PORT)", ctl), -1;
	}
	if (host[0] == '/') { /* a local socket: the kernel says who we are */
		memset(key, 0, 32);
		free(path);
		return 0;
	}
	r = gv_xfer_key_load(path, key);
	if (r < 0 && gv_tls_enabled(gv_tls_default(), NULL)) {
		memset(key, 0, 32); /* a certificate (a host's, or a user's) instead */
		r = 0;
	}
	if (r < 0)
		cli_error("cannot read the grid key %s: %s (give --grid-key FILE, or your "
			  "certificate's directory in GRIDVM_TLS_DIR)", path, strerror(-r));
	free(path);
	return r < 0 ? -1 : 0;
}

int cli_grid_call(json_t *req, json_t **rep)
{
	return cli_grid_call_within(req, rep, 60000);
}

int cli_grid_call_within(json_t *req, json_t **rep, int timeout_ms)
{
	uint8_t key[32];
	char host[256];
	int port, r;
	gv_err e = { "" };

	*rep = NULL;
	if (cli_grid_peer(host, sizeof(host), &port, key) < 0) {
		json_decref(req);
		return -1;
	}
	r = gv_ctl_call(controllers(), leader, sizeof(leader), key, req, timeout_ms, rep, &e);
	OPENSSL_cleanse(key, sizeof(key));
	json_decref(req);
	if (r < 0) {
		cli_error("the controller %s: %s", controllers(), e.msg);
		return -1;
	}
	if (!json_is_true(json_object_get(*rep, "ok"))) {
		cli_error("%s", json_string_value(json_object_get(*rep, "error")) ?: "refused");
		json_decref(*rep);
		*rep = NULL;
		return -1;
	}
	return 0;
}

/* The inputs (PATH[:GUEST_PATH] each) packed as the guest unpacks them
 * (jobio.h); *guest: where each goes (default: its basename, in the job's
 * working directory). */
static int pack_inputs(json_t *specs, const char *tar, json_t *guest)
{
	size_t i, n = json_array_size(specs);
	char **paths = calloc(n + 1, sizeof(char *));
	json_t *s;
	gv_err e;
	int r = 0;

	if (!paths)
		abort();
	json_array_foreach(specs, i, s) {
		char *spec = strdup(json_string_value(s)), *colon = strchr(spec, ':'), *base;
		if (colon)
			*colon = '\0';
		paths[i] = realpath(spec, NULL);
		if (!paths[i]) {
			r = cli_error("input %s: %s", spec, strerror(errno));
			free(spec);
			break;
		}
		base = strrchr(paths[i], '/') + 1;
		json_array_append_new(guest, json_string(colon && colon[1] ? colon + 1
							      : *base ? base : "input"));
		free(spec);
	}
	if (r == 0 && gv_jobio_pack_inputs(paths, tar, &e) < 0)
		r = cli_error("%s", e.msg);
	gv_strv_free(paths);
	return r ? -1 : 0;
}

int cli_grid_upload_inputs(json_t *specs, json_t *req)
{
	char tmpl[] = "/tmp/gridvm-input-XXXXXX", *tar, token[33];
	uint8_t rnd[16], *buf;
	json_t *guest = json_array();
	int fd, rc = -1;
	off_t off = 0;

	if (!mkdtemp(tmpl))
		return cli_error("cannot make a temporary directory: %s", strerror(errno)), -1;
	tar = gv_strdupf("%s/input.tar", tmpl);
	if (pack_inputs(specs, tar, guest) < 0)
		goto out;
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		cli_error("no randomness");
		goto out;
	}
	for (int i = 0; i < 16; i++)
		snprintf(token + 2 * i, 3, "%02x", rnd[i]);
	fd = open(tar, O_RDONLY | O_CLOEXEC);
	buf = malloc(UPLOAD_CHUNK);
	if (fd < 0 || !buf) {
		cli_error("cannot read %s", tar);
		free(buf);
		goto out;
	}
	/* its SHA-256 goes with the submission: the controller checks it has
	 * the whole of it (pieces may have gone to a leader lost meanwhile) */
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (!md || !EVP_DigestInit_ex2(md, EVP_sha256(), NULL)) {
		cli_error("cannot hash the input");
		EVP_MD_CTX_free(md);
		close(fd);
		free(buf);
		goto out;
	}
	for (;;) {
		ssize_t n = pread(fd, buf, UPLOAD_CHUNK, off);
		if (n < 0) {
			cli_error("cannot read %s: %s", tar, strerror(errno));
			break;
		}
		if (n == 0) {
			rc = 0;
			break;
		}
		if (!EVP_DigestUpdate(md, buf, (size_t)n)) {
			cli_error("cannot hash the input");
			break;
		}
		char *b64 = gv_b64_encode(buf, (size_t)n);
		json_t *rep = NULL;
		int r = cli_grid_call(json_pack("{s:s, s:s, s:I, s:s}", "op", "input-put", "upload",
						token, "offset", (json_int_t)off, "data", b64),
				      &rep);
		free(b64);
		json_decref(rep);
		if (r < 0)
			break;
		off += n;
	}
	close(fd);
	free(buf);
	uint8_t digest[32];
	char hex[65];
	if (rc == 0 && !EVP_DigestFinal_ex(md, digest, NULL)) {
		cli_error("cannot hash the input");
		rc = -1;
	}
	EVP_MD_CTX_free(md);
	if (rc == 0) {
		gv_hash_hex(digest, hex);
		json_object_set_new(req, "input_sha256", json_string(hex));
		json_object_set_new(req, "upload", json_string(token));
		json_object_set_new(req, "input_bytes", json_integer((json_int_t)off));
		json_object_set(req, "input_paths", guest);
	}
out:
	unlink(tar);
	rmdir(tmpl);
	free(tar);
	json_decref(guest);
	return rc;
}
