"""Final weights on disk: file names, manifests, sha256 and bundled checkpoints.

A trained model's portable result is `DIR/model.weights.h5` (Keras weights)
next to `DIR/manifest.json` (model, preset, config, command, steps, data,
metrics and the weights' sha256). A training workdir also holds
`config.json` (the run's model, preset and config, written when training
starts) and `checkpoints/` (tf.train checkpoints of the training state).

As replacing the weights and then the manifest is two renames, a writer
first writes the new manifest as `.manifest.pending.json`: a writer that
dies between the renames leaves new weights, the old manifest and a pending
manifest whose sha256 matches the new weights, and `read_manifest` uses that
one.

Bundled checkpoints live in `zoo/checkpoints/<model>/` (or under
$POSE3D_ZOO_CHECKPOINTS). No TensorFlow here, so `import zoo` stays light;
zoo/weights.py builds models and loads weights.
"""
from __future__ import annotations

import hashlib
import os
from typing import Any

from absl import logging

from zoo import fileio

WEIGHTS_FILE = 'model.weights.h5'
MANIFEST_FILE = 'manifest.json'
PENDING_MANIFEST_FILE = '.manifest.pending.json'
RUN_CONFIG_FILE = 'config.json'
# A training run's final metrics (trainers.train_lib) and a re-evaluation's
# (trainers.evaluate), both JSON in the workdir.
METRICS_FILE = 'metrics.json'
EVAL_FILE = 'metrics_eval.json'
CHECKPOINT_DIR = 'checkpoints'
MANIFEST_VERSION = 1
CHECKPOINTS_ENV = 'POSE3D_ZOO_CHECKPOINTS'


class ChecksumError(ValueError):
  """A weights file does not match the sha256 its manifest records."""


class BundledCheckpointError(FileNotFoundError):
  """No bundled checkpoint exists for a model (or it is incomplete)."""


def sha256_file(path: str) -> str:
  """The sha256 of a file's bytes, as a hex string."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def read_manifest(directory: str) -> dict | None:
  """MANIFEST_FILE of `directory` (None if absent), or the pending manifest
  where a write died between its two renames (its sha256 matches the
  weights file)."""
  path = os.path.join(directory, MANIFEST_FILE)
  manifest = fileio.read_json(path) if os.path.exists(path) else None
  pending_path = os.path.join(directory, PENDING_MANIFEST_FILE)
  if not os.path.exists(pending_path):
    return manifest
  try:
    pending = fileio.read_json(pending_path)
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


def manifest_for(weights_path: str) -> dict | None:
  """The manifest next to a weights file, if it describes that file."""
  manifest = read_manifest(os.path.dirname(os.path.abspath(weights_path)))
  if manifest is None:
    return None
  if manifest.get('weights_file', WEIGHTS_FILE) != os.path.basename(
      weights_path):
    return None
  return manifest


# ----------------------------------------------------------------------------
# Bundled checkpoints
# ----------------------------------------------------------------------------

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
  return fileio.read_json(
      os.path.join(bundled_checkpoint(name, root), MANIFEST_FILE))
