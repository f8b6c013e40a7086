"""``python -m splitcore.offline.onnxcut``: run the command line defined in ``cli``."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
