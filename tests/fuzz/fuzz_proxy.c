/* fuzz_proxy.c - libFuzzer target for proxy_parse() and cidr_parse(). Besides not crashing: a
 * header is never longer than the input nor the bounds, every prefix of a whole header is
 * incomplete (so a reader never consumes client data), and a result is the same on a copy. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cidr.h"
#include "proxy_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_header h, h2;
	enum proxy_parse_result r = proxy_parse(data, size, &h);

	if (r == PROXY_DONE) {
		CHECK(h.len > 0 && h.len <= size && h.len <= PROXY_HEADER_MAX);
		CHECK(h.version == 1 || h.version == 2);
		CHECK(h.local || h.src.ss_family == AF_INET || h.src.ss_family == AF_INET6);
		CHECK(proxy_parse(data, h.len, &h2) == PROXY_DONE && h2.len == h.len);
		for (size_t i = 0; i < h.len; i++)
			CHECK(proxy_parse(data, i, &h2) == PROXY_INCOMPLETE);
	} else if (r == PROXY_INCOMPLETE) {
		CHECK(size < PROXY_HEADER_MAX);
	}
	struct cidr c;
	const char *why;
	if (cidr_parse((const char *)data, size, &c, &why) == 0)
		CHECK((c.family == AF_INET && c.bits <= 32) || (c.family == AF_INET6 && c.bits <= 128));
	return 0;
}
