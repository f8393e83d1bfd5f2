"""The study's run records: one small JSON file per finished run, kept in
the repository, so the study can be completed across machines and days
without keeping every run's weights.

A record holds what the study computed for one run (the study.json entry
of that run: test-split metrics, truncated crops, inference speed) and
what identifies the run: its metrics.json and config.json as training
wrote them (model, preset, seed, steps, the config it trained with), the
commit and the machine it was evaluated on. The study uses a record in
place of a run when the record matches the model, preset, seed, budget
and the config the model trains with now, exactly as it checks a run
directory; so a preset change retires the records made before it.

Layout: ROOT/<preset>/<budget>/<model>/seed<N>.json (<budget>: steps<N>,
or seconds<S> for a time budget), with ROOT by default
benchmarks/study_results in the repository.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from typing import Any, Mapping

from benchmarks.study_claims import REPO_ROOT
from benchmarks.study_report import portable_text
from zoo import fileio

RECORDS_ROOT = os.path.join(REPO_ROOT, 'benchmarks', 'study_results')
RECORD_VERSION = 1


def budget_name(steps: int | None, seconds: float | None) -> str:
  """The budget as a directory name: steps<N>, or seconds<S> for a time
  budget."""
  if seconds:
    return f'seconds{seconds:g}'
  if steps is None:
    raise ValueError('a budget needs steps or seconds')
  return f'steps{steps}'


def record_path(root: str, preset: str, steps: int | None,
                seconds: float | None, name: str, seed: int) -> str:
  """Where the record of study model `name` at `preset` with `seed` for a
  budget of `steps` (or `seconds`) is: records of other budgets are kept
  beside it, not replaced."""
  return os.path.join(root, preset, budget_name(steps, seconds), name,
                      f'seed{seed}.json')


def read_record(path: str) -> dict[str, Any] | None:
  """The record at `path`; None if there is none. A file that is not a
  record raises ValueError saying what is wrong with it."""
  if not os.path.exists(path):
    return None
  try:
    record = fileio.read_json(path)
  except (OSError, ValueError) as e:
    raise ValueError(f'{path}: not a study record ({e})') from None
  missing = [key for key in ('version', 'result', 'metrics', 'run_config')
             if not isinstance(record, dict) or key not in record]
  if missing:
    raise ValueError(f'{path}: not a study record: it has no '
                     f'{", ".join(missing)}')
  if record['version'] != RECORD_VERSION:
    raise ValueError(f'{path}: study record version {record["version"]}, '
                     f'expected {RECORD_VERSION}')
  return record


def write_record(path: str, result: Mapping[str, Any],
                 metrics: Mapping[str, Any], run_config: Mapping[str, Any],
                 machine: str) -> None:
  """Writes the record of one run atomically (a good record is never
  replaced by a half-written one), with paths under the working and home
  directories written as the report shows them. `result`: the run's
  study.json entry; `metrics`, `run_config`: its metrics.json and
  config.json."""
  record = {
      'version': RECORD_VERSION,
      'evaluated': {
          'commit': source_commit(),
          'date': datetime.datetime.now().astimezone().isoformat(
              timespec='seconds'),
          'machine': machine,
      },
      'result': result, 'metrics': metrics, 'run_config': run_config,
  }
  os.makedirs(os.path.dirname(path), exist_ok=True)
  # A record is kept in the repository: it names no directory of the
  # machine (config.json holds the data directory's absolute path).
  fileio.atomic_write_text(path,
                           portable_text(json.dumps(record, indent=1)) + '\n')


def source_commit() -> str | None:
  """The repository's commit (short hash, '+changes' when the working tree
  differs from it); None outside a git checkout."""
  def git(*args):
    return subprocess.run(['git', '-C', REPO_ROOT, *args], check=True,
                          capture_output=True, text=True,
                          timeout=30).stdout.strip()
  try:
    commit = git('rev-parse', '--short', 'HEAD')
    changed = git('status', '--porcelain', '--untracked-files=no')
  except (OSError, subprocess.SubprocessError):
    return None
  return commit + ('+changes' if changed else '')


def machine_text() -> str:
  """The machine in words, as the study's setup names it."""
  cpu = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      for line in f:
        if line.startswith('model name'):
          cpu = line.split(':', 1)[1].strip()
          break
  except OSError:
    pass
  return f'{cpu}, {os.cpu_count()} CPUs'
