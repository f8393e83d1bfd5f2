"""Named configs ('paper' / 'cpu' / 'smoke') for each variant of the family.

- paper: the paper's architecture and optimiser (256 crop, 64^2 x-y, 256
  features, hourglass depth 4, RMSprop 2.5e-4, batch 4). c2f: 4 stacks with
  d = 1, 2, 4, 64; naive stacking: 4 stacks at d = 64; coordinate regression:
  one hourglass; decoupled: one 2D hourglass + one volumetric hourglass (the
  paper's Table 3 compares it with the 2-stack c2f network).
- cpu: meant to learn within ~15 minutes on 2 CPU cores: 64 px crop, 16^2
  x-y, 16 depth bins (125 mm each over +-1000 mm; the paper draws d from
  1, 2, 4, ..., 64 and its Table 1 has d = 32 and 64 volumes), 64 features
  (stem 32 / 64), hourglass depth 3, 2 stacks (c2f d = 1, 16; naive 16,
  16), Adam 3e-3 with cosine decay, batch 64, 3300 steps.
  Not the paper's, and why:
  - the auxiliary integral L1 loss (integral_loss_weight 1, C2FConfig) and
    soft-argmax decoding with that loss's softmax: with the MSE alone a
    small network this short stays at the mean-pose baseline;
  - 64 px and batch 64: on 2 cores the run is compute-bound and the loss is
    still falling at the end of the budget, so what wins is the number of
    examples seen per minute (larger crops, smaller or larger batches and
    wider layers all scored worse at equal time);
  - appearance augmentation (random RGB channel permutation, grayscale 0.1,
    synthetic occluders 0.3 as in MeTRAbs, a continuous hue rotation of
    +-0.5 of the colour circle and saturation jitter 0.6-1.4): without it
    the network fits the training subjects' clothes and fails to generalise
    to the test subjects';
  - the flip test (C2FConfig.flip_test) averages the two probability
    volumes (decode.decode_flip_pair) before the soft-argmax;
  - 16 depth bins instead of 32: at equal steps they score no better (the
    soft-argmax keeps sub-bin precision), but a step costs about 15 % less,
    and the 3300 steps that buys in the same time score 114.4 mm against
    128.6 mm for 32 bins at 2600 steps (3 seeds each, BENCHMARKS.md).
  Probes that did not help: 8 depth bins, the integral loss alone
  (also at 2800 steps, the same time: its depth is much worse), the MSE at
  3x the integral loss's weight, XLA for the whole model (slower on this
  CPU: oneDNN's convolutions are lost; only the loss terms are compiled).
  The measured figures are in BENCHMARKS.md. The trainer's default
  precision (auto) runs this preset in mixed_bfloat16 on CPUs with bfloat16
  instructions (3000 steps of it trained in about 12.5 minutes on 2 idle
  cores with AMX; 3300 are an extrapolation to about 14 minutes).
  Coordinate regression: one hourglass of the same width, pooled to 8x8
  before the dense layer. Decoupled: one stack per network.
- smoke: a few steps in seconds (64 crop, 16^2 x 8 volume, 16 features,
  hourglass depth 2).
"""
from __future__ import annotations

from zoo import config as config_lib
from zoo.c2f_volumetric.config import C2FConfig

_PAPER = C2FConfig()

_CPU = C2FConfig(
    input_size=64, heatmap_size=16, num_stacks=2, depth_schedule=(1, 16),
    num_features=64, hourglass_depth=3, stem_channels=(32, 64),
    regression_pool=2, integral_loss_weight=1., decoding='soft_argmax',
    augment=config_lib.AugmentConfig(
        color_permute_prob=1., grayscale_prob=0.1, occlusion_prob=0.3,
        hue_delta=0.5, saturation_range=(0.6, 1.4)),
    train=config_lib.TrainConfig(
        optimizer='adam', learning_rate=3e-3, lr_schedule='cosine',
        batch_size=64, steps=3300,
        checkpoint_every=300, log_every=25, num_train_examples=20_000,
        num_test_examples=1_000))

_SMOKE = C2FConfig(
    input_size=64, heatmap_size=16, num_stacks=2, depth_schedule=(1, 8),
    num_features=16, hourglass_depth=2, stem_channels=(8, 16),
    regression_pool=2,
    train=config_lib.TrainConfig(
        optimizer='adam', learning_rate=1e-3, batch_size=2, steps=3,
        checkpoint_every=2, log_every=1, num_train_examples=32,
        num_test_examples=16))


def _variant(preset: C2FConfig, variant: str) -> C2FConfig:
  d = preset.num_depth_bins
  n = preset.num_stacks
  if variant == 'c2f_volumetric':
    return preset
  if variant == 'volumetric_stacked':
    return config_lib.replace(preset, depth_schedule=(d,) * n)
  if variant == 'coordinate_regression':
    return config_lib.replace(preset, num_stacks=1, depth_schedule=(d,))
  if variant == 'decoupled_volumetric':
    return config_lib.replace(preset, num_stacks=2, depth_schedule=(1, d),
                              network1_stacks=1)
  raise KeyError(f'unknown c2f variant {variant!r}')


VARIANTS = ('c2f_volumetric', 'volumetric_stacked', 'coordinate_regression',
            'decoupled_volumetric')


# decoupled_volumetric only, 'lift': network 2 trained on motion capture alone
# (trainers.lift_mocap: poses projected by random cameras with a detector's
# 2D errors, rendered as heatmaps; network 1 is frozen and unused) to lift
# 2D detectors' keypoints (zoo.lift_lib). The cpu preset's geometry and
# decoding at half the width (32 features: a step costs half as much, and
# the whole run stays within about ten minutes on 2 shared cores); network
# 1, which the lifting never runs, has a small stem. 32 depth bins (62.5 mm
# each), the cpu preset's before it took 16: the bundled lift checkpoint and
# the lifting figures in BENCHMARKS.md are at 32.
_LIFT = config_lib.replace(
    _CPU, train_mode='network2_mocap', depth_schedule=(1, 32),
    num_features=32, stem_channels=(8, 16),
    augment=config_lib.AugmentConfig(),
    train=config_lib.TrainConfig(
        optimizer='adam', learning_rate=2e-3, lr_schedule='cosine',
        batch_size=32, steps=1200, checkpoint_every=1000, log_every=100,
        num_train_examples=100_000, num_test_examples=1_000))


def presets(variant: str) -> dict[str, C2FConfig]:
  """{'paper', 'cpu', 'smoke'} -> config of `variant` (decoupled_volumetric
  also has 'lift')."""
  out = {name: _variant(p, variant)
         for name, p in (('paper', _PAPER), ('cpu', _CPU), ('smoke', _SMOKE))}
  if variant == 'decoupled_volumetric':
    out['lift'] = _variant(_LIFT, variant)
  return out
