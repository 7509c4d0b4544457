"""Where a training step's time goes: generator, attack model, differentiable JPEG.

Times forward + backward of each part alone and of the whole step (generator, budget,
random differentiable JPEG, classifier) on random photos, batch 16, at the training window
(128 px) and at whole 256 px photos, median of `--repeats`. The stand-in classifier is
read from ../shared/standin.

    python bench/train_step_profile.py --base-channels 16 --depth 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from protector.classifier_spec import build_classifier
from protector.classifiers import FrozenClassifier
from protector.generator import UNetGenerator, apply_budget
from protector.robust import Robustifier, differentiable_jpeg


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-channels", type=int, default=16)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    classifier = FrozenClassifier(build_classifier("standin"))
    generator = UNetGenerator(base_channels=args.base_channels, depth=args.depth)
    robustifier = Robustifier(jpeg_quality=(70, 95), jpeg_prob=1.0)

    print(f"batch {args.batch}, U-Net base {args.base_channels} depth {args.depth}, {args.threads} threads, "
          f"median of {args.repeats}; seconds for forward + backward\n")
    print("| size | generator | stand-in | differentiable JPEG | whole step | JPEG share |")
    print("|---|---|---|---|---|---|")
    for size in (128, 256):
        x = torch.rand(args.batch, 3, size, size)

        def generator_alone():
            generator(x).sum().backward()

        def classifier_alone():
            classifier(x.clone().requires_grad_(True)).sum().backward()

        def jpeg_alone():
            differentiable_jpeg(x.clone().requires_grad_(True), 85.0).sum().backward()

        def whole_step():
            classifier(robustifier(apply_budget(x, generator(x), 4 / 255, "clamp"))).sum().backward()

        seconds = [median_seconds(fn, args.repeats) for fn in (generator_alone, classifier_alone, jpeg_alone, whole_step)]
        print(f"| {size} px | {seconds[0]:.3f} | {seconds[1]:.3f} | {seconds[2]:.3f} | {seconds[3]:.3f} "
              f"| {seconds[2] / seconds[3]:.0%} |")


if __name__ == "__main__":
    main()
