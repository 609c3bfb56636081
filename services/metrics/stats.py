"""The statistics behind experiment verdicts: pure functions, no I/O.

- :func:`wilson_interval`: a proportion's confidence interval (Wilson score), sound
  near 0 and for small samples where the normal (Wald) interval is not.
- :func:`two_proportion_ztest`: the classic pooled two-sided z-test. It is valid only
  when looked at once, at a sample size fixed in advance: reported, never used for a
  verdict.
- :func:`probability_to_beat`: P(rate_treatment > rate_control) under independent
  Beta(1 + conversions, 1 + failures) posteriors.
- :func:`msprt`: the mixture sequential probability ratio test (Johari, Pekelis and
  Walsh, "Always valid inference", 2017) on the difference of two rates, with a normal
  mixture N(0, tau²) over the effect. Its p-value, taken as the running minimum over
  looks, is valid however often one looks: P(ever <= alpha | no effect) <= alpha.
  The same quantity gives an always-valid confidence sequence for the difference.
- :func:`decide`: the verdict from all of the above, with a minimum sample and
  guardrails.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from scipy import integrate, stats


def wilson_interval(successes: int, trials: int, *, alpha: float = 0.05) -> tuple[float, float]:
    """The two-sided ``1 - alpha`` Wilson score interval; (0, 1) when ``trials`` is 0."""
    if trials <= 0:
        return 0.0, 1.0
    z = float(stats.norm.isf(alpha / 2))
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def two_proportion_ztest(
    x_control: int, n_control: int, x_treatment: int, n_treatment: int
) -> tuple[float, float]:
    """(z, two-sided p) of the pooled z-test of treatment against control; (0, 1) when
    undefined (no trials, or no variance: all or none converted)."""
    if n_control <= 0 or n_treatment <= 0:
        return 0.0, 1.0
    pooled = (x_control + x_treatment) / (n_control + n_treatment)
    variance = pooled * (1 - pooled) * (1 / n_control + 1 / n_treatment)
    if variance <= 0:
        return 0.0, 1.0
    z = (x_treatment / n_treatment - x_control / n_control) / math.sqrt(variance)
    return z, float(2 * stats.norm.sf(abs(z)))


def probability_to_beat(
    x_control: int, n_control: int, x_treatment: int, n_treatment: int
) -> float:
    """P(p_treatment > p_control) with uniform Beta(1, 1) priors, by quadrature of
    ``pdf_treatment(x) * cdf_control(x)``."""
    treatment = stats.beta(1 + x_treatment, 1 + n_treatment - x_treatment)
    control = stats.beta(1 + x_control, 1 + n_control - x_control)
    # integrate where the treatment's posterior has its mass: quad misses a narrow peak
    low, high = treatment.ppf(1e-10), treatment.isf(1e-10)
    value, _ = integrate.quad(
        lambda x: float(treatment.pdf(x) * control.cdf(x)), low, high, limit=200
    )
    return float(min(1.0, max(0.0, value)))


@dataclass(frozen=True, slots=True)
class SequentialResult:
    #: the mixture likelihood ratio at this look
    likelihood_ratio: float
    #: 1 / likelihood_ratio, capped at 1: take the running minimum over looks
    p_value: float
    #: always-valid ``1 - alpha`` confidence sequence for rate_treatment - rate_control
    ci_low: float
    ci_high: float


def msprt(
    x_control: int,
    n_control: int,
    x_treatment: int,
    n_treatment: int,
    *,
    tau: float,
    alpha: float = 0.05,
) -> SequentialResult:
    """The normal-mixture SPRT of ``rate_t - rate_c = 0`` at this look.

    With the difference's estimate ``d`` and its variance ``V`` (unpooled), the mixture
    likelihood ratio under a N(0, tau²) mixing distribution is
    ``sqrt(V / (V + tau²)) * exp(d² tau² / (2 V (V + tau²)))``.
    """
    if n_control <= 0 or n_treatment <= 0:
        return SequentialResult(1.0, 1.0, -1.0, 1.0)
    ratio, low, high = _msprt_arrays(
        np.asarray(x_control, dtype=float),
        np.asarray(n_control, dtype=float),
        np.asarray(x_treatment, dtype=float),
        np.asarray(n_treatment, dtype=float),
        tau=tau,
        alpha=alpha,
    )
    lr = float(ratio)
    return SequentialResult(lr, min(1.0, 1.0 / lr), float(low), float(high))


def _msprt_arrays(
    xc: np.ndarray,
    nc: np.ndarray,
    xt: np.ndarray,
    nt: np.ndarray,
    *,
    tau: float,
    alpha: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised :func:`msprt` (likelihood ratio, CI low, CI high), for simulations.

    The variance is floored at that of one success in the larger arm, so an arm with
    no conversions yet does not make the ratio explode."""
    pc = xc / nc
    pt = xt / nt
    floor = 1.0 / np.maximum(nc, nt) ** 2
    variance = np.maximum(pc * (1 - pc) / nc + pt * (1 - pt) / nt, floor)
    tau2 = tau * tau
    d = pt - pc
    log_ratio = 0.5 * np.log(variance / (variance + tau2)) + d * d * tau2 / (
        2 * variance * (variance + tau2)
    )
    ratio = np.exp(np.minimum(log_ratio, 700.0))
    radius = np.sqrt(
        variance
        * (variance + tau2)
        / tau2
        * (2 * math.log(1 / alpha) + np.log((variance + tau2) / variance))
    )
    return ratio, d - radius, d + radius


