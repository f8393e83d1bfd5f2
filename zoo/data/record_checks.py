"""Checking the records the input pipeline reads: bad input is never
silently batched.

Checked per record (`_problems`, one place for every check): every field has
the schema's number of values, joints / intrinsics / box are finite, box and
focal length are positive, the image bytes are a complete JPEG/PNG/GIF/BMP
(start and end markers) whose decoded size matches `image/height` /
`image/width`. Bytes with a valid TFRecord checksum that are not a
tf.train.Example, a field stored with the wrong value type, and image data
that does not decode (garbage between intact markers) are bad records like
the others: parsing and decoding run as one in-graph "try"
(records.parse_and_decode_checked).

Checked per record file (`intact_records`): the intact records span the
whole file. TFRecordDataset raises a DataLossError that does not name the
file at a corrupt or truncated record; each file is read up to that record
and the bytes read are compared with the file size.

Checked per split (`check_split_count`): a pass over a dataset directory's
split holds the record count its manifest states (an emptied shard, or one
cut at a record boundary, reads without error but short); records.list_shards
checks the '-of-NNNNN' shard count.

The policy (zoo.data.pipeline's `on_bad_record`): 'stop' raises
tf.errors.InvalidArgumentError naming the check, the file and the record
index; 'skip' drops the record (or the rest of the file), logs it once with
file, index and reason, and counts it in a `BadRecords`. With 'skip', a run
of bad records longer than twice the distinct bad ones (only possible when
no record is usable) stops with an error (`drop_bad`) instead of filtering a
repeated input forever.

Not caught: image data damaged in a way the decoder accepts, and a short
split read from a list of files or sharded over several input pipelines.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Callable

from absl import logging
import tensorflow as tf

from zoo.data import records

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
# What skipping skipped
# ----------------------------------------------------------------------------

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
    the distinct bad records means no record is usable (`drop_bad`).
    """
    out = tf.py_function(self._add_record, [path, index, reason] + (
        [run] if run is not None else []), tf.bool)
    return tf.reshape(out, [])

  def report_file(self, path: tf.Tensor, reason: tf.Tensor) -> tf.Tensor:
    """In-graph: records a corrupt file; returns False."""
    return tf.reshape(tf.py_function(self._add_file, [path, reason], tf.bool),
                      [])


# ----------------------------------------------------------------------------
# Intact record files; per-record checks
# ----------------------------------------------------------------------------

def _file_sizes(files: list[str]) -> list[int]:
  return [int(tf.io.gfile.stat(f).length) for f in files]


def intact_records(files: list[str], shuffle_files: bool, seed: int,
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


def validated_record(path: tf.Tensor, record_index: tf.Tensor,
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


def drop_bad(ds: tf.data.Dataset, bad_records: BadRecords
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


def check_split_count(ds: tf.data.Dataset, data, split: str,
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
