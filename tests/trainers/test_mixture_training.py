"""Training on a weighted mixture and evaluating any test set (issue: real
data as the papers used it)."""
import glob
import json
import os
import shutil

import pytest

import trainer_test_model as tiny
from trainers import evaluate
from trainers import evaluation
from trainers import run_config
from trainers import train_lib
from zoo.data import mixture
from zoo.data import records


@pytest.fixture(scope='module')
def second_data(tmp_path_factory):
  return tiny.write_dataset(str(tmp_path_factory.mktemp('second')),
                            num_train=8, num_test=4, seed=5)


def test_override_keeps_a_mixture_with_commas():
  entry = run_config.get_entry(tiny.NAME)
  spec = 'a=/x:0.6,b=/y:0.4'
  config = run_config.make_config(
      entry, 'smoke', [f'train.data={spec},train.steps=3'])
  assert config.train.data == spec and config.train.steps == 3


def test_mixture_from_the_config_trains_counts_and_scores_per_source(
    tiny_data, second_data, tmp_path):
  spec = f'a={tiny_data}:3,b={second_data}:1'
  result = tiny.train(tmp_path / 'run', None, steps=4, run_evaluation=True,
                      overrides={'train.data': spec}, baseline=True)
  metrics = result.metrics
  counts = metrics['train_examples_per_source']
  assert set(counts) == {'a', 'b'}
  # At least the 4 trained batches (the input runs ahead by a few).
  config = run_config.make_config(run_config.get_entry(tiny.NAME), 'smoke')
  assert sum(counts.values()) >= 4 * config.train.batch_size
  # Every test example of both sources, and each source's own metrics.
  assert metrics['num_eval_examples'] == 8 + 4
  assert set(metrics['per_source']) == {'a', 'b'}
  assert metrics['per_source']['a']['num_eval_examples'] == 8
  assert metrics['per_source']['b']['num_eval_examples'] == 4
  weighted = (8 * metrics['per_source']['a']['mpjpe_mm']
              + 4 * metrics['per_source']['b']['mpjpe_mm']) / 12
  assert metrics['mpjpe_mm'] == pytest.approx(weighted, rel=1e-6)
  assert result.manifest['data']['name'] == 'mixture'
  assert [s['name'] for s in result.manifest['data']['sources']] == ['a', 'b']
  log = open(os.path.join(result.workdir, train_lib.LOG_FILE)).read()
  assert 'examples per source: a ' in log
  assert 'per_source' not in metrics['per_source']['a']
  # Re-evaluating without --data reads the same mixture.
  got = evaluate.evaluate_workdir(tiny.NAME, result.workdir, progress=False,
                                  out=str(tmp_path / 'eval.json'))
  assert got['per_source']['a']['mpjpe_mm'] == pytest.approx(
      metrics['per_source']['a']['mpjpe_mm'], rel=1e-5)


def _test_only_copy(data, out):
  os.makedirs(out)
  for path in glob.glob(os.path.join(data, 'test-*.tfrecord')):
    shutil.copy(path, out)
  shutil.copy(os.path.join(data, 'manifest.json'), out)
  return str(out)


def test_evaluate_a_directory_with_only_a_test_split(trained_run, tiny_data,
                                                     tmp_path):
  test_only = _test_only_copy(tiny_data, tmp_path / 'test_only')
  got = evaluate.evaluate_workdir(tiny.NAME, trained_run.workdir,
                                  data=test_only, progress=False,
                                  out=str(tmp_path / 'm.json'))
  assert got['num_eval_examples'] == 8
  assert got['mpjpe_mm'] == pytest.approx(trained_run.metrics['mpjpe_mm'],
                                          rel=1e-5)
  # The baseline's mean pose comes from the run's own training data: the
  # same numbers as the trainer's baseline on the full directory.
  assert got['mean_pose_baseline']['mpjpe_mm'] == pytest.approx(
      trained_run.metrics['mean_pose_baseline']['mpjpe_mm'], rel=1e-5)


