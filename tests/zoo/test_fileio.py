"""Tests for zoo/fileio.py: atomic writes replace whole files or nothing."""
import os
import stat

import pytest

from zoo import fileio


def test_writes_text_with_default_permissions_and_no_leftovers(tmp_path):
  path = tmp_path / 'sub' / 'a.txt'          # the directory is created
  fileio.atomic_write_text(str(path), 'first\n')
  fileio.atomic_write_text(str(path), 'second é\n')
  assert path.read_text(encoding='utf-8') == 'second é\n'
  mode = stat.S_IMODE(os.stat(path).st_mode)
  assert mode == 0o666 & ~fileio.current_umask()   # not mkstemp's 0600
  assert os.listdir(path.parent) == ['a.txt']


def test_a_failed_write_keeps_the_old_file(tmp_path):
  path = tmp_path / 'a.txt'
  fileio.atomic_write_text(str(path), 'good\n')
  with pytest.raises(TypeError):
    fileio.atomic_write_text(str(path), object())   # not text: write fails
  assert path.read_text() == 'good\n'
  assert os.listdir(tmp_path) == ['a.txt']


def _dead_pid() -> int:
  """The id of a process that has exited (a child reaped right away)."""
  import subprocess
  import sys
  child = subprocess.Popen([sys.executable, '-c', 'pass'])
  child.wait()
  return child.pid


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
  dead = _dead_pid()
  assert not fileio.process_alive(dead)
  assert fileio.process_alive(os.getpid())
  stale_dir = tmp_path / f'.tmp-{dead}-model-abc'
  stale_dir.mkdir()
  (stale_dir / 'saved_model.pb').write_bytes(b'x')
  stale_file = tmp_path / f'.tmp-{dead}-model.weights.h5'
  stale_file.write_bytes(b'x')
  aside = tmp_path / f'.old-{dead}-model-1-xyz'
  aside.mkdir()
  keep = [f'.tmp-{os.getpid()}-mine', f'.tmp-{os.getppid()}-parent',
          '.tmp-model-nopid', 'data.txt', '.old-notanumber-x']
  for name in keep:
    (tmp_path / name).write_text('keep')
  assert fileio.stale_temporaries(str(tmp_path)) == sorted(
      str(p) for p in (stale_dir, stale_file, aside))
  removed = fileio.remove_stale_temporaries(str(tmp_path))
  assert sorted(removed) == sorted(str(p) for p in (stale_dir, stale_file,
                                                    aside))
  assert sorted(os.listdir(tmp_path)) == sorted(keep)
  assert fileio.remove_stale_temporaries(str(tmp_path / 'missing')) == []


def test_atomic_write_names_its_temporary_after_the_process(tmp_path,
                                                             monkeypatch):
  seen = []
  real_replace = os.replace
  monkeypatch.setattr(os, 'replace', lambda src, dst: (
      seen.append(os.path.basename(src)), real_replace(src, dst))[1])
  fileio.atomic_write_text(str(tmp_path / 'a.txt'), 'x')
  assert seen and seen[0].startswith(f'.tmp-{os.getpid()}-a.txt-'), seen


def test_exchange_paths_swaps_two_directories(tmp_path):
  first, second = tmp_path / 'first', tmp_path / 'second'
  first.mkdir()
  second.mkdir()
  (first / 'a').write_text('A')
  (second / 'b').write_text('B')
  if not fileio.exchange_paths(str(first), str(second)):
    pytest.skip('this system / file system cannot swap paths atomically')
  assert os.listdir(first) == ['b'] and os.listdir(second) == ['a']
  with pytest.raises(FileNotFoundError):
    fileio.exchange_paths(str(first), str(tmp_path / 'missing'))


def _tree(path) -> dict[str, str]:
  return {name: open(os.path.join(path, name)).read()
          for name in sorted(os.listdir(path))}


@pytest.mark.parametrize('swap', [True, False])
def test_replace_directory(tmp_path, monkeypatch, swap):
  final = tmp_path / 'final'
  asides = []

  def make_aside():
    asides.append(str(tmp_path / '.old-aside'))
    return asides[-1]

  for version in ('1', '2'):
    staged = tmp_path / f'.tmp-staged-{version}'
    staged.mkdir()
    (staged / 'version.txt').write_text(version)
    if not swap:
      monkeypatch.setattr(fileio, 'exchange_paths', lambda a, b: False)
    fileio.replace_directory(str(staged), str(final), make_aside)
    assert _tree(final) == {'version.txt': version}
    assert not staged.exists()
  # Only the two-rename fallback moves the old directory aside; either way
  # nothing but the new directory is left.
  assert len(asides) == (0 if swap else 1)
  assert sorted(os.listdir(tmp_path)) == ['final']


def test_replace_directory_puts_the_old_one_back_on_failure(tmp_path,
                                                             monkeypatch):
  final = tmp_path / 'final'
  final.mkdir()
  (final / 'version.txt').write_text('old')
  staged = tmp_path / 'missing'  # the second rename fails
  monkeypatch.setattr(fileio, 'exchange_paths', lambda a, b: False)
  with pytest.raises(FileNotFoundError):
    fileio.replace_directory(str(staged), str(final),
                             lambda: str(tmp_path / '.old-aside'))
  assert _tree(final) == {'version.txt': 'old'}
  assert sorted(os.listdir(tmp_path)) == ['final']
