"""C2FConfig: the coarse-to-fine volumetric family's settings, paper defaults.

One dataclass serves the four registered variants (c2f_volumetric,
volumetric_stacked, coordinate_regression, decoupled_volumetric); fields a
variant does not use are ignored by it. Defaults are Pavlakos et al. 2017
(CVPR), "Coarse-to-Fine Volumetric Prediction for Single-Image 3D Human Pose".

The volume:
- x-y: uniform over the crop, heatmap_size cells (input_size / 4; the stem
  downsamples x4). Heatmap coordinate of crop pixel u:
  x_hm = (u + 0.5) * heatmap_size / input_size - 0.5 (cell i centred at i).
- z: `num_depth_bins` D = depth_schedule[-1] uniform bins over
  [-depth_range_mm, +depth_range_mm] around the root joint; bin k has centre
  -R + (k + 0.5) * 2R / D. Continuous index
  z_D = (z_rel_mm + R) * D / (2R) - 0.5.
- Coarser stacks with d bins use z_d = (z_D + 0.5) * d / D - 0.5, i.e. the
  same metric range cut into d bins. The released code uses the integer
  ceil(z * d / 64) on 1-based indices; for D divisible by d both put a fine
  bin's centre into the same coarse bin (round(z_d) == floor(k * d / D) for
  fine bin k), ours keeps the sub-bin offset instead of snapping to a bin.

Targets are 3D Gaussians (peak 1) with sigma `sigma` voxels in x-y. In z the
paper uses the same sigma (2 bins at d = 64); stacks with d <=
`coarse_max_depth` (default 4) use `sigma_z_coarse` (0.5 bin): at d <= 4 a
bin spans >= 500 mm, so a 2-bin sigma would smear the target over the whole
range, and the released code's coarse targets are a single slice. With d = 1
the target is an ordinary 2D heatmap.
"""
from __future__ import annotations

import dataclasses

from zoo import config as config_lib
from zoo import skeleton as skel

DECODINGS = ('argmax', 'soft_argmax')
TRAIN_MODES = ('joint', 'network2_mocap')
ROOT_DEPTH_SOURCES = ('limb_lengths', 'input')
FLIP_MODES = ('heatmap', 'pose')


def _paper_train() -> config_lib.TrainConfig:
  return config_lib.TrainConfig(optimizer='rmsprop', learning_rate=2.5e-4,
                                batch_size=4)


@dataclasses.dataclass
class C2FConfig(config_lib.ModelConfig):
  """Settings of the coarse-to-fine volumetric models (paper defaults)."""
  # Geometry of input and output.
  input_size: int = 256              # square crop side, px
  heatmap_size: int = 64             # x-y cells; must be input_size // 4
  # Stacked hourglasses.
  num_stacks: int = 4
  depth_schedule: tuple[int, ...] = (1, 2, 4, 64)  # z bins per stack
  num_features: int = 256            # hourglass width
  hourglass_depth: int = 4           # levels (pooling steps) per hourglass
  num_residuals: int = 1             # residual blocks per hourglass branch
  stem_channels: tuple[int, int] = (64, 128)  # stem conv and mid widths
  # Targets.
  sigma: float = 2.0                 # Gaussian sigma, voxels (x-y; z at fine d)
  sigma_z_coarse: float = 0.5        # z sigma (bins) for d <= coarse_max_depth
  coarse_max_depth: int = 4
  depth_range_mm: float = 1000.      # z range is +-this around the root
  # Decoding.
  decoding: str = 'argmax'           # 'argmax' (paper) | 'soft_argmax'
  soft_argmax_beta: float = 50.      # softmax(beta * V / max V) for soft-argmax
                                     # (MSE-only training; with the integral
                                     # loss, softmax(integral_beta * V))
  # Flip test: 'heatmap' (the paper) averages the crop's and the mirror's
  # final volumes (with soft-argmax, their probability volumes:
  # decode.decode_flip_pair); 'pose' averages the two decoded poses.
  flip_mode: str = 'heatmap'
  # The trainer's and trainers.evaluate's default evaluation averages the
  # volumes of the crop and its mirror, as the paper does (trainers.evaluate
  # --noflip_test turns it off). Serving and zoo.predict take their own
  # --flip_test flag (twice the compute).
  flip_test: bool = True
  # Auxiliary integral loss (not in the paper, whose loss is the heatmap MSE
  # alone; weight 0 is the paper): L1 between each stack's soft-argmax
  # (softmax of integral_beta * volume) and the target voxel, in fractions
  # of the volume's extent, added with this weight. From scratch on 2 CPU
  # cores the MSE alone hardly leaves the all-zero volume within minutes;
  # this gives every voxel a gradient towards the joint (Sun et al. 2018).
  integral_loss_weight: float = 0.
  integral_beta: float = 20.
  # Weight of the paper's heatmap MSE (1 = the paper). 0 with a positive
  # integral_loss_weight trains the volumes as soft-argmax logits alone
  # (Sun et al. 2018; MeTRAbs), free of the MSE's pull towards peak-1
  # Gaussians.
  heatmap_loss_weight: float = 1.
  # Absolute pose: root depth from limb lengths (recover_root_depth_tf) with
  # these bone lengths (mm, H36M17.limbs order; None = H36M means), or
  # 'input': take inputs['root_depth_mm'] [B] (ground truth, component studies).
  root_depth_source: str = 'limb_lengths'
  bone_lengths_mm: tuple[float, ...] | None = None
  # coordinate_regression: average-pool factor before the dense layer; the
  # presets pool to an 8x8 grid (paper 64 / 8). A wider flattened input made
  # the dense layer's early Adam/RMSprop steps blow the outputs up (the
  # per-step output change grows with the fan-in).
  regression_pool: int = 8
  # decoupled_volumetric: the first `network1_stacks` stacks (all d = 1) form
  # network 1 (image -> 2D heatmaps); the rest form network 2 (heatmaps only
  # -> volume). train_mode 'joint' trains both with losses on the 2D heatmaps
  # and the volume; 'network2_mocap' feeds network 2 with Gaussian heatmaps
  # rendered from the ground-truth 2D joints and trains network 2 alone.
  network1_stacks: int = 1
  train_mode: str = 'joint'
  # Shared training settings (paper: RMSprop 2.5e-4, batch 4).
  train: config_lib.TrainConfig = dataclasses.field(
      default_factory=_paper_train)
  augment: config_lib.AugmentConfig = dataclasses.field(
      default_factory=config_lib.AugmentConfig)

  @property
  def num_depth_bins(self) -> int:
    """D of the final volume (the last stack's depth)."""
    return int(self.depth_schedule[-1])

  def sigma_z(self, depth: int) -> float:
    """Gaussian z sigma (bins) for a stack with `depth` bins."""
    return self.sigma if depth > self.coarse_max_depth else self.sigma_z_coarse


