/* SPDX-License-Identifier: MIT */
/*
 * ctl_hosts.c - the agents' side of the controller. An agent reports
 * every few seconds (resources, attributes, load, images, its grid VMs);
 * the reply carries everything the agent is to do: the jobs bound to it
 * (with their epochs: it runs exactly those), the moves it is to make,
 * and the VMs it may drop. A lost reply costs nothing: the next report
 * gets the same answer (docs/grid.md).
 */
#include "ctl_internal.h"

#include <gridvm/base/util.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The attributes expressions see (docs/expressions.md): the agent's
 * facts, its labels (also as the list `labels`), its images. */
static json_t *host_attrs(struct ctl_host *h)
{
	json_t *a = json_deep_copy(json_object_get(h->report, "attrs"));
	json_t *res = json_object_get(h->report, "resources"), *labels = json_array(), *imgs;
	json_t *im, *v;
	const char *k;
	size_t i;

	if (!a)
		a = json_object();
	json_object_set_new(a, "name", json_string(h->name));
	json_object_set(a, "cpus", json_object_get(res, "cpus"));
	json_object_set(a, "memory", json_object_get(res, "memory"));
	json_object_set(a, "disk", json_object_get(res, "disk"));
	json_object_set(a, "load", json_object_get(h->report, "load"));
	json_object_set_new(a, "vms", json_integer((json_int_t)json_array_size(
						  json_object_get(h->report, "vms"))));
	/* labels: the agent's (--label), then the controller's (host label) */
	json_t *all = json_deep_copy(json_object_get(h->report, "labels"));
	if (!json_is_object(all)) {
		json_decref(all);
		all = json_object();
	}
	json_object_update(all, h->labels);
	json_object_foreach(all, k, v) {
		json_array_append_new(labels, json_string(k));
		json_object_set(a, k, v);
	}
	json_decref(all);
	json_object_set_new(a, "labels", labels);
	imgs = json_array();
	json_array_foreach(json_object_get(h->report, "images"), i, im)
		json_array_append(imgs, json_object_get(im, "name"));
	json_object_set_new(a, "images", imgs);
	return a;
}

void ctl_host_to_sched(gv_ctl *c, struct ctl_host *h)
{
	json_t *res = json_object_get(h->report, "resources"), *attrs = host_attrs(h);
	gv_sched_host spec = {
		.state = !h->up || h->lost ? GV_HOST_DOWN
			 : h->drained ? GV_HOST_DRAINING : GV_HOST_UP,
		.cpus = (uint32_t)json_integer_value(json_object_get(res, "cpus")),
		.memory = (uint64_t)json_integer_value(json_object_get(res, "memory")),
		.disk = (uint64_t)json_integer_value(json_object_get(res, "disk")),
		.load = json_number_value(json_object_get(h->report, "load")),
		.speed = json_number_value(json_object_get(h->report, "speed")),
		.link_rate = json_number_value(json_object_get(h->report, "link_rate")),
		.attrs = attrs,
	};
	gv_err e;

	if (!(spec.link_rate > 0))
		spec.link_rate = h->move_rate; /* measured by moves into it, or 0 */
	if (gv_sched_host_update(c->st, h->sidx, &spec, &e) < 0)
		fprintf(stderr, "gridvmctld: host %s: %s\n", h->name, e.msg);
	ctl_host_images_to_sched(c, h);
	json_decref(attrs);
}

