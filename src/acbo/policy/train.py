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

The surrogate is frozen here (its encoding is the policy's input; stage 3 would alternate).
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from acbo.configs import config_from_argv, format_record, print_line
from acbo.policy.agent import Encoding, policy_input
from acbo.policy.bc import bc_loss, expert_agreement, load_demo_batch
from acbo.policy.checkpoint import (
    load_policy_checkpoint,
    read_policy_checkpoint,
    save_policy,
)
from acbo.policy.env import Env
from acbo.policy.grpo import clipped_objective, group_advantages, kl_k3
from acbo.policy.model import Policy, PolicyConfig, PolicyInput
from acbo.policy.rewards import (
    combine,
    improvement,
    information_gain,
    outcome_gain,
    parent_hit,
)
from acbo.scm import get_family
from acbo.seeding import generator
from acbo.surrogate import load_pretrained, load_surrogate
from acbo.surrogate.model import Surrogate

MODES = ("candidates", "trajectory")


@dataclass(frozen=True)
class PolicyTrainConfig:
    """Stage-2 training run."""

    families: tuple[str, ...] = ("train-lin", "train-nonlin")
    """Training families, cycled iteration by iteration (train stream)."""
    mode: str = "candidates"
    """Group design: 'candidates' (G interventions from one state) or 'trajectory' (G rollouts)."""
    iterations: int = 300
    """GRPO iterations (rollout + update); 0 with bc_steps > 0 is a BC-only run."""
    max_minutes: float = 0.0
    """Wall-time budget; the learning-rate schedule follows max(iteration, time) progress and the
    run stops when it is spent (0: no budget)."""
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
    """Surrogate checkpoint ('' = the shipped one); frozen, stored inside the policy checkpoint."""
    dim: int = 64
    """Policy width."""
    layers: int = 2
    """Policy attention layers over variables."""
    heads: int = 4
    """Policy attention heads."""
    val_family: str = "lin-er-20"
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
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2, got {self.group_size}")
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
            get_family(f)

    def weights(self) -> dict[str, float]:
        return {"improvement": self.w_improvement, "outcome": self.w_outcome, "info_gain": self.w_info_gain,
                "parent": self.w_parent}

    def model_config(self, token_dim: int) -> PolicyConfig:
        return PolicyConfig(token_dim=token_dim, dim=self.dim, heads=self.heads, layers=self.layers)


@dataclass
class Rollout:
    """Decisions collected in one iteration: inputs (M states), actions var/u M x K, their
    logp under the rollout policy M x K, advantages M x K, informative M (non-degenerate group)."""

    x: PolicyInput
    var: torch.Tensor
    u: torch.Tensor
    logp: torch.Tensor
    adv: torch.Tensor
    informative: torch.Tensor


@torch.no_grad()
def rollout(policy: Policy, surrogate: Surrogate, env: Env, cfg: PolicyTrainConfig, g: torch.Generator
            ) -> tuple[Rollout, dict[str, torch.Tensor]]:
    """Run the campaigns for T steps; returns the decisions with advantages and the reward
    components (each stacked over steps) for logging."""
    G, T = cfg.group_size, env.horizon
    weights = cfg.weights()
    parents = env.scm.parents()
    enc = Encoding.of(surrogate, env.campaign())
    marg, tokens = enc.readout(surrogate)
    xs, vs, us, lps, rewards, comps_log = [], [], [], [], [], {}
    for _ in range(T):
        c = env.campaign()
        x = policy_input(c, marg, tokens)
        dist = policy(x)
        K = G if cfg.mode == "candidates" else 1
        var, u = dist.sample(g, K)                                                             # B x K
        value = dist.value(var, u)
        e_y = env.expected(var, value)                                                         # B x K
        rows, mask = env.outcomes(var, value, g)                                               # B x K x d
        comps = {"improvement": improvement(env.best, e_y, env.y_scale),
                 "outcome": outcome_gain(env.y_obs, e_y, env.y_scale),
                 "parent": parent_hit(var, parents)}
        if cfg.mode == "candidates":
            if weights["info_gain"] != 0:
                after = enc.marginals_with(surrogate, rows, mask)                              # B x K x d
                comps["info_gain"] = information_gain(marg[:, None], after, c.var_mask[:, None])
            env.append(rows[:, :1], mask[:, :1], e_y[:, 0])
            enc = enc.add(surrogate, rows[:, :1], mask[:, :1])
            marg, tokens = enc.readout(surrogate)
        else:
            env.append(rows, mask, e_y[:, 0])
            enc = enc.add(surrogate, rows, mask)
            new_marg, tokens = enc.readout(surrogate)
            comps["info_gain"] = information_gain(marg, new_marg, c.var_mask)[:, None]
            marg = new_marg
        rewards.append(combine(comps, weights))
        for k, v in comps.items():
            comps_log.setdefault(k, []).append(v)
        xs.append(x), vs.append(var), us.append(u), lps.append(dist.log_prob(var, u))
    R = torch.stack(rewards)                                                                   # T x B x K
    if cfg.mode == "candidates":
        adv, informative = group_advantages(R.reshape(-1, G), cfg.scale_by_std)               # T*B x G
        adv, informative = adv.reshape(T, -1, G), informative.reshape(T, -1)                  # T x B x G, T x B
    else:
        ret = R.sum(0)[:, 0].reshape(-1, G)                                                    # B x G returns
        adv, informative = group_advantages(ret, cfg.scale_by_std)
        adv = adv.reshape(1, -1, 1).expand(T, -1, 1)                                           # T x BG x 1
        informative = informative.repeat_interleave(G).expand(T, -1)                           # T x BG
    out = Rollout(PolicyInput.cat(xs), torch.cat(vs), torch.cat(us), torch.cat(lps), adv.reshape(-1, adv.shape[-1]),
                  informative.reshape(-1))
    return out, {k: torch.stack(v) for k, v in comps_log.items()}


@torch.no_grad()
def validate(policy: Policy, surrogate: Surrogate, val: tuple[Env, torch.Tensor], seed: int) -> dict[str, float]:
    """Campaigns on the validation family (sampling actions, as deployed): mean normalised
    regret at T and averaged over steps, and the mean fraction of steps on true parents."""
    env0, y_star = val
    env = copy.copy(env0)
    g = generator("test", "policy-val", seed, device=env.values.device)
    enc = Encoding.of(surrogate, env.campaign())
    parents = env.scm.parents()
    regrets, hits = [], []
    for _ in range(env.horizon):
        c = env.campaign()
        marg, tokens = enc.readout(surrogate)
        dist = policy(policy_input(c, marg, tokens))
        var, u = dist.sample(g, 1)
        value = dist.value(var, u)
        rows, mask = env.outcomes(var, value, g)
        e_y = env.expected(var, value)[:, 0]
        env.append(rows, mask, e_y)
        enc = enc.add(surrogate, rows, mask)
        regrets.append((env.best - y_star) / (env.y_obs - y_star).clamp_min(1e-12))
        hits.append(parent_hit(var, parents)[:, 0])
    r = torch.stack(regrets)                                                                   # T x B
    return {"val_regret_T": float(r[-1].mean()), "val_regret_mean": float(r.mean()),
            "val_parent_frac": float(torch.stack(hits).mean())}


def make_validation(cfg: PolicyTrainConfig) -> tuple[Env, torch.Tensor]:
    g = generator("test", "policy-val", cfg.val_family, device=cfg.device)
    env = Env.from_family(cfg.val_family, cfg.val_campaigns, get_family(cfg.val_family).n_obs, cfg.val_horizon, g,
                          cfg.reward_mc)
    y_star = env.scm.optimum(env.low, env.high).value
    return env, y_star


def _surrogate(cfg: PolicyTrainConfig) -> Surrogate:
    model = load_pretrained(cfg.device) if not cfg.surrogate else load_surrogate(cfg.surrogate, cfg.device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def train(cfg: PolicyTrainConfig, log=print_line) -> Policy:
    """Run (or resume) stage-2 training; returns the policy."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "policy.pt"
    t_start = time.perf_counter()
    surrogate = _surrogate(cfg)
    torch.manual_seed(cfg.seed)
    if cfg.init:
        policy = load_policy_checkpoint(cfg.init, cfg.device)[0].train()
    else:
        policy = Policy(cfg.model_config(surrogate.cfg.dim)).to(cfg.device)
    if policy.cfg.token_dim != surrogate.cfg.dim:
        raise ValueError(f"policy reads {policy.cfg.token_dim}-dim tokens, the surrogate makes {surrogate.cfg.dim}")
    ref = copy.deepcopy(policy).eval() if cfg.beta > 0 else None
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=1e-4)
    demos = load_demo_batch(cfg.bc_demos, surrogate, cfg.device) if cfg.bc_demos else None
    if (cfg.bc_steps > 0 or cfg.bc_coef > 0) and demos is None:
        raise ValueError("bc_steps / bc_coef need bc_demos")
    start, history = 0, []
    if ckpt.exists():  # resume
        state = read_policy_checkpoint(ckpt)
        if state["train_config"] != asdict(cfg):
            raise ValueError(f"{ckpt} was written by another configuration; use a new --out")
        policy.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        start, history = state["step"], state["history"]
        log(f"resumed from iteration {start}")
    elif cfg.bc_steps > 0:  # ---- phase 0: behaviour cloning warm start
        for s in range(cfg.bc_steps):
            terms = bc_loss(policy, demos.minibatch(cfg.minibatch, generator("train", "bc", cfg.seed, s, device=cfg.device)))
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            opt.step()
            if (s + 1) % 50 == 0 or s + 1 == cfg.bc_steps:
                log(f"bc step={s + 1} " + format_record({**{k: v.item() for k, v in terms.items()},
                                                          "expert_agreement": expert_agreement(policy, demos)}))
        if ref is not None:
            ref.load_state_dict(policy.state_dict())
    val = make_validation(cfg)
    if start == 0:  # the starting point, for comparison
        policy.eval()
        rec = {"iteration": 0, **validate(policy, surrogate, val, cfg.seed)}
        history.append(rec)
        log(format_record(rec))
        policy.train()
    done = start
    for it in range(start, cfg.iterations):
        elapsed = time.perf_counter() - t_start
        progress = max(it / cfg.iterations, elapsed / (60 * cfg.max_minutes) if cfg.max_minutes else 0.0)
        if progress >= 1.0:
            log(f"time budget spent at iteration {it}")
            break
        for group in opt.param_groups:
            group["lr"] = cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        # ---- 1. rollout (train stream keyed by iteration: a resumed run draws the same problems)
        t0 = time.perf_counter()
        g = generator("train", "policy", cfg.seed, it, device=cfg.device)
        fam = cfg.families[it % len(cfg.families)]
        n_obs = int(torch.randint(cfg.n_obs[0], cfg.n_obs[1] + 1, (1,), generator=g, device=cfg.device))
        T = int(torch.randint(cfg.horizon[0], cfg.horizon[1] + 1, (1,), generator=g, device=cfg.device))
        env = Env.from_family(fam, cfg.batch_size, n_obs, T, g, cfg.reward_mc)
        if cfg.mode == "trajectory":
            env = env.repeat(cfg.group_size)
        policy.eval()
        batch, comps = rollout(policy, surrogate, env, cfg, g)
        policy.train()
        t_roll = time.perf_counter() - t0
        # ---- 2. update: mu epochs of minibatches of decisions
        M = batch.var.shape[0]
        sums = {"loss": 0.0, "pg": 0.0, "kl": 0.0, "clip_frac": 0.0, "entropy": 0.0, "bc": 0.0}
        n_mb = 0
        for epoch in range(cfg.epochs):
            perm = torch.randperm(M, generator=g, device=cfg.device)
            for s in range(0, M, cfg.minibatch):
                idx = perm[s:s + cfg.minibatch]
                if not batch.informative[idx].any():
                    continue
                x = batch.x.index(idx)
                dist = policy(x)
                logp = dist.log_prob(batch.var[idx], batch.u[idx])
                w = batch.informative[idx, None].expand_as(logp)
                pg, clip_frac = clipped_objective(logp, batch.logp[idx], batch.adv[idx], cfg.eps_low, cfg.eps_high, w)
                ent = dist.entropy().mean()
                loss = pg - cfg.entropy_coef * ent
                kl = torch.zeros((), device=cfg.device)
                if ref is not None:
                    with torch.no_grad():
                        logp_ref = ref(x).log_prob(batch.var[idx], batch.u[idx])
                    kl = (kl_k3(logp, logp_ref) * w).sum() / w.sum().clamp_min(1)
                    loss = loss + cfg.beta * kl
                bc = torch.zeros((), device=cfg.device)
                if cfg.bc_coef > 0:
                    bc = bc_loss(policy, demos.minibatch(cfg.minibatch, g))["loss"]
                    loss = loss + cfg.bc_coef * bc
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
                opt.step()
                for k, v in (("loss", loss), ("pg", pg), ("kl", kl), ("clip_frac", clip_frac), ("entropy", ent), ("bc", bc)):
                    sums[k] += float(v.detach())
                n_mb += 1
        # ---- 3. diagnostics, validation, checkpoint
        done = it + 1
        steps = env.B * T * (cfg.group_size if cfg.mode == "candidates" else 1)
        rec = {"iteration": done, "family": fam, "d": env.d, "T": T, **{k: v / max(n_mb, 1) for k, v in sums.items()},
               "updates": n_mb, "zero_var_groups": float(1 - batch.informative.float().mean()),
               "lr": opt.param_groups[0]["lr"],
               "env_steps_per_s": steps / t_roll, "seconds": time.perf_counter() - t0}
        total = combine(comps, cfg.weights())
        rec["reward_mean"], rec["reward_std"] = float(total.mean()), float(total.std())
        for k, v in comps.items():
            rec[f"r_{k}"], rec[f"r_{k}_std"] = float(v.mean()), float(v.std())
        if done % cfg.val_every == 0 or done == cfg.iterations:
            policy.eval()
            rec.update(validate(policy, surrogate, val, cfg.seed))
            policy.train()
            history.append(rec)
            save_policy(ckpt, policy, surrogate, done, asdict(cfg), opt.state_dict(), history)
        with open(out / "log.jsonl", "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        log(format_record(rec))
    if not history or history[-1]["iteration"] != done:  # the final state, validated
        policy.eval()
        rec = {"iteration": done, **validate(policy, surrogate, val, cfg.seed)}
        history.append(rec)
        save_policy(ckpt, policy, surrogate, done, asdict(cfg), opt.state_dict(), history)
        log(format_record(rec))
    policy.eval()
    return policy


def main(argv: list[str] | None = None) -> None:
    train(config_from_argv(PolicyTrainConfig, argv, __doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
