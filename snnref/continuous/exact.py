"""Exact event-driven solution of the section-9 nodes, with exact forward sensitivities.

Between events (pulses, spikes, the end of a refractory hold) each node is linear.
From the state (v0, i0) at the start of an interval, after a time s:

(1) i(s) = i0 exp(-s/tau_syn)
(2) LI, LIF:        v(s) = v_leak + (v0 - v_leak) exp(-s/tau)
(3) I, IF:          v(s) = v0
(4) CubaLI, CubaLIF: v(s) = v_leak + (v0 - v_leak) E_m + R i0 (s/tau_mem) K0(s)
(5) CubaIF:         v(s) = v0 + R i0 (tau_syn/tau_mem) (1 - E_s)
with E_m = exp(-s/tau_mem), E_s = exp(-s/tau_syn), x = s delta,
delta = 1/tau_mem - 1/tau_syn = (tau_syn - tau_mem)/(tau_syn tau_mem), and

(6) K0 = E_m X(x),   X(x) = (e^x - 1)/x  (X(0) = 1)
(7) K1 = E_m X'(x),  X'(x) = (x e^x - e^x + 1)/x^2 = sum_{n>=1} n x^(n-1)/(n+1)!
(4) is the textbook tau_syn (E_s - E_m)/(tau_syn - tau_mem), rewritten so that it
has no singularity at tau_syn = tau_mem (the limit is (s/tau_mem) E_m).  delta never
forms the product tau_syn tau_mem (it under- or overflows at extreme time scales):
for constants within a factor 2 of each other it is ((tau_syn - tau_mem)/tau_syn)/tau_mem
(the subtraction is exact there), farther apart 1/tau_mem - 1/tau_syn (no cancellation;
the ratio (tau_syn - tau_mem)/tau_syn overflowed to -inf, and then 0 x (-inf) = NaN, for
tau_syn = 1e-160 and tau_mem = 1e160).  Both are finite for every normal float64 time
constant; a subnormal one (below 2.2e-308 s) has no finite reciprocal and is refused
(``nodes.check_params``).  For |x| <= 1 X and X' are evaluated as X = exprel (SciPy)
and the series (7); for |x| > 1, where E_s - E_m has no cancellation, as
K0 = (E_s - E_m)/x and K1 = ((x E_s - E_s + E_m)/x)/x.  No formula here squares a
time constant (tau^2 would leave the float64 range at scales near 1e+-160).

(8) velocity: v' = (v_leak - v + R i)/tau_mem (CUBA leaky), R i/tau_mem (CubaIF),
    (v_leak - v)/tau (LI, LIF), 0 (I, IF); 0 while held (refractory).

Spike times.  Every decision is made on the distance to threshold d = v - v_threshold,
carried through the events beside v and never formed as v - v_threshold once v is
near threshold (where that difference is the rounding of v: a membrane that only
approaches threshold would round onto it).  With A = v_leak - v_threshold (the
distance the membrane relaxes to), d0 and i0 at the start of an interval and
c = R i0 tau_syn/tau_mem, after a time s:

(9a) LI, LIF:    d(s) = d0 E + A (1 - E),  E = exp(-s/tau)
(9b) CubaIF:     d(s) = a - c E_s,  a = d0 + c
(9c) CUBA leaky: d(s) = d0 E_m + A (1 - E_m) + R i0 (s/tau_mem) K0
(1 - E by expm1).  d0 < 0 on every interval.  (9a) and (9b) are monotone, and reach 0
only if they tend to a positive limit: a root exists iff A > 0, at s* = tau log1p(-d0/A)
(9a), or iff a > 0 and c > 0, at s* = -tau_syn log1p(d0/c), or tau_syn ln(c/a) where
d0/c < -1/2 (the form that keeps the digits of a small a) (9b); a limit of exactly 0
(v_leak = v_threshold, or a CubaIF limit at threshold) is approached, never reached.
CubaIF's limit a is constant between events and carried through them (a pulse adds
R dI tau_syn/tau_mem, a reset sets it to d + c): recomputed as d + c after each event,
its rounding would move a limit at threshold to one ulp above it, and fire.  (A refractory
hold changes it: v stays while the current decays, so it is set to d + c at the release.)
(9c) with R i0 = 0 is (9a) with tau = tau_mem.  Otherwise v' has at most one sign
change on an interval (tau_mem v' is E_m (a + b e^{s delta})), so:
(10a) if d(end) >= 0 the first root is the only root in [0, end];
(10b) otherwise a root exists iff v' goes from + to - at some s_max (a root of v',
      found by brentq) and d(s_max) >= 0 (a graze counts as reaching); the root is
      then in [0, s_max].
The sign of v' in (10) is read from v' divided by the slower of E_m and E_s (E_slow:
E_m if tau_syn <= tau_mem, else E_s), and where A = 0 so is the sign of d: both
decay to 0 and, computed as they are, would underflow or round to the wrong sign at
the end of a long interval (v - v_leak rounds to 0 after about 37 tau_mem while R i
does not).  With the transient T = d - A = (d0 - A) E_m + R i0 (s/tau_mem) K0,
tau_mem v'/E_slow = -T/E_slow + R i0 E_s/E_slow and
  T/E_slow = (d0 - A) + R i0 (s/tau_mem) X(x)          (tau_syn <= tau_mem, x <= 0)
  T/E_slow = (d0 - A) e^-x + R i0 (s/tau_mem) X(-x)    (tau_syn > tau_mem, x > 0)
(K0 = E_m X(x) = E_s X(-x)); where A = 0, d = T is read as T/E_slow.
Roots of (10) are found by scipy.optimize.brentq to rtol = 4 eps (a few ulp of s).  That
solves the float64 d to a few ulp; the root of d itself is only known to d's rounding
(about an eps of the membrane's scale) over the slope v', which at a slow crossing is more
ulp of t: 6 ulp at v' = 12,453 per second, t = 1.5e-5 s and v_threshold = 1 (measured
against a 50-digit solve).
(10c) Events: a pulse adds its jump to d as to v, and fires when d >= 0, at the
      pulse time; a reset sets d = v_reset - v_threshold (hard) or d - v_threshold
      (subtract).  An interval that ends without a root ends with d < 0: a d that
      rounded to 0 or above (an asymptotic approach, or an exponential that
      underflowed) is kept at the largest negative float, so neither the end of
      the simulated interval nor a pulse of weight 0 can fire it.
(10d) A root s* found from the event at t is reported at t + s* rounded to float64, and
      the state is flowed by s* itself, to the root, where v = v_threshold; the events
      after it are timed from the rounded spike time (a shift of at most half an ulp of
      t, the spike time's own rounding).  Flowing by the rounded (t + s*) - t put the
      current at another instant than v: with tau_syn = 1e-20 s, a few ulp of t = 1e-5 s,
      the current kept 1.6 % too much charge after the reset and fired a spike that the
      exact neuron does not have.

Sensitivities (forward mode, a tangent vector d over all inputs p per state
variable, the derivative at fixed time t).  The current's tangent is carried as that
of its charge Q = tau_syn i:
(11a) d Q = tau_syn d i + i e[tau_syn] (at the start: tau_syn e[state.i] + i0 e[tau_syn]);
      d i = (d Q - i e[tau_syn])/tau_syn where a sample reports it.
A pulse adds w_in q to Q whatever tau_syn is.  Carried as d i, a pulse added
-i/tau_syn e[tau_syn] and the flow's tau_syn term took it back: two terms of order
1/tau_syn whose difference is the O(1) derivative, all digits lost for a fast synapse
(dv/dtau_syn 7e-4 off at tau_syn = 1e-15 s, tau_mem = 1e-2 s, 3 ms after the pulse;
-9e15 at 1e-30 s and 0 at 1e-50 s, where it is 2222).  Flow (1)-(5) over a fixed s:
(11) d Q(s) = E_s d Q0 + Q0 E_s (s/tau_syn)/tau_syn e[tau_syn]
(12) CUBA leaky: d v(s) = E_m d v0 + (1 - E_m) e[v_leak] + G (R d Q0 + Q0 e[r])
         + ((v0 - v_leak) E_m s/tau_mem^2 + R Q0 G_m) e[tau_mem] + R Q0 G_s e[tau_syn]
(12b) G = (E_s - E_m)/(tau_syn - tau_mem) = (s/tau_mem) K0/tau_syn (v(s) of one unit of
      charge), G_m and G_s its partial derivatives in tau_mem and tau_syn.  For |x| <= 1
      from K0 and K1: tau_syn G_m = (s/tau_mem)(-K0 + (s/tau_mem)(K0 - K1))/tau_mem and
      tau_syn G_s = (s/tau_mem)(-K0 + (s/tau_syn) K1)/tau_syn; for |x| > 1 in closed form,
      G_m = (G - E_m s/tau_mem^2)/(tau_syn - tau_mem) and
      G_s = (E_s s/tau_syn^2 - G)/(tau_syn - tau_mem).  There the K form cancels two terms
      of order 1/tau to an O(1) result as E_m or E_s vanishes: dv/dtau_mem was 1e-3 off at
      tau_mem = 1e-9 s, tau_syn = 1e-2 s, 3 ms after the pulse, while the closed form's
      terms are then the exponential's own.
(13) CubaIF: d v(s) = d v0 + ((1 - E_s)/tau_mem)(R d Q0 + Q0 e[r])
         - R Q0 E_s (s/tau_syn^2)/tau_mem e[tau_syn] - R Q0 (1 - E_s)/tau_mem^2 e[tau_mem]
(14) LI, LIF: d v(s) = E d v0 + (1 - E) e[v_leak] + (v0 - v_leak) E s/tau^2 e[tau]
Pulses (fixed times): (15) CUBA: d Q += q e[w_in] + w_in e[q]; LI, LIF: d v += (q/tau) e[r]
- R q/tau^2 e[tau] + (R/tau) e[q]; I, IF: d v += q e[r] + R e[q].
Spike by a crossing at t* (implicit function theorem on v(t*) = v_threshold):
(16) d t* = -(d v(t*-) - e[v_threshold]) / v'(t*-)
and the jump of the tangent across the reset (the saltation relation, with v+ = R(v-)):
(17) d v(t*+) = R_v d v(t*-) + R_p + (R_v v'(t*-) - v'(t*+)) d t*
     hard: R_v = 0, R_p = e[v_reset];  subtract: R_v = 1, R_p = -e[v_threshold].
A spike made by a pulse has d t* = 0.  The end of a hold at t_r = t* + tau_ref:
(18) d v(t_r+) = d v(t_r-) - v'(t_r+) (d t* + e[tau_ref]);  d i is continuous.
(18b) tau_ref = 0 (hard reset): tau_ref >= 0, so its entry is the right derivative, the
      limit of (18) as the hold shrinks to nothing: -v'(t*+) e[tau_ref] is added to d v
      once time moves past t* (the state at t* itself is v_reset whatever tau_ref >= 0).
      With reset "subtract", which takes no refractory time, the entry is 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np
from scipy import optimize, special

from ..trace import ArraysByName
from . import nodes

ROOT_RTOL = 4 * np.finfo(np.float64).eps  # brentq's smallest allowed rtol: a few ulp
# The smallest positive float64: no absolute floor, the relative tolerance decides (1e-300 was one:
# at time scales near it brentq stopped at once, spike times moved by 8 % at 1e-299 s and hung at 1e-300).
ROOT_XTOL = math.ulp(0.0)
# brentq's iteration cap: 2,100 halvings take any float64 interval (up to 1.8e308 s, a NIR
# graph's dt of 1e290 say) down to one ulp of its root; its default of 100 and 500 did not.
BRACKET_STEPS = 2100
SERIES_TERMS = 20  # (7): x^n/(n+1)! < 1e-19 for |x| <= 1 beyond 20 terms
LARGEST_NEGATIVE = -math.ulp(0.0)  # (10c): a distance that stays below threshold
# The most spikes a subtractive reset fires at one instant (v lifted that many thresholds past
# threshold by one instant's pulses): 10^6 took 0.4 s; at 10^16 thresholds d - v_threshold no longer
# changes d in float64, and the loop ran until memory ran out.
MOST_SPIKES_AT_ONCE = 10**6
# The most spikes of one neuron in a run: a hard-reset neuron under a huge current fires
# without bound (a CubaLIF with a pulse of 10^6 fired 999,872 times in 28.5 s here, and one
# of 10^9 ran on for minutes): beyond this the run stops with the reason, not a hang.
MOST_SPIKES = 10**6


def _dexprel(x):
    """X'(x) of (7) by its series, for |x| <= 1."""
    total = 0.0
    term = 0.5  # x^(n-1)/(n+1)! at n = 1
    for n in range(1, SERIES_TERMS + 1):
        total += n * term
        term *= x / (n + 2)
    return total


