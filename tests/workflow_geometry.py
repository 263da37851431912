"""Where the ComfyUI frontend draws a canvas workflow, and checks that it reads well.

The frontend (1.27.10, the one ComfyUI 0.3.64 pins) draws a node's title bar above ``pos``
(TITLE px), its input and output sockets in rows of SLOT px from the top of the body, widgets
below them in rows of WIDGET px, and every link as a cubic Bezier curve that leaves its output
to the right and enters its input from the left (control points ``max(30, distance / 4)`` px
out along the x axis). Links are painted before nodes, so a link that crosses a node is hidden
behind it and seems to come out of the wrong socket.

``tests/test_workflows.py`` applies these checks to the files on disk using the model below;
``tests/test_browser.py`` applies the same checks to the positions the real frontend reports.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

TITLE = 30  # title bar height, drawn above the node's pos
SLOT = 20  # socket row height
WIDGET = 24  # widget row height incl. its gap
WIDGET_TOP = 6  # gap between the last socket row and the first widget
GROUP_TITLE = 34  # group title bar (font 24 x 1.4)
GROUP_PAD = 10


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float

    def contains(self, px: float, py: float) -> bool:
        return self.x < px < self.x + self.w and self.y < py < self.y + self.h

    def inside(self, other: Box) -> bool:
        return (other.x <= self.x and other.y <= self.y and self.x + self.w <= other.x + other.w
                and self.y + self.h <= other.y + other.h)

    def overlaps(self, other: Box, gap: float = 0.0) -> bool:
        return not (self.x + self.w + gap <= other.x or other.x + other.w + gap <= self.x
                    or self.y + self.h + gap <= other.y or other.y + other.h + gap <= self.y)


@dataclass(frozen=True)
class Link:
    id: int
    src: int
    dst: int
    start: tuple[float, float]  # output socket
    end: tuple[float, float]  # input socket


def node_box(pos: Iterable[float], size: Iterable[float]) -> Box:
    """The area a node covers on the canvas, title bar included."""
    (x, y), (w, h) = pos, size
    return Box(x, y - TITLE, w, h + TITLE)


def output_pos(pos, size, slot: int) -> tuple[float, float]:
    return (pos[0] + size[0] - 9, pos[1] + (slot + 0.7) * SLOT)


def input_pos(pos, slot_row: int) -> tuple[float, float]:
    """Socket of an input drawn as a socket row (not a widget)."""
    return (pos[0] + 10, pos[1] + (slot_row + 0.7) * SLOT)


def widget_input_pos(pos, socket_rows: int, widget_row: int) -> tuple[float, float]:
    """Socket of a widget input: on its widget's row, below ``socket_rows`` socket rows."""
    return (pos[0] + 10, pos[1] + socket_rows * SLOT + WIDGET_TOP + widget_row * WIDGET + 10)


def bezier(start: tuple[float, float], end: tuple[float, float], samples: int = 0) -> list[tuple[float, float]]:
    """Points along the link curve as the frontend draws it (spline mode, the default)."""
    (x0, y0), (x3, y3) = start, end
    reach = max(30.0, math.hypot(x3 - x0, y3 - y0) * 0.25)
    x1, x2 = x0 + reach, x3 - reach
    n = samples or max(32, int(math.hypot(x3 - x0, y3 - y0) / 4))
    out = []
    for i in range(n + 1):
        t = i / n
        u = 1 - t
        out.append((u ** 3 * x0 + 3 * u * u * t * x1 + 3 * u * t * t * x2 + t ** 3 * x3,
                    u ** 3 * y0 + 3 * u * u * t * y0 + 3 * u * t * t * y3 + t ** 3 * y3))
    return out


def links_under_nodes(nodes: dict[int, Box], links: Iterable[Link], clearance: float = 16.0) -> list[str]:
    """Links whose curve passes under a node, or closer to it than ``clearance``: every node but
    the link's own two, and those two anywhere but the socket's own edge (a link that doubles
    back through its source counts)."""
    problems = []
    for link in links:
        hits: set[int] = set()
        for px, py in bezier(link.start, link.end):
            for node_id, box in nodes.items():
                if node_id not in (link.src, link.dst):
                    box = Box(box.x - clearance, box.y - clearance, box.w + 2 * clearance, box.h + 2 * clearance)
                if node_id in hits or not box.contains(px, py):
                    continue
                if node_id == link.src and px >= link.start[0] - 1:
                    continue  # the stub from the output socket to the node's right edge
                if node_id == link.dst and px <= link.end[0] + 1:
                    continue  # the stub from the node's left edge to the input socket
                hits.add(node_id)
        problems += [f"link {link.id} ({link.src} -> {link.dst}) runs under node {n}" for n in sorted(hits)]
    return problems


def layout_problems(nodes: dict[int, Box], links: Iterable[Link], groups: dict[str, tuple[Box, set[int]]],
                    gap: float = 10.0) -> list[str]:
    """Everything that makes a canvas hard to read: links under nodes, links that run right to
    left, overlapping nodes, nodes sticking out of their group or inside a group they do not
    belong to, overlapping groups."""
    links = list(links)
    problems = links_under_nodes(nodes, links)
    for link in links:
        if link.end[0] <= link.start[0]:
            problems.append(f"link {link.id} ({link.src} -> {link.dst}) runs right to left")
    ids = sorted(nodes)
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            if nodes[a].overlaps(nodes[b], gap):
                problems.append(f"nodes {a} and {b} overlap (or are closer than {gap:g} px)")
    titles = sorted(groups)
    for title in titles:
        box, members = groups[title]
        body = Box(box.x, box.y + GROUP_TITLE, box.w, box.h - GROUP_TITLE)
        for node_id, node in nodes.items():
            if node_id in members and not node.inside(body):
                problems.append(f"node {node_id} sticks out of group '{title}'")
            elif node_id not in members and node.overlaps(box):
                problems.append(f"node {node_id} lies on group '{title}' without belonging to it")
    for i, a in enumerate(titles):
        for b in titles[i + 1:]:
            if groups[a][0].overlaps(groups[b][0]):
                problems.append(f"groups '{a}' and '{b}' overlap")
    return problems


def group_box(member_boxes: Iterable[Box]) -> Box:
    """The group rectangle that fits its nodes, as the frontend's 'fit group to nodes' makes it."""
    boxes = list(member_boxes)
    x0 = min(b.x for b in boxes) - GROUP_PAD
    y0 = min(b.y for b in boxes) - GROUP_PAD - GROUP_TITLE
    x1 = max(b.x + b.w for b in boxes) + GROUP_PAD
    y1 = max(b.y + b.h for b in boxes) + GROUP_PAD
    return Box(x0, y0, x1 - x0, y1 - y0)


def from_frontend(graph: dict[str, Any]) -> tuple[dict[int, Box], list[Link], dict[str, tuple[Box, set[int]]]]:
    """The geometry the browser test reads from the live canvas (see comfyui_browser.graph_geometry)."""
    nodes = {n["id"]: Box(*n["bounding"]) for n in graph["nodes"]}
    links = [Link(k["id"], k["src"], k["dst"], tuple(k["start"]), tuple(k["end"])) for k in graph["links"]]
    groups = {g["title"]: (Box(*g["bounding"]), set(g["nodes"])) for g in graph["groups"]}
    return nodes, links, groups
