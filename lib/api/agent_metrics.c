/* SPDX-License-Identifier: MIT */
/*
 * agent_metrics.c - the node agent's Prometheus metrics (gridvmd
 * --metrics): its VMs by state and what the live ones hold, the host's
 * size and load, its images, checkpoints and migrations. Everything is
 * read as recorded, without taking a VM's lock, so a scrape never waits
 * for a migration or a checkpoint. docs/grid.md lists the metrics.
 */
#include <gridvm/api/agent.h>
#include <gridvm/api/metrics.h>
#include <gridvm/node/checkpoint.h>
#include <gridvm/node/image.h>
#include <gridvm/node/migrate.h>

#include <gridvm/base/util.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void vms(gv_host *h, gv_metrics_buf *b)
{
	static const gv_vmstate states[] = { GV_VM_DEFINED, GV_VM_RUNNING, GV_VM_PAUSED,
					     GV_VM_SAVED,   GV_VM_STOPPED, GV_VM_FAILED };
	unsigned n[sizeof(states) / sizeof(states[0])] = { 0 };
	json_t *list = gv_vm_records(h), *v;
	double vcpus = 0, memory = 0;
	size_t i;

	json_array_foreach(list, i, v) {
		int s = gv_vmstate_parse(json_string_value(json_object_get(v, "state")));
		for (size_t k = 0; k < sizeof(states) / sizeof(states[0]); k++)
			if ((int)states[k] == s)
				n[k]++;
		if (s == GV_VM_RUNNING || s == GV_VM_PAUSED) {
			vcpus += (double)json_integer_value(json_object_get(v, "vcpus"));
			memory += (double)json_integer_value(json_object_get(v, "memory_mib")) *
				  1048576.0;
		}
	}
	json_decref(list);
	for (size_t k = 0; k < sizeof(states) / sizeof(states[0]); k++)
		gv_metrics_gauge(b, "gridvm_vms", "VMs on this host, by state.", n[k], "state",
				 gv_vmstate_name(states[k]), NULL);
	gv_metrics_gauge(b, "gridvm_vms_vcpus", "vCPUs of the VMs running or paused on this host.",
			 vcpus, NULL);
	gv_metrics_gauge(b, "gridvm_vms_memory_bytes",
			 "Memory of the VMs running or paused on this host.", memory, NULL);
}

static void stores(gv_host *h, gv_metrics_buf *b)
{
	static const char mig_help[] = "VMs on this host whose last migration is in this "
				       "phase (done, aborted, or one on its way).";
	json_t *images = gv_image_list(gv_host_datadir(h)), *ckpts = gv_checkpoint_list(h, NULL);
	json_t *migs = gv_migrate_status(h), *phases = json_object(), *v;
	double bytes = 0;
	const char *k;
	size_t i;

	json_array_foreach(images, i, v)
		bytes += (double)json_integer_value(json_object_get(v, "size"));
	gv_metrics_gauge(b, "gridvm_images", "Images this host holds.",
			 (double)json_array_size(images), NULL);
	gv_metrics_gauge(b, "gridvm_images_bytes", "Size of the image files this host holds.",
			 bytes, NULL);
	gv_metrics_gauge(b, "gridvm_checkpoints", "Checkpoints stored on this host (all VMs).",
			 (double)json_array_size(ckpts), NULL);
	json_array_foreach(migs, i, v) {
		const char *p = json_string_value(json_object_get(v, "phase"));
		if (p)
			json_object_set_new(phases, p, json_integer(json_integer_value(
								json_object_get(phases, p)) + 1));
	}
	json_object_foreach(phases, k, v)
		gv_metrics_gauge(b, "gridvm_migrations",
				 mig_help,
				 (double)json_integer_value(v), "phase", k, NULL);
	if (!json_object_size(phases)) /* the family is there even before any migration */
		gv_metrics_gauge(b, "gridvm_migrations",
				 mig_help,
				 0, "phase", "done", NULL);
	json_decref(images);
	json_decref(ckpts);
	json_decref(migs);
	json_decref(phases);
}

void gv_agent_metrics(void *host, gv_metrics_buf *b)
{
	gv_host *h = host;

	vms(h, b);
	gv_metrics_gauge(b, "gridvm_host_cpus", "Online CPUs of this host.",
			 (double)sysconf(_SC_NPROCESSORS_ONLN), NULL);
	gv_metrics_gauge(b, "gridvm_host_memory_bytes", "Physical memory of this host.",
			 (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE), NULL);
	gv_metrics_gauge(b, "gridvm_host_load1", "Load average of this host over 1 minute.",
			 gv_load1(), NULL);
	stores(h, b);
}
