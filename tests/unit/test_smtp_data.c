/* test_smtp_data.c - the DATA decoder: only <CRLF>.<CRLF> ends a message (every smuggling variant
 * is tried), bare CR/LF refused or normalised, dot-unstuffing, line length, and the same result
 * for every way of splitting the input. Also dot-stuffing for output and the round trip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp_data.h"

struct result {
	char out[4096];
	size_t outlen;
	size_t consumed;
	unsigned errors;
	unsigned bare;
	uint64_t octets;
	bool done;
};

/* Decode in, fed in chunks of the sizes given by next_chunk (0 = all at once). */
static void decode(enum data_bare_policy pol, size_t max_line, const char *in, size_t len,
		   size_t (*next_chunk)(size_t pos, size_t left), struct result *r)
{
	struct smtp_data_decoder d;
	char buf[2 * 4096 + 4];

	memset(r, 0, sizeof(*r));
	smtp_data_init(&d, pol, max_line);
	while (r->consumed < len && !d.done) {
		size_t left = len - r->consumed;
		size_t chunk = next_chunk != NULL ? next_chunk(r->consumed, left) : left;
		size_t olen = 0;
		size_t used = smtp_data_decode(&d, in + r->consumed, chunk, buf, 2 * chunk + 4, &olen);
		assert_true(used == chunk || d.done);
		assert_true(r->outlen + olen <= sizeof(r->out));
		memcpy(r->out + r->outlen, buf, olen);
		r->outlen += olen;
		r->consumed += used;
	}
	r->errors = d.errors;
	r->bare = d.bare;
	r->octets = d.octets;
	r->done = d.done;
	assert_int_equal(r->octets, r->outlen);
}

static size_t chunk_one(size_t pos, size_t left)
{
	(void)pos;
	(void)left;
	return 1;
}

static size_t chunk_random(size_t pos, size_t left)
{
	(void)pos;
	size_t n = 1 + (size_t)(rand() % 7);
	return n < left ? n : left;
}

static size_t split_at;
static size_t chunk_split(size_t pos, size_t left)
{
	return pos < split_at && split_at - pos < left ? split_at - pos : left;
}

static void expect_same(const struct result *a, const struct result *b)
{
	assert_int_equal(a->outlen, b->outlen);
	assert_memory_equal(a->out, b->out, a->outlen);
	assert_int_equal(a->consumed, b->consumed);
	assert_int_equal(a->errors, b->errors);
	assert_int_equal(a->bare, b->bare);
	assert_int_equal(a->done, b->done);
}

/* Decode whole, byte by byte, split at every position and in random chunks: all must agree. */
static void decode_all_ways(enum data_bare_policy pol, size_t max_line, const char *in, size_t len,
			    struct result *r)
{
	struct result other;
	decode(pol, max_line, in, len, NULL, r);
	decode(pol, max_line, in, len, chunk_one, &other);
	expect_same(r, &other);
	for (split_at = 1; split_at < len; split_at++) {
		decode(pol, max_line, in, len, chunk_split, &other);
		expect_same(r, &other);
	}
	for (int k = 0; k < 20; k++) {
		decode(pol, max_line, in, len, chunk_random, &other);
		expect_same(r, &other);
	}
}

#define DECODE(pol, s, r) decode_all_ways((pol), 1000, (s), sizeof(s) - 1, (r))

static void expect_out(const struct result *r, const char *want)
{
	assert_int_equal(r->outlen, strlen(want));
	assert_memory_equal(r->out, want, r->outlen);
}

static void test_basic(void **state)
{
	struct result r;
	(void)state;
	DECODE(DATA_BARE_REJECT, "Subject: x\r\n\r\nHello\r\n.\r\n", &r);
	assert_true(r.done);
	assert_int_equal(r.errors, 0);
	expect_out(&r, "Subject: x\r\n\r\nHello\r\n");
	/* right after 354 the data starts at a line start: ".\r\n" is an empty message */
	DECODE(DATA_BARE_REJECT, ".\r\n", &r);
	assert_true(r.done);
	expect_out(&r, "");
	DECODE(DATA_BARE_REJECT, "\r\n.\r\n", &r);
	assert_true(r.done);
	expect_out(&r, "\r\n");
	/* what follows the terminator is left for the next command */
	DECODE(DATA_BARE_REJECT, "a\r\n.\r\nQUIT\r\n", &r);
	assert_true(r.done);
	assert_int_equal(r.consumed, 6);
	expect_out(&r, "a\r\n");
	/* not finished yet */
	DECODE(DATA_BARE_REJECT, "a\r\n.\r", &r);
	assert_false(r.done);
	expect_out(&r, "a\r\n");
	/* a decoder that is done takes nothing more */
	struct smtp_data_decoder d;
	char buf[32];
	size_t olen = 99;
	smtp_data_init(&d, DATA_BARE_REJECT, 1000);
	assert_int_equal(smtp_data_decode(&d, ".\r\n", 3, buf, sizeof(buf), &olen), 3);
	assert_true(d.done);
	assert_int_equal(smtp_data_decode(&d, "x\r\n", 3, buf, sizeof(buf), &olen), 0);
	assert_int_equal(olen, 0);
}

