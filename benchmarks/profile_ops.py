"""The TF profiler's trace of training steps, summarised by op type.

`summarise(logdir, steps)` reads the XSpace file that
`tf.profiler.experimental` wrote and returns milliseconds per step by
category (convolutions and matmuls, normalisation, softmax and reductions,
casts, data movement, the XLA-compiled loss, the optimizer, elementwise and
other) and by op type. Kernel events are named "scope/op_name:OpType";
oneDNN's kernels carry `_Mkl` / `_MklNative` prefixes, which are dropped.
Run the steps with one op at a time (inter-op parallelism 1) so that the
durations add up to the step.
"""
from __future__ import annotations

import collections
import os

# Op types (as the profiler names them, oneDNN's _Mkl prefixes removed) by
# category, for the profile breakdown.
CATEGORIES = (
    ('convolution and matmul', ('Conv2D', 'FusedConv2D', 'Conv2DBackpropInput',
                                'Conv2DBackpropFilter',
                                'Conv2DBackpropFilterWithBias',
                                'DepthwiseConv2dNative', 'MatMul',
                                'BatchMatMulV2', 'FusedMatMul', 'Einsum',
                                'DepthwiseConv2dNativeBackpropInput',
                                'DepthwiseConv2dNativeBackpropFilter')),
    ('normalisation', ('FusedBatchNormV3', 'FusedBatchNormEx',
                       'FusedBatchNormGradV3', 'FusedBatchNormGradEx')),
    ('softmax and reductions', ('Softmax', 'Sum', 'Max', 'Mean', 'Prod',
                                'ArgMax', 'Min', 'SoftmaxGrad')),
    ('casts', ('Cast',)),
    ('data movement', ('Transpose', 'Tile', 'ConcatV2', 'Pack', 'Reshape',
                       'GatherV2', 'StridedSlice', 'StridedSliceGrad',
                       'BroadcastTo', 'Slice', 'Pad', 'MaxPool',
                       'MaxPoolGrad', 'ResizeNearestNeighbor',
                       'ResizeNearestNeighborGrad')),
)
# Executor and XLA runtime events that contain kernels rather than being one.
_WRAPPERS = frozenset({'Run', 'Process', 'Start', 'Done', 'Await',
                       'ExecuteAsyncOnStream', 'Execute'})




def category(op_type: str) -> str:
  """The category of a profiler op type (oneDNN prefixes dropped)."""
  if op_type.startswith('_Mkl'):
    op_type = op_type[len('_Mkl'):]
  if op_type.startswith('Native'):
    op_type = op_type[len('Native'):]
  for name, types in CATEGORIES:
    if op_type in types:
      return name
  return 'elementwise and other'


def summarise(logdir: str, steps: int) -> tuple[dict, dict]:
  """({category: ms per step}, {op type: ms per step}) of a trace."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2
  path = None
  for root, _, files in os.walk(logdir):
    for name in files:
      if name.endswith('.xplane.pb'):
        path = os.path.join(root, name)
  if path is None:
    raise FileNotFoundError(f'no .xplane.pb trace under {logdir}')
  space = xplane_pb2.XSpace()
  with open(path, 'rb') as f:
    space.ParseFromString(f.read())
  by_category = collections.Counter()
  by_op = collections.Counter()
  for plane in space.planes:
    if not plane.name.startswith('/host:CPU'):
      continue
    for line in plane.lines:
      for event in line.events:
        name = plane.event_metadata[event.metadata_id].name
        op_type = name.rsplit(':', 1)[-1]
        ms = event.duration_ps / 1e9 / steps
        if op_type == 'Execute':  # an XLA cluster: the compiled loss
          by_category['XLA-compiled loss'] += ms
        elif ':' in name and op_type not in _WRAPPERS and not \
            op_type.strip().startswith('__'):
          kind = category(op_type)
          if kind == 'elementwise and other' and '/adam/' in name.lower():
            kind = 'optimizer'
          by_category[kind] += ms
          by_op[op_type] += ms
  return dict(by_category), dict(by_op.most_common(12))
