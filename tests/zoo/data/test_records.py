"""Tests for zoo/data/records.py: schema round trip, defaults, atomic writes."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from zoo import skeleton as skel
from zoo.data import records

J = skel.NUM_JOINTS


def _image_bytes(h=24, w=32):
  img = np.zeros((h, w, 3), np.uint8)
  img[..., 0] = np.arange(w, dtype=np.uint8)[None] * 7
  img[..., 1] = np.arange(h, dtype=np.uint8)[:, None] * 9
  img[..., 2] = 200
  return img, tf.io.encode_png(img).numpy()


def _full_fields(seed=0):
  rng = np.random.default_rng(seed)
  _, png = _image_bytes()
  return {
      'image/encoded': png,
      'joints2d_px': rng.uniform(0, 32, (J, 2)),
      'joints3d_cam_mm': rng.normal(size=(J, 3)) * 300 + [0, 0, 4000],
      'joints3d_world_mm': rng.normal(size=(J, 3)) * 300,
      'intrinsics': records.default_intrinsics(24, 32),
      'extrinsics': rng.normal(size=(3, 4)),
      'box_xywh': [1., 2., 20., 22.],
      'joint_valid_2d': rng.integers(0, 2, J),
      'joint_valid_3d': rng.integers(0, 2, J),
      'joint_in_image': rng.integers(0, 2, J),
      'joint_self_occluded': rng.integers(0, 2, J),
      'has_3d': 1.,
      'has_camera': 1.,
      'dataset': 'synthetic',
      'subject': 'S1',
      'action': b'walking',
      'camera': 'cam2',
      'frame': 1234,
      'image/height': 24,
      'image/width': 32,
  }


def _round_trip(fields):
  data = records.make_example(fields).SerializeToString()
  return {k: v.numpy() for k, v in records.parse_example(
      tf.constant(data)).items()}


def test_round_trip_all_fields():
  fields = _full_fields()
  parsed = _round_trip(fields)
  assert set(parsed) == (set(records.FLOAT_FIELDS) | set(records.STRING_FIELDS)
                         | set(records.INT_FIELDS))
  for name, shape in records.FLOAT_FIELDS.items():
    assert parsed[name].shape == shape, name
    assert parsed[name].dtype == np.float32
    np.testing.assert_allclose(parsed[name],
                               np.asarray(fields[name], np.float32),
                               err_msg=name)
  for name in records.STRING_FIELDS:
    want = fields[name]
    assert parsed[name] == (want.encode() if isinstance(want, str) else want)
  for name in records.INT_FIELDS:
    assert parsed[name] == fields[name]
  img, _ = _image_bytes()
  np.testing.assert_array_equal(
      records.decode_image(tf.constant(parsed['image/encoded'])).numpy(), img)


def test_parse_in_a_dataset_map_keeps_static_shapes():
  data = records.make_example(_full_fields()).SerializeToString()
  ds = tf.data.Dataset.from_tensors(data).map(records.parse_example)
  spec = ds.element_spec
  for name, shape in records.FLOAT_FIELDS.items():
    assert tuple(spec[name].shape) == shape, name


def test_defaults_and_masks_for_2d_only_record():
  _, png = _image_bytes()
  joints2d = np.ones((J, 2))
  parsed = _round_trip({'image/encoded': png, 'joints2d_px': joints2d,
                        'intrinsics': np.eye(3), 'box_xywh': [0, 0, 5, 5]})
  np.testing.assert_array_equal(parsed['joint_valid_2d'], np.ones(J))
  np.testing.assert_array_equal(parsed['joint_valid_3d'], np.zeros(J))
  np.testing.assert_array_equal(parsed['joint_in_image'], np.ones(J))
  np.testing.assert_array_equal(parsed['joint_self_occluded'], np.zeros(J))
  np.testing.assert_array_equal(parsed['joints3d_cam_mm'], np.zeros((J, 3)))
  np.testing.assert_array_equal(parsed['extrinsics'], np.eye(3, 4))
  assert parsed['has_3d'] == 0 and parsed['has_camera'] == 0
  assert parsed['subject'] == b'' and parsed['frame'] == 0
  # Giving 3D labels and extrinsics flips the defaults.
  parsed = _round_trip({'image/encoded': png, 'joints2d_px': joints2d,
                        'intrinsics': np.eye(3), 'box_xywh': [0, 0, 5, 5],
                        'joints3d_cam_mm': np.ones((J, 3)),
                        'extrinsics': np.eye(3, 4)})
  np.testing.assert_array_equal(parsed['joint_valid_3d'], np.ones(J))
  assert parsed['has_3d'] == 1 and parsed['has_camera'] == 1


def test_bad_fields_are_named():
  fields = _full_fields()
  bad = dict(fields, joints3d_cam_mm=np.zeros((16, 3)))
  with pytest.raises(ValueError, match=r"'joints3d_cam_mm'.*\(16, 3\).*"
                     r"\(17, 3\)"):
    records.make_example(bad)
  missing = {k: v for k, v in fields.items() if k != 'box_xywh'}
  with pytest.raises(ValueError, match='box_xywh'):
    records.make_example(missing)
  with pytest.raises(ValueError, match='joints_3d'):
    records.make_example(dict(fields, joints_3d=np.zeros((J, 3))))


def test_default_intrinsics():
  k = records.default_intrinsics(480, 640, fov_deg=60.)
  assert k[0, 2] == pytest.approx(319.5) and k[1, 2] == pytest.approx(239.5)
  assert k[0, 0] == k[1, 1] == pytest.approx(320. / np.tan(np.deg2rad(30.)),
                                             rel=1e-6)


def _read_all(paths):
  return [bytes(r.numpy()) for r in tf.data.TFRecordDataset(paths)]


def test_sharded_writer_round_robin(tmp_path):
  examples = [records.make_example(_full_fields(i)) for i in range(7)]
  with records.ShardedWriter(str(tmp_path), 'train', 3) as writer:
    for ex in examples[:-1]:
      writer.write(ex)
    writer.write(examples[-1].SerializeToString())  # bytes are accepted too
  assert writer.count == 7
  names = sorted(os.listdir(tmp_path))
  assert names == [f'train-{i:05d}-of-00003.tfrecord' for i in range(3)]
  paths = records.list_shards(str(tmp_path), 'train')
  assert [os.path.basename(p) for p in paths] == names
  per_shard = [_read_all([p]) for p in paths]
  assert [len(s) for s in per_shard] == [3, 2, 2]
  # Round robin: example i goes to shard i % 3.
  for i, ex in enumerate(examples):
    assert per_shard[i % 3][i // 3] == ex.SerializeToString()


def test_sharded_writer_exception_leaves_no_files(tmp_path):
  out = tmp_path / 'ds'
  with pytest.raises(RuntimeError, match='boom'):
    with records.ShardedWriter(str(out), 'test', 2) as writer:
      writer.write(records.make_example(_full_fields()))
      raise RuntimeError('boom')
  assert os.listdir(out) == []
  with pytest.raises(FileNotFoundError, match='test-NNNNN-of-NNNNN'):
    records.list_shards(str(out), 'test')
  with pytest.raises(ValueError, match='num_shards'):
    records.ShardedWriter(str(out), 'test', 0)


def test_sharded_writer_final_names_appear_only_on_close(tmp_path):
  writer = records.ShardedWriter(str(tmp_path), 'train', 1)
  writer.write(records.make_example(_full_fields()))
  assert not any(n.endswith('.tfrecord') for n in os.listdir(tmp_path))
  writer.close()
  assert os.listdir(tmp_path) == ['train-00000-of-00001.tfrecord']


def test_manifest_round_trip(tmp_path):
  manifest = {'counts': {'train': 10, 'test': 4}, 'seed': 3}
  records.write_manifest(str(tmp_path), manifest)
  assert os.listdir(tmp_path) == ['manifest.json']  # no temp file left
  got = records.read_manifest(str(tmp_path))
  assert got['counts'] == manifest['counts'] and got['seed'] == 3
  assert got['format_version'] == records.FORMAT_VERSION
  assert got['skeleton']['joint_names'] == list(skel.H36M17.joint_names)
  assert got['skeleton']['parents'] == list(skel.H36M17.parents)
  with open(tmp_path / 'manifest.json') as f:
    assert json.load(f) == got
  # Explicit values win over the defaults; the input is not modified.
  records.write_manifest(str(tmp_path), {'format_version': 7}, name='m2.json')
  assert records.read_manifest(str(tmp_path), 'm2.json')['format_version'] == 7
  assert 'format_version' not in manifest
  with pytest.raises(FileNotFoundError, match='manifest.json'):
    records.read_manifest(str(tmp_path / 'nowhere'))
