"""Stage 3: the surrogate and the policy trained in alternation, on a curriculum.

``python -m acbo.e2e.train --run.out runs/e2e`` (every setting is a dotted flag; ``--help``). One round:

1. **family**: the curriculum's current level (:mod:`acbo.e2e.curriculum`), drawn from its
   train stream keyed by the round (a resumed run draws the same problems);
2. **policy**: B campaigns of T steps under the current policy with the current surrogate (GRPO
   rollout, :func:`acbo.policy.rollout.collect`), then a GRPO update (:func:`grpo_update`);
3. **surrogate**: ``surrogate_steps`` updates on the buffers the policy just collected, labelled
   with their true parents (and, when it has the world-model head, queries answered by the
   simulator): the data it will see in deployment (:meth:`acbo.env.Env.training_batch`);
4. **validation** every ``run.eval_every`` rounds, on the level's test stream: the policy's regret at T
   (played as deployed) and the surrogate's parent AUPRC on fresh buffers; the curriculum moves on
   the regret; one atomic checkpoint holds both models, both optimizers, the curriculum state and
   the log, and the pair is exported beside it (``policy.pt`` + ``surrogate.pt``, loadable by
   ``method="amortized", checkpoint=...``).

Both models start from a policy checkpoint and the surrogate it was trained with (default: the
shipped pair), or (``--policy.grid K``) from a surrogate with the world-model head and a new policy that
reads it on K grid points per variable (:class:`acbo.policy.model.GridActionDist`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import ClassVar

import torch

from acbo.configs import config_from_argv, print_line
from acbo.e2e.curriculum import Curriculum, CurriculumState, as_range
from acbo.env import Env
from acbo.io import atomic_save, load_state
from acbo.policy.checkpoint import load_policy_checkpoint, load_pretrained_policy, save_policy
from acbo.policy.model import Policy, PolicyConfig
from acbo.policy.rewards import RewardSettings, combine
from acbo.policy.rollout import GroupDesign, PlayValidation, collect, play
from acbo.policy.update import UpdateSettings, grpo_update
from acbo.scm import Family
from acbo.seeding import generator
from acbo.surrogate import load_pretrained, load_surrogate
from acbo.surrogate.data import QuerySettings, sample_buffers
from acbo.surrogate.model import Surrogate
from acbo.surrogate.train import SurrogateLoss, surrogate_step, validation_auprc
from acbo.training import Loop, OptimConfig, RunConfig, leave_process_group, run_loop, world_size

KIND = "acbo e2e checkpoint"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class E2EValidation(PlayValidation):
    """Stage 3's validation on the current level's test stream: campaigns for the policy (played as
    deployed) and as many buffers of the same sizes for the surrogate."""

    chunks: int = 4
    """Batches the validation campaigns (and buffers) are split into, each drawing its own d and
    graph size from the level (1: one batch, one d)."""
    mc: int = 512
    """Common-random-number Monte Carlo samples for the validation campaigns' y* (nonlinear models;
    computed once per level, the slow part of a level change on a CPU; its largest standard error is
    logged as val_y_star_se)."""

    def __post_init__(self):
        super().__post_init__()
        for name in ("chunks", "mc"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"val_{name} must be a positive integer, got {v!r}")
        if self.chunks > self.campaigns:
            raise ValueError(f"val_chunks ({self.chunks}) must be at most val_campaigns ({self.campaigns})")


@dataclass(frozen=True)
class E2EConfig:
    """Stage-3 training run."""

    run: RunConfig = RunConfig(steps=200, batch_size=16, eval_every=10, out="runs/e2e")
    """Rounds (one GRPO update and surrogate_steps surrogate updates each), campaigns per round,
    cadence, seed, device, folder (e2e.pt and the exported pair)."""
    curriculum: Curriculum = Curriculum(max_steps=100)
    """The ladder of families ending at the training world, and the rule that climbs it."""
    design: GroupDesign = GroupDesign(size=4, horizon=(5, 10))
    """GRPO's groups (candidate interventions from one state) and the campaigns' length."""
    update: UpdateSettings = UpdateSettings()
    """One GRPO update."""
    rewards: RewardSettings = RewardSettings(mc=128)
    """Reward weights."""
    policy_optim: OptimConfig = OptimConfig(lr=1e-4)
    """The policy's AdamW optimizer."""
    surrogate_optim: OptimConfig = OptimConfig(lr=3e-5)
    """The surrogate's AdamW optimizer."""
    surrogate_steps: int = 1
    """Surrogate updates per round on the buffers the policy collected."""
    loss: SurrogateLoss = SurrogateLoss()
    """The surrogate's loss on the policy's buffers: the true parents, the exact posterior's marginals
    on linear buffers (``w_exact``) and, with the world-model head, the queries (no expert buffers
    here: ``w_expert`` must stay 0)."""
    training_queries: QuerySettings = QuerySettings()
    """World-model queries per buffer when the surrogate has the head."""
    init_pair: str = ""
    """Policy checkpoint to start from, with the surrogate of its pair ('' = the shipped pair); not
    with ``policy.grid`` > 0, which starts a new policy."""
    policy: PolicyConfig = PolicyConfig()
    """A new policy's architecture, used when ``policy.grid`` > 0: a policy that reads the world
    model on this many grid points per variable (untrained, it samples in proportion to the world
    model's expected improvement), with the surrogate ``surrogate``. Its ``token_dim`` is the
    surrogate's ``dim``, set by the trainer."""
    surrogate: str = ""
    """The surrogate a new grid policy reads ('' = the shipped one, ``acbo.surrogate.load_pretrained``);
    it needs the world-model head."""
    val: E2EValidation = E2EValidation()
    """The validation."""

    DERIVED: ClassVar[tuple[str, ...]] = ("policy.token_dim",)
    """Settings the trainer sets (the surrogate's width): not on the command line."""
    LEGACY: ClassVar[dict] = {
        "rounds": "run.steps", "val_every": "run.eval_every", **{k: f"run.{k}" for k in ("max_minutes", "batch_size",
                                                                                         "seed", "device", "out")},
        **{k: f"curriculum.{k}" for k in ("base", "levels", "threshold", "patience")},
        "level_rounds": "curriculum.max_steps", "group_size": "design.size", "horizon": "design.horizon",
        "epochs": "update.epochs", "minibatch": "update.minibatch", "policy_lr": "policy_optim.lr",
        "surrogate_lr": "surrogate_optim.lr", **{f"w_{k}": f"rewards.{k}" for k in ("improvement", "outcome",
                                                                                      "info_gain", "parent")},
        "reward_mc": ("rewards.mc", "training_queries.mc"), "query_vars": "training_queries.vars",
        "query_values": "training_queries.values", "init": "init_pair",
        "grid": "policy.grid", "policy_dim": "policy.dim", "policy_layers": "policy.layers",
        **{f"val_{k}": f"val.{k}" for k in ("campaigns", "chunks", "horizon", "mc")}}
    """The flat stage-3 settings of old runs and flags -> today's paths (such a run resumes)."""

    def __post_init__(self):
        if self.run.steps < 1:
            raise ValueError(f"rounds must be a positive integer, got {self.run.steps!r}")
        if self.design.max_set != 1:
            raise ValueError(f"stage 3 trains experiments of one variable; set actions (design.max_set = "
                             f"{self.design.max_set}) are trained in stage 2 (python -m acbo.policy.train)")
        if self.surrogate and not self.policy.grid:
            raise ValueError(f"surrogate {self.surrogate!r} is only read by a new grid policy (grid > 0); "
                             "a policy checkpoint (init) brings its own")
        if self.init_pair and self.policy.grid:
            raise ValueError(f"init_pair {self.init_pair!r} brings its own policy; policy.grid > 0 starts a new one: "
                             "give one or the other")
        if self.policy.token_dim != PolicyConfig().token_dim:
            raise ValueError("policy.token_dim is the surrogate's dim, which the trainer sets; leave it")
        if self.update.beta > 0 or self.update.bc_coef > 0 or self.loss.w_expert > 0:
            raise ValueError(f"stage 3 has no KL reference and no expert demonstrations: update.beta, update.bc_coef "
                             f"and loss.w_expert must be 0, got {self.update.beta}, {self.update.bc_coef}, "
                             f"{self.loss.w_expert}")
        if self.design.costs is not None:
            raise ValueError("stage 3 trains without costs (design.costs); train a cost head in stage 2 "
                             f"(python -m acbo.policy.train --design.costs ...), got {self.design.costs}")
        if self.design.mode != "candidates":
            raise ValueError(f"stage 3 forms its groups from candidate interventions; design.mode is {self.design.mode!r}")
        if isinstance(self.surrogate_steps, bool) or not isinstance(self.surrogate_steps, int) or self.surrogate_steps < 1:
            raise ValueError(f"surrogate_steps must be a positive integer, got {self.surrogate_steps!r}")


