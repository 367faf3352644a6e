/* SPDX-License-Identifier: MIT */
/* vmdef.c - VM definitions: JSON round trip, job spec, QEMU argv. */
#include <gridvm/vmm/vmdef.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gv_strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

size_t gv_strv_len(char *const *v)
{
	size_t n = 0;

	while (v && v[n])
		n++;
	return n;
}

char **gv_strv_dup(char *const *v)
{
	size_t n = gv_strv_len(v);
	char **r;

	if (!v)
		return NULL;
	r = calloc(n + 1, sizeof(*r));
	if (!r)
		abort();
	for (size_t i = 0; i < n; i++)
		r[i] = strdup(v[i]);
	return r;
}

void gv_vmdef_free(gv_vmdef *d)
{
	if (!d)
		return;
	free(d->name);
	free(d->image);
	gv_strv_free(d->job);
	gv_strv_free(d->env);
	free(d->workdir);
	free(d->accel);
	free(d->kernel);
	free(d->initrd);
	free(d->append);
	gv_strv_free(d->inputs);
	gv_strv_free(d->input_guest);
	free(d->input_tar);
	gv_strv_free(d->outputs);
	free(d->tmpl);
	free(d->boot_note);
	json_decref(d->owner);
	free(d);
}

static char **strv_from_json(json_t *a)
{
	char **v;
	size_t i;
	json_t *e;

	if (!json_is_array(a))
		return NULL;
	v = calloc(json_array_size(a) + 1, sizeof(*v));
	if (!v)
		abort();
	json_array_foreach(a, i, e)
		v[i] = strdup(json_is_string(e) ? json_string_value(e) : "");
	return v;
}

