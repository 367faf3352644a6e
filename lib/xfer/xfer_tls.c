/* SPDX-License-Identifier: MIT */
/*
 * xfer_tls.c - mutual TLS 1.3 under the transfer protocol's frames: a
 * host's certificate material (read again when its files change), the
 * handshakes of both sides with the peer verified against the grid CA
 * and its CRL, the peer's identity, and the record I/O over a socket
 * that never raises SIGPIPE and honours the connection's timeout and
 * handshake deadline (poll on a non-blocking socket).
 */
#include "xfer_internal.h"

#include <gridvm/xfer/tls.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define ALPN "\x0dgridvm-xfer/2"

struct gv_tls {
	char *dir;
	pthread_mutex_t mu;
	uint64_t stamp; /* of the files when last read, 0: never read */
	SSL_CTX *ctx;	/* NULL: no material, or broken (err says why) */
	char err[400];
	char name[256], role[32];
};

static const char *const files[] = { "ca.crt", "host.crt", "host.key", "crl.pem" };

const char *gv_tls_dir(const gv_tls *t)
{
	return t->dir;
}

/* A digest of the files' identities and times: a change reloads. */
static uint64_t files_stamp(const char *dir)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char *p = gv_strdupf("%s/%s", dir, files[i]);
		struct stat st;
		uint64_t v[4] = { 0 };
		if (stat(p, &st) == 0) {
			v[0] = (uint64_t)st.st_ino;
			v[1] = (uint64_t)st.st_size;
			v[2] = gv_stat_mtime_ns(&st);
			v[3] = (uint64_t)st.st_ctim.tv_nsec;
		}
		for (int k = 0; k < 4; k++)
			h = (h ^ v[k]) * 1099511628211ull;
		free(p);
	}
	return h | 1;
}

/* "CN" and "OU" of @x, and its subject as QEMU's tls-authz sees it
 * (GnuTLS's gnutls_x509_crt_get_dn: RFC 4514 escaping, but in the
 * certificate's order, "O=gridvm,OU=agent,CN=h1"). */
static void cert_identity(X509 *x, char *name, size_t nlen, char *role, size_t rlen,
			  char *dn, size_t dlen)
{
	X509_NAME *sn = X509_get_subject_name(x);

	name[0] = role[0] = '\0';
	if (X509_NAME_get_text_by_NID(sn, NID_commonName, name, (int)nlen) < 0)
		name[0] = '\0';
	if (X509_NAME_get_text_by_NID(sn, NID_organizationalUnitName, role, (int)rlen) < 0)
		role[0] = '\0';
	if (dn) {
		BIO *m = BIO_new(BIO_s_mem());
		int n = X509_NAME_print_ex(m, sn, 0, XN_FLAG_RFC2253 & ~XN_FLAG_DN_REV);
		dn[0] = '\0';
		if (n > 0 && (size_t)n < dlen)
			dn[BIO_read(m, dn, n) > 0 ? n : 0] = '\0';
		BIO_free(m);
	}
}

static bool role_ok(const char *role)
{
	return !strcmp(role, "agent") || !strcmp(role, "controller");
}

/* A grid user's certificate (docs/security.md#users): a client of the
 * controller only. */
static bool role_user(const char *role)
{
	return !strcmp(role, "user");
}

static int alpn_select(SSL *s, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	unsigned char *o;

	if (SSL_select_next_proto(&o, outlen, (const unsigned char *)ALPN, sizeof(ALPN) - 1,
				  in, inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	*out = o;
	return SSL_TLSEXT_ERR_OK;
}

static void ssl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	snprintf(buf, len, "%s", r ? r : "unknown error");
	ERR_clear_error();
}

/* (Re)build t->ctx from the files; mu held. */
static void tls_load(gv_tls *t)
{
	char *ca = gv_strdupf("%s/ca.crt", t->dir), *crt = gv_strdupf("%s/host.crt", t->dir);
	char *key = gv_strdupf("%s/host.key", t->dir), *crl = gv_strdupf("%s/crl.pem", t->dir);
	SSL_CTX *ctx = NULL;
	const char *what = NULL;
	char why[200] = "";

	SSL_CTX_free(t->ctx); /* sessions hold their own reference */
	t->ctx = NULL;
	t->err[0] = t->name[0] = t->role[0] = '\0';
	if (access(crt, F_OK) != 0)
		goto out; /* no material: TLS off */
	ctx = SSL_CTX_new(TLS_method());
	if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION))
		what = "cannot make a TLS context";
	else if (SSL_CTX_use_certificate_chain_file(ctx, crt) != 1)
		what = "cannot use host.crt";
	else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
		what = "cannot use host.key";
	else if (SSL_CTX_check_private_key(ctx) != 1)
		what = "host.key is not the key of host.crt";
	else if (SSL_CTX_load_verify_file(ctx, ca) != 1)
		what = "cannot read ca.crt";
	if (!what && access(crl, F_OK) == 0) {
		X509_STORE *st = SSL_CTX_get_cert_store(ctx);
		FILE *f = fopen(crl, "r");
		X509_CRL *c = f ? PEM_read_X509_CRL(f, NULL, NULL, NULL) : NULL;
		if (!c || X509_STORE_add_crl(st, c) != 1)
			what = "cannot read crl.pem";
		else
			X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK);
		X509_CRL_free(c);
		if (f)
			fclose(f);
	}
	if (!what) {
		cert_identity(SSL_CTX_get0_certificate(ctx), t->name, sizeof(t->name), t->role,
			      sizeof(t->role), NULL, 0);
		if (!role_ok(t->role) && !role_user(t->role))
			what = "host.crt names no role (OU agent, controller or user)";
	}
	if (what) {
		ssl_reason(why, sizeof(why));
		snprintf(t->err, sizeof(t->err), "TLS material in %s: %s (%s)", t->dir, what, why);
		SSL_CTX_free(ctx);
		goto out;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)ALPN, sizeof(ALPN) - 1);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	t->ctx = ctx;