def validate(config: C2FConfig, variant: str = 'volumetric') -> None:
  """Raises ValueError naming the first inconsistent field.

  variant: 'volumetric' | 'regression' | 'decoupled'.
  """
  c = config
  if c.input_size % 4 or c.heatmap_size != c.input_size // 4:
    raise ValueError(f'heatmap_size must be input_size // 4 (the stem '
                     f'downsamples x4) and input_size divisible by 4; got '
                     f'input_size={c.input_size}, '
                     f'heatmap_size={c.heatmap_size}')
  if c.heatmap_size % (2 ** c.hourglass_depth):
    raise ValueError(f'heatmap_size {c.heatmap_size} must be divisible by '
                     f'2**hourglass_depth = {2 ** c.hourglass_depth}')
  if len(c.depth_schedule) != c.num_stacks:
    raise ValueError(f'depth_schedule {tuple(c.depth_schedule)} must have '
                     f'num_stacks={c.num_stacks} entries')
  if c.num_stacks < 1 or any(int(d) < 1 for d in c.depth_schedule):
    raise ValueError(f'need num_stacks >= 1 and depths >= 1; got '
                     f'num_stacks={c.num_stacks}, depth_schedule='
                     f'{tuple(c.depth_schedule)}')
  if c.decoding not in DECODINGS:
    raise ValueError(f'decoding must be one of {DECODINGS}, got {c.decoding!r}')
  if c.flip_mode not in FLIP_MODES:
    raise ValueError(f'flip_mode must be one of {FLIP_MODES}, got '
                     f'{c.flip_mode!r}')
  if c.root_depth_source not in ROOT_DEPTH_SOURCES:
    raise ValueError(f'root_depth_source must be one of {ROOT_DEPTH_SOURCES}, '
                     f'got {c.root_depth_source!r}')
  if c.train_mode not in TRAIN_MODES:
    raise ValueError(f'train_mode must be one of {TRAIN_MODES}, got '
                     f'{c.train_mode!r}')
  if c.depth_range_mm <= 0 or c.sigma <= 0 or c.sigma_z_coarse <= 0:
    raise ValueError('depth_range_mm, sigma and sigma_z_coarse must be > 0')
  if c.heatmap_loss_weight < 0 or (c.heatmap_loss_weight == 0
                                   and c.integral_loss_weight == 0):
    raise ValueError(f'need heatmap_loss_weight >= 0 and a positive '
                     f'heatmap_loss_weight or integral_loss_weight (else '
                     f'nothing is trained); got {c.heatmap_loss_weight}, '
                     f'{c.integral_loss_weight}')
  if c.integral_loss_weight < 0 or c.integral_beta <= 0:
    raise ValueError(f'need integral_loss_weight >= 0 and integral_beta > 0; '
                     f'got {c.integral_loss_weight}, {c.integral_beta}')
  if variant == 'volumetric' and c.num_depth_bins < 2:
    raise ValueError(f'the last stack must predict a volume (depth >= 2), got '
                     f'depth_schedule {tuple(c.depth_schedule)}')
  if variant == 'regression' and (c.heatmap_size % c.regression_pool):
    raise ValueError(f'heatmap_size {c.heatmap_size} must be divisible by '
                     f'regression_pool {c.regression_pool}')
  if variant == 'decoupled':
    k = c.network1_stacks
    if not 1 <= k < c.num_stacks:
      raise ValueError(f'network1_stacks must be in [1, num_stacks) so both '
                       f'networks have a stack; got {k} with num_stacks='
                       f'{c.num_stacks}')
    if any(int(d) != 1 for d in c.depth_schedule[:k]):
      raise ValueError(f'network 1 predicts 2D heatmaps: depth_schedule[:'
                       f'{k}] must be all 1, got {tuple(c.depth_schedule)}')
    if c.num_depth_bins < 2:
      raise ValueError('network 2 must end in a volume (depth >= 2), got '
                       f'depth_schedule {tuple(c.depth_schedule)}')
  if c.bone_lengths_mm is not None:
    n = len(skel.H36M17.limbs)
    if len(c.bone_lengths_mm) != n:
      raise ValueError(f'bone_lengths_mm needs {n} entries (H36M17.limbs '
                       f'order), got {len(c.bone_lengths_mm)}')
