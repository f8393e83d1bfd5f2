"""Pose preprocessing for the pose prior: model frame, limb-length
normalisation, mirroring, yaw.

Frames and units.
- Model frame: x, y span the ground plane, z points up; poses are
  root-relative (pelvis at the origin) and normalised so that the sum of
  squared limb lengths is 1 ("unit" poses). `scale_mm`, the mean
  normalisation factor seen while fitting, converts unit poses to mm.
- The camera of the upright model is CAMERA_FROM_MODEL = [[1,0,0],[0,0,-1],
  [0,1,0]]: camera x = model x, camera y (down) = -model z, camera z
  (forward) = model y. A yaw R(theta) about model z precedes it.
- `lift` takes [N, 17, 2] image-plane joints (x right, y down, any scale and
  offset) and returns [N, 17, 3] root-relative camera-frame poses (x right,
  y down, z forward) in mm.
"""
from __future__ import annotations

import numpy as np

from zoo import skeleton as skel


NUM_JOINTS = skel.NUM_JOINTS
CAMERA_FROM_MODEL = np.array([[1., 0., 0.], [0., 0., -1.], [0., 1., 0.]])
_LIMBS = np.array(skel.H36M17.limbs)


def limb_norm(poses: np.ndarray) -> np.ndarray:
  """sqrt(sum of squared limb lengths) of [..., 17, 3] poses."""
  d = poses[..., _LIMBS[:, 1], :] - poses[..., _LIMBS[:, 0], :]
  return np.sqrt(np.sum(d ** 2, axis=(-2, -1)))


def to_model_frame(poses: np.ndarray, up_axis: str = 'z') -> np.ndarray:
  """Re-expresses [..., 17, 3] poses in a right-handed z-up model frame.

  up_axis: 'z' (world frames such as zoo.data.synthetic's, unchanged), 'y'
  (y up, e.g. many mocap exports) or '-y' (camera frames, y down).
  """
  p = np.asarray(poses, np.float64)
  if up_axis == 'z':
    return p.copy()
  if up_axis == 'y':     # (x, y, z) -> (x, -z, y)
    return np.stack([p[..., 0], -p[..., 2], p[..., 1]], -1)
  if up_axis == '-y':    # (x, y, z) -> (x, z, -y)
    return np.stack([p[..., 0], p[..., 2], -p[..., 1]], -1)
  raise ValueError(f"up_axis must be 'z', 'y' or '-y', got {up_axis!r}")


def mirror(poses_model: np.ndarray) -> np.ndarray:
  """Left-right mirrored copies: x -> -x in the model frame, joints swapped."""
  return poses_model[..., skel.FLIP_PERMUTATION, :] * np.array([-1., 1., 1.])


def normalise(poses_mm: np.ndarray, up_axis: str = 'z'
              ) -> tuple[np.ndarray, np.ndarray]:
  """Root-relative, model-frame, unit sum of squared limb lengths.

  Returns (unit poses [N, 17, 3] float64, per-pose factors [N] in mm).
  """
  p = to_model_frame(poses_mm, up_axis)
  p = p - p[..., skel.ROOT:skel.ROOT + 1, :]
  norm = limb_norm(p)
  if np.any(norm <= 0):
    raise ValueError('poses with all limbs of zero length cannot be normalised')
  return p / norm[..., None, None], norm


def yaw_matrix(theta) -> np.ndarray:
  """[..., 3, 3] rotation by theta about the model's up (z) axis."""
  c, s = np.cos(theta), np.sin(theta)
  o, z = np.ones_like(c), np.zeros_like(c)
  return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1),
                   np.stack([z, z, o], -1)], -2)


def _rotate_yaw(poses: np.ndarray, theta: np.ndarray) -> np.ndarray:
  """Rotates [N, J, 3] poses by per-pose theta [N] about z."""
  c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
  x, y = poses[..., 0], poses[..., 1]
  return np.stack([c * x - s * y, s * x + c * y, poses[..., 2]], -1)
