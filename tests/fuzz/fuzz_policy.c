/* fuzz_policy.c - libFuzzer target for the Postfix policy protocol (policyd_proto.c): the input,
 * split at a point the first byte chooses, is fed as a connection would feed it, request after
 * request; each complete request is decoded against a small configuration and answered with
 * each kind of decision. Besides not crashing, checks what the connection relies on: feeding
 * never takes more than it is given, a request never holds more than the limits, and every
 * action is one "action=" line followed by the empty line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policyd_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static struct bs_config *fuzz_config(void)
{
	static struct bs_config *cfg;
	static const char conf[] = "[gateway]\nlisten =\npolicy_listen = 127.0.0.1:0\ncache = memory:\n"
				   "[domain example.test]\ndeliver = 127.0.0.1:25\n";
	if (cfg == NULL) {
		struct config_errors errs = { 0 };
		cfg = config_load_buffer("fuzz.conf", conf, strlen(conf), &errs);
		CHECK(cfg != NULL);
	}
	return cfg;
}

static void check_action(const char *out, size_t n)
{
	CHECK(n == strlen(out) && n >= 9);
	CHECK(strncmp(out, "action=", 7) == 0);
	CHECK(out[n - 1] == '\n' && out[n - 2] == '\n');
	CHECK(memchr(out, '\n', n) == out + n - 2); /* one line, then the empty one */
	CHECK(memchr(out, '\r', n) == NULL);
}

static void answer(const struct engine_request *er, const char *seed, size_t seedlen)
{
	static const enum check_result results[] = { CHECK_NEUTRAL, CHECK_ACCEPT, CHECK_REJECT, CHECK_DEFER };
	struct engine_decision d;
	static char headers[ENGINE_HEADERS_MAX], text[ENGINE_TEXT_MAX];
	char out[ENGINE_TEXT_MAX + ENGINE_HEADERS_MAX + 64];

	for (size_t i = 0; i < sizeof results / sizeof results[0]; i++) {
		memset(&d, 0, sizeof d);
		d.stage = er->stage;
		d.result = results[i];
		d.code = i == 2 ? 550 : 451;
		memcpy(d.enhanced, i == 2 ? "5.1.1" : "4.4.3", 6);
		/* text and headers from the input: any bytes a check might let through */
		size_t n = seedlen < sizeof text - 1 ? seedlen : sizeof text - 1;
		memcpy(text, seed, n);
		text[n] = '\0';
		d.text = text;
		d.log = d.headers = "";
		if (i == 0) {
			n = seedlen < sizeof headers - 1 ? seedlen : sizeof headers - 1;
			memcpy(headers, seed, n);
			headers[n] = '\0';
			d.headers = headers;
		}
		check_action(out, policy_action_format(&d, out, sizeof out));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct policy_request req;
	const struct bs_config *cfg = fuzz_config();
	size_t split = size ? data[0] % (size + 1) : 0, off = 0;

	policy_request_reset(&req);
	while (off < size) {
		size_t avail = (off < split ? split : size) - off;
		size_t used = 0;
		const char *why = NULL;
		enum policy_feed f = policy_request_feed(&req, (const char *)data + off, avail, &used, &why);
		CHECK(used <= avail);
		CHECK(req.len <= POLICY_REQUEST_MAX && req.n <= POLICY_ATTRS_MAX);
		if (f == POLICY_FEED_BAD) {
			CHECK(why != NULL);
			return 0;
		}
		off += used;
		if (f == POLICY_FEED_MORE) {
			CHECK(used == avail);
			continue;
		}
		for (size_t i = 0; i < req.n; i++) {
			const char *name = req.buf + req.attrs[i].name, *value = req.buf + req.attrs[i].value;
			CHECK(strlen(name) >= 1 && strlen(name) <= POLICY_NAME_MAX && strlen(value) <= POLICY_VALUE_MAX);
			CHECK(strchr(name, '=') == NULL);
			CHECK(policy_request_get(&req, name) != NULL);
		}
		struct engine_request er;
		struct policy_query q;
		policy_request_decode(&req, cfg, "FUZZ", &er, &q);
		CHECK(q.ask || q.why != NULL);
		CHECK(!er.has_rcpt || er.rcpt->domain_len <= SMTP_DOMAIN_MAX);
		CHECK(strlen(er.helo) <= SMTP_DOMAIN_MAX);
		answer(&er, (const char *)data, size);
		policy_request_reset(&req);
	}
	return 0;
}
