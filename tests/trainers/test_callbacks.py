"""Tests for trainers/callbacks.py: signals, step bookkeeping, scalars."""
import os
import signal

import pytest
import tensorflow as tf

from trainers import callbacks


def test_stop_request_records_signal_and_restores_handlers():
  before = signal.getsignal(signal.SIGTERM)
  with callbacks.StopRequest() as stop:
    assert stop.signum is None
    os.kill(os.getpid(), signal.SIGTERM)  # handled: the process lives on
    assert stop.signum == signal.SIGTERM
  assert signal.getsignal(signal.SIGTERM) is before


def test_second_signal_is_delivered_to_the_previous_handler():
  seen = []
  previous = signal.signal(signal.SIGINT, lambda *a: seen.append('outer'))
  try:
    with callbacks.StopRequest() as stop:
      os.kill(os.getpid(), signal.SIGINT)
      assert stop.signum == signal.SIGINT and not seen
      os.kill(os.getpid(), signal.SIGINT)
      assert seen == ['outer']
  finally:
    signal.signal(signal.SIGINT, previous)


class _FakeModel:
  stop_training = False


def test_step_tracker_and_saver():
  state = callbacks.TrainState(start_step=10, target_step=13, batch_size=4)
  saved = []

  class _Ckpt:
    latest = 'ckpt-12'

    def save(self, step):
      saved.append(step)

  tracker = callbacks.StepTracker(state)
  saver = callbacks.CheckpointSaver(state, _Ckpt(), every=2)
  model = _FakeModel()
  tracker.set_model(model)
  saver.set_model(model)
  for loss in (1., 2., 3.):
    tracker.on_train_batch_end(0, {'loss': loss})
    saver.on_train_batch_end(0)
  assert state.step == 13 and state.steps_done == 3 and state.loss == 3.
  assert saved == [12, 13] and model.stop_training
  assert state.steady_examples_per_second() > 0
  tracker.on_train_batch_end(0, {'loss': float('nan')})
  with pytest.raises(callbacks.NonFiniteLossError,
                     match=r'became nan at step 14.*ckpt-12'):
    saver.on_train_batch_end(0)


def test_write_scalar_is_readable_as_a_scalar(tmp_path):
  writer = tf.summary.create_file_writer(str(tmp_path))
  with writer.as_default():
    callbacks.write_scalar('a/b', 2.5, 7)
  writer.flush()
  values = []
  for name in os.listdir(tmp_path):
    for event in tf.compat.v1.train.summary_iterator(str(tmp_path / name)):
      for v in event.summary.value:
        values.append((v.tag, event.step, tf.make_ndarray(v.tensor).item(),
                       v.metadata.plugin_data.plugin_name))
  assert values == [('a/b', 7, 2.5, 'scalars')]
