"""Protection throughput, files to files, against PGD-10 on the ResNet50 architecture.

Measures on this machine:
1. End to end: `infer.py` (the real CLI: decode, generator, encode, atomic write, re-read
   check, manifest) protecting the first `--n` photos of `--images` to JPEG q90, run as a
   child process: images/s of the protection pass, wall time of the whole command (with
   Python and Lightning start-up) and the child's peak RSS (getrusage via os.wait4).
2. Where the time goes: the same photos, the same steps timed one by one in this process
   (read_photo; generator in batches; to_uint8 + encode_photo; write_atomic; the writer's
   re-read + sha256 check). The end-to-end pass minus their sum is Lightning's overhead.
3. PGD-10 (torchattacks, eps 2/255, alpha eps/4) against torchvision ResNet50 with 365
   classes and random weights (timing does not depend on weights) on the first `--pgd-n`
   photos: s/img, and its ratio to the protector's end-to-end s/img. PGD's time excludes
   decoding and encoding, so the ratio is conservative.
4. A synthetic 12-megapixel photo (4000x3000: a shared photo upscaled bicubic plus mild
   noise, JPEG q95) through the CLI (tiled above 4 MP): wall time and peak RSS.

Without `--protector` an untrained generator of the default architecture is saved to
bench/out and used: the weights do not change the time.

A gradient-guided protector (`guided: true`) needs `--classifier` (e.g. `standin`): its
guide costs one forward and one backward of that model per photo. Step 3 then also times
the same generator guided by ResNet50 (random weights), the cost it would have on the task.

    python bench/protect_throughput.py --protector runs/standin_eps2/protector.pt \
        --images ../shared/standin/images --n 600 --classifier standin
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from protector.classifier_spec import build_classifier
from protector.classifiers import FrozenClassifier, Places365Classifier
from protector.evaluation.baselines import baseline_attack, baseline_spec
from protector.export import load_protector, save_protector
from protector.generator import BoundedProtector, UNetGenerator
from protector.images import IMAGE_EXTENSIONS, encode_photo, read_photo, to_tensor, to_uint8, write_atomic

REPO = Path(__file__).resolve().parents[1]

EPS = 2 / 255
SPEED = re.compile(r"speed: [\d.]+ images/s \((\d+) in ([\d.]+) s\)")


def run_cli(args: list[str], threads: int | None) -> dict:
    """Run `infer.py ARGS` as a child; wall seconds, the child's own peak RSS, its pass time."""
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, str(REPO / "infer.py"), *args, "--no-progress"], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)  # rusage of this child alone (ru_maxrss in KiB on Linux)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"infer.py exited with {child.returncode}:\n{output[-3000:]}")
    match = SPEED.search(output)
    if match is None:
        raise RuntimeError(f"no 'speed: ...' line in the output of infer.py:\n{output[-3000:]}")
    return {"wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024, "written": int(match[1]), "pass_s": float(match[2])}


def stage_times(protector: torch.nn.Module, files: list[Path], out_dir: Path, batch: int, quality: int) -> dict:
    """The end-to-end steps timed one by one, on the same files."""
    t0 = time.perf_counter()
    photos = [read_photo(f) for f in files]
    images = [to_tensor(p.pixels) for p in photos]
    t1 = time.perf_counter()
    protected = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            group = images[i:i + batch]
            if all(x.shape == group[0].shape for x in group):
                protected.extend(protector(torch.stack(group)))
            else:  # mixed sizes: one at a time, as the DataModule would not batch them either
                protected.extend(protector(x[None])[0] for x in group)
    t2 = time.perf_counter()
    encoded = [encode_photo(to_uint8(x), "jpeg", quality) for x in protected]
    t3 = time.perf_counter()
    targets = [out_dir / (f.stem + ".jpg") for f in files]
    for target, data in zip(targets, encoded):
        write_atomic(target, data, overwrite=True)  # temp file, fsync, rename
    t4 = time.perf_counter()
    for target in targets:  # what ProtectedImageWriter does after writing
        read_photo(target)
        hashlib.sha256(target.read_bytes()).hexdigest()
    t5 = time.perf_counter()
    return {"decode_s": t1 - t0, "generator_s": t2 - t1, "encode_s": t3 - t2, "write_s": t4 - t3, "check_s": t5 - t4}


def random_resnet50() -> FrozenClassifier:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "random weights": intended, timing only
        return FrozenClassifier(Places365Classifier("resnet50"))


def pgd_seconds_per_image(files: list[Path], batch: int, guided_protector: torch.nn.Module | None) -> dict:
    """PGD-10 against ResNet50 (365 classes, random weights) on these photos; median over batches.

    With a guided protector, also its time with ResNet50 as the guide's model, batch by batch.
    """
    model = random_resnet50()
    attack = baseline_attack(baseline_spec("pgd", EPS), model, torch.device("cpu"))  # `evaluate --baselines pgd`
    x = torch.stack([to_tensor(read_photo(f).pixels) for f in files])
    with torch.no_grad():
        # Untargeted: move away from the clean prediction.
        y = torch.cat([model(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])
    per_image, guided_per_image = [], []
    for i in range(0, len(x), batch):
        start = time.perf_counter()
        attack(x[i:i + batch], y[i:i + batch])
        per_image.append((time.perf_counter() - start) / len(x[i:i + batch]))
    result = {"n": len(x), "batch": batch, "s_per_image": statistics.median(per_image), "per_batch": per_image}
    if guided_protector is not None:
        own_model = guided_protector.classifier
        guided_protector.classifier = model
        try:
            for i in range(0, len(x), batch):
                start = time.perf_counter()
                with torch.inference_mode():
                    guided_protector(x[i:i + batch])
                guided_per_image.append((time.perf_counter() - start) / len(x[i:i + batch]))
        finally:
            guided_protector.classifier = own_model
        result["guided_by_resnet50_s_per_image"] = statistics.median(guided_per_image)
        result["ratio_to_guided_by_resnet50"] = result["s_per_image"] / result["guided_by_resnet50_s_per_image"]
    return result


def make_12mp(source: Path, target: Path, size: tuple[int, int]) -> Path:
    """A photo-like large JPEG: bicubic upscale of a real photo plus mild sensor-like noise."""
    image = Image.open(source).convert("RGB").resize(size, Image.Resampling.BICUBIC)
    noise = np.random.default_rng(0).normal(0, 3, (size[1], size[0], 3))
    pixels = np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).round().astype(np.uint8)
    Image.fromarray(pixels).save(target, quality=95)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protector", type=Path, help="protector.pt (default: an untrained one, saved to bench/out)")
    parser.add_argument("--images", type=Path, default=REPO.parent / "shared/standin/images")
    parser.add_argument("--n", type=int, default=600, help="photos to protect (the first N, sorted by name)")
    parser.add_argument("--repeats", type=int, default=1, help="end-to-end runs; the median is reported")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--pgd-n", type=int, default=16)
    parser.add_argument("--pgd-batch", type=int, default=8)
    parser.add_argument("--classifier", help="attack model of a gradient-guided protector, e.g. standin")
    parser.add_argument("--threads", type=int, help="torch threads here and in the child (default: torch's)")
    parser.add_argument("--big-size", default="4000x3000", help="WxH of the large photo; 'none' skips it")
    parser.add_argument("--out", type=Path, default=REPO / "bench/out/protect_throughput.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    if args.protector is None:
        args.protector = args.out.parent / "untrained_protector.pt"
        save_protector(args.protector, BoundedProtector(UNetGenerator(), EPS), {"note": "untrained, for timing only"})
        print(f"no --protector: saved an untrained UNetGenerator() (eps 2/255) to {args.protector}")
    protector = load_protector(args.protector)
    classifier_args = []
    if protector.guided:
        if args.classifier is None:
            raise SystemExit(f"{args.protector} is gradient-guided: pass --classifier (e.g. standin)")
        protector.classifier = build_classifier(args.classifier)
        classifier_args = ["--classifier", args.classifier]
    files = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)[: args.n]
    sizes = sorted({Image.open(f).size for f in files})
    result = {"protector": str(args.protector), "eps_255": protector.eps * 255, "n": len(files),
              "sizes": [f"{w}x{h}" for w, h in sizes[:5]], "quality": args.quality,
              "batch_size": args.batch_size, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "load_avg_at_start": os.getloadavg()[0],
              "guided_by": args.classifier if protector.guided else None}

    with tempfile.TemporaryDirectory(prefix="bench_protect_") as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        (tmp / "stages").mkdir()
        (tmp / "big").mkdir()
        for f in files:
            (tmp / "in" / f.name).symlink_to(f.resolve())
        runs = []
        for r in range(args.repeats):
            runs.append(run_cli(["--protector", str(args.protector), "--input", str(tmp / "in"),
                                 "--output", str(tmp / f"out{r}"), "--format", "jpeg", "--quality", str(args.quality),
                                 "--batch-size", str(args.batch_size), *classifier_args], args.threads))
            print(f"end to end run {r + 1}: {json.dumps(runs[-1])}")
        e2e = {key: statistics.median(run[key] for run in runs) for key in ("wall_s", "pass_s", "peak_rss_mib")}
        e2e["images_per_s"] = len(files) / e2e["pass_s"]
        e2e["s_per_image"] = e2e["pass_s"] / len(files)
        result["end_to_end"] = {**e2e, "runs": runs}

        stages = stage_times(protector, files, tmp / "stages", args.batch_size, args.quality)
        stages["total_s"] = sum(stages.values())
        result["stages"] = stages
        print(f"stages: {json.dumps(stages)}")

        pgd = pgd_seconds_per_image(files[: args.pgd_n], args.pgd_batch, protector if protector.guided else None)
        pgd["ratio_to_end_to_end"] = pgd["s_per_image"] / e2e["s_per_image"]
        pgd["ratio_to_generator"] = pgd["s_per_image"] / (stages["generator_s"] / len(files))
        result["pgd10_resnet50"] = pgd
        print(f"PGD-10 ResNet50: {json.dumps(pgd)}")

        if args.big_size != "none":
            width, height = (int(v) for v in args.big_size.lower().split("x"))
            big = make_12mp(files[0], tmp / "big" / "big.jpg", (width, height))
            run = run_cli(["--protector", str(args.protector), "--input", str(big), "--output", str(tmp / "big_out"),
                           "--format", "jpeg", "--quality", str(args.quality), *classifier_args], args.threads)
            written = read_photo(tmp / "big_out" / "big.jpg").pixels.shape
            result["big_photo"] = {"size": f"{width}x{height}", "megapixels": width * height / 1e6,
                                   "output_hw": list(written[:2]), **run}
            print(f"big photo: {json.dumps(result['big_photo'])}")

    result["load_avg_at_end"] = os.getloadavg()[0]  # well above 0 means other work shared the cores
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nwritten {args.out}\n")
    print_tables(result)


def print_tables(r: dict) -> None:
    e, s, p = r["end_to_end"], r["stages"], r["pgd10_resnet50"]
    print(f"torch threads {r['torch_threads']} of {r['cpu_count']} cores; load average "
          f"{r['load_avg_at_start']:.1f} at start, {r['load_avg_at_end']:.1f} at end\n")
    print("| photos | images/s (pass) | s/img | whole command s | peak RSS MiB "
          "| PGD-10 ResNet50 s/img | PGD-10 / protector |\n|---|---|---|---|---|---|---|")
    print(f"| {r['n']} ({', '.join(r['sizes'])}) | {e['images_per_s']:.1f} | {e['s_per_image']:.4f} "
          f"| {e['wall_s']:.1f} | {e['peak_rss_mib']:.0f} | {p['s_per_image']:.2f} | {p['ratio_to_end_to_end']:.0f}x |")
    print("\n| stage (same photos, in-process) | s | share |\n|---|---|---|")
    generator = f"generator (batches of {r['batch_size']})"
    if r.get("guided_by"):
        generator += f", guided by {r['guided_by']}"
    names = {"decode_s": "decode (read_photo)", "generator_s": generator,
             "encode_s": f"encode (to_uint8 + JPEG q{r['quality']})", "write_s": "atomic write (fsync)",
             "check_s": "re-read + sha256 check"}
    for key, name in names.items():
        print(f"| {name} | {s[key]:.2f} | {s[key] / s['total_s']:.0%} |")
    print(f"| sum of stages / end-to-end pass | {s['total_s']:.2f} / {e['pass_s']:.2f} | |")
    print(f"\nPGD-10 ResNet50 / generator forward alone: {p['ratio_to_generator']:.0f}x")
    if "guided_by_resnet50_s_per_image" in p:
        print(f"generator guided by ResNet50 (random weights): {p['guided_by_resnet50_s_per_image']:.3f} s/img; "
              f"PGD-10 ResNet50 / that: {p['ratio_to_guided_by_resnet50']:.1f}x")
    if "big_photo" in r:
        b = r["big_photo"]
        print("\n| large photo | whole command s | protection pass s | peak RSS MiB |\n|---|---|---|---|")
        print(f"| {b['size']} ({b['megapixels']:.0f} MP), JPEG q{r['quality']} | {b['wall_s']:.1f} "
              f"| {b['pass_s']:.1f} | {b['peak_rss_mib']:.0f} |")


if __name__ == "__main__":
    main()
