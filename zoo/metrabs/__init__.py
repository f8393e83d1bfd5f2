"""MeTRAbs (Sarandi et al. 2020): metric-scale truncation-robust heatmaps and
absolute 3D pose. Importing this package registers the model `metrabs`.

- config.py: MetrabsConfig (the paper's defaults).
- model.py: the Keras model (backbone, 1x1 head, soft-argmax decoding,
  losses, extra truncation metrics).
- reconstruction.py: the differentiable least-squares root translation.
- presets.py: 'paper' / 'cpu' / 'smoke'.
"""
from zoo import registry
from zoo.metrabs.config import MetrabsConfig
from zoo.metrabs.model import Metrabs
from zoo.metrabs import presets

registry.register(registry.ModelEntry(
    name='metrabs', model_class=Metrabs, config_class=MetrabsConfig,
    presets=presets.presets(),
    description='Metric-scale truncation-robust 2D + 3D heatmaps (one 1x1 '
                'conv on a backbone), soft-argmax, and absolute pose by a '
                'differentiable least-squares root translation.'))

__all__ = ['Metrabs', 'MetrabsConfig']
