/* SPDX-License-Identifier: MIT */
/*
 * xfer_ca.c - the grid's certificate authority (ca.h): P-256 keys,
 * X.509 v3 certificates signed with SHA-256 (the CA's with basic
 * constraints CA:TRUE; a host's with both TLS client and server usage,
 * its name and addresses in subjectAltName, its role as OU, so the same
 * certificate serves the transfer channel and QEMU's migration stream),
 * and a v2 CRL made from the list of revoked serials.
 */
#include <gridvm/xfer/ca.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CRL_DAYS 3650 /* an expired CRL would stop every handshake */

static int ssl_fail(gv_err *e, const char *what)
{
	unsigned long x = ERR_peek_last_error();
	const char *why = x ? ERR_reason_error_string(x) : NULL;

	ERR_clear_error();
	return gv_err_set(e, -EIO, "%s%s%s", what, why ? ": " : "", why ? why : "");
}

/* PEM to @path through a temporary file, mode @mode, renamed into place. */
static int write_pem(const char *path, mode_t mode, X509 *x, EVP_PKEY *k, X509_CRL *crl,
		     gv_err *e)
{
	char *tmp = gv_strdupf("%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode), ok;
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;

	if (!f) {
		int r = gv_err_set(e, -errno, "cannot write %s: %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		free(tmp);
		return r;
	}
	fchmod(fd, mode);
	ok = x ? PEM_write_X509(f, x) : k ? PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL)
					 : PEM_write_X509_CRL(f, crl);
	ok = fflush(f) == 0 && fsync(fd) == 0 && ok;
	fclose(f);
	if (!ok || rename(tmp, path) < 0) {
		unlink(tmp);
		free(tmp);
		return gv_err_set(e, -EIO, "cannot write %s", path);
	}
	free(tmp);
	return 0;
}

static X509 *read_cert(const char *path)
{
	FILE *f = fopen(path, "r");
	X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;

	if (f)
		fclose(f);
	return x;
}

static EVP_PKEY *read_key(const char *path)
{
	FILE *f = fopen(path, "r");
	EVP_PKEY *k = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;

	if (f)
		fclose(f);
	return k;
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	ok = ext && X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -1;
}

static int random_serial(X509 *x)
{
	uint8_t b[16];
	BIGNUM *bn;
	int ok;

	RAND_bytes(b, sizeof(b));
	b[0] &= 0x7f; /* positive */
	b[0] |= 0x01; /* and 16 bytes long */
	bn = BN_bin2bn(b, sizeof(b), NULL);
	ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
	BN_free(bn);
	return ok ? 0 : -1;
}

/* A certificate for @key named O=gridvm[,OU=@ou],CN=@cn, valid @days,
 * signed by @ca_key (@ca: its certificate; NULL: self-signed). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, const char *ou, int days, X509 *ca,
		       EVP_PKEY *ca_key)
{
	X509 *x = X509_new();
	X509_NAME *n = X509_NAME_new();
	bool ok = x && n;

	ok = ok && X509_set_version(x, 2) && random_serial(x) == 0;
	ok = ok && X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)"gridvm",
					      -1, -1, 0);
	if (ou)
		ok = ok && X509_NAME_add_entry_by_txt(n, "OU", MBSTRING_UTF8,
						      (const unsigned char *)ou, -1, -1, 0);
	ok = ok && X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn,
					      -1, -1, 0);
	ok = ok && X509_set_subject_name(x, n);
	ok = ok && X509_set_issuer_name(x, ca ? X509_get_subject_name(ca) : n);
	ok = ok && X509_gmtime_adj(X509_getm_notBefore(x), -300); /* clocks differ */
	ok = ok && X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL);
	ok = ok && X509_set_pubkey(x, key);
	ok = ok && add_ext(x, ca, NID_subject_key_identifier, "hash") == 0;
	if (ca)
		ok = ok && add_ext(x, ca, NID_authority_key_identifier, "keyid:always") == 0;
	X509_NAME_free(n);
	if (!ok) {
		X509_free(x);
		return NULL;
	}
	(void)ca_key;
	return x;
}

static bool name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 63 || s[0] == '-' || s[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '.' && s[i] != '_')
			return false;
	return true;
}

