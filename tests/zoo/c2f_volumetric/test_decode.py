"""Tests for zoo/c2f_volumetric/decode.py: peaks, metric poses, flipping."""
import numpy as np
import pytest
import tensorflow as tf

from zoo import geometry
from zoo import heatmaps
from zoo import registry
from zoo import skeleton as skel
from zoo.c2f_volumetric import decode as decode_lib
from zoo.c2f_volumetric import targets as targets_lib


def _cpu_config(**overrides):
  # The cpu preset pinned to 128 px input, 32x32 cells and 32 depth bins over
  # +-1000 mm, the sizes these tests' synthetic volumes use.
  overrides = {'input_size': 128, 'heatmap_size': 32,
               'depth_schedule': (1, 32), **overrides}
  return registry.get('c2f_volumetric').config('cpu', **overrides)


def _volume_for(y, cfg):
  """Materialised Gaussian target volume of the final stack."""
  return heatmaps.gaussian_volume(
      y['joints_vox'], cfg.heatmap_size, cfg.heatmap_size, cfg.num_depth_bins,
      cfg.sigma, cfg.sigma)


@pytest.mark.parametrize('decoding', ['argmax', 'soft_argmax'])
def test_peak_recovers_known_joint_within_a_voxel(decoding):
  cfg = _cpu_config(decoding=decoding)
  rng = np.random.default_rng(0)
  centers = rng.uniform(3., 28., (2, 17, 3)).astype(np.float32)
  volume = heatmaps.gaussian_volume(centers, 32, 32, 32, cfg.sigma, cfg.sigma)
  coords, peak = decode_lib.peak_voxels(volume, cfg)
  err = np.abs(coords.numpy() - centers)
  if decoding == 'argmax':
    # The peak voxel is the nearest cell centre on every axis.
    np.testing.assert_allclose(coords.numpy(), np.round(centers), atol=1e-6)
    assert err.max() <= 0.5 + 1e-5
  else:
    assert np.linalg.norm(err, axis=-1).max() < 0.5
  assert np.all(peak.numpy() > 0.5) and np.all(peak.numpy() <= 1.)


def _numpy_soft_argmax(logits):
  """Expected (x, y, z) of softmax over each joint's voxels, by loops."""
  b, h, w, d, j = logits.shape
  grid = np.stack(np.meshgrid(np.arange(w), np.arange(h), np.arange(d)), -1)
  out = np.zeros((b, j, 3))
  for bi in range(b):
    for ji in range(j):
      p = np.exp(logits[bi, ..., ji] - logits[bi, ..., ji].max())
      p /= p.sum()
      # grid[y, x, z] holds (x, y, z) because meshgrid is 'xy'-indexed.
      out[bi, ji] = (p[..., None] * grid).reshape(-1, 3).sum(0)
  return out


@pytest.mark.parametrize('integral_loss_weight', [0., 1.])
def test_soft_argmax_decodes_with_the_trained_softmax(integral_loss_weight):
  """With the integral loss the decode is the loss's softmax(beta * V).

  A weak, broad bump (peak 0.3) on a second bump makes the two rules
  disagree: the peak-normalised one sharpens it, the trained one does not.
  """
  cfg = _cpu_config(decoding='soft_argmax',
                    integral_loss_weight=integral_loss_weight)
  rng = np.random.default_rng(3)
  c1 = rng.uniform(8., 12., (1, 17, 3)).astype(np.float32)
  c2 = rng.uniform(20., 24., (1, 17, 3)).astype(np.float32)
  volume = (0.3 * heatmaps.gaussian_volume(c1, 32, 32, 32, 2., 2.)
            + 0.2 * heatmaps.gaussian_volume(c2, 32, 32, 32, 3., 3.)).numpy()
  coords, _ = decode_lib.peak_voxels(volume, cfg)
  if integral_loss_weight:
    logits = cfg.integral_beta * volume
  else:
    logits = cfg.soft_argmax_beta * volume / volume.max(axis=(1, 2, 3),
                                                        keepdims=True)
  np.testing.assert_allclose(coords.numpy(), _numpy_soft_argmax(logits),
                             atol=1e-3)


