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
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from acbo.configs import config_from_argv, format_record, print_line
from acbo.env import Env
from acbo.policy.bc import expert_agreement, load_demo_batch
from acbo.policy.checkpoint import load_policy_checkpoint, read_policy_checkpoint, save_policy
from acbo.policy.model import Policy, PolicyConfig
from acbo.policy.rewards import combine
from acbo.policy.rollout import MODES, GroupDesign, collect, play
from acbo.policy.update import UpdateSettings, bc_step, grpo_update
from acbo.scm import Family, resolve_family
from acbo.seeding import generator
from acbo.surrogate import Surrogate, load_pretrained, load_surrogate
from acbo.training import Budget, append_jsonl, resume, set_lr


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

    def weights(self) -> dict[str, float]:
        return {"improvement": self.w_improvement, "outcome": self.w_outcome, "info_gain": self.w_info_gain,
                "parent": self.w_parent}

    def model_config(self, token_dim: int) -> PolicyConfig:
        return PolicyConfig(token_dim=token_dim, dim=self.dim, heads=self.heads, layers=self.layers)

    def design(self) -> GroupDesign:
        return GroupDesign(self.mode, self.group_size, self.scale_by_std)

    def update_settings(self) -> UpdateSettings:
        return UpdateSettings(self.epochs, self.minibatch, self.eps_low, self.eps_high, self.beta, self.entropy_coef,
                              self.bc_coef)


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


def iteration_env(cfg: PolicyTrainConfig, it: int) -> tuple[Env, str, int, torch.Generator]:
    """The campaigns of iteration ``it``: the train stream keyed by the iteration (a resumed run
    draws the same problems); returns (env, family name, T, the iteration's generator)."""
    g = generator("train", "policy", cfg.seed, it, device=cfg.device)
    fam = resolve_family(cfg.families[it % len(cfg.families)])
    n_obs = int(torch.randint(cfg.n_obs[0], cfg.n_obs[1] + 1, (1,), generator=g, device=cfg.device))
    T = int(torch.randint(cfg.horizon[0], cfg.horizon[1] + 1, (1,), generator=g, device=cfg.device))
    env = Env.from_family(fam, cfg.batch_size, n_obs, T, g, cfg.reward_mc)
    if cfg.mode == "trajectory":
        env = env.repeat(cfg.group_size)
    return env, fam.name, T, g


def bc_warm_start(policy: Policy, opt: torch.optim.Optimizer, demos, cfg: PolicyTrainConfig, log) -> None:
    """Phase 0: ``bc_steps`` behaviour-cloning steps on the expert's decisions."""
    for s in range(cfg.bc_steps):
        terms = bc_step(policy, opt, demos, cfg.minibatch, generator("train", "bc", cfg.seed, s, device=cfg.device))
        if (s + 1) % 50 == 0 or s + 1 == cfg.bc_steps:
            log(f"bc step={s + 1} " + format_record({**terms, "expert_agreement": expert_agreement(policy, demos)}))


def iteration_record(cfg: PolicyTrainConfig, done: int, fam: str, env: Env, T: int, stats: dict, batch,
                     comps: dict, opt: torch.optim.Optimizer, t_roll: float, t0: float) -> dict:
    """The log record of one iteration: update statistics, reward components (mean, std), the
    share of zero-variance groups, the learning rate and throughput."""
    steps = env.B * T * (cfg.group_size if cfg.mode == "candidates" else 1)
    rec = {"iteration": done, "family": fam, "d": env.d, "T": T, **{k: v for k, v in stats.items() if k != "updates"},
           "updates": stats["updates"], "zero_var_groups": float(1 - batch.informative.float().mean()),
           "lr": opt.param_groups[0]["lr"], "env_steps_per_s": steps / t_roll, "seconds": time.perf_counter() - t0}
    total = combine(comps, cfg.weights())
    rec["reward_mean"], rec["reward_std"] = float(total.mean()), float(total.std())
    for k, v in comps.items():
        rec[f"r_{k}"], rec[f"r_{k}_std"] = float(v.mean()), float(v.std())
    return rec


def train(cfg: PolicyTrainConfig, log=print_line) -> Policy:
    """Run (or resume) stage-2 training; returns the policy."""
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
    demos = load_demo_batch(cfg.bc_demos, surrogate, cfg.device) if cfg.bc_demos else None
    if (cfg.bc_steps > 0 or cfg.bc_coef > 0) and demos is None:
        raise ValueError("bc_steps / bc_coef need bc_demos")
    start, history = 0, []
    state = resume(ckpt, asdict(cfg), read_policy_checkpoint)
    if state is not None:
        policy.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"]["opt"])
        budget.elapsed_before = state["optimizer"]["elapsed_s"]
        start, history = state["step"], state["history"]
        log(f"resumed from iteration {start}")
    elif cfg.bc_steps > 0:  # ---- phase 0: behaviour cloning warm start
        bc_warm_start(policy, opt, demos, cfg, log)
        if ref is not None:
            ref.load_state_dict(policy.state_dict())

    def checkpoint(done: int) -> None:
        save_policy(ckpt, policy, surrogate, done, asdict(cfg), {"opt": opt.state_dict(), "elapsed_s": budget.elapsed()},
                    history)

    val = make_validation(cfg)
    if start == 0:  # the starting point, for comparison
        history.append({"iteration": 0, **validate(policy, surrogate, val, cfg.seed)})
        log(format_record(history[-1]))
    done = start
    for it in range(start, cfg.iterations):
        if budget.spent(it):
            log(f"time budget spent at iteration {it}")
            break
        set_lr(opt, budget.lr(cfg.lr, it))
        # ---- 1. rollout
        t0 = time.perf_counter()
        env, fam, T, g = iteration_env(cfg, it)
        policy.eval()
        batch, comps = collect(policy, surrogate, env, cfg.design(), cfg.weights(), g)
        policy.train()
        t_roll = time.perf_counter() - t0
        # ---- 2. update: mu epochs of minibatches of decisions
        stats = grpo_update(policy, opt, batch, cfg.update_settings(), g, ref, demos)
        # ---- 3. diagnostics, validation, checkpoint
        done = it + 1
        rec = iteration_record(cfg, done, fam, env, T, stats, batch, comps, opt, t_roll, t0)
        if done % cfg.val_every == 0 or done == cfg.iterations:
            rec.update(validate(policy, surrogate, val, cfg.seed))
            history.append(rec)
            checkpoint(done)
        append_jsonl(out / "log.jsonl", rec)
        log(format_record(rec))
    if not history or history[-1]["iteration"] != done:  # the final state, validated
        history.append({"iteration": done, **validate(policy, surrogate, val, cfg.seed)})
        checkpoint(done)
        log(format_record(history[-1]))
    policy.eval()
    return policy


def main(argv: list[str] | None = None) -> None:
    train(config_from_argv(PolicyTrainConfig, argv, __doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
