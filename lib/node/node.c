/* SPDX-License-Identifier: MIT */
/*
 * node.c - the node layer put together: the host context (host.c) and
 * the modules that add to its life, registered once, bottom-up. This is
 * the only place that names them all; host.c calls none of them.
 */
#include "checkpoint_internal.h"
#include "dirty_internal.h"
#include "migrate_internal.h"

#include <gridvm/node/host.h>

int gv_host_open(const char *datadir, gv_host **out, gv_err *e)
{
	static const host_module *const modules[] = {
		&host_dirty_module,
		&host_checkpoint_module,
		&host_migrate_module,
	};
	gv_host *h = NULL;
	int r = host_open(datadir, &h, e);

	for (size_t i = 0; r == 0 && i < sizeof(modules) / sizeof(modules[0]); i++)
		if ((r = host_module_add(h, modules[i])) < 0)
			gv_err_set(e, r, "too many host modules (%s)", modules[i]->name);
	if (r < 0) {
		gv_host_close(h);
		return r;
	}
	*out = h;
	return 0;
}
