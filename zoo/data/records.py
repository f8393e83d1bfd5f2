"""The zoo's one TFRecord schema, shared by every dataset (synthetic, H36M, MPII).

Every example is a `tf.train.Example` with the features below. Joints are always
in H36M-17 order (zoo.skeleton.H36M17); datasets that lack a joint or a label
set its mask to 0. Units and frames:
- `image/encoded`: JPEG (or PNG) bytes of the stored image, RGB.
- `joints2d_px` [17, 2]: pixels in the stored image (x right, y down).
- `joints3d_cam_mm` [17, 3]: camera frame of the stored image (x right, y down,
  z forward), millimetres. `joints3d_world_mm` [17, 3]: world frame, mm.
- `intrinsics` [3, 3]: pinhole K of the stored image (crop-adjusted), pixels.
- `extrinsics` [3, 4]: world-to-camera [R | t], t in mm.
- `box_xywh` [4]: person box in stored-image pixels.
- `joint_valid_2d`, `joint_valid_3d` [17]: 1 where the label exists.
- `joint_in_image` [17]: 1 where the 2D joint lies inside the stored image.
- `joint_self_occluded` [17]: 1 where the joint is hidden by the body itself.
- `has_3d`, `has_camera`: 1 where 3D joints / real calibration are present
  (intrinsics of datasets without calibration are a default-FOV guess).
- `dataset`, `subject`, `action`, `camera` (strings), `frame` (int).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
from typing import Any, Callable, Iterable, Mapping, NamedTuple

import numpy as np
import tensorflow as tf

from zoo import fileio
from zoo import skeleton as skel

FORMAT_VERSION = 1
J = skel.NUM_JOINTS

# name -> (dtype, shape); float features are stored flattened.
FLOAT_FIELDS: dict[str, tuple[int, ...]] = {
    'joints2d_px': (J, 2),
    'joints3d_cam_mm': (J, 3),
    'joints3d_world_mm': (J, 3),
    'intrinsics': (3, 3),
    'extrinsics': (3, 4),
    'box_xywh': (4,),
    'joint_valid_2d': (J,),
    'joint_valid_3d': (J,),
    'joint_in_image': (J,),
    'joint_self_occluded': (J,),
    'has_3d': (),
    'has_camera': (),
}
STRING_FIELDS = ('image/encoded', 'dataset', 'subject', 'action', 'camera')
INT_FIELDS = ('frame', 'image/height', 'image/width')

# Fields a writer must be given; the rest default to zeros / masks of 0.
REQUIRED = ('image/encoded', 'joints2d_px', 'intrinsics', 'box_xywh')
# A dataset directory's JSON manifest (splits, counts, skeleton); a split may
# have its own, '{split}_' + this name.
DATASET_MANIFEST_FILE = 'manifest.json'


# The field of view (deg, on the longer image side) assumed for images
# without calibration.
DEFAULT_FOV_DEG = 55.


def default_intrinsics(height: int, width: int,
                       fov_deg: float = DEFAULT_FOV_DEG) -> np.ndarray:
  """A pinhole guess for uncalibrated images: horizontal-ish FOV on the longer side."""
  focal = max(height, width) / 2 / np.tan(np.deg2rad(fov_deg) / 2)
  return np.array([[focal, 0, (width - 1) / 2], [0, focal, (height - 1) / 2],
                   [0, 0, 1]], np.float32)


def _bytes(v: bytes | str) -> tf.train.Feature:
  if isinstance(v, str):
    v = v.encode()
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))


def make_example(fields: Mapping[str, Any]) -> tf.train.Example:
  """Builds one validated Example; raises ValueError naming a bad field."""
  missing = [k for k in REQUIRED if k not in fields]
  if missing:
    raise ValueError(f'record is missing required fields {missing}; required '
                     f'are {list(REQUIRED)}')
  unknown = set(fields) - set(FLOAT_FIELDS) - set(STRING_FIELDS) - set(INT_FIELDS)
  if unknown:
    raise ValueError(f'unknown record fields {sorted(unknown)}')
  feats = {}
  for name, shape in FLOAT_FIELDS.items():
    if name in fields:
      arr = np.asarray(fields[name], np.float32)
      if arr.shape != shape:
        raise ValueError(f'field {name!r} has shape {arr.shape}, expected '
                         f'{shape}')
    else:
      arr = _default_float(name, fields)
    feats[name] = tf.train.Feature(
        float_list=tf.train.FloatList(value=arr.reshape(-1).tolist()))
  for name in STRING_FIELDS:
    feats[name] = _bytes(fields.get(name, b''))
  for name in INT_FIELDS:
    feats[name] = tf.train.Feature(
        int64_list=tf.train.Int64List(value=[int(fields.get(name, 0))]))
  return tf.train.Example(features=tf.train.Features(feature=feats))


def _default_float(name: str, fields: Mapping[str, Any]) -> np.ndarray:
  shape = FLOAT_FIELDS[name]
  if name == 'joint_valid_2d':
    return np.ones(shape, np.float32)
  if name == 'joint_valid_3d':
    return np.full(shape, 1. if 'joints3d_cam_mm' in fields else 0., np.float32)
  if name == 'has_3d':
    return np.float32(1. if 'joints3d_cam_mm' in fields else 0.)
  if name == 'has_camera':
    return np.float32(1. if 'extrinsics' in fields else 0.)
  if name == 'joint_in_image':
    return np.ones(shape, np.float32)
  if name == 'extrinsics':
    return np.eye(3, 4, dtype=np.float32)
  return np.zeros(shape, np.float32)


def _feature_spec():
  spec = {name: tf.io.FixedLenFeature([int(np.prod(shape))], tf.float32)
          for name, shape in FLOAT_FIELDS.items()}
  spec.update({name: tf.io.FixedLenFeature([], tf.string)
               for name in STRING_FIELDS})
  spec.update({name: tf.io.FixedLenFeature([], tf.int64)
               for name in INT_FIELDS})
  return spec


FEATURE_SPEC = _feature_spec()


def parse_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
  """Parses one serialized Example into named, shaped tensors (image undecoded)."""
  parsed = tf.io.parse_single_example(serialized, FEATURE_SPEC)
  for name, shape in FLOAT_FIELDS.items():
    parsed[name] = tf.reshape(parsed[name], shape)
  return parsed


# Every field as a plain list of values (RaggedFeature without partitions
# parses to a dense 1-D tensor; cheaper than VarLenFeature's sparse output).
_LENIENT_SPEC = {
    **{name: tf.io.RaggedFeature(tf.float32) for name in FLOAT_FIELDS},
    **{name: tf.io.RaggedFeature(tf.string) for name in STRING_FIELDS},
    **{name: tf.io.RaggedFeature(tf.int64) for name in INT_FIELDS},
}


def expected_num_values(name: str) -> int:
  """How many values field `name` holds in a record (float fields flattened)."""
  if name in FLOAT_FIELDS:
    return int(np.prod(FLOAT_FIELDS[name]))
  if name in STRING_FIELDS or name in INT_FIELDS:
    return 1
  raise KeyError(f'unknown record field {name!r}')


def parse_example_lenient(
    serialized: tf.Tensor) -> tuple[dict[str, tf.Tensor],
                                    dict[str, tf.Tensor]]:
  """`parse_example` that does not fail on a field with the wrong size.

  Returns (parsed, num_values): `parsed` as from `parse_example` for a record
  that matches the schema; `num_values[name]` (int32 scalar) is the number of
  values the record had for field `name` (0 if missing), so the caller can
  reject the record naming the field and the expected shape. Where a count is
  wrong the parsed field still has the schema's shape (its values are then
  meaningless: zero-padded or cut). A value list of the wrong type, or bytes
  that are not a tf.train.Example at all, still raise InvalidArgumentError.
  """
  lists = tf.io.parse_single_example(serialized, _LENIENT_SPEC)
  parsed, num_values = {}, {}
  for name, values in lists.items():
    expected = expected_num_values(name)
    num_values[name] = tf.size(values, out_type=tf.int32)
    if name in FLOAT_FIELDS:
      padded = tf.concat([values, tf.zeros([expected], tf.float32)], 0)
      parsed[name] = tf.reshape(padded[:expected], FLOAT_FIELDS[name])
    else:
      default = b'' if name in STRING_FIELDS else 0
      parsed[name] = tf.concat([values, tf.constant([default], values.dtype)],
                               0)[0]
  return parsed, num_values


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
  """JPEG/PNG bytes -> uint8 [H, W, 3]."""
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return image


# The scales libjpeg decodes to in the DCT domain (1/r of each side), besides
# full resolution.
REDUCED_DECODE_RATIOS = (2, 4, 8)
_JPEG_MAGIC = b'\xff\xd8\xff'


def decode_image_reduced(encoded: tf.Tensor, max_ratio: tf.Tensor
                         ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """`decode_image`, of JPEG bytes at a reduced scale where allowed.

  JPEG bytes decode at 1/r of each side for the largest r of
  REDUCED_DECODE_RATIOS with r <= `max_ratio` (float scalar): libjpeg's
  DCT-domain scaling, cheaper than a full decode by about the pixels it
  skips. The output is ceil(H / r) x ceil(W / r), and its pixel v covers full
  resolution pixels r v .. r v + r - 1, i.e. full-resolution pixel u sits at
  (u + 0.5) / r - 0.5 (zoo.crop.warp's `source_ratio` maps a crop there).
  Other formats, and max_ratio < 2 (or NaN), decode as `decode_image`.

  Returns (image uint8 [h, w, 3], ratio int32 (1 at full resolution),
  full_size int32 [2]: (H, W) at full resolution, from the JPEG header where
  reduced, so a check of the stored size stays exact).
  """
  is_jpeg = tf.strings.substr(encoded, 0, 3) == _JPEG_MAGIC
  max_ratio = tf.cast(max_ratio, tf.float32)
  choice = tf.reduce_sum(tf.cast(
      max_ratio >= tf.constant(REDUCED_DECODE_RATIOS, tf.float32), tf.int32))
  choice = tf.where(is_jpeg, choice, 0)

  def full():
    image = decode_image(encoded)
    return image, tf.constant(1), tf.shape(image)[:2]

  def reduced(ratio):
    def fn():
      image = tf.io.decode_jpeg(encoded, channels=3, ratio=ratio)
      return (image, tf.constant(ratio),
              tf.io.extract_jpeg_shape(encoded)[:2])
    return fn

  image, ratio, full_size = tf.switch_case(
      choice, [full] + [reduced(r) for r in REDUCED_DECODE_RATIOS])
  image.set_shape([None, None, 3])
  ratio.set_shape([])
  full_size.set_shape([2])
  return image, ratio, full_size


class ShardedWriter:
  """Writes examples round-robin into `num_shards` files, atomically.

  Shards are written under temporary names and renamed on `close()`, so a
  crash never leaves a half-written shard under a final name.
  """

  def __init__(self, out_dir: str, prefix: str, num_shards: int):
    if num_shards < 1:
      raise ValueError(f'num_shards must be >= 1, got {num_shards}')
    os.makedirs(out_dir, exist_ok=True)
    self.paths = [os.path.join(out_dir, f'{prefix}-{i:05d}-of-{num_shards:05d}'
                               '.tfrecord') for i in range(num_shards)]
    # Each shard's temporary path (fileio.atomic_path): renamed into place
    # when the stack closes without an error, removed otherwise.
    self._renames = contextlib.ExitStack()
    self._tmp = [self._renames.enter_context(fileio.atomic_path(p))
                 for p in self.paths]
    self._writers = [tf.io.TFRecordWriter(p) for p in self._tmp]
    self.count = 0

  def write(self, example: tf.train.Example | bytes):
    data = example if isinstance(example, bytes) else example.SerializeToString()
    self._writers[self.count % len(self._writers)].write(data)
    self.count += 1

  def close(self):
    for w in self._writers:
      w.close()
    self._renames.close()

  def __enter__(self):
    return self

  def __exit__(self, exc_type, *_):
    if exc_type is None:
      self.close()
    else:
      for w in self._writers:
        w.close()
      self._renames.__exit__(exc_type, *_)


def write_manifest(out_dir: str, manifest: Mapping[str, Any],
                   name: str = DATASET_MANIFEST_FILE):
  """Writes a JSON manifest atomically (temp file, then rename)."""
  manifest = dict(manifest)
  manifest.setdefault('format_version', FORMAT_VERSION)
  manifest.setdefault('skeleton', {'name': skel.H36M17.name,
                                   'joint_names': list(skel.H36M17.joint_names),
                                   'parents': list(skel.H36M17.parents)})
  fileio.atomic_write_text(os.path.join(out_dir, name),
                           json.dumps(manifest, indent=2, sort_keys=True))


def read_manifest(data_dir: str, name: str = DATASET_MANIFEST_FILE) -> dict:
  path = os.path.join(data_dir, name)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found: a zoo dataset directory holds '
                            f'*.tfrecord shards and a {name}')
  with open(path) as f:
    return json.load(f)


def list_shards(data_dir: str, split: str) -> list[str]:
  """Shard paths of one split ('train' or 'test') in a zoo dataset directory.

  Raises FileNotFoundError where a shard its '-of-NNNNN' names is missing.
  """
  paths = sorted(tf.io.gfile.glob(os.path.join(data_dir, f'{split}-*.tfrecord')))
  if not paths:
    raise FileNotFoundError(
        f'no shards for split {split!r} in {data_dir}: expected files named '
        f'{split}-NNNNN-of-NNNNN.tfrecord')
  missing = missing_shards(paths)
  if missing:
    raise FileNotFoundError(
        f'split {split!r} of {data_dir} is incomplete: {len(missing)} shard(s) '
        f'named by -of- are missing: {[os.path.basename(m) for m in missing]}')
  return paths


# ----------------------------------------------------------------------------
# Parsing and decoding that report failure instead of raising
# ----------------------------------------------------------------------------

def _first_or(dataset: tf.data.Dataset, fallback) -> Any:
  """The first element of `dataset` (errors dropped), else `fallback`.

  In-graph "try": ops that raise (a parse, a decoder) run in a one-element
  dataset whose errors are ignored, so a failure yields `fallback`.
  """
  fallback = tf.data.Dataset.from_tensors(fallback)
  return dataset.ignore_errors().concatenate(fallback).take(
      1).get_single_element()


def _wrong_value_types(serialized: tf.Tensor) -> tf.Tensor:
  """Why bytes failed to parse: string naming the fields whose value lists
  have the wrong type, or saying it is no tf.train.Example at all."""
  kinds = {tf.float32: 'float_list', tf.string: 'bytes_list',
           tf.int64: 'int64_list'}
  names, oks = [], []
  for name, feature in _LENIENT_SPEC.items():
    one = tf.data.Dataset.from_tensors(serialized).map(
        lambda s, n=name, f=feature: (tf.size(
            tf.io.parse_single_example(s, {n: f})[n]) >= 0))
    names.append(f'field {name} has the wrong value type (expected '
                 f'{kinds[feature.dtype]})')
    oks.append(_first_or(one, False))
  oks = tf.stack(oks)
  return tf.cond(
      tf.reduce_any(oks),
      lambda: tf.strings.reduce_join(tf.boolean_mask(names, ~oks),
                                     separator='; '),
      lambda: tf.constant('the record is not a tf.train.Example (its bytes '
                          'do not parse as one)'))


def _parse_fallback() -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
  parsed = {
      name: tf.zeros(FLOAT_FIELDS[name], tf.float32) if name in FLOAT_FIELDS
      else tf.constant(b'' if name in STRING_FIELDS else 0,
                       tf.string if name in STRING_FIELDS else tf.int64)
      for name in _LENIENT_SPEC}
  return parsed, {name: tf.constant(0, tf.int32) for name in _LENIENT_SPEC}


class DecodedRecord(NamedTuple):
  """What `parse_and_decode_checked` returns (see there)."""
  parsed: dict[str, tf.Tensor]
  num_values: dict[str, tf.Tensor]
  image: tf.Tensor          # uint8 [h, w, 3], 1/ratio of the stored image
  parsed_ok: tf.Tensor      # bool
  parse_reason: tf.Tensor   # string, '' where parsed_ok
  decoded: tf.Tensor        # bool
  ratio: tf.Tensor          # int32: the image is decoded at 1/ratio
  full_size: tf.Tensor      # int32 [2]: (height, width) at full resolution


def parse_and_decode_checked(serialized: tf.Tensor,
                             max_decode_ratio: Callable[
                                 [dict[str, tf.Tensor]], tf.Tensor] | None
                             = None) -> DecodedRecord:
  """`parse_example_lenient` + `decode_image` that never raise.

  `max_decode_ratio`: None decodes at full resolution; else a function of the
  parsed record giving the largest allowed reduction of a JPEG
  (`decode_image_reduced`), evaluated inside the "try" (it must not raise).

  Returns a DecodedRecord:
  - parsed_ok False: the bytes are not a tf.train.Example, or a field is
    stored with the wrong value type; `parse_reason` says which (built only
    then); `parsed` / `num_values` hold zeros.
  - decoded False: image/encoded does not decode (e.g. garbage between
    intact markers); `image` is then 1x1 black (ratio 1, full_size 1x1).
  One in-graph "try" covers both for a good record; a second one, run only
  when it fails, tells the two apart.
  """
  tried = tf.data.Dataset.from_tensors(serialized).map(
      lambda s: _parse_decode(s, max_decode_ratio))
  parsed0, counts0 = _parse_fallback()
  parsed, num_values, (image, ratio, full_size), ok = _first_or(
      tried, (parsed0, counts0, (tf.zeros([1, 1, 3], tf.uint8),
                                 tf.constant(1), tf.ones([2], tf.int32)),
              tf.constant(False)))
  image.set_shape([None, None, 3])

  def parse_alone():
    parse_only = tf.data.Dataset.from_tensors(serialized).map(
        lambda s: (*parse_example_lenient(s), tf.constant(True)))
    return _first_or(parse_only, (parsed0, counts0, tf.constant(False)))

  parsed, num_values, parsed_ok = tf.cond(
      ok, lambda: (parsed, num_values, tf.constant(True)), parse_alone)
  decoded = ok
  reason = tf.cond(parsed_ok, lambda: tf.constant(''),
                   lambda: _wrong_value_types(serialized))
  return DecodedRecord(parsed, num_values, image, parsed_ok, reason, decoded,
                       ratio, full_size)


def _parse_decode(serialized: tf.Tensor, max_decode_ratio=None):
  parsed, num_values = parse_example_lenient(serialized)
  encoded = parsed['image/encoded']
  if max_decode_ratio is None:
    image = decode_image(encoded)
    decoded = (image, tf.constant(1), tf.shape(image)[:2])
  else:
    decoded = decode_image_reduced(encoded, max_decode_ratio(parsed))
  return parsed, num_values, decoded, tf.constant(True)


# ----------------------------------------------------------------------------
# Completeness of a split: shard names and manifest counts
# ----------------------------------------------------------------------------

_SHARD_NAME = re.compile(r'^(?P<split>.+)-(?P<index>\d+)-of-(?P<count>\d+)'
                         r'\.tfrecord$')


def missing_shards(paths: Iterable[str]) -> list[str]:
  """Shard files named by the '-of-NNNNN' counts of `paths` but absent.

  Raises ValueError where the shards disagree on their count.
  """
  by_prefix: dict[tuple[str, str], set[int]] = {}
  counts: dict[tuple[str, str], set[int]] = {}
  for path in paths:
    match = _SHARD_NAME.match(os.path.basename(path))
    if not match:
      continue
    key = (os.path.dirname(path), match['split'])
    by_prefix.setdefault(key, set()).add(int(match['index']))
    counts.setdefault(key, set()).add(int(match['count']))
  missing = []
  for key, indices in by_prefix.items():
    if len(counts[key]) > 1:
      raise ValueError(f'shards {key[1]}-*-of-* in {key[0]} disagree on their '
                       f'count: -of- {sorted(counts[key])}')
    (count,) = counts[key]
    missing += [os.path.join(key[0], f'{key[1]}-{i:05d}-of-{count:05d}'
                             '.tfrecord')
                for i in range(count) if i not in indices]
  return missing


def manifest_count(data_dir: str, split: str) -> int | None:
  """The example count of `split` a dataset directory's manifest states
  ('{split}_manifest.json' or 'manifest.json', key counts[split]); None
  where no manifest states one."""
  for name in (f'{split}_{DATASET_MANIFEST_FILE}', DATASET_MANIFEST_FILE):
    path = os.path.join(data_dir, name)
    if not os.path.exists(path):
      continue
    with open(path) as f:
      try:
        manifest = json.load(f)
      except ValueError:
        raise ValueError(f'{path} is not valid JSON') from None
    count = (manifest.get('counts') or {}).get(split)
    if count is not None:
      return int(count)
  return None
