"""The BUILD files cover the tree, so they cannot drift from it.

Evaluates every BUILD file as Python with stub rules (py_library, py_binary,
py_test, glob, load, package, exports_files, alias, requirement) that record
the targets, expands glob() with Python's glob (honouring Bazel's package
boundaries), then checks, independently of how the BUILD files are written:

- every .py file in the repository is in some target's srcs;
- every tests/**/test_*.py is in a py_test, which runs it through pytest;
- every src, main and data file exists; every dep names an existing target;
  there are no dependency cycles (Bazel rejects them);
- every module with `if __name__ == '__main__':` is the main of a py_binary
  or py_test, and every py_binary's main has one;
- the imports a module runs when loaded (module level) are provided by its
  target or that target's transitive deps, and what an executable target
  imports from its main (also inside functions) and, transitively, at
  module level is in its transitive closure; third-party imports map to the
  placeholder libraries of the top-level BUILD (PIP_PACKAGES);
- the files use only syntax Starlark accepts in BUILD files.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import glob as glob_lib
import os
import sys

import pytest

# realpath: under `bazel test` this file is a runfiles symlink into the tree.
ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
BUILD_NAMES = ('BUILD', 'BUILD.bazel')
# Directories never part of the source tree (outputs, environments).
SKIP_DIRS = {'.git', '.venv', 'venv', '__pycache__', '.pytest_cache', 'runs',
             'workdirs', 'exports', 'node_modules', 'build', 'dist'}
# The command-line entry points the project documents; each must be a
# py_binary (path of its main file).
EXPECTED_CLIS = (
    'trainers/run.py', 'trainers/evaluate.py', 'trainers/publish.py',
    'export/saved_model.py',
    'export/serve.py', 'export/client.py', 'zoo/predict.py',
    'zoo/data/synthetic.py', 'zoo/data/h36m.py', 'zoo/data/mpii.py',
    'benchmarks/study.py')
RULES = ('py_library', 'py_binary', 'py_test', 'alias')


@dataclasses.dataclass
class Target:
  kind: str
  package: str            # '' for the root package
  name: str
  srcs: list[str]         # repository-relative file paths
  deps: list[str]         # absolute labels
  data: list[str]
  main: str | None        # repository-relative path
  attrs: dict

  @property
  def label(self) -> str:
    return f'//{self.package}:{self.name}'


@dataclasses.dataclass
class Build:
  targets: dict[str, Target]        # label -> target
  packages: dict[str, dict]         # package -> evaluated namespace
  errors: list[str]


def _skip(dirname: str) -> bool:
  # bazel-*: the convenience links Bazel leaves in the workspace root.
  return dirname in SKIP_DIRS or dirname.startswith(('.', 'bazel-'))


def _walk():
  for dirpath, dirnames, filenames in os.walk(ROOT):
    dirnames[:] = sorted(d for d in dirnames if not _skip(d))
    yield dirpath, sorted(filenames)


def _rel(path: str) -> str:
  rel = os.path.relpath(path, ROOT)
  return '' if rel == '.' else rel.replace(os.sep, '/')


@functools.lru_cache(maxsize=None)
def _package_dirs() -> frozenset[str]:
  return frozenset(_rel(d) for d, files in _walk()
                   if any(f in BUILD_NAMES for f in files))


def _join(package: str, name: str) -> str:
  return f'{package}/{name}' if package else name


def _in_subpackage(package: str, rel_file: str) -> bool:
  """Whether `rel_file` (relative to `package`) lies in a nested package."""
  parts = rel_file.split('/')[:-1]
  for i in range(1, len(parts) + 1):
    if _join(package, '/'.join(parts[:i])) in _package_dirs():
      return True
  return False


def _glob(package: str, include, exclude=(), exclude_directories=1,
          allow_empty=True):
  del exclude_directories, allow_empty
  base = os.path.join(ROOT, package)
  found = set()
  for pattern in include:
    for path in glob_lib.glob(pattern, root_dir=base, recursive=True):
      full = os.path.join(base, path)
      rel = path.replace(os.sep, '/')
      if os.path.isfile(full) and not _in_subpackage(package, rel) and not \
          any(_skip(p) for p in rel.split('/')[:-1]):
        found.add(rel)
  for pattern in exclude:
    for path in glob_lib.glob(pattern, root_dir=base, recursive=True):
      found.discard(path.replace(os.sep, '/'))
  return sorted(found)


def _label(package: str, value: str) -> str:
  """An absolute label //pkg:name for `value` written in `package`."""
  if value.startswith('@'):
    return value
  if value.startswith('//'):
    pkg, _, name = value[2:].partition(':')
    return f'//{pkg}:{name or pkg.rsplit("/", 1)[-1]}'
  return f'//{package}:{value.lstrip(":")}'


