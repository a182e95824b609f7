"""Stage 3: end-to-end training of the surrogate and the policy on progressively harder problems.

The curriculum (:mod:`acbo.e2e.curriculum`): the ladder of families the trainer climbs and the
rule that moves it. The alternating trainer is :mod:`acbo.e2e.train` (``E2EConfig``, ``train``,
``read_e2e_checkpoint``; ``python -m acbo.e2e.train``), imported from there as stage 2's
:mod:`acbo.policy.train` is: a function re-exported here under its module's name would be shadowed
by the module once anything imported ``acbo.e2e.train``.
"""

from acbo.e2e.curriculum import Curriculum, CurriculumState

__all__ = ["Curriculum", "CurriculumState"]
