"""Reading series back for `metrics`: sparklines, counter rates from direct scrapes, PromQL of a series, and
the query_range client against a real Prometheus-shaped answer."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from benchctl.monitor.prom import PromError, Series, query_range, rates, sample, sparkline


def test_sparkline_scales_and_buckets() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([3, 3, 3]) == "▄▄▄" and sparkline([0, 0]) == "▁▁" and sparkline([]) == ""
    long = sparkline([float(i) for i in range(300)], width=30)
    assert len(long) == 30 and long[0] == "▁" and long[-1] == "█"


def test_counters_become_rates_and_gauges_stay() -> None:
    series = [Series("running", "vllm:num_requests_running"), Series("gen", "vllm:generation_tokens_total", True)]
    scrape1 = {'vllm:num_requests_running{model_name="m"}': 2.0, 'vllm:generation_tokens_total{model_name="m"}': 100}
    scrape2 = {'vllm:num_requests_running{model_name="m"}': 3.0, 'vllm:generation_tokens_total{model_name="m"}': 160}
    samples = [(10.0, sample(scrape1, series)), (12.0, sample(scrape2, series))]
    out = rates(samples, series)
    assert out["running"] == [(10.0, 2.0), (12.0, 3.0)] and out["gen"] == [(12.0, 30.0)]
    restarted = [(12.0, {"gen": 160.0}), (14.0, {"gen": 10.0})]  # a server restart resets the counter
    assert rates(restarted, series[1:])["gen"] == [(14.0, 0.0)]


def test_promql_of_a_series() -> None:
    assert Series("g", "vllm:num_requests_running").promql('job_id="7"') == 'sum(vllm:num_requests_running{job_id="7"})'
    assert Series("c", "x_total", True).promql('job_id="7"', "1m") == 'sum(rate(x_total{job_id="7"}[1m]))'


class _Prometheus(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.headers.get("Authorization") != "Basic ok":
            self.send_response(401)
            self.end_headers()
            return
        body = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {}, "values": [[1.0, "2"], [3.0, "4.5"]]}]}}).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def prometheus() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Prometheus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_query_range(prometheus: str) -> None:
    assert query_range(prometheus, {"Authorization": "Basic ok"}, "up", 0, 4, 2) == [(1.0, 2.0), (3.0, 4.5)]
    with pytest.raises(PromError, match="answered 401"):
        query_range(prometheus, {}, "up", 0, 4, 2)
