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
- :func:`plan`: for a minimum detectable effect (MDE) the marketer sets, the mixing
  τ it implies (:func:`tau_for_effect`), the fixed-horizon sample at 80 % power, and
  how many users per arm the sequential test expects to need (median and 80th
  percentile of its stopping sample when the true effect is the MDE, from a seeded
  simulation of the test's path).

**Choosing τ.** The mixture N(0, τ²) is a prior over the effect; the test reaches its
threshold soonest for effects near τ. By simulation (baseline 5 %, +10 % relative lift,
500 users per arm per day, daily looks, 2,000 runs) the median decision day for
τ = 0.5, 0.75, 1, 1.5, 2 and 3 × the effect was 73, 65, 61, 62, 65 and 67 days, against
62.5 for a fixed-horizon test at 80 % power (which may be looked at only once); false
positives under A/A stayed at 1-3 %. Hence τ = the MDE as an absolute difference of rates
(baseline rate × relative MDE): the sequential test then decides a true MDE-sized effect
about when a fixed-horizon test would, while staying valid under continuous peeking.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
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
    #: sequential test is tuned for, unless ``mde`` is set
    tau: float = 0.02
    #: the minimum detectable effect, relative to control's rate (0.1 = +10 %); when set,
    #: tau = :func:`tau_for_effect` of it at control's rate
    mde: float | None = None
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
    tau = policy.tau
    if policy.mde is not None:
        tau = tau_for_effect(policy.mde * max(base.converted, 1) / max(base.exposed, 1))
    base_unsub = _rate(base.unsubscribed, base.sent)
    base_complaint = _rate(base.complained, base.sent)
    for arm in arms:
        low, high = wilson_interval(arm.converted, arm.exposed, alpha=policy.alpha)
        own = ArmResult(
            arm.variant,
            arm.exposed,
            arm.converted,
            arm.converted / arm.exposed if arm.exposed else 0.0,
            low,
            high,
            unsubscribe_rate=_rate(arm.unsubscribed, arm.sent),
            complaint_rate=_rate(arm.complained, arm.sent),
        )
        if arm is base:
            results.append(own)
            continue
        _, z_p = two_proportion_ztest(base.converted, base.exposed, arm.converted, arm.exposed)
        beat = (
            probability_to_beat(base.converted, base.exposed, arm.converted, arm.exposed)
            if arm.exposed and base.exposed
            else 0.5
        )
        seq = msprt(base.converted, base.exposed, arm.converted, arm.exposed, tau=tau, alpha=alpha)
        guardrails = (
            ("unsubscribe_rate", own.unsubscribe_rate, base_unsub, policy.max_unsubscribe_increase),
            ("complaint_rate", own.complaint_rate, base_complaint, policy.max_complaint_increase),
        )
        breached = [
            name
            for name, rate, control_rate, limit in guardrails
            if rate is not None and control_rate is not None and rate - control_rate > limit
        ]
        results.append(
            replace(
                own,
                z_p_value=z_p,
                probability_to_beat_control=beat,
                sequential_p_value=min(seq.p_value, previous.get(arm.variant, 1.0)),
                difference_low=seq.ci_low,
                difference_high=seq.ci_high,
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


#: the smallest τ used (an absolute difference of rates): an MDE of a rate near 0
#: would otherwise make the mixture degenerate
MIN_TAU = 1e-4


#: the smallest effect (absolute difference of rates) planned for
MIN_EFFECT = 1e-5


def tau_for_effect(effect: float) -> float:
    """τ for a minimum detectable effect given as an absolute difference of rates: τ equals
    the effect (see the module docstring for the simulation that chose it)."""
    return max(abs(effect), MIN_TAU)


def fixed_horizon_per_arm(
    baseline: float, effect: float, *, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Users per arm a two-sided z-test of two proportions needs to detect ``effect``
    (absolute) at ``power``, looked at once: ``(z_{1-α/2} + z_power)² (p0 q0 + p1 q1) / δ²``."""
    p1 = min(max(baseline + effect, 0.0), 1.0)
    spread = baseline * (1 - baseline) + p1 * (1 - p1)
    z = float(stats.norm.isf(alpha / 2) + stats.norm.ppf(power))
    return math.ceil(z * z * max(spread, 1e-12) / (effect * effect))


def sequential_per_arm(
    baseline: float,
    effect: float,
    *,
    tau: float,
    alpha: float = 0.05,
    quantiles: Sequence[float] = (0.5, 0.8),
    paths: int = 2000,
    seed: int = 0,
) -> list[int | None]:
    """Users per arm by which the mSPRT has decided in the given share of experiments
    whose true effect is ``effect`` (absolute), looked at continuously; None when that
    share is not reached by 6 × the fixed-horizon sample. A seeded simulation of the
    test's path in the normal approximation (the difference of the arms' running means
    is a Brownian motion with drift ``effect``), so the answer is the same every time."""
    p1 = min(max(baseline + effect, 0.0), 1.0)
    spread = max(baseline * (1 - baseline) + p1 * (1 - p1), 1e-12)
    horizon = fixed_horizon_per_arm(baseline, effect, alpha=alpha)
    n = np.unique(np.geomspace(max(horizon / 200, 10.0), 6 * horizon, 400).round())
    steps = np.diff(n, prepend=0.0)
    rng = np.random.default_rng(seed)
    sums = np.cumsum(
        effect * steps + rng.standard_normal((paths, n.size)) * np.sqrt(spread * steps), axis=1
    )
    d = sums / n
    variance = spread / n
    tau2 = tau * tau
    log_ratio = 0.5 * np.log(variance / (variance + tau2)) + d * d * tau2 / (
        2 * variance * (variance + tau2)
    )
    crossed = log_ratio >= math.log(1 / alpha)
    first = np.where(crossed.any(axis=1), n[crossed.argmax(axis=1)], np.inf)
    return [
        None if not math.isfinite(q) else math.ceil(q)
        for q in np.quantile(first, list(quantiles)).tolist()
    ]


@dataclass(frozen=True, slots=True)
class Plan:
    """What an experiment needs to detect ``mde`` (relative to ``baseline_rate``)."""

    mde: float
    baseline_rate: float
    #: the MDE as an absolute difference of rates
    effect: float
    tau: float
    alpha: float
    #: a fixed-horizon test (looked at once) at 80 % power
    fixed_horizon_per_arm: int
    #: the sequential test stops by this many users per arm in half (four in five) of the
    #: experiments whose true effect is the MDE
    sequential_median_per_arm: int | None
    sequential_p80_per_arm: int | None
    #: the smallest arm's exposures so far
    exposed_per_arm: int
    #: more users per arm until the median (80th percentile) stopping sample
    more_per_arm: int | None
    more_per_arm_p80: int | None


def plan(
    baseline_rate: float, mde: float, *, exposed_per_arm: int = 0, alpha: float = 0.05
) -> Plan:
    """The plan for detecting a relative lift ``mde`` over ``baseline_rate`` (the control's
    rate so far, or an expected one) with the sequential test at level ``alpha`` (already
    divided by the comparisons). Raises ValueError for a rate outside (0, 1) or an MDE
    that is not positive, below ``MIN_EFFECT`` as a difference, or would push the rate past
    1."""
    if not 0 < baseline_rate < 1:
        raise ValueError(f"the baseline rate must be in (0, 1), got {baseline_rate!r}")
    effect = baseline_rate * mde
    if not (math.isfinite(mde) and mde > 0 and baseline_rate + effect < 1):
        raise ValueError(f"the MDE must be positive and keep the rate below 1, got {mde!r}")
    if effect < MIN_EFFECT:
        raise ValueError(
            f"the MDE is {effect:.2g} as a difference of rates: below {MIN_EFFECT:g}, no "
            "experiment could detect it"
        )
    tau = tau_for_effect(effect)
    median, p80 = sequential_per_arm(baseline_rate, effect, tau=tau, alpha=alpha)
    return Plan(
        mde=mde,
        baseline_rate=baseline_rate,
        effect=effect,
        tau=tau,
        alpha=alpha,
        fixed_horizon_per_arm=fixed_horizon_per_arm(baseline_rate, effect, alpha=alpha),
        sequential_median_per_arm=median,
        sequential_p80_per_arm=p80,
        exposed_per_arm=exposed_per_arm,
        more_per_arm=None if median is None else max(0, median - exposed_per_arm),
        more_per_arm_p80=None if p80 is None else max(0, p80 - exposed_per_arm),
    )
