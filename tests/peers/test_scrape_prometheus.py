"""skopos scrapes a real Prometheus' /metrics: synthetic series, target labels,
metric relabelling, and staleness markers once the target goes away."""

import time

from conftest import wait_for


def test_scrape_real_prometheus_then_lose_it(skopos_factory, prometheus_factory):
    prom = prometheus_factory("global:\n  scrape_interval: 1h\n").start()
    port = prom.port
    sk = skopos_factory(
        ["--self-scrape-interval", "off"],
        config=f"""
scrape_configs:
  - job_name: prom
    scrape_interval: 1s
    scrape_timeout: 1s
    static_configs:
      - targets: ["127.0.0.1:{port}"]
        labels: {{team: "obs"}}
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: "go_gc_duration_seconds.*"
        action: drop
""",
    ).start()
    # Let several scrapes happen, then take the target away.
    time.sleep(5)
    prom.stop()
    time.sleep(4)
    assert sk.stop() == 0, sk.logs()
    stored = sk.dump()

    def find(name, **labels):
        out = []
        for key, samples in stored.items():
            d = dict(key)
            if d.get("__name__") == name and all(d.get(k) == v for k, v in labels.items()):
                out.append((d, samples))
        return out

    ups = find("up", job="prom")
    assert len(ups) == 1, ups
    up_labels, up_samples = ups[0]
    assert up_labels["instance"] == f"127.0.0.1:{port}"
    assert up_labels["team"] == "obs"
    values = [v for _, v in up_samples if v != "StaleNaN"]
    assert "1" in values and values[-1] == "0", values
    first_down = next(t for t, v in up_samples if v == "0")

    for synthetic in ["scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling"]:
        assert find(synthetic, job="prom"), f"{synthetic} missing"

    build = find("prometheus_build_info", job="prom")
    assert build, "prometheus_build_info was not scraped"
    d, samples = build[0]
    assert d["version"].startswith("2.42")
    stale = [t for t, v in samples if v == "StaleNaN"]
    assert stale and stale[0] == first_down, (
        f"the first failed scrape ({first_down}) should mark the series stale: {samples[-3:]}"
    )

    assert not find("go_gc_duration_seconds"), "metric_relabel_configs drop was not applied"
    assert not find("go_gc_duration_seconds_count")
