"""The end-of-run report: one function of a run log, and a result that reports itself.

:func:`run_report` computes, from the run log and the run's params, the three numbers a finished
injection run is judged by first: specificity (do the injections raise the injected facts more
than the control facts?), contrastive effectivity of memorization probes with its bootstrap CI (ℓ
against foils), and stationarity (did the background loss stay within ``analysis.stationarity_target``
between the run's first and last ``analysis.stationarity_n`` updates?). The :class:`RunReport` it
returns says itself what it found, in the spirit of lmfit's ModelResult: ``report()`` is the text
that `factacq inject` prints at the end of a run and `factacq analyze` prints in its summary, and
``to_dict()`` is what run.json (``report``) and tables/summary.json store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from factacq import metrics
from factacq.errors import FactacqError
from factacq.params import AnalysisParams, Params

PARTS = ("specificity", "contrastive_effectivity", "stationarity")
DEFAULT_TARGET = AnalysisParams.model_fields["stationarity_target"].default


@dataclass(frozen=True)
class RunReport:
    """Specificity, contrastive effectivity and stationarity of one run (each the dict of its
    metrics function, or None where the run log cannot give it: ``unavailable`` says why)."""

    specificity: dict | None
    contrastive_effectivity: dict | None
    stationarity: dict | None
    stationarity_target: float = DEFAULT_TARGET
    unavailable: dict[str, str] = field(default_factory=dict)  # part -> why it is None

    @property
    def stationary(self) -> bool | None:
        """Whether |background loss change| <= ``stationarity_target`` (None: no stationarity)."""
        if self.stationarity is None or not np.isfinite(self.stationarity["change"]):
            return None
        return bool(abs(self.stationarity["change"]) <= self.stationarity_target)

    def to_dict(self) -> dict:
        """The report as run.json and summary.json store it: the three parts under their names
        (NaN becomes null when written), ``stationarity_target``, ``stationary`` and
        ``unavailable``."""
        return {**{name: getattr(self, name) for name in PARTS},
                "stationarity_target": self.stationarity_target, "stationary": self.stationary,
                "unavailable": dict(self.unavailable)}

    @classmethod
    def from_dict(cls, data: dict) -> RunReport:
        """A report read back from run.json or summary.json (null read as NaN again). Also reads
        the stored forms from before this class: a part stored as ``{"error": ...}`` (run.json)
        or missing, and no ``stationarity_target`` (the default)."""
        unavailable = dict(data.get("unavailable") or {})
        parts = {}
        for name in PARTS:
            value = data.get(name)
            if isinstance(value, dict) and set(value) == {"error"}:
                unavailable[name], value = str(value["error"]), None
            parts[name] = (None if value is None else
                           {k: float("nan") if v is None else v for k, v in value.items()})
        target = data.get("stationarity_target")
        return cls(**parts, unavailable=unavailable,
                   stationarity_target=DEFAULT_TARGET if target is None else float(target))

    def report(self) -> str:
        """The report as text, one line per part (an unavailable part says why)."""
        return "\n".join([self._specificity(), self._contrastive(), self._stationarity()])

    def __str__(self) -> str:
        return self.report()

    def _missing(self, name: str, label: str) -> str:
        return f"{label}: n/a ({self.unavailable.get(name, 'not computed')})"

    def _specificity(self) -> str:
        s = self.specificity
        if s is None:
            return self._missing("specificity", "specificity")
        return (f"specificity: {s['specificity']:.3f} (control gain {s['control_gain']:.4f}"
                f" / effectivity {s['effectivity']:.4f}, {s['kind']})")

    def _contrastive(self) -> str:
        c = self.contrastive_effectivity
        if c is None:
            return self._missing("contrastive_effectivity", "contrastive effectivity")
        return (f"contrastive effectivity ({c['column']}): {c['mean']:.4f} "
                f"[{c['lo']:.4f}, {c['hi']:.4f}] {c['ci']:.0%} CI over {c['n_items']} items "
                f"(memorization probes)")

    def _stationarity(self) -> str:
        s = self.stationarity
        if s is None:
            return self._missing("stationarity", "stationarity")
        verdict = {True: "within", False: "outside", None: "not comparable with"}[self.stationary]
        return (f"stationarity: {s['column']} {s['first']:.4f} -> {s['last']:.4f} "
                f"(change {s['change']:+.4f}) over the first/last {s['n']} updates"
                + (" (they overlap: a short run)" if s["overlap"] else "")
                + f": {verdict} the {self.stationarity_target:g} nats/token target"
                + (f"; LR at the first injection {s['lr_first_injection']:.3g}"
                   if np.isfinite(s.get("lr_first_injection", np.nan)) else ""))


def run_report(frame: pd.DataFrame, params: Params) -> RunReport:
    """The :class:`RunReport` of a run log (``runlog.load_run``) under ``params`` (the run's own):
    t_w = ``params.analysis_window``, the CI, bootstrap size and seed of ``params.analysis``, and
    the stationarity of its ``stationarity_n`` first and last updates against its
    ``stationarity_target``. A part the log cannot give (no control items, no foils, no train
    records) is None, with the reason in ``unavailable``."""
    window, opts = params.analysis_window, params.analysis
    compute = {
        "specificity": lambda: metrics.specificity(frame, window),
        "contrastive_effectivity": lambda: metrics.contrastive_effectivity(
            frame, window, opts.ci, opts.bootstrap, opts.seed),
        "stationarity": lambda: metrics.stationarity(frame, opts.stationarity_n),
    }
    parts, unavailable = {}, {}
    for name in PARTS:
        try:
            parts[name] = compute[name]()
        except FactacqError as exc:
            parts[name], unavailable[name] = None, str(exc)
    return RunReport(**parts, stationarity_target=opts.stationarity_target, unavailable=unavailable)
