/* SPDX-License-Identifier: MIT */
/*
 * gridagent.c - the agent's side of the grid (gridagent.h): the report
 * loop, and the work the controller's reply asks for (stage and start a
 * bound job, move one, drop one), each on a thread of its own so that
 * reports keep coming meanwhile.
 */
#include "gridagent_internal.h"

#include <gridvm/api/ctlcall.h>
#include <gridvm/base/b64.h>
#include <gridvm/base/fault.h>
#include <gridvm/base/util.h>
#include <gridvm/blocks/blocksample.h>
#include <gridvm/node/checkpoint.h>
#include <gridvm/node/image.h>
#include <gridvm/node/migrate.h>
#include <gridvm/xfer/xfer.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define LOG_CHUNK (1u << 20)
/* A restore from a checkpoint, or a fetch of the job's input, that fails
 * is tried this often before the job is reported failed (a replica, a
 * link or the controller may be down for a while: the next reply may name
 * another one, the new leader). */
#define RESTORE_TRIES 5

/* The agent of this process, for the peer requests (see
 * gv_gridagent_control); NULL when it does not join a grid. */
static gv_gridagent *current;

struct gjob *gjob_find(gv_gridagent *g, uint64_t id, bool create)
{
	struct gjob *j;

	for (j = g->jobs; j; j = j->next)
		if (j->id == id)
			return j;
	if (!create || !(j = calloc(1, sizeof(*j))))
		return NULL;
	j->id = id;
	snprintf(j->vm, sizeof(j->vm), "job-%" PRIu64, id);
	j->next = g->jobs;
	g->jobs = j;
	return j;
}

static void gjob_forget(gv_gridagent *g, uint64_t id)
{
	for (struct gjob **pp = &g->jobs; *pp; pp = &(*pp)->next)
		if ((*pp)->id == id && !(*pp)->busy) {
			struct gjob *j = *pp;
			*pp = j->next;
			json_decref(j->replicas);
			json_decref(j->held);
			free(j);
			ga_held_save(g);
			return;
		}
}

/* ---- the facts reported ---- */

static uint64_t mem_total(void)
{
	FILE *f = fopen("/proc/meminfo", "re");
	unsigned long long kb = 0;
	char line[256];

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemTotal: %llu kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return (uint64_t)kb * 1024;
}

static json_t *cpu_facts(void)
{
	FILE *f = fopen("/proc/cpuinfo", "re");
	char line[4096], model[256] = "";
	json_t *flags = json_array();

	while (f && fgets(line, sizeof(line), f)) {
		char *v = strchr(line, ':');
		if (!v)
			continue;
		v += 1 + (v[1] == ' ');
		v[strcspn(v, "\n")] = '\0';
		if (!*model && !strncmp(line, "model name", 10))
			snprintf(model, sizeof(model), "%s", v);
		else if (!json_array_size(flags) && !strncmp(line, "flags", 5))
			for (char *save = NULL, *t = strtok_r(v, " ", &save); t;
			     t = strtok_r(NULL, " ", &save))
				json_array_append_new(flags, json_string(t));
		if (*model && json_array_size(flags))
			break;
	}
	if (f)
		fclose(f);
	return json_pack("{s:s, s:o}", "cpu_model", model, "cpu_flags", flags);
}

/* ---- what the agent learns for the scheduler ---- */

/* A fetch's effective rate (raw bytes it brought over the link per
 * second, compression included) moves the measured staging rate. */
static void rate_sample(gv_gridagent *g, const json_t *sum)
{
	double secs = json_number_value(json_object_get(sum, "seconds"));
	double bytes = (double)json_integer_value(json_object_get(sum, "blocks_remote")) *
		       (double)json_integer_value(json_object_get(sum, "block_size"));

	if (bytes < (1 << 20) || !(secs > 0))
		return; /* too little to tell the link from the setup */
	pthread_mutex_lock(&g->mu);
	g->link_rate = g->link_rate > 0 ? 0.7 * g->link_rate + 0.3 * bytes / secs : bytes / secs;
	pthread_mutex_unlock(&g->mu);
}

