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

Bad input is never silently batched. Checked per record (`_problems`, one
place for every check): every field has the schema's number of values,
joints / intrinsics / box are finite, box and focal length are positive, the
image bytes are a complete JPEG/PNG/GIF/BMP (start and end markers) whose
decoded size matches `image/height` / `image/width`. Checked per record file:
the intact records span the whole file (TFRecordDataset raises a DataLossError
that does not name the file at a corrupt or truncated record; the pipeline
reads each file up to that record and compares the bytes read with the file
size). `on_bad_record` picks the policy: 'stop' (default) raises
tf.errors.InvalidArgumentError naming the check, the file and the record
index; 'skip' drops the record (or the rest of the file), logs it once with
file, index and reason, and counts it in a `BadRecords` the caller can read.
Bytes with a valid TFRecord checksum that are not a tf.train.Example, a
field stored with the wrong value type, and image data that does not decode
(garbage between intact markers) are bad records like the others: parsing
and decoding run as one in-graph "try" (records.parse_and_decode_checked). With 'skip', a run of bad records longer than
twice the distinct bad ones (only possible when no record is usable) stops
with an error instead of filtering a repeated input forever. A split read
from a dataset directory is complete: list_shards checks the '-of-NNNNN'
shard count, and a pass over all its records is compared with the count its
manifest states (an emptied shard, or one cut at a record boundary, reads
without error but short). Not caught: image data damaged in a way the
decoder accepts (a damaged image without an error), and a short split read
from a list of files or sharded over several input pipelines.

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
import threading
from typing import Any, Callable

from absl import logging
import numpy as np
import tensorflow as tf

from zoo import crop as crop_lib
from zoo import geometry
from zoo import skeleton as skel
from zoo.config import AugmentConfig
from zoo.data import mixture as mixture_lib
from zoo.data import occlusion
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
# Leading bytes of the image formats records.decode_image accepts.
_IMAGE_MAGIC = (b'\xff\xd8\xff', b'\x89PNG', b'GIF8', b'BM')
# TFRecord framing per record: 8-byte length, 4-byte length CRC, data, 4-byte
# data CRC.
_TFRECORD_OVERHEAD_BYTES = 16
# Records and files a BadRecords lists in its summary (all are counted).
_SUMMARY_LIMIT = 100
# Fields that must be finite in every record (masks do not excuse NaN: writers
# store zeros for missing labels).
_FINITE_FIELDS = ('joints2d_px', 'joints3d_cam_mm', 'intrinsics', 'box_xywh',
                  'joint_valid_2d', 'joint_valid_3d', 'has_3d')


# ----------------------------------------------------------------------------
# The crop: zoo.crop (re-exported, the pipeline's public names)
# ----------------------------------------------------------------------------

perspective_crop = crop_lib.perspective_crop
crop_to_original = crop_lib.crop_to_original


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


class BadRecords:
  """What a pipeline with on_bad_record='skip' skipped; readable at any time.

  Pass one to `make_dataset(bad_records=...)`. `records` maps (file, record
  index) -> reason for every distinct bad record, `files` maps file -> reason
  for every corrupt or truncated record file (the rest of which was skipped),
  `skipped` counts skip events (a bad record met again in a later epoch counts
  again). Each distinct record or file is logged once (absl WARNING) with its
  file, index and reason. Updated from tf.data's threads (a py_function runs
  only for bad input), hence the lock.
  """

  def __init__(self, log: bool = True):
    self.log = log
    self.records: dict[tuple[str, int], str] = {}
    self.files: dict[str, str] = {}
    self.skipped = 0
    self._lock = threading.Lock()

  def __len__(self) -> int:
    """Distinct bad records and bad files."""
    return len(self.records) + len(self.files)

  def summary(self) -> dict[str, Any]:
    """Counts and (the first `_SUMMARY_LIMIT`) bad records and files."""
    with self._lock:
      return {
          'bad_records': len(self.records), 'bad_files': len(self.files),
          'skipped': self.skipped,
          'records': [{'file': f, 'record': i, 'reason': r} for (f, i), r in
                      list(self.records.items())[:_SUMMARY_LIMIT]],
          'files': [{'file': f, 'reason': r} for f, r in
                    list(self.files.items())[:_SUMMARY_LIMIT]]}

  def _add_record(self, path, index, reason, run=None) -> bool:
    path, index = path.numpy().decode(errors='replace'), int(index.numpy())
    reason = reason.numpy().decode(errors='replace')
    with self._lock:
      self.skipped += 1
      new = (path, index) not in self.records
      if new:
        self.records[(path, index)] = reason
      distinct = len(self.records)
    if run is not None and int(run.numpy()) > 2 * distinct:
      _raise_nothing_usable(int(run.numpy()), distinct, self)
    if new and self.log:
      logging.warning('pipeline: skipping bad record %d of %s: %s', index,
                      path, reason)
    return False

  def _add_file(self, path, reason) -> bool:
    path = path.numpy().decode(errors='replace')
    reason = reason.numpy().decode(errors='replace')
    with self._lock:
      self.skipped += 1
      new = path not in self.files
      if new:
        self.files[path] = reason
    if new and self.log:
      logging.warning('pipeline: skipping the rest of %s', reason)
    return False

  def report_record(self, path: tf.Tensor, index: tf.Tensor,
                    reason: tf.Tensor, run: tf.Tensor | None = None
                    ) -> tf.Tensor:
    """In-graph: records a skipped record; returns False (drop it).

    `run`: bad records in a row so far (this one included); more than twice
    the distinct bad records means no record is usable (`_drop_bad`).
    """
    out = tf.py_function(self._add_record, [path, index, reason] + (
        [run] if run is not None else []), tf.bool)
    return tf.reshape(out, [])

  def report_file(self, path: tf.Tensor, reason: tf.Tensor) -> tf.Tensor:
    """In-graph: records a corrupt file; returns False."""
    return tf.reshape(tf.py_function(self._add_file, [path, reason], tf.bool),
                      [])


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


