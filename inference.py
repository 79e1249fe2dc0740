"""The original project's command, kept working: the same as `signt5 infer`."""
import sys
from signt5.cli import main
sys.exit(main(["infer", *sys.argv[1:]]))
