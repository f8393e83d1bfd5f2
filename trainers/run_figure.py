"""A training run's results as one picture: WORKDIR/results.png.

What a person looks at first after a run: the training loss over the steps
(from the run's TensorBoard scalars), the test error per action against the
mean-pose baseline (from the run's metrics), and a few test examples with
the predicted skeleton over the model's input crop and in 3D, each next to
its ground truth (predicted in the left/right colours, ground truth in grey):
the 3D skeleton is seen from the side, where the depth error shows.
"""
from __future__ import annotations

import glob
import math
import os
from typing import Any, Mapping

from absl import logging
import cv2
import numpy as np
import tensorflow as tf

from zoo import metrics as metrics_lib
from zoo import visualize

FIGURE_FILE = 'results.png'
# Test examples shown, spread over the evaluation (evaluation.ExampleKeeper).
NUM_EXAMPLES = 4
LOSS_TAG = 'train/loss'
# Each example's crop is drawn at this size (px) whatever the model's input
# size, so that 64 px crops stay legible.
_TILE_PX = 256


def loss_history(tb_dir: str, tag: str = LOSS_TAG
                 ) -> tuple[np.ndarray, np.ndarray]:
  """(steps [n], values [n]) of a scalar in a TensorBoard directory's event
  files, sorted by step; a step written more than once (a resumed run) keeps
  its last value. Empty arrays when there is none."""
  found: dict[int, float] = {}
  for path in sorted(glob.glob(os.path.join(tb_dir, 'events.out.tfevents.*')),
                     key=os.path.getmtime):
    try:
      for event in tf.compat.v1.train.summary_iterator(path):
        for value in event.summary.value:
          if value.tag == tag:
            found[int(event.step)] = float(tf.make_ndarray(value.tensor))
    except tf.errors.DataLossError:
      pass  # a file cut short by a killed run: keep what was read
  steps = np.array(sorted(found), np.int64)
  return steps, np.array([found[s] for s in steps], np.float64)


def _crop_tile(image: np.ndarray, pred_px: np.ndarray, true_px: np.ndarray,
               valid: np.ndarray) -> np.ndarray:
  """The input crop upscaled to _TILE_PX with the true skeleton (grey) under
  the predicted one; uint8 RGB."""
  scale = _TILE_PX / image.shape[0]
  rgb = np.clip(np.asarray(image, np.float32) * 255., 0, 255).astype(np.uint8)
  tile = cv2.resize(rgb, (_TILE_PX, _TILE_PX), interpolation=cv2.INTER_LINEAR)
  # Pixel centres: x_tile + 0.5 = (x + 0.5) * scale.
  to_tile = lambda px: (np.asarray(px, np.float64) + 0.5) * scale - 0.5
  grey = (150, 150, 150)
  tile = visualize.draw_skeleton_2d(tile, to_tile(true_px), valid=valid,
                                    left_color=grey, right_color=grey,
                                    center_color=grey, thickness=1, radius=2)
  return visualize.draw_skeleton_2d(tile, to_tile(pred_px))


