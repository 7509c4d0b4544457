"""Protect photos with a trained protector: the same as `protector protect`.

    python infer.py --protector RUN/protector.pt --input DIR --output OUT --format jpeg --quality 90

See `python infer.py --help` for every option.
"""

import sys

from protector.cli import main

if __name__ == "__main__":
    sys.exit(main(["protect", *sys.argv[1:]]))