int gv_ca_init(const char *cadir, const char *name, int days, gv_err *e)
{
	char *key_path = gv_strdupf("%s/ca.key", cadir), *crt = gv_strdupf("%s/ca.crt", cadir);
	char *issued = gv_strdupf("%s/issued", cadir);
	EVP_PKEY *k = NULL;
	X509 *x = NULL;
	int r = 0;

	if (access(crt, F_OK) == 0 || access(key_path, F_OK) == 0) {
		r = gv_err_set(e, -EEXIST, "a CA already exists in %s (remove it first to make "
			       "another: every host certificate would have to be issued again)", cadir);
		goto out;
	}
	if ((mkdir(cadir, 0700) < 0 && errno != EEXIST) || (mkdir(issued, 0700) < 0 && errno != EEXIST)) {
		r = gv_err_set(e, -errno, "cannot create %s: %s", issued, strerror(errno));
		goto out;
	}
	chmod(cadir, 0700);
	k = EVP_EC_gen("P-256");
	x = k ? make_cert(k, name ? name : "gridvm CA", NULL, days, NULL, NULL) : NULL;
	if (!x || add_ext(x, NULL, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") < 0 ||
	    add_ext(x, NULL, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
	    !X509_sign(x, k, EVP_sha256())) {
		r = ssl_fail(e, "cannot make the CA certificate");
		goto out;
	}
	r = write_pem(key_path, 0600, NULL, k, NULL, e);
	if (r == 0)
		r = write_pem(crt, 0644, x, NULL, NULL, e);
	if (r == 0) {
		char *crl = NULL;
		r = gv_ca_revoke(cadir, NULL, &crl, e); /* an empty CRL */
		free(crl);
	}
out:
	EVP_PKEY_free(k);
	X509_free(x);
	free(key_path);
	free(crt);
	free(issued);
	return r;
}

static int copy_file(const char *from, const char *to, gv_err *e)
{
	char *buf = NULL;
	size_t len = 0;
	int r = gv_read_file(from, &buf, &len);

	if (r < 0)
		return gv_err_set(e, r, "cannot read %s: %s", from, strerror(-r));
	r = gv_write_file_atomic(to, buf, len);
	free(buf);
	if (r < 0)
		return gv_err_set(e, r, "cannot write %s: %s", to, strerror(-r));
	chmod(to, 0644);
	return 0;
}

/* Load the CA's key and certificate. */
static int ca_load(const char *cadir, EVP_PKEY **k, X509 **x, gv_err *e)
{
	char *kp = gv_strdupf("%s/ca.key", cadir), *cp = gv_strdupf("%s/ca.crt", cadir);
	int r = 0;

	*k = read_key(kp);
	*x = read_cert(cp);
	if (!*k || !*x) {
		r = gv_err_set(e, -ENOENT, "no CA in %s (run 'gridvm ca init' there first)", cadir);
		EVP_PKEY_free(*k);
		X509_free(*x);
		*k = NULL;
		*x = NULL;
	} else if (X509_check_private_key(*x, *k) != 1) {
		r = gv_err_set(e, -EINVAL, "%s does not belong to %s", kp, cp);
	}
	ERR_clear_error();
	free(kp);
	free(cp);
	return r;
}

int gv_ca_issue(const char *cadir, const char *host, const char *role,
		const char *const *addrs, size_t naddrs, int days, const char *outdir, gv_err *e)
{
	EVP_PKEY *cak = NULL, *k = NULL;
	X509 *ca = NULL, *x = NULL;
	char *san = NULL, *p;
	int r;

	if (!name_ok(host))
		return gv_err_set(e, -EINVAL, "bad host name '%s' (letters, digits, '-', '.', '_'; "
				  "at most 63)", host);
	if (!role || (strcmp(role, "agent") && strcmp(role, "controller") && strcmp(role, "user")))
		return gv_err_set(e, -EINVAL, "the role must be agent, controller or user");
	if (!strcmp(role, "user") && naddrs)
		return gv_err_set(e, -EINVAL, "a user's certificate names no address");
	if ((r = ca_load(cadir, &cak, &ca, e)) < 0)
		return r;
	san = gv_strdupf("DNS:%s", host);
	for (size_t i = 0; i < naddrs; i++) {
		ASN1_OCTET_STRING *ip = a2i_IPADDRESS(addrs[i]);
		if (!ip) {
			r = gv_err_set(e, -EINVAL, "bad address '%s' (an IPv4 or IPv6 literal)", addrs[i]);
			goto out;
		}
		ASN1_OCTET_STRING_free(ip);
		p = gv_strdupf("%s,IP:%s", san, addrs[i]);
		free(san);
		san = p;
	}
	k = EVP_EC_gen("P-256");
	x = k ? make_cert(k, host, role, days, ca, cak) : NULL;
	/* digitalSignature and keyEncipherment: what QEMU's GnuTLS checks
	 * want of a TLS peer's certificate */
	if (!x || add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    add_ext(x, ca, NID_key_usage, "critical,digitalSignature,keyEncipherment") < 0 ||
	    /* a user's is a client's only: it can never pose as a host */
	    add_ext(x, ca, NID_ext_key_usage,
		    strcmp(role, "user") ? "serverAuth,clientAuth" : "clientAuth") < 0 ||
	    add_ext(x, ca, NID_subject_alt_name, san) < 0 || !X509_sign(x, cak, EVP_sha256())) {
		r = ssl_fail(e, "cannot make the host certificate");
		goto out;
	}
	if (mkdir(outdir, 0700) < 0 && errno != EEXIST) {
		r = gv_err_set(e, -errno, "cannot create %s: %s", outdir, strerror(errno));
		goto out;
	}
	char *kp = gv_strdupf("%s/host.key", outdir), *cp = gv_strdupf("%s/host.crt", outdir);
	char *ip = gv_strdupf("%s/issued/%s.crt", cadir, host);
	char *cf = gv_strdupf("%s/ca.crt", cadir), *ct = gv_strdupf("%s/ca.crt", outdir);
	char *lf = gv_strdupf("%s/crl.pem", cadir), *lt = gv_strdupf("%s/crl.pem", outdir);
	r = write_pem(kp, 0600, NULL, k, NULL, e);
	if (r == 0)
		r = write_pem(ip, 0644, x, NULL, NULL, e);
	if (r == 0)
		r = copy_file(cf, ct, e);
	if (r == 0 && access(lf, F_OK) == 0)
		r = copy_file(lf, lt, e);
	if (r == 0) /* last: the agent reloads when it changes */
		r = write_pem(cp, 0644, x, NULL, NULL, e);
	free(kp);
	free(cp);
	free(ip);
	free(cf);
	free(ct);
	free(lf);
	free(lt);
out:
	EVP_PKEY_free(cak);
	EVP_PKEY_free(k);
	X509_free(ca);
	X509_free(x);
	free(san);
	return r;
}

/* Add every "SERIAL HOST TIME" line of @list to @crl. */
static int crl_add_revoked(X509_CRL *crl, const char *list)
{
	const char *line = list;

	while (line && *line) {
		char serial[80];
		long long t = 0;
		if (sscanf(line, "%79s %*s %lld", serial, &t) >= 1) {
			BIGNUM *bn = NULL;
			X509_REVOKED *rv = X509_REVOKED_new();
			ASN1_TIME *at = ASN1_TIME_set(NULL, (time_t)t);
			ASN1_INTEGER *sn = BN_hex2bn(&bn, serial) ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
			int ok = rv && at && sn && X509_REVOKED_set_serialNumber(rv, sn) &&
				 X509_REVOKED_set_revocationDate(rv, at) && X509_CRL_add0_revoked(crl, rv);
			if (!ok)
				X509_REVOKED_free(rv);
			ASN1_TIME_free(at);
			ASN1_INTEGER_free(sn);
			BN_free(bn);
			if (!ok)
				return -1;
		}
		line = strchr(line, '\n');
		line = line ? line + 1 : NULL;
	}
	return 0;
}

int gv_ca_revoke(const char *cadir, const char *host, char **crl_path, gv_err *e)
{
	char *list_path = gv_strdupf("%s/revoked", cadir), *list = NULL, *line = NULL;
	EVP_PKEY *cak = NULL;
	X509 *ca = NULL, *x = NULL;
	X509_CRL *crl = NULL;
	int r = ca_load(cadir, &cak, &ca, e);

	*crl_path = gv_strdupf("%s/crl.pem", cadir);
	if (r < 0)
		goto out;
	if (gv_read_file(list_path, &list, NULL) < 0)
		list = strdup("");
	if (host) {
		char *ip = gv_strdupf("%s/issued/%s.crt", cadir, host);
		x = read_cert(ip);
		free(ip);
		if (!x) {
			r = gv_err_set(e, -ENOENT, "this CA issued no certificate for '%s'", host);
			goto out;
		}
		BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get_serialNumber(x), NULL);
		char *hex = bn ? BN_bn2hex(bn) : NULL;
		BN_free(bn);
		if (!hex) {
			r = gv_err_set(e, -ENOMEM, "out of memory");
			goto out;
		}
		if (!strstr(list, hex)) {
			line = gv_strdupf("%s%s %s %lld\n", list, hex, host, (long long)time(NULL));
			free(list);
			list = line;
			line = NULL;
			r = gv_write_file_atomic(list_path, list, strlen(list));
			if (r < 0)
				gv_err_set(e, r, "cannot write %s: %s", list_path, strerror(-r));
		}
		OPENSSL_free(hex);
		if (r < 0)
			goto out;
	}
	crl = X509_CRL_new();
	ASN1_TIME *now = ASN1_TIME_set(NULL, time(NULL));
	ASN1_TIME *next = ASN1_TIME_adj(NULL, time(NULL), CRL_DAYS, 0);
	bool ok = crl && now && next && X509_CRL_set_version(crl, 1) &&
		  X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca)) &&
		  X509_CRL_set1_lastUpdate(crl, now) && X509_CRL_set1_nextUpdate(crl, next) &&
		  crl_add_revoked(crl, list) == 0 && X509_CRL_sort(crl) &&
		  X509_CRL_sign(crl, cak, EVP_sha256());
	ASN1_TIME_free(now);
	ASN1_TIME_free(next);
	r = ok ? write_pem(*crl_path, 0644, NULL, NULL, crl, e) : ssl_fail(e, "cannot make the CRL");
out:
	EVP_PKEY_free(cak);
	X509_free(ca);
	X509_free(x);
	X509_CRL_free(crl);
	free(list);
	free(list_path);
	return r;
}
