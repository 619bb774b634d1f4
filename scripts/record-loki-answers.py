#!/usr/bin/env python3
"""Records a real Loki's answers to a generated LogQL corpus as fixture data.

    scripts/record-loki-answers.py http://127.0.0.1:3100 [OUT_DIR]

The peer must be a fresh, empty Loki (2.9.x; run configuration in the
project's shared `peers/loki.yaml`). The script knows nothing of how it was
built: it generates a deterministic dataset (seeded), pushes it through
`/loki/api/v1/push`, generates the query corpus, asks the peer every query
and writes

    OUT_DIR/dataset.jsonl   one stream per line: {"labels": {...}, "entries": [[ns, line], ...]}
    OUT_DIR/answers.jsonl   line 1 the peer's version and the dataset's base time,
                            then one query per line with the peer's answer or error

OUT_DIR defaults to crates/skopos/tests/logql_recorded. Every time in both
files is relative to the dataset's base time (nanoseconds for entries,
seconds for request parameters and metric points), so a test may load the
data at any base. `crates/skopos/tests/logql_recorded.rs` replays them
against skopos. Uses only the Python standard library.
"""

import json
import os
import random
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

SEED = 20240910
HOUR_NS = 3600 * 10**9


# --------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------

LEVELS = ["info", "info", "info", "info", "debug", "warn", "error"]
METHODS = ["GET", "GET", "GET", "POST", "PUT", "DELETE"]
PATHS = ["/api/users", "/api/orders", "/api/cart", "/health", "/api/search", "/login"]
USERS = ["alice", "bob", "carol", "dave", "eve"]


def status_for(rng, level):
    if level == "error":
        return rng.choice([500, 502, 503, 504])
    if level == "warn":
        return rng.choice([400, 401, 404, 429])
    return rng.choice([200, 200, 200, 201, 204, 302])


def human_bytes(rng):
    n = rng.randint(1, 900)
    unit = rng.choice(["B", "KB", "KiB", "MB", "kB"])
    if unit == "B":
        return f"{n * 10}B"
    return f"{n / 10:g}{unit}"


def human_duration(rng, level):
    ms = rng.uniform(0.5, 40) if level != "error" else rng.uniform(200, 9000)
    pick = rng.random()
    if pick < 0.3:
        return f"{ms:.1f}ms"
    if pick < 0.6:
        return f"{ms / 1000:.3f}s"
    if pick < 0.8:
        return f"{int(ms * 1000)}us"
    return f"{int(ms)}ms"


def json_line(rng, app, i, unique_ids):
    level = rng.choice(LEVELS)
    status = status_for(rng, level)
    d = {
        "level": level,
        "method": rng.choice(METHODS),
        "path": rng.choice(PATHS),
        "status": status,
        "latency": human_duration(rng, level),
        "latency_ms": round(rng.uniform(1, 900), 3),
        "bytes": human_bytes(rng),
        "user": {"name": rng.choice(USERS), "id": rng.randint(1, 40)},
        "ok": status < 400,
    }
    if unique_ids:
        d["request_id"] = f"{app}-{i:06d}"
    if rng.random() < 0.2:
        d["tags"] = ["a", "b"]
    if rng.random() < 0.1:
        d["msg"] = rng.choice(["cache miss", "slow query", "retrying", "timeout talking to db"])
    if rng.random() < 0.05:
        d["note"] = None
    return level, json.dumps(d, separators=(",", ":"))


def logfmt_line(rng, app, i, unique_ids):
    level = rng.choice(LEVELS)
    status = status_for(rng, level)
    parts = [
        f"level={level}",
        f"method={rng.choice(METHODS)}",
        f"path={rng.choice(PATHS)}",
        f"status={status}",
        f"duration={human_duration(rng, level)}",
        f"size={human_bytes(rng)}",
        f"user={rng.choice(USERS)}",
    ]
    if unique_ids:
        parts.append(f"request_id={app}-{i:06d}")
    if rng.random() < 0.3:
        parts.append('msg="' + rng.choice(["request done", "upstream slow", "bad gateway", "cache hit"]) + '"')
    if rng.random() < 0.1:
        parts.append("flag")
    return level, " ".join(parts)


