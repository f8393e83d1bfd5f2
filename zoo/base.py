"""The contract every zoo model meets, so trainer, evaluator and exporter never
branch on a model name.

Inputs (a dict): `image` float32 [B, S, S, 3] RGB in [0, 1] (S = config.input_size)
and `intrinsics` float32 [B, 3, 3] of that crop (pixels).

A model implements:
- `call(inputs, training)` -> dict of raw outputs (float32 at the outputs, also
  under mixed precision).
- `targets(features)` -> (x, y): maps a batch of pipeline features
  (zoo.data.pipeline) to model inputs and loss targets. Must be traceable by
  tf.data (no Python side effects).
- `compute_loss(x, y, y_pred, sample_weight=None, training=True)` -> float32
  scalar (Keras 3 hook; `fit` calls it).
- `decode(outputs, inputs)` -> dict of float32 tensors, in-graph:
    poses3d_rel_mm [B, 17, 3] root-relative, camera frame (x right, y down,
                   z forward), millimetres;
    poses3d_cam_mm [B, 17, 3] absolute camera frame, millimetres;
    poses2d_px     [B, 17, 2] crop pixels;
    confidence     [B, 17]   in [0, 1].
- `backbone` (property): the layers that a fine-tuning user freezes.

A model may override (PoseModel declares each with its default):
- `predict_poses(inputs, flip_test)`: call + decode (+ the flip test); the
  default flips at the pose level.
- `extra_metrics(poses, features)` -> {name: [B] or [B, J] array}: extra
  per-example evaluation values the evaluator averages (default: none).
- `extra_serving_signatures()` -> {name: (fn, [tf.TensorSpec(..., name=...)])}:
  model-specific SavedModel signatures beside serving_default and
  serving_bytes (default: none).

Its config is a dataclass deriving from zoo.config.ModelConfig (`input_size`,
`train`, `augment`; `flip_test`, the evaluation's default).
"""
from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from zoo import config as config_lib

OUTPUT_KEYS = ('poses3d_rel_mm', 'poses3d_cam_mm', 'poses2d_px', 'confidence')
# What each output holds, in its units and frame, for the files that carry
# them (zoo.predict's poses.json, an export's metadata). Image-level outputs
# (after zoo.inference maps a crop back to the image it came from).
OUTPUT_UNITS = {
    'poses3d_rel_mm': 'mm, root (pelvis) relative, camera axes',
    'poses3d_cam_mm': 'mm, camera frame of the input image (x right, y down, '
                      'z forward)',
    'poses2d_px': 'pixels of the input image (x right, y down)',
    'confidence': 'per joint, 0..1',
}


def replica_scaled(loss: tf.Tensor) -> tf.Tensor:
  """A replica's loss scaled by 1 / replicas, as Keras' compiled losses are.

  Keras sums gradients over replicas under tf.distribute, and its train_step
  unscales the returned loss for its tracker, so every `compute_loss` returns
  its batch mean through this.
  """
  replicas = tf.distribute.get_strategy().num_replicas_in_sync
  return loss / float(replicas) if replicas > 1 else loss


def distributed_mean(per_example: tf.Tensor, sample_weight=None) -> tf.Tensor:
  """Replica-scaled float32 batch mean of a [B] per-example loss."""
  per_example = tf.cast(per_example, tf.float32)
  if sample_weight is not None:
    per_example = per_example * tf.reshape(
        tf.cast(sample_weight, tf.float32), [-1])
  return replica_scaled(tf.reduce_mean(per_example))


class PoseModel(keras.Model):
  """Base class: holds the config and defines the zoo contract."""

  def __init__(self, config: Any, **kwargs):
    super().__init__(**kwargs)
    self.config = config

  # --- the contract -------------------------------------------------------
  def targets(self, features: dict[str, tf.Tensor]):
    raise NotImplementedError

  def decode(self, outputs: dict[str, tf.Tensor],
             inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    raise NotImplementedError

  @property
  def backbone(self) -> list[keras.layers.Layer]:
    raise NotImplementedError

  # --- optional hooks, with their defaults ----------------------------------
  def extra_metrics(self, poses: dict[str, Any],
                    features: dict[str, Any]) -> dict[str, Any]:
    """Extra per-example evaluation values ([B] or [B, J]; NaN = not
    counted) computed from decoded `poses` and the ground-truth `features`;
    the evaluator averages each over its finite entries. Default: none."""
    del poses, features
    return {}

  def extra_serving_signatures(self) -> dict[str, tuple[Any, list]]:
    """Model-specific serving signatures: {name: (fn, [tf.TensorSpec(...,
    name=...), ...])}, `fn(*tensors)` returning a dict of tensors. Default:
    none (the exporter always defines serving_default and serving_bytes)."""
    return {}

  # --- helpers shared by all models -------------------------------------
  def predict_poses(self, inputs: dict[str, tf.Tensor],
                    flip_test: bool = False) -> dict[str, tf.Tensor]:
    """call + decode, the path the evaluator and the exporter use.

    With `flip_test`, the mirrored crop is predicted too and the two decoded
    poses are averaged (pose-level flip test; models may override with a
    heatmap-level one, as the c2f paper does).
    """
    poses = self.decode(self(inputs, training=False), inputs)
    if not flip_test:
      return poses
    flipped = flip_inputs(inputs)
    poses_flipped = unflip_poses(
        self.decode(self(flipped, training=False), flipped),
        image_width=tf.shape(inputs['image'])[2])
    return {k: 0.5 * (poses[k] + poses_flipped[k]) for k in poses}

  def get_config(self):
    return {'config': config_lib.to_dict(self.config),
            'name': self.name}

  @classmethod
  def from_config(cls, cfg):
    config_cls = cls.config_class
    return cls(config_lib.from_dict(config_cls, cfg['config']),
               name=cfg.get('name'))

  config_class: type = None  # set by subclasses


def flip_inputs(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
  """Mirrors the crop horizontally; the camera's cx mirrors with it.

  With K' = K and cx' = W - 1 - cx, the mirrored image is exactly the
  projection of the 3D scene reflected by x -> -x, so `unflip_poses` can map
  predictions back.
  """
  image = inputs['image'][:, :, ::-1, :]
  k = inputs['intrinsics']
  width = tf.cast(tf.shape(image)[2], k.dtype)
  # K' = F K diag(-1, 1, 1), with F the pixel mirror u -> W - 1 - u.
  mirror = tf.stack([[-1., 0., width - 1.], [0., 1., 0.], [0., 0., 1.]])
  k = tf.matmul(tf.cast(mirror, k.dtype), k) * tf.constant([-1., 1., 1.], k.dtype)
  return {**inputs, 'image': image, 'intrinsics': k}


def unflip_poses(poses: dict[str, tf.Tensor], image_width) -> dict[str, tf.Tensor]:
  """Maps poses predicted on a mirrored crop back to the original crop."""
  from zoo import skeleton as skel  # local: keep base import-light
  perm = skel.FLIP_PERMUTATION
  width = tf.cast(image_width, tf.float32)
  out = {}
  for key, value in poses.items():
    value = tf.gather(value, perm, axis=1)
    if key == 'poses2d_px':
      value = tf.concat([width - 1. - value[..., :1], value[..., 1:]], -1)
    elif key in ('poses3d_rel_mm', 'poses3d_cam_mm'):
      value = tf.concat([-value[..., :1], value[..., 1:]], -1)
    out[key] = value
  return out
