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

Importing `zoo` stays light (no TensorFlow): the bundled-checkpoint helpers
come from zoo.manifest, and `load` imports zoo.weights (TensorFlow) only when
called.
"""
from __future__ import annotations

from zoo.manifest import (CHECKPOINTS_ENV, MANIFEST_FILE,
                          BundledCheckpointError, ChecksumError,
                          bundled_checkpoint, bundled_manifest,
                          bundled_models, checkpoints_root)

__all__ = ['CHECKPOINTS_ENV', 'MANIFEST_FILE', 'BundledCheckpointError',
           'ChecksumError', 'bundled_checkpoint', 'bundled_manifest',
           'bundled_models', 'checkpoints_root', 'load']


def load(name: str, checkpoint: str | None = None, preset: str | None = None,
         *, verify: bool = True, root: str | None = None):
  """A zoo model with trained weights, built and ready to compile.

  `zoo.weights.load` (its arguments, return value and errors): the bundled
  checkpoint of `name`, or a user's `checkpoint` (a training workdir, a
  directory with a `.weights.h5` and its manifest.json, or the file).
  """
  from zoo import weights  # TensorFlow: only when a model is loaded
  return weights.load(name, checkpoint, preset, verify=verify, root=root)