/* An image's identity for the sample cache: its size and mtime. */
static bool image_stamp(const json_t *im, json_int_t *size, json_int_t *mtime)
{
	struct stat st;
	const char *path = json_string_value(json_object_get(im, "path"));

	if (!path || stat(path, &st) < 0)
		return false;
	*size = (json_int_t)st.st_size;
	*mtime = (json_int_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	return true;
}

static bool sample_current(gv_gridagent *g, const json_t *im)
{
	json_t *c = json_object_get(g->samples, json_string_value(json_object_get(im, "name")));
	json_int_t size, mtime;

	return c && image_stamp(im, &size, &mtime) &&
	       json_integer_value(json_object_get(c, "size")) == size &&
	       json_integer_value(json_object_get(c, "mtime")) == mtime;
}

/* The block sample of every raw image lacking a current one (indexing it
 * if needed: the index also serves the deduplicating transfer), and the
 * images gone forgotten. On a thread of its own: hashing an image takes
 * seconds, and reports must keep coming. */
static void *sampler_thread(void *arg)
{
	gv_gridagent *g = arg;
	json_t *all = gv_image_list(gv_host_datadir(g->h)), *im, *fresh = json_object();
	const char *name;
	size_t i;

	json_array_foreach(all, i, im) {
		json_int_t size, mtime;
		name = json_string_value(json_object_get(im, "name"));
		pthread_mutex_lock(&g->mu);
		bool current = sample_current(g, im);
		pthread_mutex_unlock(&g->mu);
		if (!name || current || strcmp(json_string_value(json_object_get(im, "format")) ?: "",
					       "raw") || !image_stamp(im, &size, &mtime))
			continue;
		json_t *sum = NULL;
		gv_blockidx *bi = NULL;
		gv_blocksample bs = { 0 };
		char *idx = gv_strdupf("%s/images/%s.gvidx", gv_host_datadir(g->h), name), *text = NULL;
		gv_err e;
		if (gv_image_index(g->h, name, &sum, &e) < 0)
			fprintf(stderr, "gridvmd: cannot index image %s: %s\n", name, e.msg);
		else if (gv_blockidx_load(idx, &bi) == 0 &&
			 gv_blocksample_make(bi, GV_BLOCKSAMPLE_MAX, &bs) == 0)
			text = gv_blocksample_encode(&bs);
		if (text)
			json_object_set_new(fresh, name, json_pack("{s:I, s:I, s:s}", "size", size,
								   "mtime", mtime, "sample", text));
		free(text);
		gv_blocksample_clear(&bs);
		gv_blockidx_free(bi);
		json_decref(sum);
		free(idx);
	}
	pthread_mutex_lock(&g->mu);
	json_t *v, *keep = json_object();
	json_array_foreach(all, i, im) /* those still in the store */
		if ((name = json_string_value(json_object_get(im, "name"))) &&
		    (v = json_object_get(fresh, name) ?: json_object_get(g->samples, name)))
			json_object_set(keep, name, v);
	if (!json_equal(keep, g->samples))
		g->samples_rev++;
	json_decref(g->samples);
	g->samples = keep;
	g->sampling = false;
	g->threads--;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
	json_decref(fresh);
	json_decref(all);
	return NULL;
}

/* mu held: start the sampler if an image lacks its sample. */
static void sampler_kick(gv_gridagent *g, const json_t *images)
{
	const json_t *im;
	size_t i;
	bool stale = json_object_size(g->samples) != json_array_size(images);
	pthread_attr_t attr;
	pthread_t th;

	json_array_foreach(images, i, im)
		if (!stale && !sample_current(g, im))
			stale = true;
	if (!stale || g->sampling || g->stop)
		return;
	g->sampling = true;
	g->threads++;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&th, &attr, sampler_thread, g) != 0) {
		g->sampling = false;
		g->threads--;
	}
	pthread_attr_destroy(&attr);
}

/* The report; *moves_told: how many of g->moved it carries, *rev: the
 * samples' revision it carries (or the one the controller has). */
