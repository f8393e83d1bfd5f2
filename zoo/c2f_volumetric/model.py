"""The coarse-to-fine volumetric family (Pavlakos et al. 2017) as PoseModels.

- `VolumetricHourglass`: stacked hourglasses; stack i predicts J * d_i
  channels reshaped to a [B, H, W, d_i, J] volume (channel c = z * J + j;
  d = 1 is a 2D heatmap), with intermediate supervision at every stack.
  Registered twice: `c2f_volumetric` (coarse-to-fine schedule, d = 1, 2, 4,
  64) and `volumetric_stacked` (naive stacking: every stack at full depth).
- `CoordinateRegression`: one hourglass, then a dense layer to 3 * J
  normalised coordinates, L2 loss (the paper's baseline).
- `DecoupledVolumetric`: network 1 (image -> 2D heatmaps), network 2 (those
  heatmaps only, no image features -> volume).

Layer names are stable so users can freeze parts: `stem`, and per stack i
`hourglass_i`, `post_i` (residual), `lin_i` (conv-BN-ReLU), `head_i` (1x1 conv
to J * d_i), `link_i` (input of stack i + 1); `regression_head` for
coordinate regression; `net2_in`, `net2_res` for the decoupled network 2's
input. Outputs are float32 under any precision policy; losses are float32.
"""
from __future__ import annotations

import math

import keras
import tensorflow as tf

from zoo import base
from zoo import heatmaps
from zoo import lift_lib
from zoo import skeleton as skel
from zoo.c2f_volumetric import decode as decode_lib
from zoo.c2f_volumetric import targets as targets_lib
from zoo.c2f_volumetric.config import C2FConfig, validate
from zoo.layers import ConvBNReLU, Hourglass, Residual, StackLink, Stem
from zoo.signatures import LIFT_SIGNATURE

PACKAGE = 'pose3d_zoo'
J = skel.NUM_JOINTS


def _stack_loss_terms(volume, centers, valid, valid_xy, only_2d, *,
                      heatmap_weight: float, integral_weight: float,
                      sigma: float, sigma_z: float, beta: float,
                      depth: int) -> tf.Tensor:
  """[B] loss of one stack's volume (see _C2FBase._volume_loss).

  `only_2d` ([B, J], or None) marks the 2D-only joints whose image-plane
  marginal this stack supervises.
  """
  per_example = 0.
  if heatmap_weight:
    per_example = heatmap_weight * heatmaps.separable_gaussian_mse(
        volume, centers, sigma, sigma_z, valid)
    if only_2d is not None:
      mass = (2. * math.pi) ** 0.5 * sigma_z
      marginal = tf.reduce_sum(tf.cast(volume, tf.float32), 3,
                               keepdims=True) / mass
      per_example += heatmap_weight * heatmaps.separable_gaussian_mse(
          marginal, centers, sigma, 1., only_2d)
  if integral_weight:
    per_example += integral_weight * heatmaps.integral_l1(
        volume, centers, beta, valid_xy, valid if depth > 1 else None)
  return per_example


# The volume terms are memory-bound passes over the largest tensor of the
# step ([B, H, W, D, J] float32); XLA fuses them (and their gradients) into
# a few loops: about 30 % less CPU time for the loss on this CPU
# (BENCHMARKS.md, "Training speed").
_stack_loss = tf.function(_stack_loss_terms, jit_compile=True)


