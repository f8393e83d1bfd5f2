"""Decoding volumes (or regressed coordinates) into the zoo's output poses.

volume [B, H, W, D, J] -> peak voxel (argmax, the paper; or soft-argmax) ->
crop pixels (x, y) and root-relative metric depth from bin centres ->
camera-space pose: root depth from limb lengths
(zoo.geometry.recover_root_depth_tf, H36M mean bones by default), joints
back-projected through the crop intrinsics at root_depth + z_rel
(zoo.geometry.absolute_pose_tf). poses3d_rel_mm is that pose made
root-relative, so its x-y are metric too (the volume's x-y are pixels).
"""
from __future__ import annotations

import tensorflow as tf

from zoo import geometry
from zoo import heatmaps
from zoo import skeleton as skel
from zoo.c2f_volumetric import targets as targets_lib
from zoo.c2f_volumetric.config import C2FConfig


def peak_voxels(volume, config: C2FConfig) -> tuple[tf.Tensor, tf.Tensor]:
  """(coords [B, J, 3] (x, y, z) voxels, peak value [B, J]) of a volume.

  Soft-argmax decodes with the softmax the volumes were trained for:
  - with the auxiliary integral loss (config.integral_loss_weight > 0), the
    loss's own softmax(integral_beta * V). Any other temperature reads a
    different expectation than the one the loss fitted (on the cpu preset a
    peak-normalised beta of 50 gave 247 mm where the trained one gave 209).
  - with the MSE alone, each joint's volume normalised by its maximum, at
    temperature 1 / soft_argmax_beta: volumes trained towards Gaussians of
    peak 1 are not logits, so a plain softmax of them would be nearly
    uniform and pulled to the centre.
  """
  volume = tf.cast(volume, tf.float32)
  coords, peak = heatmaps.argmax_3d(volume)
  if config.decoding == 'soft_argmax':
    if config.integral_loss_weight:
      coords = heatmaps.soft_argmax_3d(config.integral_beta * volume)
    else:
      scale = config.soft_argmax_beta / tf.maximum(peak, 1e-6)
      coords = heatmaps.soft_argmax_3d(volume * scale[:, None, None, None, :])
  return coords, peak


def poses_from_joints(joints2d_px, z_rel_mm, intrinsics, config: C2FConfig,
                      confidence, root_depth_mm=None) -> dict[str, tf.Tensor]:
  """2D crop px [B, J, 2] + root-relative depth [B, J] -> OUTPUT_KEYS dict."""
  joints2d_px = tf.cast(joints2d_px, tf.float32)
  intrinsics = tf.cast(intrinsics, tf.float32)
  z_rel_mm = tf.cast(z_rel_mm, tf.float32)
  z_rel_mm = z_rel_mm - z_rel_mm[:, skel.ROOT:skel.ROOT + 1]
  rel_z_only = tf.concat([tf.zeros_like(joints2d_px), z_rel_mm[..., None]], -1)
  if root_depth_mm is None:
    if config.bone_lengths_mm is None:
      bones = skel.mean_bone_lengths_mm()
    else:
      bones = tf.constant(config.bone_lengths_mm, tf.float32)
    root_depth_mm = geometry.recover_root_depth_tf(
        joints2d_px, rel_z_only, intrinsics, bones)
  cam = geometry.absolute_pose_tf(joints2d_px, rel_z_only, intrinsics,
                                  tf.cast(root_depth_mm, tf.float32))
  return {
      'poses3d_rel_mm': geometry.root_relative_tf(cam),
      'poses3d_cam_mm': cam,
      'poses2d_px': joints2d_px,
      'confidence': tf.clip_by_value(tf.cast(confidence, tf.float32), 0., 1.),
  }


def _root_depth(inputs, config: C2FConfig):
  if config.root_depth_source == 'input':
    if 'root_depth_mm' not in inputs:
      raise KeyError("root_depth_source='input' needs inputs['root_depth_mm'] "
                     f'[B]; got keys {sorted(inputs)}')
    return inputs['root_depth_mm']
  return None


def decode_voxels(coords, peak, depth: int, inputs: dict[str, tf.Tensor],
                  config: C2FConfig) -> dict[str, tf.Tensor]:
  """Voxel coordinates [B, J, 3] of a volume with `depth` bins -> poses."""
  joints2d_px = targets_lib.heatmap_to_crop_px(
      coords[..., :2], config.input_size, config.heatmap_size)
  z_mm = targets_lib.depth_index_to_mm(coords[..., 2], depth,
                                       config.depth_range_mm)
  return poses_from_joints(joints2d_px, z_mm, inputs['intrinsics'], config,
                           peak, _root_depth(inputs, config))


def _static_depth(volume) -> int:
  d = volume.shape[3]
  if d is None:
    raise ValueError(f'volume depth must be static, got shape {volume.shape}')
  return int(d)


def decode_volume(volume, inputs: dict[str, tf.Tensor],
                  config: C2FConfig) -> dict[str, tf.Tensor]:
  """Final volume [B, H, W, D, J] + inputs (intrinsics) -> OUTPUT_KEYS dict."""
  coords, peak = peak_voxels(volume, config)
  return decode_voxels(coords, peak, _static_depth(volume), inputs, config)


def decode_flip_pair(volume, mirrored, inputs: dict[str, tf.Tensor],
                     config: C2FConfig) -> dict[str, tf.Tensor]:
  """Heatmap-level flip test: the crop's volume and its mirror's volume
  (already mapped back by `flip_volume`) -> one pose.

  The two are averaged in the space the decoding reads:
  - argmax (the paper): the volumes themselves, as the paper does.
  - soft-argmax: the two probability volumes (the softmaxes that decoding
    takes). The soft-argmax is their expectation, linear in them, so that
    is the mean of the two soft-argmax coordinates. Averaging the logits
    instead scores the product of the two distributions, which the loss
    never fitted: on the c2f cpu preset it gave 135.8 mm (no flip 135.3)
    where this gives 129.4 (BENCHMARKS.md).
  Confidence is the mean of the two peak values.
  """
  depth = _static_depth(volume)
  if config.decoding == 'argmax':
    return decode_volume(0.5 * (volume + mirrored), inputs, config)
  coords, peak = peak_voxels(volume, config)
  coords_m, peak_m = peak_voxels(mirrored, config)
  return decode_voxels(0.5 * (coords + coords_m), 0.5 * (peak + peak_m),
                       depth, inputs, config)


def decode_coordinates(coords_norm, inputs: dict[str, tf.Tensor],
                       config: C2FConfig) -> dict[str, tf.Tensor]:
  """Regressed [B, J, 3] (x, y in [-1, 1] over the crop, z / range) -> poses.

  Regression has no confidence; it is 1 for every joint.
  """
  coords_norm = tf.cast(coords_norm, tf.float32)
  s = config.input_size
  joints2d_px = (coords_norm[..., :2] + 1.) * (s / 2.) - 0.5
  z_mm = coords_norm[..., 2] * config.depth_range_mm
  return poses_from_joints(joints2d_px, z_mm, inputs['intrinsics'], config,
                           tf.ones_like(z_mm), _root_depth(inputs, config))


def flip_volume(volume):
  """Mirrors [B, H, W, D, J] volumes horizontally and swaps left/right joints.

  A crop mirrored by u -> S - 1 - u maps heatmap cell x to W - 1 - x exactly
  (cells are centred at (i + 0.5) * S / W - 0.5), and depth is unchanged.
  """
  return tf.gather(volume[:, :, ::-1], skel.FLIP_PERMUTATION, axis=-1)
