"""A real Prometheus 2.42 remote-writes everything it scrapes to skopos; every
series and sample Prometheus stored locally must be in skopos."""

import math
import time

from conftest import wait_for


def as_float(v):
    if v == "StaleNaN":
        return None
    return float(v)


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_everything_prometheus_stored_is_in_skopos(skopos_factory, prometheus_factory):
    sk = skopos_factory(["--self-scrape-interval", "off"]).start()
    prom = prometheus_factory(
        f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["$SELF"]
        labels: {{env: "test"}}
remote_write:
  - url: {sk.url}/api/v1/write
    queue_config:
      batch_send_deadline: 1s
      max_samples_per_send: 500
"""
    ).start()
    time.sleep(12)
    cut = time.time() - 3
    # Raw samples, as Prometheus stored them, for every series up to `cut`.
    result = prom.query('{__name__=~".+"}[1h]', cut)["result"]
    assert len(result) > 100, "Prometheus should have scraped hundreds of its own series"
    cut_ms = int(cut * 1000)
    prom.stop()  # flushes its remote-write queue
    time.sleep(1)
    assert sk.stop() == 0, sk.logs()
    stored = sk.dump()

    missing_series, missing_samples, total = [], 0, 0
    for s in result:
        key = tuple(sorted(s["metric"].items()))
        want = [(int(round(float(t) * 1000)), float(v)) for t, v in s["values"]]
        total += len(want)
        got = stored.get(key)
        if got is None:
            missing_series.append(key)
            continue
        have = {t: as_float(v) for t, v in got if t <= cut_ms}
        for t, v in want:
            if t not in have or have[t] is None or not same(have[t], v):
                missing_samples += 1
    assert not missing_series, f"{len(missing_series)} of {len(result)} series missing, e.g. {missing_series[:3]}"
    assert missing_samples == 0, f"{missing_samples} of {total} samples missing or different"
    assert total > 1000
