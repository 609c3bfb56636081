"""The offers' alert rules are valid for promtool, and name the dispatcher's gauges."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from services.dispatcher import metrics

RULES = Path(__file__).resolve().parents[3] / "deploy" / "prometheus" / "rules" / "offers.yml"


def test_promtool_accepts_the_offer_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed (.ci/run installs Debian's prometheus)")
        pytest.skip("promtool is not installed: apt-get install prometheus")
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rules found" in result.stdout


def test_the_rules_read_the_gauges_the_dispatcher_exports() -> None:
    exprs = " ".join(
        rule["expr"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
    )
    for gauge in (metrics.COUPONS_AVAILABLE, metrics.COUPON_LOW_WATER):
        assert gauge._name in exprs
