"""The one tf.data input pipeline every zoo model trains and evaluates on.

records -> parse -> validate -> per-example augmentation parameters (stateless
random, keyed by (seed, example index)) -> decode -> one perspective-correct
crop (warp), colour gain, synthetic occlusion -> batch -> the 2D and 3D joints
moved by the same virtual camera as the image (vectorised per batch) ->
`map_fn` (the model's `targets`) -> prefetch.

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

Per-batch features (before `map_fn`), exactly FEATURE_KEYS:
  image float32 [B, S, S, 3] RGB in [0, 1]; intrinsics [B, 3, 3] crop camera px;
  joints2d_px [B, J, 2] crop px; joints3d_cam_mm [B, J, 3] crop camera frame;
  joints3d_rel_mm [B, J, 3] root-relative; joint_valid_2d, joint_valid_3d,
  joint_in_crop [B, J]; has_3d [B]; dataset, subject, action, camera tf.string
  [B]; frame int64 [B].
Joint values where a mask is 0 are undefined (finite, but meaningless).

Bad input is never silently batched: non-finite joints / intrinsics / box, a
non-positive box or focal length and image bytes that are not an image raise
tf.errors.InvalidArgumentError naming the field, the file and the record index.
`_problems` lists the checks in one place, so a skip-instead-of-stop policy is a
filter on the same predicates.
"""
from __future__ import annotations

import dataclasses
import os
import random
from typing import Callable

import numpy as np
import tensorflow as tf

from zoo import geometry
from zoo import skeleton as skel
from zoo.config import AugmentConfig
from zoo.data import occlusion
from zoo.data import records

FEATURE_KEYS = ('image', 'intrinsics', 'joints2d_px', 'joints3d_cam_mm',
                'joints3d_rel_mm', 'joint_valid_2d', 'joint_valid_3d',
                'joint_in_crop', 'has_3d', 'dataset', 'subject', 'action',
                'camera', 'frame')

_FLIP_PERMUTATION = tf.constant(skel.FLIP_PERMUTATION, tf.int32)
# Leading bytes of the image formats records.decode_image accepts.
_IMAGE_MAGIC = (b'\xff\xd8\xff', b'\x89PNG', b'GIF8', b'BM')
# Fields that must be finite in every record (masks do not excuse NaN: writers
# store zeros for missing labels).
_FINITE_FIELDS = ('joints2d_px', 'joints3d_cam_mm', 'intrinsics', 'box_xywh',
                  'joint_valid_2d', 'joint_valid_3d', 'has_3d')


# ----------------------------------------------------------------------------
# The crop (also used by the exporter's serving graph)
# ----------------------------------------------------------------------------

def _per_example(value, batch: tf.Tensor, dtype, tail=()) -> tf.Tensor:
  """Broadcasts a scalar / per-example argument to [B, *tail]."""
  shape = tf.concat([[batch], tf.constant(tail, tf.int32)], 0)
  return tf.broadcast_to(tf.cast(value, dtype), shape)


def _crop_geometry(images, intrinsics, boxes_xywh, out_size, box_margin, zoom,
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


def _warp(images, homography, out_size: int, fill_value: float = 0.):
  """Bilinear warp by `homography` (source px -> output px).

  Returns (float32 [B, S, S, 3] in the units of `images`, scale to [0, 1]):
  the caller multiplies by the scale, so it can fuse that with a colour gain.
  """
  # ImageProjectiveTransformV3 wants the output -> input map, 8 parameters,
  # normalised so that its [2, 2] entry is 1. Inverted in float64: H has
  # entries of very different magnitude.
  inverse = tf.linalg.inv(tf.cast(homography, tf.float64))
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
    flip: bool scalar or [B]; mirror the crop horizontally (see module doc).
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
  new_k, rotation, homography = _crop_geometry(
      images, intrinsics, boxes_xywh, out_size, box_margin, zoom, rotation_rad,
      shift_px, flip)
  pixels, scale = _warp(images, homography, out_size, fill_value)
  if scale != 1.:
    pixels = pixels * scale
  return {'image': pixels, 'intrinsics': new_k, 'rotation': rotation,
          'homography': homography}


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


# ----------------------------------------------------------------------------
# Sources, validation, parameters
# ----------------------------------------------------------------------------

def _resolve_files(data, split: str) -> list[str]:
  if isinstance(data, (str, os.PathLike)):
    data = os.fspath(data)
    if tf.io.gfile.isdir(data):
      return records.list_shards(data, split)
    files = [data]
  else:
    files = [os.fspath(f) for f in data]
  if not files:
    raise ValueError('make_dataset: empty list of record files')
  missing = [f for f in files if not tf.io.gfile.exists(f)]
  if missing:
    raise FileNotFoundError(f'make_dataset: record files not found: {missing}')
  return files


def _records(files: list[str], shuffle_files: bool, seed: int,
             deterministic: bool) -> tf.data.Dataset:
  """(path, index within file, serialized example) triples."""
  paths = tf.data.Dataset.from_tensor_slices(files)
  if shuffle_files and len(files) > 1:
    paths = paths.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)

  def read(path):
    return tf.data.TFRecordDataset(path).enumerate().map(
        lambda index, serialized: (path, index, serialized))

  if len(files) == 1:
    return read(tf.constant(files[0]))
  return paths.interleave(read, cycle_length=min(len(files), 16),
                          block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=deterministic or None)


