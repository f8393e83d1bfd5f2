"""Keras callbacks of the trainer: global step, checkpoints, stop on signals and
non-finite losses, TensorBoard scalars, a tqdm progress bar.

`trainers.train_lib` runs `model.fit` in "epochs" of `log_every` steps (Keras
resets its loss mean every epoch, so the logged loss is the mean over the last
window, and the fit iterator is kept across epochs). `TrainState` carries the
global step (resumed runs start at the restored step) and throughput between
the callbacks; `StepTracker` must come first in the callback list.
"""
from __future__ import annotations

import dataclasses
import math
import signal
import time
from typing import Any

from absl import logging
import keras
import tensorflow as tf
from tensorflow.core.framework import summary_pb2
import tqdm


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or infinite."""


@dataclasses.dataclass
class TrainState:
  """Global-step bookkeeping shared by the trainer's callbacks."""
  start_step: int
  target_step: int
  batch_size: int
  step: int = 0
  loss: float = float('nan')
  # Throughput: the first step (tracing) is excluded.
  first_step_end: float | None = None
  last_step_end: float | None = None
  window_start: float | None = None
  window_steps: int = 0
  examples_per_second: float = float('nan')
  stopped_by_signal: int | None = None

  def __post_init__(self):
    self.step = self.start_step

  @property
  def steps_done(self) -> int:
    return self.step - self.start_step

  def steady_examples_per_second(self) -> float:
    """Examples/s over all steps after the first one of this run."""
    if self.first_step_end is None or self.steps_done < 2:
      return float('nan')
    elapsed = self.last_step_end - self.first_step_end
    return (self.steps_done - 1) * self.batch_size / max(elapsed, 1e-9)


class StopRequest:
  """Turns SIGINT / SIGTERM into a request to save and stop (a context).

  The first signal sets `signum`; training saves a checkpoint at the end of
  the current step and returns. A second signal restores the previous
  handlers and re-delivers itself (so a stuck run can still be killed).
  Handlers can only be installed in the main thread; elsewhere this does
  nothing.
  """

  SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self):
    self.signum: int | None = None
    self._previous: dict[int, Any] = {}

  def _handle(self, signum, frame):
    del frame
    if self.signum is not None:
      self._restore()
      signal.raise_signal(signum)
      return
    self.signum = signum
    logging.warning('Received %s: saving a checkpoint after this step and '
                    'stopping (send it again to stop at once).',
                    signal.Signals(signum).name)

  def _restore(self):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}

  def __enter__(self):
    try:
      for signum in self.SIGNALS:
        self._previous[signum] = signal.signal(signum, self._handle)
    except ValueError:  # not the main thread
      self._restore()
    return self

  def __exit__(self, *exc):
    self._restore()
    return False


class StepTracker(keras.callbacks.Callback):
  """Advances the global step, records the loss and throughput; stops at the
  target step. Must be the first callback."""

  def __init__(self, state: TrainState):
    super().__init__()
    self.state = state

  def on_train_batch_end(self, batch, logs=None):
    state = self.state
    now = time.perf_counter()
    state.step += 1
    state.last_step_end = now
    if state.first_step_end is None:
      state.first_step_end = now
      state.window_start, state.window_steps = now, 0
    else:
      state.window_steps += 1
      elapsed = now - state.window_start
      if elapsed > 0:
        state.examples_per_second = (state.window_steps * state.batch_size /
                                     elapsed)
    if logs and 'loss' in logs:
      state.loss = float(logs['loss'])
    if state.step >= state.target_step:
      self.model.stop_training = True

  def on_epoch_begin(self, epoch, logs=None):
    # Throughput windows follow the log windows (after the first step).
    if self.state.first_step_end is not None:
      self.state.window_start = time.perf_counter()
      self.state.window_steps = 0


