"""Named configs of lifting_deep: 'paper', 'cpu', 'smoke'.

- paper: the paper's network: CPM with 6 stages, 368 px input, 46 x 46
  belief maps (stride 8, three 9x9 trunk convs of 128 channels, later stages
  five 7x7 convs of 128 channels), centre map, no BatchNorm; prior with 3
  components x 25 bases fitted on 100,000 motion-capture poses (+ mirrored),
  80 yaw angles; SGD with momentum, batch 16.
- cpu: trains within the 25-minute budget of `python -m trainers.run
  --model=lifting_deep` on 2 cores (data generation, prior fit, training and
  evaluation included): 128 px input, 32 x 32 maps (stride 4), a shared
  3x3 trunk of 32 channels, 3 stages of three 5x5 convs of 32 channels, with
  BatchNorm; prior 3 x 25 fitted on 50,000 poses (+ mirrored), 80 angles;
  Adam 1e-3, batch 16, 3,000 steps (about 0.39 CPU-seconds per step of the
  model alone, i.e. roughly 15 minutes on 2 idle cores; BENCHMARKS.md has
  the measured figures).
- smoke: seconds (32 px input, 8 x 8 maps, 2 stages, 8 channels, a 2 x 4
  prior fitted on 2,000 poses, 16 angles), for tests.
"""
from __future__ import annotations

from zoo import config as config_lib
from zoo.lifting_deep.config import LiftingDeepConfig

_PAPER = LiftingDeepConfig()

_CPU = LiftingDeepConfig(
    input_size=128, num_pools=2, heatmap_size=32, belief_sigma_px=4.,
    centre_sigma_px=8., num_stages=3, trunk_channels=32, trunk_kernel=3,
    separate_stage1_trunk=False, stage1_mid_channels=64, feature_channels=16,
    stage_channels=32, stage_kernel=5, stage_convs=3, batch_norm=True,
    prior_num_poses=50_000, lift_refine_steps=5,
    train=config_lib.TrainConfig(
        optimizer='adam', learning_rate=1e-3, batch_size=16, steps=3000,
        checkpoint_every=500, log_every=50, num_train_examples=20_000,
        num_test_examples=1_000))

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