def _delta(tau_mem, tau_syn):
    """delta = 1/tau_mem - 1/tau_syn, never through tau_syn tau_mem, through (tau_syn - tau_mem)/tau_syn
    only within a factor 2 (see (4))."""
    if 0.5 <= tau_syn / tau_mem <= 2:
        return ((tau_syn - tau_mem) / tau_syn) / tau_mem
    return 1 / tau_mem - 1 / tau_syn


def kernels(s, tau_mem, tau_syn):
    """(6), (7): K0 and K1 for a duration s >= 0."""
    x = s * _delta(tau_mem, tau_syn)
    e_m = math.exp(-s / tau_mem)
    if abs(x) <= 1:
        return e_m * float(special.exprel(x)), e_m * _dexprel(x)
    e_s = math.exp(-s / tau_syn)
    return (e_s - e_m) / x, ((x * e_s - e_s + e_m) / x) / x


def charge_kernels(s, tau_mem, tau_syn):
    """(12b): tau_syn G, tau_syn G_m and tau_syn G_s for a duration s >= 0, scaled by tau_syn to be
    multiplied by R i rather than R Q (G_m ~ 1/tau^2 leaves the float64 range at time scales near
    1e-160, where R i tau_syn G_m ~ 1/tau does not).  Every product with an exponential is formed
    before a division by a time constant: where it underflows the term is 0, not 0 x inf."""
    x = s * _delta(tau_mem, tau_syn)
    if abs(x) <= 1:
        k0, k1 = kernels(s, tau_mem, tau_syn)
        scaled = k0 * (s / tau_mem)
        return (scaled, (scaled - k0 - k1 * (s / tau_mem)) * (s / tau_mem) / tau_mem,
                (k1 * (s / tau_syn) - k0) * (s / tau_mem) / tau_syn)
    e_m, e_s = math.exp(-s / tau_mem), math.exp(-s / tau_syn)
    gap = tau_syn - tau_mem
    scaled = (tau_syn / gap) * (e_s - e_m)
    return (scaled, (scaled - (tau_syn / tau_mem) * (e_m * (s / tau_mem))) / gap,
            (e_s * (s / tau_syn) - scaled) / gap)


