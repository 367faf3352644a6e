/* SPDX-License-Identifier: MIT */
/* fuzz-jobio.c - libFuzzer harness for the output disk's manifest, which
 * the guest writes (untrusted): any bytes give a well-formed answer. */
#include <gridvm/vmm/jobio.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* as on the disk: not NUL-terminated when it fills its space */
	char *buf = malloc(size ? size : 1);
	json_t *m, *o;
	size_t i;

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	m = gv_jobio_manifest_parse(buf, size);
	if (!m || !json_is_boolean(json_object_get(m, "collected")))
		abort();
	if (json_is_true(json_object_get(m, "collected")) &&
	    json_integer_value(json_object_get(m, "tar_bytes")) < 1024)
		abort();
	json_array_foreach(json_object_get(m, "outputs"), i, o)
		if (!json_string_value(json_object_get(o, "path")) ||
		    !json_string_value(json_object_get(o, "status")))
			abort();
	json_decref(m);
	free(buf);
	return 0;
}
