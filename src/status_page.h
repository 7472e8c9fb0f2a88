/* status_page.h - the status page served at / on metrics_listen: one self-contained HTML page
 * (inline CSS and SVG, no script, no external resource, refreshes itself) rendered from a stats
 * snapshot and the last hour of decisions. Every text that comes from the configuration or the
 * outside is escaped. */
#ifndef BACKSTOP_STATUS_PAGE_H
#define BACKSTOP_STATUS_PAGE_H

#include "metrics_text.h"
#include "stats_history.h"
#include "stats_snapshot.h"

#define STATUS_PAGE_REFRESH_S 10
#define STATUS_PAGE_CONTENT_TYPE "text/html; charset=utf-8"

void status_page_render(const struct stats_snapshot *s, const struct stats_history *h, struct mbuf *b);

/* The chart alone (an <svg> element), for tests. */
void status_page_chart(const struct stats_history *h, uint64_t now, struct mbuf *b);

#endif
