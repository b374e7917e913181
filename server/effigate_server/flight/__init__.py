"""Arrow Flight endpoints beside the typed gRPC API, in the same process.

``DoExchange`` evaluates tickets (``evaluate``), ``DoPut`` ingests tickets, ticket events and
time logs, ``DoGet`` exports SLA results, an invoice's lines and the SLA reports. The same
bearer tokens, tenancy, field-naming errors and service-layer functions as the gRPC API; the
protocol is in docs/service.md, *Arrow Flight*.
"""

from effigate_server.flight.server import FlightHost

__all__ = ["FlightHost"]
