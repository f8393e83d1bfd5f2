"""The one tf.data input pipeline every zoo model trains and evaluates on.

records -> parse -> validate -> per-example augmentation parameters (stateless
random, keyed by (seed, example index)) -> decode -> one perspective-correct
crop (warp), colour gain, hue / saturation jitter, channel permutation or
grey, synthetic occlusion -> batch -> the 2D and 3D joints
moved by the same virtual camera as the image (vectorised per batch) ->
`map_fn` (the model's `targets`) -> prefetch.

The crop (zoo.crop, `perspective_crop`) is a virtual camera that looks at
the (shifted) person-box centre, rolled by the in-plane rotation and mirrored
for the flip; the 2D and 3D joints move with it, so
`project(intrinsics, joints3d_cam_mm) == joints2d_px` holds after it. Where
mirrored, left and right joints swap names (zoo.skeleton.FLIP_PERMUTATION).

Per-batch features (before `map_fn`), exactly FEATURE_KEYS:
  image float32 [B, S, S, 3] RGB in [0, 1]; intrinsics [B, 3, 3] crop camera px;
  joints2d_px [B, J, 2] crop px; joints3d_cam_mm [B, J, 3] crop camera frame;
  joints3d_rel_mm [B, J, 3] root-relative; joint_valid_2d, joint_valid_3d,
  joint_in_crop [B, J]; has_3d [B]; dataset, subject, action, camera tf.string
  [B]; frame int64 [B]; source tf.string [B] (the mixture source's name, see
  zoo.data.mixture; without a mixture, the record's `dataset`).
Joint values where a mask is 0 are undefined (finite, but meaningless).

Bad input is never silently batched (zoo.data.record_checks says what is
checked per record, per record file and per split). `on_bad_record` picks
the policy: 'stop' (default) raises tf.errors.InvalidArgumentError naming
the check, the file and the record index; 'skip' drops the record (or the
rest of the file), logs it once and counts it in a `BadRecords` the caller
can read.

Mixtures. `data` may be a zoo.data.mixture.Mixture: each source is read
(and sharded, as below, on its own), shuffled and repeated, and examples are
drawn by weight (tf.data.Dataset.sample_from_datasets) before the one
augmentation; see zoo.data.mixture.

Multi-worker input. With `num_input_pipelines` > 1 (one per worker,
`input_pipeline_id` = this worker) the pipeline shards explicitly and logs
how: by FILE (worker i reads files i, i + n, ...) when there are at least as
many record files as pipelines, else by DATA (every worker reads every record
in the same order and keeps every n-th one; this needs the same `seed` on
every worker). tf.data's own auto-sharding is then turned off, so a
tf.distribute strategy does not shard a second time.
"""
from __future__ import annotations

import dataclasses
import os
import random
from typing import Callable

from absl import logging
import numpy as np
import tensorflow as tf

from zoo import crop as crop_lib
from zoo import geometry
from zoo import skeleton as skel
from zoo.config import AugmentConfig
from zoo.data import mixture as mixture_lib
from zoo.data import occlusion
from zoo.data import record_checks
from zoo.data import records

FEATURE_KEYS = ('image', 'intrinsics', 'joints2d_px', 'joints3d_cam_mm',
                'joints3d_rel_mm', 'joint_valid_2d', 'joint_valid_3d',
                'joint_in_crop', 'has_3d', 'dataset', 'subject', 'action',
                'camera', 'frame', 'source')

ON_BAD_RECORD = ('stop', 'skip')
SHARD_BY_FILE, SHARD_BY_DATA, NO_SHARDING = 'FILE', 'DATA', 'OFF'

# NumPy, not a tf.constant: importing the module must not start the TF
# runtime (a multi-worker strategy has to be created first).
_FLIP_PERMUTATION = np.asarray(skel.FLIP_PERMUTATION, np.int32)


# ----------------------------------------------------------------------------
# The crop: zoo.crop (re-exported, the pipeline's public names)
# ----------------------------------------------------------------------------

