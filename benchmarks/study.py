"""The study: every zoo model at one preset and one training budget on the
embedded data, evaluated side by side, and the papers' comparative claims
checked against those numbers. Writes STUDY.md, study.json and study.png.

What it does, per model (every registered model plus the study-only
pseudo-models below, or those named by --models):
1. finds a finished run (a workdir with metrics.json) under --reuse_root
   (DIR/<model> or DIR/<model>_<preset>) or --workdir_root, or trains one
   into --workdir_root/<model> with trainers.train_lib.train for the budget:
   --steps (default: the c2f_volumetric preset's train.steps, 2500 at `cpu`)
   or --seconds of training after the first (tracing) step (stopping at
   --steps, else at the model's own preset steps, if that comes first);
2. loads the run's weights and evaluates the test split again with this
   code (MPJPE, PA-MPJPE, PCK3D@150, AUC, per action, 2D error): a reused
   run may predate a change of decoding, so its own metrics.json figure is
   shown beside it ("at training"); the training speed comes from the
   run's metrics.json;
3. loads the run's weights and evaluates again on deliberately truncated
   crops: the same test split cropped with augment.box_margin =
   --truncation_margin (default 0.8, vs 1.2 normally), so limbs leave the
   crop. MPJPE on the joints outside the crop is computed for every model
   from its poses and the pipeline's `joint_in_crop` (models that report
   their own `mpjpe_truncated_mm` through extra_metrics keep it too);
4. measures inference speed: examples/s of `predict_poses` at batch
   --speed_batch (32) on the CPU, on real test crops, after warm-up.

Pseudo-models are registered models trained with config overrides, so a
paper's ablation can be run at the same budget:
- lifting_deep_nofusion: lifting_deep with fusion=false (a plain CPM whose
  final maps are lifted once), for Tome et al.'s fusion claim;
- volumetric_single: c2f_volumetric with one hourglass predicting the full
  volume, the volumetric row of Pavlakos et al.'s Table 1 (one hourglass, as
  the coordinate_regression baseline).

Then, for each claim this data can test, STUDY.md puts the paper's numbers
(from the papers' tables, quoted in
PAPER_CLAIMS) next to ours and says whether
the claim held here: "held" when the model the paper favours is better by
more than --tie_fraction (2 %) of the other's value, "did not hold" when it
is worse by more, "inconclusive" in between, "not tested" when a run is
missing. Verdicts are computed from the numbers, never written by hand. The
data are synthetic and the budgets small: only the direction of each
comparison is meaningful, not the absolute numbers.

Usage:
  python -m benchmarks.study [--preset=cpu] [--steps=N] [--seconds=S]
      [--models=all|NAME,...] [--workdir_root=runs/study_cpu]
      [--reuse_root=DIR]... [--notrain] [--out_dir=.]
      [--truncation_margin=0.8] [--speed_batch=32] [--seed=0] [--data_seed=0]

Cost: at the cpu preset each model trains for about 15-25 minutes on 2 idle
cores (8 models: 2-3 hours); with finished runs reused, the evaluations and
speed measurements take a few minutes. Tests use --preset=smoke.
"""
from __future__ import annotations

import os
import sys
import types
from typing import Sequence

from absl import flags

from benchmarks.study_claims import BUDGET_MODEL
from benchmarks.study_claims import CHART_FILE
from benchmarks.study_claims import JSON_FILE
from benchmarks.study_claims import PSEUDO_MODELS
from benchmarks.study_claims import REPO_ROOT
from benchmarks.study_claims import STUDY_FILE
from benchmarks.study_runner import run_study
from zoo import cli


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------

PROGRAM = 'python -m benchmarks.study'


def define_flags(flag_values: flags.FlagValues) -> None:
  """The command line's flags (zoo.cli: defined only to run the program)."""
  fv = {'flag_values': flag_values}
  flags.DEFINE_string('preset', 'cpu', 'Preset of every model.', **fv)
  flags.DEFINE_string('models', 'all', 'all, or a comma-separated list of '
                      'registered models and pseudo-models '
                      f'({", ".join(PSEUDO_MODELS)}).', **fv)
  flags.DEFINE_integer('steps', None, 'Training steps of every model '
                       f'(default: the {BUDGET_MODEL} preset\'s '
                       'train.steps).', **fv)
  flags.DEFINE_float('seconds', None, 'Train every model for this many '
                     'seconds instead (stopping earlier at --steps if given, '
                     'else at the model\'s preset steps).', **fv)
  flags.DEFINE_string('workdir_root', None, 'Where runs are trained '
                      '(DIR/<model>; default runs/study_<preset>). Finished '
                      'runs there are reused.', **fv)
  flags.DEFINE_multi_string('reuse_root', [], 'A directory of finished runs '
                            '(DIR/<model> or DIR/<model>_<preset> with '
                            'metrics.json) to use instead of training; may be '
                            'repeated.', **fv)
  flags.DEFINE_boolean('train', True, 'Train models without a finished run '
                       '(--notrain: report them as missing).', **fv)
  flags.DEFINE_string('out_dir', REPO_ROOT, 'Where STUDY.md, study.json and '
                      'study.png go (default: the repository root).', **fv)
  flags.DEFINE_string('data', 'synthetic', 'Training data of new runs: '
                      'synthetic (embedded) or a directory of zoo '
                      'TFRecords.', **fv)
  flags.DEFINE_integer('seed', 0, 'Training seed.', **fv)
  flags.DEFINE_integer('data_seed', 0, 'Synthetic data seed.', **fv)
  flags.DEFINE_float('truncation_margin', 0.8, 'Box margin of the truncated '
                     'test crops (models train and test at 1.2).', **fv)
  flags.DEFINE_integer('speed_batch', 32, 'Batch size of the inference '
                       'speed.', **fv)
  flags.DEFINE_float('speed_seconds', 5., 'Minimum timed seconds of the '
                     'inference speed.', **fv)
  flags.DEFINE_integer('speed_iters', 5, 'Minimum timed batches of the '
                       'inference speed.', **fv)
  flags.DEFINE_float('tie_fraction', 0.02, 'Relative difference below which '
                     'a claim is inconclusive.', **fv)
  flags.DEFINE_boolean('progress', True, 'tqdm progress bars.', **fv)


# The flags run_study reads (the CLI's own; absl adds its logging flags).
_STUDY_FLAGS = ('preset', 'models', 'steps', 'seconds', 'workdir_root',
                'reuse_root', 'train', 'out_dir', 'data', 'seed', 'data_seed',
                'truncation_margin', 'speed_batch', 'speed_seconds',
                'speed_iters', 'tie_fraction', 'progress')


def run(flag_values: flags.FlagValues, argv: Sequence[str] = ()) -> int:
  """Runs the study; prints the verdicts. 2 on bad input."""
  args = types.SimpleNamespace(
      **{name: flag_values[name].value for name in _STUDY_FLAGS})
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  try:
    study = run_study(args, argv)
  except ValueError as e:
    print(f'study.py: error: {e}', file=sys.stderr)
    return 2
  out = os.path.join(args.out_dir, STUDY_FILE)
  print(f'Wrote {out}, {JSON_FILE} and {CHART_FILE} '
        f'({len(study["results"])} models, {len(study["missing"])} missing).')
  for claim in study['claims']:
    print(f'  {claim["status"]:>13}: {claim["title"]}')
  return 0


def main(argv: Sequence[str]) -> int:
  """The program on `argv` (flags only), in this process."""
  return cli.call(define_flags, run, argv, PROGRAM)


if __name__ == '__main__':
  cli.run_program(define_flags, run)
