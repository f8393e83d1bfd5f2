"""The trainer: registry entry + config -> strategy, data, fit, checkpoints,
final weights, evaluation. `python -m trainers.run` is a thin flag layer over
`train(...)`, which tests and scripts call in-process.

It never branches on a model name: the registry gives the config (preset +
dotted overrides), an optional `prepare` hook, the builder; the model gives
`targets` (run inside tf.data), `compute_loss` (Keras calls it in `fit`) and
`predict_poses` (evaluation).

Resuming: a rerun with the same workdir restores the latest checkpoint (model,
optimizer state, step) and trains up to the requested step. The input stream
is re-seeded with `seed + start_step` rather than replayed (replaying would
decode and augment every skipped example), so a resumed run sees a different
but reproducible order of examples than an uninterrupted one.

Multi-worker: every worker trains and saves (non-chief workers to a scratch
directory that is deleted at the end, as tf.distribute requires); only the
chief writes the workdir's checkpoints, logs, weights, manifest and metrics,
and evaluates. Resuming needs the chief's workdir readable by all workers.
Each worker reads its own shard of the training data (by file when there are
at least as many shards as workers, else by example; the pipeline logs
which).

Bad input: `on_bad_record='stop'` (default) stops at a bad record or a
corrupt record file with an error naming it; 'skip' skips it, logs it and
counts it (TrainResult.bad_records, the manifest's 'bad_records'). Evaluation
always stops at bad test records. NaN/Inf weights are never saved
(checkpoints.NonFiniteWeightsError); a NaN/Inf loss stops training naming the
step (callbacks.NonFiniteLossError); the last good checkpoint stays.
"""
from __future__ import annotations

import dataclasses
import logging as std_logging
import math
import os
import resource
import shlex
import shutil
import sys
import time
from typing import Any, Mapping, Sequence

from absl import logging
import keras
import tensorflow as tf

from trainers import callbacks as callbacks_lib
from trainers import checkpoints
from trainers import distribute
from trainers import run_config as run_config_lib
from trainers import evaluation
from trainers import run_figure
from trainers import training_data
from zoo import config as config_lib
from zoo import fileio
from zoo import manifest as manifest_lib
from zoo import weights as weights_lib
from zoo.data import mixture as mixture_lib
from zoo.data import pipeline
from zoo.manifest import METRICS_FILE

LOG_FILE = 'train.log'
BASELINE_TRAIN_EXAMPLES = 1000


# ----------------------------------------------------------------------------
# Contract check
# ----------------------------------------------------------------------------

def check_contract(model, element_spec) -> None:
  """Outputs and loss must be float32 (also under mixed precision).

  Checked on a trace of the forward pass and loss for the training input's
  `element_spec` ((x, y) specs): no data is read, so the input `fit` sees is
  untouched.
  """
  x_spec, y_spec = element_spec

  def outputs_and_loss(x, y):
    y_pred = model(x, training=False)
    return y_pred, tf.convert_to_tensor(
        model.compute_loss(x, y, y_pred, None, training=True))

  y_pred, loss = tf.function(outputs_and_loss).get_concrete_function(
      x_spec, y_spec).structured_outputs
  for path, value in _flatten_with_paths(y_pred):
    if value.dtype.is_floating and value.dtype != tf.float32:
      raise TypeError(f'model {model.name!r} output {path} is {value.dtype.name};'
                      ' model outputs must be float32 (give the final layers '
                      "dtype='float32' under mixed precision)")
  if loss.dtype != tf.float32 or loss.shape.rank != 0:
    raise TypeError(f'model {model.name!r} compute_loss returned a '
                    f'{loss.dtype.name} tensor of shape {loss.shape}; expected '
                    'a float32 scalar')


def _flatten_with_paths(value, prefix='outputs'):
  if isinstance(value, Mapping):
    for key, sub in value.items():
      yield from _flatten_with_paths(sub, f'{prefix}[{key!r}]')
  elif isinstance(value, (list, tuple)):
    for i, sub in enumerate(value):
      yield from _flatten_with_paths(sub, f'{prefix}[{i}]')
  elif isinstance(value, tf.Tensor) or hasattr(value, 'dtype'):
    yield prefix, tf.convert_to_tensor(value)


# ----------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------

@dataclasses.dataclass
class TrainResult:
  workdir: str
  start_step: int
  step: int
  interrupted_by: int | None     # signal number if SIGINT/SIGTERM stopped it
  metrics: dict | None
  manifest: dict | None
  model: Any
  # on_bad_record='skip': pipeline.BadRecords.summary() of the training input.
  bad_records: dict | None = None