def _file(package: str, value: str) -> str:
  """Repository path of a file label (relative, ':name' or //pkg:name)."""
  label = _label(package, value)
  pkg, _, name = label[2:].partition(':')
  return _join(pkg, name)


def _evaluate(path: str, build: Build) -> None:
  package = _rel(os.path.dirname(path))

  def rule(kind):
    def record(name, srcs=(), deps=(), data=(), main=None, actual=None,
               **attrs):
      target = Target(
          kind=kind, package=package, name=name,
          srcs=[_file(package, s) for s in srcs],
          deps=[_label(package, d) for d in deps] + (
              [_label(package, actual)] if actual else []),
          data=[_file(package, d) for d in data],
          main=_file(package, main) if main else None, attrs=attrs)
      if target.label in build.targets:
        build.errors.append(f'{path}: duplicate target name {name!r}')
      build.targets[target.label] = target
    return record

  namespace = {kind: rule(kind) for kind in RULES}
  namespace.update({
      'glob': functools.partial(_glob, package),
      'load': lambda *args, **kwargs: None,
      'package': lambda **kwargs: None,
      'exports_files': lambda *args, **kwargs: None,
      'requirement': lambda name: '//:' + name.lower().replace('-', '_'),
      '__builtins__': {'len': len, 'sorted': sorted, 'dict': dict,
                       'list': list, 'str': str, 'range': range,
                       'enumerate': enumerate, 'zip': zip},
  })
  with open(path, encoding='utf-8') as f:
    source = f.read()
  exec(compile(source, path, 'exec'), namespace)  # pylint: disable=exec-used
  build.packages[package] = namespace


@functools.lru_cache(maxsize=None)
def load_build() -> Build:
  build = Build({}, {}, [])
  for package in sorted(_package_dirs()):
    for name in BUILD_NAMES:
      path = os.path.join(ROOT, package, name)
      if os.path.exists(path):
        _evaluate(path, build)
  return build


def _python_files() -> list[str]:
  return [_rel(os.path.join(d, f)) for d, files in _walk() for f in files
          if f.endswith('.py')]


def _build_files() -> list[str]:
  return [os.path.join(ROOT, p, n) for p in sorted(_package_dirs())
          for n in BUILD_NAMES if os.path.exists(os.path.join(ROOT, p, n))]


# ----------------------------------------------------------------------------
# Imports
# ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Import:
  module: str       # dotted name as written (absolute)
  names: tuple      # `from module import names`
  level: int        # relative import level
  lazy: bool        # inside a function


def _optional(handlers) -> bool:
  for handler in handlers:
    names = []
    if isinstance(handler.type, ast.Name):
      names = [handler.type.id]
    elif isinstance(handler.type, ast.Tuple):
      names = [e.id for e in handler.type.elts if isinstance(e, ast.Name)]
    if {'ImportError', 'ModuleNotFoundError'} & set(names):
      return True
  return False


@functools.lru_cache(maxsize=None)
def imports_of(path: str) -> tuple[Import, ...]:
  if not os.path.exists(os.path.join(ROOT, path)):
    return ()  # reported by test_sources_and_data_exist
  with open(os.path.join(ROOT, path), encoding='utf-8') as f:
    tree = ast.parse(f.read(), path)
  found = []

  def visit(node, lazy):
    if isinstance(node, ast.Try) and _optional(node.handlers):
      return  # an optional import, guarded by except ImportError
    if isinstance(node, ast.If) and 'TYPE_CHECKING' in ast.dump(node.test):
      return
    if isinstance(node, ast.Import):
      found.extend(Import(a.name, (), 0, lazy) for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      found.append(Import(node.module or '', tuple(a.name for a in node.names),
                          node.level, lazy))
    lazy = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                     ast.Lambda))
    for child in ast.iter_child_nodes(node):
      visit(child, lazy)

  visit(tree, False)
  return tuple(found)


