"""zoo.data.mocap2d: motion capture seen by random cameras, detector noise."""
import dataclasses

import numpy as np
import pytest

from zoo import geometry
from zoo import skeleton as skel
from zoo.data import mocap2d
from zoo.data import motion


@pytest.fixture(scope='module')
def poses():
  return motion.poses(200, 'train', 0)


def test_noise_free_views_are_the_projections(poses):
  v = mocap2d.sample_views(np.random.default_rng(0), poses[:20],
                           mocap2d.DetectorNoise.none())
  assert v['intrinsics'].shape == (20, 3, 3)
  np.testing.assert_array_equal(v['valid'], 1.)
  np.testing.assert_allclose(v['keypoints2d_px'], v['joints2d_px'])
  proj = geometry.project(v['joints_cam_mm'].astype(np.float64),
                          v['intrinsics'].astype(np.float64))
  np.testing.assert_allclose(v['joints2d_px'], proj, atol=1e-2)
  # In front of the camera, and bone lengths kept (a rigid camera change).
  assert np.all(v['joints_cam_mm'][..., 2] > 1000.)
  np.testing.assert_allclose(skel.bone_lengths(v['joints_cam_mm']),
                             skel.bone_lengths(poses[:20]), rtol=1e-4)


def test_jitter_scales_with_the_person(poses):
  noise = dataclasses.replace(mocap2d.DetectorNoise.none(),
                              jitter=(0.02, 0.02))
  v = mocap2d.sample_views(np.random.default_rng(1), poses, noise)
  size = np.max(v['joints2d_px'].max(1) - v['joints2d_px'].min(1), -1)
  err = np.linalg.norm(v['keypoints2d_px'] - v['joints2d_px'], axis=-1)
  ratio = err.mean(1) / size
  # Mean of a 2D Gaussian's norm: sigma * sqrt(pi / 2), sigma ~ 0.02 * size.
  assert 0.015 < ratio.mean() < 0.04


def test_missing_joints_and_minimum(poses):
  noise = dataclasses.replace(mocap2d.DetectorNoise.none(),
                              drop_rate=(0.6, 0.6), min_joints=8)
  v = mocap2d.sample_views(np.random.default_rng(2), poses, noise)
  assert np.all(v['valid'].sum(1) >= 8)
  assert v['valid'].mean() < 0.75
  legs = dataclasses.replace(mocap2d.DetectorNoise.none(),
                             lower_legs_missing_prob=1.)
  v = mocap2d.sample_views(np.random.default_rng(3), poses[:5], legs)
  for name in ('left_knee', 'right_ankle'):
    assert np.all(v['valid'][:, skel.H36M17.index(name)] == 0)


def test_swaps_exchange_left_and_right(poses):
  swap = dataclasses.replace(mocap2d.DetectorNoise.none(), swap_prob=1.)
  v = mocap2d.sample_views(np.random.default_rng(4), poses[:5], swap)
  perm = skel.FLIP_PERMUTATION
  np.testing.assert_allclose(v['keypoints2d_px'], v['joints2d_px'][:, perm])


def test_pixel_noise_and_determinism(poses):
  a = mocap2d.sample_views(np.random.default_rng(5), poses[:50],
                           mocap2d.DetectorNoise.none(), pixel_noise_px=4.)
  b = mocap2d.sample_views(np.random.default_rng(5), poses[:50],
                           mocap2d.DetectorNoise.none(), pixel_noise_px=4.)
  np.testing.assert_array_equal(a['keypoints2d_px'], b['keypoints2d_px'])
  diff = a['keypoints2d_px'] - a['joints2d_px']
  assert diff.std() == pytest.approx(4., rel=0.1)


def test_bad_shape():
  with pytest.raises(ValueError, match='poses_world_mm'):
    mocap2d.sample_views(np.random.default_rng(0), np.zeros((2, 16, 3)))