static json_t *report(gv_gridagent *g, size_t *moves_told, unsigned *rev)
{
	struct utsname u;
	struct statvfs sv;
	json_t *info = gv_host_info(g->h), *attrs = cpu_facts(), *vms = json_array(), *v;
	/* (never waiting for a VM that a start, a checkpoint or a move holds:
	 * a report held up past the lease would fence every VM here and get
	 * the host declared lost) */
	json_t *list = gv_vm_list_nowait(g->h), *images = json_array(), *im;
	uint64_t disk = 0;
	size_t i;

	uname(&u);
	json_object_set_new(attrs, "arch", json_string(u.machine));
	json_object_set(attrs, "accel", json_object_get(info, "accel"));
	if (g->site)
		json_object_set_new(attrs, "site", json_string(g->site));
	/* its --label attributes, also listed as labels (the controller adds
	 * the ones set with `gridvm host label`) */
	if (statvfs(gv_host_datadir(g->h), &sv) == 0)
		disk = (uint64_t)sv.f_bavail * sv.f_frsize;
	json_t *all = gv_image_list(gv_host_datadir(g->h));
	pthread_mutex_lock(&g->mu);
	/* the images, with their block samples when the controller lacks
	 * them (docs/grid.md: locality) */
	bool tell = g->samples_told != g->samples_rev;
	sampler_kick(g, all);
	json_array_foreach(all, i, im) {
		json_t *o = json_pack("{s:O, s:O}", "name", json_object_get(im, "name"), "size",
				      json_object_get(im, "size"));
		json_t *c = json_object_get(g->samples, json_string_value(json_object_get(im,
											 "name")));
		if (tell && c)
			json_object_set(o, "sample", json_object_get(c, "sample"));
		json_array_append_new(images, o);
	}
	*rev = g->samples_rev;
	json_decref(all);
	json_array_foreach(list, i, v) {
		const char *name = json_string_value(json_object_get(v, "name"));
		if (!name || strncmp(name, "job-", 4))
			continue;
		uint64_t id = strtoull(name + 4, NULL, 10);
		struct gjob *j = gjob_find(g, id, false);
		/* busy (as last stored) while its start is under way: its
		 * phase says more (below, with the jobs on their way) */
		if (json_is_true(json_object_get(v, "busy")) && j && j->state)
			continue;
		json_t *o = json_pack("{s:s, s:O, s:O, s:O, s:O?}", "name", name, "state",
				      json_object_get(v, "state"), "exit_code",
				      json_object_get(v, "exit_code"), "error",
				      json_object_get(v, "error"), "disk_written",
				      json_object_get(v, "disk_overlay_bytes"));
		if (json_object_get(v, "outputs_missing"))
			json_object_set(o, "outputs_missing", json_object_get(v, "outputs_missing"));
		if (j && *j->move_error)
			json_object_set_new(o, "migrate_error", json_string(j->move_error));
		if (j && j->moving)
			json_object_set_new(o, "moving", json_true());
		if (j && j->fenced)
			json_object_set_new(o, "fenced", json_true());
		if (j && json_array_size(j->replicas))
			ga_replica_report(g, j, o);
		json_array_append_new(vms, o);
	}
	/* jobs still on their way (no VM yet), or that could not start */
	for (struct gjob *j = g->jobs; j; j = j->next) {
		bool listed = false;
		json_array_foreach(vms, i, v)
			if (!strcmp(json_string_value(json_object_get(v, "name")), j->vm))
				listed = true;
		if (!listed && j->state)
			json_array_append_new(vms, json_pack("{s:s, s:s, s:s, s:s?}", "name", j->vm,
							     "state", j->state, "detail", j->detail,
							     "error", *j->error ? j->error : NULL));
	}
	ga_replicate_kick(g); /* new checkpoints go to their replicas */
	json_t *moved = json_deep_copy(g->moved);
	*moves_told = json_array_size(moved);
	double rate = g->link_rate;
	pthread_mutex_unlock(&g->mu);
	json_t *r = json_pack("{s:s, s:s, s:s, s:{s:i, s:I, s:I}, s:f, s:f, s:o, s:O, s:o, s:o, "
			      "s:o}",
			      "op", "host-report", "name", g->name, "addr", g->addr, "resources",
			      "cpus", (int)g->cpus, "memory", (json_int_t)g->memory, "disk",
			      (json_int_t)disk, "load", gv_load1(), "speed", g->speed, "attrs",
			      attrs, "labels", g->labels, "images", images, "vms", vms, "moved",
			      moved ? moved : json_array());
	if (rate > 0)
		json_object_set_new(r, "link_rate", json_real(rate));
	if (tell) /* its images carry every sample it has */
		json_object_set_new(r, "samples", json_true());
	json_decref(list);
	json_decref(info);
	return r;
}

/* ---- work the controller asks for ---- */

struct work {
	gv_gridagent *g;
	uint64_t id;
	json_t *binding; /* start: the binding; move: {to} */
};

static void set_phase(gv_gridagent *g, uint64_t id, const char *state, const char *detail)
{
	pthread_mutex_lock(&g->mu);
	struct gjob *j = gjob_find(g, id, true);
	if (j) {
		j->state = state;
		snprintf(j->detail, sizeof(j->detail), "%s", detail ? detail : "");
	}
	pthread_mutex_unlock(&g->mu);
}