static json_t *strv_to_json(char *const *v)
{
	json_t *a = json_array();

	for (size_t i = 0; v && v[i]; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

static char *opt_str(json_t *j, const char *key)
{
	json_t *v = json_object_get(j, key);

	return json_is_string(v) && *json_string_value(v)
		       ? strdup(json_string_value(v)) : NULL;
}

/* A guest path of an input or output, with trailing slashes removed:
 * it must name something below a directory (not "/", ".", ".."). */
static bool guest_path_ok(char *s)
{
	size_t n = strlen(s);
	const char *base;

	while (n > 1 && s[n - 1] == '/')
		s[--n] = '\0';
	base = strrchr(s, '/') ? strrchr(s, '/') + 1 : s;
	return *base && strcmp(base, ".") && strcmp(base, "..") && !strchr(s, '\n');
}

static const char *basename_of(const char *s)
{
	return strrchr(s, '/') ? strrchr(s, '/') + 1 : s;
}

/* --input and --output: paths that work, output names that do not clash
 * in the directory they arrive in. */
static int validate_io(gv_vmdef *d, gv_err *e)
{
	size_t n = gv_strv_len(d->outputs);

	if ((d->input_guest || d->outputs) && d->boot_disk)
		return gv_err_set(e, -EINVAL, "inputs and outputs need the gridvm guest, not "
				  "a firmware boot (--boot disk)");
	if (d->input_tar && (d->input_tar[0] != '/' || !d->input_guest))
		return gv_err_set(e, -EINVAL, "input_tar must be an absolute path, with the "
				  "inputs' guest paths");
	for (size_t i = 0; d->input_guest && d->input_guest[i]; i++) {
		const char *what = d->inputs ? d->inputs[i] : "from input_tar";
		if (d->inputs && d->inputs[i][0] != '/')
			return gv_err_set(e, -EINVAL, "input %s: the host path must be absolute",
					  d->inputs[i]);
		if (!d->input_guest[i][0] || !guest_path_ok(d->input_guest[i]))
			return gv_err_set(e, -EINVAL, "input %s: invalid guest path '%s'", what,
					  d->input_guest[i]);
	}
	for (size_t i = 0; i < n; i++) {
		if (!d->outputs[i][0] || !guest_path_ok(d->outputs[i]))
			return gv_err_set(e, -EINVAL, "invalid output path '%s'", d->outputs[i]);
		for (size_t k = 0; k < i; k++)
			if (!strcmp(basename_of(d->outputs[i]), basename_of(d->outputs[k])))
				return gv_err_set(e, -EINVAL, "outputs %s and %s would arrive "
						  "under the same name", d->outputs[k],
						  d->outputs[i]);
	}
	if (d->output_max && (d->output_max < (1 << 20) || d->output_max > (1ULL << 40)))
		return gv_err_set(e, -EINVAL, "invalid output size %llu (1 MiB to 1 TiB)",
				  (unsigned long long)d->output_max);
	return 0;
}

/* "inputs": [{"path": HOST, "guest": GUEST}]; GUEST defaults to the
 * basename of HOST (then relative to the job's working directory). With
 * "input_tar" (the inputs packed already) HOST is not used. */
static void inputs_from_json(gv_vmdef *d, json_t *a)
{
	size_t i, n = json_array_size(a);
	json_t *v;

	if (!n)
		return;
	d->inputs = d->input_tar ? NULL : calloc(n + 1, sizeof(char *));
	d->input_guest = calloc(n + 1, sizeof(char *));
	if ((!d->inputs && !d->input_tar) || !d->input_guest)
		abort();
	json_array_foreach(a, i, v) {
		const char *host = json_string_value(json_object_get(v, "path"));
		const char *guest = json_string_value(json_object_get(v, "guest"));
		char *h = strdup(host && !d->input_tar ? host : "");
		size_t len = strlen(h);

		while (len > 1 && h[len - 1] == '/')
			h[--len] = '\0';
		d->input_guest[i] = strdup(guest && *guest ? guest : basename_of(h));
		if (d->inputs)
			d->inputs[i] = h;
		else
			free(h);
	}
}

static int validate(const gv_vmdef *d, gv_err *e)
{
	if (!gv_name_valid(d->name))
		return gv_err_set(e, -EINVAL, "invalid VM name '%s' (use 1-63 letters, "
				  "digits, '.', '_' or '-')", d->name ? d->name : "");
	if (d->vcpus < 1 || d->vcpus > 64)
		return gv_err_set(e, -EINVAL, "invalid vCPU count %d (1-64)", d->vcpus);
	if (d->memory_mib < 32 || d->memory_mib > (1ULL << 22))
		return gv_err_set(e, -EINVAL, "invalid memory size %llu MiB (32 MiB to "
				  "4 TiB)", (unsigned long long)d->memory_mib);
	if (d->cpu_weight < 0 || d->cpu_weight > 10000)
		return gv_err_set(e, -EINVAL, "invalid CPU weight %d (1-10000)",
				  d->cpu_weight);
	if (d->cpu_cap_pct < 0 || d->cpu_cap_pct > 100 * d->vcpus)
		return gv_err_set(e, -EINVAL, "invalid CPU cap %d%% (1-%d)", d->cpu_cap_pct,
				  100 * d->vcpus);
	if (d->image && !gv_name_valid(d->image))
		return gv_err_set(e, -EINVAL, "invalid image name '%s'", d->image);
	if (d->checkpoint_every_s < 0 || d->checkpoint_keep < 0)
		return gv_err_set(e, -EINVAL, "invalid checkpoint period or retention");
	if (d->boot_disk && !d->image)
		return gv_err_set(e, -EINVAL, "booting from the disk needs an image "
				  "(--image)");
	if (d->boot_disk && (d->kernel || d->initrd || d->append))
		return gv_err_set(e, -EINVAL, "a kernel, initrd or command line makes no "
				  "sense when booting from the disk");
	if ((d->kernel && d->kernel[0] != '/') || (d->initrd && d->initrd[0] != '/'))
		return gv_err_set(e, -EINVAL, "kernel and initrd must be absolute paths");
	if (d->accel && strcmp(d->accel, "auto") && strcmp(d->accel, "kvm") &&
	    strcmp(d->accel, "tcg"))
		return gv_err_set(e, -EINVAL, "invalid accelerator '%s' (auto, kvm, tcg)",
				  d->accel);
	return 0;
}

int gv_vmdef_from_json(json_t *j, gv_vmdef **out, gv_err *e)
{
	gv_vmdef *d;
	int r;

	if (!json_is_object(j))
		return gv_err_set(e, -EINVAL, "VM definition must be a JSON object");
	d = calloc(1, sizeof(*d));
	if (!d)
		abort();
	d->name = opt_str(j, "name");
	d->vcpus = (int)json_integer_value(json_object_get(j, "vcpus"));
	d->memory_mib = (uint64_t)json_integer_value(json_object_get(j, "memory_mib"));
	if (!d->vcpus)
		d->vcpus = 1;
	if (!json_object_get(j, "memory_mib"))
		d->memory_mib = 256;
	d->image = opt_str(j, "image");
	d->job = strv_from_json(json_object_get(j, "job"));
	d->env = strv_from_json(json_object_get(j, "env"));
	d->workdir = opt_str(j, "workdir");
	d->cpu_weight = (int)json_integer_value(json_object_get(j, "cpu_weight"));
	d->cpu_cap_pct = (int)json_integer_value(json_object_get(j, "cpu_cap_pct"));
	d->disk_iops = (uint64_t)json_integer_value(json_object_get(j, "disk_iops"));
	d->disk_bps = (uint64_t)json_integer_value(json_object_get(j, "disk_bps"));
	d->accel = opt_str(j, "accel");
	d->ephemeral = json_is_true(json_object_get(j, "ephemeral"));
	d->boot_disk = json_is_true(json_object_get(j, "boot_disk"));
	d->checkpoint_every_s = (int)json_integer_value(json_object_get(j, "checkpoint_every_s"));
	d->checkpoint_keep = (int)json_integer_value(json_object_get(j, "checkpoint_keep"));
	d->checkpoint_drop_on_success =
		json_is_true(json_object_get(j, "checkpoint_drop_on_success"));
	d->kernel = opt_str(j, "kernel");
	d->initrd = opt_str(j, "initrd");
	d->append = opt_str(j, "append");
	d->input_tar = opt_str(j, "input_tar");
	inputs_from_json(d, json_object_get(j, "inputs"));
	if (json_array_size(json_object_get(j, "outputs")))
		d->outputs = strv_from_json(json_object_get(j, "outputs"));
	d->output_max = (uint64_t)json_integer_value(json_object_get(j, "output_max"));
	d->tmpl = opt_str(j, "template");
	d->boot_note = opt_str(j, "boot");
	if (json_is_object(json_object_get(j, "owner")) &&
	    json_is_string(json_object_get(json_object_get(j, "owner"), "name")))
		d->owner = json_deep_copy(json_object_get(j, "owner"));
	{
		const char *m = json_string_value(json_object_get(j, "start"));
		d->start_mode = !m || !strcmp(m, "auto") ? GV_START_AUTO
				: !strcmp(m, "cold")    ? GV_START_COLD
				: !strcmp(m, "template") ? GV_START_TEMPLATE : -1;
	}
	r = validate(d, e);
	if (r == 0 && d->start_mode < 0)
		r = gv_err_set(e, -EINVAL, "invalid start '%s' (auto, cold, template)",
			       json_string_value(json_object_get(j, "start")));
	if (r == 0)
		r = validate_io(d, e);
	if (r < 0) {
		gv_vmdef_free(d);
		return r;
	}
	*out = d;
	return 0;
}

json_t *gv_vmdef_to_json(const gv_vmdef *d)
{
	json_t *j = json_pack("{s:s, s:i, s:I, s:i, s:i, s:I, s:I, s:b}",
			      "name", d->name, "vcpus", d->vcpus,
			      "memory_mib", (json_int_t)d->memory_mib,
			      "cpu_weight", d->cpu_weight,
			      "cpu_cap_pct", d->cpu_cap_pct,
			      "disk_iops", (json_int_t)d->disk_iops,
			      "disk_bps", (json_int_t)d->disk_bps,
			      "ephemeral", d->ephemeral);
	json_object_set_new(j, "image", d->image ? json_string(d->image) : json_null());
	json_object_set_new(j, "job", d->job ? strv_to_json(d->job) : json_null());
	json_object_set_new(j, "env", strv_to_json(d->env));
	if (d->workdir)
		json_object_set_new(j, "workdir", json_string(d->workdir));
	if (d->accel)
		json_object_set_new(j, "accel", json_string(d->accel));
	json_object_set_new(j, "boot_disk", json_boolean(d->boot_disk));
	json_object_set_new(j, "checkpoint_every_s", json_integer(d->checkpoint_every_s));
	json_object_set_new(j, "checkpoint_keep", json_integer(d->checkpoint_keep));
	json_object_set_new(j, "checkpoint_drop_on_success",
			    json_boolean(d->checkpoint_drop_on_success));
	if (d->kernel)
		json_object_set_new(j, "kernel", json_string(d->kernel));
	if (d->initrd)
		json_object_set_new(j, "initrd", json_string(d->initrd));
	if (d->append)
		json_object_set_new(j, "append", json_string(d->append));
	if (d->input_guest) {
		json_t *a = json_array();
		for (size_t i = 0; d->input_guest[i]; i++)
			json_array_append_new(a, json_pack("{s:s?, s:s}", "path",
							   d->inputs ? d->inputs[i] : NULL,
							   "guest", d->input_guest[i]));
		json_object_set_new(j, "inputs", a);
	}
	if (d->input_tar)
		json_object_set_new(j, "input_tar", json_string(d->input_tar));
	if (d->outputs)
		json_object_set_new(j, "outputs", strv_to_json(d->outputs));
	if (d->output_max)
		json_object_set_new(j, "output_max", json_integer((json_int_t)d->output_max));
	json_object_set_new(j, "start", json_string((const char *[]){ "auto", "cold", "template" }
						    [d->start_mode]));
	if (d->tmpl)
		json_object_set_new(j, "template", json_string(d->tmpl));
	if (d->boot_note)
		json_object_set_new(j, "boot", json_string(d->boot_note));
	json_object_set_new(j, "owner", d->owner ? json_deep_copy(d->owner)
						 : json_pack("{s:i, s:s}", "uid", 0, "name", "root"));
	return j;
}

void gv_vmpaths_init(gv_vmpaths *p, const char *datadir, const char *name)
{
	p->dir = gv_strdupf("%s/vms/%s", datadir, name);
	p->disk = gv_strdupf("%s/disk.qcow2", p->dir);
	p->qmp = gv_strdupf("%s/qmp.sock", p->dir);
	p->pidfile = gv_strdupf("%s/qemu.pid", p->dir);
	p->console = gv_strdupf("%s/console.log", p->dir);
	p->jobout = gv_strdupf("%s/job.out", p->dir);
	p->jobspec = gv_strdupf("%s/job.spec", p->dir);
	p->qemulog = gv_strdupf("%s/qemu.log", p->dir);
	p->kernel = gv_strdupf("%s/guest/vmlinuz", datadir);
	p->initrd = gv_strdupf("%s/guest/initrd.img", datadir);
	p->blkmon = gv_strdupf("%s/blk.sock", p->dir);
	p->input = gv_strdupf("%s/input.tar", p->dir);
	p->output = gv_strdupf("%s/output.tar", p->dir);
	p->ctl = gv_strdupf("%s/ctl.sock", p->dir);
	p->fence = gv_strdupf("%s/fence.sock", p->dir);
	p->base = p->base_fmt = NULL;
	p->base_from_fd = false;
	p->mem_file = NULL;
	p->mem_shared = p->no_disks = p->tmpl_layout = p->mem_from_fd = false;
}

void gv_vmpaths_clear(gv_vmpaths *p)
{
	char **f[] = { &p->dir, &p->disk, &p->qmp, &p->pidfile, &p->console,
		       &p->jobout, &p->jobspec, &p->qemulog, &p->kernel, &p->initrd,
		       &p->blkmon, &p->input, &p->output, &p->ctl, &p->fence };

	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		free(*f[i]);
		*f[i] = NULL;
	}
}

/* Growable byte buffer for the job spec. */
struct buf {
	char *p;
	size_t len, cap;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void buf_kv(struct buf *b, const char *k, const char *v)
{
	buf_add(b, k, strlen(k));
	buf_add(b, "=", 1);
	buf_add(b, v, strlen(v));
	buf_add(b, "\n", 1);
}

char *gv_vmdef_jobspec(const gv_vmdef *d, size_t *len)
{
	struct buf b = { 0 };

	buf_kv(&b, "hostname", d->name);
	if (d->image && !d->boot_disk) /* hot-plugged in the template layout */
		buf_kv(&b, "root", d->tmpl ? "serial:" GV_ROOT_SERIAL : "/dev/vda");
	if (d->workdir)
		buf_kv(&b, "workdir", d->workdir);
	for (size_t i = 0; d->env && d->env[i]; i++)
		if (!strchr(d->env[i], '\n'))
			buf_kv(&b, "env", d->env[i]);
	for (size_t i = 0; d->input_guest && d->input_guest[i]; i++)
		buf_kv(&b, "input", d->input_guest[i]);
	for (size_t i = 0; d->outputs && d->outputs[i]; i++)
		buf_kv(&b, "output", d->outputs[i]);
	buf_add(&b, "\n", 1);
	for (size_t i = 0; d->job && d->job[i]; i++)
		buf_add(&b, d->job[i], strlen(d->job[i]) + 1);
	*len = b.len;
	return b.p;
}

/* no_timer_check: on a loaded host a TCG guest can miss the early timer
 * check and panic ("IO-APIC + timer doesn't work") before init runs */
#define GV_DEFAULT_APPEND "console=ttyS0 quiet panic=-1 cryptomgr.notests no_timer_check"

/* argv builder */
struct argv {
	char **v;
	size_t n, cap;
};

static void arg(struct argv *a, const char *s)
{
	if (a->n + 2 > a->cap) {
		a->cap = a->cap ? a->cap * 2 : 64;
		a->v = realloc(a->v, a->cap * sizeof(*a->v));
		if (!a->v)
			abort();
	}
	a->v[a->n++] = strdup(s);
	a->v[a->n] = NULL;
}

static void argf(struct argv *a, char *owned)
{
	arg(a, owned);
	free(owned);
}

static void args(struct argv *a, const char *const *list)
{
	for (; *list; list++)
		arg(a, *list);
}

static void add_disk(struct argv *a, const gv_vmdef *d, const gv_vmpaths *p)
{
	bool thr = d->disk_iops || d->disk_bps;

	if (thr) {
		arg(a, "-object");
		argf(a, gv_strdupf("throttle-group,id=thr0,x-iops-total=%llu,"
				   "x-bps-total=%llu",
				   (unsigned long long)d->disk_iops,
				   (unsigned long long)d->disk_bps));
	}
	arg(a, "-blockdev");
	/* drop-cache=off: activating the disk after an incoming migration
	 * would flush and drop the file's page cache, which only matters for
	 * storage shared with another host; our copies are written here */
	argf(a, gv_strdupf("driver=file,filename=%s,node-name=file0,drop-cache=off", p->disk));
	/* the base image read-only and, like the overlay, with its page cache
	 * kept when the disk is activated after an incoming migration (else
	 * the whole base image's cache goes, and the resumed guest reads it
	 * from disk again) */
	if (p->base) {
		if (p->base_from_fd) {
			arg(a, "-add-fd");
			argf(a, gv_strdupf("fd=%d,set=%d,opaque=base-image", GV_QEMU_FD_BASE,
					   GV_QEMU_BASE_FDSET));
		}
		arg(a, "-blockdev");
		argf(a, gv_strdupf("driver=file,filename=%s,node-name=base-file,read-only=on,"
				   "drop-cache=off", p->base_from_fd ? GV_QEMU_BASE_PATH : p->base));
		arg(a, "-blockdev");
		argf(a, gv_strdupf("driver=%s,file=base-file,node-name=base0,read-only=on",
				   p->base_fmt ? p->base_fmt : "raw"));
	}
	arg(a, "-blockdev");
	argf(a, gv_strdupf("driver=qcow2,file=file0,node-name=qcow0%s",
			   p->base ? ",backing=base0" : ""));
	if (thr) {
		arg(a, "-blockdev");
		arg(a, "driver=throttle,file=qcow0,node-name=disk0,"
		       "throttle-group=thr0");
	}
	arg(a, "-device");
	argf(a, gv_strdupf("virtio-blk-pci,drive=%s,id=vda%s%s",
			   thr ? "disk0" : "qcow0", d->boot_disk ? ",bootindex=0" : "",
			   p->tmpl_layout ? ",bus=rp0,serial=" GV_ROOT_SERIAL : ""));
}

/* The job's input disk (read-only) and output disk, raw, found by the
 * guest by their serial numbers (guest/jobio.c). */
static void add_io_disks(struct argv *a, const gv_vmdef *d, const gv_vmpaths *p)
{
	if (d->input_guest) {
		arg(a, "-blockdev");
		argf(a, gv_strdupf("driver=file,filename=%s,node-name=in-file,read-only=on,"
				   "drop-cache=off", p->input));
		args(a, (const char *const[]){ "-blockdev", "driver=raw,file=in-file,"
					       "node-name=in0,read-only=on", "-device", NULL });
		argf(a, gv_strdupf("virtio-blk-pci,drive=in0,id=vdin,serial=gridvm-input%s",
				   p->tmpl_layout ? ",bus=rp1" : ""));
	}
	if (d->outputs) {
		arg(a, "-blockdev");
		argf(a, gv_strdupf("driver=file,filename=%s,node-name=out-file,drop-cache=off",
				   p->output));
		args(a, (const char *const[]){ "-blockdev", "driver=raw,file=out-file,"
					       "node-name=out0", "-device", NULL });
		argf(a, gv_strdupf("virtio-blk-pci,drive=out0,id=vdout,serial=gridvm-output%s",
				   p->tmpl_layout ? ",bus=rp2" : ""));
	}
}

/* The template layout's RAM: a backend named as -m names its own
 * ("pc.ram"), so its stream restores into either; from a template's file
 * (shared while the template boots, copy-on-write for a VM) or anonymous. */
static void add_tmpl_memory(struct argv *a, const gv_vmdef *d, const gv_vmpaths *p)
{
	unsigned long long mib = (unsigned long long)d->memory_mib;

	arg(a, "-object");
	if (p->mem_from_fd) /* a template's sealed copy (template.c) */
		argf(a, gv_strdupf("memory-backend-file,id=pc.ram,size=%lluM,"
				   "mem-path=/proc/self/fd/%d,share=off", mib, GV_QEMU_FD_MEM));
	else if (p->mem_file)
		argf(a, gv_strdupf("memory-backend-file,id=pc.ram,size=%lluM,mem-path=%s,share=%s",
				   mib, p->mem_file, p->mem_shared ? "on" : "off"));
	else
		argf(a, gv_strdupf("memory-backend-ram,id=pc.ram,size=%lluM", mib));
	args(a, (const char *const[]){ "-machine", "memory-backend=pc.ram", NULL });
}

/* A QMP monitor on the listening socket QEMU finds as fd @fd. */
static void add_monitor(struct argv *a, const char *id, int fd)
{
	arg(a, "-chardev");
	argf(a, gv_strdupf("socket,id=%s,fd=%d,server=on,wait=off", id, fd));
	arg(a, "-mon");
	argf(a, gv_strdupf("chardev=%s,mode=control", id));
}

/* What a template has that a cold boot does not: the control port the job
 * arrives on, the generation id a restored guest learns it was cloned
 * by, and a root port per hot-pluggable disk (root, input, output). */
static void add_tmpl_devices(struct argv *a, const gv_vmpaths *p)
{
	arg(a, "-chardev");
	argf(a, gv_strdupf("socket,id=gvctl,fd=%d,server=on,wait=off", GV_QEMU_FD_CTL));
	args(a, (const char *const[]){ "-device", "virtserialport,bus=vser0.0,chardev=gvctl,"
				       "name=org.gridvm.ctl", "-device", "vmgenid,guid=auto",
				       "-device", "pcie-root-port,id=rp0,chassis=1,slot=1",
				       "-device", "pcie-root-port,id=rp1,chassis=2,slot=2",
				       "-device", "pcie-root-port,id=rp2,chassis=3,slot=3", NULL });
}

static json_t *qmp_cmd(const char *cmd, json_t *args)
{
	return json_pack("{s:s, s:o}", "execute", cmd, "arguments", args);
}

static void hotplug_raw(json_t *a, const char *file, const char *node, const char *fnode,
			bool ro)
{
	json_array_append_new(a, qmp_cmd("blockdev-add",
		json_pack("{s:s, s:s, s:s, s:b, s:b}", "driver", "file", "filename", file,
			  "node-name", fnode, "read-only", ro, "drop-cache", 0)));
	json_array_append_new(a, qmp_cmd("blockdev-add",
		json_pack("{s:s, s:s, s:s, s:b}", "driver", "raw", "file", fnode,
			  "node-name", node, "read-only", ro)));
}

static void hotplug_dev(json_t *a, const char *drive, const char *id, const char *bus,
			const char *serial)
{
	json_array_append_new(a, qmp_cmd("device_add",
		json_pack("{s:s, s:s, s:s, s:s, s:s}", "driver", "virtio-blk-pci", "drive",
			  drive, "id", id, "bus", bus, "serial", serial)));
}

json_t *gv_vmdef_hotplug_cmds(const gv_vmdef *d, const gv_vmpaths *p)
{
	json_t *a = json_array();

	if (d->image) {
		json_array_append_new(a, qmp_cmd("blockdev-add",
			json_pack("{s:s, s:s, s:s, s:b}", "driver", "file", "filename", p->disk,
				  "node-name", "file0", "drop-cache", 0)));
		if (p->base) {
			json_array_append_new(a, qmp_cmd("blockdev-add",
				json_pack("{s:s, s:s, s:s, s:b, s:b}", "driver", "file",
					  "filename",
					  p->base_from_fd ? GV_QEMU_BASE_PATH : p->base,
					  "node-name", "base-file",
					  "read-only", 1, "drop-cache", 0)));
			json_array_append_new(a, qmp_cmd("blockdev-add",
				json_pack("{s:s, s:s, s:s, s:b}", "driver",
					  p->base_fmt ? p->base_fmt : "raw", "file", "base-file",
					  "node-name", "base0", "read-only", 1)));
		}
		json_array_append_new(a, qmp_cmd("blockdev-add",
			json_pack("{s:s, s:s, s:s, s:s?}", "driver", "qcow2", "file", "file0",
				  "node-name", "qcow0", "backing", p->base ? "base0" : NULL)));
		hotplug_dev(a, "qcow0", "vda", "rp0", GV_ROOT_SERIAL);
	}
	if (d->input_guest) {
		hotplug_raw(a, p->input, "in0", "in-file", true);
		hotplug_dev(a, "in0", "vdin", "rp1", "gridvm-input");
	}
	if (d->outputs) {
		hotplug_raw(a, p->output, "out0", "out-file", false);
		hotplug_dev(a, "out0", "vdout", "rp2", "gridvm-output");
	}
	return a;
}

char **gv_vmdef_qemu_argv(const gv_vmdef *d, const gv_vmpaths *p,
			  const char *accel_arg, bool incoming)
{
	struct argv a = { 0 };
	bool kvm = !strcmp(accel_arg, "kvm");

	arg(&a, "qemu-system-x86_64");
	args(&a, (const char *const[]){ "-name", NULL });
	argf(&a, gv_strdupf("gridvm-%s", d->name));
	args(&a, (const char *const[]){ "-machine", "q35", "-accel", accel_arg,
					"-cpu", kvm ? "host" : "max",
					"-smp", NULL });
	argf(&a, gv_strdupf("%d", d->vcpus));
	arg(&a, "-m");
	argf(&a, gv_strdupf("%lluM", (unsigned long long)d->memory_mib));
	if (p->tmpl_layout)
		add_tmpl_memory(&a, d, p);
	args(&a, (const char *const[]){ "-nodefaults", "-no-user-config",
					"-display", "none", "-no-reboot", NULL });
	if (!d->boot_disk)
		args(&a, (const char *const[]){
				 "-kernel", d->kernel ? d->kernel : p->kernel,
				 "-initrd", d->initrd ? d->initrd : p->initrd,
				 "-append", d->append ? d->append : GV_DEFAULT_APPEND, NULL });
	arg(&a, "-chardev");
	argf(&a, gv_strdupf("file,id=con0,path=%s,append=on", p->console));
	args(&a, (const char *const[]){ "-serial", "chardev:con0", "-fw_cfg", NULL });
	argf(&a, gv_strdupf("name=opt/gridvm/job,file=%s", p->jobspec));
	args(&a, (const char *const[]){ "-device", "virtio-serial-pci,id=vser0",
					"-chardev", NULL });
	argf(&a, gv_strdupf("file,id=gvjob,path=%s,append=on", p->jobout));
	args(&a, (const char *const[]){ "-device",
					"virtserialport,bus=vser0.0,chardev=gvjob,"
					"name=org.gridvm.job", NULL });
	if (p->tmpl_layout)
		add_tmpl_devices(&a, p);
	if (d->image && !p->no_disks)
		add_disk(&a, d, p);
	if (!p->no_disks)
		add_io_disks(&a, d, p);
	/* the monitors' sockets are bound by the agent and passed to QEMU
	 * (vmdef.h: GV_QEMU_FD_*), which cannot write the VM's directory */
	add_monitor(&a, "gvqmp", GV_QEMU_FD_QMP);
	if (p->fence)
		add_monitor(&a, "gvfence", GV_QEMU_FD_FENCE);
	if (d->image) /* write tracking (lib/node/dirtytrack.c) has a monitor of its own */
		add_monitor(&a, "gvblk", GV_QEMU_FD_BLKMON);
	/* seccomp: no obsolete calls, no set*uid, no fork or exec, no
	 * scheduler or priority changes (lib/vmm/confine.c says why QEMU
	 * then runs in the foreground, started unprivileged) */
	args(&a, (const char *const[]){ "-sandbox", GV_QEMU_SANDBOX, "-S", NULL });
	if (incoming)
		args(&a, (const char *const[]){ "-incoming", "defer", NULL });
	return a.v;
}
