"""protector.batching: the one same-size batching rule of protect, evaluate and accuracy."""

from __future__ import annotations

import pytest

from protector.batching import same_size_batches

SIZES = [(64, 64), (32, 48), (64, 64), None, (64, 64), (32, 48), (4000, 3000)]


def test_grouped_batches_come_one_size_after_the_other():
    batches = list(same_size_batches(range(len(SIZES)), SIZES.__getitem__, 2, 10_000_000, grouped=True))
    assert batches == [[0, 2], [4], [1, 5], [3], [6]]


def test_streamed_batches_have_the_same_members_each_as_soon_as_it_is_full():
    batches = list(same_size_batches(range(len(SIZES)), SIZES.__getitem__, 2, 10_000_000))
    assert batches == [[0, 2], [3], [1, 5], [6], [4]]


def test_a_batch_is_capped_by_pixels_but_holds_at_least_one_item():
    sizes = [(10, 10)] * 5 + [(100, 100)] * 2
    assert list(same_size_batches(range(7), sizes.__getitem__, 4, 250, grouped=True)) == [
        [0, 1], [2, 3], [4], [5], [6]]


def test_streaming_reads_no_further_than_the_batch_it_yields():
    read = []

    def items():
        for i, size in enumerate([(1, 1), (2, 2), (1, 1), (1, 1)]):
            read.append(i)
            yield size

    batches = same_size_batches(items(), lambda size: size, 2)
    assert next(batches) == [(1, 1), (1, 1)] and read == [0, 1, 2]


def test_batch_size_below_one_is_refused():
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        list(same_size_batches([1], lambda _: (1, 1), 0))
