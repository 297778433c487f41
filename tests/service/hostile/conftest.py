"""The Kafka suite's fixtures (a tansu broker, and a service consuming from it with the workload
"chat"), shared with the hostile Kafka tests here."""

from __future__ import annotations

from tests.service.data_path.test_kafka import broker, service

__all__ = ["broker", "service"]
