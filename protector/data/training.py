"""Pipelines, the image dataset, the stratified split and the LightningDataModule.

Every sample leaves as ``dict(image=(3, H, W) float32 in [0, 1], label=int (-1 = unknown),
name=str)``; batches therefore carry ``image`` (B, 3, H, W), ``label`` (B,) int64 and
``name`` list[str], the data contract of ARCHITECTURE.md. No normalization happens here:
only the classifier wrapper normalizes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np
import pytorch_lightning as pl
import torch
from albumentations.pytorch import ToTensorV2
from torch.utils.data import DataLoader, Dataset, get_worker_info

from protector.data.lists import ListEntry, read_image_list, read_places365_val
from protector.data.sources import ImageSource, open_source
from protector.images import read_photo, to_tensor
from protector.views import pixels_at_working_size


def _crop(image_size: int | None, train: bool) -> list[A.BasicTransform]:
    if image_size is None:
        return []
    # Smaller photos are mirrored out to the crop size rather than resized: the attack
    # model sees pixels at their native scale.
    pad = A.PadIfNeeded(min_height=image_size, min_width=image_size, border_mode=cv2.BORDER_REFLECT_101)
    crop = A.RandomCrop if train else A.CenterCrop
    return [pad, crop(height=image_size, width=image_size)]


def train_transform(augment: bool = True, image_size: int | None = None) -> A.Compose:
    """Training pipeline: optional crop, flip, mild photometric jitter, then to [0, 1] tensor.

    No resize: the attack model classifies 256x256 photos as they are, so the generator
    must learn at that scale. Photometric changes stay small and rare because the
    perturbation it learns is itself a few levels of 255.
    """
    steps: list[A.BasicTransform] = list(_crop(image_size, train=True))
    if augment:
        steps += [
            A.HorizontalFlip(p=0.5),
            A.RandomBrightnessContrast(brightness_limit=0.05, contrast_limit=0.05, p=0.2),
            A.HueSaturationValue(hue_shift_limit=3, sat_shift_limit=5, val_shift_limit=3, p=0.1),
        ]
    steps += [A.ToFloat(max_value=255), ToTensorV2()]
    return A.Compose(steps)


def eval_transform(image_size: int | None = None) -> A.Compose:
    """Evaluation pipeline: optional center crop, then to a [0, 1] float tensor."""
    return A.Compose([*_crop(image_size, train=False), A.ToFloat(max_value=255), ToTensorV2()])


class ImageDataset(Dataset):
    """The images of a list, decoded from an ImageSource.

    Contract: item i is ``dict(image, label, name)`` for ``entries[i]``; image is (3, H, W)
    float32 in [0, 1] RGB (EXIF orientation applied), label the entry's label or -1.
    Decoding errors raise ``protector.images.ImageReadError`` naming the source and file.

    Args:
        source: where the bytes come from (folder or tar).
        entries: the images, by name relative to the source.
        transform: an albumentations pipeline ending in ToFloat + ToTensorV2; None = plain
            conversion to a tensor.

    Shape:
        image: (3, H, W) float32.

    Example:
        >>> ds = ImageDataset(FolderSource("photos"), [ListEntry("a.jpg", 3)])
        >>> ds[0]["image"].shape
        torch.Size([3, 256, 256])
    """

    def __init__(self, source: ImageSource, entries: Sequence[ListEntry], transform: A.Compose | None = None,
                 working_side: int | None = None):
        self.source = source
        self.entries = list(entries)
        self.transform = transform
        self.working_side = working_side

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict[str, Any]:
        name, label = self.entries[index]
        pixels = read_photo(self.source.read_bytes(name), name=f"{self.source.describe()}: {name}").pixels
        if self.working_side is not None:
            pixels = pixels_at_working_size(pixels, self.working_side)
        if self.transform is None:
            image = to_tensor(pixels)
        else:
            image = self.transform(image=pixels)["image"]
        return {"image": image, "label": -1 if label is None else int(label), "name": name}

    def reseed(self, seed: int) -> None:
        """Give the pipeline its own random stream (albumentations >= 2 keeps one per Compose)."""
        set_random_seed = getattr(self.transform, "set_random_seed", None)
        if set_random_seed is not None:
            set_random_seed(seed % 2**32)


def _worker_init(worker_id: int) -> None:
    # Forked workers inherit one copy of the pipeline's random state; without reseeding,
    # every worker (and every epoch) would replay the same augmentations.
    info = get_worker_info()
    if info is not None and isinstance(info.dataset, ImageDataset):
        info.dataset.reseed(torch.initial_seed())


def split_per_class(
    entries: Sequence[ListEntry], val_fraction: float, seed: int = 0
) -> tuple[list[ListEntry], list[ListEntry]]:
    """Split a list into train and validation, stratified by label.

    Each label (unknown labels form one group) sends ``round(n * val_fraction)`` of its
    entries to validation, at least one when it has two or more and ``val_fraction > 0``,
    and always keeps one for training. The choice depends only on the names in a group and
    the seed (not on list order or other groups). Both parts keep the input order.

    Args:
        entries: the list to split; names must be unique.
        val_fraction: share of each class for validation, in [0, 1).
        seed: seed of the choice.

    Example:
        >>> train, val = split_per_class(entries, 0.1, seed=0)
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    groups: dict[int, list[str]] = defaultdict(list)
    for name, label in entries:
        groups[-1 if label is None else label].append(name)
    val_names: set[str] = set()
    for label, names in groups.items():
        n_val = round(len(names) * val_fraction)
        if val_fraction > 0 and len(names) >= 2:
            n_val = min(max(n_val, 1), len(names) - 1)
        if n_val == 0:
            continue
        rng = np.random.default_rng([seed, label + 1])
        chosen = rng.permutation(len(names))[:n_val]
        ordered = sorted(names)
        val_names.update(ordered[i] for i in chosen)
    train = [e for e in entries if e.name not in val_names]
    val = [e for e in entries if e.name in val_names]
    return train, val


