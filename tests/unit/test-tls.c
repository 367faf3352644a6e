/* SPDX-License-Identifier: MIT */
/*
 * test-tls.c - the transfer channel over mutual TLS 1.3 against a real
 * server on loopback: certificates made by the grid CA code (ca.h); a
 * trusted peer's control request and image fetch go through and the
 * server's handler learns its name and role; a certificate from another
 * CA, a revoked one, one naming another address, expired, not yet
 * valid, signed by a host rather than the CA, without a role or with
 * another, none at all, and a plain-TCP peer are refused with a clear
 * error; during the switch a host
 * with both the grid key and certificates still talks to one without;
 * the handshake deadline covers the TLS handshake.
 */
#include "../../lib/xfer/xfer_internal.h"

#include <gridvm/xfer/ca.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

static char dir[64];
static const uint8_t nokey[GV_XFER_KEY_LEN]; /* all zero: no shared key */
static const uint8_t key[GV_XFER_KEY_LEN] = { 7, 7, 7 };

static char *path(const char *leaf)
{
	return gv_strdupf("%s/%s", dir, leaf);
}

static void issue(const char *ca, const char *host, const char *role, const char *addr,
		  const char *out)
{
	char *c = path(ca), *o = path(out);
	const char *addrs[] = { addr };
	gv_err e;

	if (gv_ca_issue(c, host, role, addrs, 1, 30, o, &e) < 0)
		fail_msg("issue %s: %s", host, e.msg);
	free(c);
	free(o);
}

