/* SPDX-License-Identifier: MIT */
/*
 * checkpoint_push.c - a migrated VM's checkpoints follow it: the source
 * pushes the chunks the destination lacks, then the manifests.
 */
#include "checkpoint_internal.h"

#include <gridvm/base/b64.h>

#include <gridvm/node/checkpoint.h>
#include <gridvm/blocks/chunk.h>

#include <gridvm/xfer/xfer.h>

#include <openssl/crypto.h>
#include <pthread.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* --- checkpoints following their VM to another host -----------------
 * After a migration the source pushes each checkpoint of the VM, oldest
 * first: the destination says which chunk files it lacks (a delta's base
 * is listed before the delta), takes them as they are stored (checked:
 * each must read back as its hash), then the manifest, which it accepts
 * only if every chunk it names is there. */

#define PUSH_BATCH (4u << 20) /* raw chunk bytes per request */

/* The hashes of @man's chunks, each delta's base first, no repeats. */
static json_t *push_list(gv_chunkstore *cs, json_t *man)
{
	json_t *out = json_array(), *seen = json_object();
	const char *parts[] = { "memory", "disk", "jobout" };

	for (size_t k = 0; k < 3; k++) {
		json_t *c;
		size_t i;
		json_array_foreach(json_object_get(json_object_get(man, parts[k]), "chunks"), i, c) {
			const char *hex = json_string_value(json_array_get(c, 0));
			uint8_t h[32], base[32];
			char bhex[65];
			if (!hex || json_object_get(seen, hex) || gv_hash_parse(hex, h) < 0)
				continue;
			if (gv_chunkstore_base_of(cs, h, base) == 1) {
				gv_hash_hex(base, bhex);
				if (!json_object_get(seen, bhex)) {
					json_object_set_new(seen, bhex, json_true());
					json_array_append_new(out, json_string(bhex));
				}
			}
			json_object_set_new(seen, hex, json_true());
			json_array_append_new(out, json_string(hex));
		}
	}
	json_decref(seen);
	return out;
}

static int push_one(gv_host *h, gv_chunkstore *cs, const char *vm, const char *id,
		    gv_checkpoint_ask ask, void *ud, uint64_t *bytes, gv_err *e)
{
	json_t *man = NULL, *rep = NULL, *batch = NULL;
	size_t i, used = 0;
	json_t *hx, *list = NULL;
	/* the lock (vs. chunk gc) only while reading here, never while the
	 * peer is asked */
	pthread_mutex_lock(&h->ckpt_mu);
	int r = ckpt_load_manifest(h, vm, id, &man, e);
	if (r == 0)
		list = push_list(cs, man);
	pthread_mutex_unlock(&h->ckpt_mu);

	if (r == 0)
		r = ask(ud, json_pack("{s:s, s:s, s:o}", "op", "ckpt-have", "name", vm, "hashes",
				      list), &rep, e);
	batch = json_array();
	json_array_foreach(r == 0 ? json_object_get(rep, "missing") : NULL, i, hx) {
		uint8_t hh[32], base[32], *buf = NULL;
		size_t len = 0;
		bool delta;
		if (r < 0)
			break;
		pthread_mutex_lock(&h->ckpt_mu);
		int got = gv_hash_parse(json_string_value(hx), hh) < 0
				  ? -EINVAL
				  : gv_chunkstore_raw(cs, hh, &buf, &len, &delta, base);
		pthread_mutex_unlock(&h->ckpt_mu);
		if (got < 0) {
			r = gv_err_set(e, -EBADMSG, "checkpoint %s: chunk %s unreadable here", id,
				       json_string_value(hx) ?: "?");
			break;
		}
		char *b64 = gv_b64_encode(buf, len);
		json_array_append_new(batch, json_pack("[O, s]", hx, b64));
		*bytes += len;
		used += len;
		free(buf);
		free(b64);
		if (used >= PUSH_BATCH || i + 1 == json_array_size(json_object_get(rep, "missing"))) {
			json_t *ok = NULL;
			r = ask(ud, json_pack("{s:s, s:s, s:O}", "op", "ckpt-put", "name", vm,
					      "chunks", batch), &ok, e);
			json_decref(ok);
			json_array_clear(batch);
			used = 0;
		}
	}
	json_decref(batch);
	json_decref(rep);
	rep = NULL;
	if (r == 0)
		r = ask(ud, json_pack("{s:s, s:s, s:s, s:O}", "op", "ckpt-add", "name", vm, "id", id,
				      "manifest", man), &rep, e);
	json_decref(rep);
	json_decref(man);
	return r;
}

