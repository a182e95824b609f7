"""Stage 2: train the acquisition policy with GRPO on verifiable rewards (optionally after BC).

``python -m acbo.policy.train --out runs/policy`` (every config field is a flag). One iteration:

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

Data parallel: ``--shards S`` draws each iteration's B campaigns as S sub-batches of B / S (each
its own train-stream key) and updates on minibatches of minibatch / S decisions from each; under
``torchrun --nproc_per_node W`` (S a multiple of W) every process rolls out and updates its share
of the shards with the gradients summed, and W processes train what one process with the same S
does (to float rounding; tests/test_distributed.py). Process 0 validates, logs and checkpoints;
the log's reward statistics are over its own shards. ``--rollout-workers N [--backend ray
[--address ...]]`` rolls the shards out as N parallel tasks (local processes or Ray), each with
the policy's current weights: the same rollouts, so the same training.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from acbo.configs import config_from_argv, format_record, print_line
from acbo.env import Env
from acbo.parallel import BACKENDS, map_tasks
from acbo.policy.bc import expert_agreement, load_demo_batch
from acbo.policy.checkpoint import load_policy_checkpoint, read_policy_checkpoint, save_policy
from acbo.policy.model import Policy, PolicyConfig
from acbo.policy.rewards import combine
from acbo.policy.rollout import MODES, GroupDesign, Rollout, collect, play
from acbo.policy.update import UpdateSettings, bc_step, grpo_update
from acbo.scm import Family, resolve_family
from acbo.seeding import generator
from acbo.surrogate import Surrogate, load_pretrained, load_surrogate
from acbo.training import Budget, append_jsonl, broadcast_params, from_process_0, process_group, resume, set_lr


@dataclass(frozen=True)
class PolicyTrainConfig:
    """Stage-2 training run."""

    families: tuple[str | Family, ...] = ("train-lin", "train-nonlin")
    """Training families (registered names or Family objects), cycled iteration by iteration (train stream)."""
    mode: str = "candidates"
    """Group design: 'candidates' (G interventions from one state) or 'trajectory' (G rollouts)."""
    iterations: int = 300
    """GRPO iterations (rollout + update); 0 with bc_steps > 0 is a BC-only run."""
    max_minutes: float = 0.0
    """Wall-time budget, over all pieces of a resumed run; the learning-rate schedule follows
    max(iteration, time) progress and the run stops when it is spent (0: no budget)."""
    batch_size: int = 32
    """SCMs per iteration (B)."""
    group_size: int = 8
    """Group size G."""
    horizon: tuple[int, int] = (10, 20)
    """Steps per campaign (T), uniform per iteration (the policy sees steps taken and left)."""
    val_horizon: int = 10
    """T of the validation campaigns."""
    n_obs: tuple[int, int] = (50, 200)
    """Observational rows per campaign, uniform per iteration."""
    epochs: int = 2
    """Update epochs per batch (mu > 1, so the clipping acts)."""
    minibatch: int = 256
    """Decisions per gradient step."""
    lr: float = 3e-4
    """AdamW learning rate (cosine decay to 10%)."""
    eps_low: float = 0.2
    """Lower clip range of the ratio (PPO)."""
    eps_high: float = 0.28
    """Upper clip range (DAPO's clip-higher)."""
    beta: float = 0.0
    """Weight of the k3 KL to the reference policy (the initial policy)."""
    entropy_coef: float = 1e-3
    """Entropy bonus."""
    scale_by_std: bool = False
    """Divide advantages by the group std (GRPO) or not (Dr. GRPO, the default)."""
    w_improvement: float = 1.0
    """Reward weight: lowering the best-so-far E[Y], in observational std of Y."""
    w_outcome: float = 0.1
    """Reward weight: E[Y | do] below the observational mean, in its std (dense)."""
    w_info_gain: float = 0.1
    """Reward weight: information gain of the surrogate's parent posterior (nats)."""
    w_parent: float = 0.1
    """Reward weight: intervening on a true parent (training only)."""
    reward_mc: int = 256
    """Monte Carlo samples for E[Y | do] of nonlinear SCMs in rewards (exact for linear)."""
    init: str = ""
    """Policy checkpoint to start from (e.g. a BC run); also the KL reference. '' = random init."""
    bc_demos: str = ""
    """Folder of expert demonstrations for behaviour cloning ('' = none)."""
    bc_steps: int = 0
    """Behaviour-cloning steps before GRPO (warm start)."""
    bc_coef: float = 0.0
    """Weight of the BC loss as an auxiliary term during GRPO."""
    surrogate: str = ""
    """Surrogate checkpoint ('' = the shipped one); frozen, and written beside the policy (the pair)."""
    dim: int = 64
    """Policy width."""
    layers: int = 2
    """Policy attention layers over variables."""
    grid: int = 0
    """World-model grid points per variable the policy reads (0: none; needs a surrogate with the
    world-model head)."""
    heads: int = 4
    """Policy attention heads."""
    val_family: str | Family = "lin-er-20"
    """Validation family (its test stream; never trained on)."""
    val_campaigns: int = 32
    """Validation campaigns (regret at T)."""
    val_every: int = 25
    """Iterations between validation and checkpoint."""
    seed: int = 0
    """Seed of the training stream and the initialisation."""
    rollout_workers: int = 1
    """Processes that roll out an iteration's shards at once (CPU): 1 rolls them out here; more
    run them as tasks of ``backend`` (each shard a task with the policy's current weights; the
    same rollouts as here)."""
    backend: str = "local"
    """Where rollout tasks run with rollout_workers > 1: 'local' processes or 'ray' (a cluster at
    ``address``, or one started for the run with rollout_workers CPUs)."""
    address: str = ""
    """A Ray cluster's address for backend 'ray' ('' = start one here)."""
    shards: int = 1
    """An iteration's campaigns are drawn as this many sub-batches of batch_size / shards, and a
    minibatch takes minibatch / shards decisions from each; under torchrun the processes share
    the shards (see the module docstring). 1: one batch, the stream of every earlier run."""
    device: str = "cpu"
    """Training device."""
    out: str = "runs/policy"
    """Folder for the checkpoint (policy.pt) and the log (log.jsonl); an existing run resumes."""

    def __post_init__(self):
        self.design()  # mode and group size
        if self.iterations < 0 or (self.iterations == 0 and self.bc_steps == 0):
            raise ValueError(f"iterations must be >= 1 (or 0 for a BC-only run with bc_steps > 0), got {self.iterations}")
        if not 1 <= self.horizon[0] <= self.horizon[1]:
            raise ValueError(f"horizon must be a range (low, high) with 1 <= low <= high, got {self.horizon}")
        for name in ("batch_size", "val_horizon", "epochs", "minibatch", "val_campaigns", "val_every", "reward_mc"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 2 <= self.n_obs[0] <= self.n_obs[1]:
            raise ValueError(f"n_obs must be a range (low, high) with 2 <= low <= high, got {self.n_obs}")
        for f in self.families + (self.val_family,):
            resolve_family(f)
        if isinstance(self.shards, bool) or not isinstance(self.shards, int) or self.shards < 1 \
                or self.batch_size % self.shards or self.minibatch % self.shards:
            raise ValueError(f"shards must be a positive integer dividing batch_size {self.batch_size} and minibatch "
                             f"{self.minibatch}, got {self.shards!r}")
        if self.rollout_workers < 1:
            raise ValueError(f"rollout_workers must be >= 1, got {self.rollout_workers}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.address and self.backend != "ray":
            raise ValueError(f"an address is for the ray backend; backend is {self.backend!r}")
        if (self.rollout_workers > 1 or self.backend == "ray") and self.device != "cpu":
            raise ValueError(f"rollout workers run on the CPU; device is {self.device!r} (use rollout_workers=1)")

    def weights(self) -> dict[str, float]:
        return {"improvement": self.w_improvement, "outcome": self.w_outcome, "info_gain": self.w_info_gain,
                "parent": self.w_parent}

    def model_config(self, token_dim: int) -> PolicyConfig:
        return PolicyConfig(token_dim=token_dim, dim=self.dim, heads=self.heads, layers=self.layers, grid=self.grid)

    def design(self) -> GroupDesign:
        return GroupDesign(self.mode, self.group_size, self.scale_by_std)

    def update_settings(self) -> UpdateSettings:
        return UpdateSettings(self.epochs, self.minibatch, self.eps_low, self.eps_high, self.beta, self.entropy_coef,
                              self.bc_coef)


ADDED_LATER = {"shards": 1, "grid": 0}
"""Training settings that runs written before them lack, with the value those runs mean: such a run resumes."""
PLACEMENT = ("rollout_workers", "backend", "address")
"""Settings of where a run's rollouts run: a resumed run may change them (the same rollouts)."""


def make_validation(cfg: PolicyTrainConfig) -> tuple[Env, torch.Tensor]:
    """The validation campaigns (the validation family's test stream, its own data budget) and y*."""
    fam = resolve_family(cfg.val_family)
    g = generator("test", "policy-val", fam.name, device=cfg.device)
    env = Env.from_family(fam, cfg.val_campaigns, fam.n_obs, cfg.val_horizon, g, cfg.reward_mc)
    return env, env.scm.optimum(env.low, env.high).value


def validate(policy: Policy, surrogate: Surrogate, val: tuple[Env, torch.Tensor], seed: int) -> dict[str, float]:
    """Validation campaigns played as deployed (sampled actions): regret at T, mean over steps,
    fraction of steps on true parents."""
    was_training = policy.training
    policy.eval()
    out = play(policy, surrogate, val[0], val[1], generator("test", "policy-val", seed, device=val[0].values.device))
    policy.train(was_training)
    return out


def frozen_surrogate(cfg: PolicyTrainConfig) -> Surrogate:
    model = load_pretrained(cfg.device) if not cfg.surrogate else load_surrogate(cfg.surrogate, cfg.device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def iteration_env(cfg: PolicyTrainConfig, it: int, shard: int = 0) -> tuple[Env, str, int, torch.Generator]:
    """The campaigns of iteration ``it`` (with shards: its sub-batch ``shard``): the train stream
    keyed by the iteration (a resumed run draws the same problems; every shard has the iteration's
    n_obs and T); returns (env, family name, T, the shard's generator)."""
    g = generator("train", "policy", cfg.seed, it, device=cfg.device)
    fam = resolve_family(cfg.families[it % len(cfg.families)])
    n_obs = int(torch.randint(cfg.n_obs[0], cfg.n_obs[1] + 1, (1,), generator=g, device=cfg.device))
    T = int(torch.randint(cfg.horizon[0], cfg.horizon[1] + 1, (1,), generator=g, device=cfg.device))
    if cfg.shards > 1:
        g = generator("train", "policy", cfg.seed, it, "shard", shard, device=cfg.device)
    env = Env.from_family(fam, cfg.batch_size // cfg.shards, n_obs, T, g, cfg.reward_mc)
    if cfg.mode == "trajectory":
        env = env.repeat(cfg.group_size)
    return env, fam.name, T, g


def rollout_shard(policy: Policy, surrogate: Surrogate, cfg: PolicyTrainConfig, it: int, k: int) -> tuple:
    """Shard k of iteration it under ``policy`` (no gradients): (campaigns, d, family, T, the
    rollout, its reward components, the shard's generator after it, which the update goes on with)."""
    env, fam, T, g = iteration_env(cfg, it, k)
    batch, comps = collect(policy, surrogate, env, cfg.design(), cfg.weights(), g)
    return env.B, env.d, fam, T, batch, comps, g


_WORKER_SURROGATES: dict[str, Surrogate] = {}
"""The frozen surrogate of each run, loaded once per rollout worker."""


def rollout_task(task: tuple[PolicyTrainConfig, int, int, dict]) -> tuple:
    """A rollout worker's task (cfg, iteration, shard, policy weights): :func:`rollout_shard`
    with the generator's state in place of the generator (a generator does not travel)."""
    cfg, it, k, weights = task
    if cfg.surrogate not in _WORKER_SURROGATES:
        _WORKER_SURROGATES[cfg.surrogate] = frozen_surrogate(cfg)
    surrogate = _WORKER_SURROGATES[cfg.surrogate]
    policy = Policy(cfg.model_config(surrogate.cfg.dim))
    policy.load_state_dict(weights)
    *head, g = rollout_shard(policy.eval(), surrogate, cfg, it, k)
    return (*head, g.get_state())


def rollouts(policy: Policy, surrogate: Surrogate, cfg: PolicyTrainConfig, it: int, mine: list[int]) -> list[tuple]:
    """This process's shards of iteration it, rolled out here or by the rollout workers."""
    if cfg.rollout_workers == 1 and cfg.backend == "local":
        return [rollout_shard(policy, surrogate, cfg, it, k) for k in mine]
    weights = {k: v.detach().cpu() for k, v in policy.state_dict().items()}
    done = map_tasks(rollout_task, [(cfg, it, k, weights) for k in mine], workers=cfg.rollout_workers,
                     progress=False, backend=cfg.backend, address=cfg.address or None)
    out = []
    for *head, state in done:
        g = torch.Generator(device=cfg.device)
        g.set_state(state)
        out.append((*head, g))
    return out


def bc_warm_start(policy: Policy, opt: torch.optim.Optimizer, demos, cfg: PolicyTrainConfig, log) -> None:
    """Phase 0: ``bc_steps`` behaviour-cloning steps on the expert's decisions."""
    for s in range(cfg.bc_steps):
        terms = bc_step(policy, opt, demos, cfg.minibatch, generator("train", "bc", cfg.seed, s, device=cfg.device))
        if (s + 1) % 50 == 0 or s + 1 == cfg.bc_steps:
            log(f"bc step={s + 1} " + format_record({**terms, "expert_agreement": expert_agreement(policy, demos)}))


def iteration_record(cfg: PolicyTrainConfig, done: int, fam: str, B: int, d: int, T: int, stats: dict,
                     informative: torch.Tensor, comps: dict, opt: torch.optim.Optimizer, t_roll: float, t0: float) -> dict:
    """The log record of one iteration: update statistics, reward components (mean, std), the
    share of zero-variance groups, the learning rate and throughput."""
    steps = B * T * (cfg.group_size if cfg.mode == "candidates" else 1)
    rec = {"iteration": done, "family": fam, "d": d, "T": T, **{k: v for k, v in stats.items() if k != "updates"},
           "updates": stats["updates"], "zero_var_groups": float(1 - informative.float().mean()),
           "lr": opt.param_groups[0]["lr"], "env_steps_per_s": steps / t_roll, "seconds": time.perf_counter() - t0}
    total = combine(comps, cfg.weights())
    rec["reward_mean"], rec["reward_std"] = float(total.mean()), float(total.std())
    for k, v in comps.items():
        rec[f"r_{k}"], rec[f"r_{k}_std"] = float(v.mean()), float(v.std())
    return rec


# long: one loop, top to bottom, in the order it runs
def train(cfg: PolicyTrainConfig, log=print_line) -> Policy:
    """Run (or resume) stage-2 training; returns the policy. Under ``torchrun`` every process
    takes its share of the shards; process 0 validates, logs and writes the checkpoint."""
    rank, world = process_group(cfg.device)
    if cfg.shards % world:
        raise ValueError(f"shards ({cfg.shards}) must be a multiple of the processes ({world})")
    if rank != 0:
        log = _quiet
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "policy.pt"
    budget = Budget(cfg.iterations, cfg.max_minutes)
    surrogate = frozen_surrogate(cfg)
    torch.manual_seed(cfg.seed)
    if cfg.init:
        policy = load_policy_checkpoint(cfg.init, cfg.device, surrogate)[0].train()
    else:
        policy = Policy(cfg.model_config(surrogate.cfg.dim)).to(cfg.device)
    ref = copy.deepcopy(policy).eval() if cfg.beta > 0 else None
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=1e-4)
    demos = load_demo_batch(cfg.bc_demos, surrogate, cfg.device, grid=cfg.grid) if cfg.bc_demos else None
    if (cfg.bc_steps > 0 or cfg.bc_coef > 0) and demos is None:
        raise ValueError("bc_steps / bc_coef need bc_demos")
    start, history = 0, []
    state = resume(ckpt, asdict(cfg), read_policy_checkpoint, ADDED_LATER, PLACEMENT)
    if state is not None:
        policy.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"]["opt"])
        budget.elapsed_before = state["optimizer"]["elapsed_s"]
        start, history = state["step"], state["history"]
        log(f"resumed from iteration {start}")
    elif cfg.bc_steps > 0:  # ---- phase 0: behaviour cloning warm start
        bc_warm_start(policy, opt, demos, cfg, log)
    if world > 1:  # one start everywhere, whatever each process read or drew
        broadcast_params(policy)
    if ref is not None and state is None:  # the reference: the policy training starts from
        ref.load_state_dict(policy.state_dict())

    def checkpoint(done: int) -> None:
        save_policy(ckpt, policy, surrogate, done, asdict(cfg), {"opt": opt.state_dict(), "elapsed_s": budget.elapsed()},
                    history)

    val = make_validation(cfg) if rank == 0 else None
    if start == 0 and rank == 0:  # the starting point, for comparison
        history.append({"iteration": 0, **validate(policy, surrogate, val, cfg.seed)})
        log(format_record(history[-1]))
    done = start
    for it in range(start, cfg.iterations):
        stop, lr = from_process_0(budget.spent(it), budget.lr(cfg.lr, it), world)
        if stop:
            log(f"time budget spent at iteration {it}")
            break
        set_lr(opt, lr)
        # ---- 1. rollout (this process's shards)
        t0 = time.perf_counter()
        policy.eval()
        shards = rollouts(policy, surrogate, cfg, it, list(range(rank, cfg.shards, world)))
        policy.train()
        t_roll = time.perf_counter() - t0
        fam, T = shards[0][2], shards[0][3]
        # ---- 2. update: mu epochs of minibatches of decisions
        stats = grpo_update(policy, opt, [(sh[4], sh[6]) for sh in shards], cfg.update_settings(), ref=ref,
                            demos=demos, n_shards=cfg.shards)
        # ---- 3. diagnostics, validation, checkpoint (process 0)
        done = it + 1
        if rank != 0:
            continue
        B, d, informative, comps = _joined(shards)
        rec = iteration_record(cfg, done, fam, B, d, T, stats, informative, comps, opt, t_roll, t0)
        if done % cfg.val_every == 0 or done == cfg.iterations:
            rec.update(validate(policy, surrogate, val, cfg.seed))
            history.append(rec)
            checkpoint(done)
        append_jsonl(out / "log.jsonl", rec)
        log(format_record(rec))
    if rank == 0 and (not history or history[-1]["iteration"] != done):  # the final state, validated
        history.append({"iteration": done, **validate(policy, surrogate, val, cfg.seed)})
        checkpoint(done)
        log(format_record(history[-1]))
    policy.eval()
    return policy


def _quiet(line: str) -> None:
    """The log of processes other than 0."""


def _joined(shards: list[tuple]) -> tuple[int, int, torch.Tensor, dict]:
    """This process's shards (as :func:`rollout_shard` returns them) for the log: campaigns, d,
    the groups' informative flags and the reward components, concatenated over the shards."""
    informative = torch.cat([sh[4].informative for sh in shards])
    comps = {k: torch.cat([sh[5][k].flatten() for sh in shards]) for k in shards[0][5]}
    return sum(sh[0] for sh in shards), shards[0][1], informative, comps


def main(argv: list[str] | None = None) -> None:
    train(config_from_argv(PolicyTrainConfig, argv, __doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