@pytest.mark.parametrize('decoding', ['argmax', 'soft_argmax'])
def test_decode_recovers_pose_and_reprojects(features_fn, decoding):
  cfg = _cpu_config(decoding=decoding)
  f = features_fn(3, cfg.input_size, seed=4)
  x, y = targets_lib.make_targets(f, cfg)
  assert y['valid_3d'].numpy().min() == 1  # every joint inside the volume
  poses = decode_lib.decode_volume(_volume_for(y, cfg), x, cfg)
  for key, shape in (('poses3d_rel_mm', (3, 17, 3)),
                     ('poses3d_cam_mm', (3, 17, 3)),
                     ('poses2d_px', (3, 17, 2)), ('confidence', (3, 17))):
    assert poses[key].shape == shape and poses[key].dtype == tf.float32
  # Re-projection of the camera-space pose lands on the 2D output.
  reproj = geometry.project(poses['poses3d_cam_mm'].numpy(), f['intrinsics'])
  np.testing.assert_allclose(reproj, poses['poses2d_px'].numpy(), atol=1e-2)
  # Poses with the mean bone lengths come back up to the quantisation: a
  # 4 px cell is ~94 mm here (focal 192 px at 4.5 m), a bin 62.5 mm, and the
  # limb-length root depth amplifies 2D errors. Exact inputs give exact
  # poses (test_decode_coordinates_inverts_regression_targets).
  rel_err = np.linalg.norm(
      poses['poses3d_rel_mm'].numpy() - f['joints3d_rel_mm'], axis=-1).mean()
  root_err = np.abs(poses['poses3d_cam_mm'].numpy()[:, 0, 2] - 4500.)
  px_err = np.abs(poses['poses2d_px'].numpy() - f['joints2d_px']).max()
  if decoding == 'argmax':
    assert px_err <= 2. + 1e-3 and rel_err < 100. and root_err.max() < 600.
  else:
    assert px_err < 1. and rel_err < 30. and root_err.max() < 300.
  np.testing.assert_allclose(poses['poses3d_rel_mm'].numpy()[:, skel.ROOT], 0.,
                             atol=1e-3)


def test_root_depth_from_input():
  cfg = _cpu_config(root_depth_source='input')
  rng = np.random.default_rng(1)
  centers = rng.uniform(3., 28., (2, 17, 3)).astype(np.float32)
  volume = heatmaps.gaussian_volume(centers, 32, 32, 32, 2., 2.)
  k = np.tile(np.array([[200., 0, 63.5], [0, 200., 63.5], [0, 0, 1]],
                       np.float32), (2, 1, 1))
  inputs = {'intrinsics': k, 'root_depth_mm': tf.constant([3000., 5000.])}
  poses = decode_lib.decode_volume(volume, inputs, cfg)
  np.testing.assert_allclose(poses['poses3d_cam_mm'].numpy()[:, 0, 2],
                             [3000., 5000.], rtol=1e-5)
  with pytest.raises(KeyError, match='root_depth_mm'):
    decode_lib.decode_volume(volume, {'intrinsics': k}, cfg)


def test_decode_coordinates_inverts_regression_targets(features_fn):
  cfg = registry.get('coordinate_regression').config('cpu')
  f = features_fn(2, cfg.input_size, seed=5)
  x, y = targets_lib.make_targets(f, cfg)
  poses = decode_lib.decode_coordinates(y['joints_norm'], x, cfg)
  np.testing.assert_allclose(poses['poses2d_px'].numpy(), f['joints2d_px'],
                             atol=1e-3)
  z_rel = f['joints3d_rel_mm'][..., 2] - f['joints3d_rel_mm'][..., :1, 2]
  cam = poses['poses3d_cam_mm'].numpy()
  np.testing.assert_allclose(cam[..., 2] - cam[..., :1, 2], z_rel, atol=1e-2)
  # Exact 2D and depths with the true bone lengths: the true pose returns.
  np.testing.assert_allclose(poses['poses3d_rel_mm'].numpy(),
                             f['joints3d_rel_mm'], atol=2.)
  np.testing.assert_array_equal(poses['confidence'].numpy(), 1.)