class _C2FBase(base.PoseModel):
  """Shared config handling, targets and loss plumbing."""

  config_class = C2FConfig
  _variant = 'volumetric'

  def __init__(self, config: C2FConfig, **kwargs):
    super().__init__(config, **kwargs)
    validate(config, self._variant)

  def _stem(self) -> Stem:
    c = self.config
    return Stem(c.num_features, conv_channels=c.stem_channels[0],
                mid_channels=c.stem_channels[1], name='stem')

  def _make_stack(self, i: int, depth: int):
    c = self.config
    self.hourglasses.append(Hourglass(c.num_features, c.hourglass_depth,
                                      c.num_residuals, name=f'hourglass_{i}'))
    self.posts.append(Residual(c.num_features, name=f'post_{i}'))
    self.lins.append(ConvBNReLU(c.num_features, 1, name=f'lin_{i}'))
    self.heads.append(keras.layers.Conv2D(J * depth, 1, name=f'head_{i}'))

  def _feature_shape(self, batch=None) -> tuple:
    h = self.config.heatmap_size
    return (batch, h, h, self.config.num_features)

  def _build_stack(self, i: int, batch=None):
    shape = self._feature_shape(batch)
    for layer in (self.hourglasses[i], self.posts[i], self.lins[i],
                  self.heads[i]):
      layer.build(shape)

  def _batch(self, input_shape):
    """Batch size from a build/compute_output_shape argument (or None)."""
    if isinstance(input_shape, dict) and 'image' in input_shape:
      image_shape = tuple(input_shape['image'])
      s = self.config.input_size
      if tuple(image_shape[1:]) != (s, s, 3):
        raise ValueError(f'{self.name} expects image [B, {s}, {s}, 3], got '
                         f'{image_shape}')
      return image_shape[0]
    return None

  def compute_output_shape(self, input_shape=None):
    """{output name: shape}, computed from the config alone."""
    b, h = self._batch(input_shape), self.config.heatmap_size
    return {f'volume_{i}': (b, h, h, int(d), J)
            for i, d in enumerate(self.config.depth_schedule)}

  def _run_stack(self, i: int, x, training):
    """Stack i on input x -> (features, raw heatmaps, float32 volume)."""
    f = self.hourglasses[i](x, training=training)
    f = self.lins[i](self.posts[i](f, training=training), training=training)
    hm = self.heads[i](f)
    h = self.config.heatmap_size
    d = int(self.config.depth_schedule[i])
    volume = tf.cast(tf.reshape(hm, [-1, h, h, d, J]), tf.float32)
    return f, hm, volume

  def _extra_losses(self):
    return tf.add_n([tf.cast(l, tf.float32) for l in self.losses]) \
        if self.losses else 0.

  def _volume_loss(self, y, y_pred, stacks, sample_weight,
                   image_plane_stacks=None):
    """Sum over `stacks` of the per-voxel MSE against 3D Gaussians.

    Weighted by heatmap_loss_weight, plus integral_loss_weight times the
    integral L1 when that is positive.

    Joints with a 2D label and no 3D label (y['valid_2d_only']: 2D-only
    examples of a mixture) supervise only the image plane: on 2D stacks as
    any joint; on a volume of `image_plane_stacks` (default: all) through
    its image-plane marginal (the sum over depth divided by the depth
    Gaussian's mass sqrt(2 pi) sigma_z, so a target volume's marginal is
    the 2D target up to discretisation) against the 2D Gaussian, weighted
    like a 2D stack, and through the x-y of the integral loss (the
    marginal's expectation). On volumes outside `image_plane_stacks` they
    contribute nothing. Nothing of theirs reaches a depth term.
    """
    c = self.config
    total = 0.
    only_2d = y.get('valid_2d_only')
    for i in stacks:
      d = int(c.depth_schedule[i])
      vox = y['joints_vox']
      z = targets_lib.rescale_depth_index(vox[..., 2], c.num_depth_bins, d)
      centers = tf.concat([vox[..., :2], z[..., None]], -1)
      valid = y['valid_2d'] if d == 1 else y['valid_3d']
      image_plane = only_2d is not None and d > 1 and (
          image_plane_stacks is None or i in image_plane_stacks)
      valid_xy = y['valid_2d']
      if only_2d is not None and d > 1 and not image_plane:
        valid_xy = valid_xy * (1. - only_2d)
      per_example = _stack_loss(
          y_pred[f'volume_{i}'], centers, valid, valid_xy,
          only_2d if image_plane else None,
          heatmap_weight=float(c.heatmap_loss_weight),
          integral_weight=float(c.integral_loss_weight),
          sigma=float(c.sigma), sigma_z=float(c.sigma_z(d)),
          beta=float(c.integral_beta), depth=d)
      total += base.distributed_mean(per_example, sample_weight)
    return total

  def targets(self, features):
    return targets_lib.make_targets(features, self.config)

  # --- heatmap-level flip test for the volumetric variants ----------------
  def _final_volume_key(self) -> str:
    return f'volume_{self.config.num_stacks - 1}'

  def decode(self, outputs, inputs):
    return decode_lib.decode_volume(outputs[self._final_volume_key()], inputs,
                                    self.config)

  def predict_poses(self, inputs, flip_test: bool = False):
    """call + decode; flip test averages the final volumes (the paper's way;
    with soft-argmax, their probability volumes: decode.decode_flip_pair).

    With config.flip_mode == 'pose' it falls back to the base class's
    pose-level averaging.
    """
    if not flip_test or self.config.flip_mode == 'pose':
      return super().predict_poses(inputs, flip_test=flip_test)
    key = self._final_volume_key()
    volume = self(inputs, training=False)[key]
    flipped = self(base.flip_inputs(inputs), training=False)[key]
    return decode_lib.decode_flip_pair(
        volume, decode_lib.flip_volume(flipped), inputs, self.config)


