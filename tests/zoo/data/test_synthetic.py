"""Tests for zoo/data/synthetic.py: records, determinism, splits, caching."""
import glob
import json
import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from zoo import geometry
from zoo import skeleton as skel
from zoo.data import joint_angles
from zoo.data import people
from zoo.data import records
from zoo.data import synthetic


@pytest.fixture(scope='module')
def examples():
  return [synthetic.render_example(7, 'train', i)[0] for i in range(12)]


def test_2d_labels_are_projections_of_3d_labels(examples):
  for f in examples:
    k = np.asarray(f['intrinsics'], np.float32).astype(np.float64)
    cam = np.asarray(f['joints3d_cam_mm'], np.float32).astype(np.float64)
    px = np.asarray(f['joints2d_px'], np.float32)
    np.testing.assert_allclose(geometry.project(cam, k), px, atol=0.5)
    ext = np.asarray(f['extrinsics'], np.float32).astype(np.float64)
    world = np.asarray(f['joints3d_world_mm'], np.float32).astype(np.float64)
    np.testing.assert_allclose(geometry.world_to_camera(world, ext), cam,
                               atol=0.5)
    # World frame: z up, ground at 0; camera frame: person in front.
    assert world[:, 2].min() > 0. and world[10, 2] > 900.
    assert np.all(cam[:, 2] > 2000.)


def test_record_fields(examples):
  for i, f in enumerate(examples):
    image = cv2.imdecode(np.frombuffer(f['image/encoded'], np.uint8),
                         cv2.IMREAD_COLOR)
    assert image.shape == (320, 320, 3)
    assert f['image/height'] == f['image/width'] == 320
    assert f['dataset'] == 'synthetic' and f['frame'] == i
    assert f['subject'] in people.SPLITS['train']
    assert f['action'] in joint_angles.ACTIONS
    assert f['has_3d'] == 1. and f['has_camera'] == 1.
    x, y, w, h = f['box_xywh']
    assert 0 <= x and 0 <= y and x + w <= 320 and y + h <= 320 and w > 10
    # The box holds the 2D joints that are in the image.
    inside = f['joint_in_image'].astype(bool)
    j = f['joints2d_px'][inside]
    assert np.all(j >= [x - 1, y - 1]) and np.all(j <= [x + w + 1, y + h + 1])
    # Bone lengths of the labels are the subject's.
    bones = skel.bone_lengths(f['joints3d_cam_mm'])
    np.testing.assert_allclose(
        bones, people.SUBJECT_BY_NAME[f['subject']].bone_lengths_mm,
        rtol=1e-6)
  actions = {f['action'] for f in examples}
  assert len(actions) >= 5


def test_train_and_test_subjects_differ():
  test = {synthetic.render_example(0, 'test', i)[0]['subject']
          for i in range(16)}
  assert test <= set(people.SPLITS['test']) and len(test) == 2
  assert not test & set(people.SPLITS['train'])
  # Different splits never share an example stream.
  a = synthetic.render_example(0, 'train', 3)[0]
  b = synthetic.render_example(0, 'test', 3)[0]
  assert not np.allclose(a['joints3d_world_mm'], b['joints3d_world_mm'])


def _read(data_dir, split):
  paths = records.list_shards(data_dir, split)
  ds = tf.data.TFRecordDataset(paths).map(records.parse_example)
  return list(ds.as_numpy_iterator())