def _file_sizes(files: list[str]) -> list[int]:
  return [int(tf.io.gfile.stat(f).length) for f in files]


def _records(files: list[str], shuffle_files: bool, seed: int,
             deterministic: bool, bad_records: BadRecords | None
             ) -> tf.data.Dataset:
  """(path, index within file, serialized example) of every intact record.

  Each file is read up to its first corrupt or truncated record (where
  TFRecordDataset raises DataLossError, `ignore_errors` ends that file's
  stream); a sentinel after the last record compares the bytes of the records
  read with the file size. A mismatch stops (bad_records None) with an error
  naming the file, or is reported to `bad_records` (skip).
  """
  sizes = _file_sizes(files)
  paths = tf.data.Dataset.from_tensor_slices(
      (files, tf.constant(sizes, tf.int64)))
  if shuffle_files and len(files) > 1:
    paths = paths.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)

  def read(path, size):
    body = tf.data.TFRecordDataset(path).ignore_errors().map(
        lambda serialized: (serialized, tf.constant(False)))
    end = tf.data.Dataset.from_tensors((tf.constant(b''), tf.constant(True)))

    def count(state, element):
      """Numbers the records and sums their bytes (framing included)."""
      consumed, num = state
      serialized, is_end = element
      length = tf.cast(tf.strings.length(serialized), tf.int64)
      consumed += tf.where(is_end, tf.constant(0, tf.int64),
                           length + _TFRECORD_OVERHEAD_BYTES)
      return (consumed, num + 1), (num, serialized, is_end, consumed)

    def keep(num, serialized, is_end, consumed):
      """Drops the end marker; there, checks the file was read whole."""
      del serialized
      intact = tf.logical_or(tf.logical_not(is_end), tf.equal(consumed, size))
      if bad_records is None:
        check = _assert(intact, lambda: tf.strings.join([
            'pipeline: record file ', path, ' is corrupt or truncated: only '
            'its first ', tf.strings.as_string(num), ' records (',
            tf.strings.as_string(consumed), ' of ', tf.strings.as_string(size),
            ' bytes) are intact; on_bad_record=skip (trainer: '
            '--on_bad_record=skip) skips the rest of such a file']))
        with tf.control_dependencies([check]):
          return tf.logical_not(is_end)
      reported = tf.cond(intact, lambda: tf.constant(True), lambda: (
          bad_records.report_file(path, tf.strings.join([
              path, ' (corrupt or truncated record file: only its first ',
              tf.strings.as_string(num), ' records, ',
              tf.strings.as_string(consumed), ' of ',
              tf.strings.as_string(size), ' bytes, are intact)']))))
      return tf.logical_and(tf.logical_not(is_end), reported)

    items = body.concatenate(end).scan(
        (tf.constant(0, tf.int64), tf.constant(0, tf.int64)), count)
    return items.filter(keep).map(
        lambda index, serialized, *_: (path, index, serialized))

  if len(files) == 1:
    return read(tf.constant(files[0]), tf.constant(sizes[0], tf.int64))
  return paths.interleave(read, cycle_length=min(len(files), 16),
                          block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=deterministic or None)