/* Stage the job's image and input, create its VM, start it. */
static void *start_thread(void *arg)
{
	struct work *w = arg;
	gv_gridagent *g = w->g;
	json_t *vm = json_object_get(w->binding, "vm");
	const char *name = json_string_value(json_object_get(vm, "name"));
	const char *image = json_string_value(json_object_get(vm, "image"));
	const char *from = json_string_value(json_object_get(w->binding, "image_from"));
	char *path = NULL;
	const char *fmt;
	gv_vmdef *def = NULL;
	gv_err e = { "" };
	bool input_failed = false;
	int r = 0;

	if (image && gv_image_resolve(gv_host_datadir(g->h), image, &path, &fmt) < 0) {
		gv_image_fetch_opts fo = { .name = image, .from = from };
		json_t *sum = NULL;
		set_phase(g, w->id, "staging", "fetching its image");
		if (!from)
			r = gv_err_set(&e, -ENOENT, "image %s is on no reachable host", image);
		else if ((r = gv_image_fetch(g->h, &fo, &sum, &e)) < 0)
			gv_err_wrap(&e, r, "cannot fetch its image");
		else
			rate_sample(g, sum);
		json_decref(sum);
	}
	free(path);
	if (r == 0 && json_is_true(json_object_get(w->binding, "input"))) {
		const char *ctl = json_string_value(json_object_get(w->binding, "controller"));
		char host[256], *iname = gv_strdupf("job:%" PRIu64 ":input", w->id);
		char *dir = gv_strdupf("%s/grid", gv_host_datadir(g->h));
		char *dest = gv_strdupf("%s/%s-input.tar", dir, name);
		int port;
		set_phase(g, w->id, "staging", "fetching its input");
		unlink(dest); /* an earlier run's, here before its host was lost */
		if ((r = gv_mkdir_p(dir, 0700)) < 0 ||
		    (r = gv_xfer_peer_parse(ctl ? ctl : g->controller, host, sizeof(host), &port)) < 0) {
			gv_err_set(&e, r, "cannot prepare the input");
		} else {
			gv_fetch_opts fo = { .host = host, .port = port, .image = iname, .dest = dest,
					     .codec = GV_CODEC_ZSTD, .key = g->key };
			json_t *sum = NULL;
			if ((r = gv_fetch(&fo, &sum, &e)) < 0) {
				gv_err_wrap(&e, r, "cannot fetch its input");
				input_failed = true;
			} else {
				rate_sample(g, sum);
				json_object_set_new(vm, "input_tar", json_string(dest));
			}
			json_decref(sum);
		}
		free(iname);
		free(dir);
		free(dest);
	}
	bool restore = json_is_object(json_object_get(w->binding, "restore"));
	if (r == 0) {
		set_phase(g, w->id, "creating", restore ? "restoring its checkpoint"
							 : "starting its VM");
		json_object_set_new(vm, "ephemeral", json_false());
		if ((r = gv_vmdef_from_json(vm, &def, &e)) == 0)
			r = gv_vm_create(g->h, def, &e);
	}
	if (r == 0 && restore) {
		if ((r = ga_restore(g, w->id, name, w->binding, &e)) < 0) {
			gv_err de;
			if (gv_vm_delete(g->h, name, true, &de) < 0) /* nothing half-made */
				fprintf(stderr, "gridvmd: cannot drop %s: %s\n", name, de.msg);
		}
	} else if (r == 0) {
		/* not one guest instruction without the lease */
		pthread_mutex_lock(&g->mu);
		bool leased = ga_lease_wait(g, 60000);
		pthread_mutex_unlock(&g->mu);
		r = leased ? gv_vm_start(g->h, name, &e)
			   : gv_err_set(&e, -ETIMEDOUT, "no lease from the controller: not started");
	}
	pthread_mutex_lock(&g->mu);
	struct gjob *j = gjob_find(g, w->id, true);
	if (j && r < 0 && (restore || input_failed) && ++j->restore_tries < RESTORE_TRIES) {
		/* (the replica or the link may be back at the next reply: the
		 * same binding starts it again) */
		fprintf(stderr, "gridvmd: job %" PRIu64 ": %s (try %u of %u; again at the next "
			"reply)\n", w->id, e.msg, j->restore_tries, RESTORE_TRIES);
		j->busy = false;
		j->state = NULL;
		j->started_epoch = 0;
	} else if (j) {
		j->busy = false;
		if (r < 0) {
			j->state = "failed";
			snprintf(j->error, sizeof(j->error), "%s", e.msg);
			fprintf(stderr, "gridvmd: job %" PRIu64 ": %s\n", w->id, e.msg);
		} else {
			j->state = NULL; /* its VM speaks for it now */
		}
	}
	g->threads--;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
	json_decref(w->binding);
	free(w);
	return NULL;
}

