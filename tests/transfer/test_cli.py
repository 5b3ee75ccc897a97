"""The command line's front door: the parser, and how errors reach the user."""

from __future__ import annotations

import subprocess
import sys


def test_building_the_parser_loads_no_model_library():
    # `--help` and argument errors must stay fast: defaults come from torch-free config modules.
    code = "import sys; from transfer.cli import build_parser; build_parser(); print(sorted({'torch', 'diffusers'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