out:
	free(ca);
	free(crt);
	free(key);
	free(crl);
}

/* The current context (a new reference) or NULL: -ENOENT without
 * material, -EINVAL if it is broken (reason in @e). */
static int tls_ctx(gv_tls *t, SSL_CTX **out, gv_err *e)
{
	uint64_t stamp;
	int r = 0;

	pthread_mutex_lock(&t->mu);
	stamp = files_stamp(t->dir);
	if (stamp != t->stamp) {
		tls_load(t);
		t->stamp = stamp;
	}
	*out = t->ctx;
	if (t->ctx)
		SSL_CTX_up_ref(t->ctx);
	else if (t->err[0])
		r = gv_err_set(e, -EINVAL, "%s", t->err);
	else
		r = -ENOENT;
	pthread_mutex_unlock(&t->mu);
	return r;
}

int gv_tls_new(const char *dir, gv_tls **out, gv_err *e)
{
	gv_tls *t = calloc(1, sizeof(*t));

	if (!t || !(t->dir = strdup(dir))) {
		free(t);
		return gv_err_set(e, -ENOMEM, "out of memory");
	}
	pthread_mutex_init(&t->mu, NULL);
	*out = t;
	return 0;
}

void gv_tls_free(gv_tls *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ctx);
	pthread_mutex_destroy(&t->mu);
	free(t->dir);
	free(t);
}

bool gv_tls_enabled(gv_tls *t, gv_err *e)
{
	SSL_CTX *ctx = NULL;
	int r = tls_ctx(t, &ctx, e);

	SSL_CTX_free(ctx);
	return r == 0;
}

void gv_tls_identity(gv_tls *t, char *name, size_t nlen, char *role, size_t rlen)
{
	SSL_CTX *ctx = NULL;

	if (tls_ctx(t, &ctx, NULL) == 0)
		cert_identity(SSL_CTX_get0_certificate(ctx), name, nlen, role, rlen, NULL, 0);
	else
		name[0] = role[0] = '\0';
	SSL_CTX_free(ctx);
}

static pthread_mutex_t default_mu = PTHREAD_MUTEX_INITIALIZER;
static gv_tls *default_tls;

gv_tls *gv_tls_default(void)
{
	pthread_mutex_lock(&default_mu);
	if (!default_tls) {
		const char *d = getenv("GRIDVM_TLS_DIR");
		char *dir = d && *d ? strdup(d) : gv_strdupf("%s/tls", gv_data_dir());
		if (gv_tls_new(dir, &default_tls, NULL) < 0)
			abort(); /* out of memory at start */
		free(dir);
	}
	pthread_mutex_unlock(&default_mu);
	return default_tls;
}

int gv_tls_set_default_dir(const char *dir, gv_err *e)
{
	gv_tls *t = gv_tls_default();
	char *d = dir ? strdup(dir) : gv_strdupf("%s/tls", gv_data_dir());

	if (!d)
		return gv_err_set(e, -ENOMEM, "out of memory");
	/* in place: servers and connections keep using the object, which
	 * reads the new directory at its next use */
	pthread_mutex_lock(&t->mu);
	free(t->dir);
	t->dir = d;
	t->stamp = 0;
	pthread_mutex_unlock(&t->mu);
	return 0;
}

/* ---- records over the socket ------------------------------------- */

