/* spf_eval_bench.c - the SPF evaluator alone: evaluations per second and CPU per evaluation when
 * every DNS answer is already cached (the zone double of the unit tests answers from memory,
 * from inside the query call, as a warm cache does). Records shaped like the big senders'
 * (include chains, ip4/ip6 ranges, mx, a, exists with macros). Not a test: prints figures.
 *   spf_eval_bench [SECONDS]  */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "../tests/unit/spf_zone.h"
#include "spf_eval.h"

static void add(struct zone *z, const char *name, int type, const char *data)
{
	zone_add(z, name, type, data, strlen(data));
}

static void build_zone(struct zone *z)
{
	/* a big provider: three levels of include, 30 ranges, then ~all */
	add(z, "bigmail.test", SPF_DNS_TXT, "v=spf1 include:_spf.bigmail.test ~all");
	add(z, "_spf.bigmail.test", SPF_DNS_TXT,
	    "v=spf1 include:_netblocks.bigmail.test include:_netblocks2.bigmail.test include:_netblocks3.bigmail.test ~all");
	add(z, "_netblocks.bigmail.test", SPF_DNS_TXT,
	    "v=spf1 ip4:35.190.247.0/24 ip4:64.233.160.0/19 ip4:66.102.0.0/20 ip4:66.249.80.0/20 ip4:72.14.192.0/18 "
	    "ip4:74.125.0.0/16 ip4:108.177.8.0/21 ip4:173.194.0.0/16 ip4:209.85.128.0/17 ip4:216.58.192.0/19 "
	    "ip4:216.239.32.0/19 ~all");
	add(z, "_netblocks2.bigmail.test", SPF_DNS_TXT,
	    "v=spf1 ip6:2001:4860:4000::/36 ip6:2404:6800:4000::/36 ip6:2607:f8b0:4000::/36 ip6:2800:3f0:4000::/36 "
	    "ip6:2a00:1450:4000::/36 ip6:2c0f:fb50:4000::/36 ~all");
	add(z, "_netblocks3.bigmail.test", SPF_DNS_TXT,
	    "v=spf1 ip4:172.217.0.0/19 ip4:172.217.32.0/20 ip4:172.217.128.0/19 ip4:172.217.160.0/20 "
	    "ip4:172.217.192.0/19 ip4:172.253.56.0/21 ip4:172.253.112.0/20 ip4:108.177.96.0/19 ip4:35.191.0.0/16 "
	    "ip4:130.211.0.0/22 ~all");
	/* a small company: mx and a, then -all */
	add(z, "company.test", SPF_DNS_TXT, "v=spf1 mx a:out.company.test -all");
	add(z, "company.test", SPF_DNS_MX, "10 mx1.company.test");
	add(z, "company.test", SPF_DNS_MX, "20 mx2.company.test");
	add(z, "mx1.company.test", SPF_DNS_A, "198.51.100.10");
	add(z, "mx2.company.test", SPF_DNS_A, "198.51.100.11");
	add(z, "out.company.test", SPF_DNS_A, "198.51.100.25");
	/* a macro user */
	add(z, "macro.test", SPF_DNS_TXT, "v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} -all");
	add(z, "25.100.51.198.user._spf.macro.test", SPF_DNS_A, "127.0.0.2");
}

struct pick {
	const char *ip, *sender;
};

static const struct pick picks[] = {
	{"209.85.220.41", "someone@bigmail.test"},   /* pass, deep in the includes */
	{"192.0.2.66", "forged@bigmail.test"},       /* softfail after every range */
	{"198.51.100.11", "sales@company.test"},     /* pass by mx */
	{"203.0.113.9", "forged@company.test"},      /* fail (default explanation expanded) */
	{"198.51.100.25", "user@macro.test"},        /* pass by exists */
	{"2a00:1450:4000::1", "someone@bigmail.test"}, /* IPv6 pass */
};

static unsigned long results[7];

static void on_answer(void *arg, const struct spf_answer *a)
{
	(void)arg;
	results[a->result]++;
}

static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
	       ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 3.0;
	struct zone z;
	memset(&z, 0, sizeof(z));
	build_zone(&z);
	struct spf_dns dns = zone_dns(&z);
	struct sockaddr_storage addrs[ARRAY_SIZE(picks)];
	for (size_t i = 0; i < ARRAY_SIZE(picks); i++) {
		memset(&addrs[i], 0, sizeof(addrs[i]));
		struct sockaddr_in *s4 = (struct sockaddr_in *)&addrs[i];
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&addrs[i];
		if (inet_pton(AF_INET, picks[i].ip, &s4->sin_addr) == 1)
			s4->sin_family = AF_INET;
		else if (inet_pton(AF_INET6, picks[i].ip, &s6->sin6_addr) == 1)
			s6->sin6_family = AF_INET6;
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	double c0 = cpu_s(), elapsed = 0;
	unsigned long n = 0;
	while (elapsed < seconds) {
		for (int k = 0; k < 1000; k++, n++) {
			size_t i = n % ARRAY_SIZE(picks);
			struct spf_request req = {.client = (struct sockaddr *)&addrs[i], .sender = picks[i].sender,
						  .helo = "client.example", .receiver = "mx.backstop.test"};
			spf_check_start(&dns, &req, on_answer, NULL);
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		elapsed = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	}
	double cpu = cpu_s() - c0;
	printf("spf_eval_bench: %lu evaluations in %.2f s: %.0f per second, %.2f us CPU each, %.1f DNS answers each\n",
	       n, elapsed, (double)n / elapsed, cpu * 1e6 / (double)n, (double)z.queries / (double)n);
	printf("results: pass %lu, fail %lu, softfail %lu, neutral %lu, none %lu, temperror %lu, permerror %lu\n",
	       results[SPF_PASS], results[SPF_FAIL], results[SPF_SOFTFAIL], results[SPF_NEUTRAL], results[SPF_NONE],
	       results[SPF_TEMPERROR], results[SPF_PERMERROR]);
	zone_free(&z);
	return 0;
}