class TooManySpikes(ValueError):
    """A neuron fired more than ``MOST_SPIKES`` times in one run (the message says where)."""


class StateOverflow(ValueError):
    """A pulse or an initial current takes a node's state, or the rise it drives, out of the
    float64 range (the message names ``pulse_weights`` or ``state['i']``)."""


def _current_overflows(neuron, i, a):
    """(10c) needs the current I, the rise R I it drives and CubaIF's limit a (9b) in float64:
    an overflow made NaN (CubaLI), a NaN root search (CubaLIF) or an endless run of spikes at
    one instant (CubaIF's infinite limit)."""
    return not (math.isfinite(i) and math.isfinite(neuron.p["r"] * i) and (a is None or math.isfinite(a)))


class _Neuron:
    """The parameters of one neuron and its flow, velocity and tangent maps."""

    def __init__(self, row, p, index):
        self.row = row
        self.p = p
        self.index = index  # input name -> tangent position (None: no tangents)
        self.theta = p.get("v_threshold")
        if row.spiking and row.leaky:
            self.limit = p["v_leak"] - self.theta  # A of (9)

    def flow(self, v, i, s):
        """(1)-(5): the state after a time s from (v, i)."""
        row, p = self.row, self.p
        if row.current:
            i1 = i * math.exp(-s / p["tau_syn"])
            if row.leaky:
                k0, _ = kernels(s, p["tau_mem"], p["tau_syn"])
                v1 = p["v_leak"] + (v - p["v_leak"]) * math.exp(-s / p["tau_mem"]) \
                    + p["r"] * i * (s / p["tau_mem"]) * k0
            else:
                v1 = v - p["r"] * i * (p["tau_syn"] / p["tau_mem"]) * math.expm1(-s / p["tau_syn"])
            return v1, i1
        if row.leaky:
            return p["v_leak"] + (v - p["v_leak"]) * math.exp(-s / p["tau"]), i
        return v, i

    def velocity(self, v, i):
        """(8) for a free (not held) membrane."""
        row, p = self.row, self.p
        if row.current:
            drive = p["r"] * i + (p["v_leak"] - v if row.leaky else 0.0)
            return drive / p["tau_mem"]
        return (p["v_leak"] - v) / p["tau"] if row.leaky else 0.0

    def held_flow(self, v, i, s):
        """A refractory hold: v fixed, the current decays as (1)."""
        return v, (i * math.exp(-s / self.p["tau_syn"]) if self.row.current else i)

    def unit(self, name):
        e = np.zeros(len(self.index))
        e[self.index[name]] = 1.0
        return e

    def charge_tangent(self, i):
        """(11a): the charge's tangent at the start, tau_syn e[state.i] + i0 e[tau_syn]."""
        dq = self.p["tau_syn"] * self.unit("state.i")
        dq[self.index["tau_syn"]] += i
        return dq

    def current_tangent(self, i, dq):
        """(11a): the current's tangent d i = (dq - i e[tau_syn]) / tau_syn."""
        di = dq / self.p["tau_syn"]
        di[self.index["tau_syn"]] -= i / self.p["tau_syn"]
        return di

    def flow_tangent(self, v, i, dv, dq, s, held):
        """(11)-(14): the tangents after a time s (v, i: the state at the start; dq: the charge's
        tangent, (11a))."""
        row, p, at = self.row, self.p, self.index
        if row.current:
            tau_syn = p["tau_syn"]
            e_s = math.exp(-s / tau_syn)
            # Q = tau_syn i; each product R Q F below is formed as R i (tau_syn F) (see charge_kernels).
            dq1 = e_s * dq
            dq1[at["tau_syn"]] += i * e_s * (s / tau_syn)
            if held:
                return dv, dq1
            r, tau_mem = p["r"], p["tau_mem"]
            if row.leaky:
                e_m = math.exp(-s / tau_mem)
                kernel, kernel_m, kernel_s = charge_kernels(s, tau_mem, tau_syn)
                dv1 = e_m * dv + (kernel / tau_syn) * r * dq
                dv1[at["r"]] += kernel * i
                dv1[at["v_leak"]] += 1 - e_m
                dv1[at["tau_mem"]] += (v - p["v_leak"]) * e_m * (s / tau_mem) / tau_mem + r * i * kernel_m
                dv1[at["tau_syn"]] += r * i * kernel_s
            else:
                rise = -math.expm1(-s / tau_syn)
                dv1 = dv + rise * r * dq / tau_mem
                dv1[at["r"]] += rise * i * (tau_syn / tau_mem)
                dv1[at["tau_syn"]] -= r * i * e_s * (s / tau_syn) / tau_mem
                dv1[at["tau_mem"]] -= r * i * (tau_syn / tau_mem) * rise / tau_mem
            return dv1, dq1
        if held or not row.leaky:
            return dv, dq
        tau = p["tau"]
        e = math.exp(-s / tau)
        dv1 = e * dv
        dv1[at["v_leak"]] += 1 - e
        dv1[at["tau"]] += (v - p["v_leak"]) * e * (s / tau) / tau
        return dv1, dq

    def jumps(self, q):
        """nodes (10): the jumps of v and i made by one pulse of weight q."""
        row, p = self.row, self.p
        if row.current:
            return 0.0, p["w_in"] * q / p["tau_syn"]
        if row.leaky:
            return p["r"] * q / p["tau"], 0.0
        return p["r"] * q, 0.0

    def pulse_tangent(self, dv, dq, q, j):
        """(15) for pulse number j (CUBA: on the charge's tangent dq, (11a))."""
        row, p, at = self.row, self.p, self.index
        weight = f"weight[{j}]"
        if row.current:
            dq = dq.copy()
            dq[at["w_in"]] += q
            dq[at[weight]] += p["w_in"]
            return dv, dq
        dv = dv.copy()
        if row.leaky:
            dv[at["r"]] += q / p["tau"]
            dv[at["tau"]] -= (p["r"] * q / p["tau"]) / p["tau"]
            dv[at[weight]] += p["r"] / p["tau"]
        else:
            dv[at["r"]] += q
            dv[at[weight]] += p["r"]
        return dv, dq

    def reach(self, i):
        """CubaIF: c = R i tau_syn/tau_mem, how much the current still raises the membrane (9b)."""
        return self.p["r"] * i * (self.p["tau_syn"] / self.p["tau_mem"])

    def distance(self, d0, i0, s, a=None):
        """(9a)-(9c): the distance to threshold d(s) from (d0, i0), free flow (CubaIF: from its limit a)."""
        row, p = self.row, self.p
        if row.current and not row.leaky:
            return a - self.reach(i0) * math.exp(-s / p["tau_syn"])
        if not row.leaky:
            return d0
        tau = p["tau_mem"] if row.current else p["tau"]
        d = d0 * math.exp(-s / tau) - self.limit * math.expm1(-s / tau)
        if row.current:
            d += p["r"] * i0 * (s / p["tau_mem"]) * kernels(s, p["tau_mem"], p["tau_syn"])[0]
        return d

    def crossing(self, d0, i0, span, a=None):
        """(9), (10): the local time of the first threshold crossing in [0, span], or None (d0 < 0)."""
        row, p = self.row, self.p
        if span <= 0 or not row.spiking:
            return None
        if row.current and not row.leaky:  # (9b)
            c = self.reach(i0)
            if not (a > 0 and c > 0):
                return None
            ratio = d0 / c
            root = -p["tau_syn"] * math.log1p(ratio) if ratio > -0.5 else p["tau_syn"] * math.log(c / a)
        elif not row.leaky:
            return None  # IF: v only moves at pulses
        elif not row.current or p["r"] * i0 == 0:  # (9a)
            tau = p["tau_mem"] if row.current else p["tau"]
            root = tau * math.log1p(-d0 / self.limit) if self.limit > 0 else math.inf
        else:
            return self._cuba_crossing(d0, i0, span)
        return root if root <= span else None

    def _cuba_crossing(self, d0, i0, span):
        """(10) for a CUBA leaky node with a current, on the signs of d and v' over E_slow."""
        p = self.p
        r_i0, tau_mem = p["r"] * i0, p["tau_mem"]
        delta = _delta(tau_mem, p["tau_syn"])
        offset = d0 - self.limit

        def scaled_transient(s):  # T / E_slow
            x = s * delta
            if x <= 0:
                return offset + r_i0 * (s / tau_mem) * float(special.exprel(x))
            return offset * math.exp(-x) + r_i0 * (s / tau_mem) * float(special.exprel(-x))

        def scaled_slope(s):  # tau_mem v' / E_slow
            x = s * delta
            return -scaled_transient(s) + r_i0 * (math.exp(x) if x <= 0 else 1.0)

        def distance(s):
            return scaled_transient(s) if self.limit == 0 else self.distance(d0, i0, s)

        if distance(span) >= 0:
            return optimize.brentq(distance, 0.0, span, xtol=ROOT_XTOL, rtol=ROOT_RTOL, maxiter=BRACKET_STEPS)
        if not (scaled_slope(0.0) > 0 and scaled_slope(span) < 0):
            return None
        top = optimize.brentq(scaled_slope, 0.0, span, xtol=ROOT_XTOL, rtol=ROOT_RTOL, maxiter=BRACKET_STEPS)
        if distance(top) < 0:
            return None
        return optimize.brentq(distance, 0.0, top, xtol=ROOT_XTOL, rtol=ROOT_RTOL, maxiter=BRACKET_STEPS)


