"""``modelyard lineage <type>:<id> [--upstream|--downstream]``: the graph around a node."""

from __future__ import annotations

from typing import Literal

import typer

from modelyard.cli.common import client, emit, handle_errors, table
from modelyard.errors import InvalidInput
from modelyard.types import NODE_TYPES


@handle_errors
def lineage(
    node: str = typer.Argument(
        ..., help=f"<type>:<id>, type one of {', '.join(NODE_TYPES)} (e.g. run:run-0abc…)"
    ),
    upstream: bool = typer.Option(False, "--upstream", help="Only what the node came from."),
    downstream: bool = typer.Option(False, "--downstream", help="Only what came from it."),
    depth: int = typer.Option(10, min=1, max=50, help="How many steps to follow."),
) -> None:
    """Show the lineage of a dataset version, job, run, artifact, model version or endpoint."""
    node_type, sep, node_id = node.partition(":")
    if not sep or not node_id:
        raise InvalidInput(f"node {node!r} must be <type>:<id>")
    if upstream and downstream:
        raise InvalidInput("choose --upstream or --downstream (or neither, for both)")
    direction: Literal["upstream", "downstream", "both"] = (
        "upstream" if upstream else "downstream" if downstream else "both"
    )
    with client() as c:
        graph = c.lineage(node_type, node_id, direction=direction, depth=depth)
    labels = {f"{n.type}:{n.id}": n.label for n in graph.nodes}
    emit(
        graph,
        lambda: table(
            f"lineage of {graph.root} ({len(graph.edges)} edges)",
            ["from", "relation", "to", "recorded"],
            [
                (
                    f"{labels.get(e.source, e.source)}\n[dim]{e.source}[/dim]",
                    e.relation,
                    f"{labels.get(e.target, e.target)}\n[dim]{e.target}[/dim]",
                    f"{e.created_at:%Y-%m-%d %H:%M:%S} by {e.created_by}",
                )
                for e in graph.edges
            ],
        ),
    )
