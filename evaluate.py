"""The original project's command, kept working: the same as `signt5 evaluate`."""
import sys
from signt5.cli import main
sys.exit(main(["evaluate", *sys.argv[1:]]))
