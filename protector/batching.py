"""The one rule for batching photos of mixed sizes: a batch holds photos of one size only.

Nothing is resized (the task classifies every photo at its own size), so photos can share a
batch only when their sizes are equal. `protect` (the sampler's batches), `evaluate` (scoring
decoded photos) and `accuracy` (scoring a stream of photos as they are decoded) all cut their
batches here; this module imports nothing from the project, so any package may use it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def same_size_batches(
    items: Iterable[T],
    size_of: Callable[[T], Hashable | None],
    batch_size: int,
    max_batch_pixels: int | None = None,
    *,
    grouped: bool = False,
) -> Iterator[list[T]]:
    """Cut `items` into batches whose items all have the same size.

    Items of one size fill one batch at a time, in their order; a batch holds at most
    `batch_size` items and, with `max_batch_pixels`, at most that many pixels in all (but
    always at least one item). An item whose size is None (unknown) is a batch of its own.

    By default each batch is yielded as soon as it is full, and the partly filled ones when
    `items` runs out, in order of their size's first appearance: `items` is read lazily and
    only the open batches (one per size) are held, so a stream of decoded photos is never
    all in memory. With ``grouped=True`` every item is read first, then the batches come one
    size after the other, sizes in order of first appearance. Either way a batch has the same
    members; only the order of the batches differs.

    Args:
        items: what to batch (indices, decoded photos...).
        size_of: the size of an item, e.g. ``(width, height)``; items batch together only when
            their sizes are equal. With `max_batch_pixels` its first two numbers are multiplied
            to count pixels. None: unknown.
        batch_size: most items in a batch (>= 1).
        max_batch_pixels: most pixels in a batch; None: no limit.
        grouped: one size after the other instead of each batch as soon as it is full.

    Example:
        >>> sizes = [(4, 4), (8, 8), (4, 4), None, (4, 4)]
        >>> list(same_size_batches(range(5), sizes.__getitem__, batch_size=2))
        [[0, 2], [3], [4], [1]]
        >>> list(same_size_batches(range(5), sizes.__getitem__, batch_size=2, grouped=True))
        [[0, 2], [4], [1], [3]]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    open_batches: dict[Hashable, list[T]] = {}  # per size, in order of first appearance
    full_batches: dict[Hashable, list[list[T]]] = {}  # grouped=True: held back until the end
    for item in items:
        size = size_of(item)
        key = size if size is not None else object()  # an unknown size matches no other
        batch = open_batches.setdefault(key, [])
        batch.append(item)
        if len(batch) < _capacity(size, batch_size, max_batch_pixels):
            continue
        open_batches[key] = []  # keeps the size's place in the order
        if grouped:
            full_batches.setdefault(key, []).append(batch)
        else:
            yield batch
    for key, batch in open_batches.items():
        yield from full_batches.get(key, [])
        if batch:
            yield batch


def _capacity(size: Hashable | None, batch_size: int, max_batch_pixels: int | None) -> int:
    """How many items of `size` a batch holds."""
    if size is None:
        return 1
    if max_batch_pixels is None:
        return batch_size
    pixels = size[0] * size[1]  # type: ignore[index]
    return max(1, min(batch_size, max_batch_pixels // max(pixels, 1)))
