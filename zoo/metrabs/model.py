"""MeTRAbs: metric-scale truncation-robust heatmaps and absolute 3D pose.

Sarandi et al. 2020. A backbone maps the crop to an h x h feature map (stride
32 at 256 px: 8x8); one 1x1 convolution gives, per joint, one channel of 2D
heatmap logits and D channels of metric 3D heatmap logits. Both are decoded by
soft-argmax (zoo.heatmaps):
- 2D: heatmap cell i covers crop pixels [i s, (i + 1) s) (s = stride), so cell
  coordinate c maps to crop pixel (c + 0.5) s - 0.5.
- 3D: the volume is a `box_size_mm` cube centred on the person, NOT aligned
  with the image: x and y cells are box / h mm wide (cell c -> ((c + 0.5) / h
  - 0.5) box), and the D depth bins span the cube's z side (bin c -> (c / (D -
  1) - 0.5) box), as in the released code. A joint outside the crop is still
  inside the cube, so the 3D pose stays complete under truncation.
The decoded 3D pose is made root-relative (the cube centre is arbitrary) and
the root translation T is solved in closed form from the 2D joints, the crop
intrinsics and the metric pose (zoo.metrabs.reconstruction), giving the
absolute camera-space pose P_rel + T.

Losses (released-code scales): L1 on the mean-relative 3D pose in metres; L1
on the 2D head as (error px / crop side) * box side in metres; after
`abs_loss_start_step`, 0.1 x L1 on the reconstructed absolute pose in metres,
with the z error scaled by min(1, 10 m / z_true). All float32 (the head runs
in float32 under mixed precision).
"""
from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from zoo import base
from zoo import config as config_lib
from zoo import heatmaps
from zoo import skeleton as skel
from zoo.base import PoseModel
from zoo.layers import resnet as resnet_lib
from zoo.metrabs import reconstruction
from zoo.metrabs.config import KERAS_BACKBONES, MetrabsConfig

PACKAGE = 'pose3d_zoo'
# Per-channel BGR means of keras.applications' 'caffe' preprocessing (ResNet50).
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


# ----------------------------------------------------------------------------
# Backbone
# ----------------------------------------------------------------------------

def build_backbone(config: MetrabsConfig) -> keras.Model:
  """The backbone as a functional model, with `config.backbone_weights` loaded.

  Raises:
    FileNotFoundError: backbone_weights names a file that does not exist.
    ValueError: an unknown backbone, or weights of a kind it cannot take.
  """
  shape = (config.input_size, config.input_size, 3)
  weights = config.backbone_weights
  path = None if weights in (None, 'imagenet') else os.fspath(weights)
  if path is not None:
    if not path.endswith('.h5'):
      raise ValueError(f'backbone_weights must be None, "imagenet" or a path '
                       f'to a .h5 / .weights.h5 file, got {weights!r}')
    if not os.path.exists(path):
      raise FileNotFoundError(f'backbone_weights file {path!r} does not exist')
  if config.backbone in KERAS_BACKBONES:
    builders = {
        'resnet50v2': keras.applications.ResNet50V2,
        'resnet50': keras.applications.ResNet50,
        'mobilenetv3small': keras.applications.MobileNetV3Small,
        'mobilenetv3large': keras.applications.MobileNetV3Large,
    }
    kwargs = {'include_top': False, 'input_shape': shape,
              'weights': 'imagenet' if weights == 'imagenet' else None}
    if config.backbone.startswith('mobilenetv3'):
      kwargs['include_preprocessing'] = True
    try:
      model = builders[config.backbone](**kwargs)
    except Exception as e:  # download failures surface as many types
      if weights != 'imagenet':
        raise
      raise RuntimeError(
          f'could not get ImageNet weights for {config.backbone} (no network '
          f'access?): {e}. Pass backbone_weights=PATH to a local .h5 file '
          'instead.') from e
  else:
    if weights == 'imagenet':
      raise ValueError(f'backbone {config.backbone!r} (zoo.layers.resnet) has '
                       'no ImageNet weights; use None or a local weights file')
    model = resnet_lib.resnet(
        shape, resnet_lib.BLOCK_COUNTS[config.backbone],
        tuple(config.backbone_widths), config.output_stride,
        name=f'backbone_{config.backbone}')
  if path is not None:
    try:
      model.load_weights(path)
    except Exception as e:
      raise ValueError(f'could not load backbone_weights {path!r} into the '
                       f'{config.backbone} backbone at input {shape}: {e}') \
          from e
  return model


