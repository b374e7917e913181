"""The Effigate Engine gRPC service (``grpc.aio``): servicers translate between the protos in
``proto/effigate/v1`` and the domain operations of :mod:`effigate_engine.service`."""

from effigate_server.app import Server, serve

__all__ = ["Server", "serve"]
