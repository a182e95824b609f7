"""Batched structural causal models: sampling, hard and soft interventions, E[Y | do], y*.

``SCM`` holds B models over d variables. Internally every model lives in its topological
("canonical") order with latent, roughly standardised values ``u``; the observed value of a
variable is ``x = loc + scale * u``, and every model carries a random labelling so that the
label (column) of a variable says nothing about its place in the order. All public inputs and
outputs are in label order and observed units.

Node k (canonical) in model b:

    u_k = f_k(u_pa(k)) + noise_std_k * m_k * eps_k,    f_k = (g_k - f_loc_k) / f_scale_k

with g_k from :mod:`acbo.scm.mechanisms`, f standardised on a pilot sample when the model is
drawn (so every mechanism has unit-variance signal), eps unit-variance noise and m the
heteroskedastic multiplier (1 unless noise = "hetero").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch

from acbo.scm import mechanisms as mech
from acbo.scm.graphs import check_d, pick_target, sample_graph, topological_order
from acbo.seeding import generator as make_generator

FORMAT_VERSION = 1
N_MC = 10_000


@dataclass(frozen=True)
class Optimum:
    """The best single-variable hard intervention of each model: ``value`` = min E[Y | do]
    (B), ``variable`` its label index (B, long), ``setting`` the value it sets (B)."""

    value: torch.Tensor
    variable: torch.Tensor
    setting: torch.Tensor


@dataclass(frozen=True, eq=False)
class SCM:
    """B structural causal models over d variables (see the module docstring).

    Shapes: A: B x d x d (canonical, ``A[b, j, k]`` = j -> k, j < k); label: B x d (label of
    canonical node c); target: B (label index of Y); W: B x d x H x d; c, a: B x d x H;
    f_loc, f_scale, noise_std, loc, scale: B x d (canonical); mc_seed: B (seeds of the
    common random numbers used for Monte Carlo expectations).
    """

    mechanism: str
    noise: str
    A: torch.Tensor
    label: torch.Tensor
    target: torch.Tensor
    W: torch.Tensor
    c: torch.Tensor
    a: torch.Tensor
    f_loc: torch.Tensor
    f_scale: torch.Tensor
    noise_std: torch.Tensor
    loc: torch.Tensor
    scale: torch.Tensor
    mc_seed: torch.Tensor

    def __post_init__(self):
        if self.mechanism not in mech.MECHANISMS:
            raise ValueError(f"unknown mechanism {self.mechanism!r}; known: {mech.MECHANISMS}")
        if self.noise not in mech.NOISES:
            raise ValueError(f"unknown noise {self.noise!r}; known: {mech.NOISES}")
        B, d, d2 = self.A.shape
        assert d == d2 and self.label.shape == (B, d) and self.target.shape == (B,)
        assert self.W.shape[:2] == (B, d) and self.W.shape[3] == d

    # ---------------------------------------------------------------- structure
    @property
    def batch_size(self) -> int:
        return self.A.shape[0]

    @property
    def d(self) -> int:
        return self.A.shape[1]

    @property
    def device(self) -> torch.device:
        return self.A.device

    def __len__(self) -> int:
        return self.batch_size

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
        """B x d bool: the true parents of Y, in label space."""
        adj = self.adjacency
        return adj[torch.arange(self.batch_size, device=self.device), :, self.target]

    def ancestors(self) -> torch.Tensor:
        """B x d bool: the ancestors of Y (Y excluded), in label space."""
        adj = self.adjacency.float()
        reach = adj.clone()
        for _ in range(max(1, math.ceil(math.log2(self.d)))):
            reach = ((reach + reach @ reach) > 0).float()
        return reach[torch.arange(self.batch_size, device=self.device), :, self.target] > 0

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

    def _latent(
        self,
        eps: torch.Tensor,
        do_mask: torch.Tensor | None = None,
        do_u: torch.Tensor | None = None,
        shift_u: torch.Tensor | None = None,
        upto: int | None = None,
        skip: torch.Tensor | None = None,
        fit: bool = False,
    ) -> torch.Tensor:
        """Propagate noise eps (B x n x d, canonical) through the equations in canonical order.

        do_mask/do_u/shift_u: B x n x d canonical (hard interventions in latent units, shifts).
        upto: compute nodes 0..upto only; skip: d bool, nodes no model needs (left at 0).
        fit: set f_loc/f_scale from this sample (used once, when a model is drawn).
        """
        B, n, d = eps.shape
        has_parent = self.A.any(dim=1)                                               # B x d
        any_parent = has_parent.any(dim=0).tolist()
        u = torch.zeros_like(eps)
        last = d - 1 if upto is None else upto
        for k in range(last + 1):  # topological order: the one sequential dimension
            if skip is not None and bool(skip[k]):
                continue
            if k > 0 and any_parent[k]:
                g = mech.evaluate(self.mechanism, self.W[:, k, :, :k], self.c[:, k], self.a[:, k], u[:, :, :k])
                if fit:
                    std = g.std(dim=1)
                    self.f_loc[:, k] = g.mean(dim=1)
                    self.f_scale[:, k] = torch.where(has_parent[:, k] & (std > 1e-6), std, torch.ones_like(std))
                f = (g - self.f_loc[:, k, None]) / self.f_scale[:, k, None]              # B x n
            else:
                f = torch.zeros_like(eps[:, :, k])
            std = self.noise_std[:, k, None] * mech.noise_multiplier(self.noise, f, has_parent[:, k])
            uk = f + std * eps[:, :, k]
            if shift_u is not None:
                uk = uk + shift_u[:, :, k]
            if do_mask is not None:
                uk = torch.where(do_mask[:, :, k], do_u[:, :, k], uk)
            u[:, :, k] = uk
        return u

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
    ) -> torch.Tensor:
        """B x n x d samples (label order, observed units).

        do_mask (bool) / do_value: hard interventions do(X_S = v), anything broadcastable to
        B x n x d (per model and per sample); shift: soft interventions, added to a variable's
        value before its children see it.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"number of samples n must be a positive integer, got {n!r}")
        dm, du, su = self._prepare_do(n, do_mask, do_value, shift)
        eps = mech.standard_noise(self.noise, generator, (self.batch_size, n, self.d), self.loc.dtype)
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
        """B x n_mc x d common random numbers, fixed per model by its mc_seed."""
        return torch.stack([
            mech.standard_noise(self.noise, make_generator("mc", int(s), device=self.device), (n_mc, self.d), self.loc.dtype)
            for s in self.mc_seed.tolist()
        ])

    def expected_target(self, do_mask: torch.Tensor, do_value: torch.Tensor, n_mc: int = N_MC) -> torch.Tensor:
        """E[Y | do(X_S = v)] for K interventions per model: do_mask/do_value K x d or B x K x d
        (label order). Returns B x K. Exact for linear models (zero-mean noise propagates
        through affine maps); otherwise Monte Carlo over n_mc common random numbers, so the
        same intervention always gets the same estimate.
        """
        B, d = self.batch_size, self.d
        do_mask = torch.as_tensor(do_mask, device=self.device)
        K = do_mask.shape[-2]
        dm, du, _ = self._prepare_do(K, do_mask, do_value, None)
        t_c = self.canon.gather(1, self.target[:, None])                             # B x 1
        upto, skip = self._relevant()
        if self.mechanism == "linear":
            u = self._latent(torch.zeros(B, K, d, device=self.device, dtype=self.loc.dtype), dm, du, upto=upto, skip=skip)
            uy = u.gather(2, t_c[:, None, :].expand(B, K, 1)).squeeze(2)                 # B x K
        else:
            eps = self._mc_noise(n_mc)                                                # B x M x d
            chunk = max(1, int(4e6 // (B * n_mc * (upto + 1))))
            parts = []
            for s in range(0, K, chunk):
                k = min(chunk, K - s)
                rep = lambda t: t[:, s:s + k, None, :].expand(B, k, n_mc, d).reshape(B, k * n_mc, d)
                e = eps[:, None].expand(B, k, n_mc, d).reshape(B, k * n_mc, d)         # B x kM x d
                u = self._latent(e, rep(dm), rep(du), upto=upto, skip=skip)
                uy = u.gather(2, t_c[:, None, :].expand(B, k * n_mc, 1)).reshape(B, k, n_mc)
                parts.append(uy.mean(dim=2))
            uy = torch.cat(parts, dim=1)
        loc_y = self.loc.gather(1, t_c)                                               # B x 1
        scale_y = self.scale.gather(1, t_c)
        return loc_y + scale_y * uy

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
        grid: int = 21,
        refine_iters: int = 16,
    ) -> Optimum:
        """y* = min over single-variable hard interventions X_i = v, v in [low_i, high_i], of
        E[Y | do(X_i = v)], with its argmin.

        low/high: d or B x d domains (label order); intervenable: d or B x d bool (default:
        every variable but Y). Linear models: exact (E is affine in v, so the minimum lies at an
        end of a domain). Otherwise: a grid over each domain, then golden-section search in the
        bracket around the best grid point, on the common-random-number MC estimate; variables
        that are not ancestors of Y leave E[Y] at its observational value.
        """
        B, d, dev = self.batch_size, self.d, self.device
        low = torch.broadcast_to(torch.as_tensor(low, device=dev, dtype=self.loc.dtype), (B, d))
        high = torch.broadcast_to(torch.as_tensor(high, device=dev, dtype=self.loc.dtype), (B, d))
        if not (torch.isfinite(low).all() and torch.isfinite(high).all()) or (low > high).any():
            raise ValueError("domains must be finite with low <= high")
        if intervenable is None:
            intervenable = torch.ones(B, d, dtype=torch.bool, device=dev)
            intervenable[torch.arange(B, device=dev), self.target] = False
        intervenable = torch.broadcast_to(torch.as_tensor(intervenable, device=dev), (B, d))
        if not intervenable.any(dim=1).all():
            raise ValueError("every model needs at least one intervenable variable")
        if self.mechanism == "linear":
            return self._optimum_at_ends(low, high, intervenable)
        return self._optimum_searched(low, high, intervenable, n_mc, grid, refine_iters)

    def _optimum_at_ends(self, low: torch.Tensor, high: torch.Tensor, intervenable: torch.Tensor) -> Optimum:
        """Linear models: E[Y | do(X_i = v)] is affine in v, so the best ends of the domains (B x d each)."""
        B, d, dev = self.batch_size, self.d, self.device
        eye = torch.eye(d, dtype=torch.bool, device=dev)
        inf = torch.tensor(float("inf"), device=dev, dtype=self.loc.dtype)
        mask = torch.cat([eye, eye])                                                     # 2d x d
        values = torch.cat([torch.diag_embed(low), torch.diag_embed(high)], dim=1)       # B x 2d x d
        e = self.expected_target(mask, values).masked_fill(~intervenable.repeat(1, 2), inf)  # B x 2d
        best = e.argmin(dim=1)
        var = best % d
        setting = torch.where(best < d, low.gather(1, var[:, None]), high.gather(1, var[:, None])).squeeze(1)
        return Optimum(e.gather(1, best[:, None]).squeeze(1), var, setting)

    def _optimum_searched(self, low: torch.Tensor, high: torch.Tensor, intervenable: torch.Tensor, n_mc: int,
                          grid: int, refine_iters: int) -> Optimum:
        """Nonlinear models: per intervenable ancestor of Y a grid, then golden-section refinement
        around the best grid point, all models and variables at once (B x d domains)."""
        B, d, dev = self.batch_size, self.d, self.device
        eye = torch.eye(d, dtype=torch.bool, device=dev)
        inf = torch.tensor(float("inf"), device=dev, dtype=self.loc.dtype)
        anc = self.ancestors() & intervenable                                             # B x d
        rel = torch.nonzero(anc.any(dim=0)).flatten()                                     # R (union over batch)
        e_obs = self.observational_mean(n_mc)
        # a non-ancestor intervention keeps E[Y] at its observational value
        other = intervenable & ~anc
        best_val = torch.where(other.any(dim=1), e_obs, inf)
        best_var = other.float().argmax(dim=1)
        best_set = low.gather(1, best_var[:, None]).squeeze(1)
        if len(rel) == 0:
            return Optimum(best_val, best_var, best_set)
        R = len(rel)
        lo_r, hi_r = low[:, rel], high[:, rel]                                            # B x R
        mask_r = eye[rel]                                                                 # R x d

        def evaluate(v: torch.Tensor) -> torch.Tensor:  # v: B x R x m values -> B x R x m
            m = v.shape[2]
            mask = mask_r[:, None, :].expand(R, m, d).reshape(R * m, d)
            vals = (v[..., None] * mask_r[None, :, None, :]).reshape(B, R * m, d)
            out = self.expected_target(mask, vals, n_mc).reshape(B, R, m)
            return out.masked_fill(~anc[:, rel, None], inf)

        t = torch.linspace(0, 1, grid, device=dev, dtype=self.loc.dtype)
        pts = lo_r[..., None] + (hi_r - lo_r)[..., None] * t                               # B x R x G
        eg = evaluate(pts)
        g = eg.argmin(dim=2, keepdim=True)                                                # B x R x 1
        a = pts.gather(2, (g - 1).clamp_min(0)).squeeze(2)
        b = pts.gather(2, (g + 1).clamp_max(grid - 1)).squeeze(2)
        cand_v, cand_e = pts.gather(2, g).squeeze(2), eg.gather(2, g).squeeze(2)          # B x R
        ratio = (math.sqrt(5) - 1) / 2
        x1, x2 = b - ratio * (b - a), a + ratio * (b - a)
        f12 = evaluate(torch.stack([x1, x2], dim=2))
        for _ in range(refine_iters):  # golden section, all models and variables at once
            left = f12[..., 0] <= f12[..., 1]                                              # B x R
            a = torch.where(left, a, x1)
            b = torch.where(left, x2, b)
            x1, x2 = b - ratio * (b - a), a + ratio * (b - a)
            f12 = evaluate(torch.stack([x1, x2], dim=2))
        for xv, fv in ((x1, f12[..., 0]), (x2, f12[..., 1])):
            better = fv < cand_e
            cand_v, cand_e = torch.where(better, xv, cand_v), torch.where(better, fv, cand_e)
        r = cand_e.argmin(dim=1)                                                          # B
        val = cand_e.gather(1, r[:, None]).squeeze(1)
        use = val < best_val
        return Optimum(
            torch.where(use, val, best_val),
            torch.where(use, rel[r], best_var),
            torch.where(use, cand_v.gather(1, r[:, None]).squeeze(1), best_set),
        )

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
        if isinstance(idx, int):
            if not -self.batch_size <= idx < self.batch_size:
                raise IndexError(f"model index {idx} out of range for a batch of {self.batch_size}")
            idx = slice(idx % self.batch_size, idx % self.batch_size + 1)
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        return SCM(**{k: (v[idx] if isinstance(v, torch.Tensor) else v) for k, v in kw.items()})

    def to(self, device: str | torch.device) -> "SCM":
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)
                                if isinstance(getattr(self, f.name), torch.Tensor)})

    def to_dict(self) -> dict:
        """A plain dict (tensors on CPU, strings, a format version) that rebuilds the models."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out = {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in out.items()}
        out["format_version"] = FORMAT_VERSION
        return out

    @classmethod
    def from_dict(cls, state: dict) -> "SCM":
        if not isinstance(state, dict) or "format_version" not in state:
            raise ValueError("not an acbo SCM state (no format_version)")
        if state["format_version"] != FORMAT_VERSION:
            raise ValueError(f"SCM state has format version {state['format_version']}, this acbo reads {FORMAT_VERSION}")
        names = {f.name for f in fields(cls)}
        missing = names - set(state)
        if missing:
            raise ValueError(f"SCM state is missing fields {sorted(missing)}")
        return cls(**{k: state[k] for k in names})

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

        so ``mean`` (default 0) is each variable's observational mean.
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
        Ab = A.bool()
        if (Wl[~Ab] != 0).any():
            raise ValueError("weights must be zero where adjacency has no edge")
        Ac = Ab[order][:, order]
        Wc = Wl[order][:, order].T.reshape(1, d, 1, d)                                # [k, 0, j]: j -> k
        ones = torch.ones(1, d)
        return cls(
            mechanism="linear", noise=noise, A=Ac[None], label=order[None].long(),
            target=torch.tensor([target]), W=Wc, c=torch.zeros(1, d, 1), a=torch.ones(1, d, 1),
            f_loc=torch.zeros(1, d), f_scale=ones.clone(), noise_std=sd[order][None],
            loc=mu[order][None], scale=ones.clone(), mc_seed=torch.zeros(1, dtype=torch.long),
        )


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
    """Draw B random SCMs over d variables on the generator's device.

    Graph from the prior ``graph``; Y uniform among nodes with a parent (``target="any"``) or
    among sinks with a parent (``target="sink"``); random labelling;
    mechanism parameters from ``mechanism``; noise std ~ U(noise_std) for non-roots (1 for
    roots); observed offsets ~ U(-2, 2) and scales ~ logU(0.5, 2); each mechanism standardised
    on an n_pilot-row observational pilot sample.
    """
    if isinstance(B, bool) or not isinstance(B, int) or B < 1:
        raise ValueError(f"batch size B must be a positive integer, got {B!r}")
    lo, hi = noise_std
    if not 0 <= lo <= hi:
        raise ValueError(f"noise_std must be a range 0 <= low <= high, got {noise_std!r}")
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
    scm = SCM(
        mechanism=mechanism, noise=noise, A=A, label=label, target=label.gather(1, t_c[:, None]).squeeze(1),
        W=W, c=c, a=a, f_loc=torch.zeros(B, d, device=dev), f_scale=torch.ones(B, d, device=dev),
        noise_std=sd, loc=loc, scale=scale, mc_seed=mc_seed,
    )
    eps = mech.standard_noise(noise, generator, (B, n_pilot, d))
    scm._latent(eps, fit=True)  # sets f_loc / f_scale in place
    return scm