def default_workdir(model: str, preset: str) -> str:
  return os.path.join('runs', f'{model}_{preset}')


def _command(command: str | Sequence[str] | None) -> str:
  if command is None:
    command = [os.path.basename(sys.executable), *sys.argv]
  if not isinstance(command, str):
    command = shlex.join(command)
  return command


class _FileLog:
  """Mirrors absl logging into WORKDIR/train.log while training.

  Training logs at INFO; when absl flags were never parsed (in-process use)
  absl's level is WARNING, so it is lowered to INFO for the duration.
  """

  def __init__(self, path: str | None):
    self.path = path
    self.handler = None
    self.verbosity = None

  def __enter__(self):
    self.verbosity = logging.get_verbosity()
    if self.verbosity < logging.INFO:
      logging.set_verbosity(logging.INFO)
    if self.path:
      self.handler = std_logging.FileHandler(self.path)
      self.handler.setFormatter(std_logging.Formatter(
          '%(asctime)s %(levelname)s %(message)s'))
      logging.get_absl_logger().addHandler(self.handler)
    return self

  def __exit__(self, *exc):
    if self.handler is not None:
      logging.get_absl_logger().removeHandler(self.handler)
      self.handler.close()
    logging.set_verbosity(self.verbosity)
    return False


def train(model: str, *, preset: str = 'cpu', workdir: str | None = None,
          data: str | None = None, steps: int | None = None,
          batch_size: int | None = None, precision: str = 'auto',
          strategy: str | tf.distribute.Strategy = 'auto', seed: int = 0, data_seed: int = 0,
          init_from: str | None = None, overrides=None,
          run_evaluation: bool = True, flip_test: bool | None = None,
          baseline: bool = True, deterministic: bool = False,
          progress: bool = True, command: str | Sequence[str] | None = None,
          extra_callbacks: Sequence[keras.callbacks.Callback] = (),
          on_bad_record: str = 'stop') -> TrainResult:
  """Trains registered model `model` (see the module docstring).

  Args:
    model: registered model name.
    preset: 'paper' | 'cpu' | 'smoke' (or another preset the model has).
    workdir: output directory (checkpoints/, tb/, model.weights.h5,
      manifest.json, metrics.json, config.json, train.log); an existing one is
      resumed. Default: runs/MODEL_PRESET.
    data: 'synthetic' (embedded dataset, generated on first use), a
      directory of zoo TFRecords with train-* and test-* shards, or a
      mixture 'NAME=DIR:WEIGHT,...' (zoo.data.mixture); None: the config's
      train.data, else 'synthetic'.
    steps, batch_size: shortcuts for the overrides train.steps /
      train.batch_size (the batch is global, split over replicas).
    precision: 'auto' | 'float32' | 'mixed_float16' | 'mixed_bfloat16';
      'auto' picks by hardware (distribute.resolve_precision) and logs why.
    strategy: 'auto' | 'default' | 'mirrored' | 'multi_worker', or a
      strategy object (MultiWorkerMirroredStrategy may be created only once).
    seed: weight initialisation and input order / augmentation.
    data_seed: seed of the generated synthetic dataset (kept separate so runs
      with different seeds evaluate on the same test set).
    init_from: weights to start from when not resuming (fine-tuning): a
      .weights.h5 file, its directory or a workdir.
    overrides: dotted config overrides, as {'train.learning_rate': 1e-3} or
      'key=value' strings.
    run_evaluation: evaluate on the test split at the end (metrics.json).
    flip_test: evaluation flip test (None: the config's flip_test, if any).
    baseline: also measure the mean-pose baseline in metrics.json.
    deterministic: deterministic input pipeline order.
    progress: show tqdm bars.
    command: recorded in the manifest (default: this process's argv).
    extra_callbacks: more Keras callbacks for fit.
    on_bad_record: 'stop' | 'skip': what the training input does at a bad
      record or a corrupt record file (see zoo.data.pipeline).

  Returns:
    TrainResult (metrics None when evaluation was skipped or interrupted).
  """
  entry = run_config_lib.get_entry(model)
  requested_precision = precision
  precision, precision_reason = distribute.resolve_precision(precision)
  distribute.validate_choice('on_bad_record', on_bad_record,
                             pipeline.ON_BAD_RECORD)
  if isinstance(strategy, tf.distribute.Strategy):
    dist, strategy = strategy, distribute.strategy_name(strategy)
  else:
    distribute.validate_choice('strategy', strategy, distribute.STRATEGIES)
    dist = None
  config = run_config_lib.make_config(entry, preset, overrides, steps,
                                      batch_size)
  workdir = os.path.abspath(workdir or default_workdir(model, preset))
  dist = dist or distribute.make_strategy(strategy)
  distribute.check_batch_size(config.train.batch_size, dist)
  chief = distribute.is_chief(dist)
  os.makedirs(workdir, exist_ok=True)
  for leftover in fileio.remove_stale_temporaries(workdir):
    logging.warning('Removed %s, left by a run that was killed.', leftover)
  own_dir = workdir if chief else os.path.join(
      workdir, '.worker_tmp', distribute.task_name(dist))
  _check_workdir(workdir, model)
  os.makedirs(own_dir, exist_ok=True)

  with _FileLog(os.path.join(workdir, LOG_FILE) if chief else None):
    logging.info('Model %s, preset %s, workdir %s, strategy %s (%d replicas'
                 '%s), precision %s.', model, preset, workdir,
                 type(dist).__name__, dist.num_replicas_in_sync,
                 ', ' + distribute.tf_config_summary()
                 if distribute.tf_config_summary() else '', precision)
    if requested_precision == 'auto':
      logging.info('Precision auto -> %s: %s.', precision, precision_reason)
    if data is None:
      data = getattr(config.train, 'data', '') or \
          training_data.DATA_SYNTHETIC
    data_info = training_data.resolve_data(
        data, config, data_seed, progress,
        ('train', 'test') if run_evaluation else ('train',))
    if data_info.mixture is not None:
      logging.info('Data: mixture of %s.', ', '.join(
          f'{s.name} ({p:.0%}) at {s.path}' for s, p in zip(
              data_info.mixture.sources, data_info.mixture.probabilities)))
    else:
      logging.info('Data: %s at %s.', data_info.name, data_info.directory)
    if entry.prepare is not None:
      config = entry.prepare(config, workdir, data_info.directory)
    run_config = {'model': model, 'preset': preset,
                  'config': config_lib.to_dict(config),
                  'data': data_info.to_dict(), 'seed': seed,
                  'precision': precision, 'strategy': strategy,
                  'on_bad_record': on_bad_record,
                  'command': _command(command)}
    if chief:
      fileio.atomic_write_json(
          os.path.join(workdir, manifest_lib.RUN_CONFIG_FILE), run_config)

    previous_policy = distribute.set_precision(precision)
    try:
      return _train(entry, config, preset, workdir, own_dir, chief, dist,
                    data_info, run_config, seed=seed, init_from=init_from,
                    run_evaluation=run_evaluation, flip_test=flip_test,
                    baseline=baseline, deterministic=deterministic,
                    progress=progress, extra_callbacks=extra_callbacks,
                    on_bad_record=on_bad_record)
    finally:
      keras.mixed_precision.set_global_policy(previous_policy)
      if not chief:
        shutil.rmtree(own_dir, ignore_errors=True)
        try:
          os.rmdir(os.path.dirname(own_dir))  # .worker_tmp, once empty
        except OSError:
          pass


