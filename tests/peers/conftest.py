"""Shared fixtures for tests against real peers: a skopos server started from
the built binary, and a real Prometheus from Debian's package. Every process
binds to 127.0.0.1 on a free port and is stopped at the end of its test."""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest
import requests

SKOPOS_BIN = os.environ.get("SKOPOS_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "target", "debug", "skopos"
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=30.0, interval=0.2, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = pred()
            if last:
                return last
        except Exception as e:  # the peer may not be up yet
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


class Skopos:
    def __init__(self, data_dir, extra_args=(), config=None):
        self.data_dir = data_dir
        self.port = free_port()
        self.otlp_http = free_port()
        self.otlp_grpc = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_args = list(extra_args)
        self.config = config
        self.proc = None
        self.log = open(os.path.join(data_dir, "..", f"skopos-{self.port}.log"), "wb")

    def start(self):
        args = [
            SKOPOS_BIN, "server",
            "--data-dir", self.data_dir,
            "--listen", f"127.0.0.1:{self.port}",
            "--otlp-http-listen", f"127.0.0.1:{self.otlp_http}",
            "--otlp-grpc-listen", f"127.0.0.1:{self.otlp_grpc}",
        ] + self.extra_args
        if self.config:
            path = os.path.join(self.data_dir, "..", f"skopos-{self.port}.yml")
            with open(path, "w") as f:
                f.write(self.config)
            args += ["--config", path]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: requests.get(self.url + "/-/ready", timeout=1).ok, what="skopos ready")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        code = self.proc.returncode if self.proc else 0
        self.proc = None
        return code

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def dump(self, selector='{__name__=~".+"}'):
        """Raw series and samples from the store (server must be stopped)."""
        out = subprocess.run(
            [SKOPOS_BIN, "tsdb", "dump", "--data-dir", self.data_dir, "--match", selector, "-o", "json"],
            check=True, capture_output=True, text=True,
        ).stdout
        series = {}
        for line in out.splitlines():
            obj = json.loads(line)
            key = tuple(sorted(obj["labels"].items()))
            series[key] = [(t, v) for t, v in obj["samples"]]
        return series

    def logs(self):
        self.log.flush()
        with open(self.log.name, "rb") as f:
            return f.read().decode(errors="replace")


class Prometheus:
    def __init__(self, workdir, config_text):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = os.path.join(workdir, f"prometheus-{self.port}")
        os.makedirs(self.dir)
        self.config_path = os.path.join(self.dir, "prometheus.yml")
        with open(self.config_path, "w") as f:
            f.write(config_text.replace("$SELF", f"127.0.0.1:{self.port}"))
        self.proc = None

    def start(self):
        binary = shutil.which("prometheus")
        assert binary, "prometheus is not installed (scripts/test.sh installs it)"
        self.log = open(os.path.join(self.dir, "prometheus.log"), "wb")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={os.path.join(self.dir, 'data')}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: requests.get(self.url + "/-/ready", timeout=1).ok, what="prometheus ready")
        return self

    def query(self, expr, at):
        r = requests.get(self.url + "/api/v1/query", params={"query": expr, "time": at}, timeout=30)
        r.raise_for_status()
        return r.json()["data"]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)
        self.proc = None


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="skopos-peer-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def skopos_factory(workdir):
    started = []

    def make(extra_args=(), config=None, name="data"):
        data = os.path.join(workdir, name)
        os.makedirs(data, exist_ok=True)
        s = Skopos(data, extra_args, config)
        started.append(s)
        return s

    yield make
    for s in started:
        s.kill()


@pytest.fixture
def prometheus_factory(workdir):
    started = []

    def make(config_text):
        p = Prometheus(workdir, config_text)
        started.append(p)
        return p

    yield make
    for p in started:
        p.stop()