def test_flip_volume_is_the_mirrored_pose(features_fn):
  cfg = _cpu_config()
  f = features_fn(2, cfg.input_size, seed=6)
  _, y = targets_lib.make_targets(f, cfg)
  vox = y['joints_vox'].numpy()
  mirrored = vox.copy()
  mirrored[..., 0] = cfg.heatmap_size - 1 - vox[..., 0]
  mirrored = mirrored[:, skel.FLIP_PERMUTATION]
  volume = _volume_for(y, cfg)
  expected = heatmaps.gaussian_volume(mirrored, 32, 32, 32, cfg.sigma,
                                      cfg.sigma)
  flipped = decode_lib.flip_volume(volume)
  np.testing.assert_allclose(flipped.numpy(), expected.numpy(), atol=1e-5)
  np.testing.assert_array_equal(decode_lib.flip_volume(flipped).numpy(),
                                volume.numpy())


def _numpy_probabilities(volume, beta):
  """softmax(beta * V) over each joint's voxels; V [B,H,W,D,J] -> [B,HWD,J]."""
  b, h, w, d, j = volume.shape
  logits = beta * volume.reshape(b, h * w * d, j).astype(np.float64)
  p = np.exp(logits - logits.max(1, keepdims=True))
  return p / p.sum(1, keepdims=True)


def test_flip_pair_soft_argmax_averages_probability_volumes():
  # The soft-argmax flip test must read the mean of the two probability
  # volumes (computed here in numpy), not the softmax of the mean logits.
  cfg = _cpu_config()
  assert cfg.decoding == 'soft_argmax' and cfg.integral_loss_weight > 0
  rng = np.random.default_rng(3)
  shape = (2, 32, 32, 32, 17)
  volume = rng.normal(0., 0.15, shape).astype(np.float32)
  mirrored = rng.normal(0., 0.15, shape).astype(np.float32)
  intrinsics = np.tile(np.array([[200., 0., 63.5], [0., 200., 63.5],
                                 [0., 0., 1.]], np.float32), (2, 1, 1))
  poses = decode_lib.decode_flip_pair(
      tf.constant(volume), tf.constant(mirrored),
      {'intrinsics': tf.constant(intrinsics)}, cfg)
  probs = 0.5 * (_numpy_probabilities(volume, cfg.integral_beta) +
                 _numpy_probabilities(mirrored, cfg.integral_beta))
  yy, xx, zz = np.meshgrid(np.arange(32), np.arange(32), np.arange(32),
                           indexing='ij')
  grid = np.stack([xx, yy, zz], -1).reshape(-1, 3).astype(np.float64)
  coords = np.einsum('bvj,vc->bjc', probs, grid)
  px = (coords[..., :2] + 0.5) * cfg.input_size / cfg.heatmap_size - 0.5
  r = cfg.depth_range_mm
  z_mm = -r + (coords[..., 2] + 0.5) * 2. * r / 32
  np.testing.assert_allclose(poses['poses2d_px'].numpy(), px, atol=2e-3)
  cam_z = poses['poses3d_cam_mm'].numpy()[..., 2]
  np.testing.assert_allclose(cam_z - cam_z[:, skel.ROOT:skel.ROOT + 1],
                             z_mm - z_mm[:, skel.ROOT:skel.ROOT + 1],
                             atol=0.05)


def test_flip_pair_argmax_averages_volumes():
  # With argmax (the paper) the volumes are averaged before the peak is taken:
  # a peak that only one volume holds loses to one that both hold.
  cfg = _cpu_config(decoding='argmax')
  volume = np.zeros((1, 32, 32, 32, 17), np.float32)
  mirrored = np.zeros_like(volume)
  volume[0, 5, 6, 7, :] = 1.      # only in the crop's volume
  volume[0, 20, 21, 22, :] = 0.9  # in both
  mirrored[0, 20, 21, 22, :] = 0.9
  intrinsics = np.array([[[200., 0., 63.5], [0., 200., 63.5], [0., 0., 1.]]],
                        np.float32)
  poses = decode_lib.decode_flip_pair(
      tf.constant(volume), tf.constant(mirrored),
      {'intrinsics': tf.constant(intrinsics)}, cfg)
  px = (np.array([21., 20.]) + 0.5) * 4. - 0.5
  np.testing.assert_allclose(poses['poses2d_px'].numpy()[0],
                             np.tile(px, (17, 1)), atol=1e-4)
  np.testing.assert_allclose(poses['confidence'].numpy(), 0.9, atol=1e-6)