def test_generate_writes_parseable_shards(tmp_path):
  out = str(tmp_path / 'data')
  manifest = synthetic.generate(out, 'train', 6, seed=2, num_shards=2,
                                num_workers=2, progress=False)
  assert manifest['num_examples'] == 6 and manifest['seed'] == 2
  assert manifest['subjects'] == list(people.SPLITS['train'])
  assert manifest['actions'] == list(joint_angles.ACTIONS)
  assert manifest['format_version'] == records.FORMAT_VERSION
  assert manifest['generator_version'] == synthetic.GENERATOR_VERSION
  assert manifest['skeleton']['joint_names'] == list(skel.H36M17.joint_names)
  with open(os.path.join(out, 'train_manifest.json')) as fh:
    assert json.load(fh) == manifest
  assert len(glob.glob(os.path.join(out, 'train-*-of-00002.tfrecord'))) == 2
  parsed = _read(out, 'train')
  assert len(parsed) == 6
  direct = {f['frame']: f for f in (synthetic.render_example(2, 'train', i)[0]
                                    for i in range(6))}
  for ex in parsed:
    for name, shape in records.FLOAT_FIELDS.items():
      assert ex[name].shape == shape, name
    assert ex['dataset'] == b'synthetic' and ex['has_3d'] == 1.
    image = tf.io.decode_jpeg(ex['image/encoded']).numpy()
    assert image.shape == (320, 320, 3)
    want = direct[ex['frame']]
    np.testing.assert_allclose(ex['joints2d_px'], want['joints2d_px'],
                               rtol=1e-6)
    assert ex['subject'].decode() == want['subject']
    assert ex['camera'].decode() == f"train-{ex['frame']:08d}"
  # Regenerating with fewer shards removes the stale ones.
  synthetic.generate(out, 'train', 6, seed=2, num_shards=1, num_workers=1,
                     progress=False)
  assert [os.path.basename(p) for p in records.list_shards(out, 'train')] == [
      'train-00000-of-00001.tfrecord']


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
  def digest(d):
    return {os.path.basename(p): open(p, 'rb').read()
            for p in sorted(glob.glob(os.path.join(d, '*')))}

  a, b, c = (str(tmp_path / n) for n in 'abc')
  synthetic.generate(a, 'test', 20, seed=11, num_shards=2, num_workers=1,
                     progress=False)
  synthetic.generate(b, 'test', 20, seed=11, num_shards=2, num_workers=2,
                     progress=False)
  synthetic.generate(c, 'test', 20, seed=12, num_shards=2, num_workers=1,
                     progress=False)
  da, db, dc = digest(a), digest(b), digest(c)
  assert da == db
  assert da.keys() == dc.keys()
  shard = 'test-00000-of-00002.tfrecord'
  assert da[shard] != dc[shard]


def test_ensure_dataset_creates_then_reuses(tmp_path, monkeypatch):
  cache = str(tmp_path / 'cache')
  path = synthetic.ensure_dataset(4, 3, seed=1, cache_dir=cache,
                                  num_workers=1, progress=False)
  assert os.path.dirname(path) == cache
  name = os.path.basename(path)
  assert f'f{records.FORMAT_VERSION}' in name and 'seed1' in name
  assert 'train4' in name and 'test3' in name
  assert len(_read(path, 'train')) == 4 and len(_read(path, 'test')) == 3
  assert os.listdir(cache) == [name]  # no temporary leftovers

  def fail(*args, **kwargs):
    raise AssertionError('regenerated a cached dataset')

  monkeypatch.setattr(synthetic, 'generate', fail)
  assert synthetic.ensure_dataset(4, 3, seed=1, cache_dir=cache) == path
  monkeypatch.setenv('POSE3D_ZOO_CACHE', cache)
  assert synthetic.ensure_dataset(4, 3, seed=1) == path


def test_preview_contact_sheet(tmp_path):
  path = str(tmp_path / 'sheet.png')
  sheet = synthetic.preview(path, num_examples=2, columns=2)
  image = cv2.imread(path)
  assert image is not None and image.shape == sheet.shape
  assert image.shape[1] > 2 * 320


def test_bad_arguments():
  with pytest.raises(ValueError, match='split'):
    synthetic.render_example(0, 'validation', 0)
  with pytest.raises(ValueError, match='num_examples'):
    synthetic.generate('/tmp/unused', 'train', 0)
  with pytest.raises(ValueError, match='num_shards'):
    synthetic.generate('/tmp/unused', 'train', 2, num_shards=3)


def test_cli(tmp_path):
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__)))))
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2',
             PYTHONPATH=root + os.pathsep + os.environ.get('PYTHONPATH', ''))
  out = str(tmp_path / 'cli')
  done = subprocess.run(
      [sys.executable, '-m', 'zoo.data.synthetic', f'--out_dir={out}',
       '--split=test', '--num_examples=3', '--seed=4', '--num_shards=1'],
      env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert 'synthetic test' in done.stderr  # the progress bar
  assert records.read_manifest(out, 'test_manifest.json')['num_examples'] == 3
  sheet = str(tmp_path / 'p.png')
  assert synthetic.main([f'--preview={sheet}', '--num_examples=2']) == 0
  assert cv2.imread(sheet) is not None
  with pytest.raises(SystemExit) as e:
    synthetic.main([f'--out_dir={out}'])
  assert e.value.code == 2