def plain_line(rng, ts_ns):
    level = rng.choice(LEVELS)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts_ns // 10**9))
    table = rng.choice(["users", "orders", "carts", "sessions"])
    took = human_duration(rng, level)
    rows = rng.randint(0, 5000)
    size = human_bytes(rng)
    op = rng.choice(["select", "insert", "update", "delete"])
    return level, f"{stamp} [{level.upper()}] {op} on {table} took {took} rows={rows} size={size}"


def access_line(rng):
    ip = f"10.0.{rng.randint(0, 3)}.{rng.randint(1, 30)}"
    method = rng.choice(METHODS)
    path = rng.choice(PATHS) + (f"/{rng.randint(1, 99)}" if rng.random() < 0.5 else "")
    level = rng.choice(LEVELS)
    status = status_for(rng, level)
    size = rng.randint(0, 90000)
    agent = rng.choice(["curl/8.1", "Mozilla/5.0", "Go-http-client/1.1"])
    secs = rng.uniform(0.001, 2.5)
    return level, f'{ip} - - "{method} {path} HTTP/1.1" {status} {size} "{agent}" {secs:.3f}'


def packed_line(rng, level):
    err = rng.choice(["timeout after 3s", "connection refused", "done in 120ms", "queued"])
    d = {
        "_entry": f"job {rng.choice(['email', 'report', 'sync'])}: {err}",
        "job": rng.choice(["email", "report", "sync"]),
        "attempt": str(rng.randint(1, 4)),
        "worker": f"w{rng.randint(1, 3)}",
    }
    return level, json.dumps(d, separators=(",", ":"))


def mixed_line(rng, app, i):
    pick = rng.random()
    if pick < 0.3:
        return json_line(rng, app, i, False)
    if pick < 0.6:
        return logfmt_line(rng, app, i, False)
    if pick < 0.75:
        return "error", '{"level":"error","broken": '  # not JSON
    if pick < 0.85:
        return "info", "ünïcödé line — with µs and ✓ marks level=info k=\"v w\""
    return "info", f"plain text number {rng.randint(0, 100)} without structure"


STREAMS = [
    # labels, generator, mean gap in seconds, unique request ids
    ({"app": "api", "env": "prod", "cluster": "eu", "namespace": "shop"}, "json", 9, True),
    ({"app": "api", "env": "prod", "cluster": "us", "namespace": "shop"}, "json", 11, True),
    ({"app": "api", "env": "staging", "cluster": "eu", "namespace": "shop"}, "json", 23, False),
    ({"app": "web", "env": "prod", "cluster": "eu", "namespace": "front"}, "logfmt", 8, True),
    ({"app": "web", "env": "prod", "cluster": "us", "namespace": "front"}, "logfmt", 13, False),
    ({"app": "web", "env": "staging", "cluster": "us", "namespace": "front"}, "logfmt", 29, False),
    ({"app": "db", "env": "prod", "cluster": "eu", "namespace": "data"}, "plain", 10, False),
    ({"app": "db", "env": "staging", "cluster": "eu", "namespace": "data"}, "plain", 31, False),
    ({"app": "worker", "env": "prod", "cluster": "eu", "namespace": "jobs", "level": "error"}, "packed", 37, False),
    ({"app": "worker", "env": "prod", "cluster": "eu", "namespace": "jobs", "level": "info"}, "packed", 17, False),
    ({"app": "proxy", "env": "prod", "cluster": "us", "namespace": "edge"}, "access", 7, False),
    ({"app": "mixed", "env": "dev", "cluster": "us", "namespace": "misc"}, "mixed", 19, False),
]