perspective_crop = crop_lib.perspective_crop
crop_to_original = crop_lib.crop_to_original
# What on_bad_record='skip' skipped (zoo.data.record_checks).
BadRecords = record_checks.BadRecords


# ----------------------------------------------------------------------------
# Sources, sharding, augmentation parameters
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


def input_sharding(num_files: int, num_input_pipelines: int) -> str:
  """How `num_input_pipelines` workers split `num_files` record files:
  SHARD_BY_FILE when every worker gets at least one file, SHARD_BY_DATA
  (by example) otherwise, NO_SHARDING for one pipeline."""
  if num_input_pipelines < 1:
    raise ValueError('num_input_pipelines must be >= 1, got '
                     f'{num_input_pipelines}')
  if num_input_pipelines == 1:
    return NO_SHARDING
  return SHARD_BY_FILE if num_files >= num_input_pipelines else SHARD_BY_DATA


# The six orderings of the RGB channels (the first is the identity).
_RGB_PERMUTATIONS = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1],
                     [2, 1, 0]]


def _augment_params(key: tf.Tensor, box_xywh: tf.Tensor, input_size: int,
                    augment: AugmentConfig, zoom: tf.Tensor | None = None
                    ) -> dict[str, tf.Tensor]:
  """Per-example crop / colour / occlusion parameters, stateless in `key`.

  `zoom`: `_crop_zoom(key, augment)` where the caller has it already.
  """
  if not augment.enabled:
    params = {'zoom': tf.constant(1.), 'rotation_rad': tf.constant(0.),
              'shift_px': tf.zeros([2]), 'flip': tf.constant(False),
              'gain': tf.ones([3])}
    return params
  seeds = tf.random.experimental.stateless_split(key, num=8)
  uniform = lambda i, shape=(), lo=0., hi=1.: tf.random.stateless_uniform(
      shape, seeds[i], minval=lo, maxval=hi)
  zoom = _crop_zoom(key, augment) if zoom is None else zoom
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
  if augment.color_permute_prob > 0 or augment.grayscale_prob > 0:
    # seeds[7] alone, so enabling these leaves every other draw unchanged.
    u = uniform(7, (3,))
    choice = tf.minimum(tf.cast(u[1] * 6, tf.int32), 5)
    permutation = tf.gather(tf.constant(_RGB_PERMUTATIONS), choice)
    params['channels'] = tf.where(u[0] < augment.color_permute_prob,
                                  permutation, tf.range(3))
    params['gray'] = u[2] < augment.grayscale_prob
  if augment.hue_delta > 0 or tuple(augment.saturation_range) != (1., 1.):
    # A seed folded out of seeds[7], so the draws above stay unchanged.
    hue_seed = tf.random.experimental.stateless_fold_in(seeds[7], 1)
    u = tf.random.stateless_uniform((2,), hue_seed)
    params['hue'] = (2. * u[0] - 1.) * augment.hue_delta
    lo, hi = augment.saturation_range
    params['saturation'] = lo + u[1] * (hi - lo)
  if augment.occlusion_prob > 0:
    occ = occlusion.sample_occluders(seeds[6], input_size,
                                     augment.occlusion_prob)
    params.update({'occ/' + k: v for k, v in occ.items()})
  return params


def _crop_zoom(key: tf.Tensor, augment: AugmentConfig) -> tf.Tensor:
  """The crop zoom `_augment_params` draws for `key` (known before decoding:
  it picks the decode scale)."""
  if not augment.enabled:
    return tf.constant(1.)
  seed = tf.random.experimental.stateless_split(key, num=8)[0]
  return tf.random.stateless_uniform((), seed, minval=augment.scale_range[0],
                                     maxval=augment.scale_range[1])


# The fast decode keeps at least this many decoded source pixels per crop
# pixel (per side), so the bilinear warp still downsamples.
MIN_SOURCE_PX_PER_CROP_PX = 2.


