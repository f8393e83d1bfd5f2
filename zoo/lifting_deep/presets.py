"""Named configs of lifting_deep: 'paper', 'cpu', 'smoke'.

- paper: the paper's network: CPM with 6 stages, 368 px input, 46 x 46
  belief maps (stride 8, three 9x9 trunk convs of 128 channels, later stages
  five 7x7 convs of 128 channels), centre map, no BatchNorm; prior with 3
  components x 25 bases fitted on 100,000 motion-capture poses (+ mirrored),
  80 yaw angles; SGD with momentum, batch 16.
- cpu: learns as much as it can in about 15 minutes of training on 2 CPU
  cores (`python -m trainers.run --model=lifting_deep`, the README's main
  command): the same CPM family (3 stages with BatchNorm, per-stage lifting,
  projection and fusion) at 64 px input, 16 x 16 belief maps (stride 4), a
  trunk of two 3x3 convs of 32 channels per resolution and two more after
  the last pool, later stages of three 5x5 convs of 32 channels; prior 3 x 25
  fitted on 50,000 poses (+ mirrored), 80 angles. Adam 3e-3 with cosine
  decay, batch 64, 2,300 steps.
  Not the paper's, and why (each measured; BENCHMARKS.md):
  - 64 px and batch 64: on 2 cores the run is compute-bound, and what wins is
    the number of examples seen per minute;
  - belief-map Gaussians of 8 px (2 cells) instead of about one cell: a
    wider target trains faster and reads out more precisely;
  - the auxiliary integral loss (integral_loss_weight 50) and soft-argmax
    landmarks: the lifting needs sub-cell 2D positions;
  - lift_noise 0.1 (the paper's solver treats the 2D as exact up to a small
    noise): the network's 2D errors are several pixels, and a stronger pull
    to the prior lifts them better;
  - appearance augmentation (RGB channel permutation, grayscale 0.1,
    occluders 0.3, hue rotation +-0.5, saturation 0.6-1.4), as the c2f cpu
    preset: the test subjects wear other clothes;
  - the flip test at evaluation (the base pose-level one: the lifted poses
    of the crop and its mirror are averaged).
- smoke: seconds (32 px input, 8 x 8 maps, 2 stages, 8 channels, a 2 x 4
  prior fitted on 2,000 poses, 16 angles), for tests.
"""
from __future__ import annotations

from zoo import config as config_lib
from zoo.lifting_deep.config import LiftingDeepConfig

_PAPER = LiftingDeepConfig()

_CPU = LiftingDeepConfig(
    input_size=64, num_pools=2, heatmap_size=16, belief_sigma_px=8.,
    centre_sigma_px=8., num_stages=3, trunk_channels=32, trunk_kernel=3,
    trunk_convs_per_pool=2, trunk_post_convs=2,
    separate_stage1_trunk=False, stage1_mid_channels=64, feature_channels=16,
    stage_channels=32, stage_kernel=5, stage_convs=3, batch_norm=True,
    landmarks='soft_argmax', integral_loss_weight=50., lift_noise=0.1,
    flip_test=True, prior_num_poses=50_000, lift_refine_steps=5,
    augment=config_lib.AugmentConfig(
        color_permute_prob=1., grayscale_prob=0.1, occlusion_prob=0.3,
        hue_delta=0.5, saturation_range=(0.6, 1.4)),
    train=config_lib.TrainConfig(
        optimizer='adam', learning_rate=3e-3, lr_schedule='cosine',
        batch_size=64, steps=2300, checkpoint_every=500, log_every=50,
        num_train_examples=20_000, num_test_examples=1_000))

_SMOKE = LiftingDeepConfig(
    input_size=32, num_pools=2, heatmap_size=8, belief_sigma_px=4.,
    centre_sigma_px=8., num_stages=2, trunk_channels=8, trunk_kernel=3,
    separate_stage1_trunk=False, stage1_mid_channels=8, feature_channels=4,
    stage_channels=8, stage_kernel=3, stage_convs=1, batch_norm=True,
    num_components=2, num_basis=4, num_angles=16, lift_refine_steps=3,
    prior_num_poses=2000, prior_em_iterations=5,
    train=config_lib.TrainConfig(
        optimizer='adam', learning_rate=1e-3, batch_size=2, steps=3,
        checkpoint_every=2, log_every=1, num_train_examples=32,
        num_test_examples=16))


def presets() -> dict[str, LiftingDeepConfig]:
  return {'paper': _PAPER, 'cpu': _CPU, 'smoke': _SMOKE}
