"""Bazel's py_test entry point: runs pytest on the test files it is given.

tests/BUILD makes every tests/**/test_*.py a py_test whose main is this file
and whose argument is the test file, so `bazel test //tests:zoo/test_metrics`
runs what `python -m pytest tests/zoo/test_metrics.py` runs (pytest.ini and
the conftest.py files apply), in one process (`-n 0`): Bazel already runs
test targets side by side. pytest's exit status is the test's: 5 (no test
collected) fails too.
"""
from __future__ import annotations

import sys

import pytest


def main(argv: list[str]) -> int:
  if not argv:
    print('usage: pytest_main.py TEST_FILE...', file=sys.stderr)
    return 2
  # No cache directory inside Bazel's read-only runfiles tree; no xdist
  # workers (pytest.ini's -n 2) inside a target.
  return int(pytest.main(['-p', 'no:cacheprovider', '-n', '0', *argv]))


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
