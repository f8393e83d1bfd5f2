"""Tests for zoo/data/mixture.py and the pipeline reading a mixture."""
from __future__ import annotations

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from zoo import skeleton as skel  # noqa: E402
from zoo.data import mixture  # noqa: E402
from zoo.data import pipeline  # noqa: E402
from zoo.data import records  # noqa: E402

J = skel.NUM_JOINTS


def write_source(directory, dataset: str, count: int, has_3d: bool,
                 splits=('train', 'test'), shards: int = 2,
                 format_version=None):
  """`count` tiny records per split; frame = index, dataset = `dataset`."""
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(len(dataset))
  image = cv2.imencode('.png', rng.integers(0, 255, (32, 32, 3), np.uint8))[1]
  for split in splits:
    with records.ShardedWriter(str(directory), split, shards) as writer:
      for i in range(count):
        joints2d = rng.uniform(8, 24, (J, 2))
        fields = {'image/encoded': image.tobytes(), 'joints2d_px': joints2d,
                  'intrinsics': np.array([[40, 0, 16], [0, 40, 16], [0, 0, 1]]),
                  'box_xywh': np.array([4., 4., 24., 24.]), 'dataset': dataset,
                  'frame': i, 'image/height': 32, 'image/width': 32}
        if has_3d:
          fields['joints3d_cam_mm'] = np.concatenate(
              [joints2d - 16, np.full((J, 1), 40.)], -1) * 50
        writer.write(records.make_example(fields))
  manifest = {'dataset': dataset}
  if format_version is not None:
    manifest['format_version'] = format_version
  records.write_manifest(str(directory), manifest)
  return str(directory)


@pytest.fixture(scope='module')
def sources(tmp_path_factory):
  root = tmp_path_factory.mktemp('mixture')
  return {'a': write_source(root / 'a', 'dsa', 12, True),
          'b': write_source(root / 'b', 'dsb', 8, False),
          'c': write_source(root / 'c', 'dsc', 4, True)}


# --- the spec -----------------------------------------------------------------

def test_parse_names_paths_and_weights():
  got = mixture.parse('h36m=/d/h36m:0.6, mpii=/d/mpii:0.4,/d/other,'
                      'synthetic:2')
  assert got == [mixture.Source('h36m', '/d/h36m', 0.6),
                 mixture.Source('mpii', '/d/mpii', 0.4),
                 mixture.Source('other', '/d/other', 1.),
                 mixture.Source('synthetic', 'synthetic', 2.)]
  assert mixture.Mixture(tuple(got[:2])).probabilities == pytest.approx(
      [0.6, 0.4])
  assert mixture.parse(mixture.to_spec(got)) == got


@pytest.mark.parametrize('spec, is_mix', [
    ('synthetic', False), ('/d/h36m', False), ('rel/dir', False),
    ('h36m=/d/h36m', True), ('/d/h36m:0.5', True), ('/a,/b', True)])
def test_is_mixture(spec, is_mix):
  assert mixture.is_mixture(spec) is is_mix


@pytest.mark.parametrize('spec, pattern', [
    ('a=/x:-1', r"source 'a' has weight -1; expected a finite number >= 0"),
    ('a=/x:0,b=/y:0', r'every source has weight 0'),
    ('a=/x:lots', r"source 'a' has weight 'lots', expected a number"),
    ('a=/x,a=/y', r"\['a'\] used more than once"),
    ('a=/x,,b=/y', r'source 2 is empty'),
    ('a=/x:nan', r"source 'a' has weight nan"),
])
def test_bad_specs_name_the_source(spec, pattern):
  with pytest.raises(mixture.MixtureError, match=pattern):
    mixture.parse(spec)


def test_missing_split_and_directory_name_the_source(sources, tmp_path):
  only_test = write_source(tmp_path / 'only_test', 'x', 2, True,
                           splits=('test',))
  srcs = mixture.parse(f'a={sources["a"]},t={only_test}')
  with pytest.raises(mixture.MixtureError,
                     match=r"data source 't' has no 'train' split in .*"
                           r"train-NNNNN-of-NNNNN.tfrecord"):
    mixture.check_splits(srcs, ('train',), records.list_shards)
  mixture.check_splits(srcs, ('test',), records.list_shards)  # fine
  with pytest.raises(mixture.MixtureError,
                     match=r"data source 'n': .* is not a directory"):
    mixture.check_splits(mixture.parse(f'n={tmp_path}/none'), ('train',),
                         records.list_shards)


