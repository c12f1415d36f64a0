"""A version's lineage: its ancestors and descendants, each as a tree.

Edges are read one generation at a time (one query per level, not per node) and
the trees are built in memory. Lineage is acyclic by construction (a parent must
exist before its child), but the walk still refuses to revisit a node on its own
path and stops at MAX_DEPTH, so a damaged database cannot make it loop.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from aiaas.registry.records import Lineage, LineageNode, VersionRef
from aiaas.registry.schema import ModelRow, ParentRow, VersionRow

MAX_DEPTH = 64

#: node id -> [(linked node id or None if deleted, its ref)]
Edges = dict[int, list[tuple[int | None, VersionRef]]]


def build_lineage(session: Session, root: VersionRow) -> Lineage:
    parents = _parent_edges(session, root.id)
    children = _child_edges(session, root.id)
    return Lineage(
        version=VersionRef(root.model.name, root.version),
        ancestors=_trees(root.id, parents, (root.id,)),
        descendants=_trees(root.id, children, (root.id,)),
    )


def _parent_edges(session: Session, root_id: int) -> Edges:
    edges: Edges = defaultdict(list)
    frontier, seen = {root_id}, {root_id}
    for _ in range(MAX_DEPTH):
        if not frontier:
            break
        rows = session.execute(
            select(
                ParentRow.child_id,
                ParentRow.parent_id,
                ParentRow.parent_name,
                ParentRow.parent_version,
            )
            .where(ParentRow.child_id.in_(frontier))
            .order_by(ParentRow.child_id, ParentRow.position)
        )
        frontier = set()
        for child_id, parent_id, name, version in rows:
            edges[child_id].append((parent_id, VersionRef(name, version)))
            if parent_id is not None and parent_id not in seen:
                seen.add(parent_id)
                frontier.add(parent_id)
    return edges


def _child_edges(session: Session, root_id: int) -> Edges:
    edges: Edges = defaultdict(list)
    frontier, seen = {root_id}, {root_id}
    for _ in range(MAX_DEPTH):
        if not frontier:
            break
        rows = session.execute(
            select(ParentRow.parent_id, VersionRow.id, ModelRow.name, VersionRow.version)
            .join(VersionRow, ParentRow.child_id == VersionRow.id)
            .join(ModelRow, VersionRow.model_id == ModelRow.id)
            .where(ParentRow.parent_id.in_(frontier))
            .order_by(ModelRow.name, VersionRow.version)
        )
        frontier = set()
        for parent_id, child_id, name, version in rows:
            assert parent_id is not None  # selected by parent_id IN (...)
            edges[parent_id].append((child_id, VersionRef(name, version)))
            if child_id not in seen:
                seen.add(child_id)
                frontier.add(child_id)
    return edges


def _trees(node_id: int, edges: Edges, path: tuple[int, ...]) -> tuple[LineageNode, ...]:
    nodes = []
    for linked_id, ref in edges.get(node_id, []):
        if linked_id is None:
            nodes.append(LineageNode(ref, exists=False))
        elif linked_id in path or len(path) > MAX_DEPTH:
            nodes.append(LineageNode(ref, exists=True))
        else:
            nodes.append(LineageNode(ref, True, _trees(linked_id, edges, (*path, linked_id))))
    return tuple(nodes)
