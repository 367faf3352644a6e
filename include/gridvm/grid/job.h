/* SPDX-License-Identifier: MIT */
/*
 * job.h - a grid job: what a user submits and what the controller keeps.
 *
 * A job is a command in a VM image with resources, requirements and rank
 * expressions over host attributes, a priority, a walltime estimate, a
 * checkpoint policy, and input and output files. The controller keeps it
 * as one JSON object (the record) in its store; this module validates a
 * submission into a record and names the states. docs/grid.md lists the
 * record's fields.
 */
#ifndef GRIDVM_GRID_JOB_H
#define GRIDVM_GRID_JOB_H

#include <gridvm/base/err.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum gv_job_state {
	GV_JOB_S_QUEUED,    /* waiting for a host */
	GV_JOB_S_SCHEDULED, /* bound to a host, which has not started it yet */
	GV_JOB_S_STAGING,   /* its host fetches the image and the inputs */
	GV_JOB_S_RUNNING,
	GV_JOB_S_MIGRATING, /* moving to another host */
	GV_JOB_S_COMPLETED, /* the command exited (any exit code) */
	GV_JOB_S_FAILED,    /* it could not run, or its VM died */
	GV_JOB_S_CANCELLED,
} gv_job_state;

const char *gv_job_state_name(gv_job_state s);
/* -EINVAL for an unknown name. */
int gv_job_state_parse(const char *name, gv_job_state *out);
/* completed, failed or cancelled: nothing more happens to it. */
bool gv_job_state_final(gv_job_state s);
/* The state a record is in (QUEUED if it does not say). */
gv_job_state gv_job_record_state(const json_t *rec);

/* Validate a submission (the request the CLI sends) into a new job record
 * with id @id, user @uid, submitted at @now (s), state queued. Sizes may
 * be numbers (bytes) or strings ("2G"), durations numbers (s) or strings
 * ("90m"); requirements and rank are parsed (a syntax error names its
 * position). @return 0 with *@out a new reference, or -EINVAL with @e
 * saying which field is wrong and why; nothing is half-made. */
int gv_job_from_submit(const json_t *req, uint64_t id, uint32_t uid, double now, json_t **out,
		       gv_err *e) __attribute__((warn_unused_result));

/* The agent API's VM definition for running @rec as VM @vm_name (the
 * image, resources, command and checkpoint policy). New reference. */
json_t *gv_job_vmdef(const json_t *rec, const char *vm_name);

/* "job-ID", the VM name of a job on its host, into @buf. */
const char *gv_job_vm_name(uint64_t id, char *buf, size_t len);
/* The job id of a VM name "job-ID", or 0 if it is not one. */
uint64_t gv_job_id_of_vm(const char *vm);

#endif