def _max_decode_ratio(input_size: int, box_margin: float, zoom: tf.Tensor):
  """For records.parse_and_decode_checked: the largest reduction of the
  stored image that leaves MIN_SOURCE_PX_PER_CROP_PX per crop pixel. The
  crop spans box_margin * longer box side / zoom source px (zoo.crop)."""
  def fn(parsed):
    box = parsed['box_xywh']
    side = tf.maximum(box[2], box[3])  # NaN / <= 0: no reduction
    source_px_per_crop_px = side * box_margin / (input_size * zoom)
    return source_px_per_crop_px / MIN_SOURCE_PX_PER_CROP_PX
  return fn


# ----------------------------------------------------------------------------
# Per-example and per-batch stages
# ----------------------------------------------------------------------------

# Record fields that travel to the batch stage unchanged.
_KEEP = ('joints2d_px', 'joints3d_cam_mm', 'joint_valid_2d', 'joint_valid_3d',
         'has_3d', 'dataset', 'subject', 'action', 'camera', 'frame')


def _example_stage(seed: int, input_size: int, augment: AugmentConfig,
                   stop: bool = True, fast_decode: bool = False):
  """Parse, validate, decode, draw parameters, crop: one example.

  The warp runs per example, right after decoding: measured cheaper than one
  warp per batch (the decoded image is still in cache, and no padded batch of
  source images is built). With `fast_decode`, a JPEG whose crop spans many
  source pixels per crop pixel decodes at 1/2, 1/4 or 1/8 scale
  (`_max_decode_ratio`); the warp maps the same full-resolution geometry
  into it, so labels are unchanged. Without `stop` the output also holds
  'bad/ok', 'bad/reason', 'bad/path' and 'bad/index' for the skip filter.
  """

  def fn(index, source):
    path, record_index, serialized = source
    key = tf.stack([tf.constant(seed, tf.int64), index])
    zoom = _crop_zoom(key, augment)
    max_decode_ratio = _max_decode_ratio(
        input_size, augment.box_margin, zoom) if fast_decode else None
    parsed, image, ratio, ok, reason = record_checks.validated_record(
        path, record_index, serialized, stop, max_decode_ratio)
    params = _augment_params(key, parsed['box_xywh'], input_size, augment,
                             zoom)
    image = image[None]
    intrinsics, rotation, homography = crop_lib.crop_geometry(
        image, parsed['intrinsics'][None], parsed['box_xywh'][None],
        input_size, augment.box_margin, params['zoom'], params['rotation_rad'],
        params['shift_px'], params['flip'])
    pixels, scale = crop_lib.warp(image, homography, input_size,
                                  source_ratio=ratio if fast_decode else None)
    # The [0, 1] scaling is fused into the colour gain.
    image = pixels * (params['gain'] * scale)
    if augment.enabled and augment.color_gain[1] > 1:
      image = tf.clip_by_value(image, 0., 1.)
    if 'hue' in params:
      image = tf.image.adjust_saturation(
          tf.image.adjust_hue(image, params['hue']), params['saturation'])
    if 'channels' in params:
      image = tf.gather(image, params['channels'], axis=-1)
      image = tf.where(params['gray'],
                       tf.reduce_mean(image, -1, keepdims=True), image)
    image = image[0]
    occ = {k[len('occ/'):]: v for k, v in params.items()
           if k.startswith('occ/')}
    if occ:
      image = occlusion.render_on_image(image, occ)
    out = {k: parsed[k] for k in _KEEP}
    out.update({'image': image, 'crop/intrinsics': intrinsics[0],
                'crop/rotation': rotation[0],
                'crop/homography': homography[0], 'crop/flip': params['flip']})
    if not stop:
      out.update({'bad/ok': ok, 'bad/reason': reason, 'bad/path': path,
                  'bad/index': record_index})
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
    for key in ('dataset', 'subject', 'action', 'camera', 'frame', 'source'):
      features[key] = batch[key]
    return features
  return fn


def _with_source(stage):
  """The example stage plus the `source` feature: the mixture source's
  name (4th record element), else the record's `dataset`."""
  def fn(index, item):
    out = stage(index, tuple(item[:3]))
    out['source'] = item[3] if len(item) > 3 else out['dataset']
    return out
  return fn


