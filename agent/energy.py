"""How one GPU's energy is split between the pods on it, tick by tick, and the idle floor
that split needs. Pure arithmetic and one estimator; gpulse.accounts keeps the running totals.

The split of one GPU in one tick (the README's "Energy, idle time and cost" states the model
and its error):

    E      energy the GPU used this tick: the increase of its NVML energy counter (power x
           seconds where the GPU has no counter)
    idle   the idle floor F x seconds, at most E; E - idle is active energy
    a_i    holder i's allocation: the fraction of the GPU it holds (1 for a whole GPU,
           slots / replicas of a time-sliced or MPS GPU, slices / the GPU's slices for a MIG
           instance, times its share of the instance when several containers hold one)
    w_i    holder i's activity this tick, in GPU time: its SM share on a time-sliced or MPS
           GPU, its instance's activity x slices / the GPU's slices on MIG
    w_rest activity no holder can take: host processes, pods that hold no slot, MIG
           instances nobody holds

    holder i gets   a_i x idle + w_i / (Σ w + w_rest) x (E - idle)
    unattributed    E - Σ holders   (idle of unallocated capacity, active of w_rest)

When the activity of the GPU is unknown this tick, or nothing ran, all of E is split by
allocation. A whole GPU's holder has a = 1 and so gets all of E. Σ holders + unattributed = E
in every tick, so the per-pod counters and the unattributed counter add up to the GPU's
energy counter over any window.

IdleFloor estimates F per GPU from what the agent sees, best first: the lowest power drawn
while the GPU's activity was under 5% ("idle"); the intercept of a least-squares line of
power against activity once its standard error is under 5% ("fit"); else the lowest power seen
at all ("lowest_seen", an upper bound that falls as the GPU rests).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Optional

LOW_ACTIVITY = 0.05  # activity at or below which a power sample counts as idle
FIT_MIN_SAMPLES = 30.0  # effective samples before the fit is trusted
FIT_MIN_SPREAD = 0.005  # standard deviation of activity below which a fit is not attempted
FIT_MAX_ERROR = 0.05  # the intercept's standard error, as a fraction of it, that the fit accepts
FIT_MIN_ERROR_WATTS = 2.0  # ... or in watts, for floors near zero
FIT_MEMORY = 3600.0  # samples: older ones fade out exponentially (an hour at 1 s ticks)
_KEEP = 1.0 - 1.0 / FIT_MEMORY  # the weight a sample keeps at each new one


@dataclass(frozen=True, slots=True)
class Claim:
    """One holder's claim on one GPU in one tick, in fractions of the whole GPU."""
    allocation: float  # 0..1: the part of the GPU it holds
    activity: float = 0.0  # 0..1: GPU time it kept busy this tick


def split(total: float, idle: float, claims: Sequence[Claim],
          rest_activity: Optional[float]) -> tuple[list[float], float]:
    """(each claim's part of `total`, the unattributed rest). `idle` is the idle floor's part
    of `total`; `rest_activity` is the activity no claim can take, None when the GPU's
    activity is unknown this tick. Parts are never negative and add up to `total`."""
    if total <= 0 or not claims:
        return [0.0] * len(claims), max(total, 0.0)
    held = sum(max(c.allocation, 0.0) for c in claims)
    scale = 1.0 / held if held > 1.0 else 1.0  # over-allocation (bad input) never mints energy
    busy = None if rest_activity is None else sum(max(c.activity, 0.0) for c in claims) + max(rest_activity, 0.0)
    if busy is None or busy <= 0.0:
        parts = [max(c.allocation, 0.0) * scale * total for c in claims]
    else:
        idle = min(max(idle, 0.0), total)
        active = total - idle
        parts = [max(c.allocation, 0.0) * scale * idle + max(c.activity, 0.0) / busy * active for c in claims]
    given = sum(parts)
    if given > total:  # float rounding only
        parts = [p * total / given for p in parts]
        given = total
    return parts, total - given


class _Fit:
    """Exponentially weighted least squares of power on activity, trusted only when its
    intercept is known to within FIT_MAX_ERROR (standard error from the residuals): a GPU
    whose power does not follow its activity in a straight line gets no fit."""

    __slots__ = ("n", "su", "sp", "suu", "sup", "spp")

    def __init__(self) -> None:
        self.n = self.su = self.sp = self.suu = self.sup = self.spp = 0.0

    def add(self, u: float, p: float) -> None:
        keep = _KEEP
        self.n = self.n * keep + 1.0
        self.su = self.su * keep + u
        self.sp = self.sp * keep + p
        self.suu = self.suu * keep + u * u
        self.sup = self.sup * keep + u * p
        self.spp = self.spp * keep + p * p

    def intercept(self) -> Optional[float]:
        n = self.n
        if n < FIT_MIN_SAMPLES:
            return None
        mu, mp = self.su / n, self.sp / n
        var_u = self.suu / n - mu * mu
        if var_u < FIT_MIN_SPREAD ** 2:
            return None
        slope = (self.sup / n - mu * mp) / var_u
        if slope <= 0.0:  # power that does not rise with activity says nothing about idle
            return None
        intercept = mp - slope * mu
        residual = max(self.spp / n - mp * mp - slope * (self.sup / n - mu * mp), 0.0) * n / (n - 2.0)
        error = (residual * (1.0 / n + mu * mu / (n * var_u))) ** 0.5
        if error > max(FIT_MAX_ERROR * abs(intercept), FIT_MIN_ERROR_WATTS):
            return None
        return intercept


class IdleFloor:
    """The power each GPU draws with nothing running, from its own power and activity."""

    def __init__(self) -> None:
        self._idle: dict[str, float] = {}  # uuid -> lowest power at low activity
        self._lowest: dict[str, float] = {}  # uuid -> lowest power seen
        self._fit: dict[str, _Fit] = {}

    def observe(self, uuid: str, power: Optional[float], activity: Optional[float]) -> None:
        if power is None or power <= 0.0:
            return  # a zero reading is a sensor that is not ready, not an idle GPU
        if power < self._lowest.get(uuid, float("inf")):
            self._lowest[uuid] = power
        if activity is None:
            return
        activity = min(max(activity, 0.0), 1.0)
        if activity <= LOW_ACTIVITY and power < self._idle.get(uuid, float("inf")):
            self._idle[uuid] = power
        fit = self._fit.get(uuid)
        if fit is None:
            fit = self._fit[uuid] = _Fit()
        fit.add(activity, power)

    def estimate(self, uuid: str) -> Optional[tuple[float, str]]:
        """(watts, how it was found: idle | fit | lowest_seen), None before any power reading."""
        lowest = self._lowest.get(uuid)
        if lowest is None:
            return None
        idle = self._idle.get(uuid)
        if idle is not None:
            return idle, "idle"
        fit = self._fit.get(uuid)
        intercept = fit.intercept() if fit is not None else None
        if intercept is not None:
            return min(max(intercept, 0.0), lowest), "fit"
        return lowest, "lowest_seen"

    def retain(self, uuids: Iterable[str]) -> None:
        """Forget GPUs that are gone (a replaced card starts over)."""
        keep = set(uuids)
        for table in (self._idle, self._lowest, self._fit):
            for uuid in [u for u in table if u not in keep]:
                del table[uuid]
