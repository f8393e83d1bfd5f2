"""Tests for the evaluation command line (trainers/evaluate.py)."""
import json
import os
import shutil
import sys

from absl import app
from absl import flags
import pytest

import trainer_test_model as tiny
from trainers import evaluate


def _run_cli(argv):
  flags.FLAGS.unparse_flags()
  saved = sys.argv
  sys.argv = ['trainers/evaluate.py'] + argv
  try:
    flags.FLAGS(sys.argv)
    return evaluate.main(['trainers.evaluate'])
  finally:
    sys.argv = saved
    flags.FLAGS.unparse_flags()


def test_reevaluation_reproduces_training_metrics(trained_run, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(trained_run.workdir, workdir)
  assert _run_cli([f'--model={tiny.NAME}', f'--workdir={workdir}',
                   '--noprogress']) == 0
  with open(os.path.join(workdir, 'metrics_eval.json')) as f:
    got = json.load(f)
  want = trained_run.metrics
  for key in ('mpjpe_mm', 'pa_mpjpe_mm', 'abs_mpjpe_mm', 'mean_error_2d_px',
              'extra_mpjpe_mm'):
    assert got[key] == pytest.approx(want[key], rel=1e-5), key
  assert got['per_action'] == pytest.approx(want['per_action'], rel=1e-5)
  assert got['steps'] == 4 and got['checkpoint_kind'] == 'h5'
  # The data it was trained on is found from the run's config.json.
  assert got['data']['dir'] == trained_run.manifest['data']['dir']


def test_flip_test_subset_and_out_path(trained_run, tiny_data, tmp_path):
  out = str(tmp_path / 'flip.json')
  _run_cli([f'--model={tiny.NAME}', f'--workdir={trained_run.workdir}',
            f'--data={tiny_data}', '--flip_test', '--num_examples=4',
            f'--out={out}', '--noprogress'])
  with open(out) as f:
    got = json.load(f)
  assert got['flip_test'] is True and got['num_eval_examples'] == 4
  assert not os.path.exists(os.path.join(trained_run.workdir,
                                         'metrics_eval.json'))
  # The evaluation's picture goes next to its JSON, the run's stays.
  assert os.path.exists(str(tmp_path / 'flip.png'))
  assert not os.path.exists(os.path.join(trained_run.workdir,
                                         'metrics_eval.png'))


@pytest.mark.parametrize('argv, pattern', [
    (['--model=nope', '--workdir=/tmp'], r"unknown model 'nope'.*trainer_test"),
    ([f'--model={tiny.NAME}'], '--workdir is required'),
])
def test_bad_flags(argv, pattern):
  with pytest.raises(app.UsageError, match=pattern):
    _run_cli(argv)


def test_missing_workdir_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='does not exist'):
    _run_cli([f'--model={tiny.NAME}', f'--workdir={tmp_path}/none'])