def _check_workdir(workdir: str, model: str) -> None:
  path = os.path.join(workdir, manifest_lib.RUN_CONFIG_FILE)
  if os.path.exists(path):
    previous = fileio.read_json(path)
    if previous.get('model') not in (None, model):
      raise ValueError(f'workdir {workdir} belongs to model '
                       f'{previous["model"]!r}, not {model!r}; choose another '
                       '--workdir')


def _train(entry, config, preset, workdir, own_dir, chief, dist, data_info,
           run_config, *, seed, init_from, run_evaluation, flip_test,
           baseline, deterministic, progress, extra_callbacks,
           on_bad_record='stop') -> TrainResult:
  """Builds or resumes the model, fits it to the target step and (chief
  only) writes the final weights, evaluates and writes metrics.json."""
  model, ckpt, start_step, final = _build_and_restore(
      entry, config, preset, workdir, own_dir, dist, run_config, seed=seed,
      init_from=init_from)
  target = int(config.train.steps)
  state = callbacks_lib.TrainState(start_step=start_step, target_step=target,
                                   batch_size=config.train.batch_size)
  bad_records = pipeline.BadRecords() if on_bad_record == 'skip' else None
  source_counts = None
  if data_info.mixture is not None:
    source_counts = mixture_lib.SourceCounts()
  train_seconds = 0.
  if start_step < target:
    train_seconds = _fit(
        model, ckpt, state, config, data_info, dist, chief, workdir,
        seed=seed + start_step, deterministic=deterministic,
        on_bad_record=on_bad_record, bad_records=bad_records,
        source_counts=source_counts, progress=progress,
        extra_callbacks=extra_callbacks)
  else:
    logging.info('Already trained to step %d (target %d); not training.',
                 start_step, target)

  interrupted = state.stopped_by_signal
  result = TrainResult(workdir, start_step, state.step, interrupted, None,
                       None, model)
  if bad_records is not None:
    result.bad_records = bad_records.summary()
    if len(bad_records):
      logging.warning('Skipped bad training input: %d bad records, %d '
                      'corrupt or truncated record files (%d skips); each '
                      'is logged above.', result.bad_records['bad_records'],
                      result.bad_records['bad_files'],
                      result.bad_records['skipped'])
  if interrupted is not None:
    logging.warning('Stopped by signal %d at step %d; checkpoint saved in %s. '
                    'Rerun the same command to resume.', interrupted,
                    state.step, ckpt.directory)
    return result
  if not chief:
    return result

  result.manifest = _write_final_weights(entry, preset, workdir, model,
                                         state.step, run_config,
                                         result.bad_records, final)
  if not run_evaluation:
    return result
  result.metrics = _evaluate_run(
      entry, config, preset, workdir, model, dist, data_info, state,
      run_config, result.manifest, train_seconds=train_seconds,
      flip_test=flip_test, baseline=baseline, progress=progress,
      source_counts=source_counts)
  return result