static void *move_thread(void *arg)
{
	struct work *w = arg;
	gv_gridagent *g = w->g;
	const char *to = json_string_value(json_object_get(w->binding, "to"));
	const char *mode = json_string_value(json_object_get(w->binding, "mode")) ?: "live";
	char vm[40];
	gv_migrate_opts mo = { .to = to, .cold = !strcmp(mode, "cold"),
			       .epoch = json_integer_value(json_object_get(w->binding, "epoch")) };
	json_t *sum = NULL;
	gv_err e = { "" };
	int r;

	snprintf(vm, sizeof(vm), "job-%" PRIu64, w->id);
	fprintf(stderr, "gridvmd: the controller moves %s to %s (%s)\n", vm, to, mode);
	r = gv_vm_migrate(g->h, vm, &mo, &sum, &e);
	pthread_mutex_lock(&g->mu);
	if (r == 0) { /* measured, for the controller's cost model */
		json_t *ram = json_object_get(sum, "ram");
		double dirty = json_number_value(json_object_get(ram, "dirty-pages-rate")) *
			       json_number_value(json_object_get(ram, "page-size"));
		json_array_append_new(
			g->moved,
			json_pack("{s:I, s:O, s:s, s:s, s:O, s:O?, s:O?, s:O?, s:O?, s:f}", "id",
				  (json_int_t)w->id, "epoch", json_object_get(w->binding, "epoch"),
				  "to", to, "mode", mode, "seconds", json_object_get(sum, "seconds"),
				  "paused_ms",
				  json_object_get(sum, "paused_ms"), "memory",
				  json_object_get(sum, "memory"), "ram_bytes",
				  json_object_get(ram, "transferred"), "disk_bytes",
				  json_object_get(sum, "disk_wire_bytes"), "dirty_rate", dirty));
	}
	json_decref(sum);
	struct gjob *j = gjob_find(g, w->id, true);
	if (j) {
		j->busy = false;
		j->moving = false;
		if (r < 0)
			snprintf(j->move_error, sizeof(j->move_error), "%s", e.msg);
		else
			j->moved_epoch = json_integer_value(json_object_get(w->binding, "epoch"));
	}
	g->threads--;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
	if (r < 0)
		fprintf(stderr, "gridvmd: moving %s to %s failed: %s\n", vm, to, e.msg);
	json_decref(w->binding);
	free(w);
	return NULL;
}

/* Run @fn on a detached thread for job @id (mu held; marks it busy). */
static void spawn(gv_gridagent *g, struct gjob *j, void *(*fn)(void *), json_t *arg)
{
	struct work *w = calloc(1, sizeof(*w));
	pthread_attr_t attr;
	pthread_t th;

	if (!w)
		abort();
	w->g = g;
	w->id = j->id;
	w->binding = json_incref(arg);
	j->busy = true;
	g->threads++;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&th, &attr, fn, w) != 0) {
		j->busy = false;
		g->threads--;
		json_decref(w->binding);
		free(w);
	}
	pthread_attr_destroy(&attr);
}

bool ga_vm_exists(gv_gridagent *g, const char *name)
{
	return gv_vm_exists(g->h, name); /* (not held up by a busy VM) */
}