def write_run_figure(path: str, metrics: Mapping[str, Any],
                     examples: Mapping[str, np.ndarray] | None,
                     steps: np.ndarray, losses: np.ndarray,
                     title: str = '') -> str:
  """Writes the picture (atomically) and returns `path`.

  metrics: a run's metrics (mpjpe_mm, per_action, mean_pose_baseline);
  examples: evaluation.ExampleKeeper.arrays() of the test pass ('image'
    [n, S, S, 3] in 0-1, 'poses2d_px', 'poses3d_rel_mm', 'joints2d_px',
    'joints3d_rel_mm', 'joint_valid_2d', 'joint_valid_3d', 'has_3d'), or
    None for no example panels;
  steps, losses: the training loss curve (`loss_history`), may be empty.
  """
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  n = 0 if examples is None else len(examples['image'])
  if n:
    # NaN for an example without a 3D label (no valid joint).
    errors = metrics_lib.mpjpe(
        examples['poses3d_rel_mm'], examples['joints3d_rel_mm'],
        examples['joint_valid_3d'] * examples['has_3d'][:, None])
  columns = max(n, 2)
  rows = 1 + (2 if n else 0)
  heights = [1., 1., 1.][:rows]
  fig = plt.figure(figsize=(3.4 * columns, 3.2 * sum(heights)), dpi=90)
  # Fixed margins (tight_layout would cost about as much as the drawing).
  height_in = 3.2 * sum(heights)
  grid = fig.add_gridspec(rows, columns, height_ratios=heights, left=0.07,
                          right=0.98, bottom=0.55 / height_in,
                          top=1. - 0.6 / height_in, wspace=0.45, hspace=0.4)

  ax = fig.add_subplot(grid[0, :columns // 2])
  if len(steps):
    ax.plot(steps, losses, color='tab:blue', linewidth=1.5)
    if np.all(losses > 0) and losses.max() > 3 * losses.min():
      # Log scale for a loss that falls a lot, ticked at 1, 2 and 5 times
      # powers of ten in plain numbers.
      from matplotlib import ticker
      ax.set_yscale('log')
      ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1., 2., 5.)))
      ax.yaxis.set_major_formatter(ticker.FormatStrFormatter('%g'))
      ax.yaxis.set_minor_formatter(ticker.NullFormatter())
  else:
    ax.text(0.5, 0.5, 'no training loss recorded', ha='center',
            va='center', transform=ax.transAxes)
  ax.set_xlabel('step')
  ax.set_ylabel('loss')
  ax.set_title('training loss')
  ax.grid(alpha=0.3)

  ax = fig.add_subplot(grid[0, columns // 2:])
  per_action = dict(metrics.get('per_action') or {})
  if per_action:
    names = sorted(per_action, key=per_action.get)
    ax.barh(range(len(names)), [per_action[a] for a in names],
            color='tab:blue')
    ax.set_yticks(range(len(names)), names, fontsize=7)
  mpjpe = metrics.get('mpjpe_mm', float('nan'))
  if math.isfinite(mpjpe):
    ax.axvline(mpjpe, color='k', linewidth=1.2,
               label=f'all actions {mpjpe:.1f}')
  baseline = (metrics.get('mean_pose_baseline') or {}).get('mpjpe_mm')
  if baseline is not None and math.isfinite(baseline):
    ax.axvline(baseline, color='tab:red', linestyle='--', linewidth=1.2,
               label=f'mean-pose baseline {baseline:.1f}')
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize=7, loc='lower right')
  ax.set_xlabel('MPJPE (mm)')
  ax.set_title('test error per action')

  for q in range(n):
    ax = fig.add_subplot(grid[1, q])
    ax.imshow(_crop_tile(examples['image'][q], examples['poses2d_px'][q],
                         examples['joints2d_px'][q],
                         examples['joint_valid_2d'][q] > 0))
    ax.set_axis_off()
    error = errors[q]
    ax.set_title(f'test example {q + 1}' + (
        f': MPJPE {error:.0f} mm' if math.isfinite(error) else ''),
                 fontsize=9)
    ax = fig.add_subplot(grid[2, q])
    has_3d = examples['has_3d'][q] > 0
    visualize.plot_skeleton_side(
        ax, examples['poses3d_rel_mm'][q],
        reference_mm=examples['joints3d_rel_mm'][q] if has_3d else None,
        title='3D from the side')
  if title:
    fig.suptitle(title)
  return visualize.save_png(fig, path)


def write_for_run(workdir: str, metrics: Mapping[str, Any],
                  examples: Mapping[str, np.ndarray] | None,
                  title: str = '', path: str | None = None) -> str:
  """The picture of a run at `path` (default WORKDIR/results.png): its loss
  curve (WORKDIR/tb), `metrics` and the test examples an
  evaluation.ExampleKeeper kept (or None)."""
  steps, losses = loss_history(os.path.join(workdir, 'tb'))
  return write_run_figure(path or os.path.join(workdir, FIGURE_FILE),
                          metrics, examples or None, steps, losses,
                          title=title)


def try_write_for_run(workdir: str, metrics: Mapping[str, Any],
                      examples: Mapping[str, np.ndarray] | None, title: str,
                      path: str | None = None) -> str | None:
  """`write_for_run`, for the trainer and the evaluator: a failure to draw
  is logged, not raised (the weights and metrics the picture shows are
  already written); returns the path, or None after a failure."""
  try:
    path = write_for_run(workdir, metrics, examples, title=title, path=path)
  except Exception as e:  # pylint: disable=broad-except
    logging.warning('Could not draw %s: %s: %s', path or FIGURE_FILE,
                    type(e).__name__, e)
    return None
  logging.info('Wrote %s (loss curve, error per action, test examples).',
               path)
  return path