json_t *ctl_hosts_json(gv_ctl *c)
{
	json_t *list = json_array();

	for (size_t i = 0; i < c->nhosts; i++) {
		struct ctl_host *h = &c->hosts[i];
		const gv_sched_host *sh = gv_sched_host_get(c->st, h->sidx);
		json_t *o = json_pack("{s:s, s:s, s:s, s:O, s:b}", "name", h->name, "addr", h->addr,
				      "state", h->lost ? "lost" : !h->up ? "down"
				      : h->drained ? "drained" : "up",
				      "labels", h->labels, "drained", h->drained);
		if (h->report) {
			json_t *all = json_deep_copy(json_object_get(h->report, "labels"));
			if (json_is_object(all)) {
				json_object_update(all, h->labels);
				json_object_set(o, "labels", all);
			}
			json_decref(all);
			json_object_set(o, "resources", json_object_get(h->report, "resources"));
			json_object_set(o, "load", json_object_get(h->report, "load"));
			json_object_set(o, "attrs", json_object_get(h->report, "attrs"));
			json_t *imgs = json_array(), *im;
			size_t k;
			json_array_foreach(json_object_get(h->report, "images"), k, im)
				json_array_append_new(imgs, json_pack("{s:O, s:O}", "name",
								      json_object_get(im, "name"),
								      "size", json_object_get(im, "size")));
			json_object_set_new(o, "images", imgs);
			json_object_set_new(o, "lacks", ctl_host_missing_json(c, h));
			json_object_set(o, "speed", json_object_get(h->report, "speed"));
			/* bytes/s: measured by its staging, else by moves into it */
			if (sh && sh->link_rate > 0)
				json_object_set_new(o, "link_rate", json_real(sh->link_rate));
			json_object_set_new(o, "seen_s_ago",
					    json_real((double)(gv_now_ms() - h->last_seen) / 1000.0));
		}
		if (sh)
			json_object_set_new(o, "free", json_pack("{s:i, s:I, s:I, s:i}", "cpus",
								 (int)sh->cpus_free, "memory",
								 (json_int_t)sh->memory_free, "disk",
								 (json_int_t)sh->disk_free, "jobs",
								 (int)sh->n_jobs));
		json_array_append_new(list, o);
	}
	return list;
}

static bool host_has_image(struct ctl_host *h, const char *image)
{
	json_t *im;
	size_t k;

	json_array_foreach(json_object_get(h->report, "images"), k, im)
		if (!strcmp(json_string_value(json_object_get(im, "name")) ?: "", image))
			return true;
	return false;
}

/* A host that is up and holds @image (not @except), or NULL. */
static struct ctl_host *image_source(gv_ctl *c, const char *image, struct ctl_host *except)
{
	for (size_t i = 0; i < c->nhosts; i++) {
		struct ctl_host *h = &c->hosts[i];
		if (h != except && h->up && *h->addr && host_has_image(h, image))
			return h;
	}
	return NULL;
}

