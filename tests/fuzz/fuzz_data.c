/* fuzz_data.c - libFuzzer target for the DATA decoder. Checks that decoding does not depend on
 * how the input is split into reads (whole, byte by byte, and in chunks chosen by the input),
 * and that a normalised message, stuffed again for the backend, decodes to itself with no bare
 * CR/LF: what we forward can never be framed differently downstream. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

struct run {
	char *out;
	size_t outlen, consumed;
	unsigned errors;
	bool done;
};

/* Decode in, with chunk sizes from seed (0: everything at once, 1: byte by byte, other: chunks
 * of 1-13 octets from a small LCG). */
static void decode(enum data_bare_policy pol, size_t max_line, const char *in, size_t len,
		   unsigned seed, struct run *r)
{
	struct smtp_data_decoder d;
	char *buf = malloc(2 * len + 4);
	r->out = malloc(2 * len + 4);
	r->outlen = r->consumed = 0;
	smtp_data_init(&d, pol, max_line);
	while (r->consumed < len && !d.done) {
		size_t left = len - r->consumed, chunk = left, olen = 0;
		if (seed == 1) {
			chunk = 1;
		} else if (seed != 0) {
			seed = seed * 1103515245u + 12345u;
			chunk = 1 + (seed >> 16) % 13;
			chunk = chunk < left ? chunk : left;
		}
		size_t used = smtp_data_decode(&d, in + r->consumed, chunk, buf, 2 * chunk + 4, &olen);
		CHECK(used == chunk || (d.done && used < chunk));
		CHECK(r->outlen + olen <= 2 * len + 4);
		memcpy(r->out + r->outlen, buf, olen);
		r->outlen += olen;
		r->consumed += used;
	}
	CHECK(d.octets == r->outlen);
	r->errors = d.errors;
	r->done = d.done;
	free(buf);
}

static void same(const struct run *a, const struct run *b)
{
	CHECK(a->outlen == b->outlen && memcmp(a->out, b->out, a->outlen) == 0);
	CHECK(a->consumed == b->consumed && a->errors == b->errors && a->done == b->done);
}

/* A message decoded with NORMALISE, stuffed and terminated, decodes to itself, bare-free. */
static void round_trip(const struct run *r, size_t max_line)
{
	bool bol = true;
	char *wire = malloc(2 * r->outlen + 3);
	size_t n = smtp_data_stuff(r->out, r->outlen, wire, &bol);
	CHECK(bol || r->outlen == 0 || !r->done);
	memcpy(wire + n, ".\r\n", 3);
	struct run back;
	decode(DATA_BARE_REJECT, max_line, wire, n + 3, 0, &back);
	CHECK(back.done && back.consumed == n + 3);
	CHECK((back.errors & (DATA_ERR_BARE_CR | DATA_ERR_BARE_LF)) == 0);
	CHECK(back.outlen == r->outlen && memcmp(back.out, r->out, r->outlen) == 0);
	free(back.out);
	free(wire);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	enum data_bare_policy pol = (data[0] & 1) ? DATA_BARE_NORMALISE : DATA_BARE_REJECT;
	size_t max_line = (size_t)(data[0] >> 1) + 3;
	unsigned seed = (unsigned)data[1] | 2u;
	const char *in = (const char *)data + 2;
	size_t len = size - 2;
	struct run whole, bytes, chunks;

	decode(pol, max_line, in, len, 0, &whole);
	decode(pol, max_line, in, len, 1, &bytes);
	decode(pol, max_line, in, len, seed, &chunks);
	same(&whole, &bytes);
	same(&whole, &chunks);
	if (whole.done) {
		/* only <CRLF>.<CRLF> (or "." CRLF at the very start) ends the data */
		CHECK(whole.consumed >= 3 && memcmp(in + whole.consumed - 3, ".\r\n", 3) == 0);
		CHECK(whole.consumed == 3 ||
		      (whole.consumed >= 5 && memcmp(in + whole.consumed - 5, "\r\n", 2) == 0));
		if (pol == DATA_BARE_NORMALISE)
			round_trip(&whole, 1000);
	}
	free(whole.out);
	free(bytes.out);
	free(chunks.out);
	return 0;
}
