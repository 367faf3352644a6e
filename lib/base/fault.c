/* SPDX-License-Identifier: MIT */
/* fault.c - GRIDVM_FAULT: named fault-injection points (see fault.h). */
#include <gridvm/base/fault.h>

#include <errno.h>
#include <fnmatch.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum fault_kind { FAULT_HOLD, FAULT_FAIL, FAULT_KILL };

struct fault {
	char point[96];
	enum fault_kind kind;
	double secs;	  /* hold */
	unsigned nth;	  /* 0: every time */
	unsigned reached; /* under fault_mu */
};

#define FAULT_MAX 16
static struct fault faults[FAULT_MAX];
static int nfaults = -1; /* -1: not parsed yet */
static pthread_mutex_t fault_mu = PTHREAD_MUTEX_INITIALIZER;

/* One "POINT=ACTION[@N]" item; false if malformed (it is then ignored,
 * with a line on stderr: a test that mistypes a point must see why). */
static bool fault_parse_one(char *item, struct fault *f)
{
	char *eq = strchr(item, '='), *at, *end;

	memset(f, 0, sizeof(*f));
	if (!eq || eq == item || (size_t)(eq - item) >= sizeof(f->point))
		return false;
	memcpy(f->point, item, eq - item);
	char *act = eq + 1;
	if ((at = strchr(act, '@'))) {
		*at = '\0';
		unsigned long n = strtoul(at + 1, &end, 10);
		if (*end || n == 0)
			return false;
		f->nth = n;
	}
	if (!strcmp(act, "fail")) {
		f->kind = FAULT_FAIL;
	} else if (!strcmp(act, "kill")) {
		f->kind = FAULT_KILL;
	} else if (!strncmp(act, "hold:", 5)) {
		f->kind = FAULT_HOLD;
		f->secs = strtod(act + 5, &end);
		if (end == act + 5 || *end || f->secs < 0)
			return false;
	} else {
		return false;
	}
	return true;
}

/* Call with fault_mu held. */
static void fault_parse(void)
{
	const char *env = getenv("GRIDVM_FAULT");
	char *copy, *save = NULL, *item;

	nfaults = 0;
	if (!env || !*env || !(copy = strdup(env)))
		return;
	for (item = strtok_r(copy, ";,", &save); item; item = strtok_r(NULL, ";,", &save)) {
		if (nfaults == FAULT_MAX || !fault_parse_one(item, &faults[nfaults])) {
			fprintf(stderr, "gridvm-fault: ignoring '%s' in GRIDVM_FAULT\n", item);
			continue;
		}
		nfaults++;
	}
	free(copy);
}

static struct fault *fault_find(const char *point)
{
	if (nfaults < 0)
		fault_parse();
	for (int i = 0; i < nfaults; i++)
		if (!fnmatch(faults[i].point, point, 0))
			return &faults[i];
	return NULL;
}

bool gv_fault_armed(const char *point)
{
	pthread_mutex_lock(&fault_mu);
	bool armed = fault_find(point) != NULL;
	pthread_mutex_unlock(&fault_mu);
	return armed;
}

int gv_fault(const char *point, gv_err *e)
{
	struct fault f;
	bool fire = false;

	pthread_mutex_lock(&fault_mu);
	struct fault *p = fault_find(point);
	if (p) {
		p->reached++;
		fire = !p->nth || p->reached == p->nth;
		f = *p;
	}
	pthread_mutex_unlock(&fault_mu);
	if (!fire)
		return 0;
	switch (f.kind) {
	case FAULT_HOLD: {
		fprintf(stderr, "gridvm-fault: %s: hold %g s\n", point, f.secs);
		struct timespec ts = { (time_t)f.secs, (long)((f.secs - (time_t)f.secs) * 1e9) };
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
		return 0;
	}
	case FAULT_FAIL:
		fprintf(stderr, "gridvm-fault: %s: fail\n", point);
		return gv_err_set(e, -EIO, "fault injected at %s", point);
	case FAULT_KILL:
		fprintf(stderr, "gridvm-fault: %s: kill\n", point);
		fflush(stderr);
		kill(getpid(), SIGKILL);
		abort();
	}
	return 0;
}

void gv_fault_reset(void)
{
	pthread_mutex_lock(&fault_mu);
	nfaults = -1;
	pthread_mutex_unlock(&fault_mu);
}
