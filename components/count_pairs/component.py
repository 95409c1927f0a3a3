"""KFP component: how many preference pairs cleared ΔQ and Δa (the pipeline branches on it; logic in
``aigp.align.pairs``)."""

from kfp import dsl
from kfp.dsl import Dataset, Input

from aigp.components._image import AIGP_IMAGE


@dsl.component(base_image=AIGP_IMAGE, install_kfp_package=False)
def count_pairs(pairs: Input[Dataset]) -> int:
    """The number of (a+, a-) records in a pair set written by build_pairs (0 when none cleared both
    thresholds: DPO has nothing to learn from)."""
    from aigp.align.pairs import read_pair_records

    return len(read_pair_records(pairs.path))
