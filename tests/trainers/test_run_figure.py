"""Tests for trainers/run_figure.py and evaluation.ExampleKeeper: the
results picture of a run and the examples it shows."""
import math
import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from trainers import callbacks as callbacks_lib
from trainers import evaluation
from trainers import run_figure

J = 17


def _batches(num_examples: int, batch: int):
  """Feature and pose batches whose every array holds the example's index."""
  for offset in range(0, num_examples, batch):
    index = np.arange(offset, min(offset + batch, num_examples),
                      dtype=np.float32)
    features = {'image': tf.constant(np.broadcast_to(
                    index[:, None, None, None], (len(index), 8, 8, 3))),
                'joints3d_rel_mm': tf.constant(np.broadcast_to(
                    index[:, None, None], (len(index), J, 3))),
                'has_3d': tf.constant(np.ones_like(index))}
    poses = {'poses3d_rel_mm': tf.constant(np.broadcast_to(
        -index[:, None, None], (len(index), J, 3)))}
    yield offset, features, poses


@pytest.mark.parametrize('num_examples,batch', [(37, 5), (1000, 64), (4, 3),
                                                (9, 1)])
def test_keeper_spreads_its_examples_over_the_whole_pass(num_examples, batch):
  keep = evaluation.ExampleKeeper(4)
  for offset, features, poses in _batches(num_examples, batch):
    keep.add(offset, features, poses)
  indices = keep.indices()
  assert len(indices) == min(4, num_examples) and indices[0] == 0
  assert indices == sorted(set(indices))
  if num_examples > 4:
    # Evenly: the gaps differ by at most a factor of two, and the last
    # example lies in the last third of the pass.
    gaps = np.diff(indices)
    assert gaps.max() <= 2 * gaps.min()
    assert indices[-1] >= num_examples * 2 / 3 - 1
  arrays = keep.arrays()
  # Every kept row is the example it says it is, in every array.
  np.testing.assert_array_equal(arrays['image'][:, 0, 0, 0], indices)
  np.testing.assert_array_equal(arrays['joints3d_rel_mm'][:, 0, 0], indices)
  np.testing.assert_array_equal(arrays['poses3d_rel_mm'][:, 0, 0],
                                -np.array(indices))
  assert arrays['image'].shape == (len(indices), 8, 8, 3)


def test_keeper_before_any_example_and_bad_size():
  assert evaluation.ExampleKeeper(3).arrays() == {}
  with pytest.raises(ValueError, match='num_examples >= 1'):
    evaluation.ExampleKeeper(0)


def test_loss_history_reads_tensorboard_scalars_across_resumes(tmp_path):
  """Two event files, as a resumed run leaves them: the steps come sorted
  and a step written twice keeps the later value."""
  for values in ({1: 4.0, 2: 3.0, 3: 2.5}, {3: 2.0, 4: 1.5}):
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default():
      for step, value in values.items():
        callbacks_lib.write_scalar(run_figure.LOSS_TAG, value, step)
        callbacks_lib.write_scalar('train/learning_rate', 1e-3, step)
    writer.close()
  steps, losses = run_figure.loss_history(str(tmp_path))
  np.testing.assert_array_equal(steps, [1, 2, 3, 4])
  np.testing.assert_allclose(losses, [4.0, 3.0, 2.0, 1.5])
  empty = run_figure.loss_history(str(tmp_path / 'none'))
  assert len(empty[0]) == 0 and len(empty[1]) == 0


def _examples(n):
  rng = np.random.default_rng(0)
  truth = rng.normal(0., 300., (n, J, 3))
  return {'image': rng.random((n, 32, 32, 3)).astype(np.float32),
          'poses2d_px': rng.random((n, J, 2)) * 32,
          'joints2d_px': rng.random((n, J, 2)) * 32,
          'poses3d_rel_mm': truth + 10., 'joints3d_rel_mm': truth,
          'joint_valid_2d': np.ones((n, J)), 'joint_valid_3d': np.ones((n, J)),
          'has_3d': np.array([1.] * (n - 1) + [0.])}


@pytest.mark.parametrize('examples', [4, 2, 0])
def test_figure_is_written_atomically(tmp_path, examples):
  metrics = {'mpjpe_mm': 120., 'per_action': {'walking': 100., 'sitting': 140.},
             'mean_pose_baseline': {'mpjpe_mm': 270.}}
  path = str(tmp_path / run_figure.FIGURE_FILE)
  out = run_figure.write_run_figure(
      path, metrics, _examples(examples) if examples else None,
      np.arange(1, 51), np.geomspace(10., 1., 50), title='a run')
  assert out == path
  picture = cv2.imread(path)
  # One row without examples, three with; two columns at least.
  assert picture.shape[0] > (700 if examples else 250)
  assert picture.shape[1] >= 2 * 250
  assert os.listdir(tmp_path) == [run_figure.FIGURE_FILE]


def test_figure_without_loss_or_metrics(tmp_path):
  """A run evaluated without training records and without a baseline still
  gets its picture."""
  path = run_figure.write_for_run(str(tmp_path), {'mpjpe_mm': math.nan},
                                  None)
  assert cv2.imread(path) is not None


def test_a_figure_that_fails_is_logged_not_raised(tmp_path, monkeypatch):
  """The trainer's and evaluator's picture comes after the weights and
  metrics are written: a failure to draw it warns and leaves no file."""
  from absl import logging

  def broken(*args, **kwargs):
    raise RuntimeError('no display')

  warnings = []
  monkeypatch.setattr(run_figure, 'write_run_figure', broken)
  monkeypatch.setattr(logging, 'warning',
                      lambda fmt, *args: warnings.append(fmt % args))
  assert run_figure.try_write_for_run(str(tmp_path), {}, None, 'x') is None
  assert warnings == [
      f'Could not draw {run_figure.FIGURE_FILE}: RuntimeError: no display']
  assert not os.listdir(tmp_path)
