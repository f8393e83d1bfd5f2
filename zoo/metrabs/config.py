"""MeTRAbs configuration: the paper's defaults (Sarandi et al. 2020).

Metric-scale truncation-robust heatmaps: a backbone (ResNet-50 v2, stride 32,
256 px crops -> 8x8 features) and one 1x1 convolution to J 2D-heatmap logits
and D x J metric 3D-heatmap logits. The 3D volume spans a `box_size_mm` cube
around the person in all three axes, so joints cut off by the crop border are
still inside it. Numbers from the paper and its released code's
defaults (box 2200 mm, D = 8, mean-relative 3D loss, absolute loss weight 0.1
after 5000 steps, lr 2.121e-4, weight decay 3e-3, batch 32).
"""
from __future__ import annotations

import dataclasses

from zoo.config import AugmentConfig, ModelConfig, TrainConfig

# Backbones by name: keras.applications models, or zoo.layers.resnet.
KERAS_BACKBONES = ('resnet50v2', 'resnet50', 'mobilenetv3small',
                   'mobilenetv3large')
ZOO_BACKBONES = ('resnet18', 'resnet34')
BACKBONES = KERAS_BACKBONES + ZOO_BACKBONES


def _paper_train() -> TrainConfig:
  return TrainConfig(optimizer='adamw', learning_rate=2.121e-4,
                     weight_decay=3e-3, lr_schedule='cosine', batch_size=32,
                     steps=400_000, checkpoint_every=2000, log_every=100)


def _paper_augment() -> AugmentConfig:
  # The paper rotates by U(-20, 20) deg; the shared pipeline draws N(0, r)
  # clipped at 2r, so r = 10 gives the same +-20 deg range. Shift 10 % of the
  # box, synthetic occluders with probability 0.5 (released-code defaults).
  return AugmentConfig(scale_range=(0.75, 1.25), rotation_deg=10.,
                       rotation_prob=1., flip=True, color_gain=(0.8, 1.2),
                       shift_fraction=0.1, occlusion_prob=0.5)


@dataclasses.dataclass
class MetrabsConfig(ModelConfig):
  """Architecture, loss and reconstruction settings (paper defaults)."""
  input_size: int = 256                 # crop side S (px)
  num_joints: int = 17                  # H36M-17
  backbone: str = 'resnet50v2'          # see BACKBONES
  # None: train from scratch; 'imagenet': keras.applications' weights (needs
  # a download); or a path to a local .h5 / .weights.h5 file of the backbone.
  backbone_weights: str | None = None
  backbone_widths: tuple[int, ...] = (64, 128, 256, 512)  # resnet18/34 only
  output_stride: int = 32               # heatmap side = input_size / stride
  depth_bins: int = 8                   # D, metric-heatmap bins along z
  box_size_mm: float = 2200.            # side of the metric cube (all axes)
  mean_relative: bool = True            # 3D loss relative to the mean joint
  # Losses (metres for 3D; 2D error / crop side * box size in metres).
  loss3d_weight: float = 1.
  loss2d_weight: float = 1.
  loss_abs_weight: float = 0.1
  abs_loss_start_step: int = 5000       # absolute loss off before this step
  abs_loss_far_mm: float = 10000.       # z error scaled by min(1, far / z)
  abs_loss_min_depth_mm: float = 300.   # joints closer than this are ignored
  # Absolute reconstruction.
  recon_l2_regularizer: float = 1e-3    # on the normalised least squares
  recon_border_factor: float = 0.75     # "inside" = 0.75 stride from border
  recon_outside_weight: float = 1e-4    # weight of joints outside the crop
  # None: every joint is P_rel + T. A value w in [0, 1]: joints inside the
  # crop become w * (P_rel + T) + (1 - w) * (2D ray at depth T_z + z_rel).
  mix_3d_inside_crop: float | None = None
  # The evaluation's default: average the poses decoded from the crop and
  # its mirror image (zoo.base.PoseModel.predict_poses). The paper: off.
  flip_test: bool = False
  train: TrainConfig = dataclasses.field(default_factory=_paper_train)
  augment: AugmentConfig = dataclasses.field(default_factory=_paper_augment)

  @property
  def heatmap_size(self) -> int:
    return self.input_size // self.output_stride

  def validate(self) -> 'MetrabsConfig':
    """Raises ValueError naming the bad field; returns self."""
    if self.backbone not in BACKBONES:
      raise ValueError(f'MetrabsConfig.backbone must be one of {BACKBONES}, '
                       f'got {self.backbone!r}')
    if self.backbone in KERAS_BACKBONES and self.output_stride != 32:
      raise ValueError(f'MetrabsConfig.output_stride must be 32 for the '
                       f'keras.applications backbone {self.backbone!r} (use '
                       f'resnet18/resnet34 for 8 or 16), got '
                       f'{self.output_stride}')
    if self.output_stride not in (4, 8, 16, 32):
      raise ValueError('MetrabsConfig.output_stride must be 4, 8, 16 or 32, got '
                       f'{self.output_stride}')
    if self.input_size % self.output_stride or self.heatmap_size < 2:
      raise ValueError(f'MetrabsConfig.input_size ({self.input_size}) must be '
                       f'a multiple of output_stride ({self.output_stride}) '
                       'giving a heatmap side >= 2')
    if self.depth_bins < 2:
      raise ValueError(f'MetrabsConfig.depth_bins must be >= 2, got '
                       f'{self.depth_bins}')
    if self.box_size_mm <= 0:
      raise ValueError(f'MetrabsConfig.box_size_mm must be > 0, got '
                       f'{self.box_size_mm}')
    for name in ('loss3d_weight', 'loss2d_weight', 'loss_abs_weight',
                 'recon_l2_regularizer', 'recon_outside_weight'):
      if getattr(self, name) < 0:
        raise ValueError(f'MetrabsConfig.{name} must be >= 0, got '
                         f'{getattr(self, name)}')
    if self.recon_l2_regularizer <= 0 and self.recon_outside_weight <= 0:
      raise ValueError('MetrabsConfig: recon_l2_regularizer or '
                       'recon_outside_weight must be > 0 so the translation '
                       'solve is never singular')
    if self.mix_3d_inside_crop is not None and not (
        0. <= self.mix_3d_inside_crop <= 1.):
      raise ValueError('MetrabsConfig.mix_3d_inside_crop must be None or in '
                       f'[0, 1], got {self.mix_3d_inside_crop}')
    if self.num_joints < 1:
      raise ValueError(f'MetrabsConfig.num_joints must be >= 1, got '
                       f'{self.num_joints}')
    return self
