"""Motion capture seen by random cameras, with a 2D detector's errors.

What. `sample_views(rng, poses_world_mm)` puts every motion-capture pose in
front of a camera drawn by zoo.data.render.sample_camera (the synthetic
dataset's camera model: any azimuth, 3-7 m, 1000-1200 px focal length on a
1000 x 1000 frame), projects it, and corrupts the 2D joints the way a 2D
detector does (`DetectorNoise`): Gaussian jitter proportional to the
person's image size (larger at wrists and ankles), occasional gross
outliers, left/right swaps of an arm or leg pair, and missing joints
(independently, and the lower legs together as when the frame cuts them).
No image is rendered, so a lifting network trains on it at CPU speed
(trainers.lift_mocap, decoupled network 2).

Frames and units: joints_cam_mm [N, 17, 3] camera frame (x right, y down,
z forward), mm; joints2d_px / keypoints2d_px [N, 17, 2] pixels; H36M-17.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from zoo import geometry
from zoo import skeleton as skel
from zoo.data import render

# Relative jitter per H36M-17 joint: extremities are the hardest to place.
_JOINT_NOISE_SCALE = np.array([
    0.8, 0.9, 1.1, 1.4, 0.9, 1.1, 1.4, 0.8, 0.8, 0.9, 1.2, 0.9, 1.2, 1.5,
    0.9, 1.2, 1.5])
_SWAP_GROUPS = ((skel.H36M17.index('left_shoulder'),
                 skel.H36M17.index('left_elbow'),
                 skel.H36M17.index('left_wrist')),
                (skel.H36M17.index('left_hip'), skel.H36M17.index('left_knee'),
                 skel.H36M17.index('left_ankle')))
_LOWER_LEGS = tuple(skel.H36M17.index(n) for n in (
    'left_knee', 'left_ankle', 'right_knee', 'right_ankle'))


@dataclasses.dataclass(frozen=True)
class DetectorNoise:
  """How 2D keypoints differ from the true projections.

  Sizes are fractions of the person's image size (the longer side of the
  true 2D joints' extent), so noise scales with the person in the image.
  """
  jitter: tuple[float, float] = (0., 0.025)  # per-example std, uniform
  outlier_prob: float = 0.02     # per joint: moved by 5-25 % of the size
  swap_prob: float = 0.02        # per example and limb group: left <-> right
  drop_rate: tuple[float, float] = (0., 0.2)  # per-example, uniform
  lower_legs_missing_prob: float = 0.1
  min_joints: int = 8            # never drop below this many joints

  @classmethod
  def none(cls) -> 'DetectorNoise':
    """The true projections, every joint present."""
    return cls(jitter=(0., 0.), outlier_prob=0., swap_prob=0.,
               drop_rate=(0., 0.), lower_legs_missing_prob=0.)


def sample_views(rng: np.random.Generator, poses_world_mm: np.ndarray,
                 noise: DetectorNoise = DetectorNoise(),
                 pixel_noise_px: float = 0.,
                 render_config: render.RenderConfig | None = None
                 ) -> dict[str, np.ndarray]:
  """One random camera per pose; true and detector-like 2D.

  Args:
    rng: the random generator (all draws come from it).
    poses_world_mm: [N, 17, 3] H36M-17 world mm, z up (zoo.data.motion).
    noise: the detector's error model (DetectorNoise.none() for none).
    pixel_noise_px: extra isotropic Gaussian noise (std, px) on every
      coordinate, for benchmarks at fixed pixel noise.

  Returns float32 arrays: intrinsics [N, 3, 3], joints_cam_mm [N, 17, 3],
  joints2d_px [N, 17, 2] (true), keypoints2d_px [N, 17, 2] (detected),
  valid [N, 17] (1 = the keypoint was detected).
  """
  poses = np.asarray(poses_world_mm, np.float64)
  if poses.ndim != 3 or poses.shape[1:] != (skel.NUM_JOINTS, 3):
    raise ValueError(f'poses_world_mm must be [N, {skel.NUM_JOINTS}, 3], got '
                     f'{poses.shape}')
  config = render_config or render.RenderConfig()
  n, j = poses.shape[:2]
  ks = np.empty((n, 3, 3))
  cams = np.empty((n, j, 3))
  for i, pose in enumerate(poses):
    ks[i], extrinsics = render.sample_camera(rng, pose, config)
    cams[i] = geometry.world_to_camera(pose, extrinsics)
  true2d = geometry.project(cams, ks)
  size = np.max(true2d.max(1) - true2d.min(1), -1)             # [N]
  sigma = rng.uniform(*noise.jitter, n)[:, None] * size[:, None] \
      * _JOINT_NOISE_SCALE
  kp = true2d + rng.standard_normal((n, j, 2)) * sigma[..., None]
  outlier = rng.random((n, j)) < noise.outlier_prob
  angle = rng.uniform(0., 2 * np.pi, (n, j))
  dist = rng.uniform(0.05, 0.25, (n, j)) * size[:, None]
  kp += outlier[..., None] * np.stack([np.cos(angle), np.sin(angle)], -1) \
      * dist[..., None]
  flip = skel.FLIP_PERMUTATION
  for group in _SWAP_GROUPS:
    swap = rng.random(n) < noise.swap_prob
    idx = np.array(group + tuple(flip[list(group)]))
    kp[np.ix_(swap, idx)] = kp[np.ix_(swap, flip[idx])]
  if pixel_noise_px:
    kp += rng.standard_normal(kp.shape) * pixel_noise_px
  valid = rng.random((n, j)) >= rng.uniform(*noise.drop_rate, n)[:, None]
  legs = rng.random(n) < noise.lower_legs_missing_prob
  valid[np.ix_(legs, _LOWER_LEGS)] = False
  # Keep at least min_joints: restore randomly chosen dropped joints.
  short = np.flatnonzero(valid.sum(1) < noise.min_joints)
  for i in short:
    dropped = np.flatnonzero(~valid[i])
    need = noise.min_joints - int(valid[i].sum())
    valid[i, rng.permutation(dropped)[:need]] = True
  return {'intrinsics': ks.astype(np.float32),
          'joints_cam_mm': cams.astype(np.float32),
          'joints2d_px': true2d.astype(np.float32),
          'keypoints2d_px': kp.astype(np.float32),
          'valid': valid.astype(np.float32)}
