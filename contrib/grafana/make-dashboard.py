#!/usr/bin/python3
"""Writes contrib/grafana/backstop-dashboard.json (run from the top of the tree): the Grafana
dashboard over backstop's metrics. Edit this, not the JSON."""
import json
DS = {"type": "prometheus", "uid": "${datasource}"}
I = 'instance=~"$instance"'
panels, y = [], 0
pid = 1
def add(p, w, h):
    global pid
    p["id"] = pid; pid += 1
    p["datasource"] = DS
    panels.append(p)
    return p
def stat(title, expr, x, unit="none", thresholds=None, mappings=None, w=4, h=4, desc=""):
    t = thresholds or [{"color": "green", "value": None}]
    p = {"type": "stat", "title": title, "description": desc,
         "gridPos": {"x": x, "y": y, "w": w, "h": h},
         "targets": [{"refId": "A", "expr": expr, "datasource": DS}],
         "fieldConfig": {"defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": t},
                                      "mappings": mappings or []}, "overrides": []},
         "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                     "colorMode": "background", "graphMode": "none", "textMode": "auto"}}
    return add(p, w, h)
def ts(title, targets, x, w=12, h=8, unit="short", stack=False, desc=""):
    p = {"type": "timeseries", "title": title, "description": desc,
         "gridPos": {"x": x, "y": y, "w": w, "h": h},
         "targets": [{"refId": chr(65 + i), "expr": e, "legendFormat": l, "datasource": DS} for i, (e, l) in enumerate(targets)],
         "fieldConfig": {"defaults": {"unit": unit, "custom": {"fillOpacity": 20 if stack else 5,
                         "stacking": {"mode": "normal" if stack else "none", "group": "A"}}}, "overrides": []},
         "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}}}
    return add(p, w, h)
def row(title):
    global y
    add({"type": "row", "title": title, "collapsed": False, "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []}, 24, 1)
    y += 1

red_if_pos = [{"color": "green", "value": None}, {"color": "red", "value": 1}]
red_if_zero = [{"color": "red", "value": None}, {"color": "green", "value": 1}]
row("Overview")
stat("Sessions open", f"sum(backstop_sessions_open{{{I}}})", 0)
stat("Backends down", f"count(backstop_backend_up{{{I}}} == 0) or vector(0)", 4, thresholds=red_if_pos,
     desc="Delivery targets whose circuit breaker is open.")
stat("Sources down", f"count(backstop_source_up{{{I}}} == 0) or vector(0)", 8, thresholds=red_if_pos,
     desc="Recipient sources (maps, validation servers, LDAP) that cannot answer.")
stat("Verdict cache hit ratio", f"sum(rate(backstop_verdict_cache_hits_total{{{I}}}[5m])) / (sum(rate(backstop_verdict_cache_hits_total{{{I}}}[5m])) + sum(rate(backstop_verdict_cache_misses_total{{{I}}}[5m])))",
     12, unit="percentunit")
stat("Last reload", f"min(backstop_config_last_reload_success{{{I}}})", 16, thresholds=red_if_zero,
     mappings=[{"type": "value", "options": {"0": {"text": "refused"}, "1": {"text": "ok"}}}])
stat("Config generation", f"max(backstop_config_generation{{{I}}})", 20)
y += 4
row("Traffic and decisions")
ts("Sessions", [(f"sum(rate(backstop_sessions_total{{{I}}}[$__rate_interval]))", "started/s"),
                (f"sum by (reason) (rate(backstop_sessions_ended_total{{{I}}}[$__rate_interval]))", "ended: {{reason}}"),
                (f"sum(rate(backstop_sessions_refused_total{{{I}}}[$__rate_interval]))", "refused (limits)")], 0, unit="ops")
ts("RCPT decisions", [(f"sum by (result) (rate(backstop_decisions_total{{{I},stage=\"rcpt\"}}[$__rate_interval]))", "{{result}}")],
   12, unit="ops", stack=True)
y += 8
ts("Refusals by check", [(f"sum by (check, stage) (rate(backstop_check_answers_total{{{I},result=~\"reject|defer\"}}[$__rate_interval]))", "{{check}} {{stage}}")],
   0, unit="ops", stack=True, desc="relay, verify, and every later check (SPF, DNSBL, budgets) by name.")
ts("Replies to clients by class", [(f"sum by (class) (rate(backstop_smtp_replies_total{{{I}}}[$__rate_interval]))", "{{class}}")],
   12, unit="ops", stack=True)
y += 8
ts("Verification latency", [
    (f"histogram_quantile(0.5, sum by (le) (rate(backstop_check_duration_seconds_bucket{{{I},check=\"verify\"}}[$__rate_interval])))", "p50"),
    (f"histogram_quantile(0.95, sum by (le) (rate(backstop_check_duration_seconds_bucket{{{I},check=\"verify\"}}[$__rate_interval])))", "p95"),
    (f"histogram_quantile(0.99, sum by (le) (rate(backstop_check_duration_seconds_bucket{{{I},check=\"verify\"}}[$__rate_interval])))", "p99")],
   0, unit="s")
ts("TLS handshakes", [(f"sum by (result) (rate(backstop_tls_handshakes_total{{{I}}}[$__rate_interval]))", "{{result}}")], 12, unit="ops")
y += 8
row("Backends")
ts("Backend up", [(f"backstop_backend_up{{{I}}}", "{{target}}")], 0, w=8)
ts("Backend connections", [(f"backstop_backend_connections{{{I}}}", "{{target}}"),
                           (f"sum(backstop_backend_pooled_connections{{{I}}})", "idle pooled (all)")], 8, w=8)
ts("Final replies from backends", [(f"sum by (class) (rate(backstop_backend_final_replies_total{{{I}}}[$__rate_interval]))", "{{class}}"),
                                   (f"sum by (target) (increase(backstop_backend_breaker_trips_total{{{I}}}[$__rate_interval]))", "breaker trips {{target}}")],
   16, w=8, unit="ops")
y += 8
row("Recipient sources and cache")
ts("Source answers", [(f"sum by (source, verdict) (rate(backstop_source_answers_total{{{I}}}[$__rate_interval]))", "{{source}} {{verdict}}")], 0, w=8, unit="ops")
ts("Validation servers and LDAP", [(f"backstop_callout_inflight{{{I}}}", "in flight {{source}}"),
                                    (f"backstop_callout_connections{{{I}}}", "connections {{source}}"),
                                    (f"backstop_ldap_inflight{{{I}}}", "in flight {{source}}"),
                                    (f"rate(backstop_ldap_timeouts_total{{{I}}}[$__rate_interval])", "timeouts/s {{source}}")], 8, w=8)
ts("Verdict cache", [(f"sum by (store) (rate(backstop_verdict_cache_hits_total{{{I}}}[$__rate_interval]))", "hits {{store}}"),
                     (f"sum by (store) (rate(backstop_verdict_cache_misses_total{{{I}}}[$__rate_interval]))", "misses {{store}}"),
                     (f"backstop_verdict_cache_entries{{{I}}}", "entries {{store}}")], 16, w=8)
y += 8
ts("Maps", [(f"backstop_map_entries{{{I}}}", "{{source}}")], 0, w=12)
ts("Blocklists (backstop blcheck, textfile)", [("backstop_blocklist_listed", "{{zone}}")], 12, w=12,
   desc="Exported by `backstop blcheck` through node_exporter's textfile collector.")

dash = {
    "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource", "pluginId": "prometheus", "pluginName": "Prometheus"}],
    "title": "backstop", "uid": "backstop-gateway", "description": "backstop SMTP edge gateway: sessions, decisions, backends, recipient sources, cache.",
    "tags": ["backstop", "smtp", "mail"], "timezone": "", "schemaVersion": 38, "version": 1, "editable": True,
    "refresh": "30s", "time": {"from": "now-6h", "to": "now"},
    "templating": {"list": [
        {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source", "current": {}, "hide": 0},
        {"name": "instance", "type": "query", "label": "Instance", "datasource": DS,
         "query": {"query": "label_values(backstop_build_info, instance)", "refId": "I"},
         "definition": "label_values(backstop_build_info, instance)", "includeAll": True, "multi": True,
         "current": {"selected": True, "text": "All", "value": "$__all"}, "refresh": 2, "hide": 0}]},
    "annotations": {"list": [{"name": "Reloads", "datasource": DS, "enable": True, "iconColor": "blue",
                              "expr": f"changes(backstop_config_generation{{{I}}}[2m]) > 0", "titleFormat": "configuration reloaded"}]},
    "panels": panels,
}
open("contrib/grafana/backstop-dashboard.json", "w").write(json.dumps(dash, indent=2) + "\n")
