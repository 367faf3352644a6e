/* SPDX-License-Identifier: MIT */
/* test-vmdef.c - VM definition: validation, JSON round trip, job spec and
 * the QEMU command line it becomes. */
#include <gridvm/vmm/vmdef.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static gv_vmdef *parse(const char *text, gv_err *err)
{
	json_t *j = json_loads(text, 0, NULL);
	gv_vmdef *d = NULL;

	assert_non_null(j);
	if (gv_vmdef_from_json(j, &d, err) < 0)
		d = NULL;
	json_decref(j);
	return d;
}

/* Index of @s in @argv, or -1. */
static int find(char **argv, const char *s)
{
	for (int i = 0; argv[i]; i++)
		if (!strcmp(argv[i], s))
			return i;
	return -1;
}

static void test_defaults_and_roundtrip(void **state)
{
	gv_err err;
	gv_vmdef *d = parse("{\"name\":\"calc\",\"image\":\"default\","
			    "\"job\":[\"/bin/sh\",\"-c\",\"echo hi\"]}", &err);
	assert_non_null(d);
	assert_int_equal(d->vcpus, 1);
	assert_int_equal(d->memory_mib, 256);
	assert_string_equal(d->image, "default");
	assert_string_equal(d->job[2], "echo hi");

	json_t *j = gv_vmdef_to_json(d);
	gv_vmdef *d2 = NULL;
	assert_int_equal(gv_vmdef_from_json(j, &d2, &err), 0);
	assert_string_equal(d2->name, "calc");
	assert_int_equal(d2->memory_mib, 256);
	assert_string_equal(d2->job[0], "/bin/sh");
	assert_null(d2->job[3]);
	json_decref(j);
	gv_vmdef_free(d);
	gv_vmdef_free(d2);
}

static void test_validation(void **state)
{
	gv_err err;

	assert_null(parse("{\"name\":\"a/b\"}", &err));
	assert_non_null(strstr(err.msg, "invalid VM name"));
	assert_null(parse("{\"name\":\"x\",\"memory_mib\":4}", &err));
	assert_non_null(strstr(err.msg, "invalid memory size 4 MiB"));
	assert_null(parse("{\"name\":\"x\",\"vcpus\":100}", &err));
	assert_non_null(strstr(err.msg, "vCPU"));
	assert_null(parse("{\"name\":\"x\",\"cpu_cap_pct\":300}", &err));
	assert_non_null(strstr(err.msg, "CPU cap"));
	assert_null(parse("{\"name\":\"x\",\"accel\":\"xen\"}", &err));
	assert_non_null(strstr(err.msg, "accelerator"));
	assert_null(parse("[1,2]", &err));
}