/* Two CAs and the hosts' material, once. */
static int setup(void **state)
{
	gv_err e;
	char *ca, *ca2, *crl;

	snprintf(dir, sizeof(dir), "/tmp/gv-tls-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	ca = path("ca");
	ca2 = path("ca2");
	if (gv_ca_init(ca, NULL, 30, &e) < 0 || gv_ca_init(ca2, "another CA", 30, &e) < 0)
		return -1;
	issue("ca", "srv", "agent", "127.0.0.1", "srv");
	issue("ca", "cli", "controller", "127.0.0.1", "cli");
	issue("ca", "gone", "agent", "127.0.0.1", "gone");
	issue("ca", "far", "agent", "10.9.9.9", "far");   /* names another address */
	issue("ca2", "alien", "agent", "127.0.0.1", "alien");
	/* revoke "gone": the server's CRL lists it */
	if (gv_ca_revoke(ca, "gone", &crl, &e) < 0)
		return -1;
	char *buf = NULL, *to = path("srv/crl.pem");
	size_t len;
	if (gv_read_file(crl, &buf, &len) < 0 || gv_write_file_atomic(to, buf, len) < 0)
		return -1;
	free(buf);
	free(to);
	free(crl);
	free(ca);
	free(ca2);
	/* a stranger that trusts our CA (its certificate is public) but holds
	 * a certificate of its own CA */
	char *ours = path("ca/ca.crt"), *theirs = path("alien-cli/ca.crt");
	issue("ca2", "alien", "agent", "127.0.0.1", "alien-cli");
	if (gv_read_file(ours, &buf, &len) < 0 || gv_write_file_atomic(theirs, buf, len) < 0)
		return -1;
	free(buf);
	free(ours);
	free(theirs);
	ours = path("ca/crl.pem");
	theirs = path("alien-cli/crl.pem");
	if (gv_read_file(ours, &buf, &len) < 0 || gv_write_file_atomic(theirs, buf, len) < 0)
		return -1;
	free(buf);
	free(ours);
	free(theirs);
	char *none = path("none"); /* no material */
	mkdir(none, 0700);
	free(none);
	return 0;
}

static int teardown(void **state)
{
	char *cmd = gv_strdupf("rm -rf %s", dir);
	int r = system(cmd);

	free(cmd);
	return r == 0 ? 0 : -1;
}

static json_t *last_peer, *last_reply_peer;

static json_t *control(void *ud, json_t *req)
{
	json_decref(last_peer);
	last_peer = json_incref(json_object_get(req, "_peer"));
	return json_pack("{s:b, s:s, s:{s:s}}", "ok", 1, "echo",
			 json_string_value(json_object_get(req, "op")) ?: "", "_peer", "name",
			 "forged by the server");
}

static int resolve(void *ud, const char *name, char **p, char **idx)
{
	if (strcmp(name, "img"))
		return -ENOENT;
	*p = path("src.img");
	*idx = path("src.gvidx");
	return 0;
}

/* A server with @mat's material (NULL: none) and @k. */
static gv_xfer_server *server(const char *mat, const uint8_t *k, gv_tls **tls)
{
	gv_xfer_server *s;
	char *d = path(mat ? mat : "none");
	gv_err e;

	assert_int_equal(gv_tls_new(d, tls, &e), 0);
	assert_int_equal(gv_xfer_server_start("127.0.0.1:0", k, resolve, NULL, &s, &e), 0);
	gv_xfer_server_set_tls(s, *tls);
	gv_xfer_server_set_control(s, control);
	free(d);
	return s;
}

static void stop(gv_xfer_server *s, gv_tls *t)
{
	gv_xfer_server_stop(s);
	gv_tls_free(t);
}

/* One control request from a client with @mat's material and @k. */
static int ask(gv_xfer_server *s, const char *mat, const uint8_t *k, gv_err *e)
{
	char *d = path(mat ? mat : "none");
	json_t *req = json_pack("{s:s, s:{s:s}}", "op", "hello", "_peer", "name", "forged");
	json_t *rep = NULL;
	int r;

	assert_int_equal(gv_tls_set_default_dir(d, e), 0);
	e->msg[0] = '\0';
	r = gv_xfer_control("127.0.0.1", gv_xfer_server_port(s), k, req, 5000, &rep, e);
	if (r == 0) {
		assert_string_equal(json_string_value(json_object_get(rep, "echo")), "hello");
		/* the client, too, learns who answered from its certificate only */
		json_decref(last_reply_peer);
		last_reply_peer = json_incref(json_object_get(rep, "_peer"));
	}
	json_decref(req);
	json_decref(rep);
	free(d);
	return r;
}

static void expect_refused(int r, const gv_err *e, const char *words)
{
	assert_true(r < 0);
	if (!strstr(e->msg, words))
		fail_msg("expected '%s' in: %s", words, e->msg);
}

static void test_trusted_peer(void **state)
{
	gv_tls *t;
	gv_xfer_server *s = server("srv", nokey, &t);
	gv_err e;

	assert_int_equal(ask(s, "cli", nokey, &e), 0);
	/* the handler sees who the certificate says, never what the peer said */
	assert_non_null(last_peer);
	assert_true(json_is_true(json_object_get(last_peer, "tls")));
	assert_string_equal(json_string_value(json_object_get(last_peer, "name")), "cli");
	assert_string_equal(json_string_value(json_object_get(last_peer, "role")), "controller");
	assert_string_equal(json_string_value(json_object_get(last_peer, "dn")),
			    "O=gridvm,OU=controller,CN=cli");
	assert_string_equal(json_string_value(json_object_get(last_reply_peer, "name")), "srv");
	assert_string_equal(json_string_value(json_object_get(last_reply_peer, "role")), "agent");

	/* data flows: an image fetched over TLS arrives identical */
	char *src = path("src.img"), *dst = path("dst.img");
	FILE *f = fopen(src, "wb");
	for (int i = 0; i < 3000; i++)
		fprintf(f, "%04d block of the image %*s\n", i, i % 700, "");
	fclose(f);
	gv_fetch_opts o = { .host = "127.0.0.1", .port = gv_xfer_server_port(s), .image = "img",
			    .dest = dst, .codec = GV_CODEC_ZSTD, .key = nokey, .timeout_ms = 5000 };
	json_t *sum = NULL;
	int r = gv_fetch(&o, &sum, &e);
	if (r < 0)
		fail_msg("fetch over TLS: %s", e.msg);
	char *a = NULL, *b = NULL;
	size_t la, lb;
	assert_int_equal(gv_read_file(src, &a, &la), 0);
	assert_int_equal(gv_read_file(dst, &b, &lb), 0);
	assert_int_equal(la, lb);
	assert_memory_equal(a, b, la);
	assert_true(json_integer_value(json_object_get(sum, "bytes_on_wire")) > 0);
	free(a);
	free(b);
	free(src);
	free(dst);
	json_decref(sum);
	stop(s, t);
}

static void test_refused_peers(void **state)
{
	gv_tls *t;
	gv_xfer_server *s = server("srv", nokey, &t);
	gv_err e;

	/* a certificate from another CA */
	expect_refused(ask(s, "alien-cli", nokey, &e), &e, "refused this host's certificate");
	assert_non_null(strstr(e.msg, "unknown ca"));
	/* a revoked one (the server's CRL) */
	expect_refused(ask(s, "gone", nokey, &e), &e, "revoked");
	/* none at all, but the shared key: this server takes only TLS */
	expect_refused(ask(s, NULL, key, &e), &e, "takes only mutual TLS");
	/* neither */
	expect_refused(ask(s, NULL, nokey, &e), &e, "neither TLS certificates nor the grid key");
	stop(s, t);

	/* a server whose certificate names another address; one of another CA */
	s = server("far", nokey, &t);
	expect_refused(ask(s, "cli", nokey, &e), &e, "not trusted: IP address mismatch");
	stop(s, t);
	s = server("alien", nokey, &t);
	expect_refused(ask(s, "cli", nokey, &e), &e, "not trusted");
	stop(s, t);
}

/* The switch host by host: certificates and the grid key together talk
 * to a host with only the key (falling back), and take its connections;
 * a host with certificates but no key is refused by a key-only one. */
static void test_mixed_modes(void **state)
{
	gv_tls *t;
	gv_xfer_server *s = server(NULL, key, &t);
	gv_err e;

	assert_int_equal(ask(s, "cli", key, &e), 0);
	assert_null(last_peer);
	assert_null(last_reply_peer); /* the shared key: no names, none forged */
	expect_refused(ask(s, "cli", nokey, &e), &e, "the peer answered without TLS: this host "
		       "has no TLS certificate");
	stop(s, t);

	s = server("srv", key, &t);
	assert_int_equal(ask(s, NULL, key, &e), 0); /* shared key, accepted meanwhile */
	assert_null(last_peer);
	assert_int_equal(ask(s, "cli", key, &e), 0); /* TLS preferred */
	assert_non_null(last_peer);
	stop(s, t);
}

/* A certificate the CA code would never make, signed by @issuer_dir's
 * host.key/host.crt (or the CA), valid from @from_days to @to_days from
 * now, OU @ou (NULL: none), CA:FALSE, both TLS usages, IP 127.0.0.1;
 * with our ca.crt and crl.pem, into @out. */
static void odd_cert(const char *out, const char *issuer, int from_days, int to_days,
		     const char *ou)
{
	char *ik = gv_strdupf("%s/%s", dir, issuer), *ic, *o = path(out), *p;
	bool ca = !strcmp(issuer, "ca");
	FILE *f;
	EVP_PKEY *k = EVP_EC_gen("P-256"), *sk;
	X509 *x = X509_new(), *sx;
	X509_NAME *n = X509_NAME_new();
	X509V3_CTX ctx;

	p = gv_strdupf("%s/%s", ik, ca ? "ca.key" : "host.key");
	f = fopen(p, "r");
	sk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	free(p);
	ic = gv_strdupf("%s/%s", ik, ca ? "ca.crt" : "host.crt");
	f = fopen(ic, "r");
	sx = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(sk);
	assert_non_null(sx);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 4242 + from_days * 7 + to_days);
	X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)"gridvm", -1, -1, 0);
	if (ou)
		X509_NAME_add_entry_by_txt(n, "OU", MBSTRING_UTF8, (const unsigned char *)ou, -1, -1, 0);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)out, -1, -1, 0);
	X509_set_subject_name(x, n);
	X509_set_issuer_name(x, X509_get_subject_name(sx));
	X509_gmtime_adj(X509_getm_notBefore(x), (long)from_days * 86400);
	X509_gmtime_adj(X509_getm_notAfter(x), (long)to_days * 86400);
	X509_set_pubkey(x, k);
	const char *exts[][2] = { { "basicConstraints", "critical,CA:FALSE" },
				  { "keyUsage", "critical,digitalSignature,keyEncipherment" },
				  { "extendedKeyUsage", "serverAuth,clientAuth" },
				  { "subjectAltName", "IP:127.0.0.1" } };
	X509V3_set_ctx(&ctx, sx, x, NULL, NULL, 0);
	for (size_t i = 0; i < 4; i++) {
		X509_EXTENSION *e = X509V3_EXT_conf(NULL, &ctx, exts[i][0], exts[i][1]);
		assert_non_null(e);
		X509_add_ext(x, e, -1);
		X509_EXTENSION_free(e);
	}
	assert_true(X509_sign(x, sk, EVP_sha256()) > 0);
	mkdir(o, 0700);
	p = gv_strdupf("%s/host.crt", o);
	f = fopen(p, "w");
	PEM_write_X509(f, x);
	if (!ca) /* the chain up to the signing host, as a forger would send */
		PEM_write_X509(f, sx);
	fclose(f);
	free(p);
	p = gv_strdupf("%s/host.key", o);
	f = fopen(p, "w");
	PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	free(p);
	char *cmd = gv_strdupf("cp %s/ca/ca.crt %s/ca/crl.pem %s/", dir, dir, o);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	X509_NAME_free(n);
	X509_free(x);
	X509_free(sx);
	EVP_PKEY_free(k);
	EVP_PKEY_free(sk);
	free(ik);
	free(ic);
	free(o);
}

