"""zoo/data/record_checks.py through the pipeline (zoo/data/pipeline.py)
that applies them: corrupt and truncated record files, records with a wrong
field shape, images that do not decode, NaN joints.

Each case is checked in both policies: on_bad_record='stop' raises an error
naming the problem, the file and the record; 'skip' drops exactly the bad
records (or the rest of a corrupt file), logs and counts them in a
BadRecords, and delivers the good records unchanged (compared with a clean
file through the same pipeline).
"""
from __future__ import annotations

import os
import re

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from zoo.data import pipeline  # noqa: E402

import trainer_test_model as tiny  # noqa: E402  (the tiny record writer)

CROP = 16


def _example(frame: int) -> tf.train.Example:
  """A good record (the trainer tests' tiny example) with `frame` set."""
  example = tiny._example(np.random.default_rng(frame), frame, 'train')  # pylint: disable=protected-access
  return example


def _set_floats(example: tf.train.Example, name: str, values) -> None:
  feature = example.features.feature[name].float_list
  del feature.value[:]
  feature.value.extend(np.asarray(values, np.float32).reshape(-1).tolist())


def _set_bytes(example: tf.train.Example, name: str, value: bytes) -> None:
  feature = example.features.feature[name].bytes_list
  del feature.value[:]
  feature.value.append(value)


def _get_floats(example: tf.train.Example, name: str) -> np.ndarray:
  return np.array(example.features.feature[name].float_list.value, np.float32)


def _image(example: tf.train.Example) -> bytes:
  return example.features.feature['image/encoded'].bytes_list.value[0]


# Bad records, by hand: name -> (how to break a good record, what the error
# names).
def _sixteen_joints(ex):
  # A writer that used a 16-joint skeleton: every per-joint field is short.
  for name, width in (('joints2d_px', 2), ('joints3d_cam_mm', 3),
                      ('joint_valid_2d', 1), ('joint_valid_3d', 1)):
    _set_floats(ex, name, _get_floats(ex, name)[:16 * width])


def _nan_joints(ex):
  joints = _get_floats(ex, 'joints3d_cam_mm')
  joints[7] = np.nan
  _set_floats(ex, 'joints3d_cam_mm', joints)


def _not_an_image(ex):
  _set_bytes(ex, 'image/encoded', b'this is not an image')


def _truncated_jpeg(ex):
  _set_bytes(ex, 'image/encoded', _image(ex)[:len(_image(ex)) // 2])


def _wrong_image_size(ex):
  ex.features.feature['image/height'].int64_list.value[0] = 48


BREAKERS = {
    'sixteen_joints': (_sixteen_joints,
                       r'field joints2d_px must hold 34 value\(s\) '
                       r'\(shape \(17, 2\)\), got 32'),
    'nan_joints': (_nan_joints,
                   r'field joints3d_cam_mm must be finite'),
    'not_an_image': (_not_an_image,
                     r'field image/encoded must hold JPEG/PNG/GIF/BMP'),
    'truncated_jpeg': (_truncated_jpeg,
                       r'field image/encoded is a truncated image'),
    'wrong_image_size': (_wrong_image_size,
                         r'decodes to 64x64 .*say 48x64'),
}


def _write(path, examples) -> str:
  with tf.io.TFRecordWriter(str(path)) as writer:
    for example in examples:
      writer.write(example if isinstance(example, bytes)
                   else example.SerializeToString())
  return str(path)


def _record_offsets(path: str) -> list[int]:
  """Byte offset of each record (TFRecord framing: 8+4 header, data, 4)."""
  data, offsets, pos = open(path, 'rb').read(), [], 0
  while pos < len(data):
    offsets.append(pos)
    pos += 16 + int.from_bytes(data[pos:pos + 8], 'little')
  return offsets


def _frames(files, on_bad_record='stop', bad_records=None, **kwargs):
  """Frame numbers and features of every batch, in order."""
  ds = pipeline.make_dataset(files, 'train', input_size=CROP, batch_size=2,
                             training=False, on_bad_record=on_bad_record,
                             bad_records=bad_records, **kwargs)
  batches = [{k: v.numpy() for k, v in b.items()} for b in ds]
  feats = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
  return feats['frame'].tolist(), feats


# ----------------------------------------------------------------------------
# 'stop': an error naming the problem, the file and the record
# ----------------------------------------------------------------------------

@pytest.mark.parametrize('case', sorted(BREAKERS))
def test_stop_names_the_field_file_and_record(case, tmp_path):
  breaker, pattern = BREAKERS[case]
  examples = [_example(i) for i in range(3)]
  breaker(examples[1])
  path = _write(tmp_path / f'{case}.tfrecord', examples)
  with pytest.raises(tf.errors.InvalidArgumentError) as info:
    _frames([path])
  message = str(info.value)
  assert re.search(pattern, message), message
  assert f'; bad record 1 of {path}' in message, message


def test_stop_names_a_truncated_file(tmp_path):
  path = _write(tmp_path / 'truncated.tfrecord',
                [_example(i) for i in range(3)])
  size = os.path.getsize(path)
  with open(path, 'r+b') as f:
    f.truncate(size - 40)  # cuts into the last record
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=rf'record file {re.escape(path)} is corrupt or '
                           r'truncated: only its first 2 records'):
    _frames([path])


def test_stop_names_a_file_with_flipped_bytes(tmp_path):
  path = _write(tmp_path / 'flipped.tfrecord',
                [_example(i) for i in range(4)])
  offsets = _record_offsets(path)
  data = bytearray(open(path, 'rb').read())
  data[offsets[1] + 200] ^= 0xff  # inside the data of record 1: CRC fails
  open(path, 'wb').write(bytes(data))
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=rf'{re.escape(path)} is corrupt or truncated: '
                           rf'only its first 1 records \({offsets[1]} of '
                           rf'{len(data)} bytes\) are intact'):
    _frames([path])


