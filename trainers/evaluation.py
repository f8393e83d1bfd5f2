"""Evaluation of a trained zoo model on a test split: poses -> metrics.json.

Runs `model.predict_poses(inputs, flip_test)` (the path the exporter serves)
over the shared pipeline without augmentation, collects predictions and ground
truth, and reduces them with zoo.metrics (the one home of every metric):
3D metrics on examples that have 3D labels (masked by `joint_valid_3d`), 2D
error and PCKh@0.5 on `joint_valid_2d`. A model may add metrics by defining
`extra_metrics(poses, features) -> {name: per-example array}`; each array
([B] or [B, J], NaN where a value does not apply) is averaged over all its
finite entries across the test set.

With a mixture (zoo.data.mixture) every source with a test split is read
once and the metrics are also given per source (`per_source`). Examples of
MPI-INF-3DHP (record `dataset` 'mpi_inf_3dhp', written by
zoo.data.mpi_inf_3dhp: valid frames, universal skeleton) also get that
benchmark's protocol (`mpi_inf_3dhp`: PCK3D@150 mm and AUC in percent, per
activity; zoo.metrics.mpi_inf_3dhp_summary).

Also here: the mean-pose baseline (predict the training mean root-relative
pose for every image), which the c2f issue compares against; and
`ExampleKeeper`, which keeps a few examples of an evaluation pass (input
crop, prediction, truth) for a picture of the run (trainers.run_figure).
"""
from __future__ import annotations

import math
import time
from typing import Any, Mapping

from absl import logging
import numpy as np
import tensorflow as tf
import tqdm

from zoo import metrics as metrics_lib
from zoo.data import pipeline

# Per-example features kept for the metrics (besides the predictions).
_GT_KEYS = ('joints3d_rel_mm', 'joints3d_cam_mm', 'joints2d_px',
            'joint_valid_2d', 'joint_valid_3d', 'joint_in_crop', 'has_3d',
            'action', 'subject', 'source', 'dataset')
MPI3DHP_DATASET = 'mpi_inf_3dhp'
# The keys every metrics.json holds (the trainer adds the run's own keys).
METRIC_KEYS = ('mpjpe_mm', 'pa_mpjpe_mm', 'n_mpjpe_mm', 'pck3d_150', 'auc',
               'pcp3d', 'abs_mpjpe_mm', 'per_action', 'mean_error_2d_px',
               'pckh', 'num_eval_examples', 'num_eval_examples_3d',
               'eval_examples_per_second', 'flip_test')


def eval_dataset(data_dir, config: Any, *, split: str = 'test',
                 num_examples: int | None = None,
                 batch_size: int | None = None) -> tf.data.Dataset:
  """The test split through the shared pipeline: no augmentation, in order.

  `data_dir`: a directory or a zoo.data.mixture.Mixture (sources read once
  each, round-robin).
  """
  return pipeline.make_dataset(
      data_dir, split, input_size=config.input_size,
      batch_size=batch_size or config.train.batch_size, training=False,
      augment=config.augment, repeat=False, drop_remainder=False,
      take=num_examples, deterministic=True, seed=0)


def _to_numpy(value) -> np.ndarray:
  return value.numpy() if hasattr(value, 'numpy') else np.asarray(value)