/* A VM of job @j on host @h says how it is. */
static void job_vm_report(gv_ctl *c, struct ctl_host *h, struct ctl_job *j, json_t *vm,
			  json_t *release, json_t *stale)
{
	const char *vstate = json_string_value(json_object_get(vm, "state")) ?: "";
	const char *bound = json_string_value(json_object_get(j->rec, "host")) ?: "";
	const char *to = json_string_value(json_object_get(j->rec, "migrate_to"));
	const char *err = json_string_value(json_object_get(vm, "error"));
	gv_job_state s = gv_job_record_state(j->rec);
	bool here = !strcmp(bound, h->name);

	if (gv_job_state_final(s)) {
		if (!j->collecting)
			json_array_append_new(release, json_string(json_string_value(
							       json_object_get(vm, "name"))));
		return;
	}
	if (s == GV_JOB_S_MIGRATING && to && !strcmp(to, h->name) &&
	    (!strcmp(vstate, "running") || !strcmp(vstate, "stopped"))) {
		/* it arrived: bind it here, with a new epoch */
		const gv_sched_job *sj = gv_sched_job_get(c->st, j->sidx);
		char from[64];
		snprintf(from, sizeof(from), "%s", bound);
		bound = from;
		json_object_set_new(j->rec, "host", json_string(h->name));
		ctl_host_list_job(c, h, j);
		json_object_del(j->rec, "migrate_to");
		json_object_set_new(j->rec, "moves", json_integer(json_integer_value(
							       json_object_get(j->rec, "moves")) + 1));
		if (sj && sj->host != h->sidx && gv_sched_job_bind(c->st, j->sidx, h->sidx, ctl_now()) < 0)
			fprintf(stderr, "gridvmctld: job %" PRIu64 ": cannot bind it\n", j->id);
		c->count.moves_completed++;
		ctl_event(c, j, "moved", "now runs on %s (from %s%s)", h->name, bound,
			  json_is_true(json_object_get(j->rec, "live_failed")) ? ", cold" : "");
		json_object_del(j->rec, "live_failed"); /* its next move tries live again */
		ctl_job_set_state(c, j, GV_JOB_S_RUNNING, NULL);
		json_object_set_new(j->rec, "epoch", json_integer(j->mod_rev));
		ctl_job_save(c, j, NULL);
		here = true;
		s = GV_JOB_S_RUNNING;
	}
	if (!here) {
		/* bound elsewhere since (recovered from a lost host, or back in
		 * the queue): the VM here is a stale copy; its host kills it.
		 * Not a VM arriving by a move, nor one that left by one. */
		bool arriving = s == GV_JOB_S_MIGRATING && to && !strcmp(to, h->name);
		if (!arriving && !json_is_true(json_object_get(vm, "moving")) &&
		    strcmp(vstate, "staging") && strcmp(vstate, "creating"))
			json_array_append_new(stale, json_string(json_string_value(
							     json_object_get(vm, "name"))));
		return;
	}
	ctl_note_replicas(c, h, j, vm);
	if (s == GV_JOB_S_MIGRATING) {
		const char *merr = json_string_value(json_object_get(vm, "migrate_error"));
		if (merr && !strcmp(vstate, "running")) {
			bool was_cold = json_is_true(json_object_get(j->rec, "live_failed"));
			c->count.moves_failed++;
			ctl_event(c, j, "move", "the %s move to %s failed: %s; it goes on here%s",
				  was_cold ? "cold" : "live", to ? to : "?", merr,
				  was_cold ? "" : " (its next move is cold: suspend, copy, resume)");
			json_object_set_new(j->rec, "live_failed", json_true());
			json_object_del(j->rec, "migrate_to");
			/* a live move that failed does not count against the time
			 * between moves: the cold one comes at the next re-plan (a
			 * cold one that failed does, so failures do not thrash) */
			if (j->sidx != GV_SCHED_NONE) {
				/* the scheduler bound it to the destination when it
				 * decided: it holds its place here again */
				double since = json_number_value(json_object_get(j->rec, "bound"));
				if (gv_sched_job_bind(c->st, j->sidx, h->sidx, since) < 0)
					fprintf(stderr, "gridvmctld: job %" PRIu64 ": cannot bind it "
						"back\n", j->id);
				if (!was_cold)
					gv_sched_job_set_moved(c->st, j->sidx, j->moved_before);
			}
			ctl_job_set_state(c, j, GV_JOB_S_RUNNING, NULL);
		}
		if (strcmp(vstate, "stopped") && strcmp(vstate, "failed"))
			return;
	}
	if (!strcmp(vstate, "gone")) {
		/* bound here and started, but its VM is not there: it is not
		 * started again (that could run it twice) */
		json_object_set_new(j->rec, "error", json_string(err ? err : "its VM is gone"));
		ctl_job_unschedule(c, j);
		ctl_job_set_state(c, j, GV_JOB_S_FAILED, err ? err : "its VM is gone");
		return;
	}
	if (!strcmp(vstate, "staging") || !strcmp(vstate, "creating")) {
		if (s == GV_JOB_S_SCHEDULED)
			ctl_job_set_state(c, j, GV_JOB_S_STAGING, json_string_value(
								   json_object_get(vm, "detail")));
	} else if (!strcmp(vstate, "running") || !strcmp(vstate, "paused")) {
		if (s == GV_JOB_S_SCHEDULED || s == GV_JOB_S_STAGING) {
			json_t *rc = json_object_get(j->rec, "recover");
			if (json_object_get(rc, "checkpoint"))
				ctl_event(c, j, "recover", "continues on %s from its checkpoint %s",
					  h->name, json_string_value(json_object_get(rc,
									    "checkpoint")));
			json_object_del(j->rec, "recover"); /* (saved with the state) */
			ctl_recover_sched(c, j);
			ctl_job_set_state(c, j, GV_JOB_S_RUNNING, NULL);
		}
	} else if ((!strcmp(vstate, "stopped") || !strcmp(vstate, "failed")) && !j->collecting) {
		json_t *code = json_object_get(vm, "exit_code");
		ctl_collect(c, j, json_is_integer(code) && !strcmp(vstate, "stopped")
					  ? (int)json_integer_value(code) : -1,
			    err ? err : !strcmp(vstate, "failed") ? "the VM failed" : NULL);
	}
}