@keras.saving.register_keras_serializable(package=PACKAGE)
class VolumetricHourglass(_C2FBase):
  """Stacked hourglasses with a per-stack depth schedule (c2f or naive)."""

  def __init__(self, config: C2FConfig, **kwargs):
    super().__init__(config, **kwargs)
    c = self.config
    self.stem = self._stem()
    self.hourglasses, self.posts, self.lins, self.heads = [], [], [], []
    self.links = []
    for i, depth in enumerate(c.depth_schedule):
      self._make_stack(i, int(depth))
      if i < c.num_stacks - 1:
        self.links.append(StackLink(c.num_features, name=f'link_{i}'))

  def build(self, input_shape=None):
    """Creates every weight from the config, without tracing `call`.

    input_shape (optional) is a dict with 'image' [B, S, S, 3].
    """
    c, b = self.config, self._batch(input_shape)
    h = c.heatmap_size
    self.stem.build((b, c.input_size, c.input_size, 3))
    for i, d in enumerate(c.depth_schedule):
      self._build_stack(i, b)
      if i < c.num_stacks - 1:
        f = self._feature_shape(b)
        self.links[i].build([f, f, (b, h, h, J * int(d))])
    self.built = True

  def call(self, inputs, training=None):
    x = self.stem(inputs['image'], training=training)
    outputs = {}
    for i in range(self.config.num_stacks):
      f, hm, outputs[f'volume_{i}'] = self._run_stack(i, x, training)
      if i < self.config.num_stacks - 1:
        x = self.links[i]([x, f, hm])
    return outputs

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                   training=True):
    del x, training
    return self._volume_loss(y, y_pred, range(self.config.num_stacks),
                             sample_weight) + self._extra_losses()

  @property
  def backbone(self) -> list[keras.layers.Layer]:
    """The stem and every stack but the last (with its head and link).

    Freezing these keeps the image features and coarse predictions and
    fine-tunes only the last hourglass and its volume head.
    """
    layers = [self.stem]
    for i in range(self.config.num_stacks - 1):
      layers += [self.hourglasses[i], self.posts[i], self.lins[i],
                 self.heads[i], self.links[i]]
    return layers


