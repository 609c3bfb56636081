"""The ``tenure`` command's surface: settings checked and documented, Prometheus
configurations valid, ``--version``, help texts without markup."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tenure.cli import _parser
from tenure.dev import prometheus_config
from tenure.services import SERVICES
from tenure.settings_check import check, reference, settings_classes, variables

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_DOC = ROOT / "docs" / "settings.md"


def test_the_settings_reference_is_current() -> None:
    assert SETTINGS_DOC.read_text() == reference(), (
        "docs/settings.md is out of date: run `tenure settings-doc`"
    )


def test_the_settings_reference_names_every_setting() -> None:
    text = SETTINGS_DOC.read_text()
    classes = settings_classes()
    assert set(classes) == {*SERVICES, "dev"}
    names = [v.name for cls in classes.values() for v in variables(cls)]
    assert "TENURE_INGEST_RATE_LIMIT" in names and "TENURE_SMTP_HOST" in names
    assert "TENURE_DEV_READY_TIMEOUT_S" in names
    for name in names:
        assert f"`{name}`" in text, name


def test_a_bad_value_is_one_line_naming_the_variable_and_what_is_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TENURE_LOG_LEVEL", "info")
    monkeypatch.setenv("TENURE_KAFKA_PARTITIONS", "six")
    monkeypatch.setenv("TENURE_JOURNEY_SWEEP_WORKERS", "0")
    monkeypatch.setenv("TENURE_DEV_WRITE_KEY", "kept-secret")
    errors, _ = check(list(SERVICES))
    assert errors == [
        "TENURE_KAFKA_PARTITIONS=six: Input should be a valid integer, "
        "unable to parse string as an integer",
        "TENURE_LOG_LEVEL=info: Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'",
        "TENURE_JOURNEY_SWEEP_WORKERS=0: Input should be greater than or equal to 1",
    ]


def test_bad_values_of_groups_and_of_tenure_dev_are_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TENURE_DISPATCHER_OFFER_KEY_ID", "9")
    monkeypatch.setenv("TENURE_SMTP_SECURITY", "ssl")
    monkeypatch.setenv("TENURE_DEV_READY_TIMEOUT_S", "-1")
    assert check(["dispatcher"])[0] == check(["dispatcher"], dev=True)[0][:2]
    errors, _ = check(["dispatcher"], dev=True)
    assert errors == [
        "TENURE_DISPATCHER_OFFER_KEY_ID=9: Input should be less than or equal to 7",
        "TENURE_SMTP_SECURITY=ssl: Input should be 'none', 'starttls' or 'tls'",
        "TENURE_DEV_READY_TIMEOUT_S=-1: Input should be greater than 0",
    ]


def test_an_unknown_variable_is_warned_with_the_nearest_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TENURE_INGEST_RATE_LIMT", "5")
    monkeypatch.setenv("TENURE_NOTHING_LIKE_IT", "1")
    monkeypatch.setenv("TENURE_TEST_ANYTHING", "1")  # the test suite's own
    errors, warnings = check(["ingest"])
    assert errors == []
    assert warnings == [
        "TENURE_INGEST_RATE_LIMT is not a Tenure setting and is ignored; "
        "did you mean TENURE_INGEST_RATE_LIMIT?",
        "TENURE_NOTHING_LIKE_IT is not a Tenure setting and is ignored",
    ]


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed (.ci/run installs Debian's prometheus)")
        pytest.skip("promtool is not installed: apt-get install prometheus")
    return found


def _prometheus_configs() -> list[Path]:
    skip = {".git", ".venv", ".tenure", "node_modules", ".tools"}
    found = []
    for path in ROOT.rglob("*.y*ml"):
        if skip.isdisjoint(path.relative_to(ROOT).parts) and "scrape_configs:" in path.read_text():
            found.append(path)
    return found


def test_promtool_accepts_every_prometheus_config_in_the_repository() -> None:
    promtool = _promtool()
    configs = _prometheus_configs()
    assert ROOT / "deploy" / "prometheus" / "prometheus.yml" in configs
    for config in configs:
        result = subprocess.run(
            [promtool, "check", "config", str(config)], capture_output=True, text=True
        )
        assert result.returncode == 0, f"{config}:\n{result.stdout}{result.stderr}"


def test_promtool_accepts_the_config_tenure_dev_writes(tmp_path: Path) -> None:
    promtool = _promtool()
    config = tmp_path / "prometheus.yml"
    config.write_text(prometheus_config({name: spec.port for name, spec in SERVICES.items()}))
    result = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tenure", "--version"], capture_output=True, text=True, check=True
    )
    assert re.fullmatch(r"tenure \d+\.\d+\.\d+\n", result.stdout)


def test_help_texts_have_no_markup() -> None:
    parser = _parser()
    texts = [parser.format_help()]
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    texts += [command.format_help() for command in commands.choices.values()]
    for text in texts:
        assert "``" not in text and ":class:" not in text and ":mod:" not in text, text
