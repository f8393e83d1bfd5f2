"""The names an exported model answers to, for the exporter, the server, the
clients and zoo.inference alike. No TensorFlow here (the REST client runs
without it).
"""

# TF Serving's default signature: decoded images, boxes, intrinsics.
DEFAULT_SIGNATURE = 'serving_default'
# The same poses from encoded JPEG / PNG bytes.
BYTES_SIGNATURE = 'serving_bytes'
# 2D keypoints -> poses (zoo.lift_lib.lift_decoupled_tf; decoupled_volumetric).
LIFT_SIGNATURE = 'lift'
# TF Serving's limit on a gRPC message (int32 max), for servers and clients.
MAX_MESSAGE_BYTES = 2 ** 31 - 1
