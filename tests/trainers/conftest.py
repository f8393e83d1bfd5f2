"""Shared fixtures of the trainer tests: a tiny dataset and one trained run."""
import os

import pytest

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import trainer_test_model  # noqa: E402  (registers 'trainer_test')


@pytest.fixture(scope='session')
def tiny_data(tmp_path_factory):
  return trainer_test_model.write_dataset(
      str(tmp_path_factory.mktemp('tiny_data')))


@pytest.fixture(scope='session')
def trained_run(tiny_data, tmp_path_factory):
  """One 4-step run with evaluation, shared by the tests that only read it."""
  from trainers import train_lib
  workdir = str(tmp_path_factory.mktemp('trained_run'))
  return train_lib.train(trainer_test_model.NAME, preset='smoke',
                         workdir=workdir, data=tiny_data, steps=4,
                         strategy='default', seed=1, deterministic=True,
                         progress=False, precision='float32',
                         command='pytest trained_run')