void ctl_host_list_job(gv_ctl *c, struct ctl_host *h, struct ctl_job *j)
{
	uint32_t at = (uint32_t)(h - c->hosts) + 1;
	size_t k;

	if (j->listed == at)
		return;
	if (j->listed) { /* off the list of the host it was bound to before */
		struct ctl_host *o = &c->hosts[j->listed - 1];
		for (k = 0; k < o->nbound && o->bound[k] != j; k++)
			;
		if (k < o->nbound) {
			memmove(&o->bound[k], &o->bound[k + 1], (o->nbound - k - 1) * sizeof(*o->bound));
			o->nbound--;
		}
	}
	if (h->nbound == h->cap_bound) {
		h->cap_bound = h->cap_bound ? 2 * h->cap_bound : 16;
		h->bound = realloc(h->bound, h->cap_bound * sizeof(*h->bound));
		if (!h->bound)
			abort();
	}
	/* in id order: a new job goes last, a moved or recovered one in place */
	for (k = h->nbound; k > 0 && h->bound[k - 1]->id > j->id; k--)
		h->bound[k] = h->bound[k - 1];
	h->bound[k] = j;
	h->nbound++;
	j->listed = at;
}

/* ---- host loss (docs/host-loss.md) ---- */

/* The hosts @j's checkpoints are copied to: its own count (submit
 * --checkpoint-replicas) or the grid's, of hosts that are up, after @h in
 * the hosts' order (so jobs spread their replicas), the same ones every
 * reply while the grid does not change. */
static json_t *replica_addrs(gv_ctl *c, struct ctl_host *h, struct ctl_job *j)
{
	json_t *out = json_array();
	json_t *ck = json_object_get(j->rec, "checkpoint"), *own = json_object_get(ck, "replicas");
	size_t at = (size_t)(h - c->hosts);
	size_t want = json_is_integer(own) ? (size_t)json_integer_value(own) : c->o.replicas;

	if (!(json_number_value(json_object_get(ck, "every")) > 0))
		return out; /* it makes none */
	for (size_t k = 1; k < c->nhosts && json_array_size(out) < want; k++) {
		struct ctl_host *r = &c->hosts[(at + k) % c->nhosts];
		if (r->up && !r->lost && *r->addr)
			json_array_append_new(out, json_string(r->addr));
	}
	return out;
}

/* Where the host bound to a recovered job gets its checkpoint: itself if
 * it holds it, else the first holder that is up. */
static json_t *restore_order(gv_ctl *c, struct ctl_host *h, json_t *rc)
{
	json_t *on = json_object_get(rc, "on"), *v;
	const char *from = NULL;
	size_t i;

	json_array_foreach(on, i, v) {
		struct ctl_host *r = ctl_host_find(c, json_string_value(v) ?: "");
		if (r == h)
			return json_pack("{s:O}", "checkpoint", json_object_get(rc, "checkpoint"));
		if (r && r->up && !r->lost && !from)
			from = r->addr;
	}
	return json_pack("{s:O, s:s?}", "checkpoint", json_object_get(rc, "checkpoint"), "from",
			 from);
}