static int bio_write(BIO *b, const char *p, int n)
{
	struct xconn *c = BIO_get_data(b);
	ssize_t w = send(c->fd, p, (size_t)n, MSG_NOSIGNAL);

	BIO_clear_retry_flags(b);
	if (w < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			BIO_set_retry_write(b);
		else
			c->sock_err = -errno;
		return -1;
	}
	c->bytes_tx += (uint64_t)w;
	return (int)w;
}

static int bio_read(BIO *b, char *p, int n)
{
	struct xconn *c = BIO_get_data(b);
	ssize_t r = recv(c->fd, p, (size_t)n, 0);

	BIO_clear_retry_flags(b);
	if (r < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			BIO_set_retry_read(b);
		else
			c->sock_err = -errno;
		return -1;
	}
	for (ssize_t i = 0; i < r && c->npre < sizeof(c->pre); i++) /* the first bytes */
		c->pre[c->npre++] = (uint8_t)p[i];
	c->bytes_rx += (uint64_t)r;
	return (int)r;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static void bio_method_init(void)
{
	bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "gridvm-xconn");
	BIO_meth_set_write(bio_method, bio_write);
	BIO_meth_set_read(bio_method, bio_read);
	BIO_meth_set_ctrl(bio_method, bio_ctrl);
}

/* Wait until the socket is readable (or writable), within the timeout and
 * what is left of the deadline. */
static int tls_wait(struct xconn *c, bool wr)
{
	int ms = c->timeout_ms > 0 ? c->timeout_ms : -1;

	if (c->deadline_ms) {
		uint64_t now = gv_now_ms();
		if (now >= c->deadline_ms)
			return -ETIMEDOUT;
		if (ms < 0 || c->deadline_ms - now < (uint64_t)ms)
			ms = (int)(c->deadline_ms - now);
	}
	struct pollfd p = { c->fd, wr ? POLLOUT : POLLIN, 0 };
	int r = poll(&p, 1, ms);
	return r > 0 || (r < 0 && errno == EINTR) ? 0 : r == 0 ? -ETIMEDOUT : -errno;
}

/* After an SSL call returned @ret <= 0: 1 to call again, or an error
 * (the library's reason in c->tls_why). */
static int tls_again(struct xconn *c, int ret)
{
	int err = SSL_get_error(c->ssl, ret), r;

	if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
		r = tls_wait(c, err == SSL_ERROR_WANT_WRITE);
		return r < 0 ? r : 1;
	}
	if (err == SSL_ERROR_ZERO_RETURN)
		return -ECONNRESET;
	if (err == SSL_ERROR_SYSCALL) {
		ERR_clear_error();
		return c->sock_err ? c->sock_err : -ECONNRESET;
	}
	unsigned long e = ERR_peek_last_error();
	if (ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
		ERR_clear_error();
		return -ECONNRESET;
	}
	ssl_reason(c->tls_why, sizeof(c->tls_why));
	return -EPROTO;
}

ssize_t xtls_read(struct xconn *c, void *p, size_t n)
{
	for (;;) {
		ERR_clear_error();
		int r = SSL_read(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
		if (r > 0)
			return r;
		if ((r = tls_again(c, r)) < 0)
			return r;
	}
}

int xtls_write_all(struct xconn *c, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n > 0) {
		ERR_clear_error();
		int w = SSL_write(c->ssl, b, n > (1u << 30) ? (1 << 30) : (int)n);
		if (w > 0) {
			b += w;
			n -= (size_t)w;
			continue;
		}
		if ((w = tls_again(c, w)) < 0)
			return w;
	}
	return 0;
}

void xtls_close(struct xconn *c)
{
	if (!c->ssl)
		return;
	ERR_clear_error();
	SSL_shutdown(c->ssl); /* best effort, non-blocking */
	SSL_free(c->ssl);
	ERR_clear_error();
	c->ssl = NULL;
}

/* A new SSL on c->fd (non-blocking from now on). */
static int tls_start(struct xconn *c, gv_tls *t, bool server, gv_err *e)
{
	SSL_CTX *ctx = NULL;
	int r = tls_ctx(t, &ctx, e);
	BIO *b;

	if (r < 0)
		return r;
	pthread_once(&bio_once, bio_method_init);
	c->ssl = SSL_new(ctx);
	SSL_CTX_free(ctx);
	b = c->ssl ? BIO_new(bio_method) : NULL;
	if (!b) {
		xtls_close(c);
		return gv_err_set(e, -ENOMEM, "cannot start TLS: out of memory");
	}
	BIO_set_data(b, c);
	BIO_set_init(b, 1);
	SSL_set_bio(c->ssl, b, b);
	if (server)
		SSL_set_accept_state(c->ssl);
	else
		SSL_set_connect_state(c->ssl);
	c->npre = 0;
	c->sock_err = 0;
	fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
	return 0;
}