/* Certificates the grid's CA would not issue, presented to a server:
 * expired, not yet valid, signed by a host (not a CA); and a server with
 * such a certificate. */
static void test_odd_certificates(void **state)
{
	gv_tls *t;
	gv_xfer_server *s = server("srv", nokey, &t);
	gv_err e;

	odd_cert("expired", "ca", -30, -1, "agent");
	odd_cert("early", "ca", 2, 30, "agent");
	odd_cert("leafsigned", "srv", -1, 30, "agent");
	expect_refused(ask(s, "expired", nokey, &e), &e, "refused this host's certificate");
	assert_non_null(strstr(e.msg, "expired"));
	expect_refused(ask(s, "early", nokey, &e), &e, "refused this host's certificate");
	expect_refused(ask(s, "leafsigned", nokey, &e), &e, "refused this host's certificate");
	stop(s, t);
	s = server("expired", nokey, &t);
	expect_refused(ask(s, "cli", nokey, &e), &e, "not trusted: certificate has expired");
	stop(s, t);
	s = server("early", nokey, &t);
	expect_refused(ask(s, "cli", nokey, &e), &e, "not trusted: certificate is not yet valid");
	stop(s, t);
	s = server("leafsigned", nokey, &t);
	expect_refused(ask(s, "cli", nokey, &e), &e, "not trusted: invalid CA certificate");
	stop(s, t);
}

