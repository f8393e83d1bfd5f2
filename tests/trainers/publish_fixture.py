"""One smoke-preset bundled checkpoint in a temporary root, made once per
process and shared by tests/trainers/test_publish.py and tests/zoo/test_load.py.

It goes through the real path: trainers.publish_lib.publish trains the `smoke`
preset of MODEL on the embedded synthetic data, then bundles it. MODEL is
lifting_deep, the model whose weights must carry its pose prior (a bundled
checkpoint must load with no prior file and no prior fit).
"""
from __future__ import annotations

import atexit
import dataclasses
import os
import shutil
import tempfile

MODEL = 'lifting_deep'
PRESET = 'smoke'


@dataclasses.dataclass(frozen=True)
class Published:
  root: str        # the temporary checkpoints root
  workdir: str     # the finished training workdir it was published from
  name: str
  manifest: dict

  @property
  def directory(self) -> str:
    return os.path.join(self.root, self.name)

  @property
  def weights(self) -> str:
    return os.path.join(self.directory, f'{self.name}.weights.h5')


_published: Published | None = None


def published() -> Published:
  """The shared published checkpoint (created on first use)."""
  global _published
  if _published is None:
    from trainers import publish_lib
    from zoo import registry
    from zoo.data import synthetic
    # Generate the training data in this process first: the trainer's
    # generation forks worker processes, which can deadlock once TensorFlow
    # has run in this process (as it has when other tests ran before).
    train = registry.get(MODEL).config(PRESET).train
    synthetic.ensure_dataset(train.num_train_examples, train.num_test_examples,
                             seed=0, num_workers=1, progress=False)
    base = tempfile.mkdtemp(prefix='pose3d_zoo_publish_test_')
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    root = os.path.join(base, 'checkpoints')
    runs = os.path.join(base, 'runs')
    manifest = publish_lib.publish(MODEL, preset=PRESET, workdir_root=runs,
                                   checkpoints_root=root, progress=False,
                                   command='pytest publish_fixture')
    _published = Published(root, os.path.join(runs, f'{MODEL}_{PRESET}'),
                           MODEL, manifest)
  return _published


def copy_root(published_: Published, destination: str) -> str:
  """A private copy of the published root (for tests that modify it)."""
  root = os.path.join(destination, 'checkpoints')
  shutil.copytree(published_.root, root)
  return root