ADDED_LATER = {"policy.grid": 0, "policy.world": "network", "surrogate": "", "policy.dim": 64, "policy.layers": 2,
               "val.chunks": 1, "run.log_every": 1, **{f"update.{k}": v for k, v in asdict(UpdateSettings()).items()},
               **{f"loss.{k}": v for k, v in asdict(SurrogateLoss()).items()}, "policy.heads": 4, "policy.ff_mult": 2,
               "policy.token_dim": 64, "design.mode": "candidates", "design.scale_by_std": False,
               "policy_optim.weight_decay": 1e-4, "surrogate_optim.weight_decay": 1e-4,
               "design.max_set": 1, "rewards.cost": 0.0, "policy.stop_head": False, "design.costs": None,
               "policy.cost_head": False, "design.budget": False, "design.common_noise": False}
"""Settings added after the first stage-3 runs, or fixed by the code of old, with the value those runs had."""


def round_env(cfg: E2EConfig, fam: Family, r: int) -> tuple[Env, int, torch.Generator]:
    """The campaigns of round r on ``fam`` (train stream keyed by the family and the round)."""
    dev = cfg.run.device
    g = generator("train", "e2e", cfg.run.seed, fam.name, r, device=dev)
    lo, hi = as_range(fam.n_obs)
    n_obs = int(torch.randint(lo, hi + 1, (1,), generator=g, device=dev))
    T = int(torch.randint(cfg.design.horizon[0], cfg.design.horizon[1] + 1, (1,), generator=g, device=dev))
    return Env.from_family(fam, cfg.run.batch_size, n_obs, T, g, cfg.rewards.mc), T, g


