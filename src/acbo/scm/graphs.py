"""Random DAG priors, batched, in topological ("canonical") order.

A graph is a boolean tensor ``A`` of shape ``B x d x d`` with ``A[b, j, k] = True`` iff
``j -> k``. Priors generate graphs whose canonical order is the index order (strictly upper
triangular ``A``); :class:`acbo.scm.SCM` then gives every SCM a random labelling so that a
variable's index says nothing about its place in the order.
"""

from __future__ import annotations

from typing import Callable

import torch

D_MIN, D_MAX = 2, 1000


def check_d(d: int) -> int:
    if isinstance(d, bool) or not isinstance(d, int) or not D_MIN <= d <= D_MAX:
        raise ValueError(f"number of variables d must be an integer in [{D_MIN}, {D_MAX}], got {d!r}")
    return d


def erdos_renyi(generator: torch.Generator, B: int, d: int, expected_degree: float) -> torch.Tensor:
    """B x d x d: each forward edge ``j -> k`` (j < k) present with p = degree / (d - 1)."""
    p = min(1.0, expected_degree / (d - 1))
    device = generator.device
    u = torch.rand(B, d, d, generator=generator, device=device)
    upper = torch.ones(d, d, dtype=torch.bool, device=device).triu(1)
    return (u < p) & upper


def scale_free(generator: torch.Generator, B: int, d: int, expected_degree: float) -> torch.Tensor:
    """B x d x d preferential attachment: node k draws m = round(degree / 2) parents among
    0..k-1 without replacement, with probability proportional to (degree + 1)."""
    device = generator.device
    m = max(1, round(expected_degree / 2))
    A = torch.zeros(B, d, d, dtype=torch.bool, device=device)
    deg = torch.zeros(B, d, device=device)
    for k in range(1, d):  # sequential by construction: attachment depends on earlier degrees
        mk = min(m, k)
        gumbel = -torch.log(-torch.log(torch.rand(B, k, generator=generator, device=device).clamp_min(1e-20)))
        keys = torch.log(deg[:, :k] + 1.0) + gumbel                                  # B x k
        parents = keys.topk(mk, dim=1).indices                                       # B x mk
        A[:, :, k].scatter_(1, parents, True)
        deg[:, :k].scatter_add_(1, parents, torch.ones_like(parents, dtype=deg.dtype))
        deg[:, k] += mk
    return A


def chain(generator: torch.Generator, B: int, d: int, expected_degree: float) -> torch.Tensor:
    """0 -> 1 -> ... -> d-1."""
    A = torch.zeros(d, d, dtype=torch.bool, device=generator.device)
    idx = torch.arange(d - 1, device=generator.device)
    A[idx, idx + 1] = True
    return A.expand(B, d, d).clone()


def fork(generator: torch.Generator, B: int, d: int, expected_degree: float) -> torch.Tensor:
    """A common cause: 0 -> k for every k > 0."""
    A = torch.zeros(d, d, dtype=torch.bool, device=generator.device)
    A[0, 1:] = True
    return A.expand(B, d, d).clone()


def collider(generator: torch.Generator, B: int, d: int, expected_degree: float) -> torch.Tensor:
    """A common effect: k -> d-1 for every k < d-1."""
    A = torch.zeros(d, d, dtype=torch.bool, device=generator.device)
    A[:-1, -1] = True
    return A.expand(B, d, d).clone()


def dense(generator: torch.Generator, B: int, d: int, expected_degree: float) -> torch.Tensor:
    """B x d x d small dense graphs: every forward edge present with p ~ U(0.5, 0.9), one p per
    graph (``expected_degree`` is not used: these graphs are as dense as they come)."""
    device = generator.device
    p = 0.5 + 0.4 * torch.rand(B, 1, 1, generator=generator, device=device)
    u = torch.rand(B, d, d, generator=generator, device=device)
    upper = torch.ones(d, d, dtype=torch.bool, device=device).triu(1)
    return (u < p) & upper


DENSE_MAX_D = 7
"""Families draw dense graphs with at most this many variables (d is clipped)."""

