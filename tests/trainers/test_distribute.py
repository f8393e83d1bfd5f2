"""Tests for trainers/distribute.py (the strategies themselves run in
test_run.py, mirrored in a subprocess)."""
import keras
import pytest
import tensorflow as tf

from trainers import distribute
from zoo import host


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


def test_auto_precision_follows_the_hardware(tmp_path):
  cpuinfo = tmp_path / 'cpuinfo'
  cpuinfo.write_text('processor\t: 0\nflags\t\t: fpu sse avx2 amx_bf16 '
                     'amx_tile\n\nprocessor\t: 1\nflags\t\t: fpu\n')
  flags = distribute.cpu_flags(str(cpuinfo))
  assert 'amx_bf16' in flags and 'avx2' in flags
  assert distribute.cpu_flags(str(tmp_path / 'missing')) == frozenset()

  choice, why = distribute.resolve_precision('auto', gpus=[], flags=flags)
  assert choice == 'mixed_bfloat16' and 'amx_bf16' in why
  choice, why = distribute.resolve_precision(
      'auto', gpus=[], flags=frozenset({'avx512f', 'avx512_bf16'}))
  assert choice == 'mixed_bfloat16' and 'avx512_bf16' in why
  # A CPU without bfloat16 instructions (mocked flags): float32, and why.
  choice, why = distribute.resolve_precision(
      'auto', gpus=[], flags=frozenset({'avx2', 'avx512f'}))
  assert choice == 'float32' and 'amx_bf16' in why
  choice, why = distribute.resolve_precision('auto', gpus=['GPU:0'],
                                             flags=frozenset())
  assert choice == 'mixed_float16' and 'GPU' in why
  # An explicit choice is kept whatever the hardware.
  assert distribute.resolve_precision('float32', gpus=[], flags=flags)[0] == \
      'float32'
  with pytest.raises(ValueError, match="unknown precision 'half'"):
    distribute.resolve_precision('half')


def test_cpu_threads_are_left_alone_once_initialised(monkeypatch):
  # The test process has initialised TensorFlow already: nothing changes.
  tf.constant(1.)
  before = tf.config.threading.get_inter_op_parallelism_threads()
  monkeypatch.delenv('TF_NUM_INTEROP_THREADS', raising=False)
  if not tf.config.list_physical_devices('GPU'):
    assert distribute.configure_cpu_threads() == (before == 1)
  assert tf.config.threading.get_inter_op_parallelism_threads() == before
  monkeypatch.setenv('TF_NUM_INTEROP_THREADS', '4')
  assert distribute.configure_cpu_threads() is False


def test_cpu_threads_before_initialisation():
  if tf.config.list_physical_devices('GPU'):
    pytest.skip('this machine has GPUs')
  import os
  import subprocess
  import sys
  env = {k: v for k, v in os.environ.items() if k != 'TF_NUM_INTEROP_THREADS'}
  code = ('import tensorflow as tf; from trainers import distribute; '
          'print(distribute.configure_cpu_threads(), '
          'tf.config.threading.get_inter_op_parallelism_threads())')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                       text=True, check=True, env=env).stdout.split()
  assert out[-2:] == ['True', '1']


def test_input_threads_half_the_cores_without_gpus(monkeypatch):
  monkeypatch.setattr(host.os, 'sched_getaffinity', lambda pid: {0, 1})
  assert distribute.input_threads(gpus=[]) == 1
  monkeypatch.setattr(host.os, 'sched_getaffinity',
                      lambda pid: set(range(16)))
  assert distribute.input_threads(gpus=[]) == 8
  monkeypatch.setattr(host.os, 'sched_getaffinity', lambda pid: {0})
  assert distribute.input_threads(gpus=[]) == 1
  # With GPUs the pipeline keeps tf.data's default pool.
  assert distribute.input_threads(gpus=['/physical_device:GPU:0']) is None


def test_training_input_gets_the_private_pool(tiny_data, monkeypatch):
  import trainer_test_model
  from trainers import run_config
  from trainers import training_data
  from zoo import weights
  entry = run_config.get_entry(trainer_test_model.NAME)
  config = run_config.make_config(entry, 'smoke')
  model = weights.build_model(entry, config)
  monkeypatch.setattr(distribute, 'input_threads', lambda: 3)
  dataset = training_data.train_dataset(tiny_data, config, model, seed=0)
  assert dataset.options().threading.private_threadpool_size == 3
  monkeypatch.setattr(distribute, 'input_threads', lambda: None)
  dataset = training_data.train_dataset(tiny_data, config, model, seed=0)
  assert not dataset.options().threading.private_threadpool_size
