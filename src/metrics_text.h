/* metrics_text.h - writing the Prometheus text exposition format (version 0.0.4) and HTML text
 * into a growable buffer: metric families (HELP and TYPE once), samples with escaped label
 * values, and the escaping rules themselves (pure functions, unit-tested). */
#ifndef BACKSTOP_METRICS_TEXT_H
#define BACKSTOP_METRICS_TEXT_H

#include <stddef.h>
#include <stdint.h>

/* A growable string; owned by whoever made it (free buf). */
struct mbuf {
	char *buf;
	size_t len, cap;
};

void mbuf_add(struct mbuf *b, const char *s, size_t n);
void mbuf_puts(struct mbuf *b, const char *s);
void mbuf_printf(struct mbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mbuf_free(struct mbuf *b);

/* A label value as the text format wants it: backslash, double quote and line feed escaped. */
void metrics_escape_label(struct mbuf *b, const char *value);
/* HELP text: backslash and line feed escaped. */
void metrics_escape_help(struct mbuf *b, const char *text);
/* Text for HTML content and attribute values: & < > " ' escaped; control characters dropped. */
void html_escape(struct mbuf *b, const char *text);

/* "# HELP name help\n# TYPE name type\n" (type: counter, gauge, histogram, untyped). */
void metrics_family(struct mbuf *b, const char *name, const char *type, const char *help);

/* One sample: name{k1="v1",k2="v2"} value. labels: NULL-terminated list of key, value, key,
 * value ... (NULL for none); a NULL value ends the list too. */
void metrics_sample(struct mbuf *b, const char *name, const char *const *labels, uint64_t value);
void metrics_sample_f(struct mbuf *b, const char *name, const char *const *labels, double value);

/* A histogram from non-cumulative bucket counts: nb buckets whose upper bounds (in the
 * family's unit) are bounds[0..nb-2], the last one +Inf; sum in the same unit. Writes
 * name_bucket{...,le=...}, name_sum and name_count. */
void metrics_histogram(struct mbuf *b, const char *name, const char *const *labels, const double *bounds,
		       const uint64_t *buckets, size_t nb, double sum);

#endif
