"""The study: every zoo model at one preset and one training budget on the
embedded data, trained once per seed, evaluated side by side, and the
papers' comparative claims checked against those numbers. Writes STUDY.md,
study.json and study.png.

What it does, per model (every registered model plus the study-only
pseudo-models below, or those named by --models) and per seed of --seeds
(default 0,1,2; seed by seed, every model at the first seed before any at
the next):
0. takes the run's record, if the study kept one: --results_dir (default
   benchmarks/study_results, in the repository) holds one small JSON file
   per finished run, DIR/<preset>/<budget>/<model>/seed<N>.json (<budget>:
   steps<N>, or seconds<S> for --seconds), with the figures of steps 2-4
   below and the run's metrics.json and config.json. A record stands for
   the run (its weights need not exist on this machine) when it matches
   the model, preset, seed, budget and the config the model trains with
   now, as a run directory must (below); so a study can be completed over
   several machines or days, and a preset change retires the records made
   before it. Every run the study evaluates writes its record (replacing
   a stale one of the same budget); --results_dir= (empty) neither reads
   nor writes records. Otherwise it
1. finds a finished run for that seed and budget under --reuse_root
   (DIR/<model>/seed<N> or DIR/<model>_<preset>/seed<N>; for seed 0 also a
   single-seed run DIR/<model> or DIR/<model>_<preset> that recorded seed
   0, such as a checkpoint trainers.publish bundled: --reuse_root=
   zoo/checkpoints offers the bundled checkpoints as the seed-0 runs, and
   their manifests stand for the run's metrics.json and config.json) or
   under --workdir_root (DIR/<model>/seed<N>, default
   runs/study_<preset>). A run is used only when its metrics.json and
   config.json record the model, the preset, the seed, the budget and the
   config the model trains with now (the preset's, with a pseudo-model's
   overrides; the steps and the checkpoint and log intervals may differ),
   so a run from before a preset change is not counted for the new preset;
   otherwise it trains one into --workdir_root/<model>/seed<N> with
   trainers.train_lib.train, which resumes an unfinished run there from
   its training checkpoints (a run of another config there is kept, and
   the study names it among the missing runs). The
   budget: --steps (default: the c2f_volumetric preset's train.steps) or
   --seconds of training after the first (tracing) step
   (stopping at --steps, else at the model's own preset steps, if that
   comes first);
2. evaluates the test split (MPJPE, PA-MPJPE, PCK3D@150, AUC, per action,
   2D error): a reused run again from its weights with this code, as it
   may predate a change of decoding (its own metrics.json figure is shown
   beside it, "at training"); a run trained now keeps the figures its
   training wrote with the same code. The training speed comes from the
   run's metrics.json;
3. loads the run's weights and evaluates again on deliberately truncated
   crops: the same test split cropped with augment.box_margin =
   --truncation_margin (default 0.8, vs 1.2 normally), so limbs leave the
   crop. MPJPE on the joints outside the crop is computed for every model
   from its poses and the pipeline's `joint_in_crop` (models that report
   their own `mpjpe_truncated_mm` through extra_metrics keep it too);
4. measures inference speed: examples/s of `predict_poses` at batch
   --speed_batch (32) on the CPU, on real test crops, after warm-up.

Tables show each figure as the mean ± the sample standard deviation
(ddof=1) over the seeds (n/a with one seed); study.json keeps every seed's
values ('runs') beside the means and standard deviations; the chart shows
the means with the standard deviations as error bars.

Pseudo-models are registered models trained with config overrides, so a
paper's ablation can be run at the same budget:
- lifting_deep_nofusion: lifting_deep with fusion=false (a plain CPM whose
  final maps are lifted once), for Tome et al.'s fusion claim;
- volumetric_single: c2f_volumetric with one hourglass predicting the full
  volume, the volumetric row of Pavlakos et al.'s Table 1 (one hourglass, as
  the coordinate_regression baseline).

Then, for each claim this data can test, STUDY.md puts the paper's numbers
(from the papers' tables, quoted in PAPER_CLAIMS) next to ours and says
whether the claim held here: "held" when the mean of the model the paper
favours is better by more than twice the larger of the two models' seed
standard deviations, "did not hold" when it is worse by more than that,
"inconclusive" in between, "inconclusive (one seed)" when either model has
a single seed (the spread is unknown), "not tested" when a model has no
run. Verdicts are computed from the numbers, never written by hand. The
data are synthetic and the budgets small: only the direction of each
comparison is meaningful, not the absolute numbers.

Running the same command again reuses the records and finished runs,
resumes the unfinished ones (also after Ctrl-C, which stops the study with
exit status 130) and rewrites the three outputs; with no records and no
runs (--results_dir= and an empty --workdir_root) it regenerates them from
nothing.

Usage:
  python -m benchmarks.study [--preset=cpu] [--seeds=0,1,2] [--steps=N]
      [--seconds=S] [--models=all|NAME,...]
      [--workdir_root=runs/study_cpu] [--results_dir=benchmarks/study_results]
      [--reuse_root=DIR]... [--notrain]
      [--out_dir=.] [--truncation_margin=0.8] [--speed_batch=32]
      [--data_seed=0]

Cost: at the cpu preset and the default budget a run trains for 9-21
minutes on 2 idle cores with bfloat16 (about 100 minutes per seed for the
eight models), so the default 3 seeds x 8 models (24 runs) take five to
six hours of training, more on a loaded machine, and more than twice that
in float32 (lifting_deep: 65-80 minutes a run on 2 AMD EPYC Zen 3 cores);
with finished runs reused, the evaluations and speed measurements take a
few minutes per seed, and with records none. One seed (--seeds=0) takes a
third of that, but all its verdicts are "inconclusive (one seed)". Tests
use --preset=smoke.
"""
from __future__ import annotations