@dataclass(frozen=True)
class Gradients:
    """Exact derivatives from ``snnref.continuous.gradients``.

    ``names``: the inputs, in tangent order: the node's numeric parameters
    (and ``tau_ref`` for spiking nodes), ``state.v`` (and ``state.i``), then
    ``weight[j]`` for each pulse j (row j of ``pulse_weights``).  Each neuron's
    derivatives are with respect to its own parameters, state and weights.
    ``spike_times``: a tuple of N arrays of shape (n_spikes, len(names)).
    ``states[var]``: shape (S, N, len(names)), the derivative of
    ``trace.states[var]``.  ``trace``: the ``ContinuousTrace`` of the same run.
    A spike time whose crossing only grazes threshold has an infinite or NaN
    derivative (the spike count is not locally constant there).
    ``tau_ref`` at 0 (hard reset): the right derivative (a refractory time cannot be
    negative), the limit tau_ref -> 0+ (18b); with reset "subtract" its entry is 0.
    The initial state is an input of its own (as ``snnref.spec.vjp``, SPEC.md section 5): without
    ``state`` the membrane starts at v_leak (or v_reset), and that start's dependence on
    the parameter is reported under ``state.v``, not under ``v_leak`` (``v_reset``);
    add the two entries for the derivative of a neuron that starts at rest.
    """

    names: Tuple[str, ...]
    spike_times: Tuple[np.ndarray, ...]
    states: Dict[str, np.ndarray]
    trace: nodes.ContinuousTrace

    def __post_init__(self):
        # Frozen: the dataclass's own __init__ sets fields the same way.
        object.__setattr__(self, "states", ArraysByName(self.states, f"states of these {self.trace.node} gradients"))