/* Roles: our own material without a role is unusable (said so); a peer
 * that skips that check and shows a certificate without a role, or with
 * another one, is refused by the server with the reason. */
static void test_roles(void **state)
{
	gv_tls *t;
	gv_xfer_server *s = server("srv", nokey, &t);
	gv_err e;

	odd_cert("norole", "ca", -1, 30, NULL);
	odd_cert("admin", "ca", -1, 30, "admin");
	expect_refused(ask(s, "norole", nokey, &e), &e, "host.crt names no role");
	for (int i = 0; i < 2; i++) { /* a client of our own making */
		const char *m = i ? "admin" : "norole";
		char *crt = gv_strdupf("%s/%s/host.crt", dir, m), *key = gv_strdupf("%s/%s/host.key", dir, m);
		SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
		assert_int_equal(SSL_CTX_use_certificate_file(ctx, crt, SSL_FILETYPE_PEM), 1);
		assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM), 1);
		struct sockaddr_in sa = { .sin_family = AF_INET,
					  .sin_port = htons((uint16_t)gv_xfer_server_port(s)) };
		inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		SSL *ssl = SSL_new(ctx);
		SSL_set_fd(ssl, fd);
		SSL_set_alpn_protos(ssl, (const unsigned char *)"\x0dgridvm-xfer/2", 14);
		assert_int_equal(SSL_connect(ssl), 1);
		char buf[400] = "";
		int n = 0, r;
		while (n < (int)sizeof(buf) - 1 && (r = SSL_read(ssl, buf + n, (int)sizeof(buf) - 1 - n)) > 0)
			n += r;
		buf[n] = '\0';
		assert_true(n > 5);
		assert_int_equal(buf[4], 'E');
		if (!strstr(buf + 5, "names no gridvm role"))
			fail_msg("unclear: %s", buf + 5);
		SSL_free(ssl);
		SSL_CTX_free(ctx);
		close(fd);
		free(crt);
		free(key);
	}
	stop(s, t);
}

