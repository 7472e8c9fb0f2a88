/* status_page.c - renders the status page: a header (version, uptime, configuration), the
 * backends and recipient sources with their health, the verdict cache, and an inline SVG bar
 * chart of the last hour's RCPT decisions. Plain HTML that reads on a phone. */
#include "status_page.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util.h"

static const char page_css[] =
	"body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;padding:0 1rem 2rem;"
	"color:#1d2329;background:#f6f7f9;line-height:1.4}"
	"header{padding:1rem 0 .5rem}h1{font-size:1.4rem;margin:0}h2{font-size:1.1rem;margin:1.5rem 0 .5rem}"
	".sub{color:#5a6570;font-size:.9rem}"
	".cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(9rem,1fr));gap:.6rem}"
	".card{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:.6rem .8rem}"
	".card b{display:block;font-size:1.3rem}.card span{color:#5a6570;font-size:.85rem}"
	".wrap{overflow-x:auto}table{border-collapse:collapse;width:100%;background:#fff;font-size:.9rem}"
	"th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid #e4e7eb;white-space:nowrap}"
	"td.name{white-space:normal;word-break:break-all;min-width:8rem}"
	"td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}"
	".ok{color:#0b6b2e;font-weight:600}.bad{color:#b3261e;font-weight:600}.warn{color:#8a5a00;font-weight:600}"
	"svg{width:100%;height:auto;background:#fff;border:1px solid #dde1e6;border-radius:6px}"
	".legend span{margin-right:1rem;font-size:.85rem}.sw{display:inline-block;width:.8rem;height:.8rem;"
	"margin-right:.3rem;vertical-align:-1px}"
	"footer{margin-top:2rem;color:#5a6570;font-size:.8rem}";

static const char *const hist_colors[HIST_KINDS] = { "#2e7d32", "#c62828", "#ef8f00" };
static const char *const hist_names[HIST_KINDS] = { "passed", "rejected", "deferred" };

static void duration_text(uint64_t s, char *buf, size_t len)
{
	if (s >= 86400)
		snprintf(buf, len, "%llud %lluh", (unsigned long long)(s / 86400), (unsigned long long)(s % 86400 / 3600));
	else if (s >= 3600)
		snprintf(buf, len, "%lluh %llum", (unsigned long long)(s / 3600), (unsigned long long)(s % 3600 / 60));
	else
		snprintf(buf, len, "%llum %llus", (unsigned long long)(s / 60), (unsigned long long)(s % 60));
}