def _preprocess(image: tf.Tensor, backbone: str) -> tf.Tensor:
  """RGB [0, 1] -> the input range each backbone's ImageNet weights expect."""
  if backbone == 'resnet50':  # 'caffe': BGR, 0..255, mean-subtracted
    bgr = image[..., ::-1] * 255.
    return bgr - tf.constant(_CAFFE_BGR_MEAN, image.dtype)
  if backbone.startswith('mobilenetv3'):  # has its own Rescaling layer
    return image * 255.
  return image * 2. - 1.  # 'tf' mode: [-1, 1]


# ----------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package=PACKAGE)
class Metrabs(PoseModel):
  """MeTRAbs pose model (zoo.base.PoseModel contract)."""

  config_class = MetrabsConfig

  def __init__(self, config: MetrabsConfig, **kwargs):
    super().__init__(config, **kwargs)
    config.validate()
    self.num_joints = int(config.num_joints)
    self.depth_bins = int(config.depth_bins)
    self.backbone_model = build_backbone(config)
    feature_shape = self.backbone_model.output_shape
    if feature_shape[1] != config.heatmap_size:
      raise ValueError(f'backbone {config.backbone} gives a {feature_shape[1]}'
                       f'x{feature_shape[2]} feature map at input '
                       f'{config.input_size}, expected {config.heatmap_size}')
    self.head = keras.layers.Conv2D(
        self.num_joints * (1 + self.depth_bins), 1, dtype='float32',
        name='heatmap_head')
    self.head.build(feature_shape)
    self.loss3d_tracker = keras.metrics.Mean(name='loss3d')
    self.loss2d_tracker = keras.metrics.Mean(name='loss2d')
    self.loss_abs_tracker = keras.metrics.Mean(name='loss_abs')
    # Every variable exists now (the backbone is functional, the head built),
    # so weights can be loaded before any forward pass.
    self.built = True

  # --- forward ----------------------------------------------------------
  def call(self, inputs, training=None):
    image = tf.convert_to_tensor(inputs['image'])
    x = _preprocess(tf.cast(image, self.backbone_model.compute_dtype),
                    self.config.backbone)
    features = self.backbone_model(x, training=training)
    logits = self.head(tf.cast(features, tf.float32))
    shape = tf.shape(logits)
    j = self.num_joints
    logits2d = logits[..., :j]
    logits3d = tf.reshape(logits[..., j:], tf.concat(
        [shape[:3], [self.depth_bins, j]], 0))  # channels are (d, j)
    return {'logits2d': logits2d, 'logits3d': logits3d}

  @property
  def backbone(self) -> list[keras.layers.Layer]:
    return [self.backbone_model]

  @property
  def stride(self) -> int:
    return self.config.output_stride

  # --- decoding ---------------------------------------------------------
  def heatmap_coords(self, outputs) -> tuple[tf.Tensor, tf.Tensor]:
    """Soft-argmax of both heads: (2D crop px [B, J, 2], 3D cube mm [B, J, 3]).

    The 3D coordinates are relative to the cube centre (an arbitrary point
    near the person); subtract a joint or the mean to get a relative pose.
    """
    logits2d, logits3d = outputs['logits2d'], outputs['logits3d']
    hm2d = heatmaps.soft_argmax_2d(logits2d)            # cell units
    hm3d = heatmaps.soft_argmax_3d(logits3d)
    shape = tf.shape(logits3d)
    height = tf.cast(shape[1], tf.float32)
    width = tf.cast(shape[2], tf.float32)
    depth = tf.cast(shape[3], tf.float32)
    stride = tf.cast(self.config.input_size, tf.float32) / width
    coords2d_px = (hm2d + 0.5) * stride - 0.5
    box = float(self.config.box_size_mm)
    x = ((hm3d[..., 0] + 0.5) / width - 0.5) * box
    y = ((hm3d[..., 1] + 0.5) / height - 0.5) * box
    z = (hm3d[..., 2] / (depth - 1.) - 0.5) * box
    return coords2d_px, tf.stack([x, y, z], -1)

  def _reconstruct(self, coords2d_px, poses_rel_mm, intrinsics):
    cfg = self.config
    inside = reconstruction.inside_crop_mask(
        coords2d_px, cfg.input_size, cfg.recon_border_factor * cfg.output_stride)
    weights = inside * (1. - cfg.recon_outside_weight) + cfg.recon_outside_weight
    poses_cam, _ = reconstruction.reconstruct_absolute(
        coords2d_px, poses_rel_mm, tf.cast(intrinsics, tf.float32), weights,
        cfg.recon_l2_regularizer, cfg.mix_3d_inside_crop, inside)
    return poses_cam

  def decode(self, outputs, inputs) -> dict[str, tf.Tensor]:
    coords2d_px, coords3d_mm = self.heatmap_coords(outputs)
    root = skel.ROOT
    poses_rel = coords3d_mm - coords3d_mm[:, root:root + 1]
    poses_cam = self._reconstruct(coords2d_px, poses_rel, inputs['intrinsics'])
    return {'poses3d_rel_mm': poses_rel, 'poses3d_cam_mm': poses_cam,
            'poses2d_px': coords2d_px,
            'confidence': self.confidence(outputs['logits2d'])}

  @staticmethod
  def confidence(logits2d) -> tf.Tensor:
    """[B, J] in [0, 1]: the 2D softmax mass in the best 3x3 cell window."""
    logits2d = tf.cast(logits2d, tf.float32)
    shape = tf.shape(logits2d)
    flat = tf.reshape(logits2d, [shape[0], -1, shape[3]])
    probs = tf.reshape(tf.nn.softmax(flat, axis=1), shape)
    window = tf.ones([3, 3, logits2d.shape[-1], 1], tf.float32)
    mass = tf.nn.depthwise_conv2d(probs, window, [1, 1, 1, 1], 'SAME')
    return tf.clip_by_value(tf.reduce_max(mass, axis=[1, 2]), 0., 1.)

  # --- training ---------------------------------------------------------
  def targets(self, features):
    x = {'image': features['image'], 'intrinsics': features['intrinsics']}
    has_3d = tf.cast(features['has_3d'], tf.float32)[:, None]
    y = {
        'joints2d_px': features['joints2d_px'],
        'joints3d_cam_mm': features['joints3d_cam_mm'],
        'valid_2d': tf.cast(features['joint_valid_2d'], tf.float32),
        'valid_3d': tf.cast(features['joint_valid_3d'], tf.float32) * has_3d,
    }
    return x, y

  def _train_step_counter(self) -> tf.Tensor:
    optimizer = getattr(self, 'optimizer', None)
    if optimizer is None:  # not compiled: treat warm-up as done
      return tf.constant(np.iinfo(np.int32).max, tf.int64)
    return tf.cast(optimizer.iterations, tf.int64)

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                   training=True):
    cfg = self.config
    losses = self.loss_terms(x, y, y_pred, sample_weight)
    active = self._train_step_counter() >= cfg.abs_loss_start_step
    total = (cfg.loss3d_weight * losses['loss3d']
             + cfg.loss2d_weight * losses['loss2d']
             + cfg.loss_abs_weight * tf.cast(active, tf.float32)
             * losses['loss_abs'])
    self.loss3d_tracker.update_state(losses['loss3d'])
    self.loss2d_tracker.update_state(losses['loss2d'])
    self.loss_abs_tracker.update_state(losses['loss_abs'])
    for extra in self.losses:
      total = total + tf.cast(tf.reduce_sum(extra), tf.float32)
    return base.replica_scaled(total)

  def loss_terms(self, x, y, y_pred, sample_weight=None,
                 with_abs_gradient=None) -> dict[str, tf.Tensor]:
    """Unweighted float32 losses: loss3d, loss2d, loss_abs (metres)."""
    cfg = self.config
    coords2d_px, coords3d_mm = self.heatmap_coords(y_pred)
    valid_2d = tf.cast(y['valid_2d'], tf.float32)
    valid_3d = tf.cast(y['valid_3d'], tf.float32)
    if sample_weight is not None:
      sw = tf.reshape(tf.cast(sample_weight, tf.float32), [-1, 1])
      valid_2d, valid_3d = valid_2d * sw, valid_3d * sw
    true3d = tf.cast(y['joints3d_cam_mm'], tf.float32)
    true2d = tf.cast(y['joints2d_px'], tf.float32)

    # Relative metric pose (mean- or root-relative), metres.
    if cfg.mean_relative:
      pred_rel = _center_masked(coords3d_mm, valid_3d)
      true_rel = _center_masked(true3d, valid_3d)
    else:
      root = skel.ROOT
      pred_rel = coords3d_mm - coords3d_mm[:, root:root + 1]
      true_rel = true3d - true3d[:, root:root + 1]
    loss3d = _masked_l1(pred_rel - true_rel, valid_3d) / 1000.

    # 2D head: crop-normalised pixels, scaled to metres at the cube size.
    scale_2d = cfg.box_size_mm / 1000. / cfg.input_size
    loss2d = _masked_l1((coords2d_px - true2d) * scale_2d, valid_2d)

    # Absolute pose through the differentiable reconstruction. Before the
    # warm-up ends no gradient flows through it (tf.cond), so a badly
    # conditioned early solve can never disturb training.
    active = self._train_step_counter() >= cfg.abs_loss_start_step
    if with_abs_gradient is not None:
      active = tf.constant(bool(with_abs_gradient))

    def abs_loss():
      root = skel.ROOT
      rel = coords3d_mm - coords3d_mm[:, root:root + 1]
      pred_abs = self._reconstruct(coords2d_px, rel, x['intrinsics'])
      diff = tf.abs(pred_abs - true3d)
      far = tf.minimum(1., cfg.abs_loss_far_mm /
                       tf.maximum(tf.abs(true3d[..., 2:]), 1e-3))
      diff = tf.concat([diff[..., :2], diff[..., 2:] * far], -1)
      mask = valid_3d * tf.cast(true3d[..., 2] > cfg.abs_loss_min_depth_mm,
                                tf.float32)
      return _masked_l1_of_abs(diff, mask) / 1000.

    loss_abs = tf.cond(active, abs_loss, lambda: tf.stop_gradient(abs_loss()))
    return {'loss3d': loss3d, 'loss2d': loss2d, 'loss_abs': loss_abs}

  # --- evaluation extras --------------------------------------------------
  def extra_metrics(self, poses, features) -> dict[str, tf.Tensor]:
    """Extra evaluation values; the trainer averages each over its finite
    entries across the test set (trainers/evaluation.py).

    - mpjpe_truncated_mm [B, J]: root-aligned error (poses3d_rel_mm vs
      joints3d_rel_mm, mm) of labelled joints whose ground-truth 2D lies
      outside the crop (`joint_in_crop` == 0), NaN elsewhere; so the average
      is a mean over truncated joints, not over examples.
    - mpjpe_in_crop_mm [B, J]: the same for joints inside the crop.
    - truncated_joint_fraction [B]: share of an example's labelled joints that
      lie outside the crop (NaN without labels).
    """
    pred = tf.cast(poses['poses3d_rel_mm'], tf.float32)
    gt = tf.cast(features['joints3d_rel_mm'], tf.float32)
    valid = (tf.cast(features['joint_valid_3d'], tf.float32)
             * tf.cast(features['joint_valid_2d'], tf.float32)
             * tf.reshape(tf.cast(features['has_3d'], tf.float32), [-1, 1]))
    outside = valid * (1. - tf.cast(features['joint_in_crop'], tf.float32))
    errors = tf.norm(pred - gt, axis=-1)
    nan = tf.fill(tf.shape(errors), float('nan'))
    count = tf.reduce_sum(valid, -1)
    return {
        'mpjpe_truncated_mm': tf.where(outside > 0, errors, nan),
        'mpjpe_in_crop_mm': tf.where((valid > 0) & (outside <= 0), errors,
                                     nan),
        'truncated_joint_fraction': tf.where(
            count > 0, tf.reduce_sum(outside, -1) / tf.maximum(count, 1.),
            tf.fill(tf.shape(count), float('nan'))),
    }

  # --- serialisation ------------------------------------------------------
  @classmethod
  def from_config(cls, cfg):
    config = config_lib.from_dict(MetrabsConfig, cfg['config'])
    # The full model's weights come from the checkpoint being loaded; the
    # backbone file it was initialised from may not exist here.
    config = config_lib.replace(config, backbone_weights=None)
    return cls(config, name=cfg.get('name'))


def _center_masked(points, valid) -> tf.Tensor:
  """points [B, J, 3] minus the mean of its valid joints."""
  w = valid[..., None]
  mean = tf.reduce_sum(points * w, 1, keepdims=True) / tf.maximum(
      tf.reduce_sum(w, 1, keepdims=True), 1.)
  return points - mean


def _masked_l1(diff, valid) -> tf.Tensor:
  """Mean |diff| over the coordinates of valid joints (0 when none)."""
  return _masked_l1_of_abs(tf.abs(diff), valid)


def _masked_l1_of_abs(absdiff, valid) -> tf.Tensor:
  dims = tf.cast(tf.shape(absdiff)[-1], tf.float32)
  total = tf.reduce_sum(absdiff * valid[..., None])
  return total / tf.maximum(tf.reduce_sum(valid) * dims, 1.)
