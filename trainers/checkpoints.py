"""Checkpoints: resumable training state, final weights with a manifest, loading.

Two kinds of files live in a training workdir, for two purposes:

- `WORKDIR/checkpoints/ckpt-N.*` (tf.train.Checkpoint of the model, every
  model variable by path (batch-norm statistics included), the optimizer and
  the global step, managed by tf.train.CheckpointManager): the resumable
  training state. TensorFlow writes the data files first (under
  temporary names, renamed when complete) and then replaces the small
  `checkpoint` state file atomically, so a process killed while saving leaves
  the previous checkpoint as the latest one.
- `WORKDIR/model.weights.h5` + `WORKDIR/manifest.json`: the final, portable
  result (Keras weights; the manifest holds model, preset, config, command,
  steps, data, metrics and the weights' sha256). Both are written to temporary
  names and renamed. As two renames are not one atomic step, the new manifest
  is first written as `.manifest.pending.json`: a process that dies between
  the renames leaves new weights, the old manifest and a pending manifest
  whose sha256 matches the new weights, and `resolve` uses that one. Weights
  with NaN/Inf are never saved (`NonFiniteWeightsError`), neither as a
  checkpoint nor as final weights.

`WORKDIR/config.json` records the run's model, preset and full config when
training starts, so an interrupted workdir can be evaluated or loaded before a
manifest exists.

File names, manifests and loading live in zoo/manifest.py and zoo/weights.py
(`zoo.weights.load_model` is the one way to get a trained model back); this
module writes what they read.
"""
from __future__ import annotations

import os
from typing import Any

from absl import logging
import keras
import tensorflow as tf

from zoo import fileio
from zoo import weights as weights_lib
from zoo.manifest import (MANIFEST_FILE, MANIFEST_VERSION,
                          PENDING_MANIFEST_FILE, WEIGHTS_FILE, ChecksumError,
                          sha256_file)
from zoo.weights import WEIGHTS_KEY, Source, has_weights_dict


class NonFiniteWeightsError(FloatingPointError):
  """The model's weights hold NaN or Inf; they were not saved."""


def check_finite_weights(model: keras.Model, when: str,
                         last_good: str | None = None) -> None:
  """Raises NonFiniteWeightsError naming the variables with NaN/Inf.

  `when` says when (e.g. 'after step 7'); `last_good` is the newest file
  that holds good weights, for the message.
  """
  floats = [v for v in model.weights if tf.as_dtype(v.dtype).is_floating]
  if not floats:
    return
  finite = [tf.reduce_all(tf.math.is_finite(v)) for v in floats]
  if bool(tf.reduce_all(tf.stack(finite))):
    return
  names = [v.path for v, ok in zip(floats, finite) if not bool(ok)]
  more = f' and {len(names) - 5} more' if len(names) > 5 else ''
  raise NonFiniteWeightsError(
      f'the weights became NaN/Inf {when} (in {", ".join(names[:5])}{more}); '
      'they were not saved. The last good weights are '
      f'{last_good or "none (nothing was saved yet)"}. Lower the learning '
      'rate or check the data.')


# ----------------------------------------------------------------------------
# Resumable training state
# ----------------------------------------------------------------------------

class TrainingCheckpoint:
  """tf.train.Checkpoint(model, optimizer, step, weights) + CheckpointManager.

  `weights` is model_variables_by_path(model): every model variable,
  batch-norm statistics included. Build the model and the optimizer's
  variables (`optimizer.build`) before `restore`, so restoring matches
  existing objects and fails loudly on a mismatch instead of deferring
  silently. Checkpoints written before `weights` existed still restore (the
  trainable variables and the optimizer state), with a warning that their
  batch-norm statistics were not saved.
  """

  def __init__(self, directory: str, model: keras.Model,
               optimizer: keras.optimizers.Optimizer, max_to_keep: int = 3):
    self.directory = directory
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
    self.checkpoint = tf.train.Checkpoint(
        model=model, optimizer=optimizer, step=self.step,
        **{WEIGHTS_KEY: weights_lib.model_variables_by_path(model)})
    self._legacy = tf.train.Checkpoint(model=model, optimizer=optimizer,
                                       step=self.step)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, directory, max_to_keep=max_to_keep)

  @property
  def latest(self) -> str | None:
    return self.manager.latest_checkpoint

  def restore_latest(self) -> int:
    """Restores the latest checkpoint if any; returns its step (0 if none)."""
    path = self.latest
    if path is None:
      return 0
    complete = has_weights_dict(path)
    try:
      (self.checkpoint if complete else self._legacy).restore(
          path).assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
      raise ValueError(
          f'checkpoint {path} does not match the model being trained (was the '
          f'workdir used with a different model or config?): {e}') from None
    step = int(self.step.numpy())
    if not complete:
      logging.warning(
          '%s was written by an older version that did not save the '
          'batch-norm statistics of every layer: they restart from their '
          'initial values (training re-estimates them). Evaluate the final '
          'weights file of a finished run, not this checkpoint.', path)
    logging.info('Restored %s (step %d).', path, step)
    return step

  def save(self, step: int) -> str:
    """Saves a checkpoint; NonFiniteWeightsError (nothing saved) on NaN/Inf."""
    check_finite_weights(self.checkpoint.model, f'after step {step}',
                         self.latest)
    self.step.assign(step)
    path = self.manager.save(checkpoint_number=step)
    logging.info('Saved checkpoint %s.', path)
    return path


