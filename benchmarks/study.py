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
      [--reuse_root=DIR]... [--no_train] [--out_dir=.]
      [--truncation_margin=0.8] [--speed_batch=32] [--seed=0] [--data_seed=0]

Cost: at the cpu preset each model trains for about 15-25 minutes on 2 idle
cores (8 models: 2-3 hours); with finished runs reused, the evaluations and
speed measurements take a few minutes. Tests use --preset=smoke.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from benchmarks.study_claims import BUDGET_MODEL
from benchmarks.study_claims import CHART_FILE
from benchmarks.study_claims import JSON_FILE
from benchmarks.study_claims import PSEUDO_MODELS
from benchmarks.study_claims import REPO_ROOT
from benchmarks.study_claims import STUDY_FILE
from benchmarks.study_runner import run_study


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m benchmarks.study',
      description='Train and evaluate every zoo model at one budget; write '
                  'STUDY.md with the papers\' claims checked.')
  parser.add_argument('--preset', default='cpu',
                      help='Preset of every model (default cpu).')
  parser.add_argument('--models', default='all',
                      help='all, or a comma-separated list of registered '
                           'models and pseudo-models '
                           f'({", ".join(PSEUDO_MODELS)}).')
  parser.add_argument('--steps', type=int, default=None,
                      help='Training steps of every model (default: the '
                           f'{BUDGET_MODEL} preset\'s train.steps).')
  parser.add_argument('--seconds', type=float, default=None,
                      help='Train every model for this many seconds instead '
                           '(stopping earlier at --steps if given, else at '
                           'the model\'s preset steps).')
  parser.add_argument('--workdir_root', default=None,
                      help='Where runs are trained (DIR/<model>; default '
                           'runs/study_<preset>). Finished runs there are '
                           'reused.')
  parser.add_argument('--reuse_root', action='append', default=[],
                      help='A directory of finished runs (DIR/<model> or '
                           'DIR/<model>_<preset> with metrics.json) to use '
                           'instead of training; may be repeated.')
  parser.add_argument('--no_train', action='store_true',
                      help='Never train: models without a finished run are '
                           'reported as missing.')
  parser.add_argument('--out_dir', default=REPO_ROOT,
                      help='Where STUDY.md, study.json and study.png go '
                           '(default: the repository root).')
  parser.add_argument('--data', default='synthetic',
                      help='Training data of new runs: synthetic (embedded) '
                           'or a directory of zoo TFRecords.')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--data_seed', type=int, default=0)
  parser.add_argument('--truncation_margin', type=float, default=0.8,
                      help='Box margin of the truncated test crops (models '
                           'train and test at 1.2).')
  parser.add_argument('--speed_batch', type=int, default=32)
  parser.add_argument('--speed_seconds', type=float, default=5.,
                      help='Minimum timed seconds of the inference speed.')
  parser.add_argument('--speed_iters', type=int, default=5,
                      help='Minimum timed batches of the inference speed.')
  parser.add_argument('--tie_fraction', type=float, default=0.02,
                      help='Relative difference below which a claim is '
                           'inconclusive.')
  parser.add_argument('--progress', action=argparse.BooleanOptionalAction,
                      default=True, help='tqdm progress bars.')
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  args = build_parser().parse_args(argv)
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


if __name__ == '__main__':
  sys.exit(main())
