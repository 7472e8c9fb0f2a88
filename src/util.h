/* util.h - small helpers shared by every module: checked allocation, bounded string copies,
 * monotonic time. Nothing here does I/O. */
#ifndef BACKSTOP_UTIL_H
#define BACKSTOP_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Allocation that cannot fail silently: on exhaustion the process aborts with a message
 * (a daemon that cannot allocate a few bytes cannot serve anyway). */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Copy src (srclen bytes) to dst as a NUL-terminated string; returns 0, or -1 if it did not fit
 * (dst is then an empty string). */
int strbuf_copy(char *dst, size_t dstsz, const char *src, size_t srclen);

/* Append the NUL-terminated src to the string in dst, cutting it short if it does not fit. */
void strbuf_append(char *dst, size_t dstsz, const char *src);

/* Monotonic clock in milliseconds. */
uint64_t now_ms(void);

/* ASCII case-insensitive comparison of two byte ranges. */
int ascii_casecmp_n(const char *a, size_t alen, const char *b, size_t blen);

#endif
