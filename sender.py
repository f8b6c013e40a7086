"""python sender.py: run the camera side of SplitRTC (see `python sender.py --help`)."""
import sys

from sender.cli import main

if __name__ == "__main__":
    sys.exit(main())