void ctl_note_replicas(gv_ctl *c, struct ctl_host *h, struct ctl_job *j, json_t *vm)
{
	json_t *list = json_object_get(vm, "checkpoints"), *reps = json_object_get(vm, "replicas");
	json_t *hosts = json_object_get(j->rec, "replica_hosts"), *ids, *ck;
	const char *addr;
	bool changed = false;

	if (!json_is_object(reps))
		return;
	if (!json_is_array(hosts)) {
		hosts = json_array();
		json_object_set_new(j->rec, "replica_hosts", hosts);
	}
	/* every host that ever held one (they drop them when the job ends) */
	json_object_foreach(reps, addr, ids) {
		struct ctl_host *r = NULL;
		for (size_t i = 0; i < c->nhosts && !r; i++)
			if (!strcmp(c->hosts[i].addr, addr))
				r = &c->hosts[i];
		bool known = false;
		size_t i;
		json_t *v;
		json_array_foreach(hosts, i, v)
			known = known || (r && !strcmp(json_string_value(v) ?: "", r->name));
		if (r && !known) {
			json_array_append_new(hosts, json_string(r->name));
			changed = true;
		}
	}
	/* the newest checkpoint of the job that some replica holds */
	for (size_t k = json_array_size(list); k-- > 0;) {
		ck = json_array_get(list, k);
		const char *id = json_string_value(json_object_get(ck, "id")) ?: "";
		json_t *on = json_array();
		json_object_foreach(reps, addr, ids) {
			size_t i;
			json_t *v;
			json_array_foreach(ids, i, v) {
				if (strcmp(json_string_value(v) ?: "", id))
					continue;
				for (size_t n = 0; n < c->nhosts; n++)
					if (!strcmp(c->hosts[n].addr, addr))
						json_array_append_new(on, json_string(c->hosts[n].name));
			}
		}
		if (!json_array_size(on)) {
			json_decref(on);
			continue;
		}
		json_t *now = json_pack("{s:s, s:O, s:o}", "id", id, "created",
					json_object_get(ck, "created"), "on", on);
		if (!json_equal(now, json_object_get(j->rec, "replicated"))) {
			json_object_set_new(j->rec, "replicated", now);
			changed = true;
		} else {
			json_decref(now);
		}
		break;
	}
	if (changed)
		(void)ctl_job_save(c, j, NULL);
}

/* The reply: what this host is to run, move and drop. */
static json_t *host_orders(gv_ctl *c, struct ctl_host *h, json_t *release)
{
	json_t *bind = json_array(), *moves = json_array();
	size_t kept = 0;
	char vm[40];

	for (size_t i = 0; i < h->nbound; i++) {
		struct ctl_job *j = h->bound[i];
		gv_job_state s = gv_job_record_state(j->rec);
		const char *host = json_string_value(json_object_get(j->rec, "host"));
		if (gv_job_state_final(s) || s == GV_JOB_S_QUEUED || !host ||
		    strcmp(host, h->name)) {
			j->listed = 0; /* ended, waits again, or went elsewhere */
			continue;
		}
		h->bound[kept++] = j;
		if (j->collecting)
			continue;
		json_int_t epoch = json_integer_value(json_object_get(j->rec, "epoch"));
		gv_job_vm_name(j->id, vm, sizeof(vm));
		if (s == GV_JOB_S_MIGRATING) {
			/* a job on its way out is no binding: once it left, its
			 * source must not start it again */
			const char *to = json_string_value(json_object_get(j->rec, "migrate_to"));
			struct ctl_host *dst = to ? ctl_host_find(c, to) : NULL;
			/* live, unless a live move of it failed: then cold */
			bool cold = json_is_true(json_object_get(j->rec, "live_failed"));
			if (dst)
				json_array_append_new(moves, json_pack("{s:I, s:I, s:s, s:s, s:s}", "id",
								       (json_int_t)j->id, "epoch", epoch,
								       "vm", vm, "to", dst->addr, "mode",
								       cold ? "cold" : "live"));
			continue;
		}
		const char *image = json_string_value(json_object_get(j->rec, "image"));
		struct ctl_host *src = host_has_image(h, image) ? NULL : image_source(c, image, h);
		json_t *b = json_pack("{s:I, s:I, s:s, s:o, s:b, s:s}", "id", (json_int_t)j->id,
				      "epoch", epoch, "state", gv_job_state_name(s), "vm",
				      gv_job_vmdef(j->rec, vm), "input",
				      json_integer_value(json_object_get(j->rec, "input_bytes")) > 0,
				      "controller", c->listen_addr);
		if (src)
			json_object_set_new(b, "image_from", json_string(src->addr));
		json_object_set_new(b, "replicas", replica_addrs(c, h, j));
		json_t *rc = json_object_get(j->rec, "recover");
		if ((s == GV_JOB_S_SCHEDULED || s == GV_JOB_S_STAGING) &&
		    json_object_get(rc, "checkpoint"))
			json_object_set_new(b, "restore", restore_order(c, h, rc));
		json_array_append_new(bind, b);
	}
	h->nbound = kept;
	json_t *rep = json_pack("{s:b, s:s, s:o, s:o, s:O, s:i, s:i}", "ok", 1, "host", h->name,
				"bindings", bind, "moves", moves, "release", release, "report_s",
				(int)c->o.report_s, "lease_s", (int)c->o.host_lease_s);
	json_object_set_new(rep, "templates", ctl_templates_wanted(c)); /* keep these warm */
	if (json_array_size(h->drops)) { /* told once (a lost reply leaves them) */
		json_object_set_new(rep, "drop_checkpoints", h->drops);
		h->drops = NULL;
	}
	return rep;
}

