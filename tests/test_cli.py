"""The command line: fast help without torch, one-line errors, python -m."""

from __future__ import annotations

import subprocess
import sys


def test_help_does_not_import_torch():
    code = ("import sys; from recsys.cli import build_parser; build_parser().format_help(); "
            "sys.exit(1 if any(m in sys.modules for m in ('torch', 'polars', 'faiss')) else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_python_dash_m_and_version():
    out = subprocess.run([sys.executable, "-m", "recsys", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("recsys ")


def test_user_error_is_one_line_exit_2(tmp_path):
    out = subprocess.run([sys.executable, "-m", "recsys", "data", "summary", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and out.stderr.startswith("recsys: error:") and "summary.json" in out.stderr
