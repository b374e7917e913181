"""The HTTP side of the service: the Connect (HTTP/JSON) API, the operations dashboard and the
client portal, one ASGI application served beside the gRPC port by the same process."""
