"""Batched structural causal models: sampling, hard and soft interventions, E[Y | do], y*.

``SCM`` holds B models over d variables. Internally every model lives in its topological
("canonical") order with latent values ``u``; the observed value of a variable is
``x = loc + scale * u`` (its own units), and every model carries a random labelling so that the
label (column) of a variable says nothing about its place in the order. All public inputs and
outputs are in label order and observed units.

Node k (canonical) in model b:

    u_k = f_k(u_pa(k)) + noise_std_k * m_k * eps_k + sum_l conf_kl * e_l,   f_k = (g_k - f_loc_k) / f_scale_k

with g_k the node's mechanism (its *kind*, per node: :mod:`acbo.scm.mechanisms`), standardised
on a pilot sample when the model is drawn (so every mechanism enters with unit-variance signal;
``standardised = False`` models, the classical raw linear SCMs, keep f = g), eps_k zero-mean,
unit-variance noise of the node's own distribution (``noise_kind``; roots: their value's
distribution), m_k the heteroskedastic multiplier (1 unless ``hetero``), and e_l the hidden
confounders: latent standard-normal variables, each with an effect on two observed nodes
(``conf``; none in most families). In models with a ``saturation`` L > 0 (the broad world)
every nonlinear node then saturates softly, u_k = L tanh(u_k / L): nearly the identity in the
observed regime (L = 25 latent std), bounded far outside it, where compositions of cubic and
exponential mechanisms would otherwise overflow. A ``prob`` node is then passed through a sigmoid link,
u_k = sigmoid(link_gain_k u_k + link_bias_k), so it lives in (0, 1). ``lower`` / ``upper`` are
the natural bounds of each variable in observed units (a probability stays in [0, 1], a
log-normal root is positive; +-inf elsewhere).

Sampling loops over the topological order only: at each node the models are grouped by the
node's kind and each group is evaluated batched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch

from acbo.scm import mechanisms as mech
from acbo.scm.graphs import check_d, pick_target, sample_graph, topological_order
from acbo.scm.optimum import Optimum, SetOptimum
from acbo.scm.optimum import optimum as search_optimum
from acbo.scm.optimum import set_optimum as search_set_optimum
from acbo.seeding import generator as make_generator

FORMAT_VERSION = 2
N_MC = 10_000


@dataclass(frozen=True, eq=False)
class SCM:
    """B structural causal models over d variables (see the module docstring).

    Shapes (canonical order unless said): A: B x d x d (``A[b, j, k]`` = j -> k, j < k);
    label: B x d (label of canonical node c); target: B (label index of Y); kind: B x d
    (mechanism code, :data:`acbo.scm.mechanisms.MECHANISMS`); W: B x d x H x d; c, a: B x d x H;
    f_loc, f_scale, noise_std: B x d; noise_kind: B x d (code in ``BASES``); hetero: B x d bool;
    link_gain, link_bias: B x d (gain 0: no link); conf: B x d x L (hidden confounders); loc,
    scale, lower, upper: B x d (observed units); standardised: B bool; saturation: B (0: none);
    mc_seed: B (seeds of the common random numbers used for Monte Carlo expectations).
    """

    A: torch.Tensor
    label: torch.Tensor
    target: torch.Tensor
    kind: torch.Tensor
    W: torch.Tensor
    c: torch.Tensor
    a: torch.Tensor
    f_loc: torch.Tensor
    f_scale: torch.Tensor
    noise_std: torch.Tensor
    noise_kind: torch.Tensor
    hetero: torch.Tensor
    link_gain: torch.Tensor
    link_bias: torch.Tensor
    conf: torch.Tensor
    loc: torch.Tensor
    scale: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor
    standardised: torch.Tensor
    saturation: torch.Tensor
    mc_seed: torch.Tensor

    def __post_init__(self):
        B, d, d2 = self.A.shape
        assert d == d2 and self.label.shape == (B, d) and self.target.shape == (B,)
        assert self.W.shape[:2] == (B, d) and self.W.shape[3] == d and self.kind.shape == (B, d)
        assert self.conf.shape[:2] == (B, d) and self.noise_kind.shape == (B, d)
        kinds = self.kind.tolist()
        if any(k not in range(len(mech.MECHANISMS)) for row in kinds for k in row):
            raise ValueError(f"unknown mechanism codes in {sorted({k for row in kinds for k in row})}")
        groups = []
        for k in range(d):  # per node: the models of each kind (None: all of them)
            col = [row[k] for row in kinds]
            codes = sorted(set(col))
            if len(codes) == 1:
                groups.append([(codes[0], None)])
            else:
                groups.append([(c, torch.tensor([b for b in range(B) if col[b] == c], device=self.A.device))
                               for c in codes])
        bases = self.noise_kind.tolist()
        has_parent = self.A.any(dim=1).tolist()
        saturates = (self.saturation[:, None] > 0) & (self.kind != mech.LINEAR) & self.A.any(dim=1)   # B x d
        cache = {
            "groups": groups,
            "bases": sorted({x for row in bases for x in row}),
            "bases_b": [sorted(set(row)) for row in bases],
            "hetero_any": self.hetero.any(dim=0).tolist(),
            "saturates": saturates,
            "saturates_any": saturates.any(dim=0).tolist(),
            "link_any": (self.link_gain != 0).any(dim=0).tolist(),
            "conf_any": (self.conf != 0).any(dim=2).any(dim=0).tolist() if self.conf.shape[2] else [False] * d,
            "linear": [all(kinds[b][k] == mech.LINEAR for k in range(d) if has_parent[b][k]) for b in range(B)],
            "classic": all(k in (mech.LINEAR, mech.MLP, mech.GP) for row in kinds for k in row),
        }
        object.__setattr__(self, "_cache", cache)

    # ---------------------------------------------------------------- structure
    @property
    def batch_size(self) -> int:
        return self.A.shape[0]

    @property
    def d(self) -> int:
        return self.A.shape[1]

    @property
    def n_latent(self) -> int:
        """Hidden confounders per model."""
        return self.conf.shape[2]

    @property
    def device(self) -> torch.device:
        return self.A.device

    def __len__(self) -> int:
        return self.batch_size

    @property
    def linear(self) -> torch.Tensor:
        """B bool: every mechanism of the model is linear (E[Y | do] exact, y* at domain ends)."""
        return torch.tensor(self._cache["linear"], device=self.device)

    @property
    def mechanism(self) -> str:
        """The mechanism kind of every non-root node of every model, or ``mixed``."""
        has_parent = self.A.any(dim=1)
        codes = sorted(set(self.kind[has_parent].tolist()))
        return mech.MECHANISMS[codes[0]] if len(codes) == 1 else "mixed"

    @property
    def noise(self) -> str:
        """The noise family of every non-root node (gaussian, laplace, hetero, student_t, ...), or ``mixed``."""
        has_parent = self.A.any(dim=1)
        names = {("hetero" if h else mech.BASES[k]) for k, h in zip(self.noise_kind[has_parent].tolist(),
                                                                       self.hetero[has_parent].tolist())}
        return names.pop() if len(names) == 1 else "mixed"

    @property
    def canon(self) -> torch.Tensor:
        """B x d: canonical index of each label."""
        return self.label.argsort(dim=1)

    @property
    def adjacency(self) -> torch.Tensor:
        """B x d x d bool in label space: ``[b, i, j]`` = X_i -> X_j."""
        B, d, _ = self.A.shape
        out = torch.zeros_like(self.A)
        bi = torch.arange(B, device=self.device)[:, None, None]
        out[bi, self.label[:, :, None], self.label[:, None, :]] = self.A
        return out

    def parents(self) -> torch.Tensor:
        """B x d bool: the true (observed) parents of Y, in label space."""
        adj = self.adjacency
        return adj[torch.arange(self.batch_size, device=self.device), :, self.target]

    def ancestors(self) -> torch.Tensor:
        """B x d bool: the ancestors of Y (Y excluded), in label space."""
        adj = self.adjacency.float()
        reach = adj.clone()
        for _ in range(max(1, math.ceil(math.log2(self.d)))):
            reach = ((reach + reach @ reach) > 0).float()
        return reach[torch.arange(self.batch_size, device=self.device), :, self.target] > 0

    def natural_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(lower, upper), B x d in label order and observed units: the values each variable can
        take (+-inf where unbounded)."""
        return self._to_label(self.lower[:, None]).squeeze(1), self._to_label(self.upper[:, None]).squeeze(1)

    def names(self, b: int = 0) -> list[str]:
        """Variable names of model b in label order: ``Y`` for the target, X1, X2, ... else."""
        t = int(self.target[b])
        out, i = [], 1
        for j in range(self.d):
            if j == t:
                out.append("Y")
            else:
                out.append(f"X{i}")
                i += 1
        return out

    # ---------------------------------------------------------------- sampling
    def _to_canon(self, t: torch.Tensor) -> torch.Tensor:
        """B x n x d label order -> canonical order."""
        B, n, d = t.shape
        return torch.gather(t, 2, self.label[:, None, :].expand(B, n, d))

    def _to_label(self, t: torch.Tensor) -> torch.Tensor:
        """B x n x d canonical order -> label order."""
        B, n, d = t.shape
        return torch.gather(t, 2, self.canon[:, None, :].expand(B, n, d))

    def _signal(self, k: int, u: torch.Tensor) -> torch.Tensor:
        """g_k for every model from the latents of the first k nodes (B x n x k): each kind that
        occurs at node k is evaluated on its models only. Returns B x n."""
        groups = self._cache["groups"][k]
        if groups[0][1] is None:  # one kind in every model
            return mech.evaluate(groups[0][0], self.W[:, k, :, :k], self.c[:, k], self.a[:, k], u)
        g = u.new_zeros(u.shape[0], u.shape[1])
        for code, idx in groups:
            g[idx] = mech.evaluate(code, self.W[idx, k, :, :k], self.c[idx, k], self.a[idx, k], u[idx])
        return g

    def _latent(
        self,
        eps: torch.Tensor,
        do_mask: torch.Tensor | None = None,
        do_u: torch.Tensor | None = None,
        shift_u: torch.Tensor | None = None,
        upto: int | None = None,
        skip: torch.Tensor | list | None = None,
        fit: bool = False,
        init: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Propagate noise eps (B x n x (d + L), canonical; the last L columns are the hidden
        confounders) through the equations in canonical order.

        do_mask/do_u/shift_u: B x n x d canonical (hard interventions in latent units, shifts).
        upto: compute nodes 0..upto only; skip: d bools, nodes not to compute (left as in
        ``init``, B x n x d, or at 0). fit: set f_loc/f_scale from this sample (used once, when
        a model is drawn).
        """
        B, n, _ = eps.shape
        d = self.d
        lat = eps[:, :, d:]                                                                 # B x n x L
        cache = self._cache
        has_parent = self.A.any(dim=1)                                                      # B x d
        any_parent = has_parent.any(dim=0).tolist()
        skip = skip.tolist() if isinstance(skip, torch.Tensor) else skip
        u = torch.zeros(B, n, d, dtype=eps.dtype, device=eps.device) if init is None else init
        last = d - 1 if upto is None else upto
        for k in range(last + 1):  # topological order: the one sequential dimension
            if skip is not None and skip[k]:
                continue
            if k > 0 and any_parent[k]:
                g = self._signal(k, u[:, :, :k])                                            # B x n
                if fit:
                    std = g.std(dim=1)
                    self.f_loc[:, k] = torch.where(self.standardised, g.mean(dim=1), torch.zeros_like(std))
                    keep = has_parent[:, k] & (std > 1e-6) & self.standardised
                    self.f_scale[:, k] = torch.where(keep, std, torch.ones_like(std))
                f = (g - self.f_loc[:, k, None]) / self.f_scale[:, k, None]
            else:
                f = torch.zeros_like(eps[:, :, k])
            std = self.noise_std[:, k, None]
            if cache["hetero_any"][k]:
                std = std * torch.where(self.hetero[:, k, None], mech.hetero_multiplier(f), torch.ones_like(f))
            uk = f + std * eps[:, :, k]
            if cache["conf_any"][k]:
                uk = uk + (lat * self.conf[:, k, None, :]).sum(-1)
            if cache["saturates_any"][k]:
                L = self.saturation[:, None].clamp_min(1e-6)
                uk = torch.where(cache["saturates"][:, k, None], L * torch.tanh(uk / L), uk)
            if cache["link_any"][k]:
                gain = self.link_gain[:, k, None]
                uk = torch.where(gain != 0, torch.sigmoid(gain * uk + self.link_bias[:, k, None]), uk)
            if shift_u is not None:
                uk = uk + shift_u[:, :, k]
            if do_mask is not None:
                uk = torch.where(do_mask[:, :, k], do_u[:, :, k], uk)
            u[:, :, k] = uk
        return u

    def _noise(self, generator: torch.Generator, n: int) -> torch.Tensor:
        """B x n x (d + L) canonical noise: each node's own distribution, then the confounders."""
        eps = mech.draw_noise(self._cache["bases"], self.noise_kind, generator, (self.batch_size, n, self.d),
                              self.loc.dtype)
        if self.n_latent:
            lat = torch.randn(self.batch_size, n, self.n_latent, generator=generator, device=self.device,
                              dtype=self.loc.dtype)
            eps = torch.cat([eps, lat], dim=2)
        return eps

    def _prepare_do(self, n: int, do_mask, do_value, shift):
        """Broadcast label-space interventions to B x n x d and move them to canonical latents."""
        B, d = self.batch_size, self.d
        dm = du = su = None
        if do_mask is not None:
            if do_value is None:
                raise ValueError("do_mask given without do_value")
            do_mask = torch.as_tensor(do_mask, device=self.device)
            if do_mask.dtype != torch.bool:
                raise ValueError(f"do_mask must be boolean, got {do_mask.dtype}")
            try:
                do_mask = torch.broadcast_to(do_mask, (B, n, d))
                do_value = torch.broadcast_to(torch.as_tensor(do_value, device=self.device, dtype=self.loc.dtype), (B, n, d))
            except RuntimeError as e:
                raise ValueError(f"interventions must broadcast to (B, n, d) = {(B, n, d)}: {e}") from None
            if not torch.isfinite(torch.where(do_mask, do_value, 0.0)).all():
                raise ValueError("intervention values must be finite")
            dm = self._to_canon(do_mask)
            du = (self._to_canon(do_value) - self.loc[:, None, :]) / self.scale[:, None, :]
        if shift is not None:
            try:
                shift = torch.broadcast_to(torch.as_tensor(shift, device=self.device, dtype=self.loc.dtype), (B, n, d))
            except RuntimeError as e:
                raise ValueError(f"shift must broadcast to (B, n, d) = {(B, n, d)}: {e}") from None
            su = self._to_canon(shift) / self.scale[:, None, :]
        return dm, du, su

    def sample(
        self,
        n: int,
        generator: torch.Generator,
        do_mask: torch.Tensor | None = None,
        do_value: torch.Tensor | None = None,
        shift: torch.Tensor | None = None,
        noise_of: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """B x n x d samples (label order, observed units).

        do_mask (bool) / do_value: hard interventions do(X_S = v), anything broadcastable to
        B x n x d (per model and per sample); shift: soft interventions, added to a variable's
        value before its children see it; noise_of (B indices, optional): model b's samples use
        the noise drawn for model noise_of[b] (common random numbers between copies of one model;
        the models must share their noise distributions).
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"number of samples n must be a positive integer, got {n!r}")
        dm, du, su = self._prepare_do(n, do_mask, do_value, shift)
        eps = self._noise(generator, n)                                                      # B x n x (d + L)
        if noise_of is not None:
            if noise_of.shape != (self.batch_size,) or not bool((self.noise_kind[noise_of] == self.noise_kind).all()):
                raise ValueError(f"noise_of must give each of the {self.batch_size} models a model with the same "
                                 f"noise distributions, got {noise_of.tolist()}")
            eps = eps[noise_of]
        u = self._latent(eps, dm, du, su)
        return self._to_label(self.loc[:, None, :] + self.scale[:, None, :] * u)

    # ---------------------------------------------------------------- expectations
    def _relevant(self) -> tuple[int, torch.Tensor]:
        """Canonical nodes that E[Y] depends on, over the batch: (last index, skip mask d)."""
        t_c = self.canon.gather(1, self.target[:, None]).squeeze(1)                   # B
        anc_c = self._to_canon(self.ancestors()[:, None, :].float()).squeeze(1) > 0   # B x d
        need = anc_c.clone()
        need[torch.arange(self.batch_size, device=self.device), t_c] = True
        return int(t_c.max()), ~need.any(dim=0)

    def _mc_noise(self, n_mc: int) -> torch.Tensor:
        """B x n_mc x (d + L) common random numbers, fixed per model by its mc_seed."""
        out = []
        for b, s in enumerate(self.mc_seed.tolist()):
            g = make_generator("mc", int(s), device=self.device)
            eps = mech.draw_noise(self._cache["bases_b"][b], self.noise_kind[b], g, (n_mc, self.d), self.loc.dtype)
            if self.n_latent:
                eps = torch.cat([eps, torch.randn(n_mc, self.n_latent, generator=g, device=self.device,
                                                  dtype=self.loc.dtype)], dim=1)
            out.append(eps)
        return torch.stack(out)

    def _mc_context(self, n_mc: int) -> dict:
        """What every Monte Carlo expectation of these models shares: the common random numbers
        (eps, B x M x (d + L)), the observational pass over them (base, B x M x d canonical), the
        descendant relation (reach, B x d x d canonical, [i, k]: i ->* k) and the nodes E[Y]
        depends on. Under an intervention only the intervened nodes' descendants move; every
        other node keeps its value in ``base`` (same noise, same parents)."""
        upto, skip = self._relevant()
        eps = self._mc_noise(n_mc)
        base = self._latent(eps, upto=upto, skip=skip)
        reach = self.A.float()
        for _ in range(max(1, math.ceil(math.log2(self.d)))):
            reach = ((reach + reach @ reach) > 0).float()
        return {"eps": eps, "base": base, "reach": reach > 0, "upto": upto, "skip": skip.tolist(),
                "t_c": self.canon.gather(1, self.target[:, None])}

    def _expected_mc(self, do_mask, do_value, K: int, n_mc: int, ctx: dict | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Common-random-number Monte Carlo: (mean, standard error), B x K each. Only the nodes
        downstream of an intervened node (over the batch and the K interventions) are simulated
        again; ``ctx`` (:meth:`_mc_context`) may be given when many calls share it."""
        B, d = self.batch_size, self.d
        ctx = ctx or self._mc_context(n_mc)
        eps, base, t_c, upto = ctx["eps"], ctx["base"], ctx["t_c"], ctx["upto"]
        n_mc, E = eps.shape[1], eps.shape[2]
        dm, du, _ = self._prepare_do(K, do_mask, do_value, None)
        hit = dm.any(dim=1)                                                              # B x d: intervened nodes
        moved = (hit | (hit[:, :, None] & ctx["reach"]).any(dim=1)).any(dim=0).tolist()   # d: any model, any row
        skip = [sk or not mv for sk, mv in zip(ctx["skip"], moved)]
        chunk = max(1, int(4e6 // (B * n_mc * (upto + 1))))
        means, ses = [], []
        for s in range(0, K, chunk):
            k = min(chunk, K - s)
            rep = lambda t: t[:, s:s + k, None, :].expand(B, k, n_mc, d).reshape(B, k * n_mc, d)
            e = eps[:, None].expand(B, k, n_mc, E).reshape(B, k * n_mc, E)                # B x kM x E
            init = base[:, None].expand(B, k, n_mc, d).reshape(B, k * n_mc, d).clone()
            u = self._latent(e, rep(dm), rep(du), upto=upto, skip=skip, init=init)
            uy = u.gather(2, t_c[:, None, :].expand(B, k * n_mc, 1)).reshape(B, k, n_mc)
            means.append(uy.mean(dim=2))
            ses.append(uy.std(dim=2) / math.sqrt(n_mc))
        scale_y = self.scale.gather(1, t_c)
        return self.loc.gather(1, t_c) + scale_y * torch.cat(means, dim=1), scale_y.abs() * torch.cat(ses, dim=1)

    def expected_target(self, do_mask: torch.Tensor, do_value: torch.Tensor, n_mc: int = N_MC,
                        return_se: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """E[Y | do(X_S = v)] for K interventions per model: do_mask/do_value K x d or B x K x d
        (label order). Returns B x K (and, with ``return_se``, its standard error B x K). Exact
        for linear models (zero-mean noise propagates through affine maps; SE 0); otherwise Monte
        Carlo over n_mc common random numbers, so the same intervention always gets the same
        estimate.
        """
        B, d = self.batch_size, self.d
        do_mask = torch.as_tensor(do_mask, device=self.device)
        K = do_mask.shape[-2]
        lin = self._cache["linear"]
        if all(lin):
            mean, se = self._expected_exact(do_mask, do_value, K), None
        elif not any(lin):
            mean, se = self._expected_mc(do_mask, do_value, K, n_mc)
        else:  # a batch of both: each model its own way
            dm = torch.broadcast_to(do_mask, (B, K, d))
            dv = torch.broadcast_to(torch.as_tensor(do_value, device=self.device, dtype=self.loc.dtype), (B, K, d))
            il = torch.tensor([b for b in range(B) if lin[b]], device=self.device)
            im = torch.tensor([b for b in range(B) if not lin[b]], device=self.device)
            mean = torch.zeros(B, K, device=self.device, dtype=self.loc.dtype)
            se = torch.zeros_like(mean)
            mean[il] = self[il]._expected_exact(dm[il], dv[il], K)
            mean[im], se[im] = self[im]._expected_mc(dm[im], dv[im], K, n_mc)
        if not return_se:
            return mean
        return mean, torch.zeros_like(mean) if se is None else se

    def _expected_exact(self, do_mask, do_value, K: int) -> torch.Tensor:
        """Linear models: the noise-free propagation is the expectation. Returns B x K."""
        B, d = self.batch_size, self.d
        dm, du, _ = self._prepare_do(K, do_mask, do_value, None)
        t_c = self.canon.gather(1, self.target[:, None])                             # B x 1
        upto, skip = self._relevant()
        zeros = torch.zeros(B, K, d + self.n_latent, device=self.device, dtype=self.loc.dtype)
        u = self._latent(zeros, dm, du, upto=upto, skip=skip)
        uy = u.gather(2, t_c[:, None, :].expand(B, K, 1)).squeeze(2)                # B x K
        return self.loc.gather(1, t_c) + self.scale.gather(1, t_c) * uy

    def observational_mean(self, n_mc: int = N_MC) -> torch.Tensor:
        """E[Y] without intervention (B)."""
        none = torch.zeros(1, self.d, dtype=torch.bool, device=self.device)
        return self.expected_target(none, torch.zeros(1, self.d, device=self.device), n_mc)[:, 0]

    def optimum(
        self,
        low: torch.Tensor,
        high: torch.Tensor,
        intervenable: torch.Tensor | None = None,
        n_mc: int = N_MC,
        grid: int | None = None,
        refine_iters: int = 16,
    ) -> Optimum:
        """y* = min over single-variable hard interventions X_i = v, v in [low_i, high_i], of
        E[Y | do(X_i = v)], with its argmin and the Monte Carlo standard error of its value
        (:func:`acbo.scm.optimum.optimum`).

        low/high: d or B x d domains (label order); intervenable: d or B x d bool (default:
        every variable but Y). Linear models: exact (E is affine in v, so the minimum lies at an
        end of a domain). Otherwise: a grid of ``grid`` points over each domain (default 21 for
        the classic mechanisms, 64 when a model has other kinds, whose optima can lie inside the
        domain), then golden-section search in the bracket around the best grid point, on the
        common-random-number MC estimate; variables that are not ancestors of Y leave E[Y] at
        its observational value.
        """
        return search_optimum(self, low, high, intervenable, n_mc, grid, refine_iters)

    def set_optimum(self, low: torch.Tensor, high: torch.Tensor, max_set: int, intervenable: torch.Tensor | None = None,
                    sets: list[tuple[int, ...]] | None = None, n_mc: int = N_MC, grid: int | None = None,
                    refine_iters: int = 16, single: Optimum | None = None, set_grid: int | None = None) -> SetOptimum:
        """y* = min over hard interventions on at most ``max_set`` variables at once (or on the
        given ``sets`` of label indices) of E[Y | do(X_S = x_S)] within the domains, with its set,
        settings and standard error (:func:`acbo.scm.optimum.set_optimum`). ``max_set=1`` gives
        :meth:`optimum`'s numbers. ``single``: :meth:`optimum`'s result for the same domains and
        variables when already computed (reused); ``set_grid``: grid points per axis of a set."""
        return search_set_optimum(self, low, high, intervenable, max_set, sets, n_mc, grid, refine_iters, single=single,
                                  set_grid=set_grid)

    # ---------------------------------------------------------------- one experiment, by name
    def _named_do(self, intervention) -> tuple[torch.Tensor, torch.Tensor]:
        """d bool mask and d values of a {name: value} intervention on the single model."""
        if self.batch_size != 1:
            raise ValueError(f"named experiments need a single model, this batch holds {self.batch_size}")
        names = self.names()
        mask = torch.zeros(self.d, dtype=torch.bool, device=self.device)
        vals = torch.zeros(self.d, device=self.device, dtype=self.loc.dtype)
        for name, v in intervention.items():
            if name not in names:
                raise ValueError(f"unknown variable {name!r}; variables: {names}")
            mask[names.index(name)] = True
            vals[names.index(name)] = float(v)
        return mask, vals

    def run_experiment(self, intervention, generator: torch.Generator) -> dict[str, float]:
        """One joint measurement of every variable under do(intervention) ({name: value}),
        named like :meth:`names`; the intervened variables report exactly the values set."""
        mask, vals = self._named_do(intervention)
        s = self.sample(1, generator, do_mask=mask, do_value=vals)[0, 0]
        out = {n: float(s[k]) for k, n in enumerate(self.names())}
        out.update({n: float(v) for n, v in intervention.items()})
        return out

    def expected_outcome(self, intervention, n_mc: int = N_MC) -> float:
        """E[Y | do(intervention)] for a {name: value} intervention on the single model."""
        mask, vals = self._named_do(intervention)
        return float(self.expected_target(mask[None], vals[None], n_mc)[0, 0])

    # ---------------------------------------------------------------- containers
    def __getitem__(self, idx) -> "SCM":
        """Models ``idx`` (an int, a slice or a tensor of indices)."""
        if isinstance(idx, int):
            if not -self.batch_size <= idx < self.batch_size:
                raise IndexError(f"model index {idx} out of range for a batch of {self.batch_size}")
            idx = slice(idx % self.batch_size, idx % self.batch_size + 1)
        return SCM(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def to(self, device: str | torch.device) -> "SCM":
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def to_dict(self) -> dict:
        """A plain dict (tensors on CPU, a format version) that rebuilds the models."""
        out = {f.name: getattr(self, f.name).detach().cpu() for f in fields(self)}
        out["format_version"] = FORMAT_VERSION
        return out

    @classmethod
    def from_dict(cls, state: dict) -> "SCM":
        """Rebuild from :meth:`to_dict`'s output (format 2, or format 1: one mechanism and one
        noise family per batch, as strings)."""
        if not isinstance(state, dict) or "format_version" not in state:
            raise ValueError("not an acbo SCM state (no format_version)")
        version = state["format_version"]
        if version == 1:
            state = _from_format_1(state)
        elif version != FORMAT_VERSION:
            raise ValueError(f"SCM state has format version {version}, this acbo reads {FORMAT_VERSION} (and 1)")
        names = {f.name for f in fields(cls)}
        missing = names - set(state)
        if missing:
            raise ValueError(f"SCM state is missing fields {sorted(missing)}")
        return cls(**{k: torch.as_tensor(state[k]) for k in names})

    # ---------------------------------------------------------------- hand-built models
    @classmethod
    def linear_gaussian(
        cls,
        adjacency,
        weights,
        noise_std,
        target: int,
        mean=None,
        noise: str = "gaussian",
    ) -> "SCM":
        """One linear SCM given by hand, in label order: ``adjacency[j, k]`` = X_j -> X_k,
        ``weights[j, k]`` the coefficient of X_j in X_k,

            X_k = mean_k + sum_j weights[j, k] (X_j - mean_j) + noise_std_k * eps_k,

        so ``mean`` (default 0) is each variable's observational mean; ``noise`` one of
        :data:`acbo.scm.mechanisms.BASES` (every node's eps).
        """
        A = torch.as_tensor(adjacency)
        order = topological_order(A)
        d = check_d(A.shape[0])
        Wl = torch.as_tensor(weights, dtype=torch.float32)
        sd = torch.as_tensor(noise_std, dtype=torch.float32).reshape(-1)
        mu = torch.zeros(d) if mean is None else torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        if Wl.shape != (d, d) or sd.shape != (d,) or mu.shape != (d,):
            raise ValueError(f"weights must be {d} x {d} and noise_std, mean length {d}; got "
                             f"{tuple(Wl.shape)}, {tuple(sd.shape)}, {tuple(mu.shape)}")
        if not (torch.isfinite(Wl).all() and torch.isfinite(sd).all() and torch.isfinite(mu).all()) or (sd < 0).any():
            raise ValueError("weights, noise_std and mean must be finite, noise_std >= 0")
        if not isinstance(target, int) or not 0 <= target < d:
            raise ValueError(f"target must be a variable index in [0, {d}), got {target!r}")
        if noise not in mech.BASES:
            raise ValueError(f"unknown noise {noise!r}; known: {mech.BASES}")
        Ab = A.bool()
        if (Wl[~Ab] != 0).any():
            raise ValueError("weights must be zero where adjacency has no edge")
        Ac = Ab[order][:, order]
        Wc = Wl[order][:, order].T.reshape(1, d, 1, d)                                # [k, 0, j]: j -> k
        ones = torch.ones(1, d)
        zeros = torch.zeros(1, d)
        return cls(
            A=Ac[None], label=order[None].long(), target=torch.tensor([target]),
            kind=torch.full((1, d), mech.LINEAR), W=Wc, c=torch.zeros(1, d, 1), a=torch.ones(1, d, 1),
            f_loc=zeros.clone(), f_scale=ones.clone(), noise_std=sd[order][None],
            noise_kind=torch.full((1, d), mech.BASES.index(noise)), hetero=torch.zeros(1, d, dtype=torch.bool),
            link_gain=zeros.clone(), link_bias=zeros.clone(), conf=torch.zeros(1, d, 0),
            loc=mu[order][None], scale=ones.clone(), lower=torch.full((1, d), -math.inf),
            upper=torch.full((1, d), math.inf), standardised=torch.zeros(1, dtype=torch.bool),
            saturation=torch.zeros(1), mc_seed=torch.zeros(1, dtype=torch.long),
        )


def _from_format_1(state: dict) -> dict:
    """A format-1 state (one mechanism and one noise family per batch) in format-2 fields."""
    A = torch.as_tensor(state["A"])
    B, d, _ = A.shape
    mechanism, noise = state["mechanism"], state["noise"]
    if mechanism not in mech.CLASSIC or noise not in ("gaussian", "laplace", "hetero"):
        raise ValueError(f"format-1 SCM state with unknown mechanism/noise {mechanism!r}/{noise!r}")
    out = {k: v for k, v in state.items() if k not in ("mechanism", "noise", "format_version")}
    base = "gaussian" if noise == "hetero" else noise
    out.update(kind=torch.full((B, d), mech.MECHANISMS.index(mechanism)),
               noise_kind=torch.full((B, d), mech.BASES.index(base)),
               hetero=A.any(dim=1) if noise == "hetero" else torch.zeros(B, d, dtype=torch.bool),
               link_gain=torch.zeros(B, d), link_bias=torch.zeros(B, d), conf=torch.zeros(B, d, 0),
               lower=torch.full((B, d), -math.inf), upper=torch.full((B, d), math.inf),
               standardised=torch.ones(B, dtype=torch.bool), saturation=torch.zeros(B))
    return out


def check_batch(B, noise_std) -> None:
    """A batch size B >= 1 and a noise-std range 0 <= low <= high, or a ValueError."""
    if isinstance(B, bool) or not isinstance(B, int) or B < 1:
        raise ValueError(f"batch size B must be a positive integer, got {B!r}")
    lo, hi = noise_std
    if not 0 <= lo <= hi:
        raise ValueError(f"noise_std must be a range 0 <= low <= high, got {noise_std!r}")


def random_scms(
    generator: torch.Generator,
    B: int,
    d: int,
    graph: str = "er",
    mechanism: str = "linear",
    noise: str = "gaussian",
    expected_degree: float = 2.0,
    noise_std: tuple[float, float] = (0.2, 0.7),
    n_pilot: int = 2000,
    target: str = "any",
) -> SCM:
    """Draw B random SCMs of the classic world over d variables on the generator's device.

    Graph from the prior ``graph``; Y uniform among nodes with a parent (``target="any"``) or
    among sinks with a parent (``target="sink"``); random labelling; one mechanism kind
    (linear, mlp or gp) for every node of every model; one noise family (gaussian, laplace or
    hetero) for every node; noise std ~ U(noise_std) for non-roots (1 for roots); observed
    offsets ~ U(-2, 2) and scales ~ logU(0.5, 2); each mechanism standardised on an
    n_pilot-row observational pilot sample.
    """
    check_batch(B, noise_std)
    if mechanism not in mech.CLASSIC or noise not in ("gaussian", "laplace", "hetero"):
        raise ValueError(f"the classic world has mechanisms {mech.CLASSIC} and noises (gaussian, laplace, hetero); "
                         f"got {mechanism!r}, {noise!r} (other kinds: acbo.scm.broad_scms)")
    lo, hi = noise_std
    dev = generator.device
    A = sample_graph(graph, generator, B, d, expected_degree)
    A, t_c = pick_target(generator, A, target)
    label = torch.rand(B, d, generator=generator, device=dev).argsort(dim=1)        # canonical -> label
    W, c, a = mech.sample_parameters(mechanism, generator, A)
    has_parent = A.any(dim=1)
    sd = lo + (hi - lo) * torch.rand(B, d, generator=generator, device=dev)
    sd = torch.where(has_parent, sd, torch.ones_like(sd))
    loc = 4 * torch.rand(B, d, generator=generator, device=dev) - 2
    scale = torch.exp(math.log(2.0) * (2 * torch.rand(B, d, generator=generator, device=dev) - 1))
    mc_seed = torch.randint(0, 2**62, (B,), generator=generator, device=dev)
    base = mech.BASES.index("gaussian" if noise == "hetero" else noise)
    zeros = torch.zeros(B, d, device=dev)
    scm = SCM(
        A=A, label=label, target=label.gather(1, t_c[:, None]).squeeze(1),
        kind=torch.full((B, d), mech.MECHANISMS.index(mechanism), device=dev), W=W, c=c, a=a,
        f_loc=zeros.clone(), f_scale=torch.ones(B, d, device=dev), noise_std=sd,
        noise_kind=torch.full((B, d), base, device=dev), hetero=has_parent & (noise == "hetero"),
        link_gain=zeros.clone(), link_bias=zeros.clone(), conf=torch.zeros(B, d, 0, device=dev),
        loc=loc, scale=scale, lower=torch.full((B, d), -math.inf, device=dev), upper=torch.full((B, d), math.inf, device=dev),
        standardised=torch.ones(B, dtype=torch.bool, device=dev), saturation=torch.zeros(B, device=dev), mc_seed=mc_seed,
    )
    scm._latent(scm._noise(generator, n_pilot), fit=True)  # sets f_loc / f_scale in place
    return scm
