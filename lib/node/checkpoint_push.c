/* SPDX-License-Identifier: MIT */
/*
 * checkpoint_push.c - a migrated VM's checkpoints follow it: the source
 * pushes the chunks the destination lacks, then the manifests.
 */
#include "checkpoint_internal.h"

#include <gridvm/base/b64.h>

#include <gridvm/node/checkpoint.h>
#include <gridvm/blocks/chunk.h>

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
	const char *parts[] = { "memory", "disk" };

	for (size_t k = 0; k < 2; k++) {
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

json_t *host_checkpoint_receive(gv_host *h, const char *op, json_t *req)
{
	const char *vm = json_string_value(json_object_get(req, "name"));
	char *csdir = gv_strdupf("%s/chunks", h->datadir);
	gv_chunkstore *cs = NULL;
	json_t *rep = NULL, *x;
	size_t i;

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
		json_t *man = json_object_get(req, "manifest"), *mem, *disk;
		char *dir = vm ? ckpt_dir(h, vm) : NULL, *path = NULL, *text = NULL;
		mem = json_object_get(json_object_get(man, "memory"), "chunks");
		disk = json_object_get(json_object_get(man, "disk"), "chunks");
		if (!vm || !gv_name_valid(vm) || !id || !gv_name_valid(id) || !json_is_array(mem) ||
		    !json_is_array(disk) ||
		    strcmp(json_string_value(json_object_get(man, "vm")) ?: "", vm))
			rep = gv_err_jsonf(-EINVAL, "bad checkpoint %s", id ? id : "?");
		json_t *parts[] = { mem, disk };
		for (size_t k = 0; !rep && k < 2; k++)
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