static void test_unstuffing(void **state)
{
	struct result r;
	(void)state;
	DECODE(DATA_BARE_REJECT, "..\r\n...x\r\n.y\r\na.b\r\n.\r\n", &r);
	assert_true(r.done);
	assert_int_equal(r.errors, 0);
	expect_out(&r, ".\r\n..x\r\ny\r\na.b\r\n");
	DECODE(DATA_BARE_REJECT, ". \r\n.\r\n", &r);
	assert_true(r.done);
	expect_out(&r, " \r\n");
}

/* True if s holds a CR not followed by LF or an LF not preceded by CR. */
static bool has_bare(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\r' && (i + 1 == len || s[i + 1] != '\n'))
			return true;
		if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
			return true;
	}
	return false;
}

/* Every "almost" terminator, in both policies: none may end the data; the real one after it
 * does. */
static void test_smuggling(void **state)
{
	static const char *const fakes[] = {
		"\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r\n.\r", "\n.\r", "\r.\n",
		"\r\n.\r\r\n", "\r\n.\n\r\n", "\n\r.\r\n", "\r\n .\r\n", "\r\n\0.\r\n",
		"\r\r\n.\n", "\n\n.\n\n", "\r\n..\r\n", "\r\n.\r.\r\n",
	};
	(void)state;
	for (size_t i = 0; i < sizeof(fakes) / sizeof(fakes[0]); i++) {
		char in[128];
		size_t flen = strlen(fakes[i]);
		if (i == 12)
			flen = 5; /* the one with a NUL */
		size_t n = 0;
		memcpy(in + n, "MAIL FROM:<a@b.test>", 20);
		n += 20;
		memcpy(in + n, fakes[i], flen);
		n += flen;
		memcpy(in + n, "RCPT TO:<v@c.test>\r\nDATA", 24);
		n += 24;
		for (int pol = DATA_BARE_REJECT; pol <= DATA_BARE_NORMALISE; pol++) {
			struct result r;
			decode_all_ways((enum data_bare_policy)pol, 1000, in, n, &r);
			if (r.done)
				fail_msg("fake terminator %zu ended the data (policy %d)", i, pol);
			assert_int_equal(r.consumed, n);
			memcpy(in + n, "\r\n.\r\n", 5);
			decode_all_ways((enum data_bare_policy)pol, 1000, in, n + 5, &r);
			assert_true(r.done);
			assert_int_equal(r.consumed, n + 5);
			bool bare = has_bare(fakes[i], flen);
			if (pol == DATA_BARE_REJECT)
				assert_int_equal((r.errors & (DATA_ERR_BARE_CR | DATA_ERR_BARE_LF)) != 0,
						 bare);
			if (pol == DATA_BARE_NORMALISE)
				assert_int_equal(r.errors & (DATA_ERR_BARE_CR | DATA_ERR_BARE_LF), 0);
			/* either way, the session learns that the framing was ambiguous */
			assert_int_equal(r.bare != 0, bare);
		}
	}
}

static void test_bare_reject(void **state)
{
	struct result r;
	(void)state;
	DECODE(DATA_BARE_REJECT, "a\nb\r\n.\r\n", &r);
	assert_true(r.done);
	assert_int_equal(r.errors, DATA_ERR_BARE_LF);
	assert_int_equal(r.bare, DATA_ERR_BARE_LF);
	expect_out(&r, "a\nb\r\n");
	DECODE(DATA_BARE_REJECT, "a\rb\r\n.\r\n", &r);
	assert_true(r.done);
	assert_int_equal(r.errors, DATA_ERR_BARE_CR);
	expect_out(&r, "a\rb\r\n");
	DECODE(DATA_BARE_REJECT, "a\r\r\n.\r\n", &r);
	assert_int_equal(r.errors, DATA_ERR_BARE_CR);
	expect_out(&r, "a\r\r\n");
	/* "\n.\r\n": the LF does not start a line, so the dot is plain text */
	DECODE(DATA_BARE_REJECT, "a\n.\r\n.\r\n", &r);
	assert_true(r.done);
	assert_int_equal(r.consumed, 8);
	expect_out(&r, "a\n.\r\n");
}

static void test_bare_normalise(void **state)
{
	struct result r;
	(void)state;
	DECODE(DATA_BARE_NORMALISE, "a\nb\rc\r\n.\r\n", &r);
	assert_true(r.done);
	assert_int_equal(r.errors, 0);
	assert_int_equal(r.bare, DATA_ERR_BARE_LF | DATA_ERR_BARE_CR);
	expect_out(&r, "a\r\nb\r\nc\r\n");
	DECODE(DATA_BARE_NORMALISE, "a\r\n..b\r\n\0\r\n.\r\n", &r);
	assert_int_equal(r.bare, 0);
	/* a line begun after a normalised ending keeps its leading dot and cannot end the data */
	DECODE(DATA_BARE_NORMALISE, "a\n.\r\nb\r\n.\r\n", &r);
	assert_true(r.done);
	expect_out(&r, "a\r\n.\r\nb\r\n");
	DECODE(DATA_BARE_NORMALISE, "a\n..x\n.\r\n", &r);
	assert_false(r.done);
	expect_out(&r, "a\r\n..x\r\n.\r\n");
	DECODE(DATA_BARE_NORMALISE, "a\r.\r\n.\r\n", &r);
	assert_true(r.done);
	expect_out(&r, "a\r\n.\r\n");
	DECODE(DATA_BARE_NORMALISE, "\n\n", &r);
	expect_out(&r, "\r\n\r\n");
	/* a stuffed dot on a clean line, then a bare CR */
	DECODE(DATA_BARE_NORMALISE, ".\rx\r\n.\r\n", &r);
	assert_true(r.done);
	expect_out(&r, "\r\nx\r\n");
}

