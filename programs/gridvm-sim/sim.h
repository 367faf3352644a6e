/* SPDX-License-Identifier: MIT */
/* sim.h - gridvm-sim's verbs and the little they share. */
#ifndef GRIDVM_SIM_PROGRAM_H
#define GRIDVM_SIM_PROGRAM_H

#include <stdbool.h>
#include <stdint.h>

int cmd_generate(int argc, char **argv);
int cmd_run(int argc, char **argv);

/* One line on stderr: "gridvm-sim: ...". @return 2 (bad usage or input). */
int sim_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A whole number in [@min, @max], or a duration ("600", "10m", "1h", "2d") in
 * seconds; the option's name for the error. @return 0 or -1 (said). */
int sim_uint(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out);
int sim_seconds(const char *opt, const char *s, double *out);
int sim_real(const char *opt, const char *s, double min, double max, double *out);

#endif