def test_unknown_policy_lists_the_choices(tmp_path):
  path = _write(tmp_path / 'ok.tfrecord', [_example(0)])
  with pytest.raises(ValueError, match="unknown on_bad_record 'ignore'; "
                                       'valid choices are stop, skip'):
    pipeline.make_dataset([path], 'train', input_size=CROP, batch_size=1,
                          training=False, on_bad_record='ignore')


# ----------------------------------------------------------------------------
# 'skip': exactly the bad input dropped, counted, logged; good records intact
# ----------------------------------------------------------------------------

@pytest.fixture(scope='module')
def mixed(tmp_path_factory):
  """Files with every kind of bad input, and the same good records clean."""
  out = tmp_path_factory.mktemp('mixed')
  examples, bad = [], {}
  for i, case in enumerate(sorted(BREAKERS)):
    good = _example(2 * i)
    broken = _example(2 * i + 1)
    BREAKERS[case][0](broken)
    examples += [good, broken]
    bad[2 * i + 1] = case
  records_file = _write(out / 'records.tfrecord', examples)
  # A truncated file: frames 100, 101 intact, 102 cut.
  truncated = _write(out / 'truncated.tfrecord',
                     [_example(f) for f in (100, 101, 102)])
  with open(truncated, 'r+b') as f:
    f.truncate(os.path.getsize(truncated) - 40)
  # A corrupt file: frame 200 intact, a byte of 201 flipped, 202 unreachable.
  corrupt = _write(out / 'corrupt.tfrecord',
                   [_example(f) for f in (200, 201, 202)])
  offsets = _record_offsets(corrupt)
  data = bytearray(open(corrupt, 'rb').read())
  data[offsets[1] + 100] ^= 0x01
  open(corrupt, 'wb').write(bytes(data))
  clean = _write(out / 'clean.tfrecord',
                 [e for i, e in enumerate(examples) if i not in bad] +
                 [_example(f) for f in (100, 101, 200)])
  return {'files': [records_file, truncated, corrupt], 'clean': clean,
          'bad': bad, 'records_file': records_file, 'truncated': truncated,
          'corrupt': corrupt}


def test_skip_drops_counts_and_logs_exactly_the_bad_input(mixed, caplog):
  bad_records = pipeline.BadRecords()
  with caplog.at_level('WARNING'):
    frames, feats = _frames(mixed['files'], 'skip', bad_records)
  want_frames, want = _frames([mixed['clean']])
  assert sorted(frames) == sorted(want_frames)
  order, want_order = np.argsort(frames), np.argsort(want_frames)
  for key in ('joints2d_px', 'joints3d_cam_mm', 'joint_valid_3d', 'image',
              'intrinsics'):
    np.testing.assert_array_equal(feats[key][order], want[key][want_order],
                                  err_msg=key)

  summary = bad_records.summary()
  assert summary['bad_records'] == len(mixed['bad']) == 5
  assert summary['bad_files'] == 2 and summary['skipped'] == 7
  assert len(bad_records) == 7
  for index, case in mixed['bad'].items():
    reason = bad_records.records[(mixed['records_file'], index)]
    assert re.search(BREAKERS[case][1], reason), (case, reason)
  assert 'only its first 2 records' in bad_records.files[mixed['truncated']]
  assert 'only its first 1 records' in bad_records.files[mixed['corrupt']]
  log = caplog.text
  assert re.search(r'skipping bad record 3 of \S*records.tfrecord: field '
                   r'image/encoded must hold', log), log
  assert f'skipping the rest of {mixed["corrupt"]} (corrupt' in log