json_t *ctl_host_report(gv_ctl *c, json_t *req)
{
	const char *name = json_string_value(json_object_get(req, "name"));
	const char *addr = json_string_value(json_object_get(req, "addr"));
	json_t *release = json_array(), *stale = json_array(), *vm, *rep;
	struct ctl_host *h;
	bool changed;
	gv_err e;
	size_t i;

	if (!name || !gv_name_valid(name) || !addr || !*addr)
		return gv_err_json(-EINVAL, "a host report needs the host's name and address");
	pthread_mutex_lock(&c->mu);
	if (!ctl_leading(c)) { /* deposed while this report waited */
		pthread_mutex_unlock(&c->mu);
		json_decref(release);
		return ctl_standby_reply(c);
	}
	h = ctl_host_find(c, name);
	changed = !h;
	if (!h && !(h = ctl_host_add(c, name, &e))) {
		pthread_mutex_unlock(&c->mu);
		json_decref(release);
		return gv_err_json(-EINVAL, e.msg);
	}
	gv_kv_batch_begin(c->kv); /* one commit for the report's changes */
	if (strcmp(h->addr, addr)) {
		snprintf(h->addr, sizeof(h->addr), "%s", addr);
		changed = true;
	}
	if (changed) {
		(void)ctl_host_save(c, h, &e);
		fprintf(stderr, "gridvmctld: host %s joined (%s)\n", h->name, h->addr);
		c->last_replan = 0; /* a new host: re-plan at once */
	}
	if (!h->up && !h->lost && !changed)
		fprintf(stderr, "gridvmctld: host %s is back\n", h->name);
	json_decref(h->report);
	h->report = json_incref(req);
	h->last_seen = gv_now_ms();
	if (!h->up)
		ctl_kick(c);
	h->up = true;
	ctl_learn_report(c, h, req);
	json_array_foreach(json_object_get(req, "vms"), i, vm) {
		uint64_t id = gv_job_id_of_vm(json_string_value(json_object_get(vm, "name")));
		struct ctl_job *j = id ? ctl_job_find(c, id) : NULL;
		if (j)
			job_vm_report(c, h, j, vm, release, stale);
	}
	/* a lost host takes work again once it holds no stale VM */
	if (h->lost && !json_array_size(stale)) {
		h->lost = false;
		fprintf(stderr, "gridvmctld: host %s is back after it was lost; it holds no VM of "
			"the jobs recovered elsewhere\n", h->name);
	} else if (h->lost) {
		fprintf(stderr, "gridvmctld: host %s is back after it was lost: it is to kill %zu "
			"stale VMs first\n", h->name, json_array_size(stale));
	}
	ctl_host_to_sched(c, h);
	rep = host_orders(c, h, release);
	json_object_set_new(rep, "stale", stale);
	if (!h->samples_known) /* the controller restarted: send them again */
		json_object_set_new(rep, "want_samples", json_true());
	/* committed here, synced before the agent hears of it (ctl_request) */
	if (ctl_batch_commit(c, &e) < 0) {
		fprintf(stderr, "gridvmctld: cannot store host %s's report: %s\n", h->name, e.msg);
		json_decref(rep);
		rep = gv_err_jsonf(-EIO, "the controller could not store this report: %s", e.msg);
	}
	pthread_mutex_unlock(&c->mu);
	json_decref(release);
	return rep;
}
