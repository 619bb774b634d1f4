"""Three services instrumented with the real OpenTelemetry Python SDK (each
its own TracerProvider and service.name) call one another over real HTTP on
loopback, passing W3C trace context in the headers, and export their spans
and logs to skopos over OTLP/HTTP. The stored trace has every span with the
right parent, attributes, events and status; span metrics and the service
graph show the three services; the logs they wrote inside the spans are found
from the trace."""

import logging
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from conftest import free_port, wait_for


class Service:
    """One instrumented service: a tracer, a logger, and an HTTP server
    whose handler runs `work(svc, path)` inside a SERVER span."""

    def __init__(self, name, sk, work):
        resource = Resource.create({"service.name": name, "deployment.environment": "test"})
        self.name = name
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"http://127.0.0.1:{sk.otlp_http}/v1/traces"))
        )
        self.tracer = self.tracer_provider.get_tracer(f"shop.{name}", "1.0.0")
        self.log_provider = LoggerProvider(resource=resource)
        self.log_provider.add_log_record_processor(
            SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"http://127.0.0.1:{sk.otlp_http}/v1/logs"))
        )
        self.logger = logging.getLogger(f"shop.{name}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=self.log_provider))
        self.port = free_port()
        svc = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                # urllib capitalises header names; the propagator looks for
                # lower-case ones.
                ctx = extract({k.lower(): v for k, v in self.headers.items()})
                token = otel_context.attach(ctx)
                try:
                    with svc.tracer.start_as_current_span(
                        f"GET {self.path}", kind=SpanKind.SERVER,
                        attributes={"http.request.method": "GET", "url.path": self.path},
                    ) as span:
                        code = work(svc, self.path)
                        span.set_attribute("http.response.status_code", code)
                        if code >= 500:
                            span.set_status(Status(StatusCode.ERROR, "upstream failed"))
                finally:
                    otel_context.detach(token)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def call(self, other, path):
        """A CLIENT span around a real HTTP call carrying the context."""
        with self.tracer.start_as_current_span(
            f"call {other.name}", kind=SpanKind.CLIENT,
            attributes={"peer.service": other.name, "server.port": other.port},
        ) as span:
            headers = {}
            inject(headers)
            req = urllib.request.Request(f"http://127.0.0.1:{other.port}{path}", headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    code = resp.status
            except urllib.error.HTTPError as e:
                code = e.code
            span.set_attribute("http.response.status_code", code)
            if code >= 500:
                span.set_status(Status(StatusCode.ERROR))
            return code

    def close(self):
        self.server.shutdown()
        self.tracer_provider.shutdown()
        self.log_provider.shutdown()


def test_three_services_trace_span_metrics_service_graph_and_logs(skopos_factory):
    sk = skopos_factory(
        ["--self-scrape-interval", "off", "--traces.span-metrics-interval", "1s"]
    ).start()
    services = {}

    def frontend(svc, path):
        svc.logger.info("checkout started")
        code = svc.call(services["cart"], "/cart")
        return 200 if code < 500 else 502

    def cart(svc, path):
        with svc.tracer.start_as_current_span("load cart") as span:
            span.add_event("cache miss", {"cache.key": "cart:42"})
            span.set_attribute("cart.items", 3)
        return svc.call(services["payments"], "/charge")

    def payments(svc, path):
        svc.logger.error("card declined for order 42")
        return 503

    try:
        services["payments"] = Service("payments", sk, payments)
        services["cart"] = Service("cart", sk, cart)
        services["frontend"] = Service("frontend", sk, frontend)
        fe = services["frontend"]
        with fe.tracer.start_as_current_span("user checkout", kind=SpanKind.INTERNAL) as root:
            trace_id = format(root.get_span_context().trace_id, "032x")
            code = fe.call(fe, "/checkout")
        assert code == 502
        for s in services.values():
            s.tracer_provider.force_flush(10_000)
            s.log_provider.force_flush(10_000)

        # The whole trace by id, in Tempo's OTLP JSON shape.
        r = requests.get(f"{sk.url}/api/v2/traces/{trace_id}", timeout=5)
        assert r.ok, r.text
        spans = {}
        for rs in r.json()["trace"]["resourceSpans"]:
            service = next(a["value"]["stringValue"] for a in rs["resource"]["attributes"]
                           if a["key"] == "service.name")
            for ss in rs["scopeSpans"]:
                for s in ss["spans"]:
                    spans[s["spanId"]] = (service, ss["scope"]["name"], s)
        by_name = {(svc, s["name"]): (scope, s) for svc, scope, s in spans.values()}
        assert sorted(by_name) == sorted([
            ("frontend", "user checkout"), ("frontend", "call frontend"), ("frontend", "GET /checkout"),
            ("frontend", "call cart"), ("cart", "GET /cart"), ("cart", "load cart"),
            ("cart", "call payments"), ("payments", "GET /charge"),
        ]), sorted(by_name)

        def parent_of(key):
            parent = by_name[key][1].get("parentSpanId", "")
            return (spans[parent][0], spans[parent][2]["name"]) if parent else None

        assert parent_of(("frontend", "user checkout")) is None
        assert parent_of(("frontend", "call frontend")) == ("frontend", "user checkout")
        assert parent_of(("frontend", "GET /checkout")) == ("frontend", "call frontend")
        assert parent_of(("frontend", "call cart")) == ("frontend", "GET /checkout")
        assert parent_of(("cart", "GET /cart")) == ("frontend", "call cart")
        assert parent_of(("cart", "load cart")) == ("cart", "GET /cart")
        assert parent_of(("cart", "call payments")) == ("cart", "GET /cart")
        assert parent_of(("payments", "GET /charge")) == ("cart", "call payments")
        assert all(s["traceId"] == trace_id for _, _, s in spans.values())

        scope, load = by_name[("cart", "load cart")]
        assert scope == "shop.cart"
        assert {"key": "cart.items", "value": {"intValue": "3"}} in load["attributes"] or \
            {"key": "cart.items", "value": {"intValue": 3}} in load["attributes"], load["attributes"]
        assert load["events"][0]["name"] == "cache miss"
        assert load["events"][0]["attributes"][0]["key"] == "cache.key"
        charge = by_name[("payments", "GET /charge")][1]
        assert charge["status"]["code"] == 2 and charge["status"]["message"] == "upstream failed"
        assert charge["kind"] == 2  # SERVER
        assert by_name[("cart", "call payments")][1]["kind"] == 3  # CLIENT

        # TraceQL finds it structurally.
        r = requests.get(f"{sk.url}/api/search", params={
            "q": '{ resource.service.name = "frontend" } >> { resource.service.name = "payments" && status = error }',
        }, timeout=10)
        assert r.ok, r.text
        assert [t["traceID"] for t in r.json()["traces"]] == [trace_id], r.text

        # Span metrics and the service graph reach the TSDB.
        def query(expr):
            r = requests.get(f"{sk.url}/api/v1/query", params={"query": expr}, timeout=5)
            assert r.ok, r.text
            return r.json()["data"]["result"]

        def server_calls():
            got = query('sum by (service) (traces_spanmetrics_calls_total{span_kind="SPAN_KIND_SERVER"})')
            # Spans are exported as each ends: wait for the loop to have
            # seen all three services.
            return got if len(got) == 3 else None

        calls = wait_for(server_calls, what="span metrics of three services")
        assert {c["metric"]["service"]: float(c["value"][1]) for c in calls} == \
            {"frontend": 1.0, "cart": 1.0, "payments": 1.0}, calls
        errors = query('traces_spanmetrics_calls_total{status_code="STATUS_CODE_ERROR",span_kind="SPAN_KIND_SERVER"}')
        # Every server span failed: payments answered 503, and the callers passed it on.
        assert {e["metric"]["service"] for e in errors} == {"frontend", "cart", "payments"}, errors
        def edges():
            got = query("traces_service_graph_request_total")
            pairs = {(e["metric"]["client"], e["metric"]["server"]) for e in got}
            return pairs if {("frontend", "cart"), ("cart", "payments")} <= pairs else None

        pairs = wait_for(edges, what="service graph edges frontend→cart→payments")
        assert ("frontend", "frontend") in pairs, pairs
        failed = query("traces_service_graph_request_failed_total")
        assert ("cart", "payments") in {(e["metric"]["client"], e["metric"]["server"]) for e in failed}

        # An exemplar leads from the metric back to this trace.
        r = requests.get(f"{sk.url}/api/v1/query_exemplars", params={
            "query": "traces_spanmetrics_latency_bucket", "start": time.time() - 600, "end": time.time() + 60,
        }, timeout=5)
        assert r.ok, r.text
        ids = {x["labels"].get("trace_id") for s in r.json()["data"] for x in s["exemplars"]}
        assert trace_id in ids, r.text

        # The lines the services logged inside the trace come back from it.
        r = requests.get(f"{sk.url}/api/traces/{trace_id}/logs", timeout=5)
        assert r.ok, r.text
        lines = sorted(v[1] for s in r.json()["data"]["result"] for v in s["values"])
        assert lines == ["card declined for order 42", "checkout started"], r.text
    finally:
        for s in services.values():
            s.close()
        assert sk.stop() == 0, sk.logs()