def validation(cfg: E2EConfig, fam: Family) -> tuple[list[tuple[Env, torch.Tensor]], list, float]:
    """The level's validation, test stream: ``val.chunks`` batches of campaigns with their y*
    (policy), each of its own d, fresh buffers of the same sizes (surrogate), and the largest Monte
    Carlo standard error of the y*."""
    v = cfg.val
    g = generator("test", "e2e-val", fam.name, device=cfg.run.device)
    n_obs = as_range(fam.n_obs)[1]
    campaigns, buffers, se = [], [], 0.0
    for i in range(v.chunks):
        n = v.campaigns // v.chunks + (i < v.campaigns % v.chunks)
        env = Env.from_family(fam, n, n_obs, v.horizon, g, cfg.rewards.mc)
        buffers.append(sample_buffers(fam, n, n_obs, v.horizon, g))
        opt = env.scm.optimum(env.low, env.high, n_mc=v.mc)
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
    dev = cfg.run.device
    if cfg.policy.grid:
        surrogate = load_surrogate(cfg.surrogate, dev) if cfg.surrogate else load_pretrained(dev)
        if not surrogate.cfg.queries:
            raise ValueError(f"a grid policy reads the world model; the surrogate {cfg.surrogate or '(shipped)'} has no "
                             "world-model head")
        torch.manual_seed(cfg.run.seed)
        policy = Policy(replace(cfg.policy, token_dim=surrogate.cfg.dim)).to(dev)
    elif cfg.init_pair:
        policy, surrogate = load_policy_checkpoint(cfg.init_pair, dev)
    else:
        policy, surrogate = load_pretrained_policy(dev)
    for p in surrogate.parameters():
        p.requires_grad_(True)
    return policy.train(), surrogate.train()


def round_record(climb: "Climb", env: Env, T: int, stats: dict, s_terms: dict, comps: dict, batch, cfg: E2EConfig,
                 t0: float) -> dict:
    """The log record of one round: the level, both models' update terms, the rewards, time."""
    total = combine(comps, cfg.rewards.weights())
    return {"level": climb.state.level + 1, "family": climb.family.name, "d": env.d, "T": T,
            **{f"policy_{k}": v for k, v in stats.items()}, **{f"surrogate_{k}": v for k, v in s_terms.items()},
            "reward_mean": float(total.mean()), "reward_std": float(total.std()),
            "zero_var_groups": float(1 - batch.informative.float().mean()), "seconds": time.perf_counter() - t0}


class Climb:
    """Where a stage-3 run stands on its curriculum: the level, its family, its validation set."""

    def __init__(self, cfg: E2EConfig):
        self.cfg = cfg
        self.go(CurriculumState())

    def go(self, state: CurriculumState) -> None:
        """Stand on ``state``'s level (its validation set is built by :meth:`prepare`)."""
        self.state, self.family = state, self.cfg.curriculum.family(state.level)

    def prepare(self) -> None:
        self.val = validation(self.cfg, self.family)

    def advance(self, metrics: dict) -> dict:
        """After a round: the curriculum moves on the validation regret (when there was one that
        counted campaigns); the log entries of a move."""
        regret = metrics["val_regret_T"] if metrics.get("val_counted") else None
        state, why = self.cfg.curriculum.advance(self.state, 1, regret)
        self.state = state
        if not why:
            return {}
        self.go(state)
        self.prepare()
        return {"advanced": why}