static void time_text(uint64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;
	if (t == 0 || gmtime_r(&tt, &tm) == NULL || strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(buf, len, "never");
}

static void card(struct mbuf *b, const char *value, const char *label, const char *cls)
{
	mbuf_printf(b, "<div class=\"card\"><b%s%s%s>", cls ? " class=\"" : "", cls ? cls : "", cls ? "\"" : "");
	html_escape(b, value);
	mbuf_puts(b, "</b><span>");
	html_escape(b, label);
	mbuf_puts(b, "</span></div>");
}

static void render_header(const struct stats_snapshot *s, struct mbuf *b)
{
	char up[64], when[64], buf[64];

	mbuf_puts(b, "<header><h1>backstop");
	if (s->hostname[0]) {
		mbuf_puts(b, " on ");
		html_escape(b, s->hostname);
	}
	mbuf_puts(b, "</h1><div class=\"sub\">version ");
	html_escape(b, s->version);
	duration_text(s->now > s->start_time ? s->now - s->start_time : 0, up, sizeof up);
	mbuf_printf(b, " &middot; up %s &middot; %u workers &middot; refreshed every %d s</div></header>", up, s->workers,
		    STATUS_PAGE_REFRESH_S);

	uint64_t acc = stats_decisions(s, ENGINE_STAGE_RCPT, CHECK_NEUTRAL) + stats_decisions(s, ENGINE_STAGE_RCPT, CHECK_ACCEPT);
	mbuf_puts(b, "<section class=\"cards\">");
	snprintf(buf, sizeof buf, "%llu", (unsigned long long)s->smtp.open);
	card(b, buf, "sessions open", NULL);
	snprintf(buf, sizeof buf, "%llu", (unsigned long long)s->smtp.accepted);
	card(b, buf, "sessions since start", NULL);
	snprintf(buf, sizeof buf, "%llu", (unsigned long long)acc);
	card(b, buf, "recipients passed the checks", NULL);
	snprintf(buf, sizeof buf, "%llu", (unsigned long long)stats_decisions(s, ENGINE_STAGE_RCPT, CHECK_REJECT));
	card(b, buf, "recipients refused", NULL);
	snprintf(buf, sizeof buf, "%llu", (unsigned long long)stats_decisions(s, ENGINE_STAGE_RCPT, CHECK_DEFER));
	card(b, buf, "recipients deferred", NULL);
	if (s->cache.configured && s->cache.hits + s->cache.misses > 0)
		snprintf(buf, sizeof buf, "%.1f %%", 100.0 * (double)s->cache.hits / (double)(s->cache.hits + s->cache.misses));
	else
		snprintf(buf, sizeof buf, "%s", s->cache.configured ? "no lookups yet" : "no cache");
	card(b, buf, "verdict cache hit ratio", NULL);
	time_text(s->last_reload_time, when, sizeof when);
	snprintf(buf, sizeof buf, "generation %llu", (unsigned long long)s->generation);
	mbuf_puts(b, "</section>");
	mbuf_puts(b, "<h2>Configuration</h2><div class=\"wrap\"><table><tr><th>Generation</th><th>Last reload</th><th>Result</th>"
		     "<th class=\"n\">Applied</th><th class=\"n\">Refused</th></tr><tr>");
	mbuf_printf(b, "<td>%llu</td><td>", (unsigned long long)s->generation);
	html_escape(b, when);
	mbuf_printf(b, "</td><td class=\"%s\">%s</td><td class=\"n\">%llu</td><td class=\"n\">%llu</td></tr></table></div>",
		    s->last_reload_ok ? "ok" : "bad",
		    s->last_reload_time == 0 ? "none since start" : s->last_reload_ok ? "applied" : "refused (old one kept)",
		    (unsigned long long)s->reloads_ok, (unsigned long long)s->reloads_failed);
}

static const char *backend_state_text(enum backend_state st, const char **cls)
{
	*cls = st == BACKEND_HEALTHY ? "ok" : st == BACKEND_FAILING ? "bad" : "warn";
	return st == BACKEND_HEALTHY ? "up" : st == BACKEND_FAILING ? "down" : "probing";
}

static void render_backends(const struct stats_snapshot *s, struct mbuf *b)
{
	mbuf_puts(b, "<h2>Backends</h2>");
	if (s->nbackends == 0) {
		mbuf_puts(b, "<p>No delivery target is configured.</p>");
		return;
	}
	mbuf_puts(b, "<div class=\"wrap\"><table><tr><th>State</th><th>Target</th><th class=\"n\">Connections</th>"
		     "<th class=\"n\">Waiting</th><th class=\"n\">Breaker trips</th></tr>");
	for (size_t i = 0; i < s->nbackends; i++) {
		const struct stats_backend *x = &s->backends[i];
		const char *cls, *text = backend_state_text(x->state, &cls);
		mbuf_printf(b, "<tr><td class=\"%s backend-state\">%s</td><td class=\"name\">", cls, text);
		html_escape(b, x->target);
		mbuf_printf(b, "</td><td class=\"n\">%u</td><td class=\"n\">%u</td><td class=\"n\">%lu</td></tr>",
			    x->connections, x->waiting, x->trips);
	}
	mbuf_printf(b, "</table></div><p class=\"sub\">%llu idle connections pooled. Replies to the end of data: "
		       "%llu 2xx, %llu 4xx, %llu 5xx.</p>",
		    (unsigned long long)s->smtp.pooled, (unsigned long long)s->smtp.backend_final[0],
		    (unsigned long long)s->smtp.backend_final[2], (unsigned long long)s->smtp.backend_final[3]);
}

static void render_sources(const struct stats_snapshot *s, struct mbuf *b)
{
	mbuf_puts(b, "<h2>Recipient sources</h2>");
	if (s->nsources == 0) {
		mbuf_puts(b, "<p>No recipient verification is configured.</p>");
		return;
	}
	mbuf_puts(b, "<div class=\"wrap\"><table><tr><th>State</th><th>Source</th><th class=\"n\">Lookups</th>"
		     "<th class=\"n\">Valid</th><th class=\"n\">Invalid</th><th class=\"n\">Unavailable</th><th>Detail</th></tr>");
	for (size_t i = 0; i < s->nsources; i++) {
		const struct stats_source *x = &s->sources[i];
		char detail[128] = "";
		if (x->surrogate)
			snprintf(detail, sizeof detail, "could not be opened");
		else if (x->kind == STATS_SOURCE_MAP)
			snprintf(detail, sizeof detail, "%llu entries%s", (unsigned long long)x->entries,
				 x->last_load_ok ? "" : ", last load failed");
		else if (x->kind == STATS_SOURCE_CALLOUT)
			snprintf(detail, sizeof detail, "%llu open, %llu waiting", (unsigned long long)x->conns_open,
				 (unsigned long long)x->waiting);
		else if (x->kind == STATS_SOURCE_LDAP)
			snprintf(detail, sizeof detail, "pool %llu, %llu in flight, %llu timeouts",
				 (unsigned long long)x->pool_size, (unsigned long long)x->inflight,
				 (unsigned long long)x->timeouts);
		mbuf_printf(b, "<tr><td class=\"%s source-state\">%s</td><td class=\"name\">", x->up ? "ok" : "bad",
			    x->up ? "up" : "down");
		html_escape(b, x->spec);
		mbuf_printf(b, "</td><td class=\"n\">%llu</td><td class=\"n\">%llu</td>"
			       "<td class=\"n\">%llu</td><td class=\"n\">%llu</td><td>",
			    (unsigned long long)x->lookups,
			    (unsigned long long)x->valid, (unsigned long long)x->invalid, (unsigned long long)x->unavailable);
		html_escape(b, detail);
		mbuf_puts(b, "</td></tr>");
	}
	mbuf_puts(b, "</table></div>");
	if (s->cache.configured) {
		mbuf_puts(b, "<p class=\"sub\">Verdict cache ");
		html_escape(b, s->cache.store);
		mbuf_printf(b, ": <span class=\"%s\">%s</span>, %llu entries, %llu hits, %llu misses.</p>",
			    s->cache.up ? "ok" : "bad", s->cache.up ? "up" : "unavailable",
			    (unsigned long long)s->cache.entries, (unsigned long long)s->cache.hits,
			    (unsigned long long)s->cache.misses);
	}
}

/* Round up to 1, 2 or 5 times a power of ten. */
static uint64_t nice_max(uint64_t v)
{
	uint64_t p = 1;
	while (p * 10 <= v)
		p *= 10;
	return v <= p ? p : v <= 2 * p ? 2 * p : v <= 5 * p ? 5 * p : 10 * p;
}

void status_page_chart(const struct stats_history *h, uint64_t now, struct mbuf *b)
{
	const int W = 480, H = 190, left = 40, bottom = 22, top = 10;
	const int plot_w = W - left - 8, plot_h = H - bottom - top;
	uint64_t peak = 0;

	for (unsigned ago = 0; ago < STATS_HISTORY_MINUTES; ago++) {
		uint64_t t = 0;
		for (int k = 0; k < HIST_KINDS; k++)
			t += stats_history_get(h, now, ago, (enum stats_history_kind)k);
		if (t > peak)
			peak = t;
	}
	uint64_t ymax = nice_max(peak > 10 ? peak : 10);
	mbuf_printf(b, "<svg viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"RCPT decisions per minute, last hour\" "
		       "xmlns=\"http://www.w3.org/2000/svg\">", W, H);
	/* axes and grid: 0, half, max */
	for (int g = 0; g <= 2; g++) {
		int y = top + plot_h - plot_h * g / 2;
		mbuf_printf(b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#e4e7eb\"/>", left, y, W - 8, y);
		mbuf_printf(b, "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"end\" fill=\"#5a6570\">%llu</text>",
			    left - 4, y + 4, (unsigned long long)(ymax * (uint64_t)g / 2));
	}
	double bw = (double)plot_w / STATS_HISTORY_MINUTES;
	for (unsigned ago = 0; ago < STATS_HISTORY_MINUTES; ago++) {
		double x = left + bw * (STATS_HISTORY_MINUTES - 1 - ago);
		double y = top + plot_h;
		for (int k = 0; k < HIST_KINDS; k++) {
			uint64_t n = stats_history_get(h, now, ago, (enum stats_history_kind)k);
			if (n == 0)
				continue;
			double hh = (double)plot_h * (double)n / (double)ymax;
			y -= hh;
			mbuf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\">"
				       "<title>%u min ago: %llu %s</title></rect>",
				    x + 0.5, y, bw - 1.0, hh, hist_colors[k], ago, (unsigned long long)n, hist_names[k]);
		}
	}
	const int marks[] = { 60, 45, 30, 15, 0 };
	for (size_t i = 0; i < ARRAY_SIZE(marks); i++) {
		double x = left + bw * (STATS_HISTORY_MINUTES - marks[i]);
		mbuf_printf(b, "<text x=\"%.1f\" y=\"%d\" font-size=\"12\" text-anchor=\"%s\" fill=\"#5a6570\">%s%d min</text>",
			    x, H - 6, marks[i] == 0 ? "end" : marks[i] == 60 ? "start" : "middle", marks[i] ? "-" : "", marks[i]);
	}
	mbuf_puts(b, "</svg>");
}

static void render_chart(const struct stats_snapshot *s, const struct stats_history *h, struct mbuf *b)
{
	mbuf_puts(b, "<h2>RCPT decisions, last hour (per minute)</h2>");
	status_page_chart(h, s->now, b);
	mbuf_puts(b, "<div class=\"legend\">");
	for (int k = 0; k < HIST_KINDS; k++)
		mbuf_printf(b, "<span><i class=\"sw\" style=\"background:%s\"></i>%s</span>", hist_colors[k], hist_names[k]);
	mbuf_puts(b, "</div>");
}

void status_page_render(const struct stats_snapshot *s, const struct stats_history *h, struct mbuf *b)
{
	char now[64];

	mbuf_printf(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
		       "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
		       "<meta http-equiv=\"refresh\" content=\"%d\"><title>backstop", STATUS_PAGE_REFRESH_S);
	if (s->hostname[0]) {
		mbuf_puts(b, " &middot; ");
		html_escape(b, s->hostname);
	}
	mbuf_puts(b, "</title><link rel=\"icon\" href=\"data:,\"><style>");
	mbuf_puts(b, page_css);
	mbuf_puts(b, "</style></head><body>");
	render_header(s, b);
	render_chart(s, h, b);
	render_backends(s, b);
	render_sources(s, b);
	time_text(s->now, now, sizeof now);
	mbuf_puts(b, "<footer>Rendered ");
	html_escape(b, now);
	mbuf_puts(b, ". Metrics for Prometheus: <a href=\"/metrics\">/metrics</a>.</footer></body></html>\n");
}
