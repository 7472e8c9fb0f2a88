/* fuzz_hdr_filter.c - libFuzzer target for the Authentication-Results filter (hdr_filter.c): the
 * output never depends on how the message is cut into chunks, is never longer than the input,
 * keeps the input's order (it is the input minus whole removed fields), and is the input itself
 * when nothing was removed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hdr_filter.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

struct sink {
	char *buf;
	size_t len, cap;
};

static void sink_write(void *arg, const char *data, size_t len)
{
	struct sink *s = arg;
	CHECK(s->len + len <= s->cap);
	memcpy(s->buf + s->len, data, len);
	s->len += len;
}

static unsigned run(const uint8_t *in, size_t len, unsigned seed, struct sink *out)
{
	static struct hdr_filter f;
	hdr_filter_init(&f, "gw.example.test");
	out->len = 0;
	for (size_t i = 0; i < len;) {
		size_t n = len - i;
		if (seed) {
			seed = seed * 1103515245u + 12345u;
			size_t c = 1 + (seed >> 16) % 17;
			n = c < n ? c : n;
		}
		hdr_filter_feed(&f, (const char *)in + i, n, sink_write, out);
		i += n;
	}
	hdr_filter_end(&f, sink_write, out);
	return f.removed;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sink a = { malloc(size + 1), 0, size }, b = { malloc(size + 1), 0, size };
	unsigned ra = run(data, size, 0, &a), rb = run(data, size, 7, &b);

	CHECK(ra == rb && a.len == b.len && memcmp(a.buf, b.buf, a.len) == 0);
	if (ra == 0)
		CHECK(a.len == size && memcmp(a.buf, data, size) == 0);
	/* a subsequence of the input */
	size_t j = 0;
	for (size_t i = 0; i < size && j < a.len; i++)
		if (data[i] == (uint8_t)a.buf[j])
			j++;
	CHECK(j == a.len);
	free(a.buf);
	free(b.buf);
	return 0;
}
