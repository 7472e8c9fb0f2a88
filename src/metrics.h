/* metrics.h - a stats snapshot as Prometheus metrics (text format 0.0.4): every family
 * backstop exports, its HELP text and labels. Label values are bounded by the configuration
 * (backend targets, source specs, check names) or by the code (stages, results, classes):
 * never a client's address, a sender or a recipient. */
#ifndef BACKSTOP_METRICS_H
#define BACKSTOP_METRICS_H

#include "metrics_text.h"
#include "stats_snapshot.h"

/* Append the whole exposition to b. */
void metrics_render(const struct stats_snapshot *s, struct mbuf *b);

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
