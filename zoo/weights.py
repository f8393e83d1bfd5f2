"""Trained weights back into a model: build from a config, resolve, verify, load.

`load_model(name, checkpoint)` is the one way to get a trained model back
(zoo.load, zoo.predict, the exporter, the evaluator and fine-tuning with
--init_from all go through `resolve` + `load_weights`). A checkpoint is a
`.weights.h5` file with its manifest (zoo/manifest.py), a directory holding
them, or a training workdir, whose newest of final weights and tf.train
checkpoints is used. Writing weights is the trainer's job
(trainers/checkpoints.py).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

from absl import logging
import keras
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

from zoo import config as config_lib
from zoo import fileio
from zoo import manifest as manifest_lib
from zoo import registry
from zoo.manifest import (CHECKPOINT_DIR, MANIFEST_FILE, RUN_CONFIG_FILE,
                          WEIGHTS_FILE, BundledCheckpointError, ChecksumError)

__all__ = ['BundledCheckpointError', 'ChecksumError', 'INIT_ONLY_FIELDS',
           'Source', 'WEIGHTS_KEY', 'build_model', 'config_for',
           'dummy_inputs', 'has_weights_dict', 'latest_checkpoint_step',
           'load', 'load_model', 'load_weights', 'model_variables_by_path',
           'resolve', 'source_sha256', 'verify_sha256']

# The tf.train.Checkpoint attribute holding every model variable by path.
WEIGHTS_KEY = 'weights'

# Config fields that only say how to initialise weights before training.
INIT_ONLY_FIELDS = ('backbone_weights',)


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


def has_weights_dict(path: str) -> bool:
  """Whether the tf checkpoint's root object has the WEIGHTS_KEY child.

  Read from the object graph, not from variable names: a variable reachable
  by several paths is stored under one of them only.
  """
  graph = trackable_object_graph_pb2.TrackableObjectGraph()
  graph.ParseFromString(tf.train.load_checkpoint(path).get_tensor(
      '_CHECKPOINTABLE_OBJECT_GRAPH'))
  return any(child.local_name == WEIGHTS_KEY
             for child in graph.nodes[0].children)


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
# Finding weights
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

  def _recorded(self, key: str) -> Any:
    """`key` of the manifest, else of the run config (None if neither)."""
    for meta in (self.manifest, self.run_config):
      if meta and meta.get(key):
        return meta[key]
    return None

  @property
  def model_name(self) -> str | None:
    return self._recorded('model')

  @property
  def preset(self) -> str | None:
    return self._recorded('preset')

  @property
  def config_dict(self) -> dict | None:
    # The weights' own manifest wins; a tf checkpoint uses the run config.
    order = (self.manifest, self.run_config) if self.kind == 'h5' else \
        (self.run_config, self.manifest)
    for meta in order:
      if meta and meta.get('config') is not None:
        return meta['config']
    return None


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
    manifest = manifest_lib.manifest_for(path)
    return Source('h5', path, manifest=manifest,
                  step=manifest.get('steps') if manifest else None)

  run_config_path = os.path.join(path, RUN_CONFIG_FILE)
  run_config = fileio.read_json(run_config_path) if \
      os.path.exists(run_config_path) else None
  manifest_path = os.path.join(path, MANIFEST_FILE)
  manifest = manifest_lib.read_manifest(path)
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
  actual = manifest_lib.sha256_file(source.path)
  expected = source.manifest['sha256']
  if actual != expected:
    raise ChecksumError(
        f'sha256 mismatch for {source.path}: the manifest records {expected} '
        f'but the file has {actual}; the file is corrupt, truncated or was '
        'replaced without updating its manifest')


def source_sha256(source: Source) -> str | None:
  """The sha256 of an h5 source: its manifest's (checked by `load_weights`)
  or, for a file without one, computed from its bytes; None for a tf
  checkpoint."""
  if source.kind != 'h5':
    return None
  recorded = (source.manifest or {}).get('sha256')
  return recorded or manifest_lib.sha256_file(source.path)


# ----------------------------------------------------------------------------
# Loading weights
# ----------------------------------------------------------------------------

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
    if not has_weights_dict(source.path):
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


def config_for(entry, source: Source, preset: str | None = None):
  """The config the weights were trained with (manifest / config.json)."""
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
  entry = registry.get(name)
  source = resolve(checkpoint)
  if verify:
    verify_sha256(source)
  config = config_for(entry, source, preset)
  model = build_model(entry, config)
  load_weights(model, source, verify=False)
  return model


def load(name: str, checkpoint: str | None = None, preset: str | None = None,
         *, verify: bool = True, root: str | None = None) -> keras.Model:
  """`zoo.load`: model `name` with the bundled weights or a user's.

  Args:
    name: a registered model name (zoo.registry.names()).
    checkpoint: None for the bundled checkpoint of `name`; else a training
      workdir, a directory with a `.weights.h5` and its manifest.json, or the
      `.weights.h5` file itself.
    preset: only needed for weights without a manifest / config.json; if
      given and the manifest disagrees, ValueError.
    verify: check the weights' sha256 against the manifest (always done for
      bundled checkpoints unless False).
    root: the bundled checkpoints' directory (default
      `zoo.manifest.checkpoints_root()`).

  Returns:
    A built, uncompiled keras Model (a zoo.base.PoseModel) with the weights
    loaded. Its `backbone` property lists the layers to freeze for
    fine-tuning (`for layer in model.backbone: layer.trainable = False`),
    then `compile` and `fit` on `zoo.data.pipeline.make_dataset(...,
    map_fn=model.targets)`.

  Raises:
    BundledCheckpointError: checkpoint is None and none is bundled for `name`.
    ChecksumError: the weights file does not match the sha256 its manifest
      records.
    KeyError: `name` is not a registered model.
  """
  if checkpoint is not None:
    return load_model(name, checkpoint, preset, verify=verify)
  registry.get(name)  # KeyError listing the registered models
  path = manifest_lib.bundled_checkpoint(name, root)
  manifest = manifest_lib.bundled_manifest(name, root)
  if verify and not manifest.get('sha256'):
    raise ChecksumError(
        f'bundled manifest {os.path.join(path, MANIFEST_FILE)} records no '
        f'sha256; re-create it with `python -m trainers.publish '
        f'--model={name}`')
  try:
    return load_model(name, path, preset, verify=verify)
  except ChecksumError as e:
    raise ChecksumError(
        f'bundled checkpoint of {name!r}: {e}. Restore the file (e.g. `git '
        f'checkout -- {path}`; with Git LFS, `git lfs pull`) or re-create it '
        f'with `python -m trainers.publish --model={name}`') from None