def _source_records(source, split: str, shuffle_files: bool, seed: int,
                    deterministic: bool, bad_records: BadRecords | None,
                    num_input_pipelines: int, input_pipeline_id: int
                    ) -> tf.data.Dataset:
  """One mixture source's records, sharded for this input pipeline."""
  try:
    files = records.list_shards(source.path, split)
  except FileNotFoundError as e:
    raise mixture_lib.MixtureError(f'data source {source.name!r}: {e}') \
        from None
  sharding = input_sharding(len(files), num_input_pipelines)
  if sharding == SHARD_BY_FILE:
    files = files[input_pipeline_id::num_input_pipelines]
  if sharding != NO_SHARDING:
    logging.info('pipeline (%s): source %s: input pipeline %d of %d shards '
                 'by %s (%d record files).', split, source.name,
                 input_pipeline_id, num_input_pipelines, sharding,
                 len(files))
  ds = record_checks.intact_records(
      files, shuffle_files, seed, deterministic or sharding == SHARD_BY_DATA,
      bad_records)
  if sharding == SHARD_BY_DATA:
    ds = ds.shard(num_input_pipelines, input_pipeline_id)
  return ds


def make_dataset(data, split: str, *, input_size: int, batch_size: int,
                 training: bool, augment: AugmentConfig | None = None,
                 map_fn: Callable | None = None, shuffle_buffer: int = 2048,
                 seed: int | None = None, deterministic: bool = False,
                 repeat: bool | None = None,
                 drop_remainder: bool | None = None, take: int | None = None,
                 num_parallel_calls=tf.data.AUTOTUNE,
                 on_bad_record: str = 'stop',
                 bad_records: BadRecords | None = None,
                 num_input_pipelines: int = 1,
                 input_pipeline_id: int = 0,
                 fast_decode: bool = False) -> tf.data.Dataset:
  """Batched, cropped, augmented features of a zoo TFRecord dataset.

  Args:
    data: a directory with `{split}-*.tfrecord` shards, a record file, a list
      of record files, or a zoo.data.mixture.Mixture of such directories.
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
    on_bad_record: 'stop' raises InvalidArgumentError at a bad record or a
      corrupt / truncated record file, naming check, file and record; 'skip'
      drops it, logs it once and counts it in `bad_records` (see the module
      docstring for what is checked).
    bad_records: where 'skip' counts what it skipped (read it during or after
      the run); None: a new one, so skips are only logged.
    num_input_pipelines, input_pipeline_id: shard the input over this many
      workers (tf.distribute.InputContext's fields); this pipeline is number
      `input_pipeline_id`. By file when there are at least as many files as
      pipelines, else by example (then `seed` is required and must be the
      same on every worker). The choice is logged.
    fast_decode: decode a JPEG at 1/2, 1/4 or 1/8 scale (libjpeg's DCT
      scaling) where the crop still gets at least MIN_SOURCE_PX_PER_CROP_PX
      decoded pixels per crop pixel; labels are the same either way (the
      warp maps the full-resolution geometry into the reduced image). False
      (default): every image decodes at full resolution. It pays for large
      stored images; on the embedded 320 px data it does not (BENCHMARKS.md,
      the input pipeline of issue 16).

  Returns:
    tf.data.Dataset of `map_fn(features)` (or the features dict).
  """
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}')
  if input_size < 2:
    raise ValueError(f'input_size must be >= 2, got {input_size}')
  repeat = training if repeat is None else repeat
  drop_remainder = training if drop_remainder is None else drop_remainder
  if augment is None:
    augment = AugmentConfig(enabled=False)
  elif not training:  # evaluation crops keep the caller's box margin
    augment = dataclasses.replace(augment, enabled=False)

  if on_bad_record not in ON_BAD_RECORD:
    raise ValueError(f'unknown on_bad_record {on_bad_record!r}; valid choices '
                     f'are {", ".join(ON_BAD_RECORD)}')
  stop = on_bad_record == 'stop'
  if not stop and bad_records is None:
    bad_records = BadRecords()
  mixture = data if isinstance(data, mixture_lib.Mixture) else None
  files = [] if mixture else _resolve_files(data, split)
  sharding = NO_SHARDING if mixture else input_sharding(len(files),
                                                        num_input_pipelines)
  if not 0 <= input_pipeline_id < num_input_pipelines:
    raise ValueError(f'input_pipeline_id must be in [0, {num_input_pipelines}'
                     f'), got {input_pipeline_id}')
  if sharding == SHARD_BY_DATA and seed is None:
    raise ValueError(
        f'make_dataset: {len(files)} record file(s) for {num_input_pipelines} '
        'input pipelines shards by example, which needs the same record order '
        'on every worker: pass the same seed= on every worker')
  if mixture and seed is None and num_input_pipelines > 1:
    raise ValueError('make_dataset: a mixture read by several input '
                     'pipelines needs the same seed= on every worker')
  if seed is None:
    seed = 0 if deterministic else random.SystemRandom().randrange(2 ** 31)
  if sharding == SHARD_BY_FILE:
    all_files, files = files, files[input_pipeline_id::num_input_pipelines]
    logging.info('pipeline (%s): input pipeline %d of %d shards by FILE: it '
                 'reads %d of the %d record files.', split, input_pipeline_id,
                 num_input_pipelines, len(files), len(all_files))
  elif sharding == SHARD_BY_DATA:
    logging.info('pipeline (%s): input pipeline %d of %d shards by DATA: %d '
                 'record file(s) are fewer than the pipelines, so every '
                 'pipeline reads all records and keeps every %d-th example '
                 '(offset %d).', split, input_pipeline_id, num_input_pipelines,
                 len(files), num_input_pipelines, input_pipeline_id)
  # The zoo's own stages are written for graph mode (tf.cond, tf.where), so
  # they skip autograph's source conversion, which costs seconds of
  # start-up per process; `map_fn` (the caller's) is converted as usual.
  @tf.autograph.experimental.do_not_convert
  def feature_batches() -> tf.data.Dataset:
    # With `take`, the file order stays fixed so the subset is the same each
    # epoch. Sharding by example needs the same record order on every worker.
    if mixture:
      ds = mixture_lib.sampled_records(
          mixture, split, training=training, repeat=repeat,
          shuffle_buffer=shuffle_buffer, seed=seed, deterministic=deterministic,
          num_input_pipelines=num_input_pipelines,
          input_pipeline_id=input_pipeline_id,
          read_source=lambda source, files_seed: _source_records(
              source, split, training and take is None, files_seed,
              deterministic, None if stop else bad_records,
              num_input_pipelines, input_pipeline_id))
    else:
      ds = record_checks.intact_records(
          files, training and take is None, seed,
          deterministic or sharding == SHARD_BY_DATA,
          None if stop else bad_records)
    if sharding == SHARD_BY_DATA:
      ds = ds.shard(num_input_pipelines, input_pipeline_id)
    if sharding == NO_SHARDING:
      ds = record_checks.check_split_count(ds, data, split,
                                           None if stop else bad_records)
    if take is not None:
      ds = ds.take(take)
    if training and not mixture:  # a mixture shuffles and repeats per source
      ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat and not mixture:
      ds = ds.repeat()
    # The example index keys the augmentation randomness; interleaved over the
    # input pipelines, so workers draw different augmentations.
    ds = ds.enumerate()
    if num_input_pipelines > 1:
      ds = ds.map(lambda index, item: (
          index * num_input_pipelines + input_pipeline_id, item))
    ds = ds.map(_with_source(_example_stage(seed, input_size, augment, stop,
                                            fast_decode)),
                num_parallel_calls=num_parallel_calls)
    if not stop:
      ds = record_checks.drop_bad(ds, bad_records)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(_batch_stage(input_size),
                num_parallel_calls=num_parallel_calls)
    return ds

  ds = feature_batches()
  if map_fn is not None:
    ds = ds.map(map_fn, num_parallel_calls=num_parallel_calls)
  ds = ds.prefetch(tf.data.AUTOTUNE)
  options = tf.data.Options()
  options.deterministic = bool(deterministic or not training)
  if num_input_pipelines > 1:  # sharded here: a strategy must not shard again
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF)
  return ds.with_options(options)
