"""Stage 2: train the acquisition policy with GRPO on verifiable rewards (optionally after BC).

``python -m acbo.policy.train --run.out runs/policy`` (every setting is a dotted flag; ``--help``). One iteration:

1. **rollout**: B SCMs from a training family (train stream), n_obs observational rows each,
   T steps under the current policy (no gradients). Two group designs (``mode``):
   - ``candidates`` (the seed's design): at every state, G candidate interventions are sampled,
     each is evaluated (E[Y | do], a simulated outcome, the surrogate's posterior after it) and
     rewarded; advantage = reward - group mean; the campaign continues with the first candidate
     (they are i.i.d., so this is an on-policy step);
   - ``trajectory``: each SCM and starting buffer is copied G times and the G copies roll out
     T steps independently; a trajectory's return is the sum of its step rewards and its
     advantage (return - group mean) applies to every step of it (per-trajectory advantages).
2. **advantages**: per group, optionally divided by the group std (off by default, after
   Dr. GRPO); groups whose rewards are all equal are skipped and counted.
3. **update**: mu epochs of minibatches over the collected decisions with the clipped ratio
   loss, an entropy bonus, an optional k3 KL to the reference (the initial, e.g. BC, policy) and
   an optional BC auxiliary loss on expert demonstrations.
4. **diagnostics**: reward components (mean, std), loss, KL, clip fraction, entropy,
   zero-variance groups, env steps/s; every ``val_every`` iterations the normalised regret on a
   validation family's test stream, and an atomic checkpoint (resumable).

The surrogate is frozen here (its encoding is the policy's input); the checkpoint folder holds
the pair (``policy.pt`` and the ``surrogate.pt`` it reads). The steps themselves live in
:mod:`acbo.policy.rollout` (rollouts, validation) and :mod:`acbo.policy.update` (GRPO, BC), so
that stage 3 calls the same functions.

Data parallel: ``--data.shards S`` draws each iteration's B campaigns as S sub-batches of B / S (each
its own train-stream key) and updates on minibatches of minibatch / S decisions from each; under
``torchrun --nproc_per_node W`` (S a multiple of W) every process rolls out and updates its share
of the shards with the gradients summed, and W processes train what one process with the same S
does (to float rounding; tests/test_distributed.py). Process 0 validates, logs and checkpoints;
the log's reward statistics are over its own shards. ``--parallel.workers N [--parallel.backend ray
[--address ...]]`` rolls the shards out as N parallel tasks (local processes or Ray), each with
the policy's current weights: the same rollouts, so the same training.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, replace
from typing import ClassVar
from pathlib import Path

import torch

from acbo.configs import config_from_argv, format_record, print_line
from acbo.env import Env
from acbo.io import cached_loader
from acbo.parallel import Placement, map_tasks
from acbo.policy.bc import expert_agreement, load_demo_batch
from acbo.policy.checkpoint import load_policy_checkpoint, read_policy_checkpoint, save_policy
from acbo.policy.model import Policy, PolicyConfig
from acbo.policy.rewards import RewardSettings, combine
from acbo.policy.rollout import BUDGET_CAP, GroupDesign, PlayValidation, collect, play
from acbo.policy.update import UpdateSettings, bc_step, grpo_update
from acbo.scm import Draws, Family, resolve_family
from acbo.scm.optimum import set_optimum
from acbo.seeding import generator
from acbo.surrogate import Surrogate, load_pretrained, load_surrogate
from acbo.training import Loop, OptimConfig, RunConfig, leave_process_group, restore_into, run_loop, shard_share


TRAINABLE = ("all", "cost_head")
"""What a stage-2 run may update: the whole policy, or only its cost head."""


@dataclass(frozen=True)
class BCSettings:
    """Behaviour cloning of the expert's decisions before GRPO (the warm start)."""

    folder: str = ""
    """Folder of expert demonstrations ('' = none); also what ``update.bc_coef`` imitates."""
    steps: int = 0
    """Behaviour-cloning steps before GRPO."""


