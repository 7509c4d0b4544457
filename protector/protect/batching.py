"""Batches of photos that share one size, so a batch stacks without resizing anything."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler

from protector.batching import same_size_batches


def size_batches(
    sizes: Sequence[tuple[int, int] | None],
    batch_size: int,
    max_batch_pixels: int,
) -> list[list[int]]:
    """Group indices by image size, in order of first appearance, then cut groups into batches.

    A batch holds at most `batch_size` images and at most `max_batch_pixels` pixels in
    all (but always at least one image), so a folder of 12-megapixel photos goes one at
    a time while 256x256 photos go `batch_size` at a time. Indices whose size is unknown
    (`None`: the header could not be read) get a batch each; decoding reports why.

    The result depends only on `sizes` and the limits, never on which files already
    exist, so an interrupted run that is restarted recomputes exactly the same batches.
    The rule is :func:`protector.batching.same_size_batches`'s, one size after the other.

    Example:
        >>> size_batches([(4, 4), (8, 8), (4, 4), None], batch_size=8, max_batch_pixels=10**6)
        [[0, 2], [1], [3]]
    """
    return list(same_size_batches(range(len(sizes)), sizes.__getitem__, batch_size, max_batch_pixels, grouped=True))


class SizeBatchSampler(Sampler[list[int]]):
    """Yields this rank's share of the same-size batches from :func:`size_batches`.

    Batch ``i`` goes to rank ``i % world_size``: ranks get disjoint batches and together
    cover every index exactly once (no padding, no repeats: prediction must not write a
    file twice). Lightning is told not to inject its own distributed sampler.

    Args:
        sizes: (width, height) of each dataset item, or None when unknown.
        batch_size: most images in a batch.
        max_batch_pixels: most pixels in a batch (a single larger image still goes alone).
        rank: this process's global rank. Default: 0.
        world_size: number of processes. Default: 1.

    Example:
        >>> list(SizeBatchSampler([(4, 4)] * 3, batch_size=2, max_batch_pixels=100, rank=1, world_size=2))
        [[2]]
    """

    def __init__(
        self,
        sizes: Sequence[tuple[int, int] | None],
        batch_size: int,
        max_batch_pixels: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        self.all_batches = size_batches(sizes, batch_size, max_batch_pixels)
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.all_batches[self.rank :: self.world_size])

    def __len__(self) -> int:
        return len(self.all_batches[self.rank :: self.world_size])