int host_checkpoint_push(gv_host *h, const char *vm, gv_checkpoint_ask ask, void *ud,
			 uint64_t *bytes, gv_err *e)
{
	char **ids = ckpt_list_ids(h, vm), *csdir = gv_strdupf("%s/chunks", h->datadir);
	gv_chunkstore *cs = NULL;
	int n = 0, r = 0;

	*bytes = 0;
	if (*ids && (r = gv_chunkstore_open(csdir, &cs)) < 0)
		gv_err_set(e, r, "cannot open the chunk store");
	for (char **id = ids; r == 0 && *id; id++, n++)
		r = push_one(h, cs, vm, *id, ask, ud, bytes, e);
	gv_chunkstore_close(cs);
	gv_strv_free(ids);
	free(csdir);
	return r < 0 ? r : n;
}

static bool ckpt_exists(gv_host *h, const char *vm, const char *id)
{
	char *path = gv_strdupf("%s/checkpoints/%s/%s.json", h->datadir, vm, id);
	bool yes = access(path, F_OK) == 0;

	free(path);
	return yes;
}

/* "ckpt-list": the ids held of VM @vm; "ckpt-del": delete one ("id"). */
static json_t *ckpt_receive_catalogue(gv_host *h, const char *op, const char *vm, json_t *req)
{
	const char *id = json_string_value(json_object_get(req, "id"));
	json_t *ids = json_array();
	gv_err e;

	if (!vm || !gv_name_valid(vm)) {
		json_decref(ids);
		return gv_err_json(-EINVAL, "no VM name");
	}
	if (!strcmp(op, "ckpt-del") && id && gv_name_valid(id) &&
	    gv_checkpoint_delete(h, vm, id, &e) < 0 && ckpt_exists(h, vm, id)) {
		json_decref(ids);
		return gv_err_json(-EIO, e.msg);
	}
	char **all = ckpt_list_ids(h, vm);
	for (char **p = all; *p; p++)
		json_array_append_new(ids, json_string(*p));
	gv_strv_free(all);
	return json_pack("{s:b, s:o}", "ok", 1, "ids", ids);
}