class ExampleKeeper:
  """Keeps `num_examples` examples of an evaluation pass, spread evenly over
  the whole pass (its length need not be known): their input crops and,
  per key of `predict`'s poses and ground truth, their arrays. Pass one to
  `predict` / `evaluate_model`, then read `arrays()`.

  It holds at most 2 * num_examples candidates, every `stride`-th example
  from the first; when more arrive the stride doubles and every other
  candidate goes.
  """

  def __init__(self, num_examples: int):
    if num_examples < 1:
      raise ValueError(f'ExampleKeeper needs num_examples >= 1, got '
                       f'{num_examples}')
    self.num_examples = num_examples
    self.stride = 1
    self._rows: dict[int, dict[str, np.ndarray]] = {}

  def add(self, offset: int, features: Mapping[str, Any],
          poses: Mapping[str, Any]) -> None:
    """Takes the candidates of a batch whose first example is number
    `offset` of the pass."""
    batch = int(features['image'].shape[0])
    for index in range(offset, offset + batch):
      if index % self.stride:
        continue
      q = index - offset
      row = {'image': _to_numpy(features['image'][q])}
      row.update({k: _to_numpy(v[q]) for k, v in poses.items()})
      row.update({k: _to_numpy(features[k][q]) for k in _GT_KEYS
                  if k in features})
      self._rows[index] = row
      if len(self._rows) > 2 * self.num_examples:
        self.stride *= 2
        self._rows = {i: r for i, r in self._rows.items()
                      if i % self.stride == 0}

  def indices(self) -> list[int]:
    """The pass indices of the kept examples, ascending."""
    candidates = sorted(self._rows)
    if len(candidates) <= self.num_examples:
      return candidates
    picks = np.linspace(0, len(candidates) - 1, self.num_examples)
    return [candidates[int(round(p))] for p in picks]

  def arrays(self) -> dict[str, np.ndarray]:
    """{key: [n, ...]} of the kept examples in pass order (n is fewer than
    asked when the pass was shorter); {} when none."""
    rows = [self._rows[i] for i in self.indices()]
    if not rows:
      return {}
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def predict(model, dataset: tf.data.Dataset, *, flip_test: bool = False,
            progress: bool = True, total: int | None = None,
            keep: ExampleKeeper | None = None
            ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray],
                       dict[str, np.ndarray], float]:
  """Predicts poses for every batch of feature dicts in `dataset`.

  Returns (poses, ground truth features, extra per-example metric arrays,
  examples/s excluding the first batch, which includes tracing). `keep`
  takes its examples as they pass.
  """
  predict_fn = tf.function(
      lambda inputs: model.predict_poses(inputs, flip_test=flip_test),
      reduce_retracing=True)
  poses, truth, extras = {}, {}, {}
  count, steady_count, steady_start = 0, 0, None
  bar = tqdm.tqdm(total=total, unit='ex', desc='eval', dynamic_ncols=True,
                  disable=not progress)
  try:
    for features in dataset:
      inputs = {'image': features['image'],
                'intrinsics': features['intrinsics']}
      out = predict_fn(inputs)
      for key, value in out.items():
        poses.setdefault(key, []).append(_to_numpy(value).astype(np.float32))
      for key in _GT_KEYS:
        if key in features:
          truth.setdefault(key, []).append(_to_numpy(features[key]))
      for key, value in dict(model.extra_metrics(out, features)).items():
        extras.setdefault(key, []).append(_to_numpy(value).astype(np.float64))
      if keep is not None:
        keep.add(count, features, out)
      batch = int(features['image'].shape[0])
      count += batch
      if steady_start is None:
        steady_start = time.perf_counter()
      else:
        steady_count += batch
      bar.update(batch)
  finally:
    bar.close()
  if count == 0:
    raise ValueError('the evaluation dataset is empty')
  elapsed = time.perf_counter() - steady_start
  rate = steady_count / elapsed if steady_count and elapsed > 0 else float('nan')
  cat = lambda d: {k: np.concatenate(v, 0) for k, v in d.items()}
  return cat(poses), cat(truth), cat(extras), rate


def _nanmean_all(values: np.ndarray) -> float:
  values = np.asarray(values, np.float64).reshape(-1)
  values = values[np.isfinite(values)]
  return float(values.mean()) if values.size else float('nan')


def _subset(values: Mapping[str, np.ndarray] | None, keep: np.ndarray
            ) -> dict[str, np.ndarray]:
  return {k: np.asarray(v)[keep] for k, v in dict(values or {}).items()}


def _names(values) -> np.ndarray:
  return np.array([v.decode(errors='replace') if isinstance(v, bytes)
                   else str(v) for v in np.asarray(values).reshape(-1)])


def compute_metrics(poses: Mapping[str, np.ndarray],
                    truth: Mapping[str, np.ndarray],
                    extras: Mapping[str, np.ndarray] | None = None,
                    per_source: bool = True) -> dict[str, Any]:
  """zoo.metrics over collected predictions and ground truth (JSON-ready).

  With examples of more than one `source`, `per_source` maps each source
  name to its own metrics; MPI-INF-3DHP examples add `mpi_inf_3dhp`.
  """
  out = _compute_metrics(poses, truth, extras)
  if 'dataset' in truth:
    is_3dhp = (_names(truth['dataset']) == MPI3DHP_DATASET) & (
        truth['has_3d'].reshape(-1) > 0)
    if is_3dhp.any():
      out['mpi_inf_3dhp'] = metrics_lib.mpi_inf_3dhp_summary(
          poses['poses3d_rel_mm'][is_3dhp],
          truth['joints3d_rel_mm'][is_3dhp],
          activities=(_names(truth['action'])[is_3dhp] if 'action' in truth
                      else None),
          valid=truth['joint_valid_3d'][is_3dhp])
  if per_source and 'source' in truth:
    sources = _names(truth['source'])
    if len(set(sources)) > 1:
      out['per_source'] = {}
      for name in sorted(set(sources)):
        keep = sources == name
        out['per_source'][name] = compute_metrics(
            _subset(poses, keep), _subset(truth, keep), _subset(extras, keep),
            per_source=False)
  return out


