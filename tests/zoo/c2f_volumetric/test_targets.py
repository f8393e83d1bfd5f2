"""Tests for zoo/c2f_volumetric/targets.py: voxel coordinates and masks."""
import math

import numpy as np
import pytest
import tensorflow as tf

from zoo import registry
from zoo.c2f_volumetric import targets as targets_lib


def _smoke_config(**overrides):
  # input 64, heatmap 16, depth bins 8 over +-1000 mm
  return registry.get('c2f_volumetric').config('smoke', **overrides)


def _one_example(features_fn):
  f = features_fn(1, 64)
  return {k: v[0] for k, v in f.items()}


def test_known_pose_voxel_coordinates(features_fn):
  cfg = _smoke_config()
  assert (cfg.input_size, cfg.heatmap_size, cfg.num_depth_bins) == (64, 16, 8)
  f = _one_example(features_fn)
  # Hand-computed cases: the crop [-0.5, 63.5] px maps onto the heatmap
  # [-0.5, 15.5] cells (4 px per cell); depth bins are 250 mm wide, bin k
  # spanning [-1000 + 250 k, -750 + 250 k] with its centre at index k.
  f['joints2d_px'][:4] = [[10., 1.5], [-0.5, 63.5], [31.5, 31.5], [2., 5.]]
  f['joints3d_rel_mm'][:4, 2] = [0., -1000., 250., -875.]
  f['joints3d_rel_mm'][0] = 0.  # the root
  _, y = targets_lib.make_targets(f, cfg)
  expected = np.array([[2.125, 0., 3.5],       # 10 px -> 10.5 / 4 - 0.5
                       [-0.5, 15.5, -0.5],    # crop edges, depth range edge
                       [7.5, 7.5, 4.5],       # centre; +250 mm -> 5 - 0.5
                       [0.125, 0.875, 0.]])   # -875 mm: centre of bin 0
  np.testing.assert_allclose(y['joints_vox'][:4].numpy(), expected, atol=1e-5)
  # Coordinate-regression targets: crop edges at -1 / +1, z over 1000 mm.
  np.testing.assert_allclose(y['joints_norm'][1].numpy(), [-1., 1., -1.],
                             atol=1e-6)
  np.testing.assert_allclose(y['joints_norm'][2].numpy(), [0., 0., 0.25],
                             atol=1e-6)


def test_masks(features_fn):
  cfg = _smoke_config()
  f = _one_example(features_fn)
  f['joints2d_px'][1] = [70., 20.]          # outside the crop
  f['joints3d_rel_mm'][2, 2] = 1200.        # beyond the depth range
  f['joint_valid_3d'][3] = 0.               # no 3D label
  f['joint_valid_2d'][4] = 0.               # no 2D label
  _, y = targets_lib.make_targets(f, cfg)
  v2, v3, vn = (y['valid_2d'].numpy(), y['valid_3d'].numpy(),
                y['valid_norm'].numpy())
  assert v2[1] == 0 and v3[1] == 0
  assert v2[2] == 1 and v3[2] == 0
  assert v2[3] == 1 and v3[3] == 0
  assert v2[4] == 0
  assert v2[[0, 5, 6]].tolist() == [1] * 3
  assert v3[[0, 5, 6]].tolist() == [1] * 3
  # Regression keeps out-of-crop / out-of-range joints (no volume to leave).
  assert vn[1].tolist() == [1, 1, 1] and vn[2].tolist() == [1, 1, 1]
  assert vn[3].tolist() == [1, 1, 0] and vn[4].tolist() == [0, 0, 1]
  f['has_3d'] = np.float32(0.)
  _, y = targets_lib.make_targets(f, cfg)
  assert y['valid_3d'].numpy().sum() == 0
  assert y['valid_2d'].numpy().sum() > 0


def test_batched_equals_unbatched_and_traces_in_tf_data(features_fn):
  cfg = _smoke_config()
  f = features_fn(3, 64, seed=1)
  _, y_batch = targets_lib.make_targets(f, cfg)
  ds = tf.data.Dataset.from_tensor_slices(f).map(
      lambda e: targets_lib.make_targets(e, cfg))
  for i, (x, y) in enumerate(ds):
    assert set(x) == {'image', 'intrinsics'}
    for key in y:
      np.testing.assert_allclose(y[key].numpy(), y_batch[key][i].numpy(),
                                 atol=1e-6)


def test_cam_joints_used_when_rel_missing(features_fn):
  cfg = _smoke_config()
  f = features_fn(2, 64, seed=2)
  _, y_rel = targets_lib.make_targets(f, cfg)
  del f['joints3d_rel_mm']
  _, y_cam = targets_lib.make_targets(f, cfg)
  np.testing.assert_allclose(y_cam['joints_vox'].numpy(),
                             y_rel['joints_vox'].numpy(), atol=1e-4)


def test_missing_feature_is_named(features_fn):
  f = features_fn(1, 64)
  del f['joints2d_px']
  with pytest.raises(KeyError, match='joints2d_px'):
    targets_lib.make_targets(f, _smoke_config())


@pytest.mark.parametrize('coarse', [1, 2, 4, 8, 16, 32])
def test_coarse_index_matches_released_ceil_rule(coarse):
  """round(z_d) equals the released code's ceil(z * d / 64) (1-based)."""
  fine = np.arange(64, dtype=np.float32)  # 0-based fine bin centres
  z_d = targets_lib.rescale_depth_index(fine, 64, coarse)
  released = np.array([math.ceil((k + 1) * coarse / 64) - 1 for k in range(64)])
  np.testing.assert_array_equal(np.floor(z_d + 0.5).astype(int), released)
  # And the rescaled index denotes the same metric depth.
  np.testing.assert_allclose(
      targets_lib.depth_index_to_mm(z_d, coarse, 1000.),
      targets_lib.depth_index_to_mm(fine, 64, 1000.), atol=1e-3)


def test_mocap_heatmaps_rendered_from_2d_joints(features_fn):
  cfg = registry.get('decoupled_volumetric').config(
      'smoke', train_mode='network2_mocap')
  f = features_fn(2, 64, seed=3)
  f['joint_valid_2d'][0, 5] = 0.
  del f['image']  # motion capture: projected poses only
  x, y = targets_lib.make_targets(f, cfg, mocap_heatmaps=True)
  maps = x['heatmaps2d_input'].numpy()
  assert maps.shape == (2, 16, 16, 17)
  assert x['image'].shape == (2, 64, 64, 3)
  vox = y['joints_vox'].numpy()
  for b in range(2):
    for j in range(17):
      if b == 0 and j == 5:
        assert maps[b, :, :, j].max() == 0.
        continue
      py, px = np.unravel_index(np.argmax(maps[b, :, :, j]), (16, 16))
      assert abs(px - vox[b, j, 0]) <= 0.5 + 1e-5
      assert abs(py - vox[b, j, 1]) <= 0.5 + 1e-5