def _build_and_restore(entry, config, preset, workdir, own_dir, dist,
                       run_config, *, seed, init_from):
  """(model compiled under `dist`, its training checkpoint, the step it
  resumes at, the final weights Source when the run already reached its
  target step, else None)."""
  train_cfg = config.train
  keras.utils.set_random_seed(seed)
  resuming = weights_lib.latest_checkpoint_step(workdir)[0] is not None
  with dist.scope():
    model = weights_lib.build_model(entry, config)
    if init_from and not resuming:
      # Before compile, so the file's model weights alone are loaded.
      source = checkpoints.load_init_weights(model, init_from, entry.name,
                                             preset)
      run_config['init_from'] = {
          'path': os.path.abspath(source.path), 'model': source.model_name,
          'step': source.step, 'sha256': weights_lib.source_sha256(source)}
    model.compile(optimizer=run_config_lib.make_optimizer(train_cfg))
    model.optimizer.build(model.trainable_variables)
  _skip_keras_symbolic_build(model)
  if isinstance(dist, tf.distribute.MultiWorkerMirroredStrategy):
    _fix_multi_worker_logs(model)
  ckpt = checkpoints.TrainingCheckpoint(
      os.path.join(own_dir, manifest_lib.CHECKPOINT_DIR), model,
      model.optimizer)
  start_step = _restore(ckpt, workdir, own_dir)
  target = int(train_cfg.steps)
  final = _final_weights(workdir, start_step) if start_step >= target else None
  if final is not None:
    # A finished run only evaluates: it evaluates the final weights file it
    # wrote, byte for byte, and keeps it (a checkpoint from an older
    # version lacks some batch-norm statistics, module checkpoints).
    weights_lib.load_weights(model, final)
  if start_step > 0:
    if init_from:
      logging.info('Resuming at step %d; --init_from is ignored.', start_step)
    _reset_learning_rate(model.optimizer, train_cfg.learning_rate)
  return model, ckpt, start_step, final