def test_format_versions_must_agree():
  mixture.check_format_versions({'a': 1, 'b': None}, current=1)
  with pytest.raises(mixture.MixtureError,
                     match=r"different record format versions \{'a': 1, "
                           r"'b': 2\}"):
    mixture.check_format_versions({'a': 1, 'b': 2}, current=1)


# --- the pipeline ------------------------------------------------------------

def _examples(data, **kwargs):
  kwargs.setdefault('input_size', 16)
  kwargs.setdefault('batch_size', 10)
  split = kwargs.pop('split', 'train')
  out = {'source': [], 'dataset': [], 'frame': [], 'has_3d': []}
  for batch in pipeline.make_dataset(data, split, **kwargs):
    for key in out:
      out[key] += list(batch[key].numpy())
  return {k: np.array(v) for k, v in out.items()}


def test_training_samples_by_weight_with_source_names(sources):
  mix = mixture.Mixture((mixture.Source('a', sources['a'], 3.),
                         mixture.Source('b', sources['b'], 1.),
                         mixture.Source('c', sources['c'], 0.)))
  n = 400
  ds = pipeline.make_dataset(mix, 'train', input_size=16, batch_size=40,
                             training=True, seed=3, deterministic=True)
  got = {'source': [], 'dataset': [], 'has_3d': []}
  for batch in ds.take(n // 40):
    for key in got:
      got[key] += list(batch[key].numpy())
  src = np.array(got['source'])
  # Each example's source name is that of the directory it came from.
  want = {b'a': b'dsa', b'b': b'dsb'}
  assert all(want[s] == d for s, d in zip(src, got['dataset']))
  assert set(src) == {b'a', b'b'}  # weight 0: never drawn
  frac = np.mean(src == b'a')
  sigma = np.sqrt(0.75 * 0.25 / n)
  assert abs(frac - 0.75) < 5 * sigma, frac
  np.testing.assert_array_equal(np.array(got['has_3d']), src == b'a')


def test_evaluation_reads_every_source_once(sources):
  mix = mixture.Mixture((mixture.Source('a', sources['a'], 1.),
                         mixture.Source('b', sources['b'], 5.)))
  got = _examples(mix, split='test', training=False)
  for name, count in ((b'a', 12), (b'b', 8)):
    frames = got['frame'][got['source'] == name]
    assert sorted(frames) == list(range(count))


def test_plain_directory_source_is_the_dataset(sources):
  got = _examples(sources['b'], split='test', training=False)
  assert set(got['source']) == {b'dsb'}


def test_multi_worker_shards_each_source(sources):
  mix = mixture.Mixture((mixture.Source('a', sources['a'], 1.),
                         mixture.Source('c', sources['c'], 1.)))
  seen = []
  for worker in range(2):
    got = _examples(mix, split='test', training=False, seed=0,
                    num_input_pipelines=2, input_pipeline_id=worker)
    seen.append({(s, f) for s, f in zip(got['source'], got['frame'])})
  assert not seen[0] & seen[1]
  assert seen[0] | seen[1] == ({(b'a', i) for i in range(12)}
                               | {(b'c', i) for i in range(4)})
  with pytest.raises(ValueError, match='same seed= on every worker'):
    pipeline.make_dataset(mix, 'test', input_size=16, batch_size=2,
                          training=True, num_input_pipelines=2,
                          input_pipeline_id=0)


def test_missing_split_in_pipeline_names_the_source(sources, tmp_path):
  only_test = write_source(tmp_path / 'only_test', 'x', 2, True,
                           splits=('test',))
  mix = mixture.Mixture((mixture.Source('a', sources['a'], 1.),
                         mixture.Source('t', only_test, 1.)))
  with pytest.raises(mixture.MixtureError, match="data source 't'.*'train'"):
    pipeline.make_dataset(mix, 'train', input_size=16, batch_size=2,
                          training=True, seed=0)


def test_source_counts():
  import tensorflow as tf
  counts = mixture.SourceCounts()
  counts.count(tf.constant([b'a', b'b', b'a']))
  counts.count(tf.constant([b'a']))
  assert counts.counts() == {'a': 3, 'b': 1}
  assert counts.summary() == 'a 3 (75.0%), b 1 (25.0%)'
