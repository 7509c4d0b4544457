import sys

from protector.cli import main

sys.exit(main())
