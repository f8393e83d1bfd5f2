"""Tests for benchmarks/profile_ops.py."""
from benchmarks import profile_ops


def test_op_types_fall_into_categories():
  category = profile_ops.category
  assert category('_MklNativeConv2DBackpropFilterWithBias') == \
      'convolution and matmul'
  assert category('_MklNativeFusedBatchNormGradV3') == 'normalisation'
  assert category('Sum') == 'softmax and reductions'
  assert category('Cast') == 'casts'
  assert category('_MklTranspose') == 'data movement'
  assert category('ReluGrad') == 'elementwise and other'
