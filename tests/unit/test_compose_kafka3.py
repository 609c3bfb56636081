"""deploy/compose.kafka3.yml (three brokers, replicated topics) stays consistent with
docker-compose.yml: no Docker engine runs here, so the layering is checked as data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
BASE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
KAFKA3: dict[str, Any] = yaml.safe_load((ROOT / "deploy" / "compose.kafka3.yml").read_text())


def test_every_service_that_talks_to_kafka_bootstraps_from_all_three_brokers() -> None:
    uses_kafka = {
        name
        for name, service in BASE["services"].items()
        if "TENURE_KAFKA_BOOTSTRAP_SERVERS" in (service.get("environment") or {})
    }
    assert uses_kafka >= {"init", "ingest", "segmenter", "journey", "dispatcher", "metrics"}
    for name in uses_kafka:
        env = KAFKA3["services"][name]["environment"]
        assert env["TENURE_KAFKA_BOOTSTRAP_SERVERS"].split(",") == [
            "kafka:9092",
            "kafka-2:9092",
            "kafka-3:9092",
        ], name
        assert env["TENURE_KAFKA_REPLICATION_FACTOR"] == "3", name


def test_the_quorum_names_each_node_by_its_id_and_topics_need_two_in_sync() -> None:
    nodes = {name: s for name, s in KAFKA3["services"].items() if name.startswith("kafka")}
    assert set(nodes) == {"kafka", "kafka-2", "kafka-3"}
    voters = set()
    for name, service in nodes.items():
        env = service["environment"]
        voters.add(f"{env['KAFKA_NODE_ID']}@{name}:9093")
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == 2
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3
        quorum = set(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","))
        assert quorum == {"1@kafka:9093", "2@kafka-2:9093", "3@kafka-3:9093"}
    assert voters == {"1@kafka:9093", "2@kafka-2:9093", "3@kafka-3:9093"}
    # the same image as the single-broker file, and the base broker's volume kept
    assert nodes["kafka-2"]["image"] == BASE["services"]["kafka"]["image"]
    assert set(KAFKA3["volumes"]) == {"kafka-2-data", "kafka-3-data"}
