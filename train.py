"""Train a protector: `python train.py fit --config configs/standin.yaml --trainer.default_root_dir runs/x`.

A thin wrapper around `protector.commands.train.cli_main` (LightningCLI); see that module.
"""

import sys

from protector.commands.train import run_lightning_cli

if __name__ == "__main__":
    sys.exit(run_lightning_cli())