json_t *host_checkpoint_receive(gv_host *h, const char *op, json_t *req)
{
	const char *vm = json_string_value(json_object_get(req, "name"));
	char *csdir = gv_strdupf("%s/chunks", h->datadir);
	gv_chunkstore *cs = NULL;
	json_t *rep = NULL, *x;
	size_t i;

	if (!strcmp(op, "ckpt-list") || !strcmp(op, "ckpt-del")) {
		free(csdir);
		return ckpt_receive_catalogue(h, op, vm, req);
	}
	pthread_mutex_lock(&h->ckpt_mu); /* not while chunks are collected */
	if (gv_chunkstore_open(csdir, &cs) < 0) {
		rep = gv_err_jsonf(-EIO, "cannot open the chunk store %s", csdir);
	} else if (!strcmp(op, "ckpt-have")) {
		json_t *missing = json_array();
		json_array_foreach(json_object_get(req, "hashes"), i, x) {
			uint8_t hh[32];
			if (gv_hash_parse(json_string_value(x), hh) == 0 && !gv_chunkstore_has(cs, hh))
				json_array_append(missing, x);
		}
		rep = json_pack("{s:b, s:o}", "ok", 1, "missing", missing);
	} else if (!strcmp(op, "ckpt-put")) {
		json_array_foreach(json_object_get(req, "chunks"), i, x) {
			const char *hex = json_string_value(json_array_get(x, 0));
			const char *b64 = json_string_value(json_array_get(x, 1));
			uint8_t hh[32], *buf = NULL;
			size_t bl = b64 ? strlen(b64) : 0;
			size_t n = 0;
			if (!hex || !b64 || gv_hash_parse(hex, hh) < 0 || bl % 4) {
				rep = gv_err_jsonf(-EINVAL, "bad chunk %s", hex ? hex : "?");
				break;
			}
			if (gv_b64_decode(b64, bl, &buf, &n) < 0 ||
			    gv_chunkstore_put_raw(cs, hh, buf, n) < 0)
				rep = gv_err_jsonf(-EBADMSG, "chunk %s does not check out", hex);
			free(buf);
			if (rep)
				break;
		}
		if (!rep) {
			ckpt_sync_dir(csdir);
			rep = json_pack("{s:b}", "ok", 1);
		}
	} else if (!strcmp(op, "ckpt-add")) {
		const char *id = json_string_value(json_object_get(req, "id"));
		json_t *man = json_object_get(req, "manifest"), *mem, *disk, *jo;
		char *dir = vm ? ckpt_dir(h, vm) : NULL, *path = NULL, *text = NULL;
		mem = json_object_get(json_object_get(man, "memory"), "chunks");
		disk = json_object_get(json_object_get(man, "disk"), "chunks");
		if (!vm || !gv_name_valid(vm) || !id || !gv_name_valid(id) || !json_is_array(mem) ||
		    !json_is_array(disk) ||
		    strcmp(json_string_value(json_object_get(man, "vm")) ?: "", vm))
			rep = gv_err_jsonf(-EINVAL, "bad checkpoint %s", id ? id : "?");
		/* (the job output's chunks: checkpoints made since they carry it) */
		jo = json_object_get(json_object_get(man, "jobout"), "chunks");
		json_t *parts[] = { mem, disk, jo };
		for (size_t k = 0; !rep && k < 3; k++)
			json_array_foreach(parts[k], i, x) {
				uint8_t hh[32];
				if (gv_hash_parse(json_string_value(json_array_get(x, 0)), hh) < 0 ||
				    !gv_chunkstore_has(cs, hh)) {
					rep = gv_err_jsonf(-ENOENT, "checkpoint %s lacks a chunk "
							   "here", id);
					break;
				}
			}
		if (!rep && gv_mkdir_p(dir, 0755) < 0)
			rep = gv_err_jsonf(-EIO, "cannot create %s", dir);
		if (!rep) {
			path = gv_strdupf("%s/%s.json", dir, id);
			text = json_dumps(man, JSON_INDENT(1));
			if (!text || gv_write_file_atomic(path, text, strlen(text)) < 0)
				rep = gv_err_jsonf(-EIO, "cannot write %s", path);
		}
		if (!rep) {
			ckpt_index_add(h, cs, vm, id, disk,
				       (uint64_t)json_integer_value(
					       json_object_get(json_object_get(man, "disk"), "bytes")));
			rep = json_pack("{s:b}", "ok", 1);
		}
		free(text);
		free(path);
		free(dir);
	} else {
		rep = gv_err_jsonf(-EINVAL, "unknown operation %s", op);
	}
	pthread_mutex_unlock(&h->ckpt_mu);
	gv_chunkstore_close(cs);
	free(csdir);
	return rep;
}

/* --- checkpoints replicated to other hosts (the grid) ---------------
 * A grid job's checkpoints are mirrored to replica hosts as they are
 * made, so that losing its host loses none of them: the same requests as
 * above, sent straight to the replica's agent, each carrying the job's
 * binding epoch (the replica's agent refuses one older than it saw). */

struct peer {
	char host[256];
	int port;
	uint8_t key[GV_XFER_KEY_LEN];
	int64_t epoch;
};

static int peer_ask(void *ud, json_t *req, json_t **rep, gv_err *e)
{
	struct peer *p = ud;
	json_t *out = NULL;
	gv_err ce;
	int r;

	json_object_set_new(req, "epoch", json_integer(p->epoch));
	r = gv_xfer_control(p->host, p->port, p->key, req, 10 * 60 * 1000, &out, &ce);
	json_decref(req);
	if (r < 0)
		return gv_err_set(e, r, "%s:%d: %s", p->host, p->port, ce.msg);
	if (!json_is_true(json_object_get(out, "ok"))) {
		r = gv_err_set(e, -EREMOTEIO, "%s:%d refused: %s", p->host, p->port,
			       json_string_value(json_object_get(out, "error")) ?: "no reason");
		json_decref(out);
		return r;
	}
	if (rep)
		*rep = out;
	else
		json_decref(out);
	return 0;
}

