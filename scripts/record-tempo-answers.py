#!/usr/bin/env python3
"""Records a real Tempo's answers to a generated TraceQL corpus as fixture data.

    scripts/record-tempo-answers.py HTTP_URL OTLP_HTTP_URL [OUT_DIR]
    e.g. scripts/record-tempo-answers.py http://127.0.0.1:3200 http://127.0.0.1:4318

The peer must be a fresh, empty Tempo (2.2.x; run configuration in the
project's shared `peers/tempo.yaml`). The script knows nothing of how it was
built: it generates a deterministic set of traces (seeded), exports them as
OTLP/HTTP JSON to `OTLP_HTTP_URL/v1/traces`, waits until search sees all of
them, asks `HTTP_URL/api/search` every query of the generated corpus and
writes

    OUT_DIR/dataset.json    the OTLP/JSON export bodies, times relative to the base (ns)
    OUT_DIR/answers.jsonl   line 1 the peer's version, then one query per line with
                            the matching trace ids and, per trace, the spans of each
                            spanset (or the peer's error); a span is written as its
                            position among its trace's spans in dataset.json

OUT_DIR defaults to crates/skopos/tests/traceql_recorded;
`crates/skopos/tests/traceql_recorded.rs` replays them against skopos.
Uses only the Python standard library.
"""

import copy
import json
import os
import random
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

SEED = 7031
TRACES = 160
MS = 10**6


class Gen:
    def __init__(self, rng):
        self.rng = rng

    def hexid(self, n):
        return "".join(self.rng.choice("0123456789abcdef") for _ in range(n))


def attr(k, v):
    if isinstance(v, bool):
        return {"key": k, "value": {"boolValue": v}}
    if isinstance(v, int):
        return {"key": k, "value": {"intValue": str(v)}}
    if isinstance(v, float):
        return {"key": k, "value": {"doubleValue": v}}
    return {"key": k, "value": {"stringValue": v}}


SERVICES = {
    "frontend": {"service.namespace": "shop", "host.name": "web-1", "process.pid": 101},
    "api": {"service.namespace": "shop", "host.name": "api-1", "process.pid": 202},
    "auth": {"service.namespace": "identity", "host.name": "auth-1", "process.pid": 303},
    "db": {"service.namespace": "data", "host.name": "db-1", "process.pid": 404},
    "cache": {"service.namespace": "data", "host.name": "cache-1", "process.pid": 505},
    "worker": {"service.namespace": "jobs", "host.name": "worker-1", "process.pid": 606},
    "payments": {"service.namespace": "shop", "host.name": "pay-1", "process.pid": 707},
}