def _names(row, pulses):
    inputs = row.params + (("tau_ref",) if row.spiking else ())
    inputs += tuple(f"state.{var}" for var in nodes.variables(row))
    return inputs + tuple(f"weight[{j}]" for j in range(pulses))


def _run_neuron(neuron, start, times, weights, t_end, samples, order, tangents, label):
    """The event loop of one neuron (samples sorted by ``order``; ``label`` names its weights)."""
    row, p = neuron.row, neuron.p
    v, i = start["v"], start.get("i", 0.0)
    d = v - p["v_threshold"] if row.spiking else None  # (10c), < 0: _solve refuses a start at threshold
    limit_of_cuba_if = row.spiking and row.current and not row.leaky
    a = d + neuron.reach(i) if limit_of_cuba_if else None  # (9b)
    if row.current and _current_overflows(neuron, i, a):
        raise StateOverflow(f"state['i']: node {row.name}'s current I = {i!r} raises v by R I"
                            f"{' tau_syn/tau_mem' if limit_of_cuba_if else ''}, which leaves the float64 range; "
                            "expected a smaller current")
    if tangents:
        # The current's tangent is carried as its charge's, (11a).
        dv, dq = neuron.unit("state.v"), (neuron.charge_tangent(i) if row.current else np.zeros(len(neuron.index)))
    tau_ref = p.get("tau_ref", 0.0)
    spikes, before, after, spike_grads = [], [], [], []
    out_v = np.empty(len(samples))
    out_i = np.empty(len(samples))
    grad_v = np.empty((len(samples), len(neuron.index))) if tangents else None
    grad_i = np.empty((len(samples), len(neuron.index))) if tangents else None
    t, next_pulse, next_sample = 0.0, 0, 0
    held_until, release_grad = None, None
    pending = None  # (18b): the release term of a hold of length 0, due once time moves past the spike

    def emit_until(limit, inclusive):
        # The samples in [t, limit) (or [t, limit]) from the state at t.
        nonlocal next_sample
        while next_sample < len(samples):
            k = order[next_sample]
            at = samples[k]
            if at > limit or (at == limit and not inclusive):
                break
            s = at - t
            held = held_until is not None
            out_v[k], out_i[k] = (neuron.held_flow if held else neuron.flow)(v, i, s)
            if tangents:
                tangent = dv + pending if pending is not None and s > 0 else dv  # (18b)
                grad_v[k], sampled_dq = neuron.flow_tangent(v, i, tangent, dq, s, held)
                grad_i[k] = neuron.current_tangent(out_i[k], sampled_dq) if row.current else sampled_dq
            next_sample += 1

    def advance(to, s=None):
        # s: the time flowed, to - t unless given (a crossing flows by its root, (10d)).
        nonlocal v, i, d, dv, dq, t, pending
        s = to - t if s is None else s
        held = held_until is not None
        if tangents:
            if pending is not None and s > 0:  # (18b): time moves past the spike
                dv, pending = dv + pending, None
            dv, dq = neuron.flow_tangent(v, i, dv, dq, s, held)
        if row.spiking and not held:
            d = neuron.distance(d, i, s, a)
        v, i = (neuron.held_flow if held else neuron.flow)(v, i, s)
        t = to

    def fire(crossed):
        # (16), (17); the spike happens at time t with v = v(t-).
        nonlocal v, d, a, dv, held_until, release_grad, pending
        if len(spikes) == MOST_SPIKES:
            raise TooManySpikes(f"{label}: node {row.name}'s neuron fires more than {MOST_SPIKES} times by t = "
                                f"{float(t)!r} s (t_end {t_end!r} s), each an exact event; expected a drive that "
                                "fires fewer (smaller weights, w_in or r, a refractory period tau_ref) or a shorter "
                                "t_end")
        spikes.append(t)
        before.append((v, i))
        v_minus = v
        if p["reset"] == "hard":
            v, d = p["v_reset"], p["v_reset"] - p["v_threshold"]
        else:
            v, d = v_minus - p["v_threshold"], d - p["v_threshold"]
        if limit_of_cuba_if:
            a = d + neuron.reach(i)
        held = tau_ref > 0
        if held:
            held_until = t + tau_ref
        after.append((v, i))
        if tangents:
            if crossed:
                slope_minus = neuron.velocity(v_minus, i)
                with np.errstate(divide="ignore", invalid="ignore"):  # an exact graze: inf / NaN, documented
                    d_time = -(dv - neuron.unit("v_threshold")) / slope_minus
            else:
                d_time = np.zeros_like(dv)
                slope_minus = 0.0
            slope_plus = 0.0 if held else neuron.velocity(v, i)
            if p["reset"] == "hard":
                dv = neuron.unit("v_reset") - slope_plus * d_time
            else:
                dv = dv - neuron.unit("v_threshold") + (slope_minus - slope_plus) * d_time
            spike_grads.append(d_time)
            if held:
                release_grad = d_time + neuron.unit("tau_ref")
            elif p["reset"] == "hard":
                # (18b): a hold of length 0 releases at t*+, after the state at t* (a sample there) is taken.
                pending = -slope_plus * neuron.unit("tau_ref")

    while True:
        pulse_at = times[next_pulse] if next_pulse < len(times) else math.inf
        event = min(pulse_at, held_until if held_until is not None else math.inf, t_end)
        if row.spiking and held_until is None:
            try:
                found = neuron.crossing(d, i, event - t, a)
            except RuntimeError:
                # brentq's "Failed to converge after 2100 iterations", under a current far past threshold.
                raise ValueError(f"{label}: node {row.name}'s next crossing of v_threshold after t = {float(t)!r} s "
                                 f"cannot be timed in float64 (I = {float(i)!r}); expected smaller weights "
                                 "(or w_in)") from None
            if found is not None:
                crossing_at = t + found
                if crossing_at == t and found > 0 and spikes and spikes[-1] == t:
                    # A second crossing rounds onto the first spike's time: float64 time cannot tell them apart.
                    raise ValueError(
                        f"pulse_times: float64 time cannot hold this neuron's spikes near t = {float(t)!r} s (one ulp "
                        f"of t is {np.spacing(t):.3g} s; the next spike is {found:.3g} s after the last); shift "
                        "the times towards 0 or measure them in a larger unit")
                emit_until(crossing_at, False)
                advance(crossing_at, found)
                v, d = p["v_threshold"], 0.0  # the root's definition, free of the flow's rounding
                fire(True)
                continue
        emit_until(event, False)
        advance(event)
        if row.spiking:
            d = min(d, LARGEST_NEGATIVE)  # (10c): no root on the interval, so it ends below threshold
        if held_until is not None and held_until <= t:
            # (18): the hold ends; a pulse at this instant acts on the free membrane.
            held_until = None
            if limit_of_cuba_if:  # the current decayed under the held membrane: a new limit
                a = d + neuron.reach(i)
            if tangents:
                dv = dv - neuron.velocity(v, i) * release_grad
        while next_pulse < len(times) and times[next_pulse] == t:
            q = float(weights[next_pulse])  # Python float: an overflow is inf, refused below, and no warning
            if not (held_until is not None and not row.current):
                if tangents:
                    dv, dq = neuron.pulse_tangent(dv, dq, q, next_pulse)
                jump_v, jump_i = neuron.jumps(q)
                v, i = v + jump_v, i + jump_i
                if row.spiking:
                    d += jump_v
                if limit_of_cuba_if:
                    a += neuron.reach(jump_i)
            next_pulse += 1
        if not math.isfinite(v):
            # A sum of finite pulses past float64 (an LI or I node has no current to check first):
            # the run returned inf without a word.
            raise StateOverflow(f"pulse_weights: the pulses at t = {float(t)!r} s take node {row.name}'s membrane "
                                f"(v = {v!r}) out of the float64 range; expected smaller weights (or r)")
        if row.current and _current_overflows(neuron, i, a):
            rise = " tau_syn/tau_mem" if limit_of_cuba_if else ""
            raise StateOverflow(f"pulse_weights: the pulses at t = {float(t)!r} s take node {row.name}'s synaptic "
                                f"current (I = {float(i)!r}, or the rise R I{rise} it drives) out of the float64 "
                                "range; expected smaller weights (or w_in)")
        if row.spiking and held_until is None and d >= 0 and p["reset"] != "hard" \
                and math.floor(d / p["v_threshold"]) + 1 > MOST_SPIKES_AT_ONCE:
            raise ValueError(f"pulse_weights: the pulses at t = {float(t)!r} s lift node {row.name}'s membrane "
                             f"{d / p['v_threshold']:.3g} thresholds past v_threshold, and a subtractive reset would "
                             f"fire once per threshold at that instant; expected at most {MOST_SPIKES_AT_ONCE} "
                             "(smaller weights)")
        while row.spiking and held_until is None and d >= 0:
            fire(False)
        if t >= t_end:
            emit_until(t_end, True)
            break
    result = {
        "spikes": np.array(spikes, dtype=np.float64),
        "before": before,
        "after": after,
        "v": out_v,
        "i": out_i,
    }
    if tangents:
        result["spike_grads"] = np.array(spike_grads).reshape(len(spikes), len(neuron.index))
        result["grad_v"], result["grad_i"] = grad_v, grad_i
    return result