def _fit(model, ckpt, state, config, data_info, dist, chief, workdir, *,
         seed, deterministic, on_bad_record, bad_records, source_counts,
         progress, extra_callbacks) -> float:
  """Fits `model` from state.start_step to state.target_step, saving
  checkpoints (and, on the chief, logs, TensorBoard scalars and the progress
  bar); returns the seconds `fit` ran. `seed`: the input stream's (a
  resumed segment gets its own)."""
  train_cfg = config.train
  input_pipelines = distribute.input_pipelines(dist)
  dataset = training_data.train_dataset(
      data_info.train_data, config, model, seed=seed,
      deterministic=deterministic, on_bad_record=on_bad_record,
      bad_records=bad_records, input_pipelines=input_pipelines,
      source_counts=source_counts)
  check_contract(model, dataset.element_spec)
  remaining = state.target_step - state.start_step
  window = max(1, min(int(train_cfg.log_every), remaining))
  cbs = [callbacks_lib.StepTracker(state)]
  with callbacks_lib.StopRequest() as stop:
    cbs.append(callbacks_lib.CheckpointSaver(
        state, ckpt, train_cfg.checkpoint_every, stop))
    if chief:
      cbs += [callbacks_lib.TensorBoardScalars(state,
                                               os.path.join(workdir, 'tb')),
              callbacks_lib.LogLines(state),
              *([callbacks_lib.SourceCountLog(state, source_counts)]
                if source_counts is not None else []),
              callbacks_lib.ProgressBar(state, enabled=progress)]
    cbs += list(extra_callbacks)
    logging.info('Training steps %d -> %d (batch %d, %s).', state.start_step,
                 state.target_step, train_cfg.batch_size, train_cfg.optimizer)
    t0 = time.perf_counter()
    try:
      model.fit(dataset, epochs=math.ceil(remaining / window),
                steps_per_epoch=window, verbose=0, callbacks=cbs,
                shuffle=False)
    finally:
      train_seconds = time.perf_counter() - t0
      for cb in cbs:
        if isinstance(cb, callbacks_lib.ProgressBar):
          cb.on_train_end()
  return train_seconds


def _write_final_weights(entry, preset, workdir, model, step, run_config,
                         bad_records, final) -> dict:
  """Writes the final weights and their manifest (metrics still None), or
  keeps `final`, the weights a finished run already wrote; returns the
  manifest."""
  if final is not None:
    manifest = checkpoints.keep_final(workdir, final)
    logging.info('Kept the final weights %s (sha256 %s).', final.path,
                 manifest['sha256'])
    return manifest
  manifest = {
      'model': entry.name, 'preset': preset,
      'config': run_config['config'], 'command': run_config['command'],
      'steps': step, 'data': run_config['data'], 'seed': run_config['seed'],
      'precision': run_config['precision'],
      'strategy': run_config['strategy'],
      'init_from': run_config.get('init_from'),
      'versions': {'tensorflow': tf.__version__, 'keras': keras.__version__},
      'metrics': None,
  }
  if bad_records is not None:
    manifest['bad_records'] = {
        key: bad_records[key] for key in ('bad_records', 'bad_files',
                                          'skipped')}
  manifest = checkpoints.write_final(workdir, model, manifest)
  logging.info('Wrote %s (sha256 %s).',
               os.path.join(workdir, manifest_lib.WEIGHTS_FILE),
               manifest['sha256'])
  return manifest


def _evaluate_run(entry, config, preset, workdir, model, dist, data_info,
                  state, run_config, manifest, *, train_seconds, flip_test,
                  baseline, progress, source_counts) -> dict:
  """Evaluates the test split in float32, adds the training figures, writes
  metrics.json and the manifest with them; returns the metrics."""
  train_cfg = config.train
  metrics = {'model': entry.name, 'preset': preset, 'steps': state.step}
  if source_counts is not None:
    metrics['train_examples_per_source'] = source_counts.counts()
  keep = evaluation.ExampleKeeper(run_figure.NUM_EXAMPLES)
  metrics.update(evaluation.evaluate_model(
      _float32_model(entry, config, model, workdir), data_info.test_data,
      config, flip_test=flip_test, progress=progress,
      baseline_train_data=data_info.train_data if baseline else None,
      baseline_train_examples=min(BASELINE_TRAIN_EXAMPLES,
                                  train_cfg.num_train_examples),
      keep=keep))
  if state.steps_done > 0:
    metrics['train_seconds'] = train_seconds
    metrics['train_examples_per_second'] = state.steady_examples_per_second()
    # Peak resident memory of this process so far (training and evaluation).
    metrics['peak_rss_mib'] = resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss / 1024.
  else:
    # A rerun that only evaluates keeps the training run's figures; without
    # them (no metrics.json) the training time is unknown (NaN), not 0.
    previous = _previous_metrics(workdir)
    metrics['train_seconds'] = previous.get('train_seconds', float('nan'))
    metrics['train_examples_per_second'] = previous.get(
        'train_examples_per_second', float('nan'))
    if 'peak_rss_mib' in previous:
      metrics['peak_rss_mib'] = previous['peak_rss_mib']
  metrics['start_step'] = state.start_step
  metrics['batch_size'] = train_cfg.batch_size
  metrics['precision'] = run_config['precision']
  metrics['replicas'] = dist.num_replicas_in_sync
  _write_eval_summaries(os.path.join(workdir, 'tb'), metrics, state.step)
  fileio.atomic_write_json(os.path.join(workdir, METRICS_FILE), metrics)
  manifest['metrics'] = metrics
  fileio.atomic_write_json(
      os.path.join(workdir, manifest_lib.MANIFEST_FILE), manifest)
  print(evaluation.format_report(metrics), flush=True)
  run_figure.try_write_for_run(
      workdir, metrics, keep.arrays(),
      title=f'{entry.name} ({preset}), step {state.step}')
  return metrics


