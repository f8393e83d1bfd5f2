"""The model server's gRPC services (TF Serving's PredictionService and
ModelService, registered from tensorflow_serving.apis *_pb2_grpc) over a
ServerCore (export/serving_core.py): a ServingError becomes the call's status,
any other exception INTERNAL, and no request stops the server.
"""
from __future__ import annotations

from absl import logging
import grpc
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from export.serving_core import ServerCore
from export.serving_core import ServingError


def _grpc_call(method):
  def wrapped(self, request, context):
    try:
      return method(self, request)
    except ServingError as e:
      context.abort(e.code, e.message)
    except Exception as e:  # never let a request kill the server
      logging.exception('Internal error')
      context.abort(grpc.StatusCode.INTERNAL, f'internal error: {e}')
  return wrapped


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):

  def __init__(self, core: ServerCore):
    self.core = core

  @_grpc_call
  def Predict(self, request):  # pylint: disable=invalid-name
    return self.core.predict(request)

  @_grpc_call
  def GetModelMetadata(self, request):  # pylint: disable=invalid-name
    return self.core.metadata(request)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):

  def __init__(self, core: ServerCore):
    self.core = core

  @_grpc_call
  def GetModelStatus(self, request):  # pylint: disable=invalid-name
    return self.core.status(request)