GRAPH_PRIORS: dict[str, Callable[[torch.Generator, int, int, float], torch.Tensor]] = {
    "er": erdos_renyi,
    "sf": scale_free,
    "chain": chain,
    "fork": fork,
    "collider": collider,
    "dense": dense,
}


def sample_graph(kind: str, generator: torch.Generator, B: int, d: int, expected_degree: float) -> torch.Tensor:
    """B x d x d canonical-order DAGs from the prior ``kind``."""
    if kind not in GRAPH_PRIORS:
        raise ValueError(f"unknown graph prior {kind!r}; known: {sorted(GRAPH_PRIORS)}")
    check_d(d)
    if not expected_degree > 0:
        raise ValueError(f"expected_degree must be > 0, got {expected_degree!r}")
    return GRAPH_PRIORS[kind](generator, B, d, expected_degree)


TARGET_RULES = ("any", "sink", "sink2")


def pick_target(generator: torch.Generator, A: torch.Tensor, rule: str = "any") -> tuple[torch.Tensor, torch.Tensor]:
    """Choose Y uniformly among the nodes that have at least one parent (``rule="any"``: so Y is
    not always a sink) or among those that also have no child (``rule="sink"``: the outcome is a
    sink, the usual CBO setting, where Y's Markov blanket is its parents), or ``rule="sink2"``:
    among the sinks with two or more parents where the graph has one, else among the nodes with
    two or more parents, else as ``sink`` (problems whose optimum may need two variables set). Graphs with no edge get one edge
    ``j -> k`` (j < k, uniform) and Y = k. Every rule draws the same random numbers.

    A: B x d x d canonical DAGs. Returns (A with any added edges, target canonical index: B).
    """
    if rule not in TARGET_RULES:
        raise ValueError(f"unknown target rule {rule!r}; known: {TARGET_RULES}")
    B, d, _ = A.shape
    device = A.device
    has_parent = A.any(dim=1)                                                   # B x d
    empty = ~has_parent.any(dim=1)                                              # B
    if empty.any():
        k = torch.randint(1, d, (B,), generator=generator, device=device)
        j = (torch.rand(B, generator=generator, device=device) * k).long()
        rows = torch.nonzero(empty).squeeze(1)
        A = A.clone()
        A[rows, j[rows], k[rows]] = True
        has_parent = A.any(dim=1)
    eligible = has_parent & ~A.any(dim=2) if rule in ("sink", "sink2") else has_parent  # a DAG with an edge has a sink with a parent
    if rule == "sink2":
        two = A.sum(dim=1) >= 2                                                 # B x d
        for wider in (two, two & eligible):  # the narrowest rule some node meets wins
            eligible = torch.where(wider.any(dim=1, keepdim=True), wider, eligible)
    score = torch.rand(B, d, generator=generator, device=device).masked_fill(~eligible, -1.0)
    return A, score.argmax(dim=1)


def topological_order(adjacency: torch.Tensor) -> torch.Tensor:
    """A topological order of a single DAG (d x d, ``[j, k]`` = j -> k); ValueError if it has
    a cycle or is malformed."""
    if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1]:
        raise ValueError(f"adjacency must be a square d x d matrix, got shape {tuple(adjacency.shape)}")
    A = adjacency.detach().cpu()
    if A.dtype != torch.bool:
        if not torch.isin(A, torch.tensor([0, 1], dtype=A.dtype)).all():
            raise ValueError("adjacency must contain only 0/1 (or booleans)")
        A = A.bool()
    d = A.shape[0]
    check_d(d)
    if A.diagonal().any():
        raise ValueError(f"adjacency has self-loops at {torch.nonzero(A.diagonal()).flatten().tolist()}")
    indeg = A.sum(0).tolist()
    ready = [k for k in range(d) if indeg[k] == 0]
    order = []
    while ready:
        j = ready.pop(0)
        order.append(j)
        for k in torch.nonzero(A[j]).flatten().tolist():
            indeg[k] -= 1
            if indeg[k] == 0:
                ready.append(k)
    if len(order) < d:
        cyc = sorted(set(range(d)) - set(order))
        raise ValueError(f"adjacency is not acyclic: variables {cyc} lie on or after a cycle")
    return torch.tensor(order)
