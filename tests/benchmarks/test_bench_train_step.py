"""Tests for benchmarks/bench_train_step.py: one tiny run per precision (of
lifting_deep, the smoke model that compiles fastest: what is checked is the
benchmark's bookkeeping, which is the same for every model)."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def test_reports_speed_and_peak_memory_per_precision(tmp_path):
  out = tmp_path / 'rows.json'
  proc = subprocess.run(
      [sys.executable, '-m', 'benchmarks.bench_train_step',
       '--models=lifting_deep', '--preset=smoke',
       '--precisions=float32,mixed_bfloat16', '--steps=6', '--warmup_steps=2',
       f'--out={out}'],
      cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = json.loads(out.read_text())['rows']
  assert [r['precision'] for r in rows] == ['float32', 'mixed_bfloat16']
  for row in rows:
    assert row['model'] == 'lifting_deep' and row['batch_size'] == 2
    assert row['timed_steps'] == 4     # steps 3-6, after the 2 warm-up steps
    assert row['examples_per_second'] > 0
    assert row['cpu_seconds_per_step'] > 0
    # A TF process holds at least its runtime; a figure in KiB would be ~1e6.
    assert 100 < row['peak_rss_mib'] < 20_000
    # The start-up (tracing included) takes longer than a steady step.
    step_seconds = row['batch_size'] / row['examples_per_second']
    assert row['startup_seconds'] > step_seconds
    assert row['startup_cpu_seconds'] > row['cpu_seconds_per_step']
  assert 'peak RSS' in proc.stdout and 'start-up' in proc.stdout


def test_settings_run_side_by_side_with_their_overrides(tmp_path):
  out = tmp_path / 'rows.json'
  proc = subprocess.run(
      [sys.executable, '-m', 'benchmarks.bench_train_step',
       '--models=lifting_deep', '--preset=smoke', '--precisions=float32',
       '--setting=preset:', '--setting=b4:train.batch_size=4',
       '--steps=4', '--warmup_steps=1', f'--out={out}'],
      cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = json.loads(out.read_text())['rows']
  assert [(r['setting'], r['batch_size']) for r in rows] == [
      ('preset', 2), ('b4', 4)]
  assert rows[1]['overrides'] == 'train.batch_size=4'


def test_a_setting_without_a_label_is_refused():
  # In a subprocess: the benchmark defines its flags on absl's global FLAGS
  # when imported, which other modules of a test worker also use.
  proc = subprocess.run(
      [sys.executable, '-m', 'benchmarks.bench_train_step',
       '--models=lifting_deep', '--preset=smoke',
       '--setting=depth_schedule=(1,16)'],
      cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode != 0
  assert 'expected LABEL:key=value' in proc.stderr
