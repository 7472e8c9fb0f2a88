/* metrics_text.c - the Prometheus text format and HTML escaping over a growable buffer. */
#include "metrics_text.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void mbuf_add(struct mbuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		b->buf = xrealloc(b->buf, cap);
		b->cap = cap;
	}
	memcpy(b->buf + b->len, s, n);
	b->len += n;
	b->buf[b->len] = '\0';
}

void mbuf_puts(struct mbuf *b, const char *s)
{
	mbuf_add(b, s, strlen(s));
}

void mbuf_printf(struct mbuf *b, const char *fmt, ...)
{
	char small[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof small) {
		mbuf_add(b, small, (size_t)n);
		return;
	}
	char *big = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	mbuf_add(b, big, (size_t)n);
	free(big);
}

void mbuf_free(struct mbuf *b)
{
	free(b->buf);
	b->buf = NULL;
	b->len = b->cap = 0;
}

static void escape(struct mbuf *b, const char *s, bool quote)
{
	const char *run = s;
	for (; *s; s++) {
		const char *rep = NULL;
		if (*s == '\\')
			rep = "\\\\";
		else if (*s == '\n')
			rep = "\\n";
		else if (*s == '"' && quote)
			rep = "\\\"";
		if (rep == NULL)
			continue;
		mbuf_add(b, run, (size_t)(s - run));
		mbuf_puts(b, rep);
		run = s + 1;
	}
	mbuf_add(b, run, (size_t)(s - run));
}

void metrics_escape_label(struct mbuf *b, const char *value)
{
	escape(b, value, true);
}

void metrics_escape_help(struct mbuf *b, const char *text)
{
	escape(b, text, false);
}

void html_escape(struct mbuf *b, const char *text)
{
	const char *run = text, *s = text;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		const char *rep = NULL;
		switch (c) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '"': rep = "&quot;"; break;
		case '\'': rep = "&#39;"; break;
		default:
			if (c < 32 || c == 127)
				rep = "";
		}
		if (rep == NULL)
			continue;
		mbuf_add(b, run, (size_t)(s - run));
		mbuf_puts(b, rep);
		run = s + 1;
	}
	mbuf_add(b, run, (size_t)(s - run));
}

void metrics_family(struct mbuf *b, const char *name, const char *type, const char *help)
{
	mbuf_printf(b, "# HELP %s ", name);
	metrics_escape_help(b, help);
	mbuf_printf(b, "\n# TYPE %s %s\n", name, type);
}

static void labels_out(struct mbuf *b, const char *const *labels, const char *extra_k, const char *extra_v)
{
	bool any = false;
	for (size_t i = 0; labels != NULL && labels[i] != NULL && labels[i + 1] != NULL; i += 2) {
		mbuf_puts(b, any ? "," : "{");
		mbuf_puts(b, labels[i]);
		mbuf_puts(b, "=\"");
		metrics_escape_label(b, labels[i + 1]);
		mbuf_puts(b, "\"");
		any = true;
	}
	if (extra_k != NULL) {
		mbuf_puts(b, any ? "," : "{");
		mbuf_printf(b, "%s=\"%s\"", extra_k, extra_v);
		any = true;
	}
	if (any)
		mbuf_puts(b, "}");
}

void metrics_sample(struct mbuf *b, const char *name, const char *const *labels, uint64_t value)
{
	mbuf_puts(b, name);
	labels_out(b, labels, NULL, NULL);
	mbuf_printf(b, " %llu\n", (unsigned long long)value);
}

void metrics_sample_f(struct mbuf *b, const char *name, const char *const *labels, double value)
{
	mbuf_puts(b, name);
	labels_out(b, labels, NULL, NULL);
	mbuf_printf(b, " %.9g\n", value);
}

void metrics_histogram(struct mbuf *b, const char *name, const char *const *labels, const double *bounds,
		       const uint64_t *buckets, size_t nb, double sum)
{
	char le[32], series[128];
	uint64_t cum = 0;

	snprintf(series, sizeof series, "%s_bucket", name);
	for (size_t i = 0; i < nb; i++) {
		cum += buckets[i];
		if (i + 1 < nb)
			snprintf(le, sizeof le, "%.9g", bounds[i]);
		else
			snprintf(le, sizeof le, "+Inf");
		mbuf_puts(b, series);
		labels_out(b, labels, "le", le);
		mbuf_printf(b, " %llu\n", (unsigned long long)cum);
	}
	snprintf(series, sizeof series, "%s_sum", name);
	metrics_sample_f(b, series, labels, sum);
	snprintf(series, sizeof series, "%s_count", name);
	metrics_sample(b, series, labels, cum);
}
