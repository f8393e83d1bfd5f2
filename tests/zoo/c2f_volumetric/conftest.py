"""Synthetic pipeline-format features for the c2f tests (no dataset needed)."""
from __future__ import annotations

import numpy as np
import pytest

from zoo import geometry
from zoo import skeleton as skel


def random_pose_rel_mm(rng: np.random.Generator, n: int) -> np.ndarray:
  """[n, 17, 3] root-relative poses with exactly the H36M mean bone lengths."""
  lengths = skel.mean_bone_lengths_mm()
  joints = np.zeros((n, skel.NUM_JOINTS, 3))
  for k, (parent, child) in enumerate(skel.H36M17.limbs):
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    joints[:, child] = joints[:, parent] + lengths[k] * direction
  return joints.astype(np.float32)


def make_features(n: int, size: int, seed: int = 0,
                  root_depth_mm: float = 4500.) -> dict[str, np.ndarray]:
  """A batch in zoo.data.pipeline's output format; camera aimed at the root."""
  rng = np.random.default_rng(seed)
  rel = random_pose_rel_mm(rng, n)
  # Keep every joint inside the +-1000 mm depth range.
  rel[..., 2] = np.clip(rel[..., 2], -900., 900.)
  cam = rel + np.array([0., 0., root_depth_mm], np.float32)
  focal = 1.5 * size  # joints (<= ~1.1 m from the root) stay in the crop
  k = np.array([[focal, 0, (size - 1) / 2], [0, focal, (size - 1) / 2],
                [0, 0, 1]], np.float32)
  intrinsics = np.tile(k, (n, 1, 1))
  joints2d = geometry.project(cam, intrinsics).astype(np.float32)
  ones = np.ones((n, skel.NUM_JOINTS), np.float32)
  return {
      'image': rng.uniform(0., 1., (n, size, size, 3)).astype(np.float32),
      'intrinsics': intrinsics,
      'joints2d_px': joints2d,
      'joints3d_cam_mm': cam.astype(np.float32),
      'joints3d_rel_mm': rel,
      'joint_valid_2d': ones,
      'joint_valid_3d': ones.copy(),
      'joint_in_crop': ones.copy(),
      'has_3d': np.ones((n,), np.float32),
  }


@pytest.fixture
def features_fn():
  return make_features
