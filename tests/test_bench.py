"""bench/: the numbers of BENCHMARKS.md are measured with the product's code, and every script starts."""

from __future__ import annotations

import ast
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(BENCH.glob("*.py"))
# What the product owns: the attacks (protector.evaluation.baselines), the fidelity metrics
# (protector.evaluation.fidelity). A bench script that needs them imports them from there.
OWN_IMPLEMENTATIONS = ("torchattacks", "torchmetrics", "skimage.metrics", "piq", "pytorch_msssim")
# A function or class named like an attack or a metric of the product (not pgd_seconds_per_image, a timing).
OWNED_NAME = re.compile(r"^_?(eot_?)?(pgd|fgsm|psnr|ssim|peak_signal_noise_ratio|structural_similarity)"
                        r"(_?\d+|_attack|_loss|_db|_index_measure)?$", re.IGNORECASE)


def _problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name) \
                and node.value.id == "sys":
            found.append(f"{where}: sys.path (bench imports the installed package)")
        if isinstance(node, ast.ImportFrom) and node.module == "sys" and any(a.name == "path" for a in node.names):
            found.append(f"{where}: from sys import path")
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        for module in modules:
            if module.startswith(OWN_IMPLEMENTATIONS):
                found.append(f"{where}: imports {module} (use protector.evaluation.baselines / fidelity)")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            name = getattr(node, "name", "")
            if OWNED_NAME.match(name):
                found.append(f"{where}: defines {name} (the product has it)")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "log10":
            found.append(f"{where}: log10, a PSNR by hand (use protector.evaluation.fidelity)")
    return found


def test_the_check_catches_what_it_is_for(tmp_path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text("import sys\nimport torchattacks\nfrom torchmetrics.functional import peak_signal_noise_ratio\n"
                       "sys.path.insert(0, '..')\n"
                       "def pgd(x):\n    return x\n"
                       "class EOT_PGD:\n    pass\n"
                       "def psnr_db(a, b):\n    return -10 * torch.log10((a - b).pow(2).mean())\n")
    problems = "\n".join(_problems(planted))
    for expected in ("sys.path", "imports torchattacks", "imports torchmetrics", "defines pgd", "defines EOT_PGD",
                     "defines psnr_db", "log10"):
        assert expected in problems


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bench_script_uses_the_product_and_patches_no_import_path(script: Path) -> None:
    assert _problems(script) == []


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bench_script_starts(script: Path, monkeypatch, capsys) -> None:
    # As `python bench/NAME.py --help` runs it: Python puts the script's folder first on the path.
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    has_main = 'if __name__ == "__main__":' in script.read_text()
    if not has_main:  # a helper module (bench/universal.py): importing it is the check
        runpy.run_path(str(script), run_name=script.stem)
        return
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(script), run_name="__main__")
    assert exit_.value.code in (0, None)
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("script", sorted(BENCH.glob("*.sh")), ids=lambda p: p.name)
def test_bench_shell_script_parses(script: Path) -> None:
    subprocess.run(["bash", "-n", str(script)], check=True)