def _image_complete(encoded: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """(starts with a known image signature, ends as that format must).

  JPEG ends with the EOI marker, PNG with the IEND chunk, GIF with ';'; BMP
  has no end marker (counted complete).
  """
  length = tf.strings.length(encoded)

  def tail(n):
    return tf.strings.substr(encoded, tf.maximum(length - n, 0), n)

  head = tf.strings.substr(encoded, 0, 4)
  is_jpeg = tf.strings.substr(head, 0, 3) == _IMAGE_MAGIC[0]
  is_png = head == _IMAGE_MAGIC[1]
  is_gif = head == _IMAGE_MAGIC[2]
  is_bmp = tf.strings.substr(head, 0, 2) == _IMAGE_MAGIC[3]
  known = is_jpeg | is_png | is_gif | is_bmp
  complete = ((is_jpeg & (tail(2) == b'\xff\xd9')) |
              (is_png & (tail(8) == b'IEND\xaeB`\x82')) |
              (is_gif & (tail(1) == b';')) | is_bmp)
  return known, complete


def _problems(example: dict[str, tf.Tensor],
              num_values: dict[str, tf.Tensor] | None = None
              ) -> list[tuple[tf.Tensor, Callable[[], tf.Tensor]]]:
  """Every per-record check, in one place, as groups (ok, messages).

  ok: bool [n] (True = fine); messages: a function returning the n messages
  (string [n]), called only for a record that fails (inside a tf.cond), so a
  good record costs only the predicates. `num_values` (from
  records.parse_example_lenient) adds the field-size checks.
  """
  groups = []
  if num_values is not None:
    names = list(num_values)
    counts = tf.stack([num_values[name] for name in names])
    expected = [records.expected_num_values(name) for name in names]
    prefixes = [f'field {name} must hold {n} value(s) (shape '
                f'{records.FLOAT_FIELDS.get(name, ())}), got '
                for name, n in zip(names, expected)]
    groups.append((tf.equal(counts, expected), lambda: tf.strings.join(
        [tf.constant(prefixes), tf.strings.as_string(counts)])))
  finite = tf.stack([tf.reduce_all(tf.math.is_finite(example[name]))
                     for name in _FINITE_FIELDS])
  groups.append((finite, lambda: tf.constant(
      [f'field {name} must be finite (no NaN/Inf)'
       for name in _FINITE_FIELDS])))
  box, k = example['box_xywh'], example['intrinsics']
  groups.append((tf.stack([tf.reduce_all(box[2:] > 0),
                           tf.logical_and(k[0, 0] > 0, k[1, 1] > 0)]),
                 lambda: tf.constant([
                     'field box_xywh must have width > 0 and height > 0',
                     'field intrinsics must have fx > 0 and fy > 0'])))
  known, complete = _image_complete(example['image/encoded'])
  groups.append((tf.stack([known, tf.logical_or(tf.logical_not(known),
                                                complete)]),
                 lambda: tf.constant([
                     'field image/encoded must hold JPEG/PNG/GIF/BMP bytes',
                     'field image/encoded is a truncated image (the end '
                     'marker of its format is missing)'])))
  return groups


def _image_size_check(full_size: tf.Tensor, example: dict[str, tf.Tensor]
                      ) -> tuple[tf.Tensor, Callable[[], tf.Tensor]]:
  """The decoded image has the size the record states (0 = not stated).

  `full_size` [2]: (height, width) of the image at full resolution (a
  reduced JPEG decode reports the size its header states,
  records.decode_image_reduced), so the check is exact at any decode ratio.
  """
  shape = tf.cast(full_size, tf.int64)
  height, width = example['image/height'], example['image/width']
  ok = tf.logical_and(tf.logical_or(height <= 0, shape[0] == height),
                      tf.logical_or(width <= 0, shape[1] == width))
  return ok[None], lambda: tf.strings.join([
      'field image/encoded decodes to ', tf.strings.as_string(shape[0]),
      'x', tf.strings.as_string(shape[1]),
      ' (height x width) but image/height x image/width say ',
      tf.strings.as_string(height), 'x', tf.strings.as_string(width)])[None]


def _assert(ok: tf.Tensor, message: Callable[[], tf.Tensor]) -> tf.Tensor:
  """`ok`, or InvalidArgumentError with `message()` (built only then)."""
  def fail():
    with tf.control_dependencies([tf.debugging.Assert(False, [message()])]):
      return tf.constant(False)
  return tf.cond(ok, lambda: tf.constant(True), fail)


def _enforce(groups: list[tuple[tf.Tensor, Callable[[], tf.Tensor]]],
             path: tf.Tensor, index: tf.Tensor, stop: bool
             ) -> tuple[tf.Tensor, tf.Tensor]:
  """(all checks pass, reason: the failed checks' messages, '; '-joined).

  With `stop`, a failure raises InvalidArgumentError naming the failed
  checks, the record and the file (the returned `ok` depends on the check;
  the reason is then '').
  """
  oks = tf.concat([ok for ok, _ in groups], 0)
  ok = tf.reduce_all(oks)

  def reason():
    messages = tf.concat([messages() for _, messages in groups], 0)
    return tf.strings.reduce_join(
        tf.boolean_mask(messages, tf.logical_not(oks)), separator='; ')
  if stop:
    ok = _assert(ok, lambda: tf.strings.join([
        'pipeline: ', reason(), '; bad record ', tf.strings.as_string(index),
        ' of ', path]))
    return ok, tf.constant('')
  reason = tf.cond(ok, lambda: tf.constant(''), reason)
  return ok, reason


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


def _validated(path: tf.Tensor, record_index: tf.Tensor,
               serialized: tf.Tensor, stop: bool,
               max_decode_ratio: Callable | None = None
               ) -> tuple[dict[str, tf.Tensor], tf.Tensor, tf.Tensor,
                          tf.Tensor, tf.Tensor]:
  """Parses and checks one record and decodes its image.

  `max_decode_ratio`: see records.parse_and_decode_checked (None: full
  resolution). Returns (parsed, image uint8 [h, w, 3], decode ratio r (the
  image is 1/r of the stored one; int32), ok, reason). With `stop`, a bad
  record raises (naming check, file and record). Otherwise a bad record's
  image is replaced by a 1x1 black one and its geometry fields by harmless
  values (identity camera, unit box), so the example stage runs through and
  the record is dropped by the caller's filter on `ok`.
  """
  (parsed, num_values, image, parsed_ok, parse_reason, decoded, ratio,
   full_size) = records.parse_and_decode_checked(serialized,
                                                 max_decode_ratio)
  ok, reason = _enforce(_parse_problems(parsed_ok, parse_reason, parsed,
                                        num_values), path, record_index, stop)
  if stop:
    with tf.control_dependencies([ok]):  # nothing uses a bad record first
      parsed = {k: tf.identity(v) for k, v in parsed.items()}
      image, decoded = tf.identity(image), tf.identity(decoded)
      full_size = tf.identity(full_size)
  size_ok, size_reason = _enforce(_decode_problems(decoded, full_size,
                                                   parsed),
                                  path, record_index, stop)
  if stop:
    with tf.control_dependencies([size_ok]):
      image = tf.identity(image)
    return parsed, image, ratio, ok, reason
  size_ok = tf.logical_or(tf.logical_not(ok), size_ok)
  reason = tf.where(ok, size_reason, reason)
  ok = tf.logical_and(ok, size_ok)
  safe = {'intrinsics': tf.eye(3), 'box_xywh': tf.constant([0., 0., 1., 1.])}
  for name, value in safe.items():
    parsed[name] = tf.where(ok, parsed[name], value)
  image = tf.cond(ok, lambda: image, lambda: tf.zeros([1, 1, 3], tf.uint8))
  ratio = tf.where(ok, ratio, 1)
  return parsed, image, ratio, ok, reason


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
    parsed, image, ratio, ok, reason = _validated(
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
  ds = _records(files, shuffle_files, seed,
                deterministic or sharding == SHARD_BY_DATA, bad_records)
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
    ds = _records(files, training and take is None, seed,
                  deterministic or sharding == SHARD_BY_DATA,
                  None if stop else bad_records)
  if sharding == SHARD_BY_DATA:
    ds = ds.shard(num_input_pipelines, input_pipeline_id)
  if sharding == NO_SHARDING:
    ds = _check_split_count(ds, data, split, None if stop else bad_records)
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
    ds = _drop_bad(ds, bad_records)
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  ds = ds.map(_batch_stage(input_size),
              num_parallel_calls=num_parallel_calls)
  if map_fn is not None:
    ds = ds.map(map_fn, num_parallel_calls=num_parallel_calls)
  ds = ds.prefetch(tf.data.AUTOTUNE)
  options = tf.data.Options()
  options.deterministic = bool(deterministic or not training)
  if num_input_pipelines > 1:  # sharded here: a strategy must not shard again
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF)
  return ds.with_options(options)


# ----------------------------------------------------------------------------
# Records that do not parse or decode; the completeness of a split
# ----------------------------------------------------------------------------

def _parse_problems(parsed_ok: tf.Tensor, parse_reason: tf.Tensor,
                    parsed: dict[str, tf.Tensor],
                    num_values: dict[str, tf.Tensor]
                    ) -> list[tuple[tf.Tensor, Callable[[], tf.Tensor]]]:
  """`_problems` after records.parse_and_decode_checked: bytes that are not a
  tf.train.Example or hold a field of the wrong value type fail with that
  reason alone (the field checks of the zero-filled fallback are masked)."""
  groups = [(parsed_ok[None], lambda: parse_reason[None])]
  for ok, messages in _problems(parsed, num_values):
    groups.append((ok | tf.logical_not(parsed_ok), messages))
  return groups


def _decode_problems(decoded: tf.Tensor, full_size: tf.Tensor,
                     parsed: dict[str, tf.Tensor]
                     ) -> list[tuple[tf.Tensor, Callable[[], tf.Tensor]]]:
  """Image data that does not decode; the decoded size at full resolution
  (`_image_size_check`) where it does."""
  size_ok, size_messages = _image_size_check(full_size, parsed)
  return [(decoded[None], lambda: tf.constant([
      'field image/encoded does not decode (corrupt image data between '
      'intact start and end markers)'])),
          (size_ok | tf.logical_not(decoded), size_messages)]


def _raise_nothing_usable(run: int, distinct: int, bad: BadRecords) -> None:
  example = next(iter(bad.records.items()), None)
  message = (
      f'pipeline (on_bad_record=skip): no usable record: the last {run} '
      f'records read were all bad ({distinct} distinct bad records, every '
      'record of the input was met at least once)' + (
          f'; e.g. record {example[0][1]} of {example[0][0]}: {example[1]}'
          if example else ''))
  logging.error('%s', message)
  raise ValueError(message)


def _drop_bad(ds: tf.data.Dataset, bad_records: BadRecords
              ) -> tf.data.Dataset:
  """Drops the examples marked bad, counting them in `bad_records`; stops
  with an error once bad records in a row prove that none is usable (more
  than twice the distinct bad ones: a run can span at most two passes unless
  a whole pass is bad), instead of filtering a repeated input forever."""

  def count(run, example):
    run = tf.where(example['bad/ok'], tf.constant(0, tf.int64), run + 1)
    return run, (example, run)

  def keep(example, run):
    return tf.cond(example['bad/ok'], lambda: tf.constant(True),
                   lambda: bad_records.report_record(
                       example['bad/path'], example['bad/index'],
                       example['bad/reason'], run))

  return ds.scan(tf.constant(0, tf.int64), count).filter(keep).map(
      lambda example, run: example)


def _check_split_count(ds: tf.data.Dataset, data, split: str,
                       bad_records: BadRecords | None) -> tf.data.Dataset:
  """Compares the records read in a pass over a dataset directory's split
  with the count its manifest states (records.manifest_count): a shard
  emptied or cut at a record boundary reads without error but short. Stops
  (bad_records None) or reports the directory to `bad_records`. Unchecked
  without a directory or a stated count."""
  if not isinstance(data, (str, os.PathLike)) or not tf.io.gfile.isdir(
      os.fspath(data)):
    return ds
  directory = os.fspath(data)
  expected = records.manifest_count(directory, split)
  if expected is None:
    return ds
  end = tf.data.Dataset.from_tensors(
      (tf.constant(''), tf.constant(-1, tf.int64), tf.constant(b'')))

  def count(num, item):
    is_end = item[1] < 0
    return num + tf.cast(tf.logical_not(is_end), tf.int64), (num, is_end, item)

  def message(num):
    return tf.strings.join([
        f'pipeline: split {split} of {directory} holds ',
        tf.strings.as_string(num), f' records but its manifest states '
        f'{expected}: a shard is missing records (emptied or cut short)'])

  def keep(num, is_end, item):
    del item
    complete = tf.logical_or(tf.logical_not(is_end), tf.equal(num, expected))
    if bad_records is None:
      with tf.control_dependencies([_assert(complete, lambda: message(num))]):
        return tf.logical_not(is_end)
    reported = tf.cond(complete, lambda: tf.constant(True),
                       lambda: bad_records.report_file(
                           tf.constant(directory), message(num)))
    return tf.logical_and(tf.logical_not(is_end), reported)

  return ds.concatenate(end).scan(tf.constant(0, tf.int64), count).filter(
      keep).map(lambda num, is_end, item: item)