@keras.saving.register_keras_serializable(package=PACKAGE)
class CoordinateRegression(_C2FBase):
  """One hourglass, average-pool by regression_pool, dense to 3 * J, L2 loss.

  Output 'coords_norm' [B, J, 3]: x, y crop pixels mapped to [-1, 1] by the
  crop edges, z root-relative over depth_range_mm (so +-1 is +-1000 mm).
  Only the first stack of the config is used (num_stacks should be 1).
  """
  _variant = 'regression'

  def __init__(self, config: C2FConfig, **kwargs):
    super().__init__(config, **kwargs)
    c = self.config
    self.stem = self._stem()
    self.hourglasses, self.posts, self.lins, self.heads = [], [], [], []
    self.hourglasses.append(Hourglass(c.num_features, c.hourglass_depth,
                                      c.num_residuals, name='hourglass_0'))
    self.posts.append(Residual(c.num_features, name='post_0'))
    self.lins.append(ConvBNReLU(c.num_features, 1, name='lin_0'))
    self.pool = keras.layers.AveragePooling2D(c.regression_pool, name='pool')
    self.flatten = keras.layers.Flatten(name='flatten')
    self.regression_head = keras.layers.Dense(3 * J, name='regression_head')

  def build(self, input_shape=None):
    """Creates every weight from the config, without tracing `call`."""
    c, b = self.config, self._batch(input_shape)
    self.stem.build((b, c.input_size, c.input_size, 3))
    shape = self._feature_shape(b)
    for layer in (self.hourglasses[0], self.posts[0], self.lins[0]):
      layer.build(shape)
    pooled = c.heatmap_size // c.regression_pool
    self.regression_head.build((b, pooled * pooled * c.num_features))
    self.built = True

  def compute_output_shape(self, input_shape=None):
    return {'coords_norm': (self._batch(input_shape), J, 3)}

  def call(self, inputs, training=None):
    x = self.stem(inputs['image'], training=training)
    f = self.hourglasses[0](x, training=training)
    f = self.lins[0](self.posts[0](f, training=training), training=training)
    coords = self.regression_head(self.flatten(self.pool(f)))
    return {'coords_norm': tf.cast(tf.reshape(coords, [-1, J, 3]), tf.float32)}

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                   training=True):
    """Squared Euclidean error per valid joint (normalised units), averaged."""
    del x, training
    w = y['valid_norm']
    sq = tf.square(y_pred['coords_norm'] - y['joints_norm']) * w
    per_example = tf.reduce_sum(sq, [1, 2]) / float(J)
    return base.distributed_mean(per_example, sample_weight) + self._extra_losses()

  def decode(self, outputs, inputs):
    return decode_lib.decode_coordinates(outputs['coords_norm'], inputs,
                                         self.config)

  def predict_poses(self, inputs, flip_test: bool = False):
    """Pose-level flip averaging (the base class's)."""
    return base.PoseModel.predict_poses(self, inputs, flip_test=flip_test)

  @property
  def backbone(self) -> list[keras.layers.Layer]:
    """Everything but the dense regression head."""
    return [self.stem, self.hourglasses[0], self.posts[0], self.lins[0]]


