"""Tests for benchmarks/bench_roofline.py: a tiny run of every part but the
roof (in subprocesses: the benchmark defines absl flags), on lifting_deep,
the smoke model that compiles fastest (each part builds and compiles the
model in a process of its own)."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def test_steps_profile_and_pipeline_of_a_smoke_model(tmp_path):
  out = tmp_path / 'roofline.json'
  proc = subprocess.run(
      [sys.executable, '-m', 'benchmarks.bench_roofline', '--noroof',
       '--models=lifting_deep', '--preset=smoke', '--steps=2',
       '--warmup_steps=1', '--profile_models=lifting_deep',
       '--pipeline_batches=2', f'--out={out}'],
      cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads(out.read_text())
  paths = [row['path'] for row in results['steps']]
  assert paths == ['fast', 'float32']
  for row in results['steps']:
    assert row['model'] == 'lifting_deep' and row['batch_size'] == 2
    assert row['train_gflop_per_example'] > 0
    assert row['cpu_seconds_per_step'] > 0 and row['examples_per_second'] > 0
  fast = results['steps'][0]
  assert fast['precision'] in ('mixed_bfloat16', 'float32', 'mixed_float16')
  assert results['steps'][1]['precision'] == 'float32'
  assert results['speedup_reference'] == 'float32'
  assert results['speedups']['lifting_deep'] > 0
  (profile,) = results['profiles']
  assert profile['ms_per_step_by_category']['convolution and matmul'] > 0
  (pipeline,) = results['pipelines']
  assert pipeline['cpu_ms_per_example'] > 0
  assert 'Speed-up of the fast path over float32' in proc.stdout
