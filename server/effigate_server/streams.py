"""Client streams of Arrow chunks (the bulk ingest calls of TicketService and TimeLogService)
gathered into one table, and the summary an ingest answers with."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pyarrow as pa

from effigate.v1 import common_pb2
from effigate_engine.errors import EffigateError
from effigate_engine.instants import ARROW_INPUT_ERRORS
from effigate_engine.service import IngestResult
from effigate_server.convert import read_ipc

#: Rejected rows listed in an ingest summary; ``IngestSummary.rejected`` counts them all.
MAX_LISTED_ROWS = 10_000


async def gather_stream(chunks: AsyncIterator[common_pb2.ArrowChunk]) -> tuple[pa.Table, bool]:
    """Every chunk of a client stream as one table (one batch), and whether the first chunk
    asked to skip invalid rows (``skip_invalid_rows``) instead of refusing the batch."""
    tables = []
    skip = False
    position = 0
    async for chunk in chunks:
        if position == 0:
            skip = chunk.skip_invalid_rows
        tables.append(read_ipc(f"chunk[{position}].arrow_ipc", chunk.arrow_ipc))
        position += 1
    if not tables:
        raise EffigateError("stream: carried no chunk")
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except ARROW_INPUT_ERRORS as exc:
        raise EffigateError(
            f"chunk[1..{len(tables) - 1}].arrow_ipc: the chunks' columns do not agree ({exc})"
        ) from exc
    return table, skip


def ingest_summary(result: IngestResult) -> common_pb2.IngestSummary:
    """The summary of an ingest, with the first :data:`MAX_LISTED_ROWS` rows set aside."""
    rejected = result.rejected
    return common_pb2.IngestSummary(
        received=result.received,
        inserted=result.inserted,
        updated=result.updated,
        unchanged=result.unchanged,
        rejected=rejected.num_rows,
        rejected_rows=[
            common_pb2.RowError(
                row=r["row"], id=r["id"] or "", field=r["field"], message=r["message"]
            )
            for r in rejected.slice(0, MAX_LISTED_ROWS).to_pylist()
        ],
    )
