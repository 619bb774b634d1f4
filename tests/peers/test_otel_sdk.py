"""The real OpenTelemetry Python SDK exports metrics to skopos over OTLP/HTTP
and OTLP/gRPC; names and labels follow the OTel↔Prometheus compatibility
spec and the values are what the SDK recorded."""

import requests
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource


def record(exporter, service):
    resource = Resource.create(
        {
            "service.name": service,
            "service.namespace": "shop",
            "service.instance.id": f"{service}-1",
            "host.name": "box-7",
        }
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = provider.get_meter("checkout.instrumentation", "1.2.3")
    requests_counter = meter.create_counter("http.server.requests", unit="{request}")
    duration = meter.create_histogram("http.server.duration", unit="ms")
    queue = meter.create_up_down_counter("queue.length")
    meter.create_observable_gauge(
        "process.memory.usage", unit="By", callbacks=[lambda _opts: [Observation(4096.0, {"pool": "heap"})]]
    )
    for i in range(10):
        requests_counter.add(1, {"http.method": "GET", "http.status_code": 200})
    requests_counter.add(3, {"http.method": "POST", "http.status_code": 500})
    for v in [3.0, 7.0, 40.0, 120.0, 9000.0]:
        duration.record(v, {"http.method": "GET"})
    queue.add(5)
    queue.add(-2)
    assert provider.force_flush(10_000)
    provider.shutdown()


def check(stored, service):
    job = f"shop/{service}"

    def series(name, **labels):
        found = [
            (dict(k), s)
            for k, s in stored.items()
            if dict(k).get("__name__") == name
            and dict(k).get("job") == job
            and all(dict(k).get(a) == b for a, b in labels.items())
        ]
        return found

    reqs = series("http_server_requests_total", http_method="GET")
    assert len(reqs) == 1, [dict(k) for k in stored if "requests" in dict(k).get("__name__", "")]
    labels, samples = reqs[0]
    assert labels["instance"] == f"{service}-1"
    assert labels["http_status_code"] == "200"
    assert labels["otel_scope_name"] == "checkout.instrumentation"
    assert float(samples[-1][1]) == 10.0
    assert float(series("http_server_requests_total", http_method="POST")[0][1][-1][1]) == 3.0

    count = series("http_server_duration_milliseconds_count")
    assert float(count[0][1][-1][1]) == 5.0
    total = series("http_server_duration_milliseconds_sum")
    assert float(total[0][1][-1][1]) == 9170.0
    buckets = series("http_server_duration_milliseconds_bucket")
    by_le = {d["le"]: float(s[-1][1]) for d, s in buckets}
    assert by_le["+Inf"] == 5.0
    assert by_le["5"] == 1.0 and by_le["10"] == 2.0 and by_le["50"] == 3.0
    ordered = sorted(((float(le), v) for le, v in by_le.items()))
    assert all(a[1] <= b[1] for a, b in zip(ordered, ordered[1:])), "buckets must be cumulative"

    assert float(series("queue_length")[0][1][-1][1]) == 3.0
    mem = series("process_memory_usage_bytes", pool="heap")
    assert float(mem[0][1][-1][1]) == 4096.0

    info = series("target_info")
    assert info and info[0][0]["host_name"] == "box-7"
    assert "service_name" not in info[0][0], "service.name becomes job, not a target_info label"


def test_otel_sdk_over_http_and_grpc(skopos_factory):
    sk = skopos_factory(["--self-scrape-interval", "off"]).start()
    record(HttpExporter(endpoint=f"http://127.0.0.1:{sk.otlp_http}/v1/metrics"), "checkout")
    record(GrpcExporter(endpoint=f"127.0.0.1:{sk.otlp_grpc}", insecure=True), "billing")
    assert sk.stop() == 0, sk.logs()
    stored = sk.dump()
    check(stored, "checkout")
    check(stored, "billing")


def emit_logs(exporter, service):
    """Logs through the SDK's logging handler, one inside a span."""
    import logging

    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.trace import TracerProvider

    provider = LoggerProvider(resource=Resource.create({"service.name": service, "host.name": "h1"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = logging.getLogger(f"peer.{service}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=provider))
    tracer = TracerProvider().get_tracer("peer")
    with tracer.start_as_current_span("charge") as span:
        logger.error("payment failed for order %d", 42, extra={"order_id": 42})
        trace_id = format(span.get_span_context().trace_id, "032x")
    logger.warning("slow response")
    provider.shutdown()
    return trace_id


def test_otel_sdk_logs_over_http_and_grpc(skopos_factory):
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs

    sk = skopos_factory(["--self-scrape-interval", "off"]).start()
    try:
        trace_http = emit_logs(HttpLogs(endpoint=f"http://127.0.0.1:{sk.otlp_http}/v1/logs"), "checkout")
        trace_grpc = emit_logs(GrpcLogs(endpoint=f"127.0.0.1:{sk.otlp_grpc}", insecure=True), "billing")

        def values(name, query=None):
            params = {"query": query} if query else {}
            r = requests.get(f"{sk.url}/loki/api/v1/label/{name}/values", params=params, timeout=5)
            assert r.ok, r.text
            return r.json()["data"]

        assert values("service_name") == ["billing", "checkout"]
        assert values("level", '{service_name="checkout"}') == ["error", "warn"]
        labels = requests.get(f"{sk.url}/loki/api/v1/labels", timeout=5).json()["data"]
        # host.name is not a stream label (it is kept as structured metadata);
        # service.instance.id, which the SDK sets, is one in Loki's default list.
        assert "host_name" not in labels, labels
        assert {"level", "service_name"} <= set(labels), labels

        # The line logged inside the span is found by its trace id (kept as
        # structured metadata), with the SDK's attributes beside it.
        for service, trace_id in [("checkout", trace_http), ("billing", trace_grpc)]:
            r = requests.get(f"{sk.url}/loki/api/v1/query_range", params={
                "query": f'{{service_name="{service}"}} | trace_id="{trace_id}"', "since": "1h"}, timeout=5)
            assert r.ok, r.text
            streams = r.json()["data"]["result"]
            lines = [v[1] for s in streams for v in s["values"]]
            assert lines == ["payment failed for order 42"], r.text
            assert streams[0]["stream"]["order_id"] == "42"
            assert streams[0]["stream"]["host_name"] == "h1"
            assert streams[0]["stream"]["level"] == "error"
    finally:
        assert sk.stop() == 0, sk.logs()
