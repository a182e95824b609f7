"""Stage 3: end-to-end training of the surrogate and the policy on progressively harder problems.

The curriculum (:mod:`acbo.e2e.curriculum`): the ladder of families the trainer climbs and the
rule that moves it; the alternating trainer (:mod:`acbo.e2e.train`).
"""

from acbo.e2e.curriculum import Curriculum, CurriculumState
from acbo.e2e.train import E2EConfig, read_e2e_checkpoint, train

__all__ = ["Curriculum", "CurriculumState", "E2EConfig", "read_e2e_checkpoint", "train"]