def _module_file(dotted: str, search: list[str]) -> str | None:
  """The repository file that `import dotted` loads, searching `search`.

  A directory without __init__.py counts as a (namespace) package only at
  the repository root (e.g. benchmarks/), so tests/zoo/ is not `zoo`.
  """
  parts = dotted.split('.')
  for base in search:
    stem = _join(base, '/'.join(parts))
    for candidate in (stem + '.py', stem + '/__init__.py'):
      if os.path.isfile(os.path.join(ROOT, candidate)):
        return candidate
    if not base and os.path.isdir(os.path.join(ROOT, stem)) and \
        not _skip(parts[0]):
      return stem + '/'  # a namespace package: nothing to load
  return None


def _search_path(path: str) -> list[str]:
  """sys.path as seen by `path`: its directory (scripts, and pytest's
  rootdir-relative insertion: the first directory upwards without an
  __init__.py), then the repository root."""
  directory = os.path.dirname(path)
  out = [directory]
  while directory and os.path.exists(
      os.path.join(ROOT, directory, '__init__.py')):
    directory = os.path.dirname(directory)
    out.append(directory)
  if '' not in out:
    out.append('')
  # Tests that put a sibling test directory on sys.path themselves (to share
  # a helper module): any directory of the same top-level tree.
  top = path.split('/')[0]
  if top == 'tests':
    out += sorted({_rel(d) for d, files in _walk()
                   if _rel(d).startswith(top + '/')} - set(out))
  return out


def resolve(path: str, imp: Import, pip: dict[str, str]
            ) -> tuple[set[str], set[str], list[str]]:
  """(first-party files, third-party placeholder labels, problems)."""
  files, labels, problems = set(), set(), []
  if imp.level:
    package = os.path.dirname(path)
    for _ in range(imp.level - 1):
      package = os.path.dirname(package)
    base = package.replace('/', '.')
    dotted = '.'.join(p for p in (base, imp.module) if p)
    search = ['']
  else:
    dotted = imp.module
    search = _search_path(path)
  top = dotted.split('.')[0]
  if _module_file(top, search) is None:
    if top in sys.stdlib_module_names:
      return files, labels, problems
    if top in pip:
      labels.add(pip[top])
    else:
      problems.append(f'{path}: imports {top!r}, which is neither in the '
                      'repository, nor the standard library, nor a '
                      'placeholder in the top-level BUILD\'s PIP_PACKAGES')
    return files, labels, problems
  parts = dotted.split('.')
  for i in range(1, len(parts) + 1):  # importing a.b.c runs a/, a/b/ too
    found = _module_file('.'.join(parts[:i]), search)
    if found is None:
      problems.append(f'{path}: cannot resolve import {dotted!r}')
      return files, labels, problems
    if found.endswith('.py'):
      files.add(found)
  for name in imp.names:  # `from package import module`
    found = _module_file(f'{dotted}.{name}', search)
    if found and found.endswith('.py'):
      files.add(found)
  return files, labels, problems


# ----------------------------------------------------------------------------
# Helpers over the target graph
# ----------------------------------------------------------------------------

def _pip_labels(build: Build) -> dict[str, str]:
  """Top-level import name -> placeholder label (root PIP_PACKAGES)."""
  packages = build.packages.get('', {}).get('PIP_PACKAGES', {})
  return {module: f'//:{name}' for name, modules in packages.items()
          for module in modules}


def _closure(build: Build, label: str) -> set[str]:
  seen, stack = set(), [label]
  while stack:
    current = stack.pop()
    if current in seen or current not in build.targets:
      continue
    seen.add(current)
    stack.extend(build.targets[current].deps)
  return seen


def _closure_srcs(build: Build, labels: set[str]) -> set[str]:
  return {s for label in labels for s in build.targets[label].srcs}


def _has_main_guard(path: str) -> bool:
  with open(os.path.join(ROOT, path), encoding='utf-8') as f:
    tree = ast.parse(f.read(), path)
  for node in tree.body:
    if isinstance(node, ast.If) and isinstance(node.test, ast.Compare):
      names = {getattr(n, 'id', None) for n in ast.walk(node.test)}
      values = {getattr(n, 'value', None) for n in ast.walk(node.test)}
      if '__name__' in names and '__main__' in values:
        return True
  return False


def _executables(build: Build) -> list[Target]:
  return [t for t in build.targets.values()
          if t.kind in ('py_binary', 'py_test')]


# ----------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------

def test_build_files_exist_and_evaluate():
  build = load_build()
  assert '' in _package_dirs(), 'no top-level BUILD file'
  assert not build.errors, build.errors
  assert len(build.targets) > 10
  kinds = {t.kind for t in build.targets.values()}
  assert {'py_library', 'py_binary', 'py_test'} <= kinds


