"""A tiny PoseModel and tiny TFRecord datasets for the trainer's tests.

Importing this module registers model `trainer_test` (so the trainer tests do
not depend on the paper models). Subprocess tests import it with
`--modules=trainer_test_model` and this directory on PYTHONPATH.
"""
from __future__ import annotations

import dataclasses
import os

import cv2
import keras
import numpy as np
import tensorflow as tf

from zoo import base
from zoo import registry
from zoo import skeleton as skel
from zoo.config import AugmentConfig, ModelConfig, TrainConfig
from zoo.data import records

NAME = 'trainer_test'
J = skel.NUM_JOINTS
PREPARED_FILE = 'prepared.txt'
ROOT_DEPTH_MM = 3000.


def _train_config(**kwargs) -> TrainConfig:
  values = dict(optimizer='adam', learning_rate=1e-3, batch_size=4, steps=4,
                checkpoint_every=2, log_every=2, num_train_examples=16,
                num_test_examples=8, num_eval_examples=None)
  values.update(kwargs)
  return TrainConfig(**values)


@dataclasses.dataclass
class TinyConfig(ModelConfig):
  input_size: int = 32
  filters: int = 4
  flip_test: bool = False
  train: TrainConfig = dataclasses.field(default_factory=_train_config)
  augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)


class TinyPoseModel(base.PoseModel):
  """Two strided convs, global pooling, one float32 dense head."""

  config_class = TinyConfig

  def __init__(self, config: TinyConfig, **kwargs):
    super().__init__(config, **kwargs)
    f = config.filters
    self.conv1 = keras.layers.Conv2D(f, 3, strides=2, padding='same',
                                     activation='relu', name='conv1')
    self.conv2 = keras.layers.Conv2D(2 * f, 3, strides=2, padding='same',
                                     activation='relu', name='conv2')
    self.pool = keras.layers.GlobalAveragePooling2D(name='pool')
    self.head = keras.layers.Dense(J * 5, dtype='float32', name='head')

  def call(self, inputs, training=False):
    x = self.pool(self.conv2(self.conv1(inputs['image'])))
    out = tf.reshape(self.head(x), [-1, J, 5])
    return {'rel_m': out[..., :3], 'xy_unit': out[..., 3:]}

  def targets(self, features):
    x = {'image': features['image'], 'intrinsics': features['intrinsics']}
    y = {k: features[k] for k in ('joints3d_rel_mm', 'joints2d_px',
                                  'joint_valid_3d', 'joint_valid_2d')}
    return x, y

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                   training=True):
    size = float(self.config.input_size)
    err3d = tf.reduce_mean(tf.abs(y_pred['rel_m'] - y['joints3d_rel_mm'] /
                                  1000.), -1) * y['joint_valid_3d']
    err2d = tf.reduce_mean(tf.abs(y_pred['xy_unit'] - y['joints2d_px'] /
                                  size), -1) * y['joint_valid_2d']
    per_example = tf.reduce_mean(err3d + err2d, -1)
    loss = tf.reduce_mean(per_example)
    # Keras sums gradients over replicas: scale like Keras losses do.
    return loss / float(tf.distribute.get_strategy().num_replicas_in_sync)

  def decode(self, outputs, inputs):
    rel = outputs['rel_m'] * 1000.
    rel = rel - rel[:, skel.ROOT:skel.ROOT + 1]
    cam = rel + tf.constant([0., 0., ROOT_DEPTH_MM])
    return {'poses3d_rel_mm': rel, 'poses3d_cam_mm': cam,
            'poses2d_px': outputs['xy_unit'] * float(self.config.input_size),
            'confidence': tf.ones(tf.shape(rel)[:2])}

  def extra_metrics(self, poses, features):
    """Per-example root-relative MPJPE, computed independently of zoo.metrics."""
    gt = features['joints3d_rel_mm']
    err = tf.norm(poses['poses3d_rel_mm'] - gt, axis=-1)
    return {'extra_mpjpe_mm': tf.reduce_mean(err, -1)}

  @property
  def backbone(self):
    return [self.conv1, self.conv2]


def _prepare(config, workdir, data_dir):
  with open(os.path.join(workdir, PREPARED_FILE), 'w') as f:
    f.write(data_dir)
  return config


registry.register(registry.ModelEntry(
    name=NAME, model_class=TinyPoseModel, config_class=TinyConfig,
    presets={'paper': TinyConfig(filters=8), 'cpu': TinyConfig(),
             'smoke': TinyConfig()},
    description='test-only model', prepare=_prepare))


# ----------------------------------------------------------------------------
# Tiny datasets in the zoo's record format
# ----------------------------------------------------------------------------

IMAGE_SIZE = 64
ACTIONS = ('walk', 'sit')


def _example(rng: np.random.Generator, index: int, split: str):
  k = np.array([[80., 0., 31.5], [0., 80., 31.5], [0., 0., 1.]], np.float32)
  rel = rng.normal(0., 150., (J, 3))
  rel -= rel[skel.ROOT]
  cam = rel + np.array([rng.normal(0, 50), rng.normal(0, 50),
                        ROOT_DEPTH_MM + rng.normal(0, 100)])
  uvw = cam @ k.T
  joints2d = uvw[:, :2] / uvw[:, 2:]
  lo, hi = joints2d.min(0) - 4, joints2d.max(0) + 4
  box = np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]], np.float32)
  image = rng.integers(0, 60, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
  for x, y in joints2d:  # something to learn from
    cv2.circle(image, (int(round(x)), int(round(y))), 2, (255, 200, 50), -1)
  ok, jpeg = cv2.imencode('.jpg', image)
  assert ok
  return records.make_example({
      'image/encoded': jpeg.tobytes(), 'joints2d_px': joints2d,
      'joints3d_cam_mm': cam, 'intrinsics': k, 'box_xywh': box,
      'dataset': 'tiny', 'subject': 'S1' if split == 'train' else 'S9',
      'action': ACTIONS[index % len(ACTIONS)], 'camera': 'c0',
      'frame': index, 'image/height': IMAGE_SIZE, 'image/width': IMAGE_SIZE})


def write_dataset(out_dir: str, num_train: int = 16, num_test: int = 8,
                  seed: int = 0) -> str:
  """Writes train (2 shards) and test (1 shard) splits and a manifest."""
  rng = np.random.default_rng(seed)
  os.makedirs(out_dir, exist_ok=True)
  for split, num, shards in (('train', num_train, 2), ('test', num_test, 1)):
    with records.ShardedWriter(out_dir, split, shards) as writer:
      for i in range(num):
        writer.write(_example(rng, i, split))
  records.write_manifest(out_dir, {'seed': seed, 'dataset': 'tiny',
                                   'num_examples': {'train': num_train,
                                                    'test': num_test}})
  return out_dir


def train(workdir, data, **kwargs):
  """trainers.train_lib.train of this model: smoke preset, default strategy,
  seed 1, deterministic input, no progress bar, no evaluation unless asked,
  float32 unless asked (these tests compare numbers; the precision tests
  choose theirs)."""
  from trainers import train_lib  # local: this module is imported by conftest
  kwargs.setdefault('run_evaluation', False)
  kwargs.setdefault('precision', 'float32')
  return train_lib.train(NAME, preset='smoke', workdir=str(workdir),
                         data=data, strategy='default', seed=1,
                         deterministic=True, progress=False, **kwargs)


def weights(model) -> list:
  """Copies of a model's weights as NumPy arrays."""
  return [v.numpy().copy() for v in model.weights]