import os
import sys
import types
from typing import Sequence

from absl import flags

from benchmarks import study_records
from benchmarks.study_claims import BUDGET_MODEL
from benchmarks.study_claims import CHART_FILE
from benchmarks.study_claims import JSON_FILE
from benchmarks.study_claims import PSEUDO_MODELS
from benchmarks.study_claims import REPO_ROOT
from benchmarks.study_claims import STATUSES
from benchmarks.study_claims import STUDY_FILE
from benchmarks.study_runner import StudyInterrupted
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
                      '(DIR/<model>/seed<N>; default runs/study_<preset>). '
                      'Finished runs there are reused, unfinished ones '
                      'resumed.', **fv)
  flags.DEFINE_string('results_dir', study_records.RECORDS_ROOT,
                      'Where the study keeps one record per finished run '
                      '(DIR/<preset>/<budget>/<model>/seed<N>.json: its '
                      'figures, metrics.json and config.json), used instead '
                      'of the run when it matches; empty: neither use nor '
                      'write records.', **fv)
  flags.DEFINE_multi_string('reuse_root', [], 'A directory of finished runs '
                            '(DIR/<model>/seed<N> or '
                            'DIR/<model>_<preset>/seed<N> with metrics.json; '
                            'for seed 0 also DIR/<model> or '
                            'DIR/<model>_<preset>, e.g. zoo/checkpoints '
                            'for the bundled checkpoints) to use instead of '
                            'training; may be repeated.', **fv)
  flags.DEFINE_boolean('train', True, 'Train models without a finished run '
                       '(--notrain: report them as missing).', **fv)
  flags.DEFINE_string('out_dir', REPO_ROOT, 'Where STUDY.md, study.json and '
                      'study.png go (default: the repository root).', **fv)
  flags.DEFINE_string('data', 'synthetic', 'Training data of new runs: '
                      'synthetic (embedded) or a directory of zoo '
                      'TFRecords.', **fv)
  flags.DEFINE_list('seeds', ['0', '1', '2'], 'Training seeds (integers, '
                    'comma-separated): every model trains once per seed, '
                    'into DIR/<model>/seed<N>.', **fv)
  flags.DEFINE_integer('data_seed', 0, 'Synthetic data seed.', **fv)
  flags.DEFINE_float('truncation_margin', 0.8, 'Box margin of the truncated '
                     'test crops (models train and test at 1.2).', **fv)
  flags.DEFINE_integer('speed_batch', 32, 'Batch size of the inference '
                       'speed.', **fv)
  flags.DEFINE_float('speed_seconds', 5., 'Minimum timed seconds of the '
                     'inference speed.', **fv)
  flags.DEFINE_integer('speed_iters', 5, 'Minimum timed batches of the '
                       'inference speed.', **fv)
  flags.DEFINE_boolean('progress', True, 'tqdm progress bars.', **fv)


# The flags run_study reads (the CLI's own; absl adds its logging flags).
_STUDY_FLAGS = ('preset', 'models', 'steps', 'seconds', 'workdir_root',
                'results_dir', 'reuse_root', 'train', 'out_dir', 'data',
                'seeds',
                'data_seed', 'truncation_margin', 'speed_batch',
                'speed_seconds', 'speed_iters', 'progress')


def run(flag_values: flags.FlagValues, argv: Sequence[str] = ()) -> int:
  """Runs the study; prints the verdicts. 2 on bad input, 130 when a
  signal stopped training (rerunning the command resumes it)."""
  args = types.SimpleNamespace(
      **{name: flag_values[name].value for name in _STUDY_FLAGS})
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  try:
    study = run_study(args, argv)
  except ValueError as e:
    print(f'study.py: error: {e}', file=sys.stderr)
    return 2
  except StudyInterrupted as e:
    print(f'study.py: {e}', file=sys.stderr)
    return 130
  out = os.path.join(args.out_dir, STUDY_FILE)
  num_runs = sum(len(r['runs']) for r in study['results'].values())
  num_missing = sum(len(m) for m in study['missing'].values())
  print(f'Wrote {out}, {JSON_FILE} and {CHART_FILE} ({num_runs} runs of '
        f'{len(study["results"])} models, {num_missing} runs missing).')
  width = max(len(s) for s in STATUSES)
  for claim in study['claims']:
    print(f'  {claim["status"]:>{width}}: {claim["title"]}')
  return 0


def main(argv: Sequence[str]) -> int:
  """The program on `argv` (flags only), in this process."""
  return cli.call(define_flags, run, argv, PROGRAM)


if __name__ == '__main__':
  cli.run_program(define_flags, run)