@dataclass(frozen=True)
class PolicyValidation(PlayValidation):
    """Stage 2's validation campaigns: a held-out family's test stream, played as deployed."""

    family: str | Family = "lin-er-20"
    """Validation family (its test stream; never trained on)."""

    def __post_init__(self):
        super().__post_init__()
        resolve_family(self.family)


@dataclass(frozen=True)
class PolicyTrainConfig:
    """Stage-2 training run."""

    run: RunConfig = RunConfig(steps=300, eval_every=25, out="runs/policy")
    """Iterations (0 with bc.steps > 0: a BC-only run), cadence, seed, device, folder (policy.pt)."""
    optim: OptimConfig = OptimConfig(lr=3e-4)
    """The AdamW optimizer."""
    data: Draws = Draws(n_obs=(50, 200))
    """Training families, observational rows per campaign, shards."""
    design: GroupDesign = GroupDesign()
    """GRPO's groups and the campaigns' length."""
    update: UpdateSettings = UpdateSettings()
    """One GRPO update."""
    rewards: RewardSettings = RewardSettings()
    """Reward weights."""
    policy: PolicyConfig = PolicyConfig()
    """The architecture of a new policy (without ``init_policy``; its ``token_dim`` is the
    surrogate's ``dim``, which the trainer sets)."""
    bc: BCSettings = BCSettings()
    """The behaviour-cloning warm start."""
    val: PolicyValidation = PolicyValidation()
    """The validation campaigns."""
    parallel: Placement = Placement()
    """Where rollouts run."""
    init_policy: str = ""
    """Policy checkpoint to start from (e.g. a BC run; it brings its architecture); also the KL
    reference. '' = a new policy (``policy``)."""
    surrogate: str = ""
    """Surrogate checkpoint ('' = the shipped one); frozen, and written beside the policy (the pair)."""
    trainable: str = "all"
    """Which weights GRPO updates (:data:`TRAINABLE`): ``all``, or ``cost_head`` only (with
    ``design.costs``: the rest of the policy, and so every decision without costs, stays the
    starting policy's; a stop head added for set actions stays at zero)."""
    DERIVED: ClassVar[tuple[str, ...]] = ("policy.token_dim",)
    """Settings the trainer sets (the surrogate's width): not on the command line."""
    LEGACY: ClassVar[dict] = {
        **{k: f"run.{k}" for k in ("max_minutes", "batch_size", "seed", "device", "out")},
        "iterations": "run.steps", "val_every": "run.eval_every", "lr": "optim.lr",
        **{k: f"data.{k}" for k in ("families", "n_obs", "shards")},
        **{k: f"design.{k}" for k in ("mode", "scale_by_std", "horizon")}, "group_size": "design.size",
        **{k: f"update.{k}" for k in ("epochs", "minibatch", "eps_low", "eps_high", "beta", "entropy_coef", "bc_coef")},
        **{f"w_{k}": f"rewards.{k}" for k in ("improvement", "outcome", "info_gain", "parent")}, "reward_mc": "rewards.mc",
        **{k: f"policy.{k}" for k in ("dim", "layers", "heads", "grid")}, "bc_demos": "bc.folder", "bc_steps": "bc.steps",
        "init": "init_policy",
        "val_family": "val.family", "val_campaigns": "val.campaigns", "val_horizon": "val.horizon",
        "rollout_workers": "parallel.workers", "backend": "parallel.backend", "address": "parallel.address"}
    """The flat stage-2 settings of old runs and flags -> today's paths (such a run resumes)."""

    def __post_init__(self):
        if self.run.steps == 0 and self.bc.steps == 0:
            raise ValueError(f"iterations must be >= 1 (or 0 for a BC-only run with bc_steps > 0), got {self.run.steps}")
        if self.run.batch_size % self.data.shards or self.update.minibatch % self.data.shards:
            raise ValueError(f"shards must be a positive integer dividing batch_size {self.run.batch_size} and minibatch "
                             f"{self.update.minibatch}, got {self.data.shards!r}")
        if not self.parallel.here and self.run.device != "cpu":
            raise ValueError(f"rollout workers run on the CPU; device is {self.run.device!r} (use rollout_workers=1)")
        if (self.bc.steps > 0 or self.update.bc_coef > 0) and not self.bc.folder:
            raise ValueError("bc_steps / bc_coef need bc_demos")
        if self.policy.token_dim != PolicyConfig().token_dim:
            raise ValueError("policy.token_dim is the surrogate's dim, which the trainer sets; leave it")
        if self.policy.stop_head and self.design.max_set == 1:
            raise ValueError("policy.stop_head is trained with set actions (design.max_set = 2), which add it themselves")
        if self.design.max_set == 2 and not self.init_policy and not self.policy.grid:
            raise ValueError("design.max_set = 2 needs a policy that reads the world model: give policy.grid >= 2 "
                             "(and policy.world), or an init_policy that has a grid")
        if self.trainable not in TRAINABLE:
            raise ValueError(f"trainable must be one of {TRAINABLE}, got {self.trainable!r}")
        if self.trainable == "cost_head" and self.design.costs is None:
            raise ValueError("trainable 'cost_head' trains the head that reads costs: it needs design.costs")
        if self.trainable == "cost_head" and (self.bc.steps > 0 or self.update.bc_coef > 0):
            raise ValueError("trainable 'cost_head' trains only the head that reads costs, which the expert's "
                             "demonstrations (without costs) do not reach: leave bc.steps and update.bc_coef at 0")
        if self.design.costs is not None and not self.init_policy and not self.policy.grid:
            raise ValueError("design.costs are read on the world model's grid: give policy.grid >= 2, or an "
                             "init_policy that has a grid")
        if self.init_policy and self.policy != PolicyConfig():
            raise ValueError(f"init_policy {self.init_policy!r} brings its own architecture; policy.* describe a new "
                             f"policy: give one or the other")


