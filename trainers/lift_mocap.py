"""Train the decoupled network 2 to lift 2D keypoints, from motion capture alone.

  python -m trainers.lift_mocap --out=DIR [--preset=lift] [--steps=N]
      [--motion=FILE.npz] [--seed=0]
  python -m trainers.lift_mocap --fit_prior=PRIOR.npz [--motion=FILE.npz]

What. decoupled_volumetric's network 2 (2D heatmaps -> 3D volume) trained on
motion-capture poses seen by random cameras with a detector's 2D errors and
missing joints (zoo.data.mocap2d), rendered as heatmaps in the perspective
crop around the keypoints exactly as zoo.lift_lib does at inference
(keypoint_crop_tf, keypoint_heatmaps_tf). Targets are the true 2D and 3D
joints in that crop (the cpu preset's losses: volume MSE + integral L1).
No image is rendered and network 1 never runs, so it trains on the CPU in
minutes. Poses: the embedded motion stream's training subjects
(zoo.data.motion.poses), or with --motion a VideoPose3D-style Human3.6M
archive (zoo.data.h36m.load_motion_npz; training subjects S1 S5 S6 S7 S8).

Writes DIR/model.weights.h5 + DIR/manifest.json (trainers.checkpoints.
write_final), loadable with zoo.load('decoupled_volumetric', checkpoint=DIR)
and zoo.lift --checkpoint=DIR; the bundled one lives in
zoo/checkpoints/lift/decoupled_volumetric (zoo.lift_lib.LIFT_CHECKPOINT_DIR).
The manifest's metrics: MPJPE / PA-MPJPE on held-out poses (the test
subjects) from the true 2D and from the training noise.

--fit_prior fits Lifting from the Deep's pose prior on the same motion
instead (`fit_prior`; lifting_deep's cpu preset sizes), for
`python -m zoo.lift --model=lifting_deep --prior=PRIOR.npz`.
"""
from __future__ import annotations

import os
import shlex
import sys
import time
from typing import Sequence

from absl import app
from absl import flags
from absl import logging
import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from trainers import checkpoints
from zoo import cli
from zoo import config as config_lib
from zoo import geometry
from zoo import inference
from zoo import lift_lib
from zoo import optimizers
from zoo import registry
from zoo import weights as weights_lib
from zoo.c2f_volumetric import targets as targets_lib
from zoo.data import h36m
from zoo.data import mocap2d
from zoo.data import motion
from zoo.lifting_deep.prior import PosePrior

MODEL = 'decoupled_volumetric'
PROGRAM = 'python -m trainers.lift_mocap'


def load_poses(split: str, num: int, seed: int,
               motion_file: str | None = None) -> np.ndarray:
  """[N, 17, 3] world mm (z up) of `split`'s subjects (of those a motion
  archive holds; at most `num` poses, drawn at random)."""
  if motion_file:
    wanted = h36m.TRAIN_SUBJECTS if split == 'train' else h36m.TEST_SUBJECTS
    data = h36m.load_motion_npz(motion_file)
    arrays = [a for s in wanted if s in data for a in data[s].values()]
    poses = np.concatenate(arrays) if arrays else np.zeros((0, 17, 3))
    if not len(poses):
      raise ValueError(f'{motion_file} holds no poses of the {split} '
                       f'subjects {list(wanted)}; it has {sorted(data)}')
    rng = np.random.default_rng([seed, 7])
    return poses[rng.choice(len(poses), min(num, len(poses)), replace=False)]
  return motion.poses(num, split, seed)


def crop_batch(model, views: dict[str, np.ndarray]):
  """(heatmaps x, targets y) of a mocap2d.sample_views batch (in-graph)."""
  config = model.config
  size, margin = inference.crop_settings(model)
  crop = lift_lib.keypoint_crop_tf(views['keypoints2d_px'], views['valid'],
                                   views['intrinsics'], size, margin)
  maps = lift_lib.keypoint_heatmaps_tf(crop['keypoints_crop_px'],
                                       views['valid'], config)
  cam = tf.cast(views['joints_cam_mm'], tf.float32)
  rel = geometry.root_relative_tf(cam)
  rel_crop = tf.einsum('bij,bnj->bni', crop['rotation'], rel)
  true_crop_px = geometry.apply_homography_tf(
      crop['homography'], tf.cast(views['joints2d_px'], tf.float32))
  ones = tf.ones_like(rel[..., 0])
  batch = tf.shape(rel)[0]
  _, y = targets_lib.make_targets(
      {'image': tf.zeros([batch, 1, 1, 3]), 'intrinsics': crop['intrinsics'],
       'joints2d_px': true_crop_px, 'joints3d_rel_mm': rel_crop,
       'joint_valid_2d': ones, 'joint_valid_3d': ones}, config)
  return maps, y


