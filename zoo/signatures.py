"""The names an exported model answers to, for the exporter, the server, the
clients and zoo.inference alike. No TensorFlow here (the REST client runs
without it).
"""

# TF Serving's default signature (tf.saved_model's
# DEFAULT_SERVING_SIGNATURE_DEF_KEY): decoded images, boxes, intrinsics.
DEFAULT_SIGNATURE = 'serving_default'
# The same poses from encoded JPEG / PNG bytes.
BYTES_SIGNATURE = 'serving_bytes'
# 2D keypoints -> poses (zoo.lift_lib.lift_decoupled_tf; decoupled_volumetric).
LIFT_SIGNATURE = 'lift'