class CheckpointSaver(keras.callbacks.Callback):
  """Saves every `every` steps, on a stop request and at the target step;
  stops with NonFiniteLossError (without saving) when the loss is NaN/inf."""

  def __init__(self, state: TrainState, checkpoint, every: int,
               stop_request: StopRequest | None = None):
    super().__init__()
    self.state = state
    self.checkpoint = checkpoint
    self.every = max(int(every), 1)
    self.stop_request = stop_request
    self.last_saved = state.start_step

  def on_train_batch_end(self, batch, logs=None):
    state = self.state
    if not math.isfinite(state.loss):
      self.model.stop_training = True
      latest = self.checkpoint.latest if self.checkpoint else None
      raise NonFiniteLossError(
          f'the training loss became {state.loss} at step {state.step}; '
          f'training stopped without saving. The last good checkpoint is '
          f'{latest or "none (no checkpoint was written yet)"}. Lower the '
          'learning rate or check the data.')
    signum = self.stop_request.signum if self.stop_request else None
    if signum is not None:
      state.stopped_by_signal = signum
      self.model.stop_training = True
      self._save()
      return
    if state.step % self.every == 0 or state.step >= state.target_step:
      self._save()

  def _save(self):
    if self.checkpoint is not None and self.state.step != self.last_saved:
      self.checkpoint.save(self.state.step)
      self.last_saved = self.state.step


# TensorBoard's scalar-plugin metadata, so the events read as scalars. Written
# with tf.summary.write because tf.summary.scalar needs the tensorboard
# package, which the zoo does not require.
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(
        plugin_name='scalars')).SerializeToString()


def write_scalar(name: str, value: float, step: int) -> None:
  """A TensorBoard scalar into the default summary writer."""
  tf.summary.write(name, tf.constant(float(value), tf.float32),
                   step=tf.constant(int(step), tf.int64),
                   metadata=_SCALAR_METADATA)


def _learning_rate(optimizer) -> float:
  try:
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
  except (TypeError, ValueError, AttributeError):
    return float('nan')


class TensorBoardScalars(keras.callbacks.Callback):
  """loss (mean over the window), learning rate and examples/s per window."""

  def __init__(self, state: TrainState, logdir: str):
    super().__init__()
    self.state = state
    self.writer = tf.summary.create_file_writer(logdir)

  def on_epoch_end(self, epoch, logs=None):
    state = self.state
    with self.writer.as_default():
      if logs and 'loss' in logs:
        write_scalar('train/loss', float(logs['loss']), state.step)
      write_scalar('train/learning_rate',
                   _learning_rate(self.model.optimizer), state.step)
      if math.isfinite(state.examples_per_second):
        write_scalar('train/examples_per_second', state.examples_per_second,
                     state.step)
    self.writer.flush()

  def on_train_end(self, logs=None):
    self.writer.flush()


class LogLines(keras.callbacks.Callback):
  """One absl log line per window: step, loss, examples/s."""

  def __init__(self, state: TrainState):
    super().__init__()
    self.state = state

  def on_epoch_end(self, epoch, logs=None):
    state = self.state
    logging.info('step %d/%d  loss %.5g  %.1f examples/s', state.step,
                 state.target_step, state.loss, state.examples_per_second)


class SourceCountLog(keras.callbacks.Callback):
  """With a mixture: one absl log line per window with the examples drawn
  from each source so far (zoo.data.mixture.SourceCounts)."""

  def __init__(self, state: TrainState, counts):
    super().__init__()
    self.state = state
    self.counts = counts

  def on_epoch_end(self, epoch, logs=None):
    logging.info('step %d: examples per source: %s', self.state.step,
                 self.counts.summary())


class ProgressBar(keras.callbacks.Callback):
  """A tqdm bar over global steps with the window loss and examples/s."""

  def __init__(self, state: TrainState, enabled: bool = True,
               desc: str = 'train'):
    super().__init__()
    self.state = state
    self.enabled = enabled
    self.desc = desc
    self.bar = None

  def on_train_begin(self, logs=None):
    self.bar = tqdm.tqdm(total=self.state.target_step,
                         initial=self.state.start_step, unit='step',
                         desc=self.desc, dynamic_ncols=True,
                         disable=not self.enabled)

  def on_train_batch_end(self, batch, logs=None):
    if self.bar is None:
      return
    self.bar.update(1)
    postfix = {'loss': f'{self.state.loss:.4g}'}
    if math.isfinite(self.state.examples_per_second):
      postfix['ex/s'] = f'{self.state.examples_per_second:.1f}'
    self.bar.set_postfix(postfix, refresh=False)

  def on_train_end(self, logs=None):
    if self.bar is not None:
      self.bar.close()
      self.bar = None
