"""Stage 3: the surrogate and the policy trained in alternation, on a curriculum.

``python -m acbo.e2e.train --out runs/e2e`` (every config field is a flag). One round:

1. **family**: the curriculum's current level (:mod:`acbo.e2e.curriculum`), drawn from its
   train stream keyed by the round (a resumed run draws the same problems);
2. **policy**: B campaigns of T steps under the current policy with the current surrogate (GRPO
   rollout, :func:`acbo.policy.rollout.collect`), then a GRPO update (:func:`grpo_update`);
3. **surrogate**: ``surrogate_steps`` updates on the buffers the policy just collected, labelled
   with their true parents (and, when it has the world-model head, queries answered by the
   simulator): the data it will see in deployment (:meth:`acbo.env.Env.training_batch`);
4. **validation** every ``val_every`` rounds, on the level's test stream: the policy's regret at T
   (played as deployed) and the surrogate's parent AUPRC on fresh buffers; the curriculum moves on
   the regret; one atomic checkpoint holds both models, both optimizers, the curriculum state and
   the log, and the pair is exported beside it (``policy.pt`` + ``surrogate.pt``, loadable by
   ``method="amortized", checkpoint=...``).

Both models start from a policy checkpoint and the surrogate it was trained with (default: the
shipped pair), or (``--grid K``) from a surrogate with the world-model head and a new policy that
reads it on K grid points per variable (:class:`acbo.policy.model.GridActionDist`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from acbo.configs import config_from_argv, format_record, print_line
from acbo.e2e.curriculum import Curriculum, CurriculumState, as_range
from acbo.env import Env
from acbo.io import atomic_save, load_state
from acbo.policy.checkpoint import load_policy_checkpoint, load_pretrained_policy, save_policy
from acbo.policy.model import Policy, PolicyConfig
from acbo.policy.rewards import combine
from acbo.policy.rollout import GroupDesign, collect, play
from acbo.policy.update import UpdateSettings, grpo_update
from acbo.scm import Family
from acbo.seeding import generator
from acbo.surrogate.data import sample_buffers, sample_queries
from acbo.surrogate import load_pretrained, load_surrogate
from acbo.surrogate.model import Surrogate
from acbo.surrogate.train import surrogate_step, validation_auprc
from acbo.training import Budget, append_jsonl, resume, set_lr

KIND = "acbo e2e checkpoint"
FORMAT_VERSION = 1
ADDED_LATER = {"grid": 0, "surrogate": "", "policy_dim": 64, "policy_layers": 2, "val_chunks": 1}
"""Settings added after the first stage-3 runs, with the value those runs had."""


@dataclass(frozen=True)
class E2EConfig:
    """Stage-3 training run."""

    base: str = "train-broad"
    """The training world the curriculum climbs to (a broad family)."""
    levels: int = 4
    """Curriculum levels (1: the base family from the start)."""
    threshold: float = 0.3
    """A level is passed when the policy's validation regret at T is at most this ..."""
    patience: int = 2
    """... in this many validations in a row."""
    level_rounds: int = 100
    """Rounds after which a level is left even if not passed."""
    rounds: int = 200
    """Rounds (one GRPO update and surrogate_steps surrogate updates each)."""
    max_minutes: float = 0.0
    """Wall-time budget over all pieces of a resumed run (0: none)."""
    batch_size: int = 16
    """Campaigns per round."""
    group_size: int = 4
    """GRPO group size G (candidate interventions from one state)."""
    horizon: tuple[int, int] = (5, 10)
    """Steps per campaign T, uniform per round."""
    policy_lr: float = 1e-4
    """Policy AdamW learning rate (cosine decay to 10 %)."""
    surrogate_lr: float = 3e-5
    """Surrogate AdamW learning rate (cosine decay to 10 %)."""
    surrogate_steps: int = 1
    """Surrogate updates per round on the buffers the policy collected."""
    epochs: int = 2
    """GRPO epochs per rollout."""
    minibatch: int = 256
    """Decisions per GRPO gradient step."""
    w_improvement: float = 1.0
    """Reward weight: lowering the best-so-far E[Y] (observational std of Y)."""
    w_outcome: float = 0.1
    """Reward weight: E[Y | do] below the observational mean."""
    w_info_gain: float = 0.1
    """Reward weight: information gain of the surrogate's parent posterior."""
    w_parent: float = 0.1
    """Reward weight: intervening on a true parent."""
    reward_mc: int = 128
    """Monte Carlo samples for E[Y | do] of nonlinear SCMs."""
    query_vars: int = 4
    """World-model queries per buffer (variables) when the surrogate has the head."""
    query_values: int = 8
    """Values per queried variable."""
    init: str = ""
    """Policy checkpoint to start from, with the surrogate of its pair ('' = the shipped pair);
    ignored when ``grid`` > 0."""
    grid: int = 0
    """> 0: start a new policy that reads the world model on this many grid points per variable
    (untrained, it samples in proportion to the world model's expected improvement), with the
    surrogate ``surrogate``."""
    surrogate: str = ""
    """The surrogate a new grid policy reads ('' = the shipped one, ``acbo.surrogate.load_pretrained``);
    it needs the world-model head."""
    policy_dim: int = 64
    """Token width of a new grid policy."""
    policy_layers: int = 2
    """Attention layers over variables of a new grid policy."""
    val_campaigns: int = 32
    """Validation campaigns (policy) and buffers (surrogate) per validation."""
    val_chunks: int = 4
    """Batches the validation campaigns (and buffers) are split into, each drawing its own d and
    graph size from the level (1: one batch, one d)."""
    val_horizon: int = 10
    """T of the validation campaigns."""
    val_mc: int = 512
    """Common-random-number Monte Carlo samples for the validation campaigns' y* (nonlinear
    models; computed once per level, the slow part of a level change on a CPU; its largest
    standard error is logged as val_y_star_se)."""
    val_every: int = 10
    """Rounds between validations (and checkpoints)."""
    seed: int = 0
    """Seed of the training stream."""
    device: str = "cpu"
    """Training device."""
    out: str = "runs/e2e"
    """Folder for the checkpoint (e2e.pt), the exported pair and the log (log.jsonl)."""

    def __post_init__(self):
        self.curriculum()
        PolicyConfig(dim=self.policy_dim, layers=self.policy_layers, grid=self.grid)
        if self.surrogate and not self.grid:
            raise ValueError(f"surrogate {self.surrogate!r} is only read by a new grid policy (grid > 0); "
                             "a policy checkpoint (init) brings its own")
        if not 1 <= self.horizon[0] <= self.horizon[1]:
            raise ValueError(f"horizon must be a range (low, high) with 1 <= low <= high, got {self.horizon}")
        for name in ("rounds", "batch_size", "surrogate_steps", "epochs", "minibatch", "reward_mc", "query_vars",
                     "query_values", "val_campaigns", "val_chunks", "val_horizon", "val_mc", "val_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.val_chunks > self.val_campaigns:
            raise ValueError(f"val_chunks ({self.val_chunks}) must be at most val_campaigns ({self.val_campaigns})")
        GroupDesign("candidates", self.group_size)

    def curriculum(self) -> Curriculum:
        return Curriculum(self.base, self.levels, self.threshold, self.patience, self.level_rounds)

    def weights(self) -> dict[str, float]:
        return {"improvement": self.w_improvement, "outcome": self.w_outcome, "info_gain": self.w_info_gain,
                "parent": self.w_parent}


def round_env(cfg: E2EConfig, fam: Family, r: int) -> tuple[Env, int, torch.Generator]:
    """The campaigns of round r on ``fam`` (train stream keyed by the family and the round)."""
    g = generator("train", "e2e", cfg.seed, fam.name, r, device=cfg.device)
    lo, hi = as_range(fam.n_obs)
    n_obs = int(torch.randint(lo, hi + 1, (1,), generator=g, device=cfg.device))
    T = int(torch.randint(cfg.horizon[0], cfg.horizon[1] + 1, (1,), generator=g, device=cfg.device))
    return Env.from_family(fam, cfg.batch_size, n_obs, T, g, cfg.reward_mc), T, g


def validation(cfg: E2EConfig, fam: Family) -> tuple[list[tuple[Env, torch.Tensor]], list, float]:
    """The level's validation, test stream: ``val_chunks`` batches of campaigns with their y*
    (policy), each of its own d, fresh buffers of the same sizes (surrogate), and the largest Monte
    Carlo standard error of the y*."""
    g = generator("test", "e2e-val", fam.name, device=cfg.device)
    n_obs = as_range(fam.n_obs)[1]
    campaigns, buffers, se = [], [], 0.0
    for i in range(cfg.val_chunks):
        n = cfg.val_campaigns // cfg.val_chunks + (i < cfg.val_campaigns % cfg.val_chunks)
        env = Env.from_family(fam, n, n_obs, cfg.val_horizon, g, cfg.reward_mc)
        buffers.append(sample_buffers(fam, n, n_obs, cfg.val_horizon, g))
        opt = env.scm.optimum(env.low, env.high, n_mc=cfg.val_mc)
        campaigns.append((env, opt.value))
        se = max(se, float(opt.se.max()))
    return campaigns, buffers, se


def validate(policy: Policy, surrogate: Surrogate, val: tuple, seed: int) -> dict[str, float]:
    """Both models on the level's validation: the policy's regret (as deployed; means over the
    batches weighted by the campaigns that count, see :func:`play`), the surrogate's AUPRC."""
    campaigns, buffers, se = val
    policy.eval()
    surrogate.eval()
    g = generator("test", "e2e-val", seed, device=campaigns[0][0].values.device)
    played = [play(policy, surrogate, env, y_star, g) for env, y_star in campaigns]
    counted, sizes = [o["val_counted"] for o in played], [env.B for env, _ in campaigns]

    def mean(key: str, weights: list[int]) -> float:  # a batch with weight 0 (its NaN) drops out
        return sum(o[key] * w for o, w in zip(played, weights) if w) / sum(weights) if sum(weights) else float("nan")

    out = {"val_regret_T": mean("val_regret_T", counted), "val_regret_mean": mean("val_regret_mean", counted),
           "val_parent_frac": mean("val_parent_frac", sizes), "val_counted": sum(counted)}
    out["val_auprc"] = validation_auprc(surrogate, buffers)
    out["val_y_star_se"] = se
    policy.train()
    surrogate.train()
    return out


def read_e2e_checkpoint(path: str | Path) -> dict:
    """The stage-3 checkpoint dict, validated: ValueError naming what is wrong."""
    return load_state(path, KIND, FORMAT_VERSION, "stage-3 checkpoint", "acbo stage-3 checkpoint")


def starting_pair(cfg: E2EConfig) -> tuple[Policy, Surrogate]:
    """(policy, surrogate) to start from, both trainable."""
    if cfg.grid:
        surrogate = load_surrogate(cfg.surrogate, cfg.device) if cfg.surrogate else load_pretrained(cfg.device)
        if not surrogate.cfg.queries:
            raise ValueError(f"a grid policy reads the world model; the surrogate {cfg.surrogate or '(shipped)'} has no "
                             "world-model head")
        torch.manual_seed(cfg.seed)
        policy = Policy(PolicyConfig(token_dim=surrogate.cfg.dim, dim=cfg.policy_dim, layers=cfg.policy_layers,
                                     grid=cfg.grid)).to(cfg.device)
    elif cfg.init:
        policy, surrogate = load_policy_checkpoint(cfg.init, cfg.device)
    else:
        policy, surrogate = load_pretrained_policy(cfg.device)
    for p in surrogate.parameters():
        p.requires_grad_(True)
    return policy.train(), surrogate.train()


# long: one loop, top to bottom, in the order it runs
def train(cfg: E2EConfig, log=print_line) -> tuple[Policy, Surrogate]:
    """Run (or resume) stage 3; returns the (policy, surrogate) pair."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "e2e.pt"
    curriculum = cfg.curriculum()
    budget = Budget(cfg.rounds, cfg.max_minutes)
    torch.manual_seed(cfg.seed)
    policy, surrogate = starting_pair(cfg)
    p_opt = torch.optim.AdamW(policy.parameters(), lr=cfg.policy_lr, weight_decay=1e-4)
    s_opt = torch.optim.AdamW(surrogate.parameters(), lr=cfg.surrogate_lr, weight_decay=1e-4)
    start, level, history = 0, CurriculumState(), []
    state = resume(ckpt, asdict(cfg), read_e2e_checkpoint, ADDED_LATER)
    if state is not None:  # the same configuration: the same architectures as the starting pair
        policy.load_state_dict(state["policy"]["state_dict"])
        surrogate.load_state_dict(state["surrogate"]["state_dict"])
        p_opt.load_state_dict(state["policy_opt"])
        s_opt.load_state_dict(state["surrogate_opt"])
        budget.elapsed_before = state["elapsed_s"]
        start, level, history = state["step"], CurriculumState.from_dict(state["curriculum"]), state["history"]
        log(f"resumed from round {start} on level {level.level + 1}")
    settings = UpdateSettings(cfg.epochs, cfg.minibatch)
    design = GroupDesign("candidates", cfg.group_size)

    def checkpoint(done: int) -> None:
        atomic_save({"kind": KIND, "format_version": FORMAT_VERSION, "step": done, "train_config": asdict(cfg),
                     "policy": {"model_config": asdict(policy.cfg), "state_dict": policy.state_dict()},
                     "surrogate": {"model_config": asdict(surrogate.cfg), "state_dict": surrogate.state_dict()},
                     "policy_opt": p_opt.state_dict(), "surrogate_opt": s_opt.state_dict(),
                     "curriculum": level.to_dict(), "history": history, "elapsed_s": budget.elapsed()}, ckpt)
        save_policy(out / "policy.pt", policy, surrogate, done, asdict(cfg))

    fam = curriculum.family(level.level)
    val = validation(cfg, fam)
    if start == 0:  # the starting point, for comparison
        history.append({"round": 0, "level": 1, **validate(policy, surrogate, val, cfg.seed)})
        log(format_record(history[-1]))
    done, saved = start, start if state is not None else None  # the round the files on disk hold
    for r in range(start, cfg.rounds):
        if budget.spent(r):
            log(f"time budget spent at round {r}")
            break
        t0 = time.perf_counter()
        # ---- 1. the level's campaigns; 2. the policy: GRPO with the current surrogate
        env, T, g = round_env(cfg, fam, r)
        set_lr(p_opt, budget.lr(cfg.policy_lr, r))
        policy.eval()
        surrogate.eval()
        batch, comps = collect(policy, surrogate, env, design, cfg.weights(), g)
        policy.train()
        stats = grpo_update(policy, p_opt, batch, settings, g)
        # ---- 3. the surrogate, on the buffers the policy collected
        surrogate.train()
        set_lr(s_opt, budget.lr(cfg.surrogate_lr, r))
        data = env.training_batch()
        queries = sample_queries(data, cfg.query_vars, cfg.query_values, g, cfg.reward_mc) \
            if surrogate.cfg.queries else None
        s_terms = [surrogate_step(surrogate, s_opt, data, 1.0, queries=queries) for _ in range(cfg.surrogate_steps)][-1]
        # ---- 4. diagnostics, validation, curriculum, checkpoint
        done = r + 1
        total = combine(comps, cfg.weights())
        rec = {"round": done, "level": level.level + 1, "family": fam.name, "d": env.d, "T": T,
               **{f"policy_{k}": v for k, v in stats.items()}, **{f"surrogate_{k}": v for k, v in s_terms.items()},
               "reward_mean": float(total.mean()), "reward_std": float(total.std()),
               "zero_var_groups": float(1 - batch.informative.float().mean()), "seconds": time.perf_counter() - t0,
               "elapsed_s": budget.elapsed()}
        metric = None
        if done % cfg.val_every == 0 or done == cfg.rounds:
            rec.update(validate(policy, surrogate, val, cfg.seed))
            metric = rec["val_regret_T"] if rec["val_counted"] else None  # none counted: no evaluation
        level, why = curriculum.advance(level, 1, metric)
        if why:
            rec["advanced"] = why
            fam = curriculum.family(level.level)
            val = validation(cfg, fam)
        if metric is not None:
            history.append(rec)
            checkpoint(done)
            saved = done
        append_jsonl(out / "log.jsonl", rec)
        log(format_record(rec))
    if not history or history[-1]["round"] != done:  # the last round's validation, if it had none
        history.append({"round": done, "level": level.level + 1, **validate(policy, surrogate, val, cfg.seed)})
    if saved != done:  # also a run whose budget ran out before its first round writes its pair
        checkpoint(done)
    policy.eval()
    surrogate.eval()
    return policy, surrogate


def main(argv: list[str] | None = None) -> None:
    train(config_from_argv(E2EConfig, argv, __doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