@pytest.mark.parametrize('path', _build_files(), ids=_rel)
def test_build_file_is_starlark(path):
  """Only constructs Starlark allows in BUILD files (no def, if, for,
  imports, f-strings, lambdas, *args / **kwargs)."""
  with open(path, encoding='utf-8') as f:
    tree = ast.parse(f.read(), path)
  forbidden = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
               ast.Import, ast.ImportFrom, ast.If, ast.For, ast.While,
               ast.Try, ast.With, ast.Lambda, ast.JoinedStr, ast.Set,
               ast.SetComp, ast.Starred, ast.Global, ast.Nonlocal,
               ast.Raise, ast.Assert, ast.NamedExpr, ast.Yield, ast.Await)
  bad = [f'{type(n).__name__} at line {n.lineno}' for n in ast.walk(tree)
         if isinstance(n, forbidden)]
  bad += [f'**kwargs at line {n.value.lineno}' for n in ast.walk(tree)
          if isinstance(n, ast.keyword) and n.arg is None]
  bad += [f'`is` at line {n.lineno}' for n in ast.walk(tree)
          if isinstance(n, ast.Compare) and any(
              isinstance(op, (ast.Is, ast.IsNot)) for op in n.ops)]
  for stmt in tree.body:
    if not (isinstance(stmt, ast.Assign) or (
        isinstance(stmt, ast.Expr) and isinstance(
            stmt.value, (ast.Call, ast.ListComp, ast.Constant)))):
      bad.append(f'top-level {type(stmt).__name__} at line {stmt.lineno}')
  assert not bad, f'{_rel(path)} is not valid BUILD Starlark: {bad}'


def test_every_python_file_is_in_a_target():
  covered = {s for t in load_build().targets.values() for s in t.srcs}
  missing = [p for p in _python_files() if p not in covered]
  assert not missing, (
      f'not in any BUILD target\'s srcs: {missing}; add them (or a glob) to '
      'the BUILD file of their package')


def test_every_test_file_is_a_py_test():
  build = load_build()
  tests = [p for p in _python_files()
           if p.startswith('tests/') and os.path.basename(p).startswith(
               'test_')]
  assert 'tests/test_build.py' in tests
  by_test = {}
  for target in build.targets.values():
    if target.kind == 'py_test':
      for src in target.srcs:
        if os.path.basename(src).startswith('test_'):
          by_test.setdefault(src, []).append(target)
  missing = [p for p in tests if p not in by_test]
  assert not missing, f'test files without a py_test: {missing}'
  for path, targets in by_test.items():
    for target in targets:
      # Run through pytest: the main is the runner, the file an argument.
      assert target.main and target.main != path, target.label
      assert target.main in target.srcs
      with open(os.path.join(ROOT, target.main), encoding='utf-8') as f:
        assert 'pytest.main' in f.read(), target.label
      args = ' '.join(target.attrs.get('args', []))
      assert os.path.relpath(path, target.package) in args, (
          f'{target.label} does not pass {path} to the runner: args {args!r}')
      assert target.attrs.get('size') in ('small', 'medium', 'large',
                                          'enormous'), target.label


def test_sources_and_data_exist():
  missing = []
  for target in load_build().targets.values():
    for path in target.srcs + target.data + (
        [target.main] if target.main else []):
      if not os.path.exists(os.path.join(ROOT, path)):
        missing.append(f'{target.label}: {path}')
    if target.main and target.main not in target.srcs:
      missing.append(f'{target.label}: main {target.main} not in srcs')
    if target.kind in ('py_binary', 'py_test') and not target.main and \
        f'{_join(target.package, target.name)}.py' not in target.srcs:
      missing.append(f'{target.label}: no main and no {target.name}.py')
  assert not missing, missing


def test_deps_name_existing_targets_without_cycles():
  build = load_build()
  unknown = [f'{t.label} -> {d}' for t in build.targets.values()
             for d in t.deps if d not in build.targets]
  assert not unknown, f'deps that name no target: {unknown}'
  # Cycle check (depth-first, colouring).
  state = {}

  def visit(label, path):
    if state.get(label) == 'done':
      return
    assert state.get(label) != 'open', f'dependency cycle: {path + [label]}'
    state[label] = 'open'
    for dep in build.targets[label].deps:
      visit(dep, path + [label])
    state[label] = 'done'

  for label in build.targets:
    visit(label, [])


