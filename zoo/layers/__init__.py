"""Shared Keras layers, reused across the zoo's models.

All layers are registered Keras serializables in package 'pose3d_zoo'.
- residual.py: Residual (bottleneck block), ConvBNReLU.
- hourglass.py: Hourglass (recursive, configurable depth), StackLink.
- stem.py: Stem (7x7/2 conv, residuals, max-pool; stride 4).
- cpm.py: Convolutional Pose Machine stages: CPMTrunk (image CNN),
  CPMStage1, CPMStage (later stages).
"""
from zoo.layers.cpm import CPMStage, CPMStage1, CPMTrunk
from zoo.layers.hourglass import Hourglass, StackLink
from zoo.layers.residual import ConvBNReLU, Residual
from zoo.layers.stem import Stem

__all__ = ['CPMStage', 'CPMStage1', 'CPMTrunk', 'ConvBNReLU', 'Hourglass',
           'Residual', 'StackLink', 'Stem']