static int handshake(struct xconn *c)
{
	for (;;) {
		ERR_clear_error();
		int r = SSL_do_handshake(c->ssl);
		if (r == 1)
			return 0;
		if ((r = tls_again(c, r)) < 0)
			return r;
	}
}

/* The verified peer certificate's identity into c->peer; its role must
 * be one of ours. */
static int peer_identity(struct xconn *c, gv_err *e)
{
	X509 *x = SSL_get0_peer_certificate(c->ssl);

	if (!x)
		return gv_err_set(e, -EACCES, "the peer presented no certificate");
	c->peer.tls = true;
	cert_identity(x, c->peer.name, sizeof(c->peer.name), c->peer.role, sizeof(c->peer.role),
		      c->peer.dn, sizeof(c->peer.dn));
	if (role_user(c->peer.role) && !c->users_ok)
		return gv_err_set(e, -EACCES, "the peer's certificate (%s) is a user's: only a "
				  "controller takes users; hosts talk to hosts", c->peer.dn);
	if (!role_ok(c->peer.role) && !role_user(c->peer.role))
		return gv_err_set(e, -EACCES, "the peer's certificate (%s) names no gridvm role "
				  "(OU agent or controller)", c->peer.dn);
	return 0;
}

/* The peer answered the ClientHello with something that is not TLS:
 * maybe our own protocol's ERROR frame (a host without certificates, or
 * over its limits says so in clear). */
static int not_tls(struct xconn *c, gv_err *e)
{
	uint8_t buf[320];
	size_t n = c->npre;
	uint32_t len = n >= 5 ? get_be32(c->pre) : 0;

	memcpy(buf, c->pre, n);
	if (n >= 5 && c->pre[4] == XT_ERROR && len > 1 && len <= XFER_MAX_PREAUTH) {
		while (n < 4 + len) { /* the rest of the frame, as far as it comes */
			if (tls_wait(c, false) < 0)
				break;
			ssize_t r = recv(c->fd, buf + n, 4 + len - n, 0);
			if (r <= 0 && !(r < 0 && (errno == EAGAIN || errno == EINTR)))
				break;
			if (r > 0)
				n += (size_t)r;
		}
		return gv_err_set(e, -EPROTONOSUPPORT, "the peer answered without TLS: %.*s",
				  (int)(n - 5), buf + 5);
	}
	return gv_err_set(e, -EPROTONOSUPPORT, "the peer does not speak TLS (a host without "
			  "certificates, an older gridvm, or not a gridvm agent)");
}

int xtls_client(struct xconn *c, gv_tls *t, gv_err *e)
{
	struct sockaddr_storage sa;
	socklen_t sl = sizeof(sa);
	char ip[INET6_ADDRSTRLEN] = "";
	int r = tls_start(c, t, false, e);

	if (r < 0)
		return r;
	/* the peer's certificate must name the address we dialled */
	if (getpeername(c->fd, (struct sockaddr *)&sa, &sl) == 0) {
		if (sa.ss_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, ip, sizeof(ip));
		else
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&sa)->sin6_addr, ip, sizeof(ip));
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), ip);
	}
	r = handshake(c);
	if (r < 0) {
		long v = SSL_get_verify_result(c->ssl);
		if (c->npre == 0 || (c->pre[0] != 0x16 && c->pre[0] != 0x15))
			r = r == -ETIMEDOUT && c->npre == 0
				    ? gv_err_set(e, r, "the peer did not answer the TLS handshake (timeout)")
				    : not_tls(c, e);
		else if (v != X509_V_OK)
			r = gv_err_set(e, -EACCES, "the peer's certificate is not trusted: %s",
				       X509_verify_cert_error_string(v));
		else if (r == -EPROTO)
			r = gv_err_set(e, -EACCES, "TLS handshake with the peer failed: %s",
				       c->tls_why);
		else
			r = gv_err_set(e, r, "TLS handshake with the peer failed: %s",
				       r == -ECONNRESET ? "the peer closed the connection"
							: strerror(-r));
		xtls_close(c);
		return r;
	}
	return peer_identity(c, e);
}

int xtls_server(struct xconn *c, gv_tls *t, gv_err *e)
{
	int r = tls_start(c, t, true, e);

	if (r < 0)
		return r;
	r = handshake(c);
	if (r < 0) {
		long v = SSL_get_verify_result(c->ssl);
		return gv_err_set(e, r == -EPROTO ? -EACCES : r, "TLS handshake failed: %s",
				  v != X509_V_OK ? X509_verify_cert_error_string(v)
				  : r == -EPROTO ? c->tls_why
						 : strerror(-r));
	}
	return peer_identity(c, e);
}