@keras.saving.register_keras_serializable(package=PACKAGE)
class DecoupledVolumetric(_C2FBase):
  """Network 1: image -> 2D heatmaps; network 2: heatmaps only -> volume.

  Stacks 0..k-1 (k = network1_stacks, all d = 1) form network 1, with
  hourglass links between them. Network 2 sees only the last 2D heatmaps of
  network 1 (or x['heatmaps2d_input'] when given): net2_in (3x3 conv-BN-ReLU)
  and net2_res (residual) lift them to the feature width, then stacks k..n-1
  follow with links among themselves. No image feature reaches network 2.

  train_mode 'joint': end to end, loss on every stack (2D and 3D).
  train_mode 'network2_mocap': targets() renders Gaussian heatmaps of the
  ground-truth 2D joints into x['heatmaps2d_input']; network 2 trains on them
  alone (loss on its stacks only), network 1 runs in inference mode with its
  output unused. A motion-capture dataset is projected 3D poses: joints2d_px,
  joints3d_rel_mm, masks and intrinsics, no image needed.
  """
  _variant = 'decoupled'

  def __init__(self, config: C2FConfig, **kwargs):
    super().__init__(config, **kwargs)
    c = self.config
    k = c.network1_stacks
    self.stem = self._stem()
    self.hourglasses, self.posts, self.lins, self.heads = [], [], [], []
    for i, depth in enumerate(c.depth_schedule):
      self._make_stack(i, int(depth))
    # Links only within each network: none from stack k-1 into stack k.
    self.links = [StackLink(c.num_features, name=f'link_{i}')
                  for i in range(c.num_stacks - 1) if i != k - 1]
    self.net2_in = ConvBNReLU(c.num_features, 3, name='net2_in')
    self.net2_res = Residual(c.num_features, name='net2_res')
    if c.train_mode == 'network2_mocap':
      # Network 1 gets no loss in this mode: freeze it (BN in inference mode).
      for layer in self.backbone:
        layer.trainable = False

  def _link(self, i: int) -> StackLink:
    k = self.config.network1_stacks
    return self.links[i if i < k - 1 else i - 1]

  def build(self, input_shape=None):
    """Creates every weight from the config, without tracing `call`."""
    c, b = self.config, self._batch(input_shape)
    h, k = c.heatmap_size, c.network1_stacks
    f = self._feature_shape(b)
    self.stem.build((b, c.input_size, c.input_size, 3))
    for i, d in enumerate(c.depth_schedule):
      self._build_stack(i, b)
      if i < c.num_stacks - 1 and i != k - 1:
        self._link(i).build([f, f, (b, h, h, J * int(d))])
    self.net2_in.build((b, h, h, J))
    self.net2_res.build(f)
    self.built = True

  def call(self, inputs, training=None):
    c = self.config
    k = c.network1_stacks
    mocap = c.train_mode == 'network2_mocap'
    net1_training = False if mocap else training
    outputs = {}
    x = self.stem(inputs['image'], training=net1_training)
    for i in range(k):
      f, hm, outputs[f'volume_{i}'] = self._run_stack(i, x, net1_training)
      if i < k - 1:
        x = self._link(i)([x, f, hm])
    maps = inputs.get('heatmaps2d_input')
    if maps is None:
      maps = hm
    outputs.update(self.network2(maps, training=training))
    return outputs

  def network2(self, maps, training=None) -> dict[str, tf.Tensor]:
    """Network 2 alone: 2D heatmaps [B, H, W, J] -> {volume_i: i >= k}.

    What lifts a 2D detector's keypoints (zoo.lift_lib) without an image.
    """
    c = self.config
    outputs = {}
    x = self.net2_res(self.net2_in(maps, training=training), training=training)
    for i in range(c.network1_stacks, c.num_stacks):
      f, hm, outputs[f'volume_{i}'] = self._run_stack(i, x, training)
      if i < c.num_stacks - 1:
        x = self._link(i)([x, f, hm])
    return outputs

  def extra_serving_signatures(self):
    """The exporter's `lift` signature: keypoints2d_px [B, 17, 2], scores
    [B, 17], intrinsics [B, 3, 3] -> serving_default's outputs
    (zoo.lift_lib.lift_decoupled_tf: network 2 on the keypoints' heatmaps)."""
    return {LIFT_SIGNATURE: (
        lambda keypoints2d_px, scores, intrinsics: lift_lib.lift_decoupled_tf(
            self, keypoints2d_px, scores, intrinsics),
        list(lift_lib.LIFT_INPUT_SPECS))}

  def targets(self, features):
    return targets_lib.make_targets(
        features, self.config,
        mocap_heatmaps=self.config.train_mode == 'network2_mocap')

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                   training=True):
    del x, training
    c = self.config
    first = c.network1_stacks if c.train_mode == 'network2_mocap' else 0
    # 2D-only joints train network 1 (its 2D stacks) and nothing of
    # network 2.
    return self._volume_loss(y, y_pred, range(first, c.num_stacks),
                             sample_weight, image_plane_stacks=()) + \
        self._extra_losses()

  @property
  def backbone(self) -> list[keras.layers.Layer]:
    """Network 1: the stem and its 2D stacks (with heads and links)."""
    k = self.config.network1_stacks
    layers = [self.stem]
    for i in range(k):
      layers += [self.hourglasses[i], self.posts[i], self.lins[i],
                 self.heads[i]]
    layers += [self._link(i) for i in range(k - 1)]
    return layers