def _float32_model(entry, config, model, workdir: str):
  """The model to evaluate: `model` itself under float32, else a float32
  model with the final weights file's weights.

  Evaluation is in float32 whatever the training precision, so a run's
  metrics are what `trainers.evaluate`, `zoo.predict` and an export (all
  float32) get from the same weights.
  """
  if keras.mixed_precision.global_policy().name == 'float32':
    return model
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy('float32')
  try:
    float_model = weights_lib.build_model(entry, config)
  finally:
    keras.mixed_precision.set_global_policy(previous)
  weights_lib.load_weights(float_model,
                           os.path.join(workdir, manifest_lib.WEIGHTS_FILE))
  return float_model


def _skip_keras_symbolic_build(model) -> None:
  """Turns off Keras' pre-fit symbolic build for an already built model.

  Under a tf.distribute strategy, Keras 3 (TF backend) pulls one batch from
  the fit iterator and `strategy.reduce`s it to build the model symbolically.
  Our models, their optimizer and the loss tracker are already built, so that
  build is redundant; it also skips a batch, and under
  MultiWorkerMirroredStrategy it fails on dict inputs
  (keras-team/keras#20329).
  """
  model._maybe_symbolic_build = lambda *args, **kwargs: None  # pylint: disable=protected-access


def _fix_multi_worker_logs(model) -> None:
  """Makes Keras' per-step logs reducible under MultiWorkerMirroredStrategy.

  Keras 3.15 reduces every train-step output with `strategy.reduce("MEAN",
  value, axis=0)` in multi-worker mode, which fails for scalars such as the
  loss ("Invalid reduction dimension 0 for input with 0 dimensions"). Giving
  the scalars a leading axis of 1 makes that reduction the mean over replicas.
  """
  train_step = model.train_step

  def wrapped(data):
    logs = train_step(data)
    return {key: tf.reshape(value, [1]) if getattr(value, 'shape', None) is
            not None and value.shape.rank == 0 else value
            for key, value in logs.items()}

  model.train_step = wrapped


def _restore(ckpt: checkpoints.TrainingCheckpoint, workdir: str,
             own_dir: str) -> int:
  if own_dir == workdir:
    return ckpt.restore_latest()
  # Non-chief workers restore what the chief saved.
  chief_ckpt = checkpoints.TrainingCheckpoint(
      os.path.join(workdir, manifest_lib.CHECKPOINT_DIR),
      ckpt.checkpoint.model, ckpt.checkpoint.optimizer)
  step = chief_ckpt.restore_latest()
  ckpt.step.assign(step)
  return step


def _final_weights(workdir: str, step: int) -> weights_lib.Source | None:
  """The workdir's final weights file if its manifest is for `step`."""
  try:
    source = weights_lib.resolve(workdir)
  except FileNotFoundError:
    return None
  if source.kind != 'h5' or not source.manifest or \
      source.manifest.get('steps') != step:
    return None
  return source


def _reset_learning_rate(optimizer, learning_rate: float) -> None:
  """A resumed run uses the config's rate, not the checkpointed one."""
  try:
    optimizer.learning_rate = float(learning_rate)
  except (TypeError, ValueError, AttributeError):
    pass  # a schedule: it is part of the optimizer's own state


def _previous_metrics(workdir: str) -> dict:
  path = os.path.join(workdir, METRICS_FILE)
  return fileio.read_json(path) if os.path.exists(path) else {}


def _write_eval_summaries(logdir: str, metrics: Mapping[str, Any],
                          step: int) -> None:
  writer = tf.summary.create_file_writer(logdir)
  with writer.as_default():
    for key, value in metrics.items():
      if isinstance(value, float) and math.isfinite(value) and key not in (
          'train_seconds',):
        callbacks_lib.write_scalar(f'eval/{key}', value, step)
  writer.flush()
