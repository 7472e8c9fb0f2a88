/* fuzz_spf_eval.c - libFuzzer target for the whole SPF evaluation over a fuzzed zone. The first
 * byte picks synchronous or later (FIFO/LIFO) DNS answers, the client's family and the
 * identity; the rest is zone lines "NAME TYPE DATA" (A AAAA MX PTR TXT CNAME TIMEOUT). The check
 * is for user@example.com. Checks: one callback, a result in range, an explanation exactly for
 * fail, counts within the limits, no query left behind (and ASan: no leak, no overrun). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/spf_zone.h"
#include "spf_eval.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

struct seen {
	int calls;
};

static void on_answer(void *arg, const struct spf_answer *a)
{
	struct seen *s = arg;
	s->calls++;
	CHECK(a->result >= SPF_NONE && a->result <= SPF_PERMERROR);
	CHECK((a->explanation != NULL) == (a->result == SPF_FAIL));
	CHECK(a->mechanism != NULL && a->domain != NULL && a->identity_value != NULL);
	CHECK((a->problem != NULL) == (a->result == SPF_TEMPERROR || a->result == SPF_PERMERROR));
	CHECK(a->dns_terms <= SPF_LIMIT_DNS_TERMS + 1 && a->void_lookups <= SPF_LIMIT_VOID + 1);
	CHECK(a->dns_queries <= 400 && a->nrecords <= SPF_RECORDS_MAX);
	if (a->explanation)
		CHECK(strlen(a->explanation) <= SPF_EXP_MAX);
	for (size_t i = 0; i < a->nrecords; i++)
		CHECK(strlen(a->records[i].text) <= SPF_RECORD_TEXT_MAX);
}

static int type_of(const char *t)
{
	static const char *const names[] = {"A", "AAAA", "MX", "PTR", "TXT"};
	for (int i = 0; i < 5; i++)
		if (strcmp(t, names[i]) == 0)
			return i + 1;
	if (strcmp(t, "CNAME") == 0)
		return ZONE_CNAME;
	if (strcmp(t, "TIMEOUT") == 0)
		return ZONE_TIMEOUT;
	return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 20000)
		return 0;
	struct zone z;
	memset(&z, 0, sizeof(z));
	z.async = data[0] & 1;
	z.lifo = data[0] & 2;
	char *text = malloc(size);
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	for (char *line, *rest = text; (line = strsep(&rest, "\n")) != NULL;) {
		char *name = strsep(&line, " "), *type = line ? strsep(&line, " ") : NULL;
		int t = type ? type_of(type) : -1;
		if (t < 0 || !name[0])
			continue;
		const char *d = line ? line : "";
		zone_add(&z, name, t, d, strlen(d));
	}
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	if (data[0] & 4) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		inet_pton(AF_INET6, "2001:db8::1", &s6->sin6_addr);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		inet_pton(AF_INET, "192.0.2.1", &s4->sin_addr);
	}
	struct spf_request req = {
		.client = (struct sockaddr *)&ss, .sender = "user@example.com", .helo = "helo.example.com",
		.identity = (data[0] & 8) ? SPF_ID_HELO : SPF_ID_MAILFROM, .now = 1,
	};
	struct seen s = {0};
	struct spf_dns dns = zone_dns(&z);
	struct spf_check *c = spf_check_start(&dns, &req, on_answer, &s);
	if (c && (data[0] & 16)) { /* cancel at once: no callback, nothing leaks */
		spf_check_cancel(c);
		zone_run(&z);
		CHECK(s.calls == 0);
	} else {
		zone_run(&z);
		CHECK(s.calls == 1);
	}
	CHECK(z.queue == NULL);
	zone_free(&z);
	free(text);
	return 0;
}
