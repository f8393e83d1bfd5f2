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

`load_model(name, checkpoint)` is the one way to get a trained model back (the
evaluator, `zoo.load`, fine-tuning via `--init_from` all use `resolve` +
`load_weights`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from zoo import fileio

WEIGHTS_FILE = 'model.weights.h5'
MANIFEST_FILE = 'manifest.json'
PENDING_MANIFEST_FILE = '.manifest.pending.json'
RUN_CONFIG_FILE = 'config.json'
CHECKPOINT_DIR = 'checkpoints'
MANIFEST_VERSION = 1


class ChecksumError(ValueError):
  """A weights file does not match the sha256 its manifest records."""


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
# Small atomic-file helpers
# ----------------------------------------------------------------------------

def atomic_write_json(path: str, obj: Any) -> None:
  """Writes JSON to `path` via a temporary file in the same directory."""
  fileio.atomic_write_text(path, json.dumps(
      obj, indent=2, sort_keys=True, default=_json_default) + '\n')


def _json_default(value):
  if isinstance(value, (np.integer,)):
    return int(value)
  if isinstance(value, (np.floating,)):
    return float(value)
  if isinstance(value, np.ndarray):
    return value.tolist()
  if isinstance(value, bytes):
    return value.decode()
  raise TypeError(f'cannot write {type(value).__name__} to JSON: {value!r}')


def read_json(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


def sha256_file(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


# ----------------------------------------------------------------------------
# Building a model with variables
# ----------------------------------------------------------------------------

def dummy_inputs(input_size: int, batch_size: int = 1) -> dict[str, tf.Tensor]:
  """A zero image and a centred pinhole K: the model contract's inputs."""
  s = float(input_size)
  k = tf.constant([[s, 0., (s - 1) / 2], [0., s, (s - 1) / 2], [0., 0., 1.]])
  return {'image': tf.zeros([batch_size, input_size, input_size, 3]),
          'intrinsics': tf.tile(k[None], [batch_size, 1, 1])}


def build_model(entry, config) -> keras.Model:
  """entry.build(config) and one call on dummy inputs to create variables."""
  model = entry.build(config)
  model(dummy_inputs(config.input_size), training=False)
  return model


# ----------------------------------------------------------------------------
# Resumable training state
# ----------------------------------------------------------------------------

# The tf.train.Checkpoint attribute holding every model variable by path.
WEIGHTS_KEY = 'weights'


def model_variables_by_path(model: keras.Model) -> dict[str, tf.Variable]:
  """{variable path: variable} of every model variable, trainable or not.

  tf.train.Checkpoint(model=model) alone does not reach Keras 3 layers held
  in Python lists (hourglass stacks, residual chains, ResNet blocks): their
  trainable variables were saved only through the optimizer's list, and
  their batch-norm statistics not at all. Saving this dict makes the
  checkpoint complete, keyed by names that do not depend on creation order.
  """
  out = {}
  for v in model.variables:
    if v.path in out:
      raise ValueError(f'model {model.name!r} has two variables at path '
                       f'{v.path!r}; give its layers unique names')
    out[v.path] = v
  return out


def _has_weights_dict(path: str) -> bool:
  """Whether the checkpoint's root object has the WEIGHTS_KEY child.

  Read from the object graph, not from variable names: a variable reachable
  by several paths is stored under one of them only.
  """
  from tensorflow.core.protobuf import trackable_object_graph_pb2
  graph = trackable_object_graph_pb2.TrackableObjectGraph()
  graph.ParseFromString(tf.train.load_checkpoint(path).get_tensor(
      '_CHECKPOINTABLE_OBJECT_GRAPH'))
  return any(child.local_name == WEIGHTS_KEY
             for child in graph.nodes[0].children)


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
        **{WEIGHTS_KEY: model_variables_by_path(model)})
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
    complete = _has_weights_dict(path)
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


def latest_checkpoint_step(workdir: str) -> tuple[str | None, int]:
  """(path, step) of the newest tf checkpoint under WORKDIR/checkpoints."""
  path = tf.train.latest_checkpoint(os.path.join(workdir, CHECKPOINT_DIR))
  if path is None:
    return None, -1
  try:
    step = int(path.rsplit('-', 1)[1])
  except (IndexError, ValueError):
    step = int(tf.train.load_variable(path, 'step/.ATTRIBUTES/VARIABLE_VALUE'))
  return path, step


# ----------------------------------------------------------------------------
# Final weights + manifest
# ----------------------------------------------------------------------------

def _save_weights_tmp(model: keras.Model, path: str) -> str:
  """model.save_weights to a temporary `.weights.h5` name next to `path`."""
  if not path.endswith('.weights.h5'):
    raise ValueError(f'weights path must end in .weights.h5, got {path!r}')
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  tmp = os.path.join(directory, f'.tmp-{os.getpid()}-'
                     f'{os.path.basename(path)}')
  try:
    model.save_weights(tmp)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return tmp


def save_weights_atomic(model: keras.Model, path: str) -> str:
  """model.save_weights to a temporary `.weights.h5` name, then rename."""
  tmp = _save_weights_tmp(model, path)
  try:
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
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
  clone(dummy_inputs(model.config.input_size), training=False)
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
  tmp = _save_weights_tmp(weights_only_copy(model), path)
  pending = os.path.join(workdir, PENDING_MANIFEST_FILE)
  try:
    manifest = dict(manifest, weights_file=WEIGHTS_FILE,
                    sha256=sha256_file(tmp),
                    manifest_version=MANIFEST_VERSION)
    atomic_write_json(pending, manifest)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  os.replace(pending, os.path.join(workdir, MANIFEST_FILE))
  return manifest


def keep_final(workdir: str, source: 'Source') -> dict[str, Any]:
  """Settles an existing final weights file as the run's result, unchanged.

  Writes its manifest (as `resolve` found it, so a pending manifest left by
  a writer that died between its renames is completed) and removes the
  pending file. Returns the manifest.
  """
  manifest = dict(source.manifest)
  atomic_write_json(os.path.join(workdir, MANIFEST_FILE), manifest)
  pending = os.path.join(workdir, PENDING_MANIFEST_FILE)
  if os.path.exists(pending):
    os.remove(pending)
  return manifest


def _read_manifest(directory: str) -> dict | None:
  """MANIFEST_FILE of `directory`, or the pending manifest where a write
  died between its two renames (its sha256 matches the weights file)."""
  path = os.path.join(directory, MANIFEST_FILE)
  manifest = read_json(path) if os.path.exists(path) else None
  pending_path = os.path.join(directory, PENDING_MANIFEST_FILE)
  if not os.path.exists(pending_path):
    return manifest
  try:
    pending = read_json(pending_path)
  except (OSError, ValueError):
    return manifest
  weights = os.path.join(directory, pending.get('weights_file', WEIGHTS_FILE))
  if (manifest or {}).get('sha256') != pending.get('sha256') and \
      os.path.exists(weights) and sha256_file(weights) == pending.get('sha256'):
    logging.warning('%s: the final weights were replaced but the manifest '
                    'was not (the writer died in between); using %s.',
                    directory, pending_path)
    return pending
  return manifest


# ----------------------------------------------------------------------------
# Finding and loading weights
# ----------------------------------------------------------------------------

@dataclasses.dataclass
class Source:
  """Where a model's weights come from.

  kind: 'h5' (a Keras .weights.h5 file) or 'tf' (a tf.train checkpoint
  prefix from a training workdir). `manifest` is the manifest describing an
  h5 file (None if there is none); `run_config` the workdir's config.json
  (None if there is none). `step` is the training step when known.
  """
  kind: str
  path: str
  manifest: dict | None = None
  run_config: dict | None = None
  step: int | None = None

  @property
  def model_name(self) -> str | None:
    for meta in (self.manifest, self.run_config):
      if meta and meta.get('model'):
        return meta['model']
    return None

  @property
  def preset(self) -> str | None:
    for meta in (self.manifest, self.run_config):
      if meta and meta.get('preset'):
        return meta['preset']
    return None

  @property
  def config_dict(self) -> dict | None:
    # The weights' own manifest wins; a tf checkpoint uses the run config.
    order = (self.manifest, self.run_config) if self.kind == 'h5' else \
        (self.run_config, self.manifest)
    for meta in order:
      if meta and meta.get('config') is not None:
        return meta['config']
    return None


def _manifest_for(weights_path: str) -> dict | None:
  """The manifest.json next to a weights file, if it describes that file."""
  manifest = _read_manifest(os.path.dirname(os.path.abspath(weights_path)))
  if manifest is None:
    return None
  if manifest.get('weights_file', WEIGHTS_FILE) != os.path.basename(
      weights_path):
    return None
  return manifest


def resolve(path: str) -> Source:
  """Finds the weights behind `path`.

  `path` may be a `.weights.h5` file, a directory holding one (with its
  manifest), or a training workdir. In a workdir the newer of the final
  weights (manifest `steps`) and the latest tf checkpoint is used; on a tie,
  the final weights (they carry a checksum).
  """
  if not os.path.exists(path):
    raise FileNotFoundError(
        f'checkpoint {path!r} does not exist: expected a .weights.h5 file, a '
        'directory with one and a manifest.json, or a training workdir')
  if os.path.isfile(path):
    if not path.endswith('.weights.h5'):
      raise ValueError(f'checkpoint file {path!r} is not a Keras weights file '
                       '(*.weights.h5); pass the file or its directory')
    manifest = _manifest_for(path)
    return Source('h5', path, manifest=manifest,
                  step=manifest.get('steps') if manifest else None)

  run_config_path = os.path.join(path, RUN_CONFIG_FILE)
  run_config = read_json(run_config_path) if os.path.exists(
      run_config_path) else None
  manifest_path = os.path.join(path, MANIFEST_FILE)
  manifest = _read_manifest(path)
  weights = None
  if manifest is not None:
    weights = os.path.join(path, manifest.get('weights_file', WEIGHTS_FILE))
    if not os.path.exists(weights):
      raise FileNotFoundError(f'{manifest_path} names weights file {weights} '
                              'which does not exist')
  elif os.path.exists(os.path.join(path, WEIGHTS_FILE)):
    weights = os.path.join(path, WEIGHTS_FILE)
  else:
    found = sorted(f for f in os.listdir(path) if f.endswith('.weights.h5')
                   and not f.startswith('.'))  # not a temporary
    if len(found) == 1:
      weights = os.path.join(path, found[0])
  ckpt_path, ckpt_step = latest_checkpoint_step(path)
  weights_step = manifest.get('steps', -1) if manifest else -1
  if weights is not None and (ckpt_path is None or weights_step >= ckpt_step):
    return Source('h5', weights, manifest=manifest, run_config=run_config,
                  step=manifest.get('steps') if manifest else None)
  if ckpt_path is not None:
    return Source('tf', ckpt_path, manifest=manifest, run_config=run_config,
                  step=ckpt_step)
  raise FileNotFoundError(
      f'no weights in {path!r}: expected a *.weights.h5 file (with a '
      f'{MANIFEST_FILE}) or tf checkpoints under {CHECKPOINT_DIR}/')


def verify_sha256(source: Source) -> None:
  """Raises ChecksumError if an h5 source's bytes differ from its manifest."""
  if source.kind != 'h5' or not source.manifest or \
      'sha256' not in source.manifest:
    return
  actual = sha256_file(source.path)
  expected = source.manifest['sha256']
  if actual != expected:
    raise ChecksumError(
        f'sha256 mismatch for {source.path}: the manifest records {expected} '
        f'but the file has {actual}; the file is corrupt, truncated or was '
        'replaced without updating its manifest')


def load_weights(model: keras.Model, source: Source | str,
                 verify: bool = True) -> Source:
  """Loads weights from `source` into a built model (used by --init_from).

  Load before `compile`: Keras would otherwise also look for the state of
  the attached optimizer in the file.
  """
  if isinstance(source, str):
    source = resolve(source)
  if verify:
    verify_sha256(source)
  if source.kind == 'h5':
    try:
      model.load_weights(source.path)
    except ValueError as e:
      raise ValueError(f'cannot load {source.path} into model {model.name!r} '
                       f'(a different model or config?): {e}') from None
  else:
    if not _has_weights_dict(source.path):
      raise ValueError(
          f'checkpoint {source.path} was written by an older version that '
          'did not save every model variable (batch-norm statistics were '
          'missing), so it cannot be loaded on its own; load the run\'s '
          f'final {WEIGHTS_FILE}, or resume training from it with the same '
          '`python -m trainers.run` command')
    try:
      status = tf.train.Checkpoint(
          **{WEIGHTS_KEY: model_variables_by_path(model)}).restore(
              source.path)
      status.expect_partial()  # the optimizer's state is not wanted here
      status.assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
      raise ValueError(f'checkpoint {source.path} does not match model '
                       f'{model.name!r}: {e}') from None
  logging.info('Loaded weights from %s (%s, step %s).', source.path,
               source.kind, source.step)
  return source


def source_sha256(source: Source) -> str | None:
  """The sha256 of an h5 source: its manifest's (checked by `load_weights`)
  or, for a file without one, computed from its bytes; None for a tf
  checkpoint."""
  if source.kind != 'h5':
    return None
  recorded = (source.manifest or {}).get('sha256')
  return recorded or sha256_file(source.path)


def load_init_weights(model: keras.Model, path: str, model_name: str,
                      preset: str | None) -> Source:
  """`load_weights` for --init_from, with errors naming both sides.

  Weights without a manifest cannot be checked: a warning says so (the run
  records their sha256). Weights that do not fit raise ValueError naming the
  source's model and preset and this run's.
  """
  source = resolve(path)
  if source.kind == 'h5' and not (source.manifest or {}).get('sha256'):
    logging.warning(
        '--init_from %s has no %s with a sha256: its bytes cannot be checked '
        '(recording sha256 %s in this run\'s manifest).', source.path,
        MANIFEST_FILE, sha256_file(source.path))
  if source.model_name not in (None, model_name):
    logging.warning('--init_from weights were trained as model %r; loading '
                    'them into %r.', source.model_name, model_name)
  try:
    return load_weights(model, source)
  except ChecksumError:
    raise
  except ValueError as e:
    theirs = (f'model {source.model_name or "unknown (no manifest)"!r}, '
              f'preset {source.preset or "unknown"!r}')
    raise ValueError(
        f'--init_from {source.path} holds {theirs}, which does not fit this '
        f'run\'s model {model_name!r}, preset {preset!r} (different layers '
        f'or sizes): {e}') from None


# Config fields that only say how to initialise weights before training.
INIT_ONLY_FIELDS = ('backbone_weights',)


def config_for(entry, source: Source, preset: str | None = None):
  """The config the weights were trained with (manifest / config.json)."""
  from zoo import config as config_lib
  if source.model_name is not None and source.model_name != entry.name:
    raise ValueError(f'checkpoint {source.path} holds model '
                     f'{source.model_name!r}, not {entry.name!r}')
  values = source.config_dict
  if values is None:
    if preset is None:
      raise ValueError(
          f'{source.path} has no {MANIFEST_FILE} or {RUN_CONFIG_FILE} saying '
          'how it was configured; pass preset= (one of '
          f'{sorted(entry.presets)}) to build the model it was trained as')
    return entry.config(preset)
  if preset is not None and source.preset is not None and \
      preset != source.preset:
    raise ValueError(f'checkpoint {source.path} was trained with preset '
                     f'{source.preset!r}, not {preset!r}; pass preset=None to '
                     'use its own config')
  config = config_lib.from_dict(entry.config_class, values)
  # Fields that only initialise weights (a pretrained backbone file) are moot
  # once the checkpoint's own weights are loaded, and that file may be gone.
  init_only = {f: None for f in INIT_ONLY_FIELDS if hasattr(config, f)}
  return config_lib.replace(config, **init_only) if init_only else config


def load_model(name: str, checkpoint: str, preset: str | None = None, *,
               verify: bool = True) -> keras.Model:
  """Builds model `name` as it was trained and loads its weights.

  Args:
    name: a registered model name (zoo.registry).
    checkpoint: a `.weights.h5` file, a directory with one and its
      manifest.json, or a training workdir (newest of final weights and tf
      checkpoints).
    preset: only needed when no manifest / config.json says how the weights
      were configured; if given and the manifest disagrees, ValueError.
    verify: check the weights' sha256 against the manifest (ChecksumError).

  Returns:
    A built (uncompiled) keras Model with the weights loaded.
  """
  from zoo import registry
  entry = registry.get(name)
  source = resolve(checkpoint)
  if verify:
    verify_sha256(source)
  config = config_for(entry, source, preset)
  model = build_model(entry, config)
  load_weights(model, source, verify=False)
  return model