ADDED_LATER = {"data.shards": 1, "policy.grid": 0, "policy.world": "network", "run.log_every": 1, "policy.ff_mult": 2,
               "policy.token_dim": 64, "update.max_grad_norm": 1.0, "optim.weight_decay": 1e-4, "design.max_set": 1,
               "rewards.cost": 0.0, "policy.stop_head": False, "design.costs": None, "policy.cost_head": False,
               "trainable": "all", "design.budget": False, "design.common_noise": False}
"""Settings that runs written before them lack, with the value those runs mean: such a run resumes."""
PLACEMENT = ("parallel.workers", "parallel.backend", "parallel.address")
"""Settings of where a run's rollouts run: a resumed run may change them (the same rollouts)."""


VAL_SET_MC = 2000
"""Monte Carlo samples of y* over sets in the validation campaigns (the search evaluates every pair
of variables on a grid: at the default 10,000, 32 campaigns of d = 29 took 7.5 minutes on the CPU box)."""


def make_validation(cfg: PolicyTrainConfig) -> tuple[Env, torch.Tensor]:
    """The validation campaigns (the validation family's test stream, its own data budget, drawn
    once where it is a range) and y* (over experiments of up to ``design.max_set`` variables)."""
    fam = resolve_family(cfg.val.family)
    g = generator("test", "policy-val", fam.name, device=cfg.run.device)
    env = Env.from_family(fam, cfg.val.campaigns, fam.draw_n_obs(g), cfg.val.horizon, g, cfg.rewards.mc)
    if cfg.design.costs is not None:
        env = env.with_costs(*cfg.design.costs, g)
    if cfg.design.budget:
        env = env.with_budget(cfg.val.horizon, BUDGET_CAP * cfg.val.horizon)
    if cfg.design.max_set > 1:
        return env, set_optimum(env.scm, env.low, env.high, env.intervenable, cfg.design.max_set, n_mc=VAL_SET_MC).value
    return env, env.scm.optimum(env.low, env.high, intervenable=env.intervenable).value