class Verdict(StrEnum):
    WINNER = "winner"
    NO_WINNER_YET = "no_winner_yet"
    NO_DIFFERENCE = "no_difference"


@dataclass(frozen=True, slots=True)
class Arm:
    """One variant's counts: exposures, conversions, and the guardrail events among
    the messages it was sent."""

    variant: str
    exposed: int
    converted: int
    sent: int = 0
    unsubscribed: int = 0
    complained: int = 0


@dataclass(frozen=True, slots=True)
class Policy:
    alpha: float = 0.05
    #: the mixing standard deviation of the effect (absolute rate difference) the
    #: sequential test is tuned for
    tau: float = 0.02
    #: exposures every arm needs before any verdict
    min_exposed: int = 200
    #: conversions over all arms needed before any verdict
    min_converted: int = 20
    #: differences within ± this are "no difference" once the interval is inside it
    equivalence_margin: float = 0.01
    #: a variant whose unsubscribe (complaint) rate among its sends exceeds control's by
    #: more than this cannot win
    max_unsubscribe_increase: float = 0.005
    max_complaint_increase: float = 0.001


@dataclass(frozen=True, slots=True)
class ArmResult:
    variant: str
    exposed: int
    converted: int
    rate: float
    ci_low: float
    ci_high: float
    #: against control (None for control itself)
    z_p_value: float | None = None
    probability_to_beat_control: float | None = None
    sequential_p_value: float | None = None
    difference_low: float | None = None
    difference_high: float | None = None
    unsubscribe_rate: float | None = None
    complaint_rate: float | None = None
    guardrail_breached: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    winner: str | None
    control: str
    #: the winner's (else the smallest) sequential p-value against control, running min
    p_value: float
    arms: list[ArmResult]
    reason: str


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator > 0 else None