static void test_qemu_argv(void **state)
{
	gv_err err;
	gv_vmdef *d = parse("{\"name\":\"vm1\",\"image\":\"deb\",\"vcpus\":2,"
			    "\"memory_mib\":1024,\"job\":[\"true\"]}", &err);
	gv_vmpaths p;
	char **argv;
	int i;

	gv_vmpaths_init(&p, "/data", "vm1");
	argv = gv_vmdef_qemu_argv(d, &p, "tcg,thread=multi", false);
	assert_string_equal(argv[0], "qemu-system-x86_64");
	i = find(argv, "-accel");
	assert_true(i > 0);
	assert_string_equal(argv[i + 1], "tcg,thread=multi");
	assert_string_equal(argv[find(argv, "-cpu") + 1], "max");
	assert_string_equal(argv[find(argv, "-smp") + 1], "2");
	assert_string_equal(argv[find(argv, "-m") + 1], "1024M");
	assert_string_equal(argv[find(argv, "-kernel") + 1], "/data/guest/vmlinuz");
	assert_string_equal(argv[find(argv, "-initrd") + 1], "/data/guest/initrd.img");
	assert_true(find(argv, "driver=file,filename=/data/vms/vm1/disk.qcow2,node-name=file0,drop-cache=off") > 0);
	assert_true(find(argv, "virtio-blk-pci,drive=qcow0,id=vda") > 0);
	/* the monitors on sockets the agent binds and passes (QEMU cannot
	 * write the VM's directory), in the foreground (-daemonize would
	 * fork, which the sandbox forbids), no pidfile (the agent writes it) */
	assert_true(find(argv, "socket,id=gvqmp,fd=3,server=on,wait=off") > 0);
	assert_true(find(argv, "chardev=gvqmp,mode=control") > 0);
	assert_true(find(argv, "socket,id=gvfence,fd=4,server=on,wait=off") > 0);
	assert_true(find(argv, "socket,id=gvblk,fd=5,server=on,wait=off") > 0);
	assert_int_equal(find(argv, "-qmp"), -1);
	assert_true(find(argv, "name=opt/gridvm/job,file=/data/vms/vm1/job.spec") > 0);
	assert_true(find(argv, "file,id=gvjob,path=/data/vms/vm1/job.out,append=on") > 0);
	assert_int_equal(find(argv, "-daemonize"), -1);
	assert_int_equal(find(argv, "-pidfile"), -1);
	assert_string_equal(argv[find(argv, "-sandbox") + 1],
			    "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
	assert_true(find(argv, "-S") > 0);
	assert_int_equal(find(argv, "-incoming"), -1);
	assert_int_equal(find(argv, "-object"), -1);
	assert_true(find(argv, "driver=qcow2,file=file0,node-name=qcow0") > 0);
	gv_strv_free(argv);

	/* the base image named: opened read-only, its page cache kept */
	p.base = "/data/images/deb.img";
	p.base_fmt = "raw";
	argv = gv_vmdef_qemu_argv(d, &p, "tcg", false);
	assert_true(find(argv, "driver=file,filename=/data/images/deb.img,node-name=base-file,"
			       "read-only=on,drop-cache=off") > 0);
	assert_true(find(argv, "driver=raw,file=base-file,node-name=base0,read-only=on") > 0);
	assert_true(find(argv, "driver=qcow2,file=file0,node-name=qcow0,backing=base0") > 0);
	assert_true(find(argv, "driver=qcow2,file=file0,node-name=qcow0,backing=base0") >
		    find(argv, "driver=raw,file=base-file,node-name=base0,read-only=on"));
	gv_strv_free(argv);
	/* as the agent starts it: the base image passed open, as fd set 1
	 * (QEMU's user may not read the file itself) */
	p.base_from_fd = true;
	argv = gv_vmdef_qemu_argv(d, &p, "tcg", false);
	assert_string_equal(argv[find(argv, "-add-fd") + 1], "fd=8,set=1,opaque=base-image");
	assert_true(find(argv, "driver=file,filename=/dev/fdset/1,node-name=base-file,"
			       "read-only=on,drop-cache=off") > 0);
	assert_int_equal(find(argv, "driver=file,filename=/data/images/deb.img,node-name=base-file,"
				    "read-only=on,drop-cache=off"), -1);
	gv_strv_free(argv);
	p.base_from_fd = false;
	p.base = NULL;

	argv = gv_vmdef_qemu_argv(d, &p, "kvm", true);
	assert_string_equal(argv[find(argv, "-cpu") + 1], "host");
	assert_string_equal(argv[find(argv, "-incoming") + 1], "defer");
	gv_strv_free(argv);
	gv_vmpaths_clear(&p);
	gv_vmdef_free(d);
}

static void test_argv_throttle_and_no_disk(void **state)
{
	gv_err err;
	gv_vmdef *d = parse("{\"name\":\"t\",\"image\":\"i\",\"disk_iops\":100,"
			    "\"disk_bps\":1048576}", &err);
	gv_vmpaths p;
	char **argv;
	int obj, dev;

	gv_vmpaths_init(&p, "/d", "t");
	argv = gv_vmdef_qemu_argv(d, &p, "tcg", false);
	obj = find(argv, "throttle-group,id=thr0,x-iops-total=100,x-bps-total=1048576");
	dev = find(argv, "virtio-blk-pci,drive=disk0,id=vda");
	assert_true(obj > 0);
	assert_true(dev > obj); /* the group is defined before its user */
	assert_true(find(argv, "driver=throttle,file=qcow0,node-name=disk0,throttle-group=thr0") > 0);
	gv_strv_free(argv);
	gv_vmdef_free(d);

	d = parse("{\"name\":\"t\"}", &err);
	argv = gv_vmdef_qemu_argv(d, &p, "tcg", false);
	assert_int_equal(find(argv, "-blockdev"), -1); /* no image, no disk */
	gv_strv_free(argv);
	gv_vmpaths_clear(&p);
	gv_vmdef_free(d);
}

static void test_argv_firmware_boot(void **state)
{
	gv_err err;
	gv_vmdef *d = parse("{\"name\":\"fw\",\"image\":\"iso\",\"boot_disk\":true}",
			    &err);
	gv_vmpaths p;
	char **argv;
	size_t len;
	char *spec;

	assert_non_null(d);
	gv_vmpaths_init(&p, "/d", "fw");
	argv = gv_vmdef_qemu_argv(d, &p, "tcg", false);
	assert_int_equal(find(argv, "-kernel"), -1);
	assert_int_equal(find(argv, "-initrd"), -1);
	assert_true(find(argv, "virtio-blk-pci,drive=qcow0,id=vda,bootindex=0") > 0);
	spec = gv_vmdef_jobspec(d, &len);
	assert_null(strstr(spec, "root=")); /* the disk is not the job's root */
	free(spec);
	gv_strv_free(argv);
	gv_vmdef_free(d);

	d = parse("{\"name\":\"k\",\"kernel\":\"/k/vmlinuz\",\"append\":\"quiet\"}",
		  &err);
	argv = gv_vmdef_qemu_argv(d, &p, "tcg", false);
	assert_string_equal(argv[find(argv, "-kernel") + 1], "/k/vmlinuz");
	assert_string_equal(argv[find(argv, "-initrd") + 1], "/d/guest/initrd.img");
	assert_string_equal(argv[find(argv, "-append") + 1], "quiet");
	gv_strv_free(argv);
	gv_vmdef_free(d);

	assert_null(parse("{\"name\":\"x\",\"boot_disk\":true}", &err));
	assert_non_null(strstr(err.msg, "needs an image"));
	assert_null(parse("{\"name\":\"x\",\"kernel\":\"rel/vmlinuz\"}", &err));
	assert_non_null(strstr(err.msg, "absolute"));
	gv_vmpaths_clear(&p);
}

static void test_jobspec(void **state)
{
	gv_err err;
	gv_vmdef *d = parse("{\"name\":\"j\",\"image\":\"i\",\"workdir\":\"/tmp\","
			    "\"env\":[\"A=1\",\"BAD=x\\ny\"],"
			    "\"job\":[\"sh\",\"-c\",\"echo 'a b'\"]}", &err);
	size_t len;
	char *spec = gv_vmdef_jobspec(d, &len);
	const char want[] = "hostname=j\nroot=/dev/vda\nworkdir=/tmp\nenv=A=1\n\n"
			    "sh\0-c\0echo 'a b'";

	assert_int_equal(len, sizeof(want));
	assert_memory_equal(spec, want, sizeof(want));
	free(spec);
	gv_vmdef_free(d);
}

static void test_inputs_outputs(void **state)
{
	gv_err err;
	gv_vmdef *d = parse("{\"name\":\"io\",\"image\":\"i\",\"job\":[\"true\"],"
			    "\"inputs\":[{\"path\":\"/h/data.txt\"},"
			    "{\"path\":\"/h/dir/\",\"guest\":\"/in/d/\"}],"
			    "\"outputs\":[\"out.txt\",\"/root/res/\"],\"output_max\":2097152}",
			    &err);
	gv_vmpaths p;
	char **argv, *spec;
	size_t len;

	assert_non_null(d);
	assert_string_equal(d->inputs[1], "/h/dir");
	assert_string_equal(d->input_guest[0], "data.txt"); /* the basename */
	assert_string_equal(d->input_guest[1], "/in/d");
	assert_string_equal(d->outputs[1], "/root/res");
	json_t *j = gv_vmdef_to_json(d);
	gv_vmdef *d2 = NULL;
	assert_int_equal(gv_vmdef_from_json(j, &d2, &err), 0);
	json_decref(j);
	assert_string_equal(d2->input_guest[0], "data.txt");
	assert_string_equal(d2->inputs[1], "/h/dir");
	assert_string_equal(d2->outputs[0], "out.txt");
	assert_null(d2->outputs[2]);
	assert_int_equal(d2->output_max, 2097152);
	gv_vmdef_free(d2);

	spec = gv_vmdef_jobspec(d, &len);
	const char want[] = "hostname=io\nroot=/dev/vda\ninput=data.txt\ninput=/in/d\n"
			    "output=out.txt\noutput=/root/res\n\ntrue";
	assert_int_equal(len, sizeof(want));
	assert_memory_equal(spec, want, sizeof(want));
	free(spec);

	gv_vmpaths_init(&p, "/d", "io");
	argv = gv_vmdef_qemu_argv(d, &p, "tcg", false);
	assert_true(find(argv, "driver=file,filename=/d/vms/io/input.tar,node-name=in-file,"
			       "read-only=on,drop-cache=off") > 0);
	assert_true(find(argv, "virtio-blk-pci,drive=in0,id=vdin,serial=gridvm-input") > 0);
	assert_true(find(argv, "virtio-blk-pci,drive=out0,id=vdout,serial=gridvm-output") >
		    find(argv, "virtio-blk-pci,drive=qcow0,id=vda")); /* the root stays vda */
	gv_strv_free(argv);
	gv_vmpaths_clear(&p);
	gv_vmdef_free(d);

	/* none: no disks, no spec lines */
	d = parse("{\"name\":\"n\",\"job\":[\"true\"]}", &err);
	gv_vmpaths_init(&p, "/d", "n");
	argv = gv_vmdef_qemu_argv(d, &p, "tcg", false);
	assert_int_equal(find(argv, "virtio-blk-pci,drive=in0,id=vdin,serial=gridvm-input"), -1);
	assert_null(d->inputs);
	assert_null(d->outputs);
	gv_strv_free(argv);
	gv_vmpaths_clear(&p);
	gv_vmdef_free(d);
}

/* The template layout (lib/node/template.c): the same machine whether the
 * VM boots it as a template, is restored from one (its disks hot-plugged)
 * or comes back later (a save, a migration: its disks on the command
 * line at the slots they were hot-plugged to). */
static void test_template_layout(void **state)
{
	gv_err err;
	gv_vmdef *d = parse("{\"name\":\"t\",\"image\":\"i\",\"job\":[\"true\"],"
			    "\"inputs\":[{\"path\":\"/h/x\"}],\"outputs\":[\"o\"],"
			    "\"template\":\"tcg-1c-256m\",\"start\":\"cold\"}", &err);
	gv_vmpaths p;
	char **argv, *spec;
	json_t *cmds, *j;
	size_t len;

	assert_non_null(d);
	assert_string_equal(d->tmpl, "tcg-1c-256m");
	assert_int_equal(d->start_mode, GV_START_COLD);
	j = gv_vmdef_to_json(d); /* what a save, a migration, a checkpoint carry */
	assert_string_equal(json_string_value(json_object_get(j, "template")), "tcg-1c-256m");
	assert_string_equal(json_string_value(json_object_get(j, "start")), "cold");
	json_decref(j);
	spec = gv_vmdef_jobspec(d, &len); /* hot-plugged: found by serial */
	assert_non_null(strstr(spec, "root=serial:gridvm-root\n"));
	free(spec);

	/* restored from the template: its RAM file copy-on-write, no disks */
	gv_vmpaths_init(&p, "/d", "t");
	p.tmpl_layout = p.no_disks = true;
	p.mem_file = "/d/templates/tcg-1c-256m/mem";
	argv = gv_vmdef_qemu_argv(d, &p, "tcg", true);
	assert_true(find(argv, "memory-backend-file,id=pc.ram,size=256M,"
			       "mem-path=/d/templates/tcg-1c-256m/mem,share=off") > 0);
	assert_true(find(argv, "memory-backend=pc.ram") > 0);
	assert_true(find(argv, "socket,id=gvctl,fd=6,server=on,wait=off") > 0);
	assert_true(find(argv, "vmgenid,guid=auto") > 0);
	assert_true(find(argv, "pcie-root-port,id=rp2,chassis=3,slot=3") > 0);
	assert_int_equal(find(argv, "virtio-blk-pci,drive=qcow0,id=vda,bus=rp0,"
				    "serial=gridvm-root"), -1);
	gv_strv_free(argv);
	/* as the agent starts it: the template's sealed copy, passed as fd 7 */
	p.mem_file = NULL;
	p.mem_from_fd = true;
	argv = gv_vmdef_qemu_argv(d, &p, "tcg", true);
	assert_true(find(argv, "memory-backend-file,id=pc.ram,size=256M,"
			       "mem-path=/proc/self/fd/7,share=off") > 0);
	gv_strv_free(argv);
	p.mem_from_fd = false;

	/* its disks, hot-plugged with the node names a cold boot uses */
	p.base = "/d/images/i.img";
	cmds = gv_vmdef_hotplug_cmds(d, &p);
	char *text = json_dumps(cmds, JSON_COMPACT | JSON_SORT_KEYS);
	assert_non_null(strstr(text, "\"node-name\":\"file0\""));
	assert_non_null(strstr(text, "\"backing\":\"base0\""));
	assert_non_null(strstr(text, "\"filename\":\"/d/images/i.img\""));
	assert_non_null(strstr(text, "{\"arguments\":{\"bus\":\"rp0\",\"drive\":\"qcow0\","
				     "\"driver\":\"virtio-blk-pci\",\"id\":\"vda\","
				     "\"serial\":\"gridvm-root\"},\"execute\":\"device_add\"}"));
	assert_non_null(strstr(text, "\"bus\":\"rp1\",\"drive\":\"in0\""));
	assert_non_null(strstr(text, "\"bus\":\"rp2\",\"drive\":\"out0\""));
	free(text);
	json_decref(cmds);
	p.base_from_fd = true; /* hot-plugged from the fd set QMP add-fd made */
	cmds = gv_vmdef_hotplug_cmds(d, &p);
	text = json_dumps(cmds, JSON_COMPACT | JSON_SORT_KEYS);
	assert_non_null(strstr(text, "\"filename\":\"/dev/fdset/1\""));
	assert_null(strstr(text, "/d/images/i.img"));
	free(text);
	json_decref(cmds);
	p.base_from_fd = false;

	/* later (a save restored, a migration's destination): anonymous RAM
	 * named as before, the disks on the command line at those slots */
	p.no_disks = false;
	p.mem_file = NULL;
	argv = gv_vmdef_qemu_argv(d, &p, "tcg", true);
	assert_true(find(argv, "memory-backend-ram,id=pc.ram,size=256M") > 0);
	assert_true(find(argv, "virtio-blk-pci,drive=qcow0,id=vda,bus=rp0,"
			       "serial=gridvm-root") > 0);
	assert_true(find(argv, "virtio-blk-pci,drive=in0,id=vdin,serial=gridvm-input,"
			       "bus=rp1") > 0);
	gv_strv_free(argv);
	gv_vmpaths_clear(&p);

	/* a cold boot has none of it */
	gv_vmpaths_init(&p, "/d", "t");
	free(d->tmpl);
	d->tmpl = NULL;
	argv = gv_vmdef_qemu_argv(d, &p, "tcg", false);
	assert_int_equal(find(argv, "vmgenid,guid=auto"), -1);
	assert_true(find(argv, "virtio-blk-pci,drive=qcow0,id=vda") > 0);
	gv_strv_free(argv);
	gv_vmpaths_clear(&p);
	gv_vmdef_free(d);
	assert_null(parse("{\"name\":\"t\",\"start\":\"warm\"}", &err));
}

static void test_io_validation(void **state)
{
	gv_err err;
	gv_vmdef *d;

	/* inputs packed already: their guest paths, no host paths */
	d = parse("{\"name\":\"x\",\"input_tar\":\"/g/x-input.tar\","
		  "\"inputs\":[{\"guest\":\"/in/a\"}]}", &err);
	assert_non_null(d);
	assert_null(d->inputs);
	assert_string_equal(d->input_guest[0], "/in/a");
	json_t *j = gv_vmdef_to_json(d);
	gv_vmdef_free(d);
	assert_int_equal(gv_vmdef_from_json(j, &d, &err), 0);
	json_decref(j);
	assert_string_equal(d->input_tar, "/g/x-input.tar");
	assert_string_equal(d->input_guest[0], "/in/a");
	gv_vmdef_free(d);
	assert_null(parse("{\"name\":\"x\",\"input_tar\":\"/t\"}", &err));
	assert_non_null(strstr(err.msg, "input_tar"));
	assert_null(parse("{\"name\":\"x\",\"input_tar\":\"/t\",\"inputs\":[{}]}", &err));
	assert_non_null(strstr(err.msg, "invalid guest path"));

	assert_null(parse("{\"name\":\"x\",\"inputs\":[{\"path\":\"rel/a\"}]}", &err));
	assert_non_null(strstr(err.msg, "input rel/a: the host path must be absolute"));
	assert_null(parse("{\"name\":\"x\",\"inputs\":[{\"path\":\"/a\",\"guest\":\"/\"}]}", &err));
	assert_non_null(strstr(err.msg, "invalid guest path '/'"));
	assert_null(parse("{\"name\":\"x\",\"inputs\":[{\"path\":\"/\"}]}", &err));
	assert_non_null(strstr(err.msg, "input /"));
	assert_null(parse("{\"name\":\"x\",\"outputs\":[\"a/..\"]}", &err));
	assert_non_null(strstr(err.msg, "invalid output path 'a/..'"));
	assert_null(parse("{\"name\":\"x\",\"outputs\":[\"x\\ny\"]}", &err));
	assert_non_null(strstr(err.msg, "invalid output path"));
	assert_null(parse("{\"name\":\"x\",\"outputs\":[\"/a/r\",\"b/r/\"]}", &err));
	assert_non_null(strstr(err.msg, "outputs /a/r and b/r would arrive under the same name"));
	assert_null(parse("{\"name\":\"x\",\"outputs\":[\"r\"],\"output_max\":5}", &err));
	assert_non_null(strstr(err.msg, "invalid output size"));
	assert_null(parse("{\"name\":\"x\",\"image\":\"i\",\"boot_disk\":true,"
			  "\"outputs\":[\"r\"]}", &err));
	assert_non_null(strstr(err.msg, "need the gridvm guest"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_and_roundtrip),
		cmocka_unit_test(test_validation),
		cmocka_unit_test(test_qemu_argv),
		cmocka_unit_test(test_argv_throttle_and_no_disk),
		cmocka_unit_test(test_argv_firmware_boot),
		cmocka_unit_test(test_jobspec),
		cmocka_unit_test(test_inputs_outputs),
		cmocka_unit_test(test_io_validation),
		cmocka_unit_test(test_template_layout),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
