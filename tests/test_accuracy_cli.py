"""`protector accuracy`: a tiny real model on generated photos, and the stand-in on shared photos."""

from __future__ import annotations

import csv
import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from protector.cli import main
from protector.images import read_photo, to_tensor

# A user's own classifier, importable by class path: the logits of classes 0, 1, 2 are the
# mean red, green and blue of the photo; classes 3..7 have fixed logits 0.5, 0.4, ..., 0.1.
# So a strongly red photo ranks 0, 3, 4, 5, 6 (then 7, 1, 2): its top-5 is {0, 3, 4, 5, 6}.
COLOUR_MODEL = '''
import torch
from torch import nn


class ColourModel(nn.Module):
    seen_shapes = []  # every input batch shape, to check batching and the absence of resizing

    def __init__(self):
        super().__init__()
        self.register_buffer("constants", torch.tensor([0.5, 0.4, 0.3, 0.2, 0.1]))

    def forward(self, x):
        type(self).seen_shapes.append(tuple(x.shape))
        colour = x.mean(dim=(2, 3))  # (B, 3)
        return torch.cat([colour, self.constants.expand(x.shape[0], 5)], dim=1)  # (B, 8)
'''

RED, GREEN, BLUE = (230, 10, 10), (10, 230, 10), (10, 10, 230)

# name, colour, size (H, W), label (-1 unknown). Expected hits worked out from the ranking above.
PHOTOS = [
    ("red_a.png", RED, (32, 32), 0),  # top-1 and top-5
    ("red_b.png", RED, (40, 48), 5),  # top-5 only
    ("unlabelled.png", RED, (40, 48), -1),  # skipped (label 0 from --labels: top-1 and top-5)
    ("red_c.png", RED, (32, 32), 7),  # neither: 7 ranks sixth
    ("sub/green.png", GREEN, (40, 48), 1),  # top-1 and top-5
    ("blue.jpg", BLUE, (32, 32), 2),  # top-1 and top-5 (JPEG keeps a flat colour)
    ("green_b.png", GREEN, (32, 32), 2),  # neither: blue's mean is below the constants
    ("broken.jpg", None, None, 0),  # unreadable
]


@pytest.fixture
def colour_case(tmp_path, monkeypatch) -> dict[str, Path]:
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "tiny_colour_model", raising=False)
    code = tmp_path / "code"
    code.mkdir()
    (code / "tiny_colour_model.py").write_text(textwrap.dedent(COLOUR_MODEL))
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    for name, colour, size, _ in PHOTOS:
        if colour is None:
            (images / name).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
            continue
        pixels = np.zeros((*size, 3), dtype=np.uint8) + np.array(colour, dtype=np.uint8)
        Image.fromarray(pixels).save(images / name, quality=95)
    table = tmp_path / "photos.tsv"
    table.write_text("file\tlabel\n" + "".join(f"{name}\t{label}\n" for name, _, _, label in PHOTOS))
    labels = tmp_path / "places365_val.txt"
    labels.write_text("unlabelled.png 0\nred_a.png 0\n")
    return {"code": code, "images": images, "list": table, "labels": labels, "json": tmp_path / "out" / "acc.json"}


def _argv(case: dict[str, Path], *extra: str) -> list[str]:
    return [
        "accuracy", "--classifier", "tiny_colour_model.ColourModel", "--classifier-path", str(case["code"]),
        "--list", str(case["list"]), "--images", str(case["images"]), "--json", str(case["json"]),
        "--device", "cpu", *extra,
    ]  # fmt: skip


def test_hand_computed_accuracy(colour_case, capsys):
    code = main(_argv(colour_case, "--batch-size", "2"))
    out = capsys.readouterr().out
    assert code == 1  # one unreadable photo: scored without it, but not a clean run
    report = json.loads(colour_case["json"].read_text())
    assert (report["n_images"], report["top1_correct"], report["top5_correct"]) == (6, 3, 4)
    assert report["top1"] == pytest.approx(3 / 6) and report["top5"] == pytest.approx(4 / 6)
    assert report["skipped_unknown_label"] == 1
    assert [u["name"] for u in report["unreadable"]] == ["broken.jpg"]
    per_image = {row["name"]: row for row in report["per_image"]}
    assert per_image["red_a.png"]["top5"] == [0, 3, 4, 5, 6]
    assert per_image["green_b.png"]["top5"] == [1, 3, 4, 5, 6]
    assert "6 scored, 1 skipped (unknown label), 1 unreadable" in out
    assert "50.00%  (3/6)" in out and "66.67%  (4/6)" in out


