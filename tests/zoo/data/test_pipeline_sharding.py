"""Input sharding over workers in zoo/data/pipeline.py (num_input_pipelines,
input_pipeline_id): by file when there are enough files, else by example.

Every record carries a unique frame number, so the examples each pipeline
delivers can be compared directly: disjoint between pipelines, together all
of them, once.
"""
from __future__ import annotations

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import logging  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from zoo.data import pipeline  # noqa: E402

import trainer_test_model as tiny  # noqa: E402  (the tiny record writer)


def _write_files(directory, num_files: int, per_file: int) -> list[str]:
  """num_files files; frame = file * 100 + record."""
  os.makedirs(directory, exist_ok=True)
  paths = []
  for f in range(num_files):
    path = os.path.join(directory, f'train-{f:05d}-of-{num_files:05d}.tfrecord')
    with tf.io.TFRecordWriter(path) as writer:
      for r in range(per_file):
        frame = 100 * f + r
        writer.write(tiny._example(np.random.default_rng(frame), frame,  # pylint: disable=protected-access
                                   'train').SerializeToString())
    paths.append(path)
  return paths


def _frames(files, num, index, training=False, seed=5):
  ds = pipeline.make_dataset(files, 'train', input_size=8, batch_size=2,
                             training=training, repeat=False,
                             drop_remainder=False, seed=seed,
                             num_input_pipelines=num, input_pipeline_id=index)
  return [int(f) for batch in ds for f in batch['frame'].numpy()]


@pytest.fixture
def info_log(caplog):
  previous = logging.get_verbosity()
  logging.set_verbosity(logging.INFO)
  with caplog.at_level('INFO'):
    yield caplog
  logging.set_verbosity(previous)


def test_input_sharding_choice():
  assert pipeline.input_sharding(4, 1) == pipeline.NO_SHARDING
  assert pipeline.input_sharding(4, 2) == pipeline.SHARD_BY_FILE
  assert pipeline.input_sharding(2, 2) == pipeline.SHARD_BY_FILE
  assert pipeline.input_sharding(1, 2) == pipeline.SHARD_BY_DATA
  with pytest.raises(ValueError, match='num_input_pipelines must be >= 1'):
    pipeline.input_sharding(1, 0)


def test_two_workers_four_files_read_disjoint_files(tmp_path, info_log):
  files = _write_files(tmp_path, 4, 3)
  seen = [_frames(files, 2, i, training=True) for i in range(2)]
  # Worker i reads files i and i + 2, whole.
  assert sorted(seen[0]) == [0, 1, 2, 200, 201, 202]
  assert sorted(seen[1]) == [100, 101, 102, 300, 301, 302]
  assert 'input pipeline 0 of 2 shards by FILE: it reads 2 of the 4 record ' \
         'files' in info_log.text


def test_two_workers_one_file_read_disjoint_examples(tmp_path, info_log):
  files = _write_files(tmp_path, 1, 7)
  seen = [_frames(files, 2, i) for i in range(2)]
  assert seen[0] == [0, 2, 4, 6] and seen[1] == [1, 3, 5]
  assert 'input pipeline 1 of 2 shards by DATA' in info_log.text


def test_by_example_with_shuffled_files_stays_disjoint(tmp_path):
  # 2 files for 3 workers: by example; the file order is shuffled (training)
  # and the records interleaved, identically on every worker (same seed).
  files = _write_files(tmp_path, 2, 5)
  seen = [_frames(files, 3, i, training=True) for i in range(3)]
  flat = sorted(f for frames in seen for f in frames)
  assert flat == sorted(100 * f + r for f in range(2) for r in range(5))
  assert [len(s) for s in seen] == [4, 3, 3]


def test_by_example_needs_a_seed(tmp_path):
  files = _write_files(tmp_path, 1, 2)
  with pytest.raises(ValueError, match='pass the same seed= on every worker'):
    pipeline.make_dataset(files, 'train', input_size=8, batch_size=1,
                          training=True, num_input_pipelines=2,
                          input_pipeline_id=1)
  with pytest.raises(ValueError, match=r'input_pipeline_id must be in \[0, 2'):
    pipeline.make_dataset(files, 'train', input_size=8, batch_size=1,
                          training=True, num_input_pipelines=2,
                          input_pipeline_id=2, seed=1)


def test_sharded_pipeline_turns_off_auto_sharding(tmp_path):
  files = _write_files(tmp_path, 2, 1)
  off = tf.data.experimental.AutoShardPolicy.OFF
  sharded = pipeline.make_dataset(files, 'train', input_size=8, batch_size=1,
                                  training=False, num_input_pipelines=2)
  single = pipeline.make_dataset(files, 'train', input_size=8, batch_size=1,
                                 training=False)
  assert sharded.options().experimental_distribute.auto_shard_policy == off
  assert single.options().experimental_distribute.auto_shard_policy != off
