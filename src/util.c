/* util.c - checked allocation, bounded copies and the monotonic clock. */
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void *alloc_check(void *p)
{
	if (p == NULL) {
		fputs("backstop: out of memory\n", stderr);
		abort();
	}
	return p;
}

void *xmalloc(size_t n) { return alloc_check(malloc(n ? n : 1)); }
void *xcalloc(size_t n, size_t size) { return alloc_check(calloc(n ? n : 1, size ? size : 1)); }
void *xrealloc(void *p, size_t n) { return alloc_check(realloc(p, n ? n : 1)); }
char *xstrdup(const char *s) { return alloc_check(strdup(s)); }
char *xstrndup(const char *s, size_t n) { return alloc_check(strndup(s, n)); }

int strbuf_copy(char *dst, size_t dstsz, const char *src, size_t srclen)
{
	if (srclen >= dstsz) {
		if (dstsz)
			dst[0] = '\0';
		return -1;
	}
	memcpy(dst, src, srclen);
	dst[srclen] = '\0';
	return 0;
}

void strbuf_append(char *dst, size_t dstsz, const char *src)
{
	size_t len = strnlen(dst, dstsz);
	if (len + 1 >= dstsz)
		return;
	size_t take = strnlen(src, dstsz - 1 - len);
	memcpy(dst + len, src, take);
	dst[len + take] = '\0';
}

uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static unsigned char ascii_lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

int ascii_casecmp_n(const char *a, size_t alen, const char *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	for (size_t i = 0; i < n; i++) {
		int d = ascii_lower((unsigned char)a[i]) - ascii_lower((unsigned char)b[i]);
		if (d)
			return d;
	}
	return (alen > blen) - (alen < blen);
}
