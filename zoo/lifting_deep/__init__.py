"""Lifting from the Deep (Tome, Russell, Agapito, CVPR 2017); importing this
package registers `lifting_deep`.

- prior.py: the mixture-of-PPCA 3D pose prior (fit, tfd distribution,
  official .mat import) and its batched lifting (PosePrior.lift,
  LiftingLayer).
- model.py: the CPM with per-stage lifting, projection and fusion.
- config.py / presets.py: paper defaults and the paper / cpu / smoke presets.

`prepare(config, workdir, data_dir)` (the registry hook the trainer runs
before building) fits the prior on the embedded motion-capture stream
(zoo.data.synthetic.poses, train split) or loads a cached one, and returns
the config with `prior_path` set.
"""
from __future__ import annotations

import os

from absl import logging

from zoo import config as config_lib
from zoo import registry
from zoo.lifting_deep.config import LiftingDeepConfig
from zoo.lifting_deep.model import LiftingDeep
from zoo.lifting_deep.presets import presets
from zoo.lifting_deep.layer import LiftingLayer
from zoo.lifting_deep.prior import PosePrior

# Part of the cache file name: bump when fitting changes for the same inputs.
PRIOR_FIT_VERSION = 1


def prior_cache_path(config: LiftingDeepConfig,
                     cache_dir: str | None = None) -> str:
  """Where the prior fitted for `config` is cached.

  Under `cache_dir`, default $POSE3D_ZOO_CACHE or ~/.cache/pose3d_zoo
  (zoo.data.synthetic.cache_root), in priors/.
  """
  from zoo.data import synthetic
  c = config
  name = (f'lifting_prior_k{c.num_components}_b{c.num_basis}_n'
          f'{c.prior_num_poses}_seed{c.prior_seed}_em{c.prior_em_iterations}'
          f'_data{synthetic.GENERATOR_VERSION}_v{PRIOR_FIT_VERSION}.npz')
  return os.path.join(synthetic.cache_root(cache_dir), 'priors', name)


def prepare(config: LiftingDeepConfig, workdir: str | None = None,
            data_dir: str | None = None,
            cache_dir: str | None = None) -> LiftingDeepConfig:
  """Fits (or loads the cached) prior; returns config with prior_path set.

  A config whose prior_path already exists is returned unchanged. The prior
  is fitted on zoo.data.synthetic.poses(prior_num_poses, 'train',
  prior_seed), whatever the training data (the paper's prior is likewise
  trained on motion capture alone).
  """
  del workdir, data_dir
  if config.prior_path and os.path.exists(config.prior_path):
    return config
  path = prior_cache_path(config, cache_dir)
  if not os.path.exists(path):
    from zoo.data import synthetic
    logging.info('Fitting the pose prior (%d components x %d bases) on %d '
             'motion-capture poses; cached at %s.', config.num_components,
             config.num_basis, config.prior_num_poses, path)
    poses = synthetic.poses(config.prior_num_poses, 'train', config.prior_seed)
    prior = PosePrior.fit(poses, config.num_components, config.num_basis,
                          seed=config.prior_seed,
                          em_iterations=config.prior_em_iterations,
                          num_angles=config.num_angles,
                          lift_noise=config.lift_noise)
    prior.save(path)
  return config_lib.replace(config, prior_path=path)


registry.register(registry.ModelEntry(
    name='lifting_deep', model_class=LiftingDeep,
    config_class=LiftingDeepConfig, presets=presets(),
    description='Convolutional Pose Machine whose stages lift their 2D '
                'landmarks with a mixture-of-PPCA 3D pose prior, project them '
                'back and fuse the projected belief maps (Tome et al. 2017).',
    prepare=prepare))

__all__ = ['LiftingDeep', 'LiftingDeepConfig', 'LiftingLayer', 'PosePrior',
           'prepare', 'prior_cache_path', 'presets']