def test_every_command_line_entry_point_is_a_binary():
  build = load_build()
  mains = {t.main or f'{_join(t.package, t.name)}.py': t
           for t in _executables(build)}
  binaries = {m for m, t in mains.items() if t.kind == 'py_binary'}
  with_guard = [p for p in _python_files() if _has_main_guard(p)]
  missing = [p for p in with_guard if p not in mains]
  assert not missing, (f'modules with `if __name__ == "__main__":` that no '
                       f'py_binary runs: {missing}')
  for path in EXPECTED_CLIS:
    assert path in binaries, f'{path} is not a py_binary main'
  no_guard = [m for m in binaries if not _has_main_guard(m)]
  assert not no_guard, f'py_binary mains that do nothing when run: {no_guard}'


def test_imports_are_provided_by_deps():
  build = load_build()
  pip = _pip_labels(build)
  assert pip, 'the top-level BUILD defines no PIP_PACKAGES placeholders'
  problems = []
  for target in build.targets.values():
    if target.kind == 'alias':
      continue
    closure = _closure(build, target.label)
    srcs = _closure_srcs(build, closure)
    for path in target.srcs:
      for imp in imports_of(path):
        if imp.lazy:
          continue  # checked from the entry points below
        files, labels, issues = resolve(path, imp, pip)
        problems += issues
        problems += [f'{target.label}: {path} imports {f} at module level, '
                     'which is in no (transitive) dep' for f in files
                     if f not in srcs]
        problems += [f'{target.label}: {path} imports a module of {lab}, '
                     'which is not a (transitive) dep' for lab in labels
                     if lab not in closure]
  assert not problems, '\n'.join(sorted(set(problems)))


def test_entry_points_reach_only_their_closure():
  """What a binary or test imports when it runs is in its transitive
  closure: everything its main (or test file) imports, including inside
  functions, and what those modules import at module level, transitively.

  Lazy imports deeper down (e.g. zoo.load importing trainers) are only
  checked where they resolve: whether they run depends on what is called.
  """
  build = load_build()
  pip = _pip_labels(build)
  problems = []
  for target in _executables(build):
    closure = _closure(build, target.label)
    srcs = _closure_srcs(build, closure)
    start = [s for s in target.srcs if s == target.main or
             os.path.basename(s).startswith('test_')] or target.srcs
    if target.kind == 'py_test':  # pytest loads the conftest.py files above
      for test in list(start):
        for directory in _search_path(test) + [os.path.dirname(test)]:
          while True:
            conftest = _join(directory, 'conftest.py')
            if os.path.exists(os.path.join(ROOT, conftest)):
              start.append(conftest)
              if conftest not in srcs:
                problems.append(f'{target.label}: pytest loads {conftest}, '
                                'which is not in its closure')
            if not directory:
              break
            directory = os.path.dirname(directory)
    seen, stack = set(), list(start)
    while stack:
      path = stack.pop()
      if path in seen:
        continue
      seen.add(path)
      for imp in imports_of(path):
        if imp.lazy and path not in start:
          continue  # only the entry point's own lazy imports surely run
        files, labels, issues = resolve(path, imp, pip)
        problems += issues
        for f in files:
          if f not in srcs:
            problems.append(f'{target.label}: reaches {f} (imported by '
                            f'{path}), which is not in its closure')
          else:
            stack.append(f)
        problems += [f'{target.label}: reaches {lab} (imported by {path}), '
                     'which is not a dep' for lab in labels
                     if lab not in closure]
  assert not problems, '\n'.join(sorted(set(problems)))


def test_checker_sees_package_boundaries(tmp_path, monkeypatch):
  """The glob stub leaves out files of nested packages, as Bazel does."""
  (tmp_path / 'a' / 'b').mkdir(parents=True)
  (tmp_path / 'a' / 'c').mkdir()
  for rel in ('a/BUILD', 'a/x.py', 'a/b/BUILD', 'a/b/y.py', 'a/c/z.py'):
    (tmp_path / rel).write_text('')
  monkeypatch.setattr(sys.modules[__name__], 'ROOT', str(tmp_path))
  _package_dirs.cache_clear()
  try:
    assert _glob('a', ['**/*.py']) == ['c/z.py', 'x.py']
    assert _glob('a', ['**/*.py'], exclude=['c/*.py']) == ['x.py']
    assert _glob('a/b', ['*.py']) == ['y.py']
  finally:
    _package_dirs.cache_clear()
