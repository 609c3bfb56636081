import gc

import pytest

from shared.collector import THROUGHPUT_THRESHOLDS, tuned_for_throughput


def test_the_collector_is_tuned_inside_the_block_and_restored_after() -> None:
    before = gc.get_threshold()
    assert before != THROUGHPUT_THRESHOLDS
    with tuned_for_throughput():
        assert gc.get_threshold() == THROUGHPUT_THRESHOLDS
        assert gc.get_freeze_count() > 0  # startup's objects are left out of collections
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_the_collector_is_restored_when_the_block_raises() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), tuned_for_throughput():
        raise RuntimeError("the service stopped")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
