"""What an optimizer's or a scheduler's saved state says, in a few named values.

A state dict does not name its optimizer, but each of torch's optimizers keeps its own
hyper-parameters in every param group (SGD's dampening, RMSprop's centered, Adam's betas), so
the kind is read from those keys; the step, learning rates and betas come from the state itself.
"""

from __future__ import annotations

from typing import Any

import torch

# (keys a param group of this optimizer has, its name), the most particular first.
_GROUP_KEYS = (
    ({"history_size", "line_search_fn"}, "LBFGS"),
    ({"etas", "step_sizes"}, "Rprop"),
    ({"lambd", "alpha", "t0"}, "ASGD"),
    ({"momentum_decay"}, "NAdam"),
    ({"lr_decay"}, "Adagrad"),
    ({"rho"}, "Adadelta"),
    ({"centered", "alpha"}, "RMSprop"),
    ({"dampening", "nesterov"}, "SGD"),
    ({"betas", "amsgrad"}, "Adam"),
    ({"betas"}, "Adam-like"),
)
# Per-parameter state names, where the groups say nothing (an optimizer of another library).
_STATE_KEYS = (({"exp_avg", "exp_avg_sq"}, "Adam-like"), ({"exp_inf"}, "Adamax"),
               ({"momentum_buffer"}, "SGD"), ({"square_avg"}, "RMSprop-like"), ({"sum"}, "Adagrad"))
# (keys a scheduler's state has, its name)
_SCHEDULERS = (
    ({"T_0", "T_mult"}, "CosineAnnealingWarmRestarts"), ({"T_max", "eta_min"}, "CosineAnnealingLR"),
    ({"max_lrs", "total_steps"}, "OneCycleLR"), ({"base_lrs", "max_lrs", "step_size_up"}, "CyclicLR"),
    ({"milestones", "gamma"}, "MultiStepLR"), ({"step_size", "gamma"}, "StepLR"),
    ({"patience", "cooldown"}, "ReduceLROnPlateau"), ({"total_iters", "power"}, "PolynomialLR"),
    ({"start_factor", "end_factor"}, "LinearLR"), ({"factor", "total_iters"}, "ConstantLR"),
    ({"gamma"}, "ExponentialLR"), ({"lr_lambdas"}, "LambdaLR"),
)


def number(value: Any) -> Any:
    """A plain number from a value a state holds: a one-element tensor is read, others left out."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 and not value.is_meta and not value.is_complex() else None
    return value if isinstance(value, (int, float, bool)) else None


def optimizer_summary(where: str, state: dict[str, Any]) -> dict[str, Any]:
    groups = [g for g in state.get("param_groups") or [] if isinstance(g, dict)]
    per_param = [s for s in (state.get("state") or {}).values() if isinstance(s, dict)] \
        if isinstance(state.get("state"), dict) else []
    group_keys = set().union(*(g.keys() for g in groups)) if groups else set()
    state_keys = set().union(*(s.keys() for s in per_param)) if per_param else set()
    kind = next((name for keys, name in _GROUP_KEYS if keys <= group_keys), None)
    kind = kind or next((name for keys, name in _STATE_KEYS if keys <= state_keys), "unknown")
    if kind == "Adam" and any(g.get("decoupled_weight_decay") for g in groups):
        kind = "AdamW"
    steps = [number(s.get("step")) for s in per_param if "step" in s]
    summary: dict[str, Any] = {
        "at": where, "kind": kind, "groups": len(groups),
        "parameters": sum(len(g.get("params") or []) for g in groups),
        "step": max((s for s in steps if s is not None), default=None),
        "lr": [number(g.get("lr")) for g in groups],
        "state": sorted(map(str, state_keys)),
        "state_bytes": sum(t.numel() * t.element_size() for s in per_param for t in s.values()
                           if isinstance(t, torch.Tensor)),
    }
    for key in ("betas", "momentum", "weight_decay", "eps"):
        values = [g[key] for g in groups if key in g]
        if values:
            summary[key] = values[0] if all(v == values[0] for v in values) else values
    return summary


def scheduler_summary(where: str, state: dict[str, Any]) -> dict[str, Any]:
    kind = next((name for keys, name in _SCHEDULERS if keys <= state.keys()), "unknown")
    last_lr = state.get("_last_lr")
    return {"at": where, "kind": kind, "last_epoch": number(state.get("last_epoch")),
            "last_lr": [number(v) for v in last_lr] if isinstance(last_lr, list) else None,
            **{key: state[key] for key in ("step_size", "gamma", "T_max", "patience", "milestones")
               if isinstance(state.get(key), (int, float, list))}}
