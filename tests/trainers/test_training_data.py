"""trainers/training_data.py: resolving a run's data (a directory of shards
or a mixture) to a DataInfo, with clear errors for what is not there."""
import os
import shutil

import pytest

import trainer_test_model
from trainers import run_config
from trainers import training_data
from zoo.data import mixture as mixture_lib


def _config():
  return run_config.make_config(
      run_config.get_entry(trainer_test_model.NAME), 'smoke')


def test_a_directory_of_shards(tiny_data):
  info = training_data.resolve_data(tiny_data, _config(), progress=False)
  assert (info.name, info.directory) == ('tfrecords', tiny_data)
  assert info.splits == ('train', 'test')
  assert info.seed == 0  # the dataset's manifest's, not the data_seed
  assert info.train_data == info.test_data == tiny_data
  recorded = info.to_dict()
  assert recorded['dir'] == os.path.abspath(tiny_data)
  assert (recorded['name'], recorded['seed']) == ('tfrecords', 0)


def test_missing_directory_or_split_is_a_clear_error(tiny_data, tmp_path):
  with pytest.raises(ValueError, match='is not a directory'):
    training_data.resolve_data(str(tmp_path / 'nowhere'), _config())
  train_only = tmp_path / 'train_only'
  shutil.copytree(tiny_data, train_only)
  for name in os.listdir(train_only):
    if name.startswith('test-'):
      os.remove(train_only / name)
  with pytest.raises(FileNotFoundError, match='test'):
    training_data.resolve_data(str(train_only), _config())
  # Training alone needs no test split.
  info = training_data.resolve_data(str(train_only), _config(),
                                    splits=('train',))
  assert info.splits == ('train',)


def test_a_mixture_evaluates_on_its_sources_with_a_test_split(tiny_data,
                                                             tmp_path):
  train_only = tmp_path / 'train_only'
  shutil.copytree(tiny_data, train_only)
  for name in os.listdir(train_only):
    if name.startswith('test-'):
      os.remove(train_only / name)
  info = training_data.resolve_data(f'a={tiny_data}:3,b={train_only}:1',
                                    _config(), progress=False)
  assert info.name == 'mixture'
  assert isinstance(info.train_data, mixture_lib.Mixture)
  assert [s.name for s in info.train_data.sources] == ['a', 'b']
  assert [s.name for s in info.test_data.sources] == ['a']
  assert info.splits == ('train',)  # not every source has a test split
  assert [s['name'] for s in info.to_dict()['sources']] == ['a', 'b']