def test_skip_counts_repeats_but_logs_once(mixed, caplog):
  bad_records = pipeline.BadRecords()
  ds = pipeline.make_dataset([mixed['records_file']], 'train',
                             input_size=CROP, batch_size=5, training=True,
                             seed=3, on_bad_record='skip',
                             bad_records=bad_records)
  with caplog.at_level('WARNING'):
    it = iter(ds)
    frames = set()
    for _ in range(4):  # 20 examples = 4 epochs of the 5 good records
      frames.update(next(it)['frame'].numpy().tolist())
  assert frames == {0, 2, 4, 6, 8}
  assert bad_records.summary()['bad_records'] == 5
  assert bad_records.skipped >= 15  # at least 3 epochs were read
  assert caplog.text.count('skipping bad record 1 of') == 1


# ----------------------------------------------------------------------------
# records.parse_example_lenient, the parse behind the field-size checks
# ----------------------------------------------------------------------------

def test_lenient_parse_matches_strict_parse_and_counts_values():
  from zoo.data import records
  good = _example(4)
  strict = records.parse_example(good.SerializeToString())
  lenient, counts = records.parse_example_lenient(good.SerializeToString())
  assert set(lenient) == set(strict) == set(counts)
  for name, value in strict.items():
    np.testing.assert_array_equal(lenient[name].numpy(), value.numpy(),
                                  err_msg=name)
    assert int(counts[name]) == records.expected_num_values(name), name

  bad = _example(4)
  _sixteen_joints(bad)
  del bad.features.feature['camera']
  lenient, counts = records.parse_example_lenient(bad.SerializeToString())
  assert int(counts['joints3d_cam_mm']) == 48 and int(counts['camera']) == 0
  assert lenient['joints3d_cam_mm'].shape == (17, 3)  # schema shape kept
  assert lenient['camera'].numpy() == b''


# ----------------------------------------------------------------------------
# Records that do not parse or decode (checked in-graph, never raised raw)
# ----------------------------------------------------------------------------

def _corrupt_jpeg_data(frame: int) -> bytes:
  """Valid start and end markers, garbage in between: the decoder fails."""
  example = _example(frame)
  image = _image(example)
  garbage = np.random.default_rng(frame).integers(
      0, 256, len(image) - 302, dtype=np.uint8).tobytes()
  _set_bytes(example, 'image/encoded', image[:300] + garbage + b'\xff\xd9')
  return example.SerializeToString()


def _not_an_example(frame: int) -> bytes:
  return b'\xff\xfe not a serialized tf.train.Example \x00' + bytes([frame])


def _int64_box(frame: int) -> bytes:
  example = _example(frame)
  box = _get_floats(example, 'box_xywh')
  del example.features.feature['box_xywh'].float_list.value[:]
  example.features.feature['box_xywh'].int64_list.value.extend(
      [int(v) for v in box])
  return example.SerializeToString()


UNPARSEABLE = {
    'corrupt_jpeg_data': (_corrupt_jpeg_data,
                          r'field image/encoded does not decode \(corrupt '
                          r'image data'),
    'not_an_example': (_not_an_example,
                       r'the record is not a tf.train.Example'),
    'int64_box': (_int64_box,
                  r'field box_xywh has the wrong value type \(expected '
                  r'float_list\)'),
}


@pytest.mark.parametrize('case', sorted(UNPARSEABLE))
def test_unparseable_records_stop_naming_file_and_record(case, tmp_path):
  make, pattern = UNPARSEABLE[case]
  path = _write(tmp_path / f'{case}.tfrecord',
                [_example(0), make(1), _example(2)])
  with pytest.raises(tf.errors.InvalidArgumentError) as info:
    _frames([path])
  message = str(info.value)
  assert re.search(pattern, message), message
  assert f'; bad record 1 of {path}' in message, message