def _problems(example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
  """check name -> bool scalar (True = fine). One place for every check."""
  checks = {}
  for name in _FINITE_FIELDS:
    checks[f'field {name!r} must be finite (no NaN/Inf)'] = tf.reduce_all(
        tf.math.is_finite(example[name]))
  checks["field 'box_xywh' must have width > 0 and height > 0"] = (
      tf.reduce_all(example['box_xywh'][2:] > 0))
  checks["field 'intrinsics' must have fx > 0 and fy > 0"] = tf.logical_and(
      example['intrinsics'][0, 0] > 0, example['intrinsics'][1, 1] > 0)
  head = tf.strings.substr(example['image/encoded'], 0, 4)
  is_image = tf.constant(False)
  for magic in _IMAGE_MAGIC:
    is_image = tf.logical_or(is_image, tf.strings.substr(
        head, 0, len(magic)) == magic)
  checks["field 'image/encoded' must hold JPEG/PNG/GIF/BMP bytes"] = is_image
  return checks


def _assert_valid(example: dict[str, tf.Tensor], path: tf.Tensor,
                  index: tf.Tensor) -> dict[str, tf.Tensor]:
  """Raises InvalidArgumentError naming the check, file and record."""
  deps = [tf.debugging.Assert(ok, [f'pipeline: {message}; bad record in',
                                   path, 'at index', index], summarize=8)
          for message, ok in _problems(example).items()]
  with tf.control_dependencies(deps):
    return {k: tf.identity(v) for k, v in example.items()}


def _augment_params(key: tf.Tensor, box_xywh: tf.Tensor, input_size: int,
                    augment: AugmentConfig) -> dict[str, tf.Tensor]:
  """Per-example crop / colour / occlusion parameters, stateless in `key`."""
  if not augment.enabled:
    params = {'zoom': tf.constant(1.), 'rotation_rad': tf.constant(0.),
              'shift_px': tf.zeros([2]), 'flip': tf.constant(False),
              'gain': tf.ones([3])}
    return params
  seeds = tf.random.experimental.stateless_split(key, num=8)
  uniform = lambda i, shape=(), lo=0., hi=1.: tf.random.stateless_uniform(
      shape, seeds[i], minval=lo, maxval=hi)
  zoom = uniform(0, (), *augment.scale_range)
  sigma = np.deg2rad(augment.rotation_deg)
  angle = tf.clip_by_value(
      tf.random.stateless_normal((), seeds[1], stddev=sigma),
      -2 * sigma, 2 * sigma)
  angle = tf.where(uniform(2) < augment.rotation_prob, angle, 0.)
  flip = tf.logical_and(tf.constant(bool(augment.flip)), uniform(3) < 0.5)
  side = tf.maximum(box_xywh[2], box_xywh[3])
  shift = uniform(4, (2,), -1., 1.) * augment.shift_fraction * side
  gain = uniform(5, (3,), *augment.color_gain)
  params = {'zoom': zoom, 'rotation_rad': angle, 'shift_px': shift,
            'flip': flip, 'gain': gain}
  if augment.occlusion_prob > 0:
    occ = occlusion.sample_occluders(seeds[6], input_size,
                                     augment.occlusion_prob)
    params.update({'occ/' + k: v for k, v in occ.items()})
  return params


# ----------------------------------------------------------------------------
# Per-example and per-batch stages
# ----------------------------------------------------------------------------

# Record fields that travel to the batch stage unchanged.
_KEEP = ('joints2d_px', 'joints3d_cam_mm', 'joint_valid_2d', 'joint_valid_3d',
         'has_3d', 'dataset', 'subject', 'action', 'camera', 'frame')


def _example_stage(seed: int, input_size: int, augment: AugmentConfig):
  """Parse, validate, decode, draw parameters, crop: one example.

  The warp runs per example, right after decoding: measured cheaper than one
  warp per batch (the decoded image is still in cache, and no padded batch of
  source images is built).
  """

  def fn(index, source):
    path, record_index, serialized = source
    parsed = records.parse_example(serialized)
    parsed = _assert_valid(parsed, path, record_index)
    key = tf.stack([tf.constant(seed, tf.int64), index])
    params = _augment_params(key, parsed['box_xywh'], input_size, augment)
    image = records.decode_image(parsed['image/encoded'])[None]
    intrinsics, rotation, homography = _crop_geometry(
        image, parsed['intrinsics'][None], parsed['box_xywh'][None],
        input_size, augment.box_margin, params['zoom'], params['rotation_rad'],
        params['shift_px'], params['flip'])
    pixels, scale = _warp(image, homography, input_size)
    # The [0, 1] scaling is fused into the colour gain.
    image = pixels * (params['gain'] * scale)
    if augment.enabled and augment.color_gain[1] > 1:
      image = tf.clip_by_value(image, 0., 1.)
    image = image[0]
    occ = {k[len('occ/'):]: v for k, v in params.items()
           if k.startswith('occ/')}
    if occ:
      image = occlusion.render_on_image(image, occ)
    out = {k: parsed[k] for k in _KEEP}
    out.update({'image': image, 'crop/intrinsics': intrinsics[0],
                'crop/rotation': rotation[0],
                'crop/homography': homography[0], 'crop/flip': params['flip']})
    return out
  return fn


def _batch_stage(input_size: int):
  """Moves the labels into the crops, batched."""
  def fn(batch):
    flip = batch['crop/flip']

    def swap(x):  # [B, J, ...] left/right swap where flipped
      flip_b = tf.reshape(flip, [-1] + [1] * (x.shape.rank - 1))
      return tf.where(flip_b, tf.gather(x, _FLIP_PERMUTATION, axis=1), x)

    joints2d = swap(geometry.apply_homography_tf(batch['crop/homography'],
                                                 batch['joints2d_px']))
    joints3d = swap(tf.einsum('bij,bnj->bni', batch['crop/rotation'],
                              batch['joints3d_cam_mm']))
    valid_2d = swap(batch['joint_valid_2d'])
    valid_3d = swap(batch['joint_valid_3d'])
    lo, hi = -0.5, input_size - 0.5  # the pixel area of the crop
    inside = tf.reduce_all((joints2d >= lo) & (joints2d <= hi), -1)
    features = {
        'image': batch['image'],
        'intrinsics': batch['crop/intrinsics'],
        'joints2d_px': joints2d,
        'joints3d_cam_mm': joints3d,
        'joints3d_rel_mm': geometry.root_relative_tf(joints3d, skel.ROOT),
        'joint_valid_2d': valid_2d,
        'joint_valid_3d': valid_3d,
        'joint_in_crop': valid_2d * tf.cast(inside, tf.float32),
        'has_3d': batch['has_3d'],
    }
    for key in ('dataset', 'subject', 'action', 'camera', 'frame'):
      features[key] = batch[key]
    return features
  return fn


def make_dataset(data, split: str, *, input_size: int, batch_size: int,
                 training: bool, augment: AugmentConfig | None = None,
                 map_fn: Callable | None = None, shuffle_buffer: int = 2048,
                 seed: int | None = None, deterministic: bool = False,
                 repeat: bool | None = None,
                 drop_remainder: bool | None = None, take: int | None = None,
                 num_parallel_calls=tf.data.AUTOTUNE) -> tf.data.Dataset:
  """Batched, cropped, augmented features of a zoo TFRecord dataset.

  Args:
    data: a directory with `{split}-*.tfrecord` shards, a record file or a list
      of record files.
    split: 'train' / 'test' (selects shards when `data` is a directory).
    input_size: crop side S (px).
    batch_size: examples per batch.
    training: shuffles; and augments when `augment.enabled`.
    augment: crop and augmentation settings; None means no augmentation and
      the default box margin.
    map_fn: applied to each batch of features (FEATURE_KEYS), e.g. a model's
      `targets(features) -> (x, y)`.
    shuffle_buffer: examples in the shuffle buffer (training only).
    seed: seeds shuffling and augmentation (stateless, per example index);
      None draws one at random (0 when deterministic).
    deterministic: same batches on every run for the same seed (sets
      tf.data's deterministic option; slower).
    repeat, drop_remainder: default to `training`.
    take: keep only the first `take` examples (before shuffling/batching).
    num_parallel_calls: parallelism of the per-example and per-batch maps.

  Returns:
    tf.data.Dataset of `map_fn(features)` (or the features dict).
  """
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}')
  if input_size < 2:
    raise ValueError(f'input_size must be >= 2, got {input_size}')
  repeat = training if repeat is None else repeat
  drop_remainder = training if drop_remainder is None else drop_remainder
  if seed is None:
    seed = 0 if deterministic else random.SystemRandom().randrange(2 ** 31)
  if augment is None:
    augment = AugmentConfig(enabled=False)
  elif not training:  # evaluation crops keep the caller's box margin
    augment = dataclasses.replace(augment, enabled=False)

  files = _resolve_files(data, split)
  # With `take`, the file order stays fixed so the subset is the same each
  # epoch.
  ds = _records(files, training and take is None, seed, deterministic)
  if take is not None:
    ds = ds.take(take)
  if training:
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  if repeat:
    ds = ds.repeat()
  ds = ds.enumerate()  # the example index keys the augmentation randomness
  ds = ds.map(_example_stage(seed, input_size, augment),
              num_parallel_calls=num_parallel_calls)
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  ds = ds.map(_batch_stage(input_size),
              num_parallel_calls=num_parallel_calls)
  if map_fn is not None:
    ds = ds.map(map_fn, num_parallel_calls=num_parallel_calls)
  ds = ds.prefetch(tf.data.AUTOTUNE)
  options = tf.data.Options()
  options.deterministic = bool(deterministic or not training)
  return ds.with_options(options)
