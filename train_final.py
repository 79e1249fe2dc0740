"""The original project's command, kept working: the same as `signt5 train`."""
import sys
from signt5.cli import main
sys.exit(main(["train", *sys.argv[1:]]))
