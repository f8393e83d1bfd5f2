"""conftest.py (repository root): how pytest-xdist hands out the test files.

The test files that use an expensive shared fixture, found here by reading
every test file, are one unit of work (so the fixture is built on one
worker only); HEAVY_UNITS names units that exist; the unit handed out next
is the first HEAVY_UNITS entry still waiting, else xdist's own first.
"""
from __future__ import annotations

import ast
import functools
import glob
import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
# Shared fixture -> how a test file uses it: the fixture's name as a
# parameter of a test or fixture, or a module it imports.
SHARED = {
    'exported': ('parameter', 'exported'),  # tests/export/conftest.py
    'server': ('parameter', 'server'),      # tests/export/conftest.py
    'trained_run': ('parameter', 'trained_run'),  # tests/trainers/conftest.py
    'published': ('import', 'publish_fixture'),
}


@pytest.fixture(scope='module')
def root_conftest():
  spec = importlib.util.spec_from_file_location(
      'root_conftest_under_test', os.path.join(ROOT, 'conftest.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _test_files() -> list[str]:
  return sorted(os.path.relpath(p, ROOT).replace(os.sep, '/') for p in
                glob.glob(os.path.join(ROOT, 'tests', '**', 'test_*.py'),
                          recursive=True))


@functools.lru_cache(maxsize=None)
def _nodes(path: str) -> list[ast.AST]:
  with open(os.path.join(ROOT, path), encoding='utf-8') as f:
    return list(ast.walk(ast.parse(f.read())))


def _uses(path: str, kind: str, name: str) -> bool:
  for node in _nodes(path):
    if kind == 'parameter' and isinstance(node, ast.FunctionDef):
      if name in [a.arg for a in node.args.args + node.args.kwonlyargs]:
        return True
    if kind == 'import' and isinstance(node, ast.Import):
      if name in [a.name for a in node.names]:
        return True
  return False


@pytest.mark.parametrize('fixture', sorted(SHARED))
def test_files_sharing_a_fixture_are_one_unit(root_conftest, fixture):
  kind, name = SHARED[fixture]
  users = [p for p in _test_files() if _uses(p, kind, name)]
  assert len(users) >= 2, users  # else there is nothing to keep together
  units = {p: root_conftest.schedule_unit(f'{p}::test_x') for p in users}
  assert len(set(units.values())) == 1, units


def test_other_tests_are_grouped_by_file(root_conftest):
  unit = root_conftest.schedule_unit
  assert unit('tests/zoo/test_metrics.py::test_pck[a::b]') == \
      'tests/zoo/test_metrics.py'
  assert unit('tests/zoo/test_metrics.py::Class::test_x') == \
      'tests/zoo/test_metrics.py'
  assert unit('tests/export/test_serve.py::test_x') == \
      unit('tests/export/test_client.py::test_y[True]')
  assert unit('tests/trainers/test_run.py::test_x') != \
      unit('tests/trainers/test_faults.py::test_x')


def test_heavy_units_exist(root_conftest):
  units = {root_conftest.schedule_unit(p) for p in _test_files()}
  missing = [u for u in root_conftest.HEAVY_UNITS if u not in units]
  assert not missing, f'HEAVY_UNITS names no test file or unit: {missing}'
  assert len(set(root_conftest.HEAVY_UNITS)) == len(root_conftest.HEAVY_UNITS)


def test_next_unit_is_the_heaviest_waiting(root_conftest):
  heavy = root_conftest.HEAVY_UNITS
  plain = ['tests/zoo/test_metrics.py', 'tests/zoo/test_geometry.py']
  assert root_conftest.next_unit(plain + [heavy[2], heavy[0]]) == heavy[0]
  assert root_conftest.next_unit([heavy[3]] + plain + [heavy[1]]) == heavy[1]
  # No heavy unit left: xdist's order stands.
  assert root_conftest.next_unit(plain) == plain[0]
  assert root_conftest.next_unit(plain[::-1]) == plain[1]
