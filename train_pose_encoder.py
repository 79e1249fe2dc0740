"""The original project's command, kept working: the same as `signt5 pretrain`."""
import sys
from signt5.cli import main
sys.exit(main(["pretrain", *sys.argv[1:]]))
