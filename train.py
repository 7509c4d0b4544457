"""Train a protector: `python train.py fit --config configs/standin.yaml --trainer.default_root_dir runs/x`.

A thin wrapper around `protector.commands.train.cli_main` (LightningCLI); see that module.
"""

from protector.commands.train import cli_main

if __name__ == "__main__":
    cli_main()
