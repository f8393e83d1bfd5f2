"""Tests for trainers/evaluation.py against independent NumPy computations."""
import dataclasses
import numpy as np
import pytest

from trainers import evaluation

J = 17


def _arrays(n=6, seed=0):
  rng = np.random.default_rng(seed)
  gt_rel = rng.normal(0, 200, (n, J, 3))
  gt_rel -= gt_rel[:, :1]
  gt_cam = gt_rel + np.array([0., 0., 4000.])
  gt2d = rng.uniform(0, 64, (n, J, 2))
  pred_rel = gt_rel + rng.normal(0, 30, (n, J, 3))
  pred_rel -= pred_rel[:, :1]
  poses = {'poses3d_rel_mm': pred_rel,
           'poses3d_cam_mm': pred_rel + np.array([10., 0., 4100.]),
           'poses2d_px': gt2d + rng.normal(0, 2, (n, J, 2)),
           'confidence': np.ones((n, J))}
  truth = {'joints3d_rel_mm': gt_rel, 'joints3d_cam_mm': gt_cam,
           'joints2d_px': gt2d, 'joint_valid_2d': np.ones((n, J)),
           'joint_valid_3d': np.ones((n, J)),
           'has_3d': np.array([1., 1., 1., 1., 0., 1.])[:n],
           'action': np.array([b'walk', b'sit'] * (n // 2))}
  return poses, truth


def _brute_force_per_pose(pred, gt, valid, has_3d):
  """Each example with a 3D label: its mean joint error over valid joints."""
  return [np.mean([np.linalg.norm(pred[i, j] - gt[i, j])
                   for j in range(J) if valid[i, j]])
          for i in np.flatnonzero(has_3d > 0)]


def test_compute_metrics_matches_brute_force():
  poses, truth = _arrays()
  truth['joint_valid_3d'][0, 5] = 0.  # a missing label
  out = evaluation.compute_metrics(poses, truth)
  keep = truth['has_3d'] > 0
  per_pose = _brute_force_per_pose(
      poses['poses3d_rel_mm'], truth['joints3d_rel_mm'],
      truth['joint_valid_3d'], truth['has_3d'])
  assert out['mpjpe_mm'] == pytest.approx(np.mean(per_pose))
  actions = truth['action'][keep]
  walk = np.mean([e for e, a in zip(per_pose, actions) if a == b'walk'])
  assert out['per_action']['walk'] == pytest.approx(walk)
  assert out['num_eval_examples'] == 6 and out['num_eval_examples_3d'] == 5
  # Absolute error: a constant 100 mm offset in z and 10 in x on top of noise.
  abs_err = np.linalg.norm(poses['poses3d_cam_mm'] - truth['joints3d_cam_mm'],
                           axis=-1)
  valid = truth['joint_valid_3d'][keep]
  want_abs = np.mean((abs_err[keep] * valid).sum(1) / valid.sum(1))
  assert out['abs_mpjpe_mm'] == pytest.approx(want_abs)
  # 2D over every example (2D labels exist for all).
  err2d = np.linalg.norm(poses['poses2d_px'] - truth['joints2d_px'], axis=-1)
  assert out['mean_error_2d_px'] == pytest.approx(err2d.mean())
  for key in ('pa_mpjpe_mm', 'n_mpjpe_mm', 'pck3d_150', 'auc', 'pcp3d',
              'pckh'):
    assert np.isfinite(out[key])
  assert out['pa_mpjpe_mm'] <= out['mpjpe_mm']


def test_extra_metrics_average_finite_entries_and_cannot_shadow():
  poses, truth = _arrays()
  extras = {'x_mm': np.array([[1., np.nan], [3., 5.]])}
  out = evaluation.compute_metrics(poses, truth, extras)
  assert out['x_mm'] == pytest.approx(3.)
  with pytest.raises(ValueError, match="'mpjpe_mm'"):
    evaluation.compute_metrics(poses, truth, {'mpjpe_mm': np.ones(6)})


def test_no_3d_labels_gives_nan_3d_metrics():
  poses, truth = _arrays()
  truth['has_3d'][:] = 0
  out = evaluation.compute_metrics(poses, truth)
  assert np.isnan(out['mpjpe_mm']) and out['per_action'] == {}
  assert np.isfinite(out['mean_error_2d_px'])


def test_score_mean_pose_matches_brute_force():
  _, truth = _arrays()
  truth['joint_valid_3d'][1, 3] = 0.
  mean = np.random.default_rng(5).normal(0, 100, (J, 3))
  mean -= mean[:1]  # root-relative, as the labels
  got = evaluation.score_mean_pose(mean, truth)
  n = len(truth['has_3d'])
  want = np.mean(_brute_force_per_pose(
      np.broadcast_to(mean, (n, J, 3)), truth['joints3d_rel_mm'],
      truth['joint_valid_3d'], truth['has_3d']))
  assert got['mpjpe_mm'] == pytest.approx(want, rel=1e-9)
  assert 0 < got['pa_mpjpe_mm'] < got['mpjpe_mm']
  assert np.isnan(evaluation.score_mean_pose(None, truth)['mpjpe_mm'])
  no_3d = dict(truth, has_3d=np.zeros(n))
  assert np.isnan(evaluation.score_mean_pose(mean, no_3d)['mpjpe_mm'])


def test_format_report_lists_run_metrics_and_actions():
  poses, truth = _arrays()
  metrics = {'model': 'm', 'preset': 'cpu', 'steps': 3,
             **evaluation.compute_metrics(poses, truth),
             'mean_pose_baseline': {'mpjpe_mm': 321.5}}
  text = evaluation.format_report(metrics)
  assert text.startswith('Results: m (cpu)')
  assert f'{metrics["mpjpe_mm"]:.4g}' in text
  assert 'walk' in text and 'sit' in text and '321.5' in text


def test_evaluate_model_on_records(trained_run, tiny_data):
  config = trained_run.model.config
  got = evaluation.evaluate_model(trained_run.model, tiny_data, config,
                                  num_examples=4, progress=False)
  assert got['num_eval_examples'] == 4
  again = evaluation.evaluate_model(trained_run.model, tiny_data, config,
                                    num_examples=4, flip_test=True,
                                    progress=False)
  assert again['flip_test'] is True
  assert again['mpjpe_mm'] != got['mpjpe_mm']
  # flip_test=None follows the config's own flip_test (c2f: on, the paper's).
  from_config = evaluation.evaluate_model(
      trained_run.model, tiny_data, dataclasses.replace(config, flip_test=True),
      num_examples=4, progress=False)
  assert from_config['flip_test'] is True
  assert from_config['mpjpe_mm'] == pytest.approx(again['mpjpe_mm'], rel=1e-5)


def test_mean_pose_baseline_of_an_evaluation(trained_run, tiny_data):
  """The baseline scored on the evaluation's own ground truth equals a
  separate pass: the mean of the training examples' labels (read from the
  pipeline directly) against every test example."""
  config = trained_run.model.config
  got = evaluation.evaluate_model(
      trained_run.model, tiny_data, config, progress=False,
      baseline_train_data=tiny_data, baseline_train_examples=6)
  baseline = got['mean_pose_baseline']
  assert baseline['num_train_examples'] == 6

  def features(split, n=None):
    out = {}
    for batch in evaluation.eval_dataset(tiny_data, config, split=split,
                                         num_examples=n, batch_size=4):
      for key in ('joints3d_rel_mm', 'joint_valid_3d', 'has_3d'):
        out.setdefault(key, []).append(batch[key].numpy())
    return {k: np.concatenate(v) for k, v in out.items()}

  train, test = features('train', 6), features('test')
  w = train['joint_valid_3d'] * train['has_3d'][:, None]
  mean = (train['joints3d_rel_mm'] * w[..., None]).sum(0) / w.sum(0)[:, None]
  n = len(test['has_3d'])
  want = np.mean(_brute_force_per_pose(
      np.broadcast_to(mean, (n, J, 3)), test['joints3d_rel_mm'],
      test['joint_valid_3d'], test['has_3d']))
  assert baseline['mpjpe_mm'] == pytest.approx(want, rel=1e-5)
  assert 'mean_pose_baseline' not in evaluation.evaluate_model(
      trained_run.model, tiny_data, config, num_examples=4, progress=False)