static void test_line_length(void **state)
{
	struct result r;
	(void)state;
	decode_all_ways(DATA_BARE_REJECT, 10, "12345678\r\n.\r\n", 13, &r);
	assert_true(r.done);
	assert_int_equal(r.errors, 0);
	decode_all_ways(DATA_BARE_REJECT, 10, "123456789\r\n.\r\n", 14, &r);
	assert_true(r.done);
	assert_int_equal(r.errors, DATA_ERR_LINE_TOO_LONG);
	/* a stuffed dot counts: the line was sent with it */
	decode_all_ways(DATA_BARE_REJECT, 10, "..3456789\r\n.\r\n", 14, &r);
	assert_int_equal(r.errors, DATA_ERR_LINE_TOO_LONG);
	/* a bare LF does not end a line when refused... */
	decode_all_ways(DATA_BARE_REJECT, 10, "12345\n789\r\n.\r\n", 14, &r);
	assert_int_equal(r.errors, DATA_ERR_LINE_TOO_LONG | DATA_ERR_BARE_LF);
	/* ...but does when normalised */
	decode_all_ways(DATA_BARE_NORMALISE, 10, "12345\n789\r\n.\r\n", 14, &r);
	assert_int_equal(r.errors, 0);
	decode_all_ways(DATA_BARE_NORMALISE, 10, "12345\r12345678\r\n.\r\n", 19, &r);
	assert_int_equal(r.errors, 0);
	decode_all_ways(DATA_BARE_NORMALISE, 10, "12345\r123456789\r\n.\r\n", 20, &r);
	assert_int_equal(r.errors, DATA_ERR_LINE_TOO_LONG);
}

static void test_nul(void **state)
{
	struct result r;
	(void)state;
	decode_all_ways(DATA_BARE_REJECT, 1000, "a\0b\r\n.\r\n", 8, &r);
	assert_true(r.done);
	assert_int_equal(r.errors, DATA_ERR_NUL);
	assert_int_equal(r.outlen, 5);
}

/* Random inputs over the alphabet that matters: all splits agree. */
static void test_random_chunking(void **state)
{
	static const char alphabet[] = "\r\n.ab";
	char in[64];
	(void)state;
	srand(1234);
	for (int k = 0; k < 300; k++) {
		size_t len = 1 + (size_t)(rand() % (int)sizeof(in));
		for (size_t i = 0; i < len; i++)
			in[i] = alphabet[rand() % 5];
		struct result r;
		decode_all_ways((enum data_bare_policy)(k & 1), 8, in, len, &r);
	}
}

static void test_stuff(void **state)
{
	char out[64];
	bool bol = true;
	(void)state;
	size_t n = smtp_data_stuff(".a\r\n..\r\nb.c\r\n.", 14, out, &bol);
	assert_int_equal(n, 17);
	assert_memory_equal(out, "..a\r\n...\r\nb.c\r\n..", 17);
	assert_false(bol);
	/* state carries across calls */
	bol = true;
	n = smtp_data_stuff("x\r\n", 3, out, &bol);
	assert_true(bol);
	n = smtp_data_stuff(".", 1, out, &bol);
	assert_int_equal(n, 2);
	assert_memory_equal(out, "..", 2);
}

/* Content -> stuff -> append terminator -> decode gives the content back. */
static void test_round_trip(void **state)
{
	static const char *const bodies[] = {
		"", "\r\n", ".\r\n", "..\r\n", "a\r\n.\r\n.\r\nb\r\n", ".x\r\n\r\n.\r\n",
	};
	(void)state;
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		char wire[128];
		bool bol = true;
		size_t n = smtp_data_stuff(bodies[i], strlen(bodies[i]), wire, &bol);
		memcpy(wire + n, ".\r\n", 3);
		struct result r;
		decode_all_ways(DATA_BARE_REJECT, 1000, wire, n + 3, &r);
		assert_true(r.done);
		assert_int_equal(r.errors, 0);
		expect_out(&r, bodies[i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_unstuffing),
		cmocka_unit_test(test_smuggling),
		cmocka_unit_test(test_bare_reject),
		cmocka_unit_test(test_bare_normalise),
		cmocka_unit_test(test_line_length),
		cmocka_unit_test(test_nul),
		cmocka_unit_test(test_random_chunking),
		cmocka_unit_test(test_stuff),
		cmocka_unit_test(test_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