# OTLP/JSON writes enums as integers
KIND = {"unspecified": 0, "internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
STATUS = {"unset": 0, "ok": 1, "error": 2}


def trace(g, trace_id, start_ns, env):
    """One trace as a list of (service, span) with nested spans."""
    rng = g.rng
    spans = []

    def span(service, name, kind, parent, start, dur, attrs, status="unset", msg=None):
        sid = g.hexid(16)
        s = {
            "traceId": trace_id,
            "spanId": sid,
            "name": name,
            "kind": KIND[kind],
            "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(start + dur),
            "attributes": [attr(k, v) for k, v in attrs.items()],
            "status": {"code": STATUS[status]},
        }
        if parent:
            s["parentSpanId"] = parent
        if msg:
            s["status"]["message"] = msg
        spans.append((service, s))
        return sid

    shape = rng.choice(["checkout", "checkout", "browse", "login", "job", "search"])
    total = int(rng.uniform(5, 900) * MS)
    fail = rng.random() < 0.2
    method = {"checkout": "POST", "browse": "GET", "login": "POST", "job": "GET", "search": "GET"}[shape]
    route = {"checkout": "/checkout", "browse": "/products/{id}", "login": "/login",
             "job": "/jobs/run", "search": "/search"}[shape]
    code = 500 if fail else rng.choice([200, 200, 200, 201, 304])
    root_service = "worker" if shape == "job" else "frontend"
    root_kind = "consumer" if shape == "job" else "server"
    root = span(root_service, f"{method} {route}", root_kind, None, start_ns, total,
                {"http.method": method, "http.route": route, "http.status_code": code,
                 "http.url": f"https://shop.example{route}", "sample.ratio": round(rng.random(), 3)},
                "error" if fail else rng.choice(["unset", "unset", "ok"]),
                "upstream failed" if fail else None)
    t = start_ns + int(rng.uniform(0.1, 2) * MS)
    if shape in ("checkout", "browse", "search"):
        # frontend client -> api server -> (auth, db, cache, payments)
        d_api = int(total * rng.uniform(0.5, 0.9))
        cl = span("frontend", f"HTTP {method}", "client", root, t, d_api,
                  {"http.method": method, "net.peer.name": "api"},
                  "error" if fail else "unset")
        srv = span("api", f"{method} /api{route}", "server", cl, t + MS // 10, d_api - MS // 5,
                   {"http.method": method, "http.route": "/api" + route, "http.status_code": code},
                   "error" if fail and rng.random() < 0.7 else "unset")
        u = t + MS // 2
        if rng.random() < 0.7:
            hit = rng.random() < 0.5
            span("api", "cache.get", "client", srv, u, int(rng.uniform(0.1, 3) * MS),
                 {"cache.hit": hit, "db.system": "redis", "cache.key.count": rng.randint(1, 9)})
            u += 3 * MS
        if shape == "checkout":
            a = span("api", "authorize", "internal", srv, u, int(rng.uniform(1, 20) * MS),
                     {"user.id": rng.randint(1, 50), "user.tier": rng.choice(["free", "gold"])})
            span("auth", "check token", "internal", a, u + MS // 4, int(rng.uniform(0.5, 10) * MS),
                 {"token.valid": not fail, "auth.method": rng.choice(["jwt", "session"])},
                 "error" if fail and rng.random() < 0.5 else "ok")
            u += 20 * MS
            p = span("api", "payments.charge", "client", srv, u, int(rng.uniform(10, 200) * MS),
                     {"payment.amount": round(rng.uniform(1, 500), 2), "payment.currency": "EUR"})
            span("payments", "charge", "server", p, u + MS, int(rng.uniform(5, 150) * MS),
                 {"payment.amount": round(rng.uniform(1, 500), 2), "payment.provider": rng.choice(["stripe", "adyen"])},
                 "error" if fail else "ok", "card declined" if fail else None)
            pr = span("api", "orders publish", "producer", srv, u + 2 * MS, int(rng.uniform(0.5, 4) * MS),
                      {"messaging.system": "kafka", "messaging.destination": "orders"})
            span("worker", "orders process", "consumer", pr, u + 30 * MS, int(rng.uniform(5, 60) * MS),
                 {"messaging.system": "kafka", "messaging.destination": "orders", "retry": rng.randint(0, 3)})
        for _ in range(rng.randint(1, 3)):
            q = span("api", "db query", "client", srv, u, int(rng.uniform(0.5, 80) * MS),
                     {"db.system": "postgresql", "db.statement": rng.choice(["SELECT 1", "SELECT * FROM items", "UPDATE carts"]),
                      "db.rows": rng.randint(0, 1000)})
            span("db", rng.choice(["SELECT items", "UPDATE carts"]), "server", q, u + MS // 10, int(rng.uniform(0.2, 60) * MS),
                 {"db.system": "postgresql", "db.rows": rng.randint(0, 1000)},
                 "error" if fail and rng.random() < 0.3 else "unset")
            u += 5 * MS
    elif shape == "login":
        a = span("frontend", "HTTP POST", "client", root, t, int(total * 0.8), {"http.method": "POST"})
        srv = span("auth", "POST /login", "server", a, t + MS // 10, int(total * 0.7),
                   {"http.method": "POST", "http.route": "/login", "http.status_code": code},
                   "error" if fail else "ok")
        span("auth", "hash password", "internal", srv, t + MS, int(total * 0.3), {"bcrypt.cost": 12})
        span("auth", "db query", "client", srv, t + 2 * MS, int(rng.uniform(1, 30) * MS),
             {"db.system": "postgresql", "db.rows": 1})
    else:  # job
        for i in range(rng.randint(2, 5)):
            s = span("worker", f"step {i}", "internal", root, t + i * 3 * MS, int(rng.uniform(1, 40) * MS),
                     {"step": i, "job.kind": rng.choice(["email", "report"])},
                     "error" if fail and i == 0 else "unset")
            if rng.random() < 0.5:
                span("worker", "cache.get", "client", s, t + i * 3 * MS + MS // 2, int(rng.uniform(0.1, 2) * MS),
                     {"cache.hit": rng.random() < 0.5, "db.system": "redis"})
    return spans


def dataset(base_ns):
    """OTLP/JSON export bodies (one per 20 traces), times absolute."""
    rng = random.Random(SEED)
    g = Gen(rng)
    bodies = []
    body_spans = []
    for n in range(TRACES):
        trace_id = g.hexid(32)
        # within the last 20 minutes: Tempo 2.2 searches its ingesters only for the last 30
        start = base_ns - 1200 * 10**9 + n * 7 * 10**9 + rng.randint(0, 10**9)
        env = "prod" if rng.random() < 0.75 else "staging"
        for service, s in trace(g, trace_id, start, env):
            body_spans.append((service, env, s))
        if n % 20 == 19 or n == TRACES - 1:
            bodies.append(otlp_body(body_spans))
            body_spans = []
    return bodies


def otlp_body(spans):
    by_res = {}
    for service, env, s in spans:
        by_res.setdefault((service, env), []).append(s)
    rs = []
    for (service, env), ss in sorted(by_res.items()):
        res = {"service.name": service, "deployment.environment": env, **SERVICES[service]}
        rs.append({
            "resource": {"attributes": [attr(k, v) for k, v in res.items()]},
            "scopeSpans": [{"scope": {"name": "recorder", "version": "1.0"}, "spans": ss}],
        })
    return {"resourceSpans": rs}


def shift(bodies, delta):
    out = copy.deepcopy(bodies)
    for b in out:
        for rs in b["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for s in ss["spans"]:
                    s["startTimeUnixNano"] = str(int(s["startTimeUnixNano"]) + delta)
                    s["endTimeUnixNano"] = str(int(s["endTimeUnixNano"]) + delta)
    return out


# --------------------------------------------------------------------------
# The corpus
# --------------------------------------------------------------------------


# [first, end) of the generated combinations within the corpus
GENERATED = []


def corpus():
    GENERATED.clear()
    q = []
    add = q.append
    # intrinsics
    for s in ["ok", "error", "unset"]:
        add(f"{{ status = {s} }}")
        add(f"{{ status != {s} }}")
    for k in ["server", "client", "internal", "producer", "consumer", "unspecified"]:
        add(f"{{ kind = {k} }}")
    add("{ kind != server }")
    for d in ["100ms", "1ms", "250us", "1s", "50ms"]:
        add(f"{{ duration > {d} }}")
        add(f"{{ duration <= {d} }}")
    add("{ duration >= 10ms && duration < 20ms }")
    add('{ name = "POST /checkout" }')
    add('{ name != "db query" }')
    add('{ name =~ "GET .*" }')
    add('{ name !~ ".*query.*" }')
    add('{ name =~ "step [0-2]" }')
    add('{ rootName = "POST /login" }')
    add('{ rootName =~ "GET.*" }')
    add('{ rootServiceName = "worker" }')
    add('{ rootServiceName != "frontend" }')
    add("{ traceDuration > 500ms }")
    add("{ traceDuration < 50ms }")
    add("{ traceDuration > 300ms && kind = server }")
    add("{ childCount > 2 }")
    add("{ parent = nil }")
    add("{ }")
    add("{ true }")
    add("{ false }")
    add("{ 1 = 1 }")
    add('{ "a" = "a" }')
    # attributes, each type, each scope
    add('{ span.http.method = "GET" }')
    add('{ span.http.method != "GET" }')
    add('{ .http.method = "POST" }')
    add('{ span.http.status_code = 500 }')
    add("{ span.http.status_code >= 300 }")
    add("{ .http.status_code < 201 }")
    add("{ span.http.status_code != 200 }")
    add("{ span.sample.ratio > 0.5 }")
    add("{ span.sample.ratio <= 0.25 }")
    add("{ .payment.amount > 250.5 }")
    add("{ .payment.amount < 10 }")
    add("{ span.cache.hit = true }")
    add("{ span.cache.hit != true }")
    add("{ .cache.hit = false }")
    add("{ span.token.valid = false }")
    add('{ span.http.route =~ "/api/.*" }')
    add('{ span.http.route !~ ".*check.*" }')
    add('{ span.db.statement =~ "SELECT.*" }')
    add('{ span.db.system = "redis" }')
    add('{ span.db.system != "postgresql" }')
    add("{ span.db.rows > 900 }")
    add("{ span.retry >= 2 }")
    add("{ span.step = 0 }")
    add('{ span.job.kind = "report" }')
    add('{ resource.service.name = "api" }')
    add('{ resource.service.name != "api" }')
    add('{ resource.service.name =~ "a.*" }')
    add('{ .service.name = "db" }')
    add('{ resource.service.namespace = "data" }')
    add('{ resource.deployment.environment = "staging" }')
    add('{ .deployment.environment = "prod" }')
    add("{ resource.process.pid = 303 }")
    add("{ resource.process.pid > 500 }")
    add('{ resource.host.name = "api-1" }')
    add('{ span.service.name = "api" }')
    add('{ resource.http.method = "GET" }')
    add('{ .nope = "x" }')
    add("{ .nope != 1 }")
    add('{ span.messaging.destination = "orders" }')
    add('{ .messaging.system = "kafka" && kind = consumer }')
    add('{ span.payment.provider = "stripe" }')
    add('{ span.user.tier = "gold" && span.user.id > 25 }')
    add('{ .auth.method = "jwt" || .auth.method = "session" }')
    add("{ span.bcrypt.cost = 12 }")
    add("{ span.http.status_code = 500 && status = error }")
    add("{ span.http.status_code = 500 && status != error }")
    add('{ resource.service.name = "payments" && status = error }')
    add('{ (span.http.method = "GET" || span.http.method = "POST") && duration > 100ms }')
    add('{ !(span.http.method = "GET") }')
    add("{ span.http.status_code + 100 > 600 }")
    add("{ span.http.status_code * 2 = 400 }")
    add("{ span.payment.amount / 2 > 100 }")
    add("{ duration - 10ms > 100ms }")
    add("{ span.db.rows % 2 = 0 }")
    add("{ span.db.rows = span.db.rows }")
    add('{ span.http.method = "GET" && resource.service.name = "frontend" }')
    add('{ resource.service.name = "api" || resource.service.name = "auth" }')
    add('{ kind = client && span.db.system = "postgresql" && duration > 40ms }')
    add('{ kind = server && status = error && resource.deployment.environment = "prod" }')
    add('{ name = "charge" && span.payment.amount > 100 }')
    add('{ span.http.url =~ "https://shop.example/.*" }')
    add('{ span.http.url = "https://shop.example/login" }')
    # spanset operators
    add('{ resource.service.name = "payments" } && { resource.service.name = "worker" }')
    add('{ resource.service.name = "payments" } || { resource.service.name = "auth" }')
    add("{ status = error } && { kind = consumer }")
    add('{ span.cache.hit = true } && { span.cache.hit = false }')
    add('{ name = "charge" } || { name = "check token" } || { name = "hash password" }')
    add('({ status = error } || { duration > 500ms }) && { resource.service.name = "db" }')
    # structure
    add('{ resource.service.name = "frontend" } > { resource.service.name = "api" }')
    add('{ kind = client } > { kind = server }')
    add('{ kind = client } > { kind = server && status = error }')
    add('{ name = "authorize" } > { name = "check token" }')
    add('{ resource.service.name = "frontend" } >> { resource.service.name = "db" }')
    add('{ kind = server } >> { kind = consumer }')
    add('{ } >> { status = error }')
    add('{ rootServiceName = "worker" } >> { span.cache.hit = true }')
    add('{ name = "db query" } ~ { name = "cache.get" }')
    add('{ kind = internal } ~ { kind = client }')
    add('{ name = "payments.charge" } ~ { name = "orders publish" }')
    add('{ span.step = 0 } ~ { span.step = 1 }')
    add('{ } ~ { }')
    add('{ } > { }')
    add('{ kind = server } > { } > { kind = server }')
    add('({ kind = client } > { kind = server }) && { status = error }')
    add('{ resource.service.name = "api" } >> ({ kind = server } || { kind = consumer })')
    add('({ resource.service.name = "frontend" } > { resource.service.name = "api" }) | count() > 1')
    # pipelines
    for cmp_ in ["> 5", ">= 10", "= 1", "< 3", "!= 4"]:
        add(f"{{ }} | count() {cmp_}")
    add("{ status = error } | count() >= 2")
    add("{ kind = client } | count() > 3")
    add("{ } | avg(duration) > 50ms")
    add("{ kind = server } | avg(duration) < 20ms")
    add("{ } | min(duration) < 200us")
    add("{ } | max(duration) > 800ms")
    add("{ } | sum(duration) > 2s")
    add("{ span.db.rows > 0 } | sum(span.db.rows) > 1500")
    add("{ span.http.status_code > 0 } | max(span.http.status_code) >= 500")
    add("{ span.http.status_code > 0 } | min(span.http.status_code) = 200")
    add("{ span.payment.amount > 0 } | avg(span.payment.amount) > 200")
    add("{ } | by(resource.service.name)")
    add("{ } | by(kind)")
    add("{ status = error } | by(resource.service.name)")
    add("{ } | by(resource.service.name) | count() > 3")
    add("{ } | by(span.http.method) | count() >= 2")
    add("{ } | by(name) | avg(duration) > 100ms")
    add("{ kind = client } | by(span.db.system) | count() > 1")
    add("{ } | by(status) | count() = 1")
    add("{ span.http.status_code >= 200 } | by(span.http.status_code)")
    add("{ } | select(span.http.route)")
    add("{ status = error } | select(resource.host.name, span.http.status_code)")
    add('{ resource.service.name = "db" } | select(span.db.rows, duration)')
    add("{ } | by(resource.service.name) | coalesce()")
    add("{ kind = server } | count() > 1 | by(resource.service.name)")
    add("{ status = error } | { kind = server }")
    add("{ kind = server } | { status = error } | count() > 0")
    add("({ kind = server } | count()) > 2")
    add("({ } | count()) > ({ kind = client } | count())")
    add("({ status = error } | count()) + 1 > 3")
    add("{ } | count() > 2 && { status = error }")
    # combinations of simple filters: spanset operators, structure, pipelines
    # (main() drops those of them that match nothing, but for a few)
    GENERATED.append(len(q))
    simple = [
        '{ resource.service.name = "frontend" }',
        '{ resource.service.name = "api" }',
        '{ resource.service.name = "db" }',
        '{ resource.service.name = "worker" }',
        '{ kind = server }',
        '{ kind = client }',
        '{ kind = internal }',
        '{ status = error }',
        '{ duration > 20ms }',
        '{ span.db.system = "postgresql" }',
        '{ span.cache.hit = true }',
        '{ span.http.status_code >= 500 }',
        '{ name = "db query" }',
        '{ resource.deployment.environment = "staging" }',
    ]
    for i, a in enumerate(simple):
        for j, b in enumerate(simple):
            if i == j:
                continue
            if (i + j) % 4 == 0:
                add(f"{a} && {b}")
            if (i + 2 * j) % 5 == 0:
                add(f"{a} || {b}")
            if (i * 3 + j) % 5 == 1:
                add(f"{a} > {b}")
            if (i + j * 3) % 5 == 2:
                add(f"{a} >> {b}")
            if (2 * i + j) % 7 == 3:
                add(f"{a} ~ {b}")
    for i, a in enumerate(simple):
        add(f"{a} | count() > {1 + i % 4}")
        if i % 2 == 0:
            add(f"{a} | by(resource.service.name) | count() >= 2")
        if i % 3 == 0:
            add(f"{a} | avg(duration) > {5 + 10 * i}ms")
        if i % 3 == 1:
            add(f"{a} | select(span.http.method, resource.deployment.environment)")
    GENERATED.append(len(q))
    # malformed: both should refuse
    add("{ span.http.method = }")
    add("{ kind = nope }")
    add('{ .a = "x" } |')
    add("{ duration > 1 }")
    add('{ status = "error" }')
    add("{ } | sum(name) > 1")
    add('{ name =~ "(" }')
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


def span_indexes(bodies):
    """trace id -> span id -> the span's position among its trace's spans in the
    dataset; also (start, duration) -> position, for the spans Tempo 2.2 returns
    without their id (all zeros) in some spansets."""
    out = {}
    for b in bodies:
        for rs in b["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for s in ss["spans"]:
                    t = out.setdefault(s["traceId"], {"ids": {}, "times": []})
                    pos = len(t["ids"])
                    t["ids"][s["spanId"]] = pos
                    start, end = int(s["startTimeUnixNano"]), int(s["endTimeUnixNano"])
                    t["times"].append((start, end - start, pos))
    return out


def position(trace, span):
    """A returned span's position in the dataset, or None."""
    sid = span["spanID"].lower().rjust(16, "0")
    if sid in trace["ids"]:
        return trace["ids"][sid]
    start, dur = span.get("startTimeUnixNano"), span.get("durationNanos")
    found = [
        pos for (s, d, pos) in trace["times"]
        if (start is None or int(start) == s) and (dur is None or int(dur) == d)
    ]
    if (start is not None or dur is not None) and len(found) == 1:
        return found[0]
    return None


def search(peer, q, start_s, end_s, index):
    params = {"q": q, "start": start_s, "end": end_s, "limit": 1000, "spss": 1000}
    st, body = http(f"{peer}/api/search?{urllib.parse.urlencode(params)}")
    if st != 200:
        return {"status": "error", "http": st, "error": body.decode("utf-8", "replace").strip()}
    j = json.loads(body)
    traces = {}
    for t in j.get("traces") or []:
        sets = t.get("spanSets") or ([t["spanSet"]] if t.get("spanSet") else [])
        out = []
        for ss in sets:
            trace = index.get(normal_id(t["traceID"]), {"ids": {}, "times": []})
            found = [position(trace, s) for s in ss.get("spans") or []]
            entry = {"spans": sorted(p for p in found if p is not None), "matched": ss.get("matched", 0)}
            if None in found:
                entry["unknown_spans"] = found.count(None)
            attrs = sorted(
                (a["key"], json.dumps(a["value"], sort_keys=True))
                for a in ss.get("attributes") or []
            )
            if attrs:
                entry["attributes"] = [[k, json.loads(v)] for k, v in attrs]
            out.append(entry)
        out.sort(key=lambda e: json.dumps(e, sort_keys=True))
        traces[normal_id(t["traceID"])] = out
    return {"status": "success", "traces": dict(sorted(traces.items()))}


def normal_id(tid):
    # Tempo drops leading zeros of trace ids in search results
    return tid.lower().rjust(32, "0")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    peer = sys.argv[1].rstrip("/")
    otlp = sys.argv[2].rstrip("/")
    out_dir = sys.argv[3] if len(sys.argv) > 3 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "crates", "skopos", "tests", "traceql_recorded"
    )
    st, body = http(f"{peer}/api/status/buildinfo")  # Tempo 2.3+
    if st == 200:
        version = json.loads(body).get("version", "unknown")
    else:  # Tempo 2.2: "tempo, version 2.2.4 (branch: ...)"
        st, body = http(f"{peer}/status/version")
        text = body.decode("utf-8", "replace")
        version = text.split("version ", 1)[1].split()[0] if st == 200 and "version " in text else "unknown"
    base_s = int(time.time()) // 60 * 60 - 60
    base_ns = base_s * 10**9
    bodies = dataset(base_ns)
    held = search(peer, "{ }", base_s - 86400, base_s + 600, {})
    if held.get("traces"):
        sys.exit("the peer already holds traces; start a fresh one")
    n_spans = 0
    for b in bodies:
        st, text = http(f"{otlp}/v1/traces", json.dumps(b).encode(), {"Content-Type": "application/json"})
        if st // 100 != 2:
            sys.exit(f"export refused: {st} {text[:300]!r}")
        n_spans += sum(len(ss["spans"]) for rs in b["resourceSpans"] for ss in rs["scopeSpans"])
    print(f"exported {TRACES} traces, {n_spans} spans to Tempo {version}")
    start_s, end_s = base_s - 7200, base_s + 600
    deadline = time.time() + 120
    while True:
        got = search(peer, "{ }", start_s, end_s, {})
        if got["status"] == "success" and len(got["traces"]) == TRACES:
            break
        if time.time() > deadline:
            sys.exit(f"search sees {len(got.get('traces', {}))} of {TRACES} traces")
        time.sleep(2)
    records = []
    index = span_indexes(bodies)
    queries = corpus()
    first, end = GENERATED
    kept_empty = 0
    for n, qs in enumerate(queries):
        ans = search(peer, qs, start_s, end_s, index)
        if first <= n < end and ans["status"] == "success" and not ans["traces"]:
            kept_empty += 1
            if kept_empty > 3:
                continue  # an empty answer proves little
        records.append({"query": qs, **ans})
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "dataset.json"), "w") as f:
        json.dump({"exports": shift(bodies, -base_ns)}, f, separators=(",", ":"))
        f.write("\n")
    with open(os.path.join(out_dir, "answers.jsonl"), "w") as f:
        head = {
            "peer": "tempo",
            "version": version,
            "seed": SEED,
            "recorded_at": time.strftime("%Y-%m-%d", time.gmtime()),
            "queries": len(records),
            "search": {"start": -7200, "end": 600, "limit": 1000, "spss": 1000},
        }
        f.write(json.dumps(head) + "\n")
        for r in records:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")
    errors = sum(1 for r in records if r["status"] == "error")
    print(f"{len(records)} queries ({errors} errors) written to {out_dir}")


if __name__ == "__main__":
    main()
