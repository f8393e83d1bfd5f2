"""3D and 2D pose metrics (NumPy): the one home of every number the zoo reports.

All 3D inputs are [N, J, 3] in millimetres (any frame; the functions align as
their names say), 2D inputs [N, J, 2] in pixels. Every per-pose function
returns an [N] float64 array so results can be aggregated per action; the
optional `valid` [N, J] mask (1 = joint labelled) restricts each pose's mean to
its valid joints (a pose with no valid joint gives NaN, which the aggregations
skip). Overall numbers are means over poses, not over actions.

Definitions (the standard ones of the H36M, MPI-INF-3DHP and MPII
evaluations):
- MPJPE: mean joint distance after subtracting each pose's root joint.
- PA-MPJPE: after the optimal similarity transform (rotation without
  reflection, uniform scale, translation) of the prediction onto the ground
  truth, per pose (zoo.geometry.procrustes_align).
- N-MPJPE: root-aligned, then the optimal uniform scale of the prediction.
- Absolute MPJPE: no alignment (camera-space predictions).
- PCK3D: fraction of joints with root-aligned error below a threshold (strictly
  less, as in the MPI-INF-3DHP evaluation); AUC: mean PCK over thresholds
  0, 5, ..., 150 mm.
- 3D PCP: a limb is correct if the mean of its two endpoint errors is below
  half its ground-truth length.
- PCKh (2D): fraction of joints within `threshold` x head size (<=, as in the
  MPII evaluation); the head size of an H36M-17 pose is its neck-to-head-top
  distance.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from zoo import geometry
from zoo import skeleton as skel

PCK_THRESHOLD_MM = 150.
AUC_THRESHOLDS_MM = np.arange(0., 151., 5.)


def _check_poses(name: str, poses, dims: int) -> np.ndarray:
  poses = np.asarray(poses, np.float64)
  if poses.ndim != 3 or poses.shape[-1] != dims:
    raise ValueError(f'{name} must have shape [N, J, {dims}], got '
                     f'{poses.shape}')
  return poses


def _check_pair(pred, gt, dims: int = 3) -> tuple[np.ndarray, np.ndarray]:
  pred = _check_poses('pred', pred, dims)
  gt = _check_poses('gt', gt, dims)
  if pred.shape != gt.shape:
    raise ValueError(f'pred and gt shapes differ: {pred.shape} vs {gt.shape}')
  return pred, gt


def _check_valid(valid, shape: tuple[int, ...]) -> np.ndarray:
  """[N, J] float64 mask (ones when `valid` is None)."""
  if valid is None:
    return np.ones(shape[:2])
  valid = np.asarray(valid, np.float64)
  if valid.shape != tuple(shape[:2]):
    raise ValueError(f'valid must have shape [N, J] = {tuple(shape[:2])}, got '
                     f'{valid.shape}')
  return (valid > 0).astype(np.float64)


def _masked_mean(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
  """[N] mean of [N, J] values over valid joints (NaN if none are valid)."""
  count = valid.sum(-1)
  with np.errstate(invalid='ignore', divide='ignore'):
    return np.where(count > 0, (values * valid).sum(-1) / count, np.nan)


def _joint_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
  return np.linalg.norm(pred - gt, axis=-1)


def _root_align(pred, gt, root: int):
  return geometry.root_relative(pred, root), geometry.root_relative(gt, root)


def mpjpe(pred, gt, valid=None, root: int = skel.ROOT) -> np.ndarray:
  """[N] mean per-joint position error (mm) after root alignment."""
  pred, gt = _check_pair(pred, gt)
  valid = _check_valid(valid, pred.shape)
  pred, gt = _root_align(pred, gt, root)
  return _masked_mean(_joint_errors(pred, gt), valid)


def abs_mpjpe(pred, gt, valid=None) -> np.ndarray:
  """[N] mean per-joint position error (mm) without any alignment."""
  pred, gt = _check_pair(pred, gt)
  valid = _check_valid(valid, pred.shape)
  return _masked_mean(_joint_errors(pred, gt), valid)


def pa_mpjpe(pred, gt, valid=None) -> np.ndarray:
  """[N] error (mm) after per-pose similarity Procrustes (no reflection).

  The alignment is fitted on each pose's valid joints only.
  """
  pred, gt = _check_pair(pred, gt)
  valid = _check_valid(valid, pred.shape)
  aligned = np.empty_like(pred)
  full = valid.all(-1)
  if full.any():
    aligned[full] = geometry.procrustes_align(pred[full], gt[full])
  for i in np.flatnonzero(~full):
    keep = valid[i] > 0
    aligned[i] = pred[i]
    if keep.any():
      aligned[i, keep] = geometry.procrustes_align(pred[i, keep], gt[i, keep])
  return _masked_mean(_joint_errors(aligned, gt), valid)


def n_mpjpe(pred, gt, valid=None, root: int = skel.ROOT) -> np.ndarray:
  """[N] error (mm) after root alignment and the optimal uniform scale.

  The scale s minimises sum_valid |s p - g|^2: s = <p, g> / <p, p>.
  """
  pred, gt = _check_pair(pred, gt)
  valid = _check_valid(valid, pred.shape)
  pred, gt = _root_align(pred, gt, root)
  w = valid[..., None]
  num = np.sum(w * pred * gt, axis=(-2, -1))
  den = np.sum(w * pred * pred, axis=(-2, -1))
  scale = np.where(den > 0, num / np.maximum(den, 1e-12), 1.)
  return _masked_mean(_joint_errors(scale[:, None, None] * pred, gt), valid)


def pck3d(pred, gt, threshold_mm: float = PCK_THRESHOLD_MM, valid=None,
          root: int = skel.ROOT) -> np.ndarray:
  """[N] fraction of valid joints with root-aligned error < threshold_mm."""
  pred, gt = _check_pair(pred, gt)
  valid = _check_valid(valid, pred.shape)
  pred, gt = _root_align(pred, gt, root)
  hits = (_joint_errors(pred, gt) < threshold_mm).astype(np.float64)
  return _masked_mean(hits, valid)


def auc(pred, gt, valid=None, root: int = skel.ROOT,
        thresholds_mm: Sequence[float] = AUC_THRESHOLDS_MM) -> np.ndarray:
  """[N] mean of PCK3D over thresholds 0..150 mm in steps of 5 (fraction)."""
  pred, gt = _check_pair(pred, gt)
  valid = _check_valid(valid, pred.shape)
  pred, gt = _root_align(pred, gt, root)
  err = _joint_errors(pred, gt)
  thresholds = np.asarray(thresholds_mm, np.float64)
  hits = (err[..., None] < thresholds).astype(np.float64)  # [N, J, T]
  pck = _masked_mean(np.moveaxis(hits, -1, 0), valid)      # [T, N]
  return pck.mean(0)


def pcp3d(pred, gt, skeleton: skel.Skeleton = skel.H36M17, valid=None,
          root: int | None = skel.ROOT,
          limbs: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
  """[N] fraction of correct limbs (3D PCP, KTH Football II).

  A limb (a, b) is correct if (|e_a| + |e_b|) / 2 < |gt_b - gt_a| / 2, with
  e the joint errors after root alignment (`root=None`: no alignment). Limbs
  default to the skeleton's bones; a limb counts only if both ends are valid.
  """
  pred, gt = _check_pair(pred, gt)
  valid = _check_valid(valid, pred.shape)
  if root is not None:
    pred, gt = _root_align(pred, gt, root)
  limbs = np.array(skeleton.limbs if limbs is None else limbs, np.int64)
  if limbs.max() >= pred.shape[1]:
    raise ValueError(f'poses have {pred.shape[1]} joints but the limbs index '
                     f'joint {limbs.max()} of skeleton {skeleton.name}')
  err = _joint_errors(pred, gt)
  a, b = limbs[:, 0], limbs[:, 1]
  length = np.linalg.norm(gt[:, b] - gt[:, a], axis=-1)
  correct = ((err[:, a] + err[:, b]) / 2 < length / 2).astype(np.float64)
  return _masked_mean(correct, valid[:, a] * valid[:, b])


def per_action(values, actions) -> dict[str, float]:
  """Mean of [N] per-pose values for each action (NaNs skipped), sorted."""
  values = np.asarray(values, np.float64)
  actions = np.asarray(actions)
  if values.shape != actions.shape or values.ndim != 1:
    raise ValueError(f'values and actions must both be [N]; got '
                     f'{values.shape} and {actions.shape}')
  # Action names may arrive as bytes (from tf.data) or str.
  names = np.array([a.decode() if isinstance(a, bytes) else str(a)
                    for a in actions.tolist()], dtype=object)
  return {name: _nanmean(values[names == name]) for name in sorted(set(names))}


def _nanmean(values: np.ndarray) -> float:
  values = np.asarray(values, np.float64)
  values = values[~np.isnan(values)]
  return float(values.mean()) if values.size else float('nan')


# ----------------------------------------------------------------------------
# 2D
# ----------------------------------------------------------------------------

def mean_error_2d_px(pred2d, gt2d, valid=None) -> np.ndarray:
  """[N] mean 2D joint distance (pixels) over valid joints."""
  pred2d, gt2d = _check_pair(pred2d, gt2d, dims=2)
  valid = _check_valid(valid, pred2d.shape)
  return _masked_mean(_joint_errors(pred2d, gt2d), valid)


def head_size_h36m(gt2d) -> np.ndarray:
  """[N] head size (px) of H36M-17 2D poses: neck (9) to head top (10)."""
  gt2d = _check_poses('gt2d', gt2d, 2)
  if gt2d.shape[1] != skel.NUM_JOINTS:
    raise ValueError(f'gt2d must be in H36M-17 order ({skel.NUM_JOINTS} '
                     f'joints), got shape {gt2d.shape}')
  neck, head = skel.H36M17.index('neck'), skel.H36M17.index('head_top')
  return np.linalg.norm(gt2d[:, head] - gt2d[:, neck], axis=-1)


def pckh(pred2d, gt2d, head_size_px=None, threshold: float = 0.5,
         valid=None) -> np.ndarray:
  """[N] fraction of valid joints within threshold x head size (PCKh@0.5).

  `head_size_px` [N] defaults to `head_size_h36m(gt2d)`.
  """
  pred2d, gt2d = _check_pair(pred2d, gt2d, dims=2)
  valid = _check_valid(valid, pred2d.shape)
  if head_size_px is None:
    head_size_px = head_size_h36m(gt2d)
  head_size_px = np.asarray(head_size_px, np.float64)
  if head_size_px.shape != (pred2d.shape[0],):
    raise ValueError(f'head_size_px must have shape [N] = '
                     f'({pred2d.shape[0]},), got {head_size_px.shape}')
  err = _joint_errors(pred2d, gt2d)
  hits = (err <= threshold * head_size_px[:, None]).astype(np.float64)
  return _masked_mean(hits, valid)


# ----------------------------------------------------------------------------
# Summary for metrics.json
# ----------------------------------------------------------------------------

def summarize(pred_rel_mm, gt_rel_mm, actions=None, valid=None,
              pred_abs_mm=None, gt_abs_mm=None,
              root: int = skel.ROOT) -> dict:
  """All 3D metrics as JSON-ready Python floats.

  Returns a dict with mpjpe_mm, pa_mpjpe_mm, n_mpjpe_mm, pck3d_150 (fraction),
  auc (fraction), pcp3d (fraction), per_action (action -> MPJPE mm; empty if
  `actions` is None), num_poses, and abs_mpjpe_mm when both absolute poses are
  given. Each number is the mean over poses of the per-pose value.
  """
  pred, gt = _check_pair(pred_rel_mm, gt_rel_mm)
  errors = mpjpe(pred, gt, valid, root)
  out = {
      'mpjpe_mm': _nanmean(errors),
      'pa_mpjpe_mm': _nanmean(pa_mpjpe(pred, gt, valid)),
      'n_mpjpe_mm': _nanmean(n_mpjpe(pred, gt, valid, root)),
      'pck3d_150': _nanmean(pck3d(pred, gt, PCK_THRESHOLD_MM, valid, root)),
      'auc': _nanmean(auc(pred, gt, valid, root)),
      'pcp3d': _nanmean(pcp3d(pred, gt, valid=valid, root=root)),
      'per_action': {} if actions is None else per_action(errors, actions),
      'num_poses': int(pred.shape[0]),
  }
  if (pred_abs_mm is None) != (gt_abs_mm is None):
    raise ValueError('give both pred_abs_mm and gt_abs_mm, or neither')
  if pred_abs_mm is not None:
    out['abs_mpjpe_mm'] = _nanmean(abs_mpjpe(pred_abs_mm, gt_abs_mm, valid))
  return out


# MPI-INF-3DHP's activity labels (the test set's activity_annotation, 1-based).
MPI3DHP_ACTIVITIES = ('Standing/Walking', 'Exercising', 'Sitting',
                      'Reaching/Crouching', 'On the floor', 'Sports',
                      'Miscellaneous')


def mpi_inf_3dhp_summary(pred_rel_mm, gt_rel_mm, activities=None, valid=None,
                         root: int = skel.ROOT) -> dict:
  """The MPI-INF-3DHP test protocol as JSON-ready floats.

  The caller passes only the valid frames, with the ground truth in the
  universal skeleton (`univ_annot3`, which zoo.data.mpi_inf_3dhp stores for
  the test split), both root-relative (mm). PCK3D counts joints whose
  root-aligned error is strictly below 150 mm; AUC averages PCK3D over
  thresholds 0, 5, ..., 150 mm. Returns pck3d_150 and auc (percent, as the
  benchmark reports them), mpjpe_mm, num_frames and per_activity (activity
  name -> {pck3d_150, auc, mpjpe_mm, num_frames}); `activities` are names
  or the test set's 1-based activity numbers.
  """
  pred, gt = _check_pair(pred_rel_mm, gt_rel_mm)
  pck = pck3d(pred, gt, PCK_THRESHOLD_MM, valid, root)
  area = auc(pred, gt, valid, root)
  errors = mpjpe(pred, gt, valid, root)

  def block(mask):
    return {'pck3d_150': 100. * _nanmean(pck[mask]),
            'auc': 100. * _nanmean(area[mask]),
            'mpjpe_mm': _nanmean(errors[mask]),
            'num_frames': int(mask.sum())}
  out = block(np.ones(pred.shape[0], bool))
  out['per_activity'] = {}
  if activities is not None:
    names = [mpi3dhp_activity_name(a)
             for a in np.asarray(activities).reshape(-1)]
    if len(names) != pred.shape[0]:
      raise ValueError(f'activities has {len(names)} entries for '
                       f'{pred.shape[0]} poses')
    names = np.asarray(names, object)
    for name in sorted(set(names)):
      out['per_activity'][name] = block(names == name)
  return out


def mpi3dhp_activity_name(value) -> str:
  """An MPI-INF-3DHP activity number (1..7, or its text) -> its name."""
  if isinstance(value, (bytes, np.bytes_)):
    value = value.decode()
  text = str(value)
  if text.isdigit() and 1 <= int(text) <= len(MPI3DHP_ACTIVITIES):
    return MPI3DHP_ACTIVITIES[int(text) - 1]
  return text


def format_table(metrics: Mapping[str, object]) -> str:
  """A plain-text table of a `summarize` dict (per-action rows last)."""
  lines = []
  for key, value in metrics.items():
    if key == 'per_action':
      continue
    lines.append(f'{key:<16}{value:>12.4g}' if isinstance(value, float)
                 else f'{key:<16}{value!s:>12}')
  for action, value in dict(metrics.get('per_action', {})).items():
    lines.append(f'  {action:<14}{value:>12.2f}')
  return '\n'.join(lines)