def test_progress_lines_when_stderr_is_not_a_terminal(colour_case, capsys):
    """Written to a log (no progress bar there), the run still says how far it is."""
    main(_argv(colour_case, "--batch-size", "1"))
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("accuracy: ")]
    assert lines and lines[-1].startswith("accuracy: 6/7 photos scored")  # the 7th is unreadable
    assert main(_argv(colour_case, "--batch-size", "1", "--no-progress")) == 1
    assert "accuracy: " not in capsys.readouterr().err


def test_full_size_batches_of_equal_size(colour_case):
    main(_argv(colour_case, "--batch-size", "2"))
    model_module = sys.modules["tiny_colour_model"]
    shapes = model_module.ColourModel.seen_shapes
    # Sizes as on disk (no resize), one size per batch, at most two photos per batch.
    assert {shape[2:] for shape in shapes} == {(32, 32), (40, 48)}
    assert all(shape[0] <= 2 and shape[1] == 3 for shape in shapes)
    assert sum(shape[0] for shape in shapes) == 6

    batched = json.loads(colour_case["json"].read_text())
    main(_argv(colour_case, "--batch-size", "1"))
    single = json.loads(colour_case["json"].read_text())
    by_name = lambda report: {row["name"]: row["top5"] for row in report["per_image"]}  # noqa: E731
    assert by_name(batched) == by_name(single)


def test_labels_file_fills_missing_labels(colour_case):
    main(_argv(colour_case, "--labels", str(colour_case["labels"])))
    report = json.loads(colour_case["json"].read_text())
    assert (report["n_images"], report["top1_correct"], report["top5_correct"]) == (7, 4, 5)
    assert report["skipped_unknown_label"] == 0


def test_limit_takes_the_first_labelled_photos(colour_case):
    assert main(_argv(colour_case, "--limit", "3")) == 0
    report = json.loads(colour_case["json"].read_text())
    assert sorted(row["name"] for row in report["per_image"]) == ["red_a.png", "red_b.png", "red_c.png"]
    assert (report["n_images"], report["top1_correct"], report["top5_correct"]) == (3, 1, 2)


def test_architecture_without_checkpoint_is_refused(colour_case, capsys):
    argv = _argv(colour_case)
    argv[argv.index("tiny_colour_model.ColourModel")] = "resnet50"
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "needs its checkpoint" in error and "--classifier-checkpoint" in error


@pytest.mark.parametrize("flag", ["--classifier-checkpoint", "--checkpoint"])
def test_classifier_checkpoint_has_one_spelling_and_keeps_the_old_one(colour_case, capsys, flag):
    # A class-path model loads its own weights: either spelling reaches the same refusal.
    assert main([*_argv(colour_case), flag, str(colour_case["json"])]) == 2
    err = capsys.readouterr().err
    assert "--classifier-checkpoint applies to the architectures" in err
    assert ("--checkpoint is deprecated, use --classifier-checkpoint" in err) == (flag == "--checkpoint")


def test_list_without_labels_explains_labels_option(tmp_path, colour_case, capsys):
    bare = tmp_path / "MEPP19test.csv"
    bare.write_text("red_a.png\nblue.jpg\n")
    argv = _argv(colour_case)
    argv[argv.index(str(colour_case["list"]))] = str(bare)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no labelled images" in err and "--labels" in err


def test_missing_image_folder_is_an_error(tmp_path, colour_case, capsys):
    argv = _argv(colour_case)
    argv[argv.index(str(colour_case["images"]))] = str(tmp_path / "nowhere")
    assert main(argv) == 2
    assert "not found" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the stand-in


def test_standin_on_shared_photos_matches_direct_classification(shared, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "path", list(sys.path))
    table = shared.path("standin/images.tsv")
    folder = shared.path("standin/images")
    out = tmp_path / "standin.json"
    code = main([
        "accuracy", "--classifier", "standin", "--list", str(table), "--images", str(folder),
        "--limit", "20", "--batch-size", "8", "--json", str(out), "--device", "cpu",
    ])  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())

    # The same 20 photos, read and classified directly, one at a time.
    with open(table, newline="") as f:
        rows = [row for row in csv.DictReader(f, delimiter="\t") if int(row["label"]) != -1][:20]
    model = shared.standin_classifier().eval()
    expected_top5 = {}
    with torch.no_grad():
        for row in rows:
            x = to_tensor(read_photo(folder / row["file"]).pixels)[None]
            expected_top5[row["file"]] = model(x).topk(5, dim=1).indices[0].tolist()
    top1 = sum(expected_top5[r["file"]][0] == int(r["label"]) for r in rows)
    top5 = sum(int(r["label"]) in expected_top5[r["file"]] for r in rows)

    assert report["n_images"] == 20
    assert (report["top1_correct"], report["top5_correct"]) == (top1, top5)
    assert {row["name"]: row["top5"] for row in report["per_image"]} == expected_top5
    assert "20 scored" in capsys.readouterr().out