def train(out_dir: str, preset: str = 'lift', steps: int | None = None,
          seed: int = 0, motion_file: str | None = None,
          num_poses: int | None = None, num_test: int = 1000,
          progress: bool = True, command: str | None = None) -> dict:
  """Trains network 2; writes OUT/model.weights.h5 + manifest. Returns it."""
  entry = registry.get(MODEL)
  config = entry.config(preset)
  if config.train_mode != 'network2_mocap':
    config = config_lib.replace(config, train_mode='network2_mocap')
  steps = config.train.steps if steps is None else int(steps)
  if steps < 1:
    raise ValueError(f'steps must be >= 1, got {steps}')
  num_poses = num_poses or config.train.num_train_examples
  batch_size = config.train.batch_size
  tf.keras.utils.set_random_seed(seed)
  model = weights_lib.build_model(entry, config)
  poses = load_poses('train', num_poses, seed, motion_file)
  test_poses = load_poses('test', num_test, seed, motion_file)
  logging.info('Training network 2 of %s (preset %s) on %d motion-capture '
               'poses%s for %d steps of %d.', MODEL, preset, len(poses),
               f' from {motion_file}' if motion_file else '', steps,
               batch_size)
  if config.train.lr_schedule == 'cosine':
    lr = keras.optimizers.schedules.CosineDecay(config.train.learning_rate,
                                                steps)
  else:
    lr = config.train.learning_rate
  optimizer = optimizers.Adam(lr)
  variables = model.trainable_variables

  @tf.function
  def step(views):
    maps, y = crop_batch(model, views)
    with tf.GradientTape() as tape:
      out = model.network2(maps, training=True)
      loss = model.compute_loss(y=y, y_pred=out)
    grads = tape.gradient(loss, variables)
    optimizer.apply_gradients(zip(grads, variables))
    return loss

  rng = np.random.default_rng([seed, 0x7A1])
  noise = mocap2d.DetectorNoise()
  started = time.time()
  bar = tqdm(range(steps), desc='network 2 on mocap', disable=not progress)
  losses = []
  for i in bar:
    batch = poses[rng.integers(0, len(poses), batch_size)]
    views = mocap2d.sample_views(rng, batch, noise)
    loss = float(step({k: tf.constant(v) for k, v in views.items()}))
    if not np.isfinite(loss):
      raise FloatingPointError(f'loss became {loss} at step {i}; nothing '
                               'was saved')
    losses.append(loss)
    if (i + 1) % config.train.log_every == 0:
      mean = float(np.mean(losses[-config.train.log_every:]))
      bar.set_postfix(loss=f'{mean:.4f}')
      logging.info('step %d: loss %.4f', i + 1, mean)
  train_s = time.time() - started
  lifter = lift_lib.Lifter(MODEL, keras_model=model)
  evaluation = {
      'true_2d': lift_lib.evaluate_on_mocap(lifter, test_poses, seed,
                          mocap2d.DetectorNoise.none()),
      'training_noise': lift_lib.evaluate_on_mocap(lifter, test_poses, seed,
                                                   noise)}
  logging.info('Held-out poses (%d): %s', len(test_poses), evaluation)
  manifest = {
      'model': MODEL, 'preset': preset, 'config': config_lib.to_dict(config),
      'command': command or shlex.join([*PROGRAM.split(), *sys.argv[1:]]),
      'steps': steps, 'seed': seed,
      'data': {'motion': motion_file or 'zoo.data.motion (embedded stream, '
                                        'train subjects)',
               'num_poses': int(len(poses)),
               'noise': 'zoo.data.mocap2d.DetectorNoise() defaults'},
      'train_seconds': round(train_s, 1),
      'final_loss': float(np.mean(losses[-50:])),
      'versions': {'tensorflow': tf.__version__, 'keras': keras.__version__},
      'metrics': {'held_out_poses': int(len(test_poses)), **{
          f'{cond}_{k}': round(v, 2) for cond, vals in evaluation.items()
          for k, v in vals.items()}},
  }
  os.makedirs(out_dir, exist_ok=True)
  return checkpoints.write_final(out_dir, model, manifest)


