"""Flags shared by `trainers.run` and `trainers.evaluate` (defined once).

Both command lines import this module, so the shared flags exist once even
when both modules are imported in one process (tests).
"""
from __future__ import annotations

import importlib

from absl import flags

FLAGS = flags.FLAGS

if 'model' not in FLAGS:
  flags.DEFINE_string('model', None, 'Registered model name (zoo.registry).')
  flags.DEFINE_string('workdir', None, 'Run directory (default for training: '
                      'runs/MODEL_PRESET).')
  flags.DEFINE_string('data', 'synthetic', "'synthetic' (the embedded dataset,"
                      ' generated on first use), a directory of zoo '
                      'TFRecords, or a weighted mixture NAME=DIR:WEIGHT,... '
                      "(e.g. h36m=/d/h36m:0.6,mpii=/d/mpii:0.4; a source may "
                      "be 'synthetic'). Training default: the config's "
                      "train.data, else 'synthetic'.")
  flags.DEFINE_boolean('baseline', True, 'Also score the mean-pose baseline '
                       '(the mean pose of the training data).')
  flags.DEFINE_integer('data_seed', 0, 'Seed of the generated synthetic '
                       'dataset.')
  flags.DEFINE_string('preset', None, 'Config preset: paper | cpu | smoke '
                      '(training default: cpu).')
  flags.DEFINE_list('modules', [], 'Python modules to import before looking '
                    'up --model, e.g. a package that registers your own '
                    'models.')
  flags.DEFINE_boolean('progress', True, 'Show progress bars.')


def import_modules(names) -> None:
  """Imports --modules (they register models on import)."""
  for name in names or ():
    try:
      importlib.import_module(name)
    except ImportError as e:
      raise ValueError(f'--modules: cannot import {name!r}: {e}') from None
