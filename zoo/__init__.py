"""pose3d-zoo: 3D human pose estimation models, and `zoo.load` to get one.

  import zoo
  model = zoo.load('c2f_volumetric')                  # the bundled checkpoint
  model = zoo.load('c2f_volumetric', checkpoint=DIR)  # a user's weights

Bundled checkpoints live in `zoo/checkpoints/<model>/` (`<model>.weights.h5`
+ `manifest.json`, written by `python -m trainers.publish`); they were trained
on the zoo's embedded synthetic dataset at the `cpu` preset, not on
Human3.6M (zoo/checkpoints/README.md). The root can be moved with the
environment variable POSE3D_ZOO_CHECKPOINTS (tests publish into a temporary
one).

Why here: loading a trained model is the one thing every user does first.
Importing `zoo` stays light (no TensorFlow): `load` imports the trainer's
checkpoint code (trainers.checkpoints.load_model, the one way weights are
loaded) only when called, which also avoids an import cycle (trainers imports
zoo).
"""
from __future__ import annotations

import json
import os
from typing import Any

CHECKPOINTS_ENV = 'POSE3D_ZOO_CHECKPOINTS'
MANIFEST_FILE = 'manifest.json'  # == trainers.checkpoints.MANIFEST_FILE

__all__ = ['CHECKPOINTS_ENV', 'BundledCheckpointError', 'bundled_checkpoint',
           'bundled_manifest', 'bundled_models', 'checkpoints_root', 'load']


class BundledCheckpointError(FileNotFoundError):
  """No bundled checkpoint exists for a model (or it is incomplete)."""


def checkpoints_root(root: str | None = None) -> str:
  """The directory of bundled checkpoints.

  `root` if given, else $POSE3D_ZOO_CHECKPOINTS, else zoo/checkpoints next to
  this file.
  """
  return os.path.abspath(
      root or os.environ.get(CHECKPOINTS_ENV)
      or os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      'checkpoints'))


def bundled_models(root: str | None = None) -> list[str]:
  """Names of the models with a bundled checkpoint (a manifest.json)."""
  root = checkpoints_root(root)
  if not os.path.isdir(root):
    return []
  return sorted(
      name for name in os.listdir(root)
      if not name.startswith('.')
      and os.path.isfile(os.path.join(root, name, MANIFEST_FILE)))


def bundled_checkpoint(name: str, root: str | None = None) -> str:
  """The directory of model `name`'s bundled checkpoint.

  Raises:
    BundledCheckpointError: none is bundled for `name`; the message lists
      the models that have one.
  """
  root = checkpoints_root(root)
  path = os.path.join(root, name)
  if os.path.isfile(os.path.join(path, MANIFEST_FILE)):
    return path
  available = bundled_models(root)
  raise BundledCheckpointError(
      f'no bundled checkpoint for model {name!r} in {root}; bundled models: '
      f'{", ".join(available) if available else "none"}. Pass checkpoint=PATH '
      '(a training workdir, a directory with a .weights.h5 and its '
      f'manifest.json, or the file), or create one with `python -m '
      f'trainers.publish --model={name}`')


def bundled_manifest(name: str, root: str | None = None) -> dict[str, Any]:
  """The manifest of model `name`'s bundled checkpoint (see trainers.publish)."""
  with open(os.path.join(bundled_checkpoint(name, root), MANIFEST_FILE)) as f:
    return json.load(f)


def load(name: str, checkpoint: str | None = None, preset: str | None = None,
         *, verify: bool = True, root: str | None = None):
  """A zoo model with trained weights, built and ready to compile.

  Args:
    name: a registered model name (zoo.registry.names()).
    checkpoint: None for the bundled checkpoint of `name`; else a training
      workdir, a directory with a `.weights.h5` and its manifest.json, or the
      `.weights.h5` file itself.
    preset: only needed for weights without a manifest / config.json; if
      given and the manifest disagrees, ValueError.
    verify: check the weights' sha256 against the manifest (always done for
      bundled checkpoints unless False).
    root: the bundled checkpoints' directory (default `checkpoints_root()`).

  Returns:
    A built, uncompiled keras Model (a zoo.base.PoseModel) with the weights
    loaded. Its `backbone` property lists the layers to freeze for
    fine-tuning (`for layer in model.backbone: layer.trainable = False`),
    then `compile` and `fit` on `zoo.data.pipeline.make_dataset(...,
    map_fn=model.targets)`.

  Raises:
    BundledCheckpointError: checkpoint is None and none is bundled for `name`.
    trainers.checkpoints.ChecksumError: the weights file does not match the
      sha256 its manifest records.
    KeyError: `name` is not a registered model.
  """
  from trainers import checkpoints  # lazy: TF, and trainers imports zoo
  if checkpoint is not None:
    return checkpoints.load_model(name, checkpoint, preset, verify=verify)
  from zoo import registry
  registry.get(name)  # KeyError listing the registered models
  path = bundled_checkpoint(name, root)
  manifest = bundled_manifest(name, root)
  if verify and not manifest.get('sha256'):
    raise checkpoints.ChecksumError(
        f'bundled manifest {os.path.join(path, MANIFEST_FILE)} records no '
        f'sha256; re-create it with `python -m trainers.publish '
        f'--model={name}`')
  try:
    return checkpoints.load_model(name, path, preset, verify=verify)
  except checkpoints.ChecksumError as e:
    raise checkpoints.ChecksumError(
        f'bundled checkpoint of {name!r}: {e}. Restore the file (e.g. `git '
        f'checkout -- {path}`; with Git LFS, `git lfs pull`) or re-create it '
        f'with `python -m trainers.publish --model={name}`') from None