def fit_prior(out_path: str, motion_file: str | None = None,
              num_poses: int | None = None, preset: str = 'cpu', seed: int = 0,
              num_test: int = 1000, progress: bool = True) -> dict:
  """Fits Lifting from the Deep's pose prior (lifting_deep `preset`'s
  components, bases, angles and 2D noise) on the training subjects' motion;
  saves it to out_path (PosePrior.save, .npz) for `zoo.lift
  --model=lifting_deep --prior=PATH`. Returns held-out metrics."""
  config = registry.get('lifting_deep').config(preset)
  poses = load_poses('train', num_poses or config.prior_num_poses, seed,
                     motion_file)
  logging.info('Fitting the pose prior (%d x %d) on %d poses%s.',
               config.num_components, config.num_basis, len(poses),
               f' from {motion_file}' if motion_file else '')
  prior = PosePrior.fit(poses, config.num_components, config.num_basis,
                        seed=seed, em_iterations=config.prior_em_iterations,
                        num_angles=config.num_angles,
                        lift_noise=config.lift_noise, progress=progress)
  directory = os.path.dirname(os.path.abspath(out_path))
  os.makedirs(directory, exist_ok=True)
  prior.save(out_path)
  lifter = lift_lib.Lifter('lifting_deep', prior_path=out_path)
  test_poses = load_poses('test', num_test, seed, motion_file)
  return {cond: lift_lib.evaluate_on_mocap(lifter, test_poses, seed, noise)
          for cond, noise in (('true_2d', None),
                              ('training_noise', mocap2d.DetectorNoise()))}


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------


def define_flags(flag_values: flags.FlagValues) -> None:
  """The command line's flags (zoo.cli: defined only to run the program)."""
  fv = {'flag_values': flag_values}
  flags.DEFINE_string('out', None, 'output directory (model.weights.h5 + '
                      'manifest.json); required unless --fit_prior', **fv)
  flags.DEFINE_string('preset', 'lift', 'decoupled_volumetric preset', **fv)
  flags.DEFINE_integer('steps', None, 'training steps (default: the preset)',
                       **fv)
  flags.DEFINE_integer('seed', 0, 'random seed (poses, cameras, noise, '
                       'init)', **fv)
  flags.DEFINE_string('motion', None, 'a VideoPose3D-style Human3.6M motion '
                      'archive (.npz with positions_3d) instead of the '
                      'embedded motion stream', **fv)
  flags.DEFINE_integer('num_poses', None, 'training poses (default: the '
                       "preset's num_train_examples)", **fv)
  flags.DEFINE_integer('num_test', 1000, 'held-out poses for the metrics',
                       **fv)
  flags.DEFINE_boolean('progress', True, 'show a progress bar', **fv)
  flags.DEFINE_string('fit_prior', None, 'instead of training network 2, fit '
                      "lifting_deep's pose prior on the motion and save it "
                      'to this .npz (for zoo.lift --prior)', **fv)


def run(args: flags.FlagValues, argv: Sequence[str] = ()) -> int:
  """Trains or fits as the flags say: 0, or 2 on bad input."""
  if not args.fit_prior and not args.out:
    raise app.UsageError('--out=DIR is required (or --fit_prior=PATH)')
  try:
    if args.fit_prior:
      print(fit_prior(args.fit_prior, args.motion, args.num_poses,
                      seed=args.seed, num_test=args.num_test,
                      progress=args.progress))
      return 0
    manifest = train(args.out, args.preset, args.steps, args.seed,
                     args.motion, args.num_poses, args.num_test,
                     args.progress,
                     command=shlex.join([*PROGRAM.split(), *argv]))
  except (ValueError, KeyError, OSError) as e:
    return cli.bad_input(e)
  print(manifest['metrics'])
  return 0


def main(argv: Sequence[str]) -> int:
  """The program on `argv` (flags only), in this process."""
  return cli.call(define_flags, run, argv, PROGRAM)


if __name__ == '__main__':
  cli.run_program(define_flags, run)
