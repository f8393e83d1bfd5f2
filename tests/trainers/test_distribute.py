"""Tests for trainers/distribute.py (the strategies themselves run in
test_run.py, mirrored in a subprocess)."""
import keras
import pytest
import tensorflow as tf

from trainers import distribute


def test_validate_choice_lists_choices():
  with pytest.raises(ValueError, match="unknown strategy 'x'; valid choices "
                                       'are auto, default, mirrored'):
    distribute.validate_choice('strategy', 'x', distribute.STRATEGIES)
  assert distribute.validate_choice('precision', 'float32',
                                    distribute.PRECISIONS) == 'float32'


def test_default_strategy_is_chief_and_checks_batch():
  strategy = distribute.make_strategy('default')
  assert strategy.num_replicas_in_sync == 1
  assert distribute.is_chief(strategy)
  assert distribute.task_name(strategy) == 'local'
  assert distribute.strategy_name(strategy) == 'default'
  assert distribute.check_batch_size(3, strategy) == 3
  with pytest.raises(ValueError, match='batch size 0'):
    distribute.check_batch_size(0, strategy)


def test_auto_without_gpus_is_default():
  if tf.config.list_physical_devices('GPU'):
    pytest.skip('this machine has GPUs')
  assert distribute.make_strategy('auto') is tf.distribute.get_strategy()


def test_multi_worker_needs_tf_config(monkeypatch):
  monkeypatch.delenv('TF_CONFIG', raising=False)
  with pytest.raises(ValueError, match='TF_CONFIG'):
    distribute.make_strategy('multi_worker')
  monkeypatch.setenv('TF_CONFIG', '{not json')
  with pytest.raises(ValueError, match='not valid JSON'):
    distribute.tf_config_summary()


def test_set_precision_returns_previous_policy():
  previous = distribute.set_precision('mixed_bfloat16')
  try:
    assert keras.mixed_precision.global_policy().name == 'mixed_bfloat16'
  finally:
    keras.mixed_precision.set_global_policy(previous)
  with pytest.raises(ValueError, match='valid choices are float32'):
    distribute.set_precision('float64')
