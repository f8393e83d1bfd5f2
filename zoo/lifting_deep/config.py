"""LiftingDeepConfig: Lifting from the Deep's settings, paper defaults.

Tome, Russell, Agapito, "Lifting from the Deep: Convolutional 3D Pose
Estimation from a Single Image", CVPR 2017. The 2D network is a
Convolutional Pose Machine (6 stages, 368 px input, 46 x 46 belief maps for
the 14 CPM joints + background, a centre-map input, loss at every stage);
each stage's belief maps are lifted to 3D with the mixture-of-PPCA prior,
projected back, rendered as belief maps and fused with learned per-stage
weights. The prior is fitted on motion capture only (zoo.lifting_deep.prior).

Coordinates: belief-map cell i is centred at crop pixel (i + 0.5) * stride
- 0.5 with stride = input_size / heatmap_size = 2**num_pools.
"""
from __future__ import annotations

import dataclasses

from zoo import config as config_lib

LANDMARKS = ('argmax', 'soft_argmax')


def _paper_train() -> config_lib.TrainConfig:
  # CPM / the paper: SGD with momentum (0.9), batch 16 (CPM's), small rate
  # for the Caffe-style loss (sum of squared errors / 2 per example).
  return config_lib.TrainConfig(optimizer='sgd', learning_rate=8e-5,
                                batch_size=16)


@dataclasses.dataclass
class LiftingDeepConfig(config_lib.ModelConfig):
  """Settings of the lifting_deep model (paper defaults)."""
  # Geometry.
  input_size: int = 368              # square crop side, px
  num_pools: int = 3                 # trunk stride 2**num_pools
  heatmap_size: int = 46             # belief maps; input_size / 2**num_pools
  belief_sigma_px: float = 7.        # target / projected Gaussians, crop px
  centre_sigma_px: float = 21.       # centre-map Gaussian, crop px
  # CPM.
  num_stages: int = 6
  trunk_channels: int = 128
  trunk_kernel: int = 9
  trunk_convs_per_pool: int = 1      # k x k convs before each max-pool
  trunk_post_convs: int = 0          # k x k convs after the last pool
  separate_stage1_trunk: bool = True  # CPM: stage 1 has its own image CNN
  stage1_mid_channels: int = 512
  feature_channels: int = 32         # per-stage 5x5 conv of trunk features
  stage_channels: int = 128
  stage_kernel: int = 7
  stage_convs: int = 5
  batch_norm: bool = False           # CPM has none
  # Projection and fusion (the paper's additions).
  fusion: bool = True                # False: a plain CPM (equal-budget study)
  fusion_init: tuple[float, float] = (0.5, 0.5)  # initial (w_cnn, w_proj):
                                     # an average (both background maps ~1)
  landmarks: str = 'argmax'          # per-stage landmarks: argmax (paper) |
                                     # soft_argmax (differentiable)
  soft_argmax_beta: float = 50.      # softmax(beta * maps) for soft-argmax
  # Auxiliary integral loss (not in the paper, whose loss is the belief-map
  # MSE): per stage, the L1 between the soft-argmax of softmax(
  # soft_argmax_beta * maps) and the labelled joint, in fractions of the
  # map side (zoo.heatmaps.integral_l1), times this weight. It trains the
  # sub-cell landmark position that the lifting reads.
  integral_loss_weight: float = 0.
  lift_gradients: bool = False       # back-propagate through the lifting
  # The pose prior and its lifting.
  num_components: int = 3
  num_basis: int = 25
  num_angles: int = 80               # paper: 80 (released code: 100)
  lift_noise: float = 0.05           # 2D noise std / RMS 2D radius
  lift_refine: bool = True           # sub-grid angle refinement
  lift_refine_steps: int = 9
  prior_path: str | None = None      # set by prepare(); .npz of PosePrior
  prior_num_poses: int = 100_000     # motion-capture poses to fit on
  prior_seed: int = 0
  prior_em_iterations: int = 50
  # Absolute pose: root depth from the lifted pose's own bone lengths.
  flip_test: bool = False
  train: config_lib.TrainConfig = dataclasses.field(
      default_factory=_paper_train)
  augment: config_lib.AugmentConfig = dataclasses.field(
      default_factory=config_lib.AugmentConfig)

  @property
  def stride(self) -> int:
    return 2 ** self.num_pools

  @property
  def num_belief_maps(self) -> int:
    """14 CPM joints + background."""
    return 15


def validate(config: LiftingDeepConfig) -> None:
  """Raises ValueError naming the first inconsistent field."""
  c = config
  if c.input_size % c.stride or c.heatmap_size != c.input_size // c.stride:
    raise ValueError(f'heatmap_size must be input_size // 2**num_pools; got '
                     f'input_size={c.input_size}, num_pools={c.num_pools}, '
                     f'heatmap_size={c.heatmap_size}')
  if c.num_stages < 1:
    raise ValueError(f'num_stages must be >= 1, got {c.num_stages}')
  if c.landmarks not in LANDMARKS:
    raise ValueError(f'landmarks must be one of {LANDMARKS}, got '
                     f'{c.landmarks!r}')
  if len(tuple(c.fusion_init)) != 2:
    raise ValueError(f'fusion_init must be (w_cnn, w_proj), got '
                     f'{c.fusion_init!r}')
  if c.integral_loss_weight < 0 or c.soft_argmax_beta <= 0:
    raise ValueError(f'need integral_loss_weight >= 0 and soft_argmax_beta > '
                     f'0; got {c.integral_loss_weight}, {c.soft_argmax_beta}')
  if c.belief_sigma_px <= 0 or c.centre_sigma_px <= 0:
    raise ValueError('belief_sigma_px and centre_sigma_px must be > 0')
  if c.num_components < 1 or c.num_basis < 1 or c.num_angles < 1:
    raise ValueError('num_components, num_basis and num_angles must be >= 1')
  if c.lift_refine_steps < 1 or c.lift_refine_steps % 2 == 0:
    raise ValueError(f'lift_refine_steps must be odd and >= 1, got '
                     f'{c.lift_refine_steps}')