static void obey(gv_gridagent *g, json_t *rep)
{
	json_t *b, *m, *rel;
	size_t i;
	gv_err e;

	ga_settle(g, rep); /* stale VMs killed, old orders refused, fences lifted */
	ga_drop_checkpoints(g, rep);
	ga_warm_templates(g, rep); /* the sizes in demand start from templates */
	json_array_foreach(json_object_get(rep, "release"), i, rel) {
		const char *name = json_string_value(rel);
		uint64_t id = name && !strncmp(name, "job-", 4) ? strtoull(name + 4, NULL, 10) : 0;
		if (!id)
			continue;
		if (ga_vm_exists(g, name) && gv_vm_delete(g->h, name, true, &e) < 0)
			fprintf(stderr, "gridvmd: cannot drop %s: %s\n", name, e.msg);
		pthread_mutex_lock(&g->mu);
		gjob_forget(g, id);
		pthread_mutex_unlock(&g->mu);
	}
	json_array_foreach(json_object_get(rep, "bindings"), i, b) {
		uint64_t id = (uint64_t)json_integer_value(json_object_get(b, "id"));
		int64_t epoch = json_integer_value(json_object_get(b, "epoch"));
		const char *name = json_string_value(json_object_get(json_object_get(b, "vm"), "name"));
		const char *state = json_string_value(json_object_get(b, "state")) ?: "";
		bool fresh = !strcmp(state, "scheduled") || !strcmp(state, "staging");
		if (!id || !name)
			continue;
		pthread_mutex_lock(&g->mu);
		struct gjob *j = gjob_find(g, id, true);
		if (j)
			ga_replicas_set(g, j, b);
		bool idle = !j || (!j->busy && !j->state);
		/* a job is started at most once per binding, and never again
		 * under the binding it moved away with */
		bool done = j && (j->started_epoch == epoch || (j->moved_epoch && epoch <= j->moved_epoch));
		pthread_mutex_unlock(&g->mu);
		if (!idle || done || ga_vm_exists(g, name))
			continue; /* on its way, failed (reported), there, or gone */
		pthread_mutex_lock(&g->mu);
		if ((j = gjob_find(g, id, true)) && !fresh) {
			/* it ran here, and its VM is not here any more: say so, do
			 * not start it again */
			j->state = "gone";
			snprintf(j->error, sizeof(j->error), "its VM is gone from %s", g->name);
		} else if (j) {
			j->state = "staging";
			j->started_epoch = epoch;
			snprintf(j->detail, sizeof(j->detail), "bound here");
			spawn(g, j, start_thread, b);
		}
		pthread_mutex_unlock(&g->mu);
	}
	json_array_foreach(json_object_get(rep, "moves"), i, m) {
		uint64_t id = (uint64_t)json_integer_value(json_object_get(m, "id"));
		pthread_mutex_lock(&g->mu);
		struct gjob *j = gjob_find(g, id, true);
		bool go = j && !j->busy && !*j->move_error;
		pthread_mutex_unlock(&g->mu);
		/* once moved the VM is not here: the order is stale */
		if (!go || !ga_vm_exists(g, json_string_value(json_object_get(m, "vm")) ?: ""))
			continue;
		pthread_mutex_lock(&g->mu);
		if ((j = gjob_find(g, id, false)) && !j->busy) {
			j->moving = true;
			spawn(g, j, move_thread, m);
		}
		pthread_mutex_unlock(&g->mu);
	}
	/* a move error is told once per move order: forget it when the
	 * controller no longer asks */
	pthread_mutex_lock(&g->mu);
	for (struct gjob *j = g->jobs; j; j = j->next) {
		bool asked = false;
		json_array_foreach(json_object_get(rep, "moves"), i, m)
			if ((uint64_t)json_integer_value(json_object_get(m, "id")) == j->id)
				asked = true;
		if (!asked)
			j->move_error[0] = '\0';
	}
	pthread_mutex_unlock(&g->mu);
}

/* A VM ended: report at once, so the controller collects it and hands
 * its place to the next job without waiting for the interval. */
