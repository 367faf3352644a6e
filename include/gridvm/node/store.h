/* SPDX-License-Identifier: MIT */
/*
 * store.h - the agent's persistent VM records, in SQLite.
 *
 * One row per VM: its definition (JSON), its state, the QEMU pid while it
 * runs, the job's exit code, the state file of a saved VM and the last
 * error. The database survives agent restarts; it is what lets a new agent
 * find the VMs the previous one started.
 */
#ifndef GRIDVM_STORE_H
#define GRIDVM_STORE_H

#include <gridvm/vmm/vmdef.h>
#include <stdint.h>

typedef struct gv_store gv_store;

typedef enum gv_vmstate {
	GV_VM_DEFINED,
	GV_VM_RUNNING,
	GV_VM_PAUSED,
	GV_VM_SAVED,
	GV_VM_STOPPED,
	GV_VM_FAILED,
} gv_vmstate;

const char *gv_vmstate_name(gv_vmstate s);
int gv_vmstate_parse(const char *s); /* -EINVAL if unknown */

typedef struct gv_vmrec {
	gv_vmdef *def;       /* owned */
	gv_vmstate state;
	int pid;             /* QEMU's pid while running or paused */
	int exit_code;       /* job exit code, -1 if none */
	char *state_file;    /* saved state, or NULL */
	char *error;         /* last failure, or NULL */
	int64_t created, started;
} gv_vmrec;

void gv_vmrec_free(gv_vmrec *r);
json_t *gv_vmrec_to_json(const gv_vmrec *r);

/* Open (creating if needed) the database at @path. */
int gv_store_open(const char *path, gv_store **out) GV_WUR;
void gv_store_close(gv_store *s);

/* -EEXIST if a VM of that name exists. */
int gv_store_vm_insert(gv_store *s, const gv_vmrec *r) GV_WUR;
int gv_store_vm_update(gv_store *s, const gv_vmrec *r) GV_WUR;
/* -ENOENT if unknown. */
int gv_store_vm_get(gv_store *s, const char *name, gv_vmrec **out) GV_WUR;
int gv_store_vm_delete(gv_store *s, const char *name) GV_WUR;
/* All names, NULL-terminated, sorted; free with gv_strv_free. */
int gv_store_vm_names(gv_store *s, char ***names) GV_WUR;

#endif
