"""Loss targets of the coarse-to-fine volumetric family, built in tf.data.

Only joint coordinates in voxel units and masks leave the input pipeline:
target volumes (17.8 MB per example at 64^3 x 17) are never materialised; the
loss (zoo.heatmaps.separable_gaussian_mse) builds the Gaussians' 1D factors
from these coordinates on the fly.

`make_targets` works on a single example ([J, ...] features) or a batch
([B, J, ...]); it is traceable by tf.data (no Python side effects).
"""
from __future__ import annotations

import tensorflow as tf

from zoo import heatmaps
from zoo import skeleton as skel
from zoo.c2f_volumetric.config import C2FConfig


def crop_px_to_heatmap(points_px, input_size: int, heatmap_size: int):
  """x_hm = (u + 0.5) * heatmap_size / input_size - 0.5 (cell centres at i)."""
  return (points_px + 0.5) * (heatmap_size / input_size) - 0.5


def heatmap_to_crop_px(points_hm, input_size: int, heatmap_size: int):
  """Inverse of `crop_px_to_heatmap`."""
  return (points_hm + 0.5) * (input_size / heatmap_size) - 0.5


def depth_mm_to_index(z_rel_mm, num_bins: int, depth_range_mm: float):
  """Continuous bin index of a root-relative depth; bin k centred at k."""
  return (z_rel_mm + depth_range_mm) * (num_bins / (2. * depth_range_mm)) - 0.5


def depth_index_to_mm(z_index, num_bins: int, depth_range_mm: float):
  """Root-relative depth (mm) at a continuous bin index (integer: centre)."""
  return (z_index + 0.5) * (2. * depth_range_mm / num_bins) - depth_range_mm


def rescale_depth_index(z_index, from_bins: int, to_bins: int):
  """z_d = (z_D + 0.5) * d / D - 0.5: the same metric depth at d bins."""
  return (z_index + 0.5) * (to_bins / from_bins) - 0.5


def _get(features, key):
  if key not in features:
    raise KeyError(f'c2f targets need feature {key!r}; got keys '
                   f'{sorted(features)}')
  return tf.cast(features[key], tf.float32)


def make_targets(features: dict[str, tf.Tensor], config: C2FConfig,
                 mocap_heatmaps: bool = False):
  """Pipeline features -> (x, y) for every variant of the family.

  Args:
    features: pipeline features (batched or not): image [.., S, S, 3] in
      [0, 1], intrinsics [.., 3, 3], joints2d_px [.., J, 2] (crop px),
      joints3d_rel_mm [.., J, 3] (or joints3d_cam_mm, made root-relative),
      joint_valid_2d, joint_valid_3d [.., J], has_3d [..] (optional, default 1).
    config: the model's C2FConfig.
    mocap_heatmaps: also put Gaussian 2D heatmaps rendered from the
      ground-truth 2D joints into x['heatmaps2d_input'] ([.., H, W, J], sigma
      config.sigma, invalid joints all zero) for the decoupled model's network
      2 trained on motion capture. A motion-capture-only example needs only
      the projected joints (joints2d_px, joints3d_rel_mm, masks) and the
      intrinsics; its image may be absent (zeros are used; network 1 is then
      run in inference mode and receives no loss).

  Returns:
    x: {'image', 'intrinsics'} (+ 'heatmaps2d_input').
    y: joints_vox [.., J, 3] (x, y heatmap cells; z continuous bin index at
       D = config.num_depth_bins), valid_2d / valid_3d [.., J] (label present
       and inside the x-y grid / the x-y-z volume), valid_2d_only [.., J]
       (a 2D label inside the grid but no 3D label: has_3d = 0 or
       joint_valid_3d = 0), joints_norm [.., J, 3]
       (x, y crop px mapped to [-1, 1] by the crop edges, z_rel / depth range)
       and valid_norm [.., J, 3] (per-coordinate, not cropped to the volume)
       for coordinate regression.
  """
  s, h, d = config.input_size, config.heatmap_size, config.num_depth_bins
  r = float(config.depth_range_mm)
  joints2d = _get(features, 'joints2d_px')
  if 'joints3d_rel_mm' in features:
    joints3d = tf.cast(features['joints3d_rel_mm'], tf.float32)
  else:
    cam = _get(features, 'joints3d_cam_mm')
    joints3d = cam - cam[..., skel.ROOT:skel.ROOT + 1, :]
  valid2d = _get(features, 'joint_valid_2d')
  valid3d = _get(features, 'joint_valid_3d')
  if 'has_3d' in features:
    valid3d = valid3d * tf.cast(features['has_3d'], tf.float32)[..., None]
  # Joints with a 2D label and no 3D one (2D-only examples such as MPII's,
  # or joints a 3D dataset lacks): only the image plane is supervised.
  valid_2d_only = valid2d * (1. - valid3d)

  xy = crop_px_to_heatmap(joints2d, s, h)
  z = depth_mm_to_index(joints3d[..., 2], d, r)
  joints_vox = tf.concat([xy, z[..., None]], -1)
  lo, hi = -0.5, h - 0.5
  in_xy = tf.cast(tf.reduce_all((xy >= lo) & (xy <= hi), -1), tf.float32)
  in_z = tf.cast((z >= -0.5) & (z <= d - 0.5), tf.float32)
  valid_2d = valid2d * in_xy
  valid_3d = valid3d * in_xy * in_z

  joints_norm = tf.concat([(joints2d + 0.5) * (2. / s) - 1.,
                           joints3d[..., 2:] / r], -1)
  valid_norm = tf.stack([valid2d, valid2d, valid3d], -1)

  if 'image' in features:
    image = tf.cast(features['image'], tf.float32)
  elif mocap_heatmaps:
    batch_shape = tf.shape(joints2d)[:-2]
    image = tf.zeros(tf.concat([batch_shape, [s, s, 3]], 0), tf.float32)
  else:
    raise KeyError(f'c2f targets need feature \'image\'; got keys '
                   f'{sorted(features)}')
  x = {'image': image, 'intrinsics': _get(features, 'intrinsics')}
  if mocap_heatmaps:
    batched = joints2d.shape.rank == 3
    xy_b = xy if batched else xy[None]
    valid_b = valid_2d if batched else valid_2d[None]
    maps = heatmaps.render_heatmaps_2d(xy_b, h, h, config.sigma, valid_b)
    x['heatmaps2d_input'] = maps if batched else maps[0]
  y = {'joints_vox': joints_vox, 'valid_2d': valid_2d, 'valid_3d': valid_3d,
       'valid_2d_only': valid_2d_only * in_xy,
       'joints_norm': joints_norm, 'valid_norm': valid_norm}
  return x, y
