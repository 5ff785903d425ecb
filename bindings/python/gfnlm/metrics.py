"""Distribution-matching metrics computed from samples (the exact ones live in GFlowNetTrainer.exact)."""
from __future__ import annotations

import math
from collections import Counter
from typing import Iterable, Sequence


def kl_to_uniform(values: Iterable, support: Iterable) -> float:
    """KL(p̂ ‖ U(support)) with one bin per support value; values outside the support are ignored (report the
    valid fraction separately)."""
    support = list(support)
    inside = [v for v in values if v in set(support)]
    if not inside:
        return math.inf
    c = Counter(inside)
    n = len(inside)
    u = 1.0 / len(support)
    return sum((k / n) * math.log((k / n) / u) for k in c.values())


def importance_log_z(log_r: Sequence[float], log_q: Sequence[float]) -> float:
    """log Ẑ = logsumexp(log R − log q) − log K."""
    w = [a - b for a, b in zip(log_r, log_q)]
    m = max(w)
    return m + math.log(sum(math.exp(x - m) for x in w)) - math.log(len(w))


def effective_sample_size(log_r: Sequence[float], log_q: Sequence[float]) -> float:
    """Kish's effective sample size of the importance weights R/q: (Σw)² / Σw²."""
    w = [a - b for a, b in zip(log_r, log_q)]
    m = max(w)
    s1 = sum(math.exp(x - m) for x in w)
    s2 = sum(math.exp(2 * (x - m)) for x in w)
    return s1 * s1 / s2
