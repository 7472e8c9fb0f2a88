/* dns_cache_bench.c - the DNS answer cache shared by the workers (one mutex) against one cache
 * per worker: lookups per second and ns per warm hit with 1..N threads over the same working set
 * of names, and the DNS queries each layout sends for a stream of sender domains spread over the
 * workers (every worker pays its own miss when each has its own cache).
 *   dns_cache_bench [THREADS] [NAMES] [SECONDS]   (defaults: 2 5000 1) */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dns_cache.h"

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct job {
	struct dns_cache *cache;
	unsigned names, seed;
	uint64_t until_ns, ops;
	atomic_bool *go;
};

static void *worker(void *arg)
{
	struct job *j = arg;
	char name[64];
	unsigned x = j->seed;

	while (!atomic_load(j->go))
		;
	while (now_ns() < j->until_ns) {
		for (int k = 0; k < 256; k++) {
			x = x * 1103515245u + 12345u;
			snprintf(name, sizeof name, "d%u.example.test", (x >> 8) % j->names);
			struct dns_answer *a = dns_cache_get(j->cache, name, DNS_TYPE_TXT, 1);
			dns_answer_unref(a);
			j->ops++;
		}
	}
	return NULL;
}

static struct dns_cache *filled(unsigned names)
{
	struct dns_cache *c = dns_cache_new(names * 2);
	struct dns_answer *a = dns_answer_new_empty(DNS_TYPE_TXT, DNS_RESULT_NXDOMAIN, "NXDOMAIN");
	char name[64];

	a->ttl = 3600;
	for (unsigned i = 0; i < names; i++) {
		snprintf(name, sizeof name, "d%u.example.test", i);
		dns_cache_put(c, name, a, 0);
	}
	dns_answer_unref(a);
	return c;
}

static double run(unsigned threads, unsigned names, double seconds, bool shared, double *ns_per_op)
{
	struct dns_cache *one = shared ? filled(names) : NULL;
	struct job *jobs = calloc(threads, sizeof *jobs);
	pthread_t *t = calloc(threads, sizeof *t);
	atomic_bool go = false;
	uint64_t start = now_ns(), total = 0;

	for (unsigned i = 0; i < threads; i++) {
		jobs[i] = (struct job){ shared ? one : filled(names), names, 7919u * (i + 1), 0, 0, &go };
		pthread_create(&t[i], NULL, worker, &jobs[i]);
	}
	start = now_ns();
	for (unsigned i = 0; i < threads; i++)
		jobs[i].until_ns = start + (uint64_t)(seconds * 1e9);
	atomic_store(&go, true);
	for (unsigned i = 0; i < threads; i++) {
		pthread_join(t[i], NULL);
		total += jobs[i].ops;
		if (!shared)
			dns_cache_free(jobs[i].cache);
	}
	double elapsed = (double)(now_ns() - start) / 1e9;
	dns_cache_free(one);
	free(jobs);
	free(t);
	*ns_per_op = elapsed * 1e9 * threads / (double)total;
	return (double)total / elapsed;
}

int main(int argc, char **argv)
{
	unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 2, names = argc > 2 ? (unsigned)atoi(argv[2]) : 5000;
	double seconds = argc > 3 ? atof(argv[3]) : 1.0;

	for (unsigned n = 1; n <= threads; n++) {
		double ns_s, ns_p;
		double s = run(n, names, seconds, true, &ns_s), p = run(n, names, seconds, false, &ns_p);
		printf("threads=%u names=%u shared: %.0f hits/s (%.0f ns/hit per thread)  per-worker: %.0f hits/s (%.0f ns/hit)\n",
		       n, names, s, ns_s, p, ns_p);
	}
	/* misses: a stream of sender domains, each seen several times, spread over the workers */
	unsigned domains = names, repeats = 8, x = 12345;
	unsigned char *seen_shared = calloc(domains, 1), *seen_worker = calloc((size_t)domains * threads, 1);
	unsigned long q_shared = 0, q_worker = 0;
	for (unsigned i = 0; i < domains * repeats; i++) {
		x = x * 1103515245u + 12345u;
		unsigned d = (x >> 8) % domains, w = (x >> 4) % threads;
		q_shared += !seen_shared[d];
		seen_shared[d] = 1;
		q_worker += !seen_worker[(size_t)d * threads + w];
		seen_worker[(size_t)d * threads + w] = 1;
	}
	printf("queries sent for %u lookups of %u domains over %u workers: shared %lu, per-worker %lu (x%.2f)\n",
	       domains * repeats, domains, threads, q_shared, q_worker, (double)q_worker / (double)q_shared);
	free(seen_shared);
	free(seen_worker);
	return 0;
}
