"""Each stage's result in one line, as a task log and the command line's progress show it.

grading.pipeline's stages return small JSON-able summaries; ``reported`` turns the summary of
the stage it decorates into ``tiers: 2,000 customers graded (1,700 normal, 270 gold, 30
platinum), rules 1.2.0 in 0.8 s``, logs it and hands it to a ``progress`` callback. Kept apart
from the stages so the wording of every line is in one place and the stages stay short.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("grading.pipeline")  # the stages' logger: operators filter on it

Progress = Callable[[str], None]


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{count:,} {name}" for name, count in counts.items())


def _extract_result(summary: dict) -> str:
    rows = {k: v for k, v in summary["rows"].items() if k not in ("customer_keys_added", "absorbed")}
    text = _counts(rows) or "no rows"
    rejected = sum(n for reasons in summary.get("rejected", {}).values() for n in reasons.values())
    skipped = sum(summary.get("suppressed", {}).values())
    return (text + (f"; {rejected:,} rejected by the source mapping" if rejected else "")
            + (f"; {skipped:,} of erased customers skipped" if skipped else ""))


def _churn_result(summary: dict) -> str:
    if summary.get("auc") is None:
        return summary.get("note") or "no churn scores"
    baseline = summary.get("baseline_auc")
    if summary.get("beats_baseline") is False:  # the recency rule scored: the note says why
        return f"scored with the recency rule (model as of {summary.get('model_as_of')}): {summary.get('note')}"
    return (f"scored with the model as of {summary.get('model_as_of')}, holdout AUC {summary['auc']:.3f}"
            + (f" (baseline {baseline:.3f})" if baseline is not None else ""))


def _potential_result(summary: dict) -> str:
    """The customer potential's part of the churn stage's line: who scored, and the holdout errors."""
    if "potential_scorer" not in summary:
        return ""
    errors = (f", holdout RMSE {summary['potential_holdout_rmse']:.2f} against last year's spend "
              f"{summary['potential_baseline_rmse']:.2f}" if summary.get("potential_holdout_rmse") is not None else "")
    if summary["potential_scorer"] == "model":
        return f"; potential: {summary['potential_customers']:,} customers scored with BG/NBD + Gamma-Gamma{errors}"
    return (f"; potential: {summary['potential_customers']:,} customers scored with last year's spend{errors}, as "
            f"{summary['potential_reason']}")


def _publish_result(summary: dict) -> str:
    rows = {k: v for k, v in summary.items() if k != "stale_periods"}
    stale = summary.get("stale_periods") or []
    return (f"{sum(rows.values()):,} rows in {len(rows)} tables ("
            + ", ".join(f"{table} {count:,}" for table, count in rows.items()) + ")"
            + (f"; stale published periods: {', '.join(stale)}" if stale else ""))


_RESULTS: dict[str, Callable[[dict], str]] = {
    "extract": _extract_result,
    "validate": lambda s: (f"{s['checks']} checks, {s['failed']} failed, "
                           f"{sum(s.get('quarantined', {}).values()):,} rows quarantined"),
    "features": lambda s: f"{s['customers']:,} customers",
    "churn": lambda s: _churn_result(s) + _potential_result(s),
    "tiers": lambda s: (f"{sum(s['tiers'].values()):,} customers graded ({_counts(s['tiers'])}), rules "
                        f"{s['rule_version']}"),
    "flags": lambda s: f"{_counts(s)} candidates",
    "publish": _publish_result,
    "export": lambda s: ("; ".join(f"{t['target']}: {t['rows']:,} changes to {t['location']}" for t in s["targets"])
                         or "no export target configured"),
    "review": lambda s: f"quarter {s['quarter']}, report {s['report']}",
}


def stage_result(stage: str, summary: dict, seconds: float) -> str:
    """A stage's result in one line, from the summary it returned: ``tiers: 2,000 customers graded
    (1,700 normal, 270 gold, 30 platinum), rules 1.2.0 in 0.8 s``. A summary of another shape
    says ``done``: reporting never fails a stage that succeeded."""
    try:
        text = _RESULTS[stage](summary)
    except (KeyError, TypeError, ValueError, AttributeError):
        text = "done"
    return f"{stage}: {text} in {seconds:.1f} s"


def reported(stage: str) -> Callable[[Callable[..., dict]], Callable[..., dict]]:
    """Log the stage's one-line result when it returns; a ``progress`` keyword receives it too."""
    def decorate(func: Callable[..., dict]) -> Callable[..., dict]:
        @functools.wraps(func)
        def run(*args, progress: Progress | None = None, **kwargs) -> dict:
            clock = time.perf_counter()
            summary = func(*args, **kwargs)
            line = stage_result(stage, summary, time.perf_counter() - clock)
            log.info("%s", line)
            if progress is not None:
                progress(line)
            return summary
        return run
    return decorate
