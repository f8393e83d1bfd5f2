"""Test-session setup shared by every test.

- Quiet TensorFlow's C++ logs.
- Point the zoo's dataset/prior cache at a per-session temporary directory so
  tests never read or pollute a user's ~/.cache/pose3d_zoo.
"""
import os
import tempfile

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('POSE3D_ZOO_CACHE',
                      tempfile.mkdtemp(prefix='pose3d_zoo_test_cache_'))
