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
