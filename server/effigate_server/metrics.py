"""Prometheus metrics of the service: requests, latency, and the work done."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "effigate_requests_total",
    "API calls (gRPC and HTTP/JSON) handled, by method and status code",
    ["method", "code"],
)
LATENCY = Histogram(
    "effigate_request_seconds",
    "API call latency in seconds (gRPC and HTTP/JSON), by method",
    ["method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TICKETS_EVALUATED = Counter(
    "effigate_tickets_evaluated_total", "tickets whose SLA metrics were evaluated"
)
TIME_LOGS_INGESTED = Counter("effigate_time_logs_ingested_total", "time logs received for ingest")
TIME_LOGS_CLASSIFIED = Counter("effigate_time_logs_classified_total", "time logs classified")