static void vm_ended(void *ud, const char *name)
{
	gv_gridagent *g = ud;

	if (strncmp(name, "job-", 4))
		return;
	pthread_mutex_lock(&g->mu);
	g->kick = true;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

static void *report_thread(void *arg)
{
	gv_gridagent *g = arg;
	char leader[300] = ""; /* the controller that answered last (ctlcall.h) */

	pthread_mutex_lock(&g->mu);
	while (!g->stop) {
		pthread_mutex_unlock(&g->mu);
		size_t told = 0;
		unsigned rev = 0;
		json_t *req = report(g, &told, &rev), *rep = NULL;
		gv_err e = { "" };
		uint64_t sent = ga_mono_ms(); /* the lease counts from here */
		int r = gv_fault("grid.agent.report", &e);
		if (r == 0)
			r = gv_ctl_call(g->controller, leader, sizeof(leader), g->key, req, 15000, &rep, &e);
		/* a reply lost on its way back (docs/fault-injection.md) */
		if (r == 0 && (r = gv_fault("grid.agent.reply", &e)) < 0) {
			json_decref(rep);
			rep = NULL;
		}
		if (r == 0 && !json_is_true(json_object_get(rep, "ok"))) {
			r = -EIO;
			gv_err_set(&e, r, "%s", json_string_value(json_object_get(rep, "error")) ?: "refused");
		}
		/* over TLS only a controller's certificate may bind jobs here */
		json_t *peer = json_object_get(rep, "_peer");
		const char *role = json_string_value(json_object_get(peer, "role"));
		if (r == 0 && peer && (!role || strcmp(role, "controller")))
			r = gv_err_set(&e, -EACCES, "its certificate (%s) is not a controller's; "
				       "its bindings are refused",
				       json_string_value(json_object_get(peer, "dn")) ?: "?");
		/* said once per change, and the first time */
		if (r < 0 && g->said != 0)
			fprintf(stderr, "gridvmd: the controller %s: %s\n", g->controller, e.msg);
		if (r == 0 && g->said != 1)
			fprintf(stderr, "gridvmd: joined the grid of %s as %s\n", g->controller, g->name);
		g->said = r == 0;
		__atomic_store_n(&g->reachable, r == 0, __ATOMIC_RELAXED); /* gv_gridagent_joined */
		if (r == 0) {
			ga_lease_renewed(g, sent, rep);
			json_int_t every = json_integer_value(json_object_get(rep, "report_s"));
			if (every > 0 && every < 3600)
				g->report_s = (unsigned)every;
			pthread_mutex_lock(&g->mu);
			/* told: the moves it carried, its samples (unless the
			 * controller asks for them again: it restarted) */
			for (size_t k = 0; k < told; k++)
				json_array_remove(g->moved, 0);
			g->samples_told = json_is_true(json_object_get(rep, "want_samples"))
						  ? rev - 1 : rev;
			pthread_mutex_unlock(&g->mu);
			obey(g, rep);
		}
		json_decref(req);
		json_decref(rep);
		pthread_mutex_lock(&g->mu);
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += g->report_s;
		/* (a worker ending also wakes it: fine, a report early) */
		if (!g->stop && !g->kick)
			pthread_cond_timedwait(&g->cv, &g->mu, &until);
		g->kick = false;
	}
	pthread_mutex_unlock(&g->mu);
	return NULL;
}

static json_t *labels_parse(const char *s, gv_err *e)
{
	json_t *l = json_object();
	char *copy = strdup(s ? s : ""), *save = NULL;

	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(t, '=');
		if (eq)
			*eq = '\0';
		if (!gv_name_valid(t)) {
			gv_err_set(e, -EINVAL, "invalid label '%s' (KEY=VALUE, KEY of [A-Za-z0-9_.-])", t);
			json_decref(l);
			free(copy);
			return NULL;
		}
		json_object_set_new(l, t, eq ? json_string(eq + 1) : json_true());
	}
	free(copy);
	return l;
}

int gv_gridagent_start(gv_host *h, const gv_gridagent_opts *o, gv_gridagent **out, gv_err *e)
{
	gv_gridagent *g;
	char hn[256];
	int r;

	if (!o->addr)
		return gv_err_set(e, -EINVAL, "joining a grid needs --listen ADDR: the controller "
				  "and the other hosts reach this agent there");
	g = calloc(1, sizeof(*g));
	if (!g)
		abort();
	g->h = h;
	g->report_s = 2;
	g->said = -1;
	pthread_mutex_init(&g->mu, NULL);
	pthread_cond_init(&g->cv, NULL);
	g->controller = strdup(o->controller);
	if (gethostname(hn, sizeof(hn)) < 0)
		snprintf(hn, sizeof(hn), "host");
	g->name = strdup(o->name ? o->name : hn);
	g->addr = strdup(o->addr);
	g->site = o->site ? strdup(o->site) : NULL;
	g->cpus = o->cpus ? o->cpus : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	g->speed = o->speed > 0 ? o->speed : 1;
	g->moved = json_array();
	g->warm_failed = json_object();
	g->samples = json_object();
	g->samples_told = (unsigned)-1; /* the first report carries them */
	g->memory = o->memory ? o->memory : mem_total() - (512ull << 20);
	g->keeper_fd = -1;
	if (!gv_name_valid(g->name))
		r = gv_err_set(e, -EINVAL, "invalid host name '%s' (use --name)", g->name);
	else if (!(g->labels = labels_parse(o->labels, e)))
		r = -EINVAL;
	else if ((r = gv_xfer_peer_parse(strtok(strdupa(o->controller), ","), g->ctl_host,
					 sizeof(g->ctl_host),
					 &g->ctl_port)) < 0)
		gv_err_set(e, r, "invalid controller address '%s' (HOST[:PORT])", o->controller);
	else if ((r = gv_xfer_key_load(gv_host_grid_key(h), g->key)) < 0)
		gv_err_set(e, r, "cannot read the grid key %s", gv_host_grid_key(h));
	if (r == 0)
		ga_lease_load(g);
	if (r == 0 && ga_watchdog_start(g) < 0)
		r = gv_err_set(e, -EAGAIN, "cannot start the lease watchdog");
	/* (after the watchdog: it replaces a keeper a previous agent left) */
	else if (r == 0 && (r = ga_keeper_start(g)) < 0) {
		gv_err_set(e, r, "cannot start the fence keeper: %s", strerror(-r));
		pthread_mutex_lock(&g->mu);
		g->stop = true;
		pthread_mutex_unlock(&g->mu);
		ga_watchdog_stop(g);
	}
	else if (r == 0 && pthread_create(&g->th, NULL, report_thread, g) != 0) {
		r = gv_err_set(e, -EAGAIN, "cannot start the report thread");
		pthread_mutex_lock(&g->mu);
		g->stop = true;
		pthread_mutex_unlock(&g->mu);
		ga_watchdog_stop(g);
	}
	if (r == 0) {
		gv_host_on_vm_end(h, vm_ended, g);
		__atomic_store_n(&current, g, __ATOMIC_RELEASE);
	}
	if (r < 0) {
		json_decref(g->labels);
		json_decref(g->moved);
		json_decref(g->warm_failed);
		json_decref(g->samples);
		free(g->controller);
		free(g->name);
		free(g->addr);
		free(g->site);
		free(g);
		return r;
	}
	*out = g;
	return 0;
}