def dataset(base_ns):
    """Streams over the hour before base, every timestamp unique."""
    rng = random.Random(SEED)
    out = []
    for k, (labels, kind, gap, unique) in enumerate(STREAMS):
        t = base_ns - HOUR_NS + rng.randint(0, gap * 10**9)
        entries = []
        i = 0
        while t < base_ns:
            # a distinct low part per stream keeps every timestamp unique
            ts = t - t % 1000 + k * 37 + 1
            if kind == "json":
                _, line = json_line(rng, labels["app"], i, unique)
            elif kind == "logfmt":
                _, line = logfmt_line(rng, labels["app"], i, unique)
            elif kind == "plain":
                _, line = plain_line(rng, ts)
            elif kind == "access":
                _, line = access_line(rng)
            elif kind == "packed":
                _, line = packed_line(rng, labels["level"])
            else:
                _, line = mixed_line(rng, labels["app"], i)
            entries.append([ts, line])
            i += 1
            t += int(rng.uniform(0.3, 1.7) * gap * 10**9)
        out.append({"labels": labels, "entries": entries})
    return out


# --------------------------------------------------------------------------
# The corpus
# --------------------------------------------------------------------------

def corpus():
    """(query, kind) pairs; kind is "log" or "metric"."""
    q = []

    def log(s):
        q.append((s, "log"))

    def met(s):
        q.append((s, "metric"))

    sels = [
        '{app="api"}',
        '{app="web", env="prod"}',
        '{env="prod", app=~"db|proxy"}',
        '{namespace="jobs"}',
        '{app="mixed"}',
        '{cluster="us", app!="proxy"}',
        '{app=~"w.*"}',
        '{app="db", env!~"stag.*"}',
    ]
    # selectors, line filters
    for s in sels:
        log(s)
    filters = [
        '|= "error"',
        '!= "GET"',
        '|~ "status=5[0-9]{2}"',
        '!~ "(?i)get"',
        '|= "users" != "POST"',
        '|~ "took [0-9]+ms"',
        '|= "" ',
        '|= "ü"',
        '|~ `"status":4\\d\\d`',
        '|= "error" or "warn"',
        '|= "timeout" |= "db"',
        '|~ "^10\\\\.0\\\\.1"',
        '|= `"level":"warn"`',
    ]
    for s in ['{app="api"}', '{app="web"}', '{app="db"}', '{env="prod"}', '{app="mixed"}', '{app="proxy"}']:
        for f in filters:
            log(f"{s} {f}")
    # parsers
    log('{app="api"} | json')
    log('{app="api", cluster="eu"} | json | line_format "{{.level}} {{.method}} {{.path}}"')
    log('{app="api"} | json level, st="status", u="user.name"')
    log('{app="api"} | json first_tag="tags[0]", uid="user[\\"id\\"]"')
    log('{app="web"} | logfmt')
    log('{app="web"} | logfmt level, d="duration"')
    log('{app="web"} | logfmt --strict')
    log('{app="web"} | logfmt --keep-empty')
    log('{app="mixed"} | json')
    log('{app="mixed"} | logfmt')
    log('{app="mixed"} | json | __error__=""')
    log('{app="mixed"} | json | __error__!=""')
    log('{app="mixed"} | logfmt | __error__="" | drop __error__, __error_details__')
    log('{app="db"} | regexp `\\[(?P<lvl>[A-Z]+)\\] (?P<op>\\w+) on (?P<table>\\w+) took (?P<took>\\S+)`')
    log('{app="db"} | regexp "rows=(?P<rows>\\\\d+)" | rows > 4000')
    log('{app="db"} | pattern `<_> [<lvl>] <op> on <table> took <took> rows=<rows> size=<size>`')
    log('{app="proxy"} | pattern `<ip> - - "<method> <path> <_>" <status> <size> "<agent>" <secs>`')
    log('{app="proxy"} | pattern `<ip> - - "<method> <path> <_>" <status> <_>` | status >= 400')
    log('{namespace="jobs"} | unpack')
    log('{namespace="jobs"} | unpack | job="email"')
    log('{namespace="jobs"} | unpack | line_format "{{.worker}}: {{__line__}}"')
    log('{app="api"} | json | user_name="bob" | line_format "{{.method}} {{.status}}"')
    # label filters
    lf = [
        'status >= 500',
        'status == 200',
        'status != 200',
        'status > 399 and status < 500',
        'level="error" or level="warn"',
        'level=~"warn|error", method!="GET"',
        'method="POST" and path="/login"',
        'latency > 100ms',
        'latency <= 5ms',
        'latency >= 1s or status >= 500',
        'bytes > 10KB',
        'bytes < 500B',
        'user_id > 30',
        'latency_ms > 500.5',
        'ok="true"',
        'level!="info" | status < 500',
    ]
    for f in lf:
        log(f'{{app="api"}} | json | {f} | line_format "{{{{.level}}}} {{{{.status}}}} {{{{.latency}}}} {{{{.bytes}}}}"')
    lf2 = [
        'duration > 250ms',
        'duration < 1ms',
        'size >= 1MB',
        'size > 20KiB and size < 50KB',
        'status =~ "5.."',
        'user != "alice" and level = "warn"',
        '(status = 200 or status = 204) and duration > 20ms',
    ]
    for f in lf2:
        log(f'{{app="web"}} | logfmt | {f} | keep level, status, duration, size')
    log('{app="db"} | pattern `<_> [<lvl>] <_> took <took> rows=<rows> size=<size>` | took > 1s | size > 40KB')
    # formatting
    log('{app="web", env="prod"} | logfmt | line_format "{{.method | ToLower}} {{.path | ToUpper}} {{.status}}"')
    log('{app="web"} | logfmt | line_format "{{if eq .level \\"error\\"}}E{{else}}-{{end}} {{.user | title}}"')
    log('{app="web"} | logfmt | line_format "{{.msg | default \\"none\\"}} {{len .user}}"')
    log('{app="web"} | logfmt | line_format "{{printf \\"%5s|%-6s|\\" .method .user}}"')
    log('{app="web"} | logfmt | line_format "{{ __line__ | trunc 20 }}"')
    log('{app="web"} | logfmt | line_format `{{ replace "/" "_" .path }}`')
    log('{app="web"} | logfmt | line_format `{{ trimPrefix "/api" .path }}|{{ .path | trimSuffix "s" }}`')
    log('{app="web"} | logfmt | line_format `{{ if and (eq .method "GET") (gt (len .user) 3) }}long{{ end }}`')
    log('{app="web"} | logfmt | line_format `{{ .status }}` |= "50"')
    log('{app="api"} | json | label_format lvl=level')
    log('{app="api"} | json | label_format route="{{.method}} {{.path}}" | keep route')
    log('{app="api"} | json | label_format status="{{.status}}x", level=method | drop request_id')
    log('{app="web"} | logfmt | drop request_id, user, msg')
    log('{app="web"} | logfmt | keep level, method')
    log('{app="web"} | logfmt | drop level="info", method=~"G.*"')
    log('{app="web"} | logfmt | keep app, level="error"')
    log('{app="web"} | logfmt | drop __error__')
    log('{app="proxy"} | line_format "{{.app}}/{{.cluster}}"')
    log('{app="mixed"} | decolorize')
    # limit and direction cases are added in record(); metric queries:
    rsel = [
        '{app="api"}',
        '{env="prod"}',
        '{app="web"} |= "error"',
        '{app="db"} |~ "select|update"',
        '{app=~"api|web"} != "GET"',
        '{namespace="jobs"}',
    ]
    for agg in ["count_over_time", "rate", "bytes_over_time", "bytes_rate", "absent_over_time"]:
        for s in rsel:
            met(f"{agg}({s}[5m])")
        met(f'{agg}({{app="nope"}}[5m])')
        met(f'{agg}({{app="web"}} | logfmt | level="error" [1m])')
        met(f'{agg}({{app="db"}}[10m] offset 10m)')
    met('count_over_time({app="api"}[30s])')
    met('count_over_time({app="api"}[1h])')
    met('count_over_time({app="api"}[90s])')
    met('rate({app="proxy"}[2m])')
    # unwrapped range aggregations
    unwraps = [
        '{app="api"} | json level, method, latency_ms | unwrap latency_ms',
        '{app="api"} | json level, latency | unwrap duration(latency)',
        '{app="api"} | json level, latency | unwrap duration_seconds(latency)',
        '{app="api"} | json bytes | unwrap bytes(bytes)',
        '{app="web"} | logfmt level, method, duration | unwrap duration(duration)',
        '{app="web"} | logfmt level, size | unwrap bytes(size)',
        '{app="db"} | regexp "rows=(?P<rows>\\\\d+)" | unwrap rows',
        '{app="proxy"} | pattern `<_> <_> <_> "<_> <_> <_>" <_> <_> "<_>" <secs>` | unwrap secs',
        '{app="mixed"} | logfmt level, status | unwrap status',
        '{app="api"} | json | status >= 400 | keep app, cluster, level, latency_ms | unwrap latency_ms | __error__=""',
        '{app="api"} | json | unwrap latency_ms',
    ]
    uaggs = [
        "sum_over_time", "avg_over_time", "max_over_time", "min_over_time", "first_over_time",
        "last_over_time", "stdvar_over_time", "stddev_over_time", "rate", "rate_counter",
        "absent_over_time",
    ]
    for u in uaggs:
        for i, s in enumerate(unwraps):
            if i == 10:
                met(f"sum by (level) ({u}({s} [5m]))")
            elif i in (0, 1, 3, 4, 5, 6) or u in ("sum_over_time", "avg_over_time", "max_over_time"):
                met(f"{u}({s} [5m])")
    for phi in ["0.5", "0.99", "0", "1"]:
        met(f"quantile_over_time({phi}, {unwraps[0]} [5m])")
        met(f"quantile_over_time({phi}, {unwraps[4]} [10m]) by (level)")
    met(f"avg_over_time({unwraps[4]} [5m]) by (level, method)")
    met('max_over_time({app="web"} | logfmt | unwrap duration(duration) [5m]) without (user, path, status, size, msg, request_id)')
    met(f"sum_over_time({unwraps[6]} [5m] offset 5m)")
    met('sum by (job) (sum_over_time({namespace="jobs"} | unpack | unwrap attempt [10m]))')
    met('sum by (job) (count_over_time({namespace="jobs"} | unpack [10m]))')
    # vector aggregations
    base = [
        'count_over_time({env="prod"}[5m])',
        'rate({app="web"} | logfmt | level=~"warn|error" | keep app, cluster, level, method [5m])',
        'sum_over_time({app="api"} | json method, latency_ms | unwrap latency_ms [5m])',
        'bytes_over_time({cluster="eu"}[10m])',
    ]
    for b in base:
        for agg in ["sum", "avg", "min", "max", "count", "stddev", "stdvar"]:
            met(f"{agg}({b})")
            met(f"{agg} by (app) ({b})")
            met(f"{agg} without (cluster, namespace) ({b})")
        for k in ["topk(2, {})", "bottomk(3, {})", "topk(1, {}) by (app)", "bottomk(1, {}) by (env)",
                  "sort({})", "sort_desc({})"]:
            met(k.format(b))
    met('sum by (level) (count_over_time({app="web"} | logfmt | drop request_id [5m]))')
    met('sum by (method, status) (count_over_time({app="api"} | json | drop request_id [5m]))')
    met('sum by (level) (count_over_time({app="web"} | logfmt [5m]))')
    met('count(sum by (request_id) (count_over_time({app="api", cluster="eu"} | json [5m])))')
    met('sum by (user_name) (rate({app="api"} | json | keep user_name [5m]))')
    met('sum by (lvl) (count_over_time({app="db"} | pattern `<_> [<lvl>] <_>` [5m]))')
    met('sum by (op, table) (count_over_time({app="db"} | regexp "\\\\] (?P<op>\\\\w+) on (?P<table>\\\\w+)" [5m]))')
    met('avg by (cluster) (avg_over_time({app="web"} | logfmt | unwrap bytes(size) [10m]))')
    met('topk(3, sum by (path) (count_over_time({app="api"} | json | keep path [10m])))')
    met('sum by (route) (count_over_time({app="api"} | json | label_format route="{{.method}} {{.path}}" | keep route [5m]))')
    met('count_over_time({app="mixed"} | json | __error__!="" [10m])')
    met('sum by (__error__) (count_over_time({app="mixed"} | json | keep __error__ [10m]))')
    met('count_over_time({app="web"} | line_format "{{.app}}" |= "web" [5m])')
    met('sum by (level) (count_over_time({app="web"} | logfmt | drop request_id, duration, size, path, user, msg, status, method [5m]))')
    met('sum by (status) (rate({app="proxy"} | pattern `<_> - - "<_>" <status> <_>` | status >= 300 [5m]))')
    met('sum(count_over_time({app="web"} | logfmt | duration > 1s [5m])) by (cluster)')
    met('sum(count_over_time({app="api"} | json [5m]))')
    met('count_over_time({app="api"} | json [5m])')  # too many series on Loki
    # binary operations
    a = 'sum by (app) (count_over_time({env="prod"}[5m]))'
    b = 'sum by (app) (count_over_time({env="prod"} |= "error" [5m]))'
    for op in ["+", "-", "*", "/", "%", "^"]:
        met(f"{a} {op} {b}")
    for op in ["==", "!=", ">", ">=", "<", "<="]:
        met(f"{a} {op} 50")
        met(f"{a} {op} bool 50")
        met(f"{a} {op} {b}")
        met(f"{a} {op} bool {b}")
    for op in ["and", "or", "unless"]:
        met(f"{a} {op} {b}")
        met(f'{a} {op} sum by (app) (count_over_time({{app=~"api|db"}}[5m]))')
    met(f"{b} / {a} * 100")
    met(f"{a} * 2 + 1")
    met(f"2 * {a}")
    met(f"-{a}")
    met(f"{a} / on (app) {b}")
    met(f'sum by (app, env) (count_over_time({{app="api"}}[5m])) / on (app) group_left sum by (app) (count_over_time({{app="api"}}[5m]))')
    met('sum by (app, cluster) (count_over_time({env="prod"}[5m])) / ignoring (cluster) group_left sum by (app) (count_over_time({env="prod"}[5m]))')
    met(f"{a} > bool 10 == bool 1")
    met("vector(1)")
    met("vector(1) + vector(2)")
    met(f"{a} + vector(1)")
    met("1 + 2 * 3")
    met('label_replace(count_over_time({app="api"}[5m]), "c", "$1", "cluster", "(.)u")')
    met('label_replace(sum by (app) (rate({env="prod"}[5m])), "a", "x-$1", "app", "(.*)")')
    met('sum(rate({app="api"}[5m])) by (cluster) * 60')
    met('max by (env) (sum_over_time({app="web"} | logfmt | unwrap bytes(size) [5m] offset 15m))')
    met('sum(count_over_time({app="api"}[5m] offset 30m)) - sum(count_over_time({app="api"}[5m]))')
    return list(dict.fromkeys(q))


