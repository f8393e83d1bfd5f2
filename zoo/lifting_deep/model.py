"""Lifting from the Deep (Tome et al. 2017) as a zoo PoseModel.

A Convolutional Pose Machine whose every stage lifts its 2D landmarks to 3D
with the probabilistic pose prior, projects the 3D pose back, renders the
projection as belief maps and fuses them with the CNN's maps (learned
per-stage, per-channel weights: fused = w_cnn * cnn + w_proj * projected);
the fused maps feed the next stage and carry the stage's loss. The final
stage's landmarks are lifted once more for the output 3D pose.

Layer names (for freezing): `trunk` (shared image CNN), `stage1_trunk`
(stage 1's own image CNN, when config.separate_stage1_trunk), `stage_1` ..
`stage_T`, `fusion_1` .. `fusion_T` (when config.fusion), `lifting` (the
prior; no trainable weights).

Outputs of `call`: `beliefs_t` [B, H, W, 15] (t = 0 .. T-1; 14 CPM joints in
zoo.skeleton.CPM14 order, then the background), float32. The loss needs 2D
labels only (the paper's point: 3D comes from the motion-capture prior).
"""
from __future__ import annotations

import os

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from zoo import base
from zoo import geometry
from zoo import heatmaps
from zoo import metrics as metrics_lib
from zoo import skeleton as skel
from zoo.layers.cpm import CPMStage, CPMStage1, CPMTrunk
from zoo.lifting_deep.config import LiftingDeepConfig, validate
from zoo.lifting_deep.layer import LiftingLayer
from zoo.lifting_deep.prior import PosePrior
from zoo.signatures import LIFT_SIGNATURE

PACKAGE = 'pose3d_zoo'
J = skel.NUM_JOINTS
NUM_CPM = skel.CPM14.num_joints
# H36M-17 index of each CPM-14 joint, and for each H36M-17 joint its CPM-14
# index (NUM_CPM where CPM lacks it: pelvis, spine, neck).
CPM_TO_H36M = skel.CPM14_TO_H36M17
_H36M_FROM_CPM = np.full(J, NUM_CPM, np.int64)
_H36M_FROM_CPM[CPM_TO_H36M] = np.arange(NUM_CPM)
IS_CPM_JOINT = np.zeros(J, np.float32)
IS_CPM_JOINT[CPM_TO_H36M] = 1.
# Confidence of the joints CPM lacks: mean of these joints' (H36M indices).
_DERIVED_CONFIDENCE = {0: (1, 4), 7: (1, 4, 8), 9: (8, 10)}


def crop_px_to_heatmap(points_px, stride: int):
  """Belief-map cell coordinates of crop pixels (cell i centred at i)."""
  return (points_px + 0.5) / stride - 0.5


def heatmap_to_crop_px(points_hm, stride: int):
  return (points_hm + 0.5) * stride - 0.5


def cpm_to_h36m(values):
  """[B, 14, ...] CPM-order values -> [B, 17, ...] (zeros where CPM lacks)."""
  values = tf.convert_to_tensor(values)
  pad = tf.zeros_like(values[:, :1])
  return tf.gather(tf.concat([values, pad], 1), _H36M_FROM_CPM, axis=1)


def _quarter_offset(maps, coords):
  """Sub-cell refinement of integer peaks: +-0.25 towards the higher side."""
  shape = tf.shape(maps)
  b, h, w = shape[0], shape[1], shape[2]
  nj = maps.shape[-1]
  xi = tf.cast(coords[..., 0], tf.int32)
  yi = tf.cast(coords[..., 1], tf.int32)
  bi = tf.broadcast_to(tf.range(b)[:, None], tf.shape(xi))
  ji = tf.broadcast_to(tf.range(nj)[None], tf.shape(xi))

  def at(yy, xx):
    idx = tf.stack([bi, tf.clip_by_value(yy, 0, h - 1),
                    tf.clip_by_value(xx, 0, w - 1), ji], -1)
    return tf.gather_nd(maps, idx)

  dx = at(yi, xi + 1) - at(yi, xi - 1)
  dy = at(yi + 1, xi) - at(yi - 1, xi)
  return coords + 0.25 * tf.sign(tf.stack([dx, dy], -1))