bool gv_gridagent_joined(gv_gridagent *g)
{
	return __atomic_load_n(&g->reachable, __ATOMIC_RELAXED);
}

void gv_gridagent_stop(gv_gridagent *g)
{
	if (!g)
		return;
	gv_host_on_vm_end(g->h, NULL, NULL);
	pthread_mutex_lock(&g->mu);
	g->stop = true;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
	pthread_join(g->th, NULL);
	ga_watchdog_stop(g);
	ga_keeper_stop(g);
	__atomic_store_n(&current, NULL, __ATOMIC_RELEASE);
	/* workers (a fetch, a migration) hold the host: wait for them */
	pthread_mutex_lock(&g->mu);
	while (g->threads)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
	while (g->jobs) {
		struct gjob *j = g->jobs;
		g->jobs = j->next;
		json_decref(j->replicas);
		json_decref(j->held);
		free(j);
	}
	json_decref(g->labels);
	json_decref(g->moved);
	json_decref(g->warm_failed);
	json_decref(g->samples);
	pthread_mutex_destroy(&g->mu);
	pthread_cond_destroy(&g->cv);
	free(g->controller);
	free(g->name);
	free(g->addr);
	free(g->site);
	free(g);
}

/* {"op": "grid-log", "name", "offset", "wait_ms"}: a job VM's output. */
static json_t *grid_log(gv_host *h, json_t *req)
{
	const char *name = json_string_value(json_object_get(req, "name"));
	json_int_t off = json_integer_value(json_object_get(req, "offset"));
	json_int_t wait = json_integer_value(json_object_get(req, "wait_ms"));
	char *data = NULL, *b64;
	size_t len = 0;
	gv_vmstate st;
	gv_err e;
	json_t *rep;

	if (!name || strncmp(name, "job-", 4) || off < 0)
		return gv_err_json(-EINVAL, "bad grid-log request");
	if (gv_vm_read_log(h, name, "job", (uint64_t)off, wait > 0 && wait <= 5000 ? (uint64_t)wait : 0,
			   LOG_CHUNK, &data, &len, &st, &e) < 0)
		return gv_err_json(-ENOENT, e.msg);
	b64 = gv_b64_encode(data, len);
	rep = json_pack("{s:b, s:s, s:I, s:s}", "ok", 1, "data", b64, "next",
			(json_int_t)(off + (json_int_t)len), "state", gv_vmstate_name(st));
	free(b64);
	free(data);
	return rep;
}

json_t *gv_gridagent_control(void *ud, json_t *req)
{
	const char *op = json_string_value(json_object_get(req, "op"));
	/* (one agent per process: the peer server knows only the host) */
	json_t *refused = ga_epoch_check(__atomic_load_n(&current, __ATOMIC_ACQUIRE), req);

	if (refused)
		return refused;
	if (op && !strcmp(op, "grid-log"))
		return grid_log(ud, req);
	if (op && !strcmp(op, "ckpt-send"))
		return ga_ckpt_send(ud, req);
	return gv_migrate_control(ud, req);
}