# ----------------------------------------------------------------------------
# Final weights + manifest
# ----------------------------------------------------------------------------

def _check_weights_path(path: str) -> None:
  if not path.endswith('.weights.h5'):
    raise ValueError(f'weights path must end in .weights.h5, got {path!r}')


def save_weights_atomic(model: keras.Model, path: str) -> str:
  """model.save_weights to a temporary `.weights.h5` name, then rename."""
  _check_weights_path(path)
  with fileio.atomic_path(path, suffix='.weights.h5') as tmp:
    model.save_weights(tmp)
  return path


def weights_only_copy(model: keras.Model) -> keras.Model:
  """A fresh, uncompiled copy of a zoo model with the same weights.

  Keras' `save_weights` also writes the state of an attached optimizer; the
  final weights file should hold the model alone (smaller, and fine-tuning
  starts a fresh optimizer), so it is written from this copy.
  """
  if getattr(model, 'optimizer', None) is None:
    return model
  clone = type(model)(model.config, name=model.name)
  clone(weights_lib.dummy_inputs(model.config.input_size), training=False)
  clone.set_weights(model.get_weights())
  return clone


def write_final(workdir: str, model: keras.Model,
                manifest: dict[str, Any]) -> dict[str, Any]:
  """Writes WORKDIR/model.weights.h5 (model weights only) and its manifest
  (with the file's sha256), never leaving a mismatched pair (module doc).

  NonFiniteWeightsError, with the previous files kept, if the weights hold
  NaN/Inf.
  """
  check_finite_weights(model, 'at the end of training',
                       os.path.join(workdir, WEIGHTS_FILE) if os.path.exists(
                           os.path.join(workdir, WEIGHTS_FILE)) else None)
  path = os.path.join(workdir, WEIGHTS_FILE)
  pending = os.path.join(workdir, PENDING_MANIFEST_FILE)
  # The weights are renamed into place when the block ends, after the
  # pending manifest describing them is on disk.
  with fileio.atomic_path(path, suffix='.weights.h5') as tmp:
    weights_only_copy(model).save_weights(tmp)
    manifest = dict(manifest, weights_file=WEIGHTS_FILE,
                    sha256=sha256_file(tmp),
                    manifest_version=MANIFEST_VERSION)
    fileio.atomic_write_json(pending, manifest)
  os.replace(pending, os.path.join(workdir, MANIFEST_FILE))
  return manifest


def keep_final(workdir: str, source: Source) -> dict[str, Any]:
  """Settles an existing final weights file as the run's result, unchanged.

  Writes its manifest (as `resolve` found it, so a pending manifest left by
  a writer that died between its renames is completed) and removes the
  pending file. Returns the manifest.
  """
  manifest = dict(source.manifest)
  fileio.atomic_write_json(os.path.join(workdir, MANIFEST_FILE), manifest)
  pending = os.path.join(workdir, PENDING_MANIFEST_FILE)
  if os.path.exists(pending):
    os.remove(pending)
  return manifest


def load_init_weights(model: keras.Model, path: str, model_name: str,
                      preset: str | None) -> Source:
  """`load_weights` for --init_from, with errors naming both sides.

  Weights without a manifest cannot be checked: a warning says so (the run
  records their sha256). Weights that do not fit raise ValueError naming the
  source's model and preset and this run's.
  """
  source = weights_lib.resolve(path)
  if source.kind == 'h5' and not (source.manifest or {}).get('sha256'):
    logging.warning(
        '--init_from %s has no %s with a sha256: its bytes cannot be checked '
        '(recording sha256 %s in this run\'s manifest).', source.path,
        MANIFEST_FILE, sha256_file(source.path))
  if source.model_name not in (None, model_name):
    logging.warning('--init_from weights were trained as model %r; loading '
                    'them into %r.', source.model_name, model_name)
  try:
    return weights_lib.load_weights(model, source)
  except ChecksumError:
    raise
  except ValueError as e:
    theirs = (f'model {source.model_name or "unknown (no manifest)"!r}, '
              f'preset {source.preset or "unknown"!r}')
    raise ValueError(
        f'--init_from {source.path} holds {theirs}, which does not fit this '
        f'run\'s model {model_name!r}, preset {preset!r} (different layers '
        f'or sizes): {e}') from None
