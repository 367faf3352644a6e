/* SPDX-License-Identifier: MIT */
/*
 * fault.h - named fault-injection points for the tests, off unless set.
 *
 * Code at a place where a test wants to stop, fail or die calls
 * gv_fault("layer.module.point", e). Nothing happens unless the process
 * was started with GRIDVM_FAULT naming that point:
 *
 *   GRIDVM_FAULT="POINT=ACTION[@N][;POINT=ACTION[@N]...]"
 *
 * POINT is a name or an fnmatch(3) pattern ("migrate.src.*"). ACTION is
 * hold:SECONDS (sleep there, after printing "gridvm-fault: POINT: hold
 * SECONDS s" to stderr, a line a test can wait for), fail (the call
 * returns -EIO with "fault injected at POINT") or kill (SIGKILL to the
 * whole process, as a crash would). @N fires only on the N-th time the
 * point is reached (1-based), else every time. The points that exist are
 * listed in docs/fault-injection.md.
 */
#ifndef GRIDVM_BASE_FAULT_H
#define GRIDVM_BASE_FAULT_H

#include <gridvm/base/err.h>
#include <stdbool.h>

/* Reach @point. @return 0 (also after a hold), or -EIO with @e set when
 * the point is told to fail. Never returns when told to kill. */
int gv_fault(const char *point, gv_err *e) __attribute__((warn_unused_result));

/* Is any fault configured for @point (without reaching it)? */
bool gv_fault_armed(const char *point);

/* Forget the parsed configuration and read GRIDVM_FAULT again (tests). */
void gv_fault_reset(void);

#endif
