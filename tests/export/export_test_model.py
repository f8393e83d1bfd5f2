"""A tiny PoseModel with a model-specific serving signature, for export tests.

Importing this module registers model `export_test`: two strided convs, a
dense head, and `extra_serving_signatures()` with a `lift` signature (2D
joints -> root-relative 3D joints through a small dense layer), so the
exporter's generic handling of extra signatures is tested without depending
on a paper model.
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from zoo import base
from zoo import registry
from zoo import skeleton as skel
from zoo.config import AugmentConfig, ModelConfig, TrainConfig

NAME = 'export_test'
J = skel.NUM_JOINTS


@dataclasses.dataclass
class ExportTestConfig(ModelConfig):
  input_size: int = 32
  filters: int = 4
  train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
  augment: AugmentConfig = dataclasses.field(
      default_factory=lambda: AugmentConfig(box_margin=1.3))


class ExportTestModel(base.PoseModel):
  """Image -> poses (dense head); 2D joints -> 3D (`lift`)."""

  config_class = ExportTestConfig

  def __init__(self, config: ExportTestConfig, **kwargs):
    super().__init__(config, **kwargs)
    f = config.filters
    self.conv1 = keras.layers.Conv2D(f, 3, strides=2, padding='same',
                                     activation='relu', name='conv1')
    self.conv2 = keras.layers.Conv2D(2 * f, 3, strides=2, padding='same',
                                     activation='relu', name='conv2')
    self.pool = keras.layers.GlobalAveragePooling2D(name='pool')
    self.head = keras.layers.Dense(J * 6, dtype='float32', name='head')
    self.lifter = keras.layers.Dense(J * 3, dtype='float32', name='lifter')
    self.lifter.build((None, J * 2))

  def call(self, inputs, training=False):
    x = self.pool(self.conv2(self.conv1(inputs['image'])))
    out = tf.reshape(self.head(x), [-1, J, 6])
    # Make the pose depend on the camera too (exercises the intrinsics path).
    focal = inputs['intrinsics'][:, 0, 0][:, None, None]
    return {'rel_m': out[..., :3], 'xy_unit': tf.sigmoid(out[..., 3:5]),
            'depth_m': 3. + 0.1 * tf.tanh(out[..., 5:6]) + focal * 1e-4,
            'logit': out[..., 5]}

  def decode(self, outputs, inputs):
    size = float(self.config.input_size)
    rel = outputs['rel_m'] * 1000.
    rel = rel - rel[:, skel.ROOT:skel.ROOT + 1]
    depth = outputs['depth_m'][:, skel.ROOT:skel.ROOT + 1] * 1000.
    cam = rel + tf.concat([tf.zeros_like(depth), tf.zeros_like(depth), depth],
                          -1)
    return {'poses3d_rel_mm': rel, 'poses3d_cam_mm': cam,
            'poses2d_px': outputs['xy_unit'] * size,
            'confidence': tf.sigmoid(outputs['logit'])}

  def extra_serving_signatures(self):
    def lift(poses2d, joint_weights):
      flat = tf.reshape(poses2d * joint_weights[..., None], [-1, J * 2])
      rel = tf.reshape(self.lifter(flat), [-1, J, 3]) * 100.
      return {'poses3d_rel_mm': rel - rel[:, :1],
              'scale': tf.reduce_mean(tf.abs(rel), axis=[1, 2])}
    return {'lift': (lift, [
        tf.TensorSpec([None, J, 2], tf.float32, name='poses2d'),
        tf.TensorSpec([None, J], tf.float32, name='joint_weights')])}

  @property
  def backbone(self):
    return [self.conv1, self.conv2]


registry.register(registry.ModelEntry(
    name=NAME, model_class=ExportTestModel, config_class=ExportTestConfig,
    presets={'paper': ExportTestConfig(), 'cpu': ExportTestConfig(),
             'smoke': ExportTestConfig()},
    description='test-only model with an extra serving signature'))