def decide(
    arms: Sequence[Arm],
    *,
    control: str,
    policy: Policy = Policy(),
    previous_p_values: dict[str, float] | None = None,
) -> Decision:
    """The verdict on an experiment at this look.

    ``previous_p_values`` (variant → the smallest sequential p-value seen at earlier
    looks) carries the running minimum that makes the sequential p-value always
    valid; the result's arms hold the updated minimum. Comparisons are of each
    variant with ``control``, Bonferroni-corrected over the number of comparisons.
    """
    previous = previous_p_values or {}
    by_name = {arm.variant: arm for arm in arms}
    if control not in by_name:
        raise ValueError(f"control {control!r} is not among the variants {sorted(by_name)}")
    base = by_name[control]
    others = [arm for arm in arms if arm.variant != control]
    comparisons = max(1, len(others))
    alpha = policy.alpha / comparisons
    results: list[ArmResult] = []
    base_unsub = _rate(base.unsubscribed, base.sent)
    base_complaint = _rate(base.complained, base.sent)
    for arm in arms:
        low, high = wilson_interval(arm.converted, arm.exposed, alpha=policy.alpha)
        rate = arm.converted / arm.exposed if arm.exposed else 0.0
        unsub = _rate(arm.unsubscribed, arm.sent)
        complaint = _rate(arm.complained, arm.sent)
        if arm is base:
            results.append(
                ArmResult(
                    arm.variant,
                    arm.exposed,
                    arm.converted,
                    rate,
                    low,
                    high,
                    unsubscribe_rate=unsub,
                    complaint_rate=complaint,
                )
            )
            continue
        _, z_p = two_proportion_ztest(base.converted, base.exposed, arm.converted, arm.exposed)
        beat = (
            probability_to_beat(base.converted, base.exposed, arm.converted, arm.exposed)
            if arm.exposed and base.exposed
            else 0.5
        )
        seq = msprt(
            base.converted, base.exposed, arm.converted, arm.exposed, tau=policy.tau, alpha=alpha
        )
        running = min(seq.p_value, previous.get(arm.variant, 1.0))
        breached = []
        if (
            unsub is not None
            and base_unsub is not None
            and unsub - base_unsub > policy.max_unsubscribe_increase
        ):
            breached.append("unsubscribe_rate")
        if (
            complaint is not None
            and base_complaint is not None
            and complaint - base_complaint > policy.max_complaint_increase
        ):
            breached.append("complaint_rate")
        results.append(
            ArmResult(
                arm.variant,
                arm.exposed,
                arm.converted,
                rate,
                low,
                high,
                z_p_value=z_p,
                probability_to_beat_control=beat,
                sequential_p_value=running,
                difference_low=seq.ci_low,
                difference_high=seq.ci_high,
                unsubscribe_rate=unsub,
                complaint_rate=complaint,
                guardrail_breached=breached,
            )
        )
    return _verdict(results, base, policy, alpha)


def _verdict(results: list[ArmResult], base: Arm, policy: Policy, alpha: float) -> Decision:
    treatments = [r for r in results if r.variant != base.variant]
    smallest_p = min((r.sequential_p_value or 1.0 for r in treatments), default=1.0)
    total_converted = sum(r.converted for r in results)
    if not treatments:
        return Decision(Verdict.NO_WINNER_YET, None, base.variant, 1.0, results, "only one variant")
    if (
        min(r.exposed for r in results) < policy.min_exposed
        or total_converted < policy.min_converted
    ):
        return Decision(
            Verdict.NO_WINNER_YET,
            None,
            base.variant,
            smallest_p,
            results,
            f"below the minimum sample ({policy.min_exposed} exposed per variant, "
            f"{policy.min_converted} conversions in all)",
        )
    significant = [r for r in treatments if (r.sequential_p_value or 1.0) <= alpha]
    better = [
        r
        for r in significant
        if r.rate > base.converted / base.exposed and not r.guardrail_breached
    ]
    if better:
        best = max(better, key=lambda r: r.rate)
        return Decision(
            Verdict.WINNER,
            best.variant,
            base.variant,
            best.sequential_p_value or 1.0,
            results,
            "beats control in the sequential test",
        )
    if len(significant) == len(treatments) and all(
        r.rate < base.converted / base.exposed for r in significant
    ):
        return Decision(
            Verdict.WINNER,
            base.variant,
            base.variant,
            max(r.sequential_p_value or 1.0 for r in significant),
            results,
            "control beats every variant in the sequential test",
        )
    margin = policy.equivalence_margin
    if all(
        r.difference_low is not None
        and r.difference_high is not None
        and -margin <= r.difference_low
        and r.difference_high <= margin
        for r in treatments
    ):
        return Decision(
            Verdict.NO_DIFFERENCE,
            None,
            base.variant,
            smallest_p,
            results,
            f"every difference is within ±{margin:g} with {1 - policy.alpha:.0%} confidence",
        )
    breached = [r.variant for r in significant if r.guardrail_breached]
    reason = (
        f"variants {', '.join(breached)} breach a guardrail"
        if breached
        else "not enough evidence yet"
    )
    return Decision(Verdict.NO_WINNER_YET, None, base.variant, smallest_p, results, reason)
