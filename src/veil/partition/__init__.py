"""Layer partitioning between a trusted enclave and an accelerator (seed 002), and the attacks that choose the split.

Public API: ``partition(model, split)``, the ``Enclave`` interface (``InProcessEnclave``, ``IsolatedProcessEnclave``),
``reconstruction_attack(...)`` and ``plan(...)``. SGX is *simulated*: the isolated backend is a real separate
process behind an authenticated, encrypted channel, and enclave time under SGX is *modelled* (``SGXCostModel``).
"""

from veil.partition.attack import ReconstructionResult, reconstruction_attack
from veil.partition.cost_model import SGXCostModel, measure_part
from veil.partition.enclave import Enclave, EnclaveOutput, InProcessEnclave
from veil.partition.isolated import IsolatedProcessEnclave
from veil.partition.planner import Plan, plan
from veil.partition.sequence import LayerSequence, SplitPoint, candidate_splits, to_sequence
from veil.partition.split import Partitioned, partition

__all__ = ["partition", "Partitioned", "Enclave", "EnclaveOutput", "InProcessEnclave", "IsolatedProcessEnclave",
           "reconstruction_attack", "ReconstructionResult", "plan", "Plan", "SGXCostModel", "measure_part",
           "LayerSequence", "SplitPoint", "candidate_splits", "to_sequence"]