def _solve(node_name, params, pulse_times, pulse_weights, t_end, samples, state, tangents):
    row = nodes.node(node_name)
    times, weights = nodes.check_pulses(pulse_times, pulse_weights)
    n = weights.shape[1]
    checked = nodes.check_params(row, params, n)
    start = nodes.check_state(row, checked, state, n)
    if row.spiking and np.any(start["v"] >= checked["v_threshold"]):
        # Without a state the membrane starts at rest: name what the caller gave.
        given = "state['v']" if state and "v" in state else "params['v_leak'] (the membrane's start, with no state)"
        raise ValueError(f"{given}: expected an initial membrane below v_threshold (a spike is the "
                         "threshold reached from below)")
    end, sample_times = nodes.check_times(t_end, samples)
    order = np.argsort(sample_times, kind="stable")
    names = _names(row, len(times))
    index = {name: k for k, name in enumerate(names)}
    variables = nodes.variables(row)
    runs = []
    for neuron in range(n):
        p = {name: float(value[neuron]) for name, value in checked.items() if name != "reset"}
        if row.spiking:
            p["reset"] = checked["reset"]
        runs.append(_run_neuron(
            _Neuron(row, p, index), {var: float(start[var][neuron]) for var in variables},
            times, weights[:, neuron], end, sample_times, order, tangents, f"pulse_weights[:, {neuron}]",
        ))
    states = {var: np.stack([run[var] for run in runs], axis=1).reshape(len(sample_times), n)
              for var in variables}
    position = {var: k for k, var in enumerate(variables)}
    trace = nodes.ContinuousTrace(
        node=row.name,
        params=checked,
        t_end=end,
        spike_times=tuple(run["spikes"] for run in runs),
        samples=sample_times,
        states=states,
        before_spike={var: tuple(np.array([s[position[var]] for s in run["before"]], dtype=np.float64)
                                 for run in runs) for var in variables},
        after_spike={var: tuple(np.array([s[position[var]] for s in run["after"]], dtype=np.float64)
                                for run in runs) for var in variables},
        initial_state=start,
    )
    if not tangents:
        return trace
    grads = {var: np.stack([run[f"grad_{var}"] for run in runs], axis=1) for var in variables}
    return Gradients(names, tuple(run["spike_grads"] for run in runs), grads, trace)


def simulate(node, params, pulse_times, pulse_weights, *, t_end, samples=None, state=None):
    """The exact solution (see the package docstring for the arguments)."""
    return _solve(node, params, pulse_times, pulse_weights, t_end, samples, state, False)


def gradients(node, params, pulse_times, pulse_weights, *, t_end, samples=None, state=None):
    """Exact derivatives of spike times and sampled states: a ``Gradients``."""
    return _solve(node, params, pulse_times, pulse_weights, t_end, samples, state, True)
