"""The data a run trains and evaluates on: the embedded synthetic dataset
(generated once into a cache), a directory of zoo TFRecord shards, or a
mixture of such (zoo.data.mixture), resolved to a DataInfo; and the training
input built from it through the one pipeline (zoo.data.pipeline).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

from absl import logging
import tensorflow as tf

from trainers import distribute
from zoo.data import mixture as mixture_lib
from zoo.data import pipeline
from zoo.data import records
from zoo.data import synthetic

DATA_SYNTHETIC = 'synthetic'


@dataclasses.dataclass
class DataInfo:
  name: str          # 'synthetic', 'tfrecords' or 'mixture'
  directory: str     # the directory (a mixture's: its first source's)
  seed: int | None
  format_version: int | None
  manifest: dict | None = None
  # A mixture (zoo.data.mixture.Mixture) and the part of it that has a test
  # split; None for a single source.
  mixture: Any = None
  test_mixture: Any = None
  # Splits every source holds ('train', 'test').
  splits: tuple[str, ...] = ('train', 'test')

  @property
  def train_data(self):
    """What the pipeline reads for training: a directory or a Mixture."""
    return self.mixture if self.mixture is not None else self.directory

  @property
  def test_data(self):
    """What the pipeline reads for evaluation: a directory or a Mixture."""
    return self.test_mixture if self.test_mixture is not None else \
        self.directory

  def to_dict(self) -> dict[str, Any]:
    out = {'name': self.name, 'dir': os.path.abspath(self.directory),
           'seed': self.seed, 'format_version': self.format_version}
    if self.mixture is not None:
      out['spec'] = self.mixture.spec()
      out['sources'] = [{'name': s.name, 'dir': os.path.abspath(s.path),
                         'weight': s.weight} for s in self.mixture.sources]
    return out


def _split_present(directory: str, split: str) -> bool:
  try:
    records.list_shards(directory, split)
  except FileNotFoundError:
    return False
  return True


def _resolve_mixture(data: str, config: Any, data_seed: int, progress: bool,
                     splits: Sequence[str]) -> DataInfo:
  """A data spec naming several sources (zoo.data.mixture)."""
  sources, synthetic_used = [], False
  for source in mixture_lib.parse(data):
    path = source.path
    if path == DATA_SYNTHETIC:
      synthetic_used = True
      path = synthetic.ensure_dataset(config.train.num_train_examples,
                                      config.train.num_test_examples,
                                      seed=data_seed, progress=progress)
    sources.append(mixture_lib.Source(source.name, path, source.weight))
  mixture_lib.check_splits(sources, [s for s in splits if s != 'test'],
                           records.list_shards)
  versions = {}
  for source in sources:
    try:
      versions[source.name] = records.read_manifest(source.path).get(
          'format_version')
    except FileNotFoundError:
      versions[source.name] = None
  mixture_lib.check_format_versions(versions, records.FORMAT_VERSION)
  test_mixture = None
  if 'test' in splits:
    with_test = [s for s in sources if _split_present(s.path, 'test')]
    if not with_test:
      mixture_lib.check_splits(sources[:1], ('test',), records.list_shards)
    left_out = [s.name for s in sources if s not in with_test]
    if left_out:
      logging.warning('Data sources %s have no test split: evaluation '
                      'leaves them out.', left_out)
    test_mixture = mixture_lib.Mixture(tuple(with_test))
  present = tuple(split for split in ('train', 'test') if all(
      _split_present(s.path, split) for s in sources))
  return DataInfo('mixture', sources[0].path,
                  data_seed if synthetic_used else None,
                  records.FORMAT_VERSION, None,
                  mixture_lib.Mixture(tuple(sources)), test_mixture, present)


def resolve_data(data: str, config: Any, data_seed: int = 0,
                 progress: bool = True,
                 splits: Sequence[str] = ('train', 'test')) -> DataInfo:
  """'synthetic' (generated once into a cache), a directory of shards, or
  a mixture of such (zoo.data.mixture). `splits` are the splits the caller
  needs: a missing one is a clear error (a mixture's sources without a test
  split are left out of its evaluation, with a warning)."""
  if data != DATA_SYNTHETIC and mixture_lib.is_mixture(data):
    return _resolve_mixture(data, config, data_seed, progress, splits)
  if data == DATA_SYNTHETIC:
    directory = synthetic.ensure_dataset(config.train.num_train_examples,
                                         config.train.num_test_examples,
                                         seed=data_seed, progress=progress)
    name = DATA_SYNTHETIC
  else:
    directory = data
    name = 'tfrecords'
    if not os.path.isdir(directory):
      raise ValueError(f'--data must be {DATA_SYNTHETIC!r} or a directory of '
                       f'zoo TFRecords; {directory!r} is not a directory')
    for split in splits:
      records.list_shards(directory, split)  # clear error if missing
  try:
    manifest = records.read_manifest(directory)
  except FileNotFoundError:
    manifest = None
  seed = data_seed if name == DATA_SYNTHETIC else (manifest or {}).get('seed')
  version = (manifest or {}).get('format_version', records.FORMAT_VERSION)
  present = tuple(s for s in ('train', 'test')
                  if _split_present(directory, s))
  return DataInfo(name, directory, seed, version, manifest, splits=present)


def train_dataset(data_dir, config: Any, model, *, seed: int,
                  deterministic: bool = False, on_bad_record: str = 'stop',
                  bad_records=None,
                  input_pipelines: tuple[int, int] = (1, 0),
                  source_counts=None) -> tf.data.Dataset:
  """The training input; `input_pipelines` = (workers, this worker) shards
  it (distribute.input_pipelines); `bad_records` counts skipped input;
  `source_counts` (zoo.data.mixture.SourceCounts) counts examples per
  source. `data_dir` is a directory or a zoo.data.mixture.Mixture."""
  def counted_targets(features):
    source_counts.count(features['source'])
    return model.targets(features)

  map_fn = model.targets if source_counts is None else counted_targets
  dataset = pipeline.make_dataset(
      data_dir, 'train', input_size=config.input_size,
      batch_size=config.train.batch_size, training=True,
      augment=config.augment, map_fn=map_fn, seed=seed,
      deterministic=deterministic, on_bad_record=on_bad_record,
      bad_records=bad_records, num_input_pipelines=input_pipelines[0],
      input_pipeline_id=input_pipelines[1])
  threads = distribute.input_threads()
  if threads is None:
    return dataset
  options = tf.data.Options()
  options.threading.private_threadpool_size = threads
  return dataset.with_options(options)
