"""Stage 3: end-to-end training of the surrogate and the policy on progressively harder problems.

Built so far: the curriculum (:mod:`acbo.e2e.curriculum`), the ladder of families the
alternating trainer walks up and the rule that moves it.
"""

from acbo.e2e.curriculum import Curriculum, CurriculumState

__all__ = ["Curriculum", "CurriculumState"]
