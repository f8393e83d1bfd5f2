"""Coarse-to-fine volumetric prediction (Pavlakos et al., CVPR 2017) and the
variants its tables compare; importing this package registers them:

- c2f_volumetric: stacked hourglasses, coarse-to-fine depth schedule.
- volumetric_stacked: naive stacking, every stack at full depth.
- coordinate_regression: one hourglass + dense layer to 3 x J (baseline).
- decoupled_volumetric: image -> 2D heatmaps -> (heatmaps only) -> volume.
"""
from zoo import registry
from zoo.c2f_volumetric.config import C2FConfig
from zoo.c2f_volumetric.model import (CoordinateRegression, DecoupledVolumetric,
                                      VolumetricHourglass)
from zoo.c2f_volumetric.presets import presets

_DESCRIPTIONS = {
    'c2f_volumetric': 'Stacked hourglasses predicting per-voxel likelihoods, '
                      'depth resolution growing per stack (d = 1, 2, 4, 64).',
    'volumetric_stacked': 'Naive stacking: every hourglass predicts the full-'
                          'depth volume.',
    'coordinate_regression': 'One hourglass and a dense layer regressing '
                             '3 x J coordinates (L2 loss).',
    'decoupled_volumetric': 'Network 1: image -> 2D heatmaps; network 2: '
                            'heatmaps only -> 3D volume.',
}
_CLASSES = {
    'c2f_volumetric': VolumetricHourglass,
    'volumetric_stacked': VolumetricHourglass,
    'coordinate_regression': CoordinateRegression,
    'decoupled_volumetric': DecoupledVolumetric,
}

for _name, _cls in _CLASSES.items():
  registry.register(registry.ModelEntry(
      name=_name, model_class=_cls, config_class=C2FConfig,
      presets=presets(_name), description=_DESCRIPTIONS[_name]))

__all__ = ['C2FConfig', 'CoordinateRegression', 'DecoupledVolumetric',
           'VolumetricHourglass', 'presets']