static int peer_open(gv_host *h, const char *to, int64_t epoch, struct peer *p, gv_err *e)
{
	int r = gv_xfer_peer_parse(to, p->host, sizeof(p->host), &p->port);

	p->epoch = epoch;
	if (r < 0)
		return gv_err_set(e, r, "bad address %s", to);
	if ((r = gv_xfer_key_load(h->grid_key, p->key)) < 0)
		return gv_err_set(e, r, "cannot read the grid key %s", h->grid_key);
	return 0;
}

/* Push the checkpoints named in @ids (NULL: all) that @p lacks. */
static int push_ids(gv_host *h, const char *vm, char **ids, json_t *has, struct peer *p,
		    uint64_t *bytes, gv_err *e)
{
	char *csdir = gv_strdupf("%s/chunks", h->datadir);
	gv_chunkstore *cs = NULL;
	size_t i;
	json_t *x;
	int r = 0;

	for (char **id = ids; r == 0 && *id; id++) {
		bool there = false;
		json_array_foreach(has, i, x)
			there = there || !strcmp(json_string_value(x) ?: "", *id);
		if (there)
			continue;
		if (!cs && (r = gv_chunkstore_open(csdir, &cs)) < 0) {
			gv_err_set(e, r, "cannot open the chunk store");
			break;
		}
		r = push_one(h, cs, vm, *id, peer_ask, p, bytes, e);
	}
	gv_chunkstore_close(cs);
	free(csdir);
	return r;
}

int gv_checkpoint_replicate(gv_host *h, const char *vm, const char *to, int64_t epoch,
			    json_t **held, uint64_t *bytes, gv_err *e)
{
	struct peer p;
	json_t *rep = NULL, *x;
	char **ids = ckpt_list_ids(h, vm);
	size_t i;
	int r = peer_open(h, to, epoch, &p, e);

	*bytes = 0;
	if (r == 0)
		r = peer_ask(&p, json_pack("{s:s, s:s}", "op", "ckpt-list", "name", vm), &rep, e);
	if (r == 0)
		r = push_ids(h, vm, ids, json_object_get(rep, "ids"), &p, bytes, e);
	/* retention: what this host dropped goes there too */
	json_array_foreach(r == 0 ? json_object_get(rep, "ids") : NULL, i, x) {
		bool kept = false;
		for (char **id = ids; *id; id++)
			kept = kept || !strcmp(*id, json_string_value(x) ?: "");
		if (!kept && (r = peer_ask(&p, json_pack("{s:s, s:s, s:O}", "op", "ckpt-del", "name",
							 vm, "id", x), NULL, e)) < 0)
			break;
	}
	json_decref(rep);
	rep = NULL;
	if (r == 0)
		r = peer_ask(&p, json_pack("{s:s, s:s}", "op", "ckpt-list", "name", vm), &rep, e);
	if (r == 0 && held)
		*held = json_incref(json_object_get(rep, "ids"));
	json_decref(rep);
	gv_strv_free(ids);
	OPENSSL_cleanse(p.key, sizeof(p.key));
	return r;
}

int gv_checkpoint_send(gv_host *h, const char *vm, const char *id, const char *to, int64_t epoch,
		       uint64_t *bytes, gv_err *e)
{
	struct peer p;
	char *one[] = { (char *)id, NULL };
	json_t *rep = NULL;
	int r = peer_open(h, to, epoch, &p, e);

	*bytes = 0;
	if (r == 0 && (!id || !gv_name_valid(id) || ckpt_load_manifest(h, vm, id, &rep, e) < 0))
		r = gv_err_set(e, -ENOENT, "no checkpoint %s of %s here", id ? id : "?", vm);
	json_decref(rep);
	rep = NULL;
	if (r == 0)
		r = peer_ask(&p, json_pack("{s:s, s:s}", "op", "ckpt-list", "name", vm), &rep, e);
	if (r == 0)
		r = push_ids(h, vm, one, json_object_get(rep, "ids"), &p, bytes, e);
	json_decref(rep);
	OPENSSL_cleanse(p.key, sizeof(p.key));
	return r;
}

void gv_checkpoint_drop_all(gv_host *h, const char *vm)
{
	host_checkpoint_drop_all(h, vm);
}
