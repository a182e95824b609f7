"""Stage 3: end-to-end training of the surrogate and the policy on progressively harder problems.

The curriculum (:mod:`acbo.e2e.curriculum`): the ladder of families the trainer climbs and the
rule that moves it; the alternating trainer (:mod:`acbo.e2e.train`, imported on first use, so that
``python -m acbo.e2e.train`` runs it without importing it twice).
"""

import importlib

from acbo.e2e.curriculum import Curriculum, CurriculumState

__all__ = ["Curriculum", "CurriculumState", "E2EConfig", "read_e2e_checkpoint", "train"]
_TRAINER = ("E2EConfig", "read_e2e_checkpoint", "train")


def __getattr__(name: str):
    if name in _TRAINER:
        module = importlib.import_module("acbo.e2e.train")
        globals().update({n: getattr(module, n) for n in _TRAINER})  # the function train, not the module
        return globals()[name]
    raise AttributeError(f"module 'acbo.e2e' has no attribute {name!r}")