def _existing(path: str | None, what: str) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what}: {p} does not exist")
    return p


class TrainingDataModule(pl.LightningDataModule):
    """Places365-style photos for training the protector (protection itself reads its photos
    through ``protector.protect.loading.ProtectionDataModule``).

    Training images come from ``train_list`` (or every image of ``images``); a stratified
    ``val_fraction`` of them is held out for validation unless ``val_list`` is given (then
    images of ``val_list`` are removed from training).

    Args:
        images: a folder of images or ``val_256.tar``.
        train_list: MEPP18val.csv, images.tsv, any list `read_image_list` reads; None = all
            images of `images` (labels from `labels_file`, else unknown).
        labels_file: ``places365_val.txt``; fills the labels a list lacks and must agree with
            those it has.
        val_fraction: share of each class held out for validation, in [0, 1).
        val_list: an explicit validation list instead of a split.
        batch_size: images per batch.
        num_workers: DataLoader worker processes (0 = load in the main process).
        augment: flip and mild photometric jitter for training.
        seed: seed of the split, of `limit` and of the augmentations.
        limit: keep a seeded random subset of this many training images (debug runs).
        image_size: crop to this square size (random for training, center otherwise) so
            photos of different sizes can share a batch; None = keep sizes.
        working_side: first bring a photo whose shorter side is larger down to this many
            pixels, the working scale ``protect`` computes a large photo's perturbation at
            (``protect --working-side``); None = photos at their size.

    Example:
        >>> dm = TrainingDataModule("data/val_256.tar", "data/MEPP18val.csv", "data/places365_val.txt")
        >>> dm.setup("fit"); len(dm.val_entries)
        300
    """

    def __init__(
        self,
        images: str,
        train_list: str | None = None,
        labels_file: str | None = None,
        val_fraction: float = 0.1,
        val_list: str | None = None,
        batch_size: int = 16,
        num_workers: int = 2,
        augment: bool = True,
        seed: int = 0,
        limit: int | None = None,
        image_size: int | None = None,
        working_side: int | None = None,
    ):
        super().__init__()
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        if image_size is not None and image_size < 1:
            raise ValueError(f"image_size must be >= 1 or None, got {image_size}")
        if working_side is not None and working_side < 8:
            raise ValueError(f"working_side must be >= 8 pixels or None, got {working_side}")
        self.images = _existing(images, "images")
        self.train_list = _existing(train_list, "train_list")
        self.labels_file = _existing(labels_file, "labels_file")
        self.val_list = _existing(val_list, "val_list")
        self.val_fraction = val_fraction
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.augment = augment
        self.seed = seed
        self.limit = limit
        self.image_size = image_size
        self.working_side = working_side
        self.save_hyperparameters()
        self._source: ImageSource | None = None
        self._train: list[ListEntry] | None = None
        self._val: list[ListEntry] | None = None

    # ---------------------------------------------------------------- lists

    def _labelled(self, path: Path, labels: dict[str, int] | None) -> list[ListEntry]:
        entries = read_image_list(path)
        if labels is None:
            return entries
        out = []
        for name, label in entries:
            known = labels.get(name)
            if label is not None and known is not None and known != label:
                raise ValueError(f"{path}: {name} has label {label}, but {self.labels_file} says {known}")
            out.append(ListEntry(name, label if label is not None else known))
        return out

    def _check_present(self, entries: list[ListEntry], path: Path | None) -> None:
        assert self._source is not None
        missing = [e.name for e in entries if e.name not in self._source]
        if missing:
            listed = f"listed in {path}" if path is not None else "listed"
            raise FileNotFoundError(
                f"{len(missing)} of {len(entries)} images {listed} are not in {self._source.describe()}, "
                f"e.g. {missing[:3]}"
            )

    def setup(self, stage: str | None = None) -> None:
        if self._source is not None:
            return  # setup runs once per stage; the lists do not change between them
        self._source = open_source(self.images)
        labels = read_places365_val(self.labels_file) if self.labels_file is not None else None
        if self.train_list is not None:
            pool = self._labelled(self.train_list, labels)
        else:
            pool = [ListEntry(n, labels.get(n) if labels else None) for n in self._source.names()]
        if not pool:
            raise ValueError(f"no training images in {self.train_list or self._source.describe()}")
        if self.limit is not None and self.limit < len(pool):
            keep = set(np.random.default_rng(self.seed).choice(len(pool), self.limit, replace=False).tolist())
            pool = [e for i, e in enumerate(pool) if i in keep]
        self._check_present(pool, self.train_list)

        if self.val_list is not None:
            self._val = self._labelled(self.val_list, labels)
            self._check_present(self._val, self.val_list)
            held_out = {e.name for e in self._val}
            self._train = [e for e in pool if e.name not in held_out]
        else:
            self._train, self._val = split_per_class(pool, self.val_fraction, self.seed)
        if not self._train:
            raise ValueError("no training images left after removing the validation images")

    def _entries(self, value: list[ListEntry] | None, what: str) -> list[ListEntry]:
        if value is None:
            raise RuntimeError(f"{what} is known after setup(); call datamodule.setup() first")
        return list(value)

    @property
    def source(self) -> ImageSource:
        if self._source is None:
            raise RuntimeError("source is known after setup(); call datamodule.setup() first")
        return self._source

    @property
    def train_entries(self) -> list[ListEntry]:
        """The training images (after `limit` and the split)."""
        return self._entries(self._train, "train_entries")

    @property
    def val_entries(self) -> list[ListEntry]:
        """The held-out validation images: a benchmark can evaluate on exactly these."""
        return self._entries(self._val, "val_entries")

    # ---------------------------------------------------------- dataloaders

    def _loader(self, entries: list[ListEntry], transform: A.Compose, shuffle: bool) -> DataLoader:
        dataset = ImageDataset(self.source, entries, transform, self.working_side)
        dataset.reseed(self.seed)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=_worker_init if self.num_workers > 0 else None,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_entries, train_transform(self.augment, self.image_size), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_entries, eval_transform(self.image_size), shuffle=False)
