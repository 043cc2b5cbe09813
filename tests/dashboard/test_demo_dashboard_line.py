"""`make demo` ends by printing where the dashboard over its runs is and how to serve it (without starting it):
the command it prints is the one `make dashboard` runs, and it serves the address it prints."""

from __future__ import annotations

import re

from examples.hospitals.run_demo import ROOT, print_dashboard_line
from federated.dashboard.__main__ import DEFAULT_PORT


def test_the_demo_prints_the_dashboards_address_and_the_command_make_dashboard_runs(capsys):
    print_dashboard_line(ROOT / "demo")
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"dashboard: http://127.0.0.1:{DEFAULT_PORT}/ ")
    printed = re.search(r"\((python -m federated\.dashboard [^)]*)\)$", line)
    assert printed, line
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^dashboard:.*\n\t\$\(PY\) (-m federated\.dashboard .*)$", makefile, re.MULTILINE)
    assert recipe and printed.group(1) == "python " + recipe.group(1)