def belief_maps(joints_hm, height: int, width: int, sigma: float,
                valid=None):
  """[B, H, W, 15]: Gaussians of 14 joints (cells) + background channel.

  background = max(0, 1 - max over joints), as in CPM.
  """
  maps = heatmaps.render_heatmaps_2d(joints_hm, height, width, sigma, valid)
  background = tf.nn.relu(1. - tf.reduce_max(maps, -1, keepdims=True))
  return tf.concat([maps, background], -1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class BeliefFusion(keras.layers.Layer):
  """fused = w_cnn * cnn_maps + w_proj * projected_maps (per channel).

  float32 weights and compute under any precision policy.
  """

  def __init__(self, num_maps: int, init=(1., 0.5), **kwargs):
    kwargs['dtype'] = 'float32'
    super().__init__(**kwargs)
    self.num_maps = int(num_maps)
    self.init = (float(init[0]), float(init[1]))

  def build(self, input_shape=None):
    const = keras.initializers.Constant
    self.w_cnn = self.add_weight(name='w_cnn', shape=(self.num_maps,),
                                 initializer=const(self.init[0]))
    self.w_proj = self.add_weight(name='w_proj', shape=(self.num_maps,),
                                  initializer=const(self.init[1]))
    self.built = True

  def call(self, cnn_maps, projected_maps):
    return (self.w_cnn * tf.cast(cnn_maps, tf.float32)
            + self.w_proj * tf.cast(projected_maps, tf.float32))

  def compute_output_shape(self, cnn_shape, projected_shape=None):
    return tuple(cnn_shape)

  def get_config(self):
    return {**super().get_config(), 'num_maps': self.num_maps,
            'init': list(self.init)}


def load_prior(config: LiftingDeepConfig) -> PosePrior | None:
  """The config's prior, or None when config.prior_path is unset or missing.

  A missing file is not an error here: a config recorded on another machine
  names that machine's cache, and the model's weights carry the prior
  anyway (LiftingLayer). Training runs prepare(), which refits it.
  """
  if not config.prior_path:
    return None
  if not os.path.exists(config.prior_path):
    logging.warning(
        'lifting_deep: prior file %s (config.prior_path) does not exist; '
        'building without it (load weights that carry one, or run prepare()).',
        config.prior_path)
    return None
  prior = PosePrior.load(config.prior_path)
  if (prior.num_components, prior.num_basis) != (config.num_components,
                                                 config.num_basis):
    raise ValueError(
        f'prior {config.prior_path} has {prior.num_components} components of '
        f'{prior.num_basis} bases; the config asks for {config.num_components}'
        f' of {config.num_basis}')
  return prior


@keras.saving.register_keras_serializable(package=PACKAGE)
class LiftingDeep(base.PoseModel):
  """CPM + per-stage lifting, projection and fusion (see module docstring)."""

  config_class = LiftingDeepConfig

  def __init__(self, config: LiftingDeepConfig, **kwargs):
    super().__init__(config, **kwargs)
    validate(config)
    c = config
    nb = c.num_belief_maps
    trunk_args = (c.trunk_channels, c.trunk_kernel, c.num_pools,
                  c.batch_norm, c.trunk_convs_per_pool, c.trunk_post_convs)
    self.trunk = CPMTrunk(*trunk_args, name='trunk')
    self.stage1_trunk = (CPMTrunk(*trunk_args, name='stage1_trunk')
                         if c.separate_stage1_trunk else None)
    self.stages = [CPMStage1(nb, c.feature_channels, c.stage1_mid_channels,
                             c.trunk_kernel, c.batch_norm, name='stage_1')]
    for t in range(1, c.num_stages):
      self.stages.append(CPMStage(nb, c.stage_channels, c.stage_kernel,
                                  c.stage_convs, c.feature_channels,
                                  c.batch_norm, name=f'stage_{t + 1}'))
    self.fusions = ([BeliefFusion(nb, c.fusion_init, name=f'fusion_{t + 1}')
                     for t in range(c.num_stages)] if c.fusion else [])
    prior = load_prior(c)
    if prior is None and not c.prior_path:
      logging.warning(
          'lifting_deep built without a prior (config.prior_path unset): '
          'load weights that carry one, or run the registry prepare() hook.')
    self.lifting = LiftingLayer(
        c.num_components, c.num_basis, num_angles=c.num_angles,
        pattern=IS_CPM_JOINT, refine=c.lift_refine,
        refine_steps=c.lift_refine_steps, lift_noise=c.lift_noise,
        prior=prior, name='lifting')
    h = c.heatmap_size
    centre = (h - 1) / 2.
    g = np.exp(-(np.arange(h) - centre) ** 2 /
               (2. * (c.centre_sigma_px / c.stride) ** 2))
    self._centre_map = np.outer(g, g).astype(np.float32)[None, :, :, None]

  # --- building ---------------------------------------------------------
  def _batch(self, input_shape):
    if isinstance(input_shape, dict) and 'image' in input_shape:
      shape = tuple(input_shape['image'])
      s = self.config.input_size
      if tuple(shape[1:]) != (s, s, 3):
        raise ValueError(f'{self.name} expects image [B, {s}, {s}, 3], got '
                         f'{shape}')
      return shape[0]
    return None

  def build(self, input_shape=None):
    """Creates every weight from the config, without tracing `call`."""
    c, b = self.config, self._batch(input_shape)
    s, h, nb = c.input_size, c.heatmap_size, c.num_belief_maps
    self.trunk.build((b, s, s, 3))
    if self.stage1_trunk is not None:
      self.stage1_trunk.build((b, s, s, 3))
    trunk = (b, h, h, c.trunk_channels)
    self.stages[0].build(trunk)
    for stage in self.stages[1:]:
      stage.build([trunk, (b, h, h, nb), (b, h, h, 1)])
    for fusion in self.fusions:
      fusion.build((b, h, h, nb))
    self.lifting.build((b, J, 2))
    # The background target is ~1 almost everywhere: start the heads there
    # (saves the first steps' large loss; loaded weights overwrite it).
    for stage in self.stages:
      bias = np.zeros(nb, np.float32)
      bias[-1] = 1.
      stage.blocks[-1].bias.assign(bias)
    self.built = True

  def compute_output_shape(self, input_shape=None):
    b, h = self._batch(input_shape), self.config.heatmap_size
    return {f'beliefs_{t}': (b, h, h, self.config.num_belief_maps)
            for t in range(self.config.num_stages)}

  # --- forward ----------------------------------------------------------
  def landmarks(self, maps, refine_peaks: bool = False):
    """[B, H, W, 15] maps -> (CPM landmarks [B, 14, 2], cells; peaks [B, 14])."""
    maps = tf.cast(maps, tf.float32)[..., :NUM_CPM]
    coords, peak = heatmaps.argmax_2d(maps)
    if self.config.landmarks == 'soft_argmax':
      coords = heatmaps.soft_argmax_2d(self.config.soft_argmax_beta * maps)
    elif refine_peaks:
      coords = _quarter_offset(maps, coords)
    return coords, peak

  def lift_landmarks(self, landmarks_hm):
    """CPM landmarks [B, 14, 2] -> lifting outputs (LiftingLayer dict)."""
    return self.lifting(cpm_to_h36m(landmarks_hm))

  def projected_beliefs(self, maps):
    """Belief maps of the lifted-and-projected pose of `maps` [B, H, W, 15]."""
    c = self.config
    coords, _ = self.landmarks(maps)
    if not c.lift_gradients:
      coords = tf.stop_gradient(coords)
    lifted = self.lift_landmarks(coords)
    proj = tf.gather(lifted['projection_2d'], CPM_TO_H36M, axis=1)
    h = c.heatmap_size
    return belief_maps(proj, h, h, c.belief_sigma_px / c.stride)

  def call(self, inputs, training=None):
    image = inputs['image']
    trunk = self.trunk(image, training=training)
    first = (self.stage1_trunk(image, training=training)
             if self.stage1_trunk is not None else trunk)
    centre = tf.tile(tf.constant(self._centre_map), [tf.shape(image)[0], 1,
                                                     1, 1])
    outputs = {}
    previous = None
    for t, stage in enumerate(self.stages):
      if t == 0:
        cnn = stage(first, training=training)
      else:
        cnn = stage([trunk, previous, centre], training=training)
      cnn = tf.cast(cnn, tf.float32)
      if self.fusions:
        fused = self.fusions[t](cnn, self.projected_beliefs(cnn))
      else:
        fused = cnn
      outputs[f'beliefs_{t}'] = fused
      previous = fused
    return outputs

  # --- the zoo contract -------------------------------------------------
  def targets(self, features):
    """Pipeline features -> (x, y); y holds CPM joints in belief-map cells."""
    for key in ('image', 'intrinsics', 'joints2d_px', 'joint_valid_2d'):
      if key not in features:
        raise KeyError(f'lifting_deep targets need feature {key!r}; got keys '
                       f'{sorted(features)}')
    joints = tf.gather(tf.cast(features['joints2d_px'], tf.float32),
                       CPM_TO_H36M, axis=-2)
    valid = tf.gather(tf.cast(features['joint_valid_2d'], tf.float32),
                      CPM_TO_H36M, axis=-1)
    x = {'image': features['image'], 'intrinsics': features['intrinsics']}
    y = {'joints_hm': crop_px_to_heatmap(joints, self.config.stride),
         'valid': valid}
    return x, y

  def target_maps(self, y):
    """[B, H, W, 15] ground-truth belief maps from targets() output."""
    c = self.config
    h = c.heatmap_size
    return belief_maps(y['joints_hm'], h, h, c.belief_sigma_px / c.stride,
                       y['valid'])

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                   training=True):
    """Sum over stages of 0.5 * sum of squared belief-map errors (CPM),
    plus config.integral_loss_weight times each stage's integral L1.

    Only 2D labels are used (the 3D model is the prior, fitted on motion
    capture), so 2D-only examples train the CPM like any other. A joint
    without a 2D label (joint_valid_2d = 0) adds nothing: its map's error is
    masked out (the background channel is always supervised).
    """
    del x, training
    target = self.target_maps(y)
    channel_weight = tf.concat(
        [tf.cast(y['valid'], tf.float32),
         tf.ones_like(y['valid'][..., :1], tf.float32)], -1)[:, None, None]
    c = self.config
    # integral_l1 takes volumes: the maps as [B, H, W, 1, 14], the labels
    # as (x, y, 0) cells; a depth of 1 leaves z out.
    joints_vox = tf.pad(tf.cast(y['joints_hm'], tf.float32),
                        [[0, 0], [0, 0], [0, 1]])
    total = 0.
    for t in range(c.num_stages):
      maps = tf.cast(y_pred[f'beliefs_{t}'], tf.float32)
      per_example = 0.5 * tf.reduce_sum(
          tf.square(maps - target) * channel_weight, [1, 2, 3])
      if c.integral_loss_weight:
        per_example += c.integral_loss_weight * heatmaps.integral_l1(
            maps[..., None, :NUM_CPM], joints_vox, c.soft_argmax_beta,
            valid_xy=y['valid'])
      total += base.distributed_mean(per_example, sample_weight)
    if self.losses:
      total += tf.add_n([tf.cast(l, tf.float32) for l in self.losses])
    return total

  def decode(self, outputs, inputs):
    c = self.config
    maps = tf.cast(outputs[f'beliefs_{c.num_stages - 1}'], tf.float32)
    coords, peak = self.landmarks(maps, refine_peaks=True)
    lifted = self.lift_landmarks(coords)
    rel = lifted['poses3d_mm']
    proj_px = heatmap_to_crop_px(lifted['projection_2d'], c.stride)
    cpm_px = cpm_to_h36m(heatmap_to_crop_px(coords, c.stride))
    is_cpm = tf.constant(IS_CPM_JOINT)[None, :, None]
    poses2d = is_cpm * cpm_px + (1. - is_cpm) * proj_px
    conf = cpm_to_h36m(tf.clip_by_value(peak, 0., 1.))
    columns = tf.unstack(conf, axis=1)
    for joint, sources in _DERIVED_CONFIDENCE.items():
      columns[joint] = tf.add_n([columns[i] for i in sources]) / len(sources)
    conf = tf.stack(columns, 1)
    limbs = np.array(skel.H36M17.limbs)
    bones = tf.norm(tf.gather(rel, limbs[:, 1], axis=1)
                    - tf.gather(rel, limbs[:, 0], axis=1), axis=-1)
    intrinsics = tf.cast(inputs['intrinsics'], tf.float32)
    depth = geometry.recover_root_depth_tf(poses2d, rel, intrinsics, bones)
    cam = geometry.absolute_pose_tf(poses2d, rel, intrinsics, depth)
    return {'poses3d_rel_mm': rel, 'poses3d_cam_mm': cam,
            'poses2d_px': poses2d, 'confidence': conf}

  def lift(self, poses2d_px):
    """2D joints [B, 17, 2] (any image frame) -> [B, 17, 3] camera-frame mm.

    The prior's lifting alone (pelvis, spine and neck are ignored, as for
    the network's CPM landmarks); the exporter's `lift` signature.
    """
    return self.lifting(tf.cast(poses2d_px, tf.float32))['poses3d_mm']

  def extra_serving_signatures(self):
    """The exporter's model-specific signatures: `lift` (2D joints -> 3D)."""
    return {LIFT_SIGNATURE: (
        lambda poses2d_px: {'poses3d_rel_mm': self.lift(poses2d_px)},
        [tf.TensorSpec([None, skel.NUM_JOINTS, 2], tf.float32,
                       name='poses2d_px')])}

  def extra_metrics(self, poses, features):
    """2D error and PCKh@0.5 over the 14 joints the CPM detects."""
    pred = np.asarray(poses['poses2d_px'])
    gt = np.asarray(features['joints2d_px'], np.float32)
    valid = np.asarray(features['joint_valid_2d'], np.float32) * IS_CPM_JOINT
    return {'mean_error_2d_cpm14_px': metrics_lib.mean_error_2d_px(
                pred, gt, valid=valid),
            'pckh_cpm14': metrics_lib.pckh(pred, gt, valid=valid)}

  @property
  def backbone(self) -> list[keras.layers.Layer]:
    """The image CNN(s): freezing them fine-tunes the stages and fusion."""
    return [self.trunk] + ([self.stage1_trunk] if self.stage1_trunk else [])
