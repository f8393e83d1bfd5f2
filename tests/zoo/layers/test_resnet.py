"""Tests for zoo/layers/resnet.py: shapes, dilation and block layout."""
import numpy as np
import pytest
import keras

from zoo.layers import resnet


@pytest.mark.parametrize('output_stride', [8, 16, 32])
def test_output_shape_follows_output_stride(output_stride):
  model = resnet.resnet((64, 64, 3), widths=(4, 8, 8, 16),
                        output_stride=output_stride)
  assert model.output_shape == (None, 64 // output_stride,
                                64 // output_stride, 16)
  out = model(np.zeros((2, 64, 64, 3), np.float32))
  assert out.shape == (2, 64 // output_stride, 64 // output_stride, 16)


def test_resnet18_layout_and_dilation():
  model = resnet.resnet((64, 64, 3), output_stride=16, widths=(4, 8, 8, 16))
  convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
  # stem + 8 blocks x 2 convs + 3 projections (stages 2-4 change width or
  # stride; stage 3 -> 4 changes width).
  assert len(convs) == 1 + 16 + 3
  stage4 = [l for l in convs if l.name.startswith('stage4')]
  assert all(l.strides == (1, 1) for l in stage4)
  assert any(l.dilation_rate == (2, 2) for l in stage4)
  resnet34 = resnet.resnet((32, 32, 3), resnet.BLOCK_COUNTS['resnet34'],
                           widths=(2, 2, 4, 4))
  adds = [l for l in resnet34.layers if isinstance(l, keras.layers.Add)]
  assert len(adds) == 3 + 4 + 6 + 3


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match='output_stride'):
    resnet.resnet((64, 64, 3), output_stride=12)
  with pytest.raises(ValueError, match='equal length'):
    resnet.resnet((64, 64, 3), block_counts=(2, 2), widths=(4, 8, 16))
