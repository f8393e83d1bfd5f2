"""`python -m export.serve` as a child process, for the serving benchmarks.

The server writes its ports (`--port_file`, JSON {"grpc": ..., "rest": ...})
once it answers; `start_server` waits for that file, with a deadline, and
says what the server printed when it does not start.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_TIMEOUT_S = 900.


def start_server(base: str, log_path: str, *, rest_api_port: int = 0,
                 poll_seconds: float = 0.,
                 timeout_s: float = START_TIMEOUT_S
                 ) -> tuple[subprocess.Popen, dict[str, int]]:
  """Starts export.serve on the models under `base` on free local ports.

  Args:
    base: the --model_base_path (a model's directory of versions).
    log_path: where the server's output goes; its ports file goes next to it.
    rest_api_port: export.serve's: 0 for no REST API (as TF Serving), -1
      for a free port.
    poll_seconds: --file_system_poll_wait_seconds (0: load once).
    timeout_s: how long to wait for the server to answer.

  Returns:
    (the process, {'grpc': port, 'rest': port or None}).

  Raises:
    RuntimeError: the server exited or did not start in time (with the end
      of its log).
  """
  port_file = os.path.join(os.path.dirname(log_path), 'ports.json')
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='2')
  with open(log_path, 'w') as log:
    process = subprocess.Popen(
        [sys.executable, '-m', 'export.serve', f'--model_base_path={base}',
         '--port=0', f'--rest_api_port={rest_api_port}',
         f'--port_file={port_file}',
         f'--file_system_poll_wait_seconds={poll_seconds:g}'],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
  deadline = time.time() + timeout_s
  while not os.path.exists(port_file):
    if process.poll() is not None or time.time() > deadline:
      process.kill()
      with open(log_path) as f:
        raise RuntimeError(f'export.serve did not start:\n{f.read()[-3000:]}')
    time.sleep(0.2)
  with open(port_file) as f:
    return process, json.load(f)