def validate(policy: Policy, surrogate: Surrogate, val: tuple[Env, torch.Tensor], seed: int, max_set: int = 1
             ) -> dict[str, float]:
    """Validation campaigns played as deployed (sampled actions; experiments of up to ``max_set``
    variables): regret at T, mean over steps, fraction of steps on true parents."""
    was_training = policy.training
    policy.eval()
    out = play(policy, surrogate, val[0], val[1], generator("test", "policy-val", seed, device=val[0].values.device),
               max_set)
    policy.train(was_training)
    return out


def frozen_surrogate(path: str, device: str) -> Surrogate:
    """The surrogate a policy trains on (``path``; '' = the shipped one), frozen."""
    model = load_pretrained(device) if not path else load_surrogate(path, device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def iteration_env(cfg: PolicyTrainConfig, it: int, shard: int = 0) -> tuple[Env, str, int, torch.Generator]:
    """The campaigns of iteration ``it`` (with shards: its sub-batch ``shard``): the train stream
    keyed by the iteration (a resumed run draws the same problems; every shard has the iteration's
    n_obs and T); returns (env, family name, T, the shard's generator)."""
    dev = cfg.run.device
    g = generator("train", "policy", cfg.run.seed, it, device=dev)
    fam = resolve_family(cfg.data.families[it % len(cfg.data.families)])
    n_obs = int(torch.randint(cfg.data.n_obs[0], cfg.data.n_obs[1] + 1, (1,), generator=g, device=dev))
    T = int(torch.randint(cfg.design.horizon[0], cfg.design.horizon[1] + 1, (1,), generator=g, device=dev))
    if cfg.data.shards > 1:
        g = generator("train", "policy", cfg.run.seed, it, "shard", shard, device=dev)
    env = Env.from_family(fam, cfg.run.batch_size // cfg.data.shards, n_obs, T, g, cfg.rewards.mc)
    if cfg.design.costs is not None:
        env = env.with_costs(*cfg.design.costs, g)
    if cfg.design.budget:
        env = env.with_budget(T, BUDGET_CAP * T)
    if cfg.design.mode == "trajectory":
        env = env.repeat(cfg.design.size, cfg.design.common_noise)
    return env, fam.name, T, g


def rollout_shard(policy: Policy, surrogate: Surrogate, cfg: PolicyTrainConfig, it: int, k: int) -> tuple:
    """Shard k of iteration it under ``policy`` (no gradients): (campaigns, d, family, T, the
    rollout, its reward components, the shard's generator after it, which the update goes on with)."""
    env, fam, T, g = iteration_env(cfg, it, k)
    batch, comps = collect(policy, surrogate, env, cfg.design, cfg.rewards.weights(), g)
    return env.B, env.d, fam, T, batch, comps, g


@cached_loader
def worker_surrogate(path: str) -> Surrogate:
    """The frozen surrogate of a run, loaded once per rollout worker (workers run on the CPU)."""
    return frozen_surrogate(path, "cpu")


def rollout_task(task: tuple[PolicyTrainConfig, int, int, PolicyConfig, dict]) -> tuple:
    """A rollout worker's task (cfg, iteration, shard, the policy's architecture and weights):
    :func:`rollout_shard` with the generator's state in place of the generator (a generator does
    not travel)."""
    cfg, it, k, arch, weights = task
    surrogate = worker_surrogate(cfg.surrogate)
    policy = Policy(arch)
    policy.load_state_dict(weights)
    *head, g = rollout_shard(policy.eval(), surrogate, cfg, it, k)
    return (*head, g.get_state())


def rollouts(policy: Policy, surrogate: Surrogate, cfg: PolicyTrainConfig, it: int, mine: list[int]) -> list[tuple]:
    """This process's shards of iteration it, rolled out here or by the rollout workers."""
    if cfg.parallel.here:
        return [rollout_shard(policy, surrogate, cfg, it, k) for k in mine]
    weights = {k: v.detach().cpu() for k, v in policy.state_dict().items()}
    done = map_tasks(rollout_task, [(cfg, it, k, policy.cfg, weights) for k in mine], workers=cfg.parallel.workers,
                     progress=False, backend=cfg.parallel.backend, address=cfg.parallel.address or None)
    out = []
    for *head, state in done:
        g = torch.Generator(device=cfg.run.device)
        g.set_state(state)
        out.append((*head, g))
    return out


def bc_warm_start(policy: Policy, opt: torch.optim.Optimizer, demos, cfg: PolicyTrainConfig, log) -> None:
    """Phase 0: ``bc.steps`` behaviour-cloning steps on the expert's decisions."""
    for s in range(cfg.bc.steps):
        terms = bc_step(policy, opt, demos, cfg.update.minibatch,
                        generator("train", "bc", cfg.run.seed, s, device=cfg.run.device))
        if (s + 1) % 50 == 0 or s + 1 == cfg.bc.steps:
            log(f"bc step={s + 1} " + format_record({**terms, "expert_agreement": expert_agreement(policy, demos)}))


def iteration_record(cfg: PolicyTrainConfig, shards: list[tuple], stats: dict, opt: torch.optim.Optimizer,
                     t_roll: float, t0: float) -> dict:
    """The log record of one iteration from this process's shards (as :func:`rollout_shard` returns
    them): update statistics, reward components (mean, std), the share of zero-variance groups,
    the learning rate and throughput (with a budget: the components and groups of the decisions
    a budget paid for, the steps the longest campaign ran, ``steps_run``, and the share of the
    steps run that a budget paid for, ``paid_frac``)."""
    B, d, fam, T = sum(sh[0] for sh in shards), shards[0][1], shards[0][2], shards[0][3]
    informative = torch.cat([sh[4].informative for sh in shards])
    paid = lambda sh, v: v.flatten() if "paid" not in sh[5] else v[sh[5]["paid"] > 0].flatten()
    comps = {k: torch.cat([paid(sh, sh[5][k]) for sh in shards]) for k in shards[0][5] if k != "paid"}
    steps = sum(sh[4].var.shape[0] * sh[4].var.shape[1] for sh in shards)                     # decisions x candidates
    budget = {"steps_run": max(sh[5]["paid"].shape[0] for sh in shards),
              "paid_frac": float(torch.cat([sh[5]["paid"].flatten() for sh in shards]).mean())} if cfg.design.budget else {}
    rec = {"family": fam, "d": d, "T": T, **budget,
           **{k: v for k, v in stats.items() if k != "updates"},
           "updates": stats["updates"], "zero_var_groups": float(1 - informative.float().mean()),
           "lr": opt.param_groups[0]["lr"], "env_steps_per_s": steps / t_roll, "seconds": time.perf_counter() - t0}
    total = combine(comps, cfg.rewards.weights())
    rec["reward_mean"], rec["reward_std"] = float(total.mean()), float(total.std())
    for k, v in comps.items():
        rec[f"r_{k}"], rec[f"r_{k}_std"] = float(v.mean()), float(v.std())
    return rec


def starting_policy(cfg: PolicyTrainConfig, surrogate: Surrogate) -> Policy:
    """The policy ``cfg.init_policy`` (reading ``surrogate``), or a new one seeded by the run's
    seed; with set actions (``design.max_set = 2``) with a stop head (:meth:`Policy.with_stop_head`),
    with costs (``design.costs``) with a cost head (:meth:`Policy.with_cost_head`); with
    ``trainable = "cost_head"`` everything else frozen."""
    torch.manual_seed(cfg.run.seed)
    if cfg.init_policy:
        policy = load_policy_checkpoint(cfg.init_policy, cfg.run.device, surrogate)[0].train()
    else:
        policy = Policy(replace(cfg.policy, token_dim=surrogate.cfg.dim)).to(cfg.run.device)
    if (cfg.design.max_set > 1 or cfg.design.costs is not None) and not policy.cfg.grid:
        raise ValueError("design.max_set = 2 and design.costs need a policy that reads the world model "
                         "(policy.grid >= 2): the set action's partner and the costs are read on its grid")
    if cfg.design.max_set > 1:
        policy = policy.with_stop_head()
    if cfg.design.costs is not None:
        policy = policy.with_cost_head()
    if cfg.trainable == "cost_head":
        for name, p in policy.named_parameters():
            p.requires_grad_(name.startswith("cost_head."))
    return policy


def train(cfg: PolicyTrainConfig, log=print_line) -> Policy:
    """Run (or resume) stage-2 training in ``cfg.run.out``; returns the policy. Under ``torchrun``
    every process takes its share of the shards; process 0 validates, logs and writes the checkpoint."""
    rank, world = shard_share(cfg.data.shards, cfg.run.device)
    log = log if rank == 0 else _quiet
    surrogate = frozen_surrogate(cfg.surrogate, cfg.run.device)
    policy = starting_policy(cfg, surrogate)
    ref = copy.deepcopy(policy).eval() if cfg.update.beta > 0 else None
    opt = cfg.optim.adamw([p for p in policy.parameters() if p.requires_grad])
    demos = load_demo_batch(cfg.bc.folder, surrogate, cfg.run.device, grid=policy.cfg.grid,
                            world=policy.cfg.world) if cfg.bc.folder else None
    val = []

    def begin(resumed: bool) -> None:
        if not resumed and cfg.bc.steps > 0:  # phase 0: the behaviour-cloning warm start
            bc_warm_start(policy, opt, demos, cfg, log)
        if ref is not None and not resumed:  # the reference: the policy training starts from
            ref.load_state_dict(policy.state_dict())
        val.extend([make_validation(cfg)] if rank == 0 else [])

    def step(it: int) -> dict:
        t0 = time.perf_counter()
        shards = rollouts(policy.eval(), surrogate, cfg, it, list(range(rank, cfg.data.shards, world)))  # 1. rollout
        t_roll = time.perf_counter() - t0
        stats = grpo_update(policy.train(), opt, [(sh[4], sh[6]) for sh in shards], cfg.update, ref=ref, demos=demos,
                            n_shards=cfg.data.shards)                                               # 2. update
        return iteration_record(cfg, shards, stats, opt, t_roll, t0) if rank == 0 else {}           # 3. diagnostics

    def save(path: Path, done: int, history: list, elapsed: float) -> None:
        save_policy(path, policy, surrogate, done, asdict(cfg), {"opt": opt.state_dict(), "elapsed_s": elapsed,
                                                                 "ref": None if ref is None else ref.state_dict()}, history)

    def restore(state: dict) -> float:
        if ref is not None and state["optimizer"].get("ref") is not None:  # runs before it: the starting policy
            ref.load_state_dict(state["optimizer"]["ref"])
        return restore_into(policy, opt)(state)

    run_loop(cfg.run, cfg, Loop(step=step, validate=lambda: validate(policy, surrogate, val[0], cfg.run.seed,
                                                                     cfg.design.max_set),
                                save=save,
                                read=read_policy_checkpoint, restore=restore, checkpoint="policy.pt",
                                optimizers=[(opt, cfg.optim.lr)], models=[policy] + ([ref] if ref is not None else []),
                                unit="iteration", first_validation=True, begin=begin, legacy=cfg.LEGACY,
                                defaults=ADDED_LATER, placement=PLACEMENT), log)
    return policy.eval()


def _quiet(line: str) -> None:
    """The log of processes other than 0."""


def main(argv: list[str] | None = None) -> None:
    train(config_from_argv(PolicyTrainConfig, argv, __doc__.splitlines()[0], prog="python -m acbo.policy.train"))
    leave_process_group()  # a failed run exits with its error instead: a barrier there could wait forever


if __name__ == "__main__":
    main()
