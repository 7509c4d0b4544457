"""Pipelines, ImageDataset, the stratified split and TrainingDataModule on generated and real photos."""

from __future__ import annotations

import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from protector.data.training import (
    ImageDataset,
    TrainingDataModule,
    _worker_init,
    eval_transform,
    split_per_class,
    train_transform,
)
from protector.data.lists import ListEntry
from protector.data.sources import FolderSource, TarSource
from protector.images import encode_photo, read_photo, to_tensor

CLASSES = (3, 52, 120)


def _photo(seed: int, height: int = 40, width: int = 48) -> bytes:
    rng = np.random.default_rng(seed)
    # Smooth gradients plus noise: survives JPEG, and is not left-right symmetric.
    ramp = np.linspace(0, 200, width)[None, :, None] + rng.integers(0, 40, (height, width, 3))
    return encode_photo(np.clip(ramp, 0, 255).astype(np.uint8), "jpeg", quality=95)


@pytest.fixture
def photo_set(tmp_path) -> tuple[Path, Path, dict[str, int | None]]:
    """6 photos of each of 3 classes and 4 unlabelled ones, listed in a messy CSV."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    labels: dict[str, int | None] = {}
    seed = 0
    for label in CLASSES:
        for i in range(6):
            name = f"c{label}_{i}.jpg" if i % 2 else f"sub/c{label}_{i}.jpg"
            (root / name).write_bytes(_photo(seed))
            labels[name] = label
            seed += 1
    for i in range(4):
        (root / f"unknown_{i}.jpg").write_bytes(_photo(seed, 36 + 4 * i, 30 + 6 * i))
        labels[f"unknown_{i}.jpg"] = None
        seed += 1
    rows = [f'"{name}","{"" if label is None else label}"' for name, label in labels.items()]
    csv_path = tmp_path / "train.csv"
    csv_path.write_bytes(("\ufeff" + "\r\n\r\n".join(rows) + "\r\n\r\n").encode("utf-8"))
    return root, csv_path, labels


def _module(images, train_list=None, **kwargs) -> TrainingDataModule:
    kwargs.setdefault("num_workers", 0)
    dm = TrainingDataModule(images=str(images), train_list=None if train_list is None else str(train_list), **kwargs)
    dm.setup("fit")
    return dm


# ------------------------------------------------------------ split


def test_split_is_stratified_deterministic_and_order_free():
    entries = [ListEntry(f"{label}_{i}.jpg", label) for label in (1, 2, 3) for i in range(10)]
    entries += [ListEntry(f"u_{i}.jpg", None) for i in range(5)]
    entries += [ListEntry("single.jpg", 7), ListEntry("pair_a.jpg", 8), ListEntry("pair_b.jpg", 8)]
    train, val = split_per_class(entries, 0.2, seed=3)
    assert Counter(e.label for e in val) == {1: 2, 2: 2, 3: 2, None: 1, 8: 1}
    assert {e.name for e in train}.isdisjoint(e.name for e in val)
    assert sorted(train + val) == sorted(entries)
    assert [e for e in entries if e in train] == train  # input order kept

    shuffled = list(entries)
    np.random.default_rng(0).shuffle(shuffled)
    assert {e.name for e in split_per_class(shuffled, 0.2, seed=3)[1]} == {e.name for e in val}
    assert split_per_class(entries, 0.2, seed=3) == (train, val)
    assert {e.name for e in split_per_class(entries, 0.2, seed=4)[1]} != {e.name for e in val}
    # One class more does not reshuffle the others.
    grown = entries + [ListEntry(f"9_{i}.jpg", 9) for i in range(4)]
    assert {e.name for e in split_per_class(grown, 0.2, seed=3)[1] if e.label != 9} == {e.name for e in val}


def test_split_edge_fractions():
    entries = [ListEntry(f"{i}.jpg", i % 2) for i in range(6)]
    assert split_per_class(entries, 0.0) == (entries, [])
    train, val = split_per_class(entries, 0.99)
    assert Counter(e.label for e in train) == {0: 1, 1: 1}  # one per class stays for training
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="val_fraction"):
            split_per_class(entries, bad)


# ------------------------------------------------------------ pipelines and dataset


def test_eval_dataset_returns_exact_pixels(photo_set):
    root, _, _ = photo_set
    source = FolderSource(root)
    entries = [ListEntry("sub/c3_0.jpg", 3), ListEntry("unknown_2.jpg", None)]
    dataset = ImageDataset(source, entries, eval_transform())
    item = dataset[1]
    assert item["name"] == "unknown_2.jpg" and item["label"] == -1
    expected = to_tensor(read_photo(root / "unknown_2.jpg").pixels)
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 44, 42)
    torch.testing.assert_close(item["image"], expected, rtol=0, atol=1e-6)
    assert dataset[0]["label"] == 3
    plain = ImageDataset(source, entries)  # no transform: the same tensor
    torch.testing.assert_close(plain[1]["image"], expected, rtol=0, atol=1e-6)


def test_crops_pad_small_photos_and_center_crop_is_centered():
    pixels = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    out = eval_transform(image_size=16)(image=pixels)["image"]
    assert out.shape == (3, 16, 16)
    torch.testing.assert_close(out, to_tensor(pixels[2:18, 7:23]))
    small = train_transform(augment=False, image_size=32)(image=pixels)["image"]
    assert small.shape == (3, 32, 32) and 0 <= small.min() and small.max() <= 1


def test_augmentation_is_mild_and_reseeded_per_worker(photo_set):
    root, _, _ = photo_set
    source = FolderSource(root)
    entries = [ListEntry("c3_1.jpg", 3)] * 16
    base = to_tensor(read_photo(root / "c3_1.jpg").pixels)
    torch.manual_seed(0)
    dataset = ImageDataset(source, entries, train_transform(augment=True))
    loader = DataLoader(dataset, batch_size=1, num_workers=2, worker_init_fn=_worker_init)
    images = [batch["image"][0] for batch in loader]
    flipped = [not torch.allclose(img, base, atol=0.06) for img in images]
    # Flipped images differ from the original; unflipped ones differ only by mild jitter.
    for img, was_flipped in zip(images, flipped):
        reference = base.flip(-1) if was_flipped else base
        assert (img - reference).abs().mean() < 0.06
    assert any(flipped) and not all(flipped)
    # Workers take alternate batches; without reseeding both would replay the same draws.
    assert flipped[0::2] != flipped[1::2]


# ------------------------------------------------------------ datamodule


def test_datamodule_on_generated_folder_and_messy_csv(photo_set):
    root, csv_path, labels = photo_set
    dm = _module(root, csv_path, val_fraction=0.34, batch_size=4, image_size=32, seed=1)
    train, val = dm.train_entries, dm.val_entries
    assert {e.name for e in train}.isdisjoint(e.name for e in val)
    assert {e.name for e in train} | {e.name for e in val} == set(labels)
    assert Counter(e.label for e in val) == {3: 2, 52: 2, 120: 2, None: 1}

    batches = list(dm.train_dataloader())
    assert sum(len(b["name"]) for b in batches) == len(train)
    for batch in batches:
        assert batch["image"].dtype == torch.float32 and batch["image"].shape[1:] == (3, 32, 32)
        assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
        assert batch["label"].dtype == torch.int64
        for name, label in zip(batch["name"], batch["label"].tolist()):
            assert label == (-1 if labels[name] is None else labels[name])
    val_names = [n for b in dm.val_dataloader() for n in b["name"]]
    assert val_names == [e.name for e in val]

    again = _module(root, csv_path, val_fraction=0.34, batch_size=4, image_size=32, seed=1)
    assert (again.train_entries, again.val_entries) == (train, val)


def test_datamodule_reads_val_256_tar_with_workers(tmp_path):
    tar_path = tmp_path / "val_256.tar"
    names = [f"Places365_val_{i:08d}.jpg" for i in range(1, 13)]
    with tarfile.open(tar_path, "w") as archive:
        for i, name in enumerate(names):
            path = tmp_path / name
            path.write_bytes(_photo(i, 32, 32))
            archive.add(path, arcname=f"val_256/{name}")
            path.unlink()
    labels_file = tmp_path / "places365_val.txt"
    labels_file.write_text("".join(f"{n} {i % 3}\n" for i, n in enumerate(names)))
    dm = _module(tar_path, None, labels_file=str(labels_file), num_workers=2, batch_size=3, val_fraction=0.25)
    assert isinstance(dm.source, TarSource)
    assert Counter(e.label for e in dm.val_entries) == {0: 1, 1: 1, 2: 1}
    train = list(dm.train_dataloader())
    assert sorted(n for b in train for n in b["name"]) == sorted(e.name for e in dm.train_entries)
    validated = list(dm.val_dataloader())
    assert sorted(label for b in validated for label in b["label"].tolist()) == [0, 1, 2]  # from the labels file


def test_predict_list_is_gone_and_named_when_an_old_config_passes_it(tmp_path):
    # Photos are protected by `protector protect --list`; the module no longer takes the key.
    root = tmp_path / "photos"
    root.mkdir()
    with pytest.raises(TypeError, match="predict_list"):
        _module(root, None, predict_list=str(tmp_path / "MEPP19test.csv"))


def test_datamodule_on_standin_photos(shared):
    images = shared.path("standin/images")
    table = shared.path("standin/images.tsv")
    dm = _module(images, table, limit=48, val_fraction=0.25, batch_size=8, seed=0)
    train, val = dm.train_entries, dm.val_entries
    assert len(train) + len(val) == 48
    assert {e.name for e in train}.isdisjoint(e.name for e in val)
    pool = Counter(e.label for e in train + val)
    held = Counter(e.label for e in val)
    assert all(held[label] >= 1 for label, count in pool.items() if count >= 2)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (8, 3, 256, 256) and batch["image"].dtype == torch.float32
    assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    all_labels = [l for b in dm.val_dataloader() for l in b["label"].tolist()]
    assert all_labels == [-1 if e.label is None else e.label for e in val]
    assert -1 in [-1 if e.label is None else e.label for e in train + val]  # bsds500 photos are unlabelled
    assert _module(images, table, limit=48, val_fraction=0.25, seed=0).val_entries == val


def test_whole_folder_and_explicit_val_list(photo_set, tmp_path):
    root, _, labels = photo_set
    dm = _module(root, None, val_fraction=0.0)
    assert sorted(e.name for e in dm.train_entries) == sorted(labels) and dm.val_entries == []
    assert all(e.label is None for e in dm.train_entries)

    val_list = tmp_path / "val.tsv"
    val_list.write_text("file\tlabel\nc3_1.jpg\t3\nunknown_0.jpg\t-1\n")
    dm = _module(root, None, val_list=str(val_list))
    assert dm.val_entries == [ListEntry("c3_1.jpg", 3), ListEntry("unknown_0.jpg", None)]
    assert len(dm.train_entries) == len(labels) - 2
    assert "c3_1.jpg" not in {e.name for e in dm.train_entries}


def test_limit_is_a_deterministic_subset(photo_set):
    root, csv_path, labels = photo_set
    a = _module(root, csv_path, limit=9, val_fraction=0.0, seed=5)
    b = _module(root, csv_path, limit=9, val_fraction=0.0, seed=5)
    c = _module(root, csv_path, limit=9, val_fraction=0.0, seed=6)
    assert a.train_entries == b.train_entries and len(a.train_entries) == 9
    assert a.train_entries != c.train_entries
    order = list(labels)
    assert [order.index(e.name) for e in a.train_entries] == sorted(order.index(e.name) for e in a.train_entries)


def test_argument_and_content_errors(photo_set, tmp_path):
    root, csv_path, _ = photo_set
    with pytest.raises(FileNotFoundError, match="images: .*nowhere"):
        TrainingDataModule(images=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="train_list"):
        TrainingDataModule(images=str(root), train_list=str(tmp_path / "missing.csv"))
    for kwargs, match in (
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"val_fraction": -0.5}, "val_fraction"),
        ({"batch_size": 0}, "batch_size"),
        ({"num_workers": -1}, "num_workers"),
        ({"limit": 0}, "limit"),
        ({"image_size": 0}, "image_size"),
    ):
        with pytest.raises(ValueError, match=match):
            TrainingDataModule(images=str(root), **kwargs)

    listed = tmp_path / "gone.csv"
    listed.write_text("c3_1.jpg,3\nnot_there.jpg,3\n")
    with pytest.raises(FileNotFoundError, match=r"1 of 2 images listed in .*gone\.csv are not in folder"):
        _module(root, listed)

    labels_file = tmp_path / "places365_val.txt"
    labels_file.write_text("c3_1.jpg 4\n")
    with pytest.raises(ValueError, match="c3_1.jpg has label 3, but .*places365_val.txt says 4"):
        _module(root, csv_path, labels_file=str(labels_file))

    fresh = TrainingDataModule(images=str(root), num_workers=0)
    with pytest.raises(RuntimeError, match="setup"):
        fresh.train_entries


def test_lightning_cli_types(photo_set):
    from jsonargparse import ArgumentParser

    root, csv_path, _ = photo_set
    parser = ArgumentParser()
    parser.add_class_arguments(TrainingDataModule, "data")
    config = parser.parse_args(
        ["--data.images", str(root), "--data.train_list", str(csv_path), "--data.limit", "5", "--data.image_size", "null"]
    )
    assert config.data.limit == 5 and config.data.image_size is None and config.data.val_fraction == 0.1
    dm = parser.instantiate(config).data
    assert isinstance(dm, TrainingDataModule) and dm.hparams.limit == 5


def test_working_side_brings_large_photos_to_protects_working_scale(photo_set):
    root, csv_path, _ = photo_set
    # Photos are 40x48 (and 36..48 x 30..48 for the unlabelled ones): a working side of 24 shrinks
    # each so its shorter side is 24, as protect's working copy of a large photo.
    dm = _module(root, csv_path, val_fraction=0.34, batch_size=1, working_side=24, seed=1)
    shapes = {tuple(b["image"].shape[-2:]) for b in dm.val_dataloader()}
    assert shapes and all(min(shape) == 24 for shape in shapes)
    with pytest.raises(ValueError, match="working_side"):
        TrainingDataModule(str(root), str(csv_path), working_side=4)