def test_baseline_left_out_with_a_note(trained_run, tiny_data, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(trained_run.workdir, workdir)
  for name in ('config.json', 'manifest.json'):
    path = os.path.join(workdir, name)
    meta = json.load(open(path))
    meta['data'] = {'name': 'tfrecords', 'dir': str(tmp_path / 'gone'),
                    'seed': None}
    json.dump(meta, open(path, 'w'))
  test_only = _test_only_copy(tiny_data, tmp_path / 'test_only')
  got = evaluate.evaluate_workdir(tiny.NAME, workdir, data=test_only,
                                  progress=False)
  assert 'no train split' in got['mean_pose_baseline']['note']
  table = evaluation.format_report(got)
  assert 'left out' in table


def test_mixture_without_a_train_split_names_the_source(tiny_data, tmp_path):
  test_only = _test_only_copy(tiny_data, tmp_path / 'test_only')
  with pytest.raises(mixture.MixtureError,
                     match=r"data source 'solo' has no 'train' split"):
    tiny.train(tmp_path / 'run', f'a={tiny_data},solo={test_only}', steps=1)
  assert not os.path.exists(tmp_path / 'run' / 'model.weights.h5')


def test_mixture_of_different_format_versions_is_an_error(tiny_data,
                                                          tmp_path):
  old = str(tmp_path / 'old')
  shutil.copytree(tiny_data, old)
  manifest = records.read_manifest(old)
  manifest['format_version'] = records.FORMAT_VERSION + 1
  records.write_manifest(old, manifest)
  with pytest.raises(mixture.MixtureError, match='different record format '
                     'versions'):
    tiny.train(tmp_path / 'run', f'a={tiny_data},old={old}', steps=1)


@pytest.mark.parametrize('spec, pattern', [
    ('a={d}:-0.5', "source 'a' has weight -0.5"),
    ('a={d}:0,b={d}:0', 'every source has weight 0'),
])
def test_bad_weights_are_clear_errors(tiny_data, tmp_path, spec, pattern):
  with pytest.raises(mixture.MixtureError, match=pattern):
    tiny.train(tmp_path / 'run', spec.format(d=tiny_data), steps=1)


def test_compute_metrics_adds_the_3dhp_protocol_and_per_source():
  import numpy as np
  from zoo import metrics as metrics_lib
  rng = np.random.default_rng(0)
  n, j = 6, 17
  gt = rng.normal(0, 300, (n, j, 3))
  gt -= gt[:, :1]
  pred = gt + rng.normal(0, 60, gt.shape)
  truth = {'joints3d_rel_mm': gt, 'joints3d_cam_mm': gt + [0, 0, 4000.],
           'joints2d_px': rng.uniform(0, 64, (n, j, 2)),
           'joint_valid_2d': np.ones((n, j)), 'joint_valid_3d': np.ones((n, j)),
           'joint_in_crop': np.ones((n, j)), 'has_3d': np.ones(n),
           'action': np.array([b'Sitting', b'Sports', b'Sitting', b'Eating',
                               b'Eating', b'Walking']),
           'subject': np.array([b''] * n),
           'dataset': np.array([b'mpi_inf_3dhp'] * 3 + [b'h36m'] * 3),
           'source': np.array([b'dhp'] * 3 + [b'h36m'] * 3)}
  poses = {'poses3d_rel_mm': pred, 'poses3d_cam_mm': pred + [0, 0, 4000.],
           'poses2d_px': truth['joints2d_px'] + 1.}
  out = evaluation.compute_metrics(poses, truth)
  want = metrics_lib.mpi_inf_3dhp_summary(pred[:3], gt[:3],
                                          activities=truth['action'][:3])
  for key in ('pck3d_150', 'auc', 'mpjpe_mm', 'num_frames'):
    assert out['mpi_inf_3dhp'][key] == pytest.approx(want[key])
  for name, row in want['per_activity'].items():
    assert out['mpi_inf_3dhp']['per_activity'][name] == pytest.approx(row)
  assert set(out['mpi_inf_3dhp']['per_activity']) == {'Sitting', 'Sports'}
  assert out['per_source']['dhp']['num_eval_examples'] == 3
  assert out['per_source']['h36m']['mpjpe_mm'] == pytest.approx(
      float(np.mean(metrics_lib.mpjpe(pred[3:], gt[3:]))))
  assert 'MPI-INF-3DHP protocol' in evaluation.format_report(out)
