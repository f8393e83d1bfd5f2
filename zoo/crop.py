"""The perspective-correct person crop: the one crop geometry the training
pipeline (zoo.data.pipeline), prediction (zoo.inference) and the exporter's
serving graph use.

The crop (`perspective_crop`) is a virtual camera that shares the source
camera's optical centre, looks at the (shifted) person-box centre, is rolled by
the in-plane rotation and has a focal length such that `box_margin * longer box
side / zoom` source pixels fill the output. Pixels move by the homography
H = K_crop R K_src^-1, 3D points by R: the crop is an exact pinhole image of the
rotated camera, so `project(intrinsics, joints3d_cam_mm) == joints2d_px`.

Flip. A horizontal mirror of the crop is folded into the same transform:
H <- F H with F = [[-1, 0, S-1], [0, 1, 0], [0, 0, 1]] (pixels x -> S-1-x) and
R <- M R with M = diag(-1, 1, 1) (camera x -> -x). `rotation` is then a
reflection (det = -1), and the crop intrinsics are F K M, i.e. cx -> S-1-cx,
which leaves the centred crop camera unchanged. Hence for any 3D point X,
project(K_crop, M R X) == F H project(K_src, X): 2D and 3D stay consistent.
After mirroring, left and right joints swap names, so joints (and their masks)
are permuted with zoo.skeleton.FLIP_PERMUTATION. `crop_to_original` inverts all
of this (and un-swaps joints when det(rotation) < 0).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from zoo import geometry
from zoo import skeleton as skel

# NumPy, not a tf.constant: importing the module must not start the TF
# runtime (a multi-worker strategy has to be created first).
_FLIP_PERMUTATION = np.asarray(skel.FLIP_PERMUTATION, np.int32)


def _per_example(value, batch: tf.Tensor, dtype, tail=()) -> tf.Tensor:
  """Broadcasts a scalar / per-example argument to [B, *tail]."""
  shape = tf.concat([[batch], tf.constant(tail, tf.int32)], 0)
  return tf.broadcast_to(tf.cast(value, dtype), shape)


def crop_geometry(images, intrinsics, boxes_xywh, out_size, box_margin, zoom,
                  rotation_rad, shift_px, flip):
  """(crop intrinsics, rotation, homography) [B, 3, 3]; see perspective_crop."""
  intrinsics = tf.cast(intrinsics, tf.float32)
  boxes = tf.cast(boxes_xywh, tf.float32)
  batch = tf.shape(images)[0]
  zoom = _per_example(zoom, batch, tf.float32)
  rotation_rad = _per_example(rotation_rad, batch, tf.float32)
  shift_px = _per_example(shift_px, batch, tf.float32, (2,))
  flip = _per_example(flip, batch, tf.bool)
  # A degenerate box would give an infinite focal length.
  boxes = tf.concat([boxes[:, :2], tf.maximum(boxes[:, 2:], 1.)], -1)

  new_k, rotation, homography = geometry.crop_camera_tf(
      intrinsics, boxes, out_size, zoom / box_margin, rotation_rad, shift_px)

  s1 = float(out_size - 1)
  mirror_3d = tf.constant([[-1., 0., 0.], [0., 1., 0.], [0., 0., 1.]])
  mirror_px = tf.constant([[-1., 0., s1], [0., 1., 0.], [0., 0., 1.]])
  eye = tf.eye(3)
  m3 = tf.where(flip[:, None, None], mirror_3d, eye)
  mpx = tf.where(flip[:, None, None], mirror_px, eye)
  return mpx @ new_k @ m3, m3 @ rotation, mpx @ homography


def warp(images, homography, out_size: int, fill_value: float = 0.,
         source_ratio=None):
  """Bilinear warp by `homography` (source px -> output px).

  `source_ratio` (None, or a scalar / [B] integer tensor r): `images` are the
  source images reduced to 1/r of each side (a scaled JPEG decode,
  zoo.data.records.decode_image_reduced), where source pixel u sits at
  (u + 0.5) / r - 0.5; `homography` still maps full-resolution source px, so
  the crop and its geometry are those of the full image.

  Returns (float32 [B, S, S, 3] in the units of `images`, scale to [0, 1]):
  the caller multiplies by the scale, so it can fuse that with a colour gain.
  """
  # ImageProjectiveTransformV3 wants the output -> input map, 8 parameters,
  # normalised so that its [2, 2] entry is 1. Inverted in float64: H has
  # entries of very different magnitude.
  inverse = tf.linalg.inv(tf.cast(homography, tf.float64))
  if source_ratio is not None:  # then full-resolution px -> reduced px
    inv_r = 1. / tf.cast(source_ratio, tf.float64)
    inv_r = tf.broadcast_to(inv_r, tf.shape(inverse)[:1])
    offset = 0.5 * inv_r - 0.5
    zero, one = tf.zeros_like(inv_r), tf.ones_like(inv_r)
    reduce = tf.stack([tf.stack([inv_r, zero, offset], -1),
                       tf.stack([zero, inv_r, offset], -1),
                       tf.stack([zero, zero, one], -1)], -2)
    inverse = reduce @ inverse
  inverse = inverse / inverse[:, 2:3, 2:3]
  transforms = tf.cast(tf.reshape(inverse, [-1, 9])[:, :8], tf.float32)
  scale = 1. / 255. if images.dtype == tf.uint8 else 1.
  # float32 input warps faster than uint8 here (and keeps sub-level precision).
  pixels = tf.raw_ops.ImageProjectiveTransformV3(
      images=tf.cast(images, tf.float32), transforms=transforms,
      output_shape=tf.constant([out_size, out_size], tf.int32),
      fill_value=tf.cast(fill_value / scale, tf.float32),
      interpolation='BILINEAR', fill_mode='CONSTANT')
  return tf.ensure_shape(pixels, [None, out_size, out_size, 3]), scale


def perspective_crop(images, intrinsics, boxes_xywh, out_size: int,
                     box_margin: float = 1.2, zoom=1., rotation_rad=0.,
                     shift_px=(0., 0.), flip=False,
                     fill_value: float = 0.) -> dict[str, tf.Tensor]:
  """Perspective-correct square crops around person boxes, batched, in-graph.

  Args:
    images: uint8 (0..255) or float (assumed in [0, 1]) [B, H, W, 3]; H, W any
      and dynamic.
    intrinsics: [B, 3, 3] pinhole K of the images (px).
    boxes_xywh: [B, 4] person boxes x, y, w, h (px).
    out_size: S, the output side (px).
    box_margin: the crop spans box_margin * longer box side (at zoom 1).
    zoom: scalar or [B]; > 1 magnifies (the crop spans less of the image).
    rotation_rad: scalar or [B]; in-plane rotation, the image content turns
      counter-clockwise on screen for positive angles.
    shift_px: [2] or [B, 2]; moves the crop centre by this many source px.
    flip: bool scalar or [B]; mirror the crop horizontally (see the module doc).
    fill_value: value (in [0, 1]) of output pixels outside the source image.

  Returns:
    dict(image=float32 [B, S, S, 3] in [0, 1], intrinsics=[B, 3, 3] of the
    crop camera, rotation=[B, 3, 3] source camera -> crop camera (a reflection
    where flipped), homography=[B, 3, 3] source px -> crop px).
  """
  images = tf.convert_to_tensor(images)
  if images.shape.rank is not None and images.shape.rank != 4:
    raise ValueError(f'perspective_crop: images must be [B, H, W, 3], got '
                     f'shape {images.shape}')
  new_k, rotation, homography = crop_geometry(
      images, intrinsics, boxes_xywh, out_size, box_margin, zoom, rotation_rad,
      shift_px, flip)
  pixels, scale = warp(images, homography, out_size, fill_value)
  if scale != 1.:
    pixels = pixels * scale
  return {'image': pixels, 'intrinsics': new_k, 'rotation': rotation,
          'homography': homography}


def poses_to_original(poses: dict[str, tf.Tensor], homography, rotation
                      ) -> dict[str, tf.Tensor]:
  """crop_to_original of a decoded pose dict: poses2d_px (source px),
  poses3d_cam_mm (source camera frame) and poses3d_rel_mm (root-relative,
  turned with the camera too: the same 3D map), all float32."""
  poses2d_px, poses3d_cam_mm = crop_to_original(
      poses['poses2d_px'], poses['poses3d_cam_mm'], homography, rotation)
  _, poses3d_rel_mm = crop_to_original(
      poses['poses2d_px'], poses['poses3d_rel_mm'], homography, rotation)
  return {'poses2d_px': poses2d_px, 'poses3d_cam_mm': poses3d_cam_mm,
          'poses3d_rel_mm': poses3d_rel_mm}


def crop_to_original(poses2d_crop_px, poses3d_crop_cam_mm, homography,
                     rotation) -> tuple[tf.Tensor, tf.Tensor]:
  """Maps crop-frame poses back to the source image / camera.

  Args:
    poses2d_crop_px: [..., J, 2] in crop pixels.
    poses3d_crop_cam_mm: [..., J, 3] in the crop camera frame (mm).
    homography, rotation: [..., 3, 3] from `perspective_crop`.

  Returns:
    (poses2d_px [..., J, 2] in source pixels (inverse homography),
     poses3d_cam_mm [..., J, 3] in the source camera frame (rotation^T)).
    Where the crop was mirrored (det(rotation) < 0) the joints are also
    un-swapped left/right, so joint j of the output is the person's joint j.
  """
  homography = tf.cast(homography, tf.float32)
  rotation = tf.cast(rotation, tf.float32)
  poses2d = geometry.apply_homography_tf(tf.linalg.inv(homography),
                                         tf.cast(poses2d_crop_px, tf.float32))
  # rotation is orthogonal (a rotation, or a reflection where flipped).
  poses3d = tf.einsum('...ji,...nj->...ni', rotation,
                      tf.cast(poses3d_crop_cam_mm, tf.float32))
  flipped = tf.linalg.det(rotation) < 0
  if poses2d.shape[-2] == skel.NUM_JOINTS:
    poses2d = tf.where(flipped[..., None, None],
                       tf.gather(poses2d, _FLIP_PERMUTATION, axis=-2), poses2d)
    poses3d = tf.where(flipped[..., None, None],
                       tf.gather(poses3d, _FLIP_PERMUTATION, axis=-2), poses3d)
  return poses2d, poses3d
