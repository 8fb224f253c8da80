"""Operations of the lineage domain: read the graph around any node.

Edges are written by the operations of the other domains through
:func:`modelyard.core.lineage.record`; this domain only reads them.
"""

from __future__ import annotations

from typing import Literal

from modelyard.core import lineage
from modelyard.core.operations import Context, OperationSet
from modelyard.lineage.schemas import GetLineage, LineageEdge, LineageGraph, LineageNode

ops = OperationSet("lineage")


@ops.operation("GET", "/lineage/{node_type}/{node_id}", permission="lineage.read")
def get_lineage(ctx: Context, req: GetLineage) -> LineageGraph:
    """The graph upstream and/or downstream of a node, up to ``depth`` steps away."""
    directions: list[Literal["upstream", "downstream"]] = (
        ["upstream", "downstream"] if req.direction == "both" else [req.direction]
    )
    root = f"{req.node_type}:{req.node_id}"
    nodes: dict[str, LineageNode] = {}
    edges: dict[int, LineageEdge] = {}
    with ctx.read() as session:
        for direction in directions:
            for row in lineage.traverse(
                session, [(req.node_type, req.node_id)], direction=direction, depth=req.depth
            ):
                src = f"{row.src_type}:{row.src_id}"
                dst = f"{row.dst_type}:{row.dst_id}"
                nodes.setdefault(
                    src, LineageNode(type=row.src_type, id=row.src_id, label=row.src_label)
                )
                nodes.setdefault(
                    dst, LineageNode(type=row.dst_type, id=row.dst_id, label=row.dst_label)
                )
                edges[row.id] = LineageEdge(
                    source=src,
                    target=dst,
                    relation=row.relation,
                    attrs=dict(row.attrs or {}),
                    created_at=row.created_at,
                    created_by=row.created_by,
                )
    if root not in nodes:
        nodes[root] = LineageNode(type=req.node_type, id=req.node_id, label=req.node_id)
    return LineageGraph(root=root, nodes=list(nodes.values()), edges=list(edges.values()))
