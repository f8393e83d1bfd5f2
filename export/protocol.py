"""TF Serving's limits that the development server (export.serve) and the
clients (export.client) share. Imports nothing: the server runs without the
zoo and the REST client without TensorFlow.
"""

# TF Serving's limit on a gRPC message (int32 max).
MAX_MESSAGE_BYTES = 2 ** 31 - 1
