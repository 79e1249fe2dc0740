"""The original project's command, kept working: the same as `signt5 download`."""
import sys
from signt5.cli import main
sys.exit(main(["download", *sys.argv[1:]]))
