"""A small ResNet (basic blocks, ResNet-18/34 layout) as a functional Keras model.

Why: `keras.applications` has ResNet-50 and larger but no ResNet-18, and the
zoo's `cpu` presets need a backbone that trains from scratch on two CPU cores.
The layout follows He et al. 2016 (v1, post-activation): a 7x7/2 conv stem with
BN-ReLU and a 3x3/2 max-pool (stride 4), then four stages of basic blocks
(two 3x3 convs, BN after each, identity or 1x1-conv/BN projection shortcut).
Stage strides are 1, 2, 2, 2 (output stride 32); a smaller `output_stride`
(16 or 8) replaces the last strides by dilation, as in DeepLab, so a 128 px
crop can still give an 8x8 feature map.

The model is functional (like `keras.applications`), so `save_weights` /
`load_weights` of the backbone alone work the same way for both. The last BN of
every block starts at gamma = 0 (Goyal et al. 2017), which helps training from
scratch. Layers compute in the global dtype policy (mixed precision safe).
"""
from __future__ import annotations

import keras

from zoo.layers.normalization import BatchNormalization

# Block counts of the standard basic-block ResNets.
BLOCK_COUNTS = {'resnet18': (2, 2, 2, 2), 'resnet34': (3, 4, 6, 3)}


def _conv_bn(x, filters: int, kernel: int, stride: int, dilation: int,
             name: str, zero_gamma: bool = False, relu: bool = True):
  x = keras.layers.Conv2D(filters, kernel, strides=stride, padding='same',
                          dilation_rate=dilation, use_bias=False,
                          kernel_initializer='he_normal', name=name + '_conv')(x)
  x = BatchNormalization(
      momentum=0.9, epsilon=1e-5, name=name + '_bn',
      gamma_initializer='zeros' if zero_gamma else 'ones')(x)
  if relu:
    x = keras.layers.ReLU(name=name + '_relu')(x)
  return x


def _basic_block(x, filters: int, stride: int, dilation: int, name: str):
  shortcut = x
  if stride != 1 or x.shape[-1] != filters:
    shortcut = _conv_bn(x, filters, 1, stride, 1, name + '_proj', relu=False)
  y = _conv_bn(x, filters, 3, stride, 1 if stride > 1 else dilation,
               name + '_1')
  y = _conv_bn(y, filters, 3, 1, dilation, name + '_2', zero_gamma=True,
               relu=False)
  y = keras.layers.Add(name=name + '_add')([shortcut, y])
  return keras.layers.ReLU(name=name + '_out')(y)


def resnet(input_shape: tuple[int | None, int | None, int] = (None, None, 3),
           block_counts: tuple[int, ...] = BLOCK_COUNTS['resnet18'],
           widths: tuple[int, ...] = (64, 128, 256, 512),
           output_stride: int = 32, name: str = 'resnet18') -> keras.Model:
  """Builds a basic-block ResNet: image [B, H, W, C] -> features.

  Args:
    input_shape: (H, W, C) of the (already normalised) input.
    block_counts: blocks per stage (ResNet-18: 2, 2, 2, 2).
    widths: channels per stage; the stem has widths[0] channels.
    output_stride: total downsampling, one of 8, 16, 32 (4 * 2**(stages-1)
      at most); strides beyond it become dilations.
    name: model name (prefixes nothing; layer names are stage/block based).

  Returns:
    A functional keras.Model with output [B, H / output_stride,
    W / output_stride, widths[-1]].
  """
  if len(block_counts) != len(widths) or not block_counts:
    raise ValueError(f'resnet: block_counts {block_counts} and widths {widths} '
                     'must be non-empty and of equal length')
  max_stride = 4 * 2 ** (len(widths) - 1)
  valid = [s for s in (4, 8, 16, 32, 64) if s <= max_stride]
  if output_stride not in valid:
    raise ValueError(f'resnet: output_stride must be one of {valid} for '
                     f'{len(widths)} stages, got {output_stride}')
  inputs = keras.Input(shape=input_shape, name='image')
  x = _conv_bn(inputs, widths[0], 7, 2, 1, 'stem')
  x = keras.layers.MaxPooling2D(3, strides=2, padding='same',
                                name='stem_pool')(x)
  current_stride, dilation = 4, 1
  for stage, (count, width) in enumerate(zip(block_counts, widths)):
    stride = 1 if stage == 0 else 2
    if stride > 1 and current_stride * stride > output_stride:
      dilation *= stride
      stride = 1
    current_stride *= stride
    for block in range(count):
      x = _basic_block(x, width, stride if block == 0 else 1, dilation,
                       f'stage{stage + 1}_block{block + 1}')
  return keras.Model(inputs, x, name=name)
