import gc
from collections.abc import Iterator

import pytest

from shared.collector import THROUGHPUT_THRESHOLDS, tuned_for_throughput

DEFAULTS = (700, 10, 10)


@pytest.fixture(autouse=True)
def default_thresholds() -> Iterator[None]:
    """Python's defaults, whatever a service started in this test process set."""
    original = gc.get_threshold()
    gc.set_threshold(*DEFAULTS)
    try:
        yield
    finally:
        gc.set_threshold(*original)


def test_the_collector_is_tuned_inside_the_block_and_restored_after() -> None:
    with tuned_for_throughput():
        assert gc.get_threshold() == THROUGHPUT_THRESHOLDS
        assert gc.get_freeze_count() > 0  # startup's objects are left out of collections
    assert gc.get_threshold() == DEFAULTS
    assert gc.get_freeze_count() == 0


def test_the_collector_is_restored_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), tuned_for_throughput():
        raise RuntimeError("the service stopped")
    assert gc.get_threshold() == DEFAULTS
    assert gc.get_freeze_count() == 0
