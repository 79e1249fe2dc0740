"""The original project's command, kept working: the same as `signt5 visualize`."""
import sys
from signt5.cli import main
sys.exit(main(["visualize", *sys.argv[1:]]))