def _compute_metrics(poses, truth, extras) -> dict[str, Any]:
  has_3d = truth['has_3d'].reshape(-1) > 0
  out: dict[str, Any] = {'num_eval_examples': int(has_3d.shape[0]),
                         'num_eval_examples_3d': int(has_3d.sum())}
  if has_3d.any():
    valid = truth['joint_valid_3d'][has_3d]
    actions = truth['action'][has_3d] if 'action' in truth else None
    summary = metrics_lib.summarize(
        poses['poses3d_rel_mm'][has_3d], truth['joints3d_rel_mm'][has_3d],
        actions=actions, valid=valid,
        pred_abs_mm=poses['poses3d_cam_mm'][has_3d],
        gt_abs_mm=truth['joints3d_cam_mm'][has_3d])
    summary.pop('num_poses', None)
    out.update(summary)
  else:
    logging.warning('No evaluation example has 3D labels: 3D metrics are NaN.')
    out.update({k: float('nan') for k in ('mpjpe_mm', 'pa_mpjpe_mm',
                                          'n_mpjpe_mm', 'pck3d_150', 'auc',
                                          'pcp3d', 'abs_mpjpe_mm')})
    out['per_action'] = {}
  valid_2d = truth['joint_valid_2d']
  out['mean_error_2d_px'] = _nanmean_all(metrics_lib.mean_error_2d_px(
      poses['poses2d_px'], truth['joints2d_px'], valid=valid_2d))
  out['pckh'] = _nanmean_all(metrics_lib.pckh(
      poses['poses2d_px'], truth['joints2d_px'], valid=valid_2d))
  for key, values in dict(extras or {}).items():
    if key in out:
      raise ValueError(f'extra_metrics returned {key!r}, which would replace '
                       'a standard metric; choose another name')
    out[key] = _nanmean_all(values)
  return out


def evaluate_model(model, data_dir, config: Any, *,
                   flip_test: bool | None = None,
                   num_examples: int | None = None,
                   batch_size: int | None = None, split: str = 'test',
                   progress: bool = True, baseline_train_data=None,
                   baseline_train_examples: int = 1000,
                   keep: ExampleKeeper | None = None) -> dict[str, Any]:
  """Predicts the split and returns the metrics (see METRIC_KEYS).

  `flip_test` None takes the config's `flip_test` (zoo.config.ModelConfig);
  `num_examples` None takes `config.train.num_eval_examples` (None: the
  whole split). With `baseline_train_data` (a directory or mixture), the
  metrics also hold 'mean_pose_baseline': the error of predicting the mean
  pose of its first `baseline_train_examples` training examples, scored on
  the ground truth of this evaluation (see `mean_pose` and
  `score_mean_pose`). `keep` takes its examples during the pass.
  """
  if flip_test is None:
    flip_test = bool(config.flip_test)
  if num_examples is None:
    num_examples = config.train.num_eval_examples
  dataset = eval_dataset(data_dir, config, split=split,
                         num_examples=num_examples, batch_size=batch_size)
  poses, truth, extras, rate = predict(model, dataset, flip_test=flip_test,
                                       progress=progress, total=num_examples,
                                       keep=keep)
  out = compute_metrics(poses, truth, extras)
  out['eval_examples_per_second'] = rate
  out['flip_test'] = bool(flip_test)
  if baseline_train_data is not None:
    mean, seen = mean_pose(baseline_train_data, config,
                           num_train_examples=baseline_train_examples)
    out['mean_pose_baseline'] = dict(score_mean_pose(mean, truth),
                                     num_train_examples=seen)
  return out


def mean_pose(train_data, config: Any, *, num_train_examples: int = 1000,
              batch_size: int = 64) -> tuple[np.ndarray | None, int]:
  """(mean root-relative pose [J, 3] in mm, examples read) of the first
  `num_train_examples` examples of `train_data`'s train split, in the crop
  camera frame the models predict in (pipeline, no augmentation), per
  joint over valid 3D labels; None when no example has a 3D label."""
  train = eval_dataset(train_data, config, split='train',
                       num_examples=num_train_examples, batch_size=batch_size)
  sums, weights, seen = None, None, 0
  for features in train:
    w = (features['joint_valid_3d'] * features['has_3d'][:, None]).numpy()
    rel = features['joints3d_rel_mm'].numpy()
    s = (rel * w[..., None]).sum(0)
    sums = s if sums is None else sums + s
    weights = w.sum(0) if weights is None else weights + w.sum(0)
    seen += rel.shape[0]
  if sums is None or not (weights > 0).any():
    return None, seen
  return sums / np.maximum(weights, 1e-9)[:, None], seen