def test_unparseable_records_are_skipped_and_counted(tmp_path):
  records = []
  for i, case in enumerate(sorted(UNPARSEABLE)):
    records += [_example(2 * i), UNPARSEABLE[case][0](2 * i + 1)]
  path = _write(tmp_path / 'unparseable.tfrecord', records)
  bad_records = pipeline.BadRecords()
  frames, feats = _frames([path], 'skip', bad_records)
  assert frames == [0, 2, 4]
  clean = _write(tmp_path / 'clean.tfrecord', [_example(f) for f in (0, 2, 4)])
  _, want = _frames([clean])
  np.testing.assert_array_equal(feats['image'], want['image'])
  assert sorted(bad_records.records) == [(path, 1), (path, 3), (path, 5)]
  for i, case in enumerate(sorted(UNPARSEABLE)):
    reason = bad_records.records[(path, 2 * i + 1)]
    assert re.search(UNPARSEABLE[case][1], reason), (case, reason)


def test_skip_stops_when_no_record_is_usable(tmp_path):
  path = _write(tmp_path / 'all_bad.tfrecord',
                [_not_an_example(i) for i in range(3)] + [_int64_box(3)])
  bad_records = pipeline.BadRecords()
  ds = pipeline.make_dataset([path], 'train', input_size=CROP, batch_size=2,
                             training=True, seed=1, on_bad_record='skip',
                             bad_records=bad_records)
  with pytest.raises(tf.errors.OpError, match=r'no usable record: the last '
                     r'9 records read were all bad \(4 distinct bad'):
    next(iter(ds))
  assert bad_records.summary()['bad_records'] == 4


# ----------------------------------------------------------------------------
# Missing data: shards missing by their -of- count, shards short of the
# manifest's example count
# ----------------------------------------------------------------------------

def _dataset_dir(directory, shards: list[list[int]], count: int | None):
  """train-0000i-of-0000n.tfrecord holding the frames of shards[i], and a
  manifest stating `count` train examples (none if None)."""
  import json
  directory.mkdir()
  n = len(shards)
  for i, frames in enumerate(shards):
    _write(directory / f'train-{i:05d}-of-{n:05d}.tfrecord',
           [_example(f) for f in frames])
  if count is not None:
    (directory / 'train_manifest.json').write_text(json.dumps(
        {'counts': {'train': count}}))
  return str(directory)


def test_a_missing_shard_is_named(tmp_path):
  data = _dataset_dir(tmp_path / 'data', [[0, 1], [2, 3], [4]], 5)
  os.remove(os.path.join(data, 'train-00001-of-00003.tfrecord'))
  for policy in ('stop', 'skip'):
    with pytest.raises(FileNotFoundError,
                       match=r"split 'train' of .* is incomplete: 1 shard\(s\)"
                             r".*\['train-00001-of-00003.tfrecord'\]"):
      pipeline.make_dataset(data, 'train', input_size=CROP, batch_size=2,
                            training=False, on_bad_record=policy)


@pytest.mark.parametrize('damage', ['emptied', 'cut_at_a_record'])
def test_a_short_shard_is_caught_by_the_manifest_count(damage, tmp_path):
  data = _dataset_dir(tmp_path / 'data', [[0, 1, 2], [3, 4, 5]], 6)
  shard = os.path.join(data, 'train-00001-of-00002.tfrecord')
  if damage == 'emptied':
    open(shard, 'wb').close()
    held = 3
  else:
    offsets = _record_offsets(shard)
    with open(shard, 'r+b') as f:
      f.truncate(offsets[2])  # records 0 and 1 intact, 2 gone
    held = 5
  message = (rf'split train of {re.escape(data)} holds {held} records but '
             r'its manifest states 6')
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    _frames(data)
  bad_records = pipeline.BadRecords()
  frames, _ = _frames(data, 'skip', bad_records)
  assert len(frames) == held
  assert re.search(message, bad_records.files[data])
  # Intact, the same directory reads through; a directory whose manifest
  # states no count is not checked.
  good = _dataset_dir(tmp_path / 'good', [[0, 1, 2], [3, 4, 5]], 6)
  assert sorted(_frames(good)[0]) == [0, 1, 2, 3, 4, 5]
  uncounted = _dataset_dir(tmp_path / 'uncounted', [[0, 1], [2]], None)
  assert sorted(_frames(uncounted)[0]) == [0, 1, 2]