/* Users (docs/security.md#users): a user's certificate (role user, client
 * use only) is refused by a server that does not take users (an agent)
 * and taken, with its name and role, by one that does (a controller); it
 * cannot serve; and a server on a unix socket names the local user. */
static void test_users(void **state)
{
	char *ca = path("ca"), *o = path("alice"), *sock = path("ctl.sock");
	const char *addrs[] = { "127.0.0.1" };
	json_t *req = json_pack("{s:s}", "op", "hello"), *rep = NULL;
	gv_xfer_server *s;
	gv_tls *t;
	gv_err e;

	expect_refused(gv_ca_issue(ca, "alice", "user", addrs, 1, 30, o, &e), &e,
		       "a user's certificate names no address");
	assert_int_equal(gv_ca_issue(ca, "alice", "user", NULL, 0, 30, o, &e), 0);
	s = server("srv", nokey, &t); /* an agent's server */
	expect_refused(ask(s, "alice", nokey, &e), &e, "is a user's: only a controller takes users");
	gv_xfer_server_set_users(s, true); /* a controller's */
	assert_int_equal(ask(s, "alice", nokey, &e), 0);
	assert_string_equal(json_string_value(json_object_get(last_peer, "role")), "user");
	assert_string_equal(json_string_value(json_object_get(last_peer, "name")), "alice");
	stop(s, t);
	s = server("alice", nokey, &t); /* a user's certificate cannot serve */
	gv_xfer_server_set_users(s, true);
	assert_true(ask(s, "cli", nokey, &e) < 0);
	stop(s, t);

	/* a unix socket: no handshake, the kernel's word on the user */
	assert_int_equal(gv_xfer_server_start(sock, nokey, resolve, NULL, &s, &e), 0);
	gv_xfer_server_set_control(s, control);
	assert_int_equal(gv_xfer_control(sock, 0, nokey, req, 5000, &rep, &e), 0);
	assert_true(json_is_true(json_object_get(last_peer, "local")));
	assert_int_equal(json_integer_value(json_object_get(last_peer, "uid")), (json_int_t)geteuid());
	assert_true(json_is_true(json_object_get(last_peer, "admin"))); /* the server's own user */
	assert_null(json_object_get(last_peer, "tls"));
	json_decref(rep);
	gv_xfer_server_stop(s);
	assert_int_equal(access(sock, F_OK), -1); /* removed when it stops */
	json_decref(req);
	free(ca);
	free(o);
	free(sock);
}

/* A raw TCP peer: a plain-text hello is refused, a TLS hello that never
 * finishes is cut at the handshake deadline (the server closes). */
static void test_plain_and_stalled(void **state)
{
	gv_tls *t;
	gv_xfer_server *s = server("srv", nokey, &t);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)gv_xfer_server_port(s)) };
	char buf[512];
	int fd;
	ssize_t n;

	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(write(fd, "\0\0\0\x2bHGRIDVMX1", 13), 13);
	n = read(fd, buf, sizeof(buf) - 1);
	assert_true(n > 5);
	buf[n] = '\0';
	assert_int_equal(buf[4], 'E');
	assert_non_null(strstr(buf + 5, "takes only mutual TLS"));
	close(fd);

	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(write(fd, "\x16\x03\x01\x02\x00\x01", 6), 6); /* then nothing */
	struct pollfd p = { fd, POLLIN, 0 };
	assert_int_equal(poll(&p, 1, 60000), 1); /* the deadline is 10 s */
	n = read(fd, buf, sizeof(buf));
	assert_true(n == 0 || (n < 0 && errno == ECONNRESET) || n > 0);
	while (n > 0) /* perhaps an alert, then the end */
		n = read(fd, buf, sizeof(buf));
	assert_true(n == 0 || errno == ECONNRESET);
	close(fd);
	stop(s, t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_trusted_peer),
		cmocka_unit_test(test_refused_peers),
		cmocka_unit_test(test_mixed_modes),
		cmocka_unit_test(test_plain_and_stalled),
		cmocka_unit_test(test_odd_certificates),
		cmocka_unit_test(test_roles),
		cmocka_unit_test(test_users),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