def save_pair(cfg: E2EConfig, policy: Policy, surrogate: Surrogate, opts: tuple, climb: Climb, path: Path,
              done: int, history: list, elapsed: float) -> None:
    """The stage-3 checkpoint (both models, both optimizers, the curriculum, the log) and the pair
    exported beside it."""
    atomic_save({"kind": KIND, "format_version": FORMAT_VERSION, "step": done, "train_config": asdict(cfg),
                 "policy": {"model_config": asdict(policy.cfg), "state_dict": policy.state_dict()},
                 "surrogate": {"model_config": asdict(surrogate.cfg), "state_dict": surrogate.state_dict()},
                 "policy_opt": opts[0].state_dict(), "surrogate_opt": opts[1].state_dict(),
                 "curriculum": climb.state.to_dict(), "history": history, "elapsed_s": elapsed}, path)
    save_policy(path.with_name("policy.pt"), policy, surrogate, done, asdict(cfg))


def restore_pair(state: dict, policy: Policy, surrogate: Surrogate, opts: tuple, climb: Climb) -> float:
    """Load a stage-3 checkpoint (written by the same configuration: the same architectures as the
    starting pair); returns the seconds it had spent."""
    for model, opt, key in ((policy, opts[0], "policy"), (surrogate, opts[1], "surrogate")):
        model.load_state_dict(state[key]["state_dict"])
        opt.load_state_dict(state[f"{key}_opt"])
    climb.go(CurriculumState.from_dict(state["curriculum"]))
    return state["elapsed_s"]


def train(cfg: E2EConfig, log=print_line) -> tuple[Policy, Surrogate]:
    """Run (or resume) stage 3 in ``cfg.run.out``; returns the (policy, surrogate) pair. One process
    (no data parallel: the curriculum lives in process 0)."""
    if world_size() > 1:
        raise ValueError("stage 3 runs in one process (its curriculum is not shared between processes)")
    torch.manual_seed(cfg.run.seed)
    policy, surrogate = starting_pair(cfg)
    opts = cfg.policy_optim.adamw(policy.parameters()), cfg.surrogate_optim.adamw(surrogate.parameters())
    climb, clock = Climb(cfg), {"t0": time.perf_counter(), "before": 0.0}

    def step(r: int) -> dict:
        t0 = time.perf_counter()
        env, T, g = round_env(cfg, climb.family, r)                       # 1. the level's campaigns
        batch, comps = collect(policy.eval(), surrogate.eval(), env, cfg.design, cfg.rewards.weights(), g)
        stats = grpo_update(policy.train(), opts[0], batch, cfg.update, g)  # 2. the policy: GRPO
        data = env.training_batch()                                       # 3. the surrogate, on those buffers
        queries = cfg.training_queries.sample(data, g) if surrogate.train().cfg.queries else None
        s_terms = [surrogate_step(surrogate, opts[1], data, cfg.loss, queries) for _ in range(cfg.surrogate_steps)][-1]
        return {**round_record(climb, env, T, stats, s_terms, comps, batch, cfg, t0),
                "elapsed_s": clock["before"] + time.perf_counter() - clock["t0"]}

    def check() -> dict:
        return {"level": climb.state.level + 1, **validate(policy, surrogate, climb.val, cfg.run.seed)}

    def restore(state: dict) -> float:
        clock["before"] = restore_pair(state, policy, surrogate, opts, climb)
        return clock["before"]

    run_loop(cfg.run, cfg, Loop(step=step, validate=check,
                                save=lambda *a: save_pair(cfg, policy, surrogate, opts, climb, *a),
                                read=read_e2e_checkpoint, restore=restore, checkpoint="e2e.pt",
                                optimizers=[(opts[0], cfg.policy_optim.lr), (opts[1], cfg.surrogate_optim.lr)],
                                unit="round", first_validation=True, begin=lambda resumed: climb.prepare(),
                                after=climb.advance, where=lambda: f" on level {climb.state.level + 1}",
                                legacy=cfg.LEGACY, defaults=ADDED_LATER), log)
    return policy.eval(), surrogate.eval()


def main(argv: list[str] | None = None) -> None:
    train(config_from_argv(E2EConfig, argv, __doc__.splitlines()[0], prog="python -m acbo.e2e.train"))
    leave_process_group()  # a failed run exits with its error instead: a barrier there could wait forever


if __name__ == "__main__":
    main()
