"""benchmarks/study_records.py: a record is written whole and read back as
written; a file that is not a record is refused, saying why. (The study's
use of records, matching and passing over stale ones, is tested in
test_study.py.)"""
from __future__ import annotations

import glob
import json
import os
import re

import pytest

from benchmarks import study_records
from benchmarks import study_runs


def test_record_round_trip_and_layout(tmp_path, monkeypatch):
  path = study_records.record_path(str(tmp_path), 'cpu', 3300, None,
                                   'metrabs', 2)
  assert path == os.path.join(str(tmp_path), 'cpu', 'steps3300', 'metrabs',
                              'seed2.json')
  # A time budget (the steps then only cap it).
  assert study_records.record_path('r', 'cpu', 3300, 600., 'metrabs', 2) == \
      os.path.join('r', 'cpu', 'seconds600', 'metrabs', 'seed2.json')
  result = {'model': 'metrabs', 'seed': 2, 'mpjpe_mm': 115.25,
            'truncated': {'mpjpe_truncated_joints_mm': 300.5}}
  metrics = {'model': 'metrabs', 'preset': 'cpu', 'steps': 3300}
  run_config = {'model': 'metrabs', 'preset': 'cpu', 'seed': 2,
                'config': {'train': {'batch_size': 32}}}
  study_records.write_record(path, result, metrics, run_config, 'a machine')
  record = study_records.read_record(path)
  assert record['result'] == result
  assert record['metrics'] == metrics
  assert record['run_config'] == run_config
  assert record['version'] == study_records.RECORD_VERSION
  evaluated = record['evaluated']
  assert evaluated['machine'] == 'a machine'
  assert re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d',
                      evaluated['date'])
  # Paths of the machine are written as the report shows them.
  home = os.path.expanduser('~')
  monkeypatch.chdir(tmp_path)
  study_records.write_record(
      path, result, metrics,
      {**run_config, 'data': {'directory': os.path.join(home, '.cache', 'd'),
                              'workdir': str(tmp_path / 'runs' / 'x')}}, 'm')
  text = open(path, encoding='utf-8').read()
  assert home + os.sep not in text and str(tmp_path) not in text
  assert study_records.read_record(path)['run_config']['data'] == {
      'directory': '~/.cache/d', 'workdir': 'runs/x'}
  # No temporary file is left beside it.
  assert os.listdir(os.path.dirname(path)) == ['seed2.json']
  # Records of another budget live beside it.
  other = study_records.record_path(str(tmp_path), 'cpu', 100, None,
                                    'metrabs', 2)
  study_records.write_record(other, {'mpjpe_mm': 200.}, {}, {}, 'm')
  assert study_records.read_record(path)['result'] == result
  # No record there: None.
  assert study_records.read_record(str(tmp_path / 'none.json')) is None


def test_not_a_record_is_refused_with_the_reason(tmp_path):
  path = tmp_path / 'seed0.json'
  path.write_text('{"result": ')
  with pytest.raises(ValueError, match=r'seed0.json: not a study record'):
    study_records.read_record(str(path))
  path.write_text(json.dumps({'result': {}, 'metrics': {}}))
  with pytest.raises(ValueError,
                     match=r'not a study record: it has no version, '
                           r'run_config$'):
    study_records.read_record(str(path))
  path.write_text(json.dumps([1, 2]))
  with pytest.raises(ValueError, match=r'it has no version, result'):
    study_records.read_record(str(path))
  path.write_text(json.dumps({'version': 99, 'result': {}, 'metrics': {},
                              'run_config': {}}))
  with pytest.raises(ValueError, match=r'study record version 99, expected '
                                       rf'{study_records.RECORD_VERSION}'):
    study_records.read_record(str(path))


def test_a_failed_write_keeps_the_good_record(tmp_path, monkeypatch):
  path = study_records.record_path(str(tmp_path), 'cpu', 3300, None,
                                   'metrabs', 0)
  study_records.write_record(path, {'mpjpe_mm': 1.}, {}, {}, 'm')
  good = open(path, encoding='utf-8').read()
  with pytest.raises(TypeError):  # not JSON: nothing is written
    study_records.write_record(path, {'mpjpe_mm': object()}, {}, {}, 'm')
  assert open(path, encoding='utf-8').read() == good


def test_source_commit_and_machine():
  commit = study_records.source_commit()
  # In a git checkout: a short hash, marked when the tree has changes.
  assert commit is None or re.fullmatch(r'[0-9a-f]{7,}(\+changes)?', commit)
  assert re.search(rf', {os.cpu_count()} CPUs$', study_records.machine_text())


def test_the_repositorys_records_are_the_studys_runs():
  """Every record kept in the repository lies where the study looks for
  it, names no directory of the machine, and still matches the model's
  current preset: a preset change that retires records fails here until
  they are removed (the study would pass over them anyway)."""
  root = study_records.RECORDS_ROOT
  paths = sorted(glob.glob(os.path.join(root, '*', '*', '*', 'seed*.json')))
  assert paths, f'no study records under {root}'
  home = os.path.expanduser('~') + os.sep
  for path in paths:
    preset, budget, name, seed_file = os.path.relpath(path, root).split(
        os.sep)
    seed = int(re.fullmatch(r'seed(\d+)\.json', seed_file).group(1))
    steps = seconds = None
    if budget.startswith('seconds'):
      seconds = float(budget[len('seconds'):])
    else:
      steps = int(re.fullmatch(r'steps(\d+)', budget).group(1))
    result, reason = study_runs.find_record(name, preset, seed, root, steps,
                                            seconds)
    assert reason is None, reason
    assert (result['model'], result['seed']) == (name, seed), path
    assert result['mpjpe_mm'] > 0., path
    text = open(path, encoding='utf-8').read()
    assert home not in text and study_records.REPO_ROOT not in text, path
