"""Dependencies point one way: zoo <- export <- trainers <- benchmarks.

zoo/ (models, data, weights, inference) imports none of the other three;
export/ (SavedModels, serving) builds on zoo/ alone; trainers/ imports no
benchmark. Every import statement counts, at module level or inside a
function, so a lazy import cannot hide a cycle. The development server
(export.serve and the modules it runs) imports nothing from the zoo: it runs
from a copy of export/ alone.
"""
from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
# Package -> the first-party packages it must not import.
FORBIDDEN = {
    'zoo': ('trainers', 'export', 'benchmarks'),
    'export': ('trainers', 'benchmarks'),
    'trainers': ('benchmarks',),
    'benchmarks': (),
}
# Files that must not import these packages beyond their package's rule.
FORBIDDEN_IN_FILES = {
    os.path.join('export', name): ('zoo',)
    for name in ('serve.py', 'serving_core.py', 'serving_grpc.py',
                 'serving_rest.py', 'serving_config.py', 'protocol.py')
}


def imported_modules(tree: ast.AST):
  """(line, dotted module name) of every absolute import in `tree`."""
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        yield node.lineno, alias.name
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      yield node.lineno, node.module


def layering_violations(root: str = ROOT) -> list[str]:
  """'path:line: PACKAGE imports MODULE' for every import against the
  layers."""
  problems = []
  for package, forbidden in FORBIDDEN.items():
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, package)):
      dirnames[:] = sorted(d for d in dirnames
                           if not d.startswith(('.', '__pycache__')))
      for filename in sorted(filenames):
        if not filename.endswith('.py'):
          continue
        path = os.path.join(dirpath, filename)
        with open(path, encoding='utf-8') as f:
          tree = ast.parse(f.read(), filename=path)
        relpath = os.path.relpath(path, root)
        forbidden_here = forbidden + FORBIDDEN_IN_FILES.get(relpath, ())
        for line, module in imported_modules(tree):
          if module.split('.')[0] in forbidden_here:
            problems.append(f'{relpath}:{line}: {package}/ imports {module}')
  return problems


def test_imports_follow_the_layers():
  problems = layering_violations()
  assert not problems, (
      'imports against the layers (zoo <- export <- trainers <- benchmarks):'
      '\n' + '\n'.join(problems))


@pytest.mark.parametrize('package,source,bad', [
    ('zoo', 'from trainers import checkpoints\n', True),
    ('zoo', 'def f():\n  import export.serve\n', True),
    ('export', 'from benchmarks import bench_serving\n', True),
    ('trainers', 'from benchmarks.study_claims import judge\n', True),
    ('trainers', 'from export import saved_model\nfrom zoo import base\n',
     False),
    ('zoo', 'from zoo_extra import x\nimport zoo.weights\n', False),
    ('export', 'from zoo import fileio\n', False),
])
def test_the_check_finds_a_violation(tmp_path, package, source, bad):
  os.makedirs(tmp_path / package / 'sub')
  (tmp_path / package / 'sub' / 'mod.py').write_text(source)
  problems = layering_violations(str(tmp_path))
  if bad:
    assert len(problems) == 1
    assert problems[0].startswith(os.path.join(package, 'sub', 'mod.py') + ':')
  else:
    assert problems == []


def test_the_server_modules_import_no_zoo(tmp_path):
  os.makedirs(tmp_path / 'export')
  (tmp_path / 'export' / 'serve.py').write_text(
      'import json\n\n\ndef f():\n  from zoo import fileio\n')
  assert layering_violations(str(tmp_path)) == [
      os.path.join('export', 'serve.py') + ':5: export/ imports zoo']