# --------------------------------------------------------------------------
# Talking to the peer
# --------------------------------------------------------------------------


def http(url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def push(peer, streams):
    for s in streams:
        for i in range(0, len(s["entries"]), 500):
            chunk = s["entries"][i : i + 500]
            body = {"streams": [{"stream": s["labels"], "values": [[str(t), l] for t, l in chunk]}]}
            st, text = http(
                f"{peer}/loki/api/v1/push",
                json.dumps(body).encode(),
                {"Content-Type": "application/json"},
            )
            if st // 100 != 2:
                sys.exit(f"push refused: {st} {text[:300]!r}")


def relative(data, base_ns):
    """Makes a Loki `data` object's times relative to base (ns for entries, s for points)."""
    kind = data.get("resultType")
    res = data.get("result")
    if kind == "streams":
        out = []
        for s in res:
            out.append({"stream": s["stream"], "values": [[int(t) - base_ns, l] for t, l in s["values"]]})
        return {"resultType": kind, "result": out}
    if kind == "matrix":
        out = []
        for s in res:
            out.append({"metric": s["metric"], "values": [[rel_s(t, base_ns), v] for t, v in s["values"]]})
        return {"resultType": kind, "result": out}
    if kind == "vector":
        out = [{"metric": s["metric"], "value": [rel_s(s["value"][0], base_ns), s["value"][1]]} for s in res]
        return {"resultType": kind, "result": out}
    if kind == "scalar":
        return {"resultType": kind, "result": [rel_s(res[0], base_ns), res[1]]}
    return data


def rel_s(t, base_ns):
    # Loki writes points as seconds (float or int); keep millisecond precision
    return round(float(t) - base_ns / 1e9, 3)


def ask(peer, path, params):
    url = f"{peer}{path}?{urllib.parse.urlencode(params)}"
    st, body = http(url)
    try:
        j = json.loads(body)
    except ValueError:
        return {"status": "error", "http": st, "error": body.decode("utf-8", "replace").strip()}
    if st // 100 != 2 or j.get("status") != "success":
        return {"status": "error", "http": st, "error": j.get("error", body.decode("utf-8", "replace")).strip()}
    return {"status": "success", "data": j["data"]}


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    peer = sys.argv[1].rstrip("/")
    out_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "crates", "skopos", "tests", "logql_recorded"
    )
    st, body = http(f"{peer}/loki/api/v1/status/buildinfo")
    version = json.loads(body).get("version", "unknown") if st == 200 else "unknown"
    st, body = http(f"{peer}/loki/api/v1/labels")
    if st == 200 and json.loads(body).get("data"):
        sys.exit("the peer already holds data; start a fresh one")
    # base: a whole minute, a little in the past (Loki's ingesters answer the last 3 h)
    base_s = int(time.time()) // 60 * 60 - 60
    base_ns = base_s * 10**9
    streams = dataset(base_ns)
    push(peer, streams)
    print(f"pushed {sum(len(s['entries']) for s in streams)} entries in {len(streams)} streams to Loki {version}")
    time.sleep(2)

    records = []
    queries = corpus()
    for n, (qs, kind) in enumerate(queries):
        reqs = []
        if kind == "log":
            reqs.append(("/loki/api/v1/query_range", {"start": -3600, "end": 0, "limit": 25, "direction": "backward"}))
            if n % 6 == 0:
                reqs.append(("/loki/api/v1/query_range", {"start": -2400, "end": -1800, "limit": 200, "direction": "forward"}))
            if n % 5 == 1:
                reqs.append(("/loki/api/v1/query_range", {"start": -600, "end": -300, "limit": 7, "direction": "forward"}))
        else:
            reqs.append(("/loki/api/v1/query", {"time": 0}))
            reqs.append(("/loki/api/v1/query", {"time": -1800}))
            reqs.append(("/loki/api/v1/query_range", {"start": -3600, "end": 0, "step": 180}))
            if n % 4 == 0:
                reqs.append(("/loki/api/v1/query_range", {"start": -3000, "end": -1000, "step": 300}))
        for path, rel in reqs:
            params = {"query": qs}
            for k, v in rel.items():
                if k in ("start", "end", "time"):
                    params[k] = str(base_ns + v * 10**9)
                else:
                    params[k] = v
            ans = ask(peer, path, params)
            if ans["status"] == "success":
                ans["data"] = relative(ans["data"], base_ns)
            records.append({"query": qs, "path": path, "params": rel, **ans})
    # a log query asked as an instant query, and some malformed queries
    for qs in ['{app="api"}', '{app="api"} |= "x" | json', 'count_over_time({app="api"})',
               'sum(rate({app="api"}[5m]) by', '{app=""}', 'rate({app="api"} | unwrap x [5m])']:
        ans = ask(peer, "/loki/api/v1/query", {"query": qs, "time": str(base_ns)})
        records.append({"query": qs, "path": "/loki/api/v1/query", "params": {"time": 0}, **ans})

    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "dataset.jsonl"), "w") as f:
        for s in streams:
            rel_entries = [[t - base_ns, l] for t, l in s["entries"]]
            f.write(json.dumps({"labels": s["labels"], "entries": rel_entries}, ensure_ascii=False) + "\n")
    with open(os.path.join(out_dir, "answers.jsonl"), "w") as f:
        head = {
            "peer": "loki",
            "version": version,
            "seed": SEED,
            # Loki aligns metric range queries to multiples of the step since
            # the epoch, so a replay keeps the base's time of day
            "base_s": base_s,
            "recorded_at": time.strftime("%Y-%m-%d", time.gmtime()),
            "queries": len(queries),
        }
        f.write(json.dumps(head) + "\n")
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")
    errors = sum(1 for r in records if r["status"] == "error")
    print(f"{len(queries)} queries, {len(records)} requests ({errors} errors) written to {out_dir}")


if __name__ == "__main__":
    main()
