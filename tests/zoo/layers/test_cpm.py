"""Tests for zoo/layers/cpm.py: Convolutional Pose Machine stage layers."""
import keras
import numpy as np
import tensorflow as tf

from zoo.layers.cpm import CPMStage, CPMStage1, CPMTrunk


def test_trunk_stride_and_paper_shapes():
  trunk = CPMTrunk(128, 9, num_pools=3)
  assert trunk.compute_output_shape((2, 368, 368, 3)) == (2, 46, 46, 128)
  small = CPMTrunk(8, 3, num_pools=2, batch_norm=True)
  out = small(tf.random.uniform([2, 32, 32, 3]), training=False)
  assert out.shape == (2, 8, 8, 8)
  assert np.all(out.numpy() >= 0)   # ends in ReLU + max-pool


def test_stage1_and_later_stage_shapes_and_linear_heads():
  features = tf.random.uniform([2, 8, 8, 8])
  stage1 = CPMStage1(15, feature_channels=4, mid_channels=16, kernel_size=3)
  maps = stage1(features)
  assert maps.shape == (2, 8, 8, 15)
  assert np.any(maps.numpy() < 0)   # linear head (no ReLU on beliefs)
  stage = CPMStage(15, channels=8, kernel_size=3, num_convs=2,
                   feature_channels=4, batch_norm=True)
  out = stage([features, maps, tf.zeros([2, 8, 8, 1])], training=True)
  assert out.shape == (2, 8, 8, 15)
  convs = [l for l in stage.blocks if isinstance(l, keras.layers.Conv2D)]
  assert [c.kernel_size for c in convs] == [(3, 3), (3, 3), (1, 1), (1, 1)]
  # Input of the first k x k conv: 4 trunk features + 15 beliefs + centre.
  assert convs[0].kernel.shape == (3, 3, 20, 8)


def test_configs_round_trip():
  for layer in (CPMTrunk(16, 5, 2, True), CPMStage1(15, 8, 32, 5),
                CPMStage(15, 16, 7, 5, 8, False)):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_deeper_trunk_adds_convs_per_resolution_and_after_the_last_pool():
  trunk = CPMTrunk(8, 3, num_pools=2, batch_norm=True, convs_per_pool=2,
                   post_convs=1)
  out = trunk(tf.random.uniform([2, 32, 32, 3]), training=False)
  assert out.shape == (2, 8, 8, 8)
  convs = [l for l in trunk.blocks if isinstance(l, keras.layers.Conv2D)]
  assert [c.name for c in convs] == ['conv1_conv', 'conv1_2_conv',
                                     'conv2_conv', 'conv2_2_conv',
                                     'post1_conv']
  # The defaults keep the three-conv trunk's layer list (saved weights load).
  plain = CPMTrunk(8, 3, num_pools=2, batch_norm=True)
  assert [l.name for l in plain.blocks] == [
      'conv1_conv', 'conv1_bn', 'conv1_relu', 'pool1',
      'conv2_conv', 'conv2_bn', 'conv2_relu', 'pool2']
  clone = CPMTrunk.from_config(trunk.get_config())
  assert clone.get_config() == trunk.get_config()