def score_mean_pose(mean_pose_mm: np.ndarray | None,
                    truth: Mapping[str, np.ndarray]) -> dict[str, float]:
  """MPJPE / PA-MPJPE (mm) of predicting `mean_pose_mm` for every example
  of `truth` (ground-truth arrays as `predict` returns them) with a 3D
  label; NaN without a mean pose or such an example."""
  keep = np.asarray(truth['has_3d']) > 0
  gt = np.asarray(truth['joints3d_rel_mm'])[keep]
  valid = np.asarray(truth['joint_valid_3d'])[keep]
  if mean_pose_mm is None or gt.shape[0] == 0:
    return {'mpjpe_mm': float('nan'), 'pa_mpjpe_mm': float('nan')}
  pred = np.broadcast_to(mean_pose_mm, gt.shape)
  return {'mpjpe_mm': _nanmean_all(metrics_lib.mpjpe(pred, gt, valid)),
          'pa_mpjpe_mm': _nanmean_all(metrics_lib.pa_mpjpe(pred, gt, valid))}


def _fmt(value) -> str:
  if isinstance(value, float):
    return 'nan' if math.isnan(value) else f'{value:.4g}'
  return str(value)


def format_report(metrics: Mapping[str, Any]) -> str:
  """A readable table: run facts, overall metrics, per-action MPJPE."""
  run_keys = ('model', 'preset', 'steps', 'start_step', 'batch_size',
              'precision', 'replicas', 'num_eval_examples', 'flip_test',
              'train_seconds', 'train_examples_per_second',
              'eval_examples_per_second')
  units = {'mpjpe_mm': 'mm', 'pa_mpjpe_mm': 'mm', 'n_mpjpe_mm': 'mm',
           'abs_mpjpe_mm': 'mm', 'mean_error_2d_px': 'px'}
  lines = []
  title = f'Results: {metrics.get("model", "?")} ({metrics.get("preset", "?")})'
  lines += [title, '=' * len(title)]
  for key in run_keys:
    if key in metrics:
      lines.append(f'{key:<28}{_fmt(metrics[key]):>14}')
  lines.append('')
  lines.append(f'{"metric":<28}{"value":>14}')
  lines.append('-' * 42)
  skip = set(run_keys) | {'per_action', 'mean_pose_baseline',
                          'num_eval_examples_3d'}
  for key, value in metrics.items():
    if key in skip or isinstance(value, (dict, list, str, bool)):
      continue
    unit = units.get(key, '')
    lines.append(f'{key:<28}{_fmt(value):>14} {unit}'.rstrip())
  baseline = metrics.get('mean_pose_baseline')
  if isinstance(baseline, Mapping) and 'note' in baseline:
    lines.append(f'{"baseline: mean-pose MPJPE":<28}{"-":>14}')
    lines.append(f'  ({baseline["note"]})')
  elif isinstance(baseline, Mapping):
    lines.append(f'{"baseline: mean-pose MPJPE":<28}'
                 f'{_fmt(baseline.get("mpjpe_mm")):>14} mm')
  benchmark = metrics.get('mpi_inf_3dhp')
  if isinstance(benchmark, Mapping):
    lines.append('')
    lines.append(f'MPI-INF-3DHP protocol ({benchmark["num_frames"]} valid '
                 'frames, universal skeleton)')
    lines.append(f'{"activity":<22}{"PCK3D@150":>10}{"AUC":>8}'
                 f'{"MPJPE mm":>10}')
    lines.append('-' * 50)
    rows = [('all', benchmark)] + list(
        (benchmark.get('per_activity') or {}).items())
    for name, row in rows:
      lines.append(f'{name:<22}{_fmt(row["pck3d_150"]):>10}'
                   f'{_fmt(row["auc"]):>8}{_fmt(row["mpjpe_mm"]):>10}')
  per_source = metrics.get('per_source') or {}
  if per_source:
    lines.append('')
    lines.append(f'{"source":<18}{"examples":>9}{"MPJPE mm":>10}'
                 f'{"PCK3D":>8}{"2D px":>8}')
    lines.append('-' * 53)
    for name, row in per_source.items():
      lines.append(f'{name:<18}{row["num_eval_examples"]:>9}'
                   f'{_fmt(row["mpjpe_mm"]):>10}{_fmt(row["pck3d_150"]):>8}'
                   f'{_fmt(row["mean_error_2d_px"]):>8}')
  per_action = metrics.get('per_action') or {}
  if per_action:
    lines.append('')
    lines.append(f'{"action":<28}{"MPJPE (mm)":>14}')
    lines.append('-' * 42)
    for action, value in per_action.items():
      lines.append(f'{action:<28}{_fmt(value):>14}')
  return '\n'.join(lines)
