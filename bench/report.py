"""The benchmark's report: bench/results/<scale>.json rendered as bench/RESULTS.md.

Used by bench/run.py (a sibling module: run.py runs as a script, so this folder is on the path).
The targets sections check the measured figures against the targets of issues 8 and 24 (the
latter against the whole job written as plain SQL, bench/plain_job.py). The log of the
measuring rounds at the end of bench/RESULTS.md is written by hand: a new report keeps it as it is.
"""

from __future__ import annotations

import json
from pathlib import Path

GRADING_STAGES = ("extract", "validate", "features", "churn", "tiers", "flags", "publish")
GiB = 1024 ** 3
RESULTS_MD = Path(__file__).resolve().with_name("RESULTS.md")
LOG_HEADING = "## Log of the measuring rounds"

Row = tuple[str, str, str, str]  # target, measured, status, note
# the pipeline's stages against the plain-SQL job's (bench/plain_job.py), in the job's order
PLAIN_STAGES = (("extract", ("extract",), "copy"), ("validate", ("validate",), "validate"),
                ("features", ("features",), "features"), ("churn", ("churn",), "churn"),
                ("tiers + flags", ("tiers", "flags"), "tiers_flags"), ("publish", ("publish",), "snapshot"))
PLAIN_LIMITS = {"duckdb": 1.5, "postgresql": 2.0}  # issue 24: full run over the plain-SQL job, at L


def plain_name(wh: str) -> str:
    return f"plain-SQL job ({wh})"


def load_results(folder: Path) -> dict[str, dict]:
    order = {"S": 0, "M": 1, "L": 2}
    found = {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}
    return dict(sorted(found.items(), key=lambda kv: (order.get(kv[0], -1), kv[0])))


def _fmt_s(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def _fmt_gib(value) -> str:
    return "–" if not value else f"{value / GiB:.2f}"


def full_time(run: dict, prefix: str = "") -> float | None:
    """Sum of the grading stages (extract .. publish) of a run; None when one is missing or failed."""
    total = 0.0
    for stage in GRADING_STAGES:
        res = run.get(prefix + stage)
        if res is None and stage == "extract" and not prefix:
            res = run.get("extract (direct load)")
        if res is None or res.get("seconds") is None:
            return None
        total += res["seconds"]
    return total


def peak(run: dict) -> int | None:
    values = [r.get("rss") for r in run.values() if r.get("rss")]
    return max(values) if values else None


# --------------------------------------------------------------------------- targets

def _run(results: dict[str, dict], scale: str, wh: str) -> dict | None:
    return results.get(scale, {}).get("runs", {}).get(wh)


def _baseline(results: dict[str, dict], scale: str, name: str) -> float | None:
    return (results.get(scale, {}).get("baselines", {}).get(name) or {}).get("seconds")


def _stage_seconds(run: dict | None, stage: str) -> float | None:
    return ((run or {}).get(stage) or {}).get("seconds")


def _ratio_row(results: dict[str, dict], title: str, scale: str, wh: str, baseline: str, limit: float,
               fallback_scale: str = "M") -> Row:
    """Full grading time over a bare baseline at ``scale``; the fallback scale's ratio in the note if missing."""
    run, b = _run(results, scale, wh), _baseline(results, scale, baseline)
    full = full_time(run) if run else None
    if full is not None and b:
        r = full / b
        return (title, f"{full:.1f} s / {b:.2f} s = {r:.1f}×", "met" if r <= limit else "not met", f"at {scale}")
    note = f"no full run at {scale}"
    lfeat = _stage_seconds(run, "features")
    if lfeat and b:
        note += f"; features stage alone at {scale}: {lfeat:.1f} s / {b:.2f} s = {lfeat / b:.1f}×"
    run, b = _run(results, fallback_scale, wh), _baseline(results, fallback_scale, baseline)
    full = full_time(run) if run else None
    if full is not None and b:
        note += f"; at {fallback_scale}: {full:.1f} s / {b:.2f} s = {full / b:.1f}× (limit {limit}×)"
    return (title, "–", "not measured", note)


def _tutorial_row(results: dict[str, dict]) -> Row:
    tut = _baseline(results, "M", "tutorial pandas (lambdas)")
    run = _run(results, "M", "duckdb")
    full = full_time(run) if run else None
    if not (tut and full):
        return ("≥ 50× faster than tutorial pandas at M", "–", "not measured", "no M run with both")
    feats = _stage_seconds(run, "features")
    return ("≥ 50× faster than tutorial pandas at M (full grading, DuckDB)",
            f"{tut:.1f} s / {full:.1f} s = {tut / full:.2f}×", "met" if tut / full >= 50 else "not met",
            f"features stage alone: {tut / feats:.0f}×" if feats else "")


def _rss_rows(results: dict[str, dict]) -> list[Row]:
    l_runs = results.get("L", {}).get("runs", {})
    l_full = [(wh, full_time(r), peak(r)) for wh, r in l_runs.items()]
    measured = [(wh, p) for wh, f, p in l_full if p]
    if measured and any(f is not None for _, f, _ in l_full):
        return [(f"worker peak RSS ≤ 1.5 GiB at L ({wh})", f"{worst / GiB:.2f} GiB",
                 "met" if worst <= 1.5 * GiB else "not met", "max over every stage run (full, daily and review)")
                for wh, worst in measured]
    if measured:
        worst = max(p for _, p in measured)
        return [("worker peak RSS ≤ 1.5 GiB at L", f"{worst / GiB:.2f} GiB (stages run only)",
                 "not measured" if worst <= 1.5 * GiB else "not met",
                 "only the stages run at L (see table); a breach there already fails the target")]
    m = max((peak(r) or 0 for r in results.get("M", {}).get("runs", {}).values()), default=0)
    return [("worker peak RSS ≤ 1.5 GiB at L", "–", "not measured", f"at M: {m / GiB:.2f} GiB" if m else "")]


def _scaling_row(results: dict[str, dict], wh: str) -> Row:
    lm, mm = _run(results, "L", wh), _run(results, "M", wh)
    lf, mf = (full_time(lm) if lm else None), (full_time(mm) if mm else None)
    if lf and mf:
        return (f"L time / M time ≤ 12 ({wh})", f"{lf:.1f} / {mf:.1f} = {lf / mf:.1f}",
                "met" if lf / mf <= 12 else "not met", "full grading")
    lfe, mfe = _stage_seconds(lm, "features"), _stage_seconds(mm, "features")
    note = f"features stage: {lfe:.1f} / {mfe:.1f} = {lfe / mfe:.1f}" if lfe and mfe else ""
    return (f"L time / M time ≤ 12 ({wh})", "–", "not measured", note)


def _incremental_row(results: dict[str, dict], wh: str) -> Row:
    title = f"daily incremental ≤ 10 % of full at L ({wh})"
    best = None
    for scale in ("L", "M", "S"):
        run = _run(results, scale, wh)
        if run and full_time(run) and full_time(run, "incr "):
            best = (scale, full_time(run, "incr "), full_time(run))
            break
    if best is None:
        return (title, "–", "not measured", "")
    r = best[1] / best[2]
    if best[0] == "L":
        return (title, f"{best[1]:.1f} / {best[2]:.1f} = {r:.0%}", "met" if r <= 0.10 else "not met", "")
    return (title, "–", "not measured", f"at {best[0]}: {best[1]:.1f} / {best[2]:.1f} s = {r:.0%}")


def targets(results: dict[str, dict]) -> list[Row]:
    """(target, measured, status, note) for each target of issue 8."""
    rows = [
        _ratio_row(results, "full grading at L on DuckDB ≤ 1.5× bare DuckDB query", "L", "duckdb",
                   "bare DuckDB SQL", 1.5),
        _ratio_row(results, "full grading at L on PostgreSQL ≤ 2× bare PostgreSQL aggregation", "L", "postgresql",
                   "bare PostgreSQL CTAS", 2.0),
        _tutorial_row(results),
        *_rss_rows(results),
    ]
    rows += [_scaling_row(results, wh) for wh in ("duckdb", "postgresql")]
    rows += [_incremental_row(results, wh) for wh in ("duckdb", "postgresql")]
    return rows


# --------------------------------------------------------------------------- markdown

def _intro() -> list[str]:
    return ["# Benchmark results", "",
            "Written by `bench/run.py` (see [docs/performance.md](../docs/performance.md)) from "
            "`bench/results/*.json`, except the log of the measuring rounds at the end, which is written by hand. "
            "Each stage ran through "
            "`grading.pipeline`'s stage function in a fresh worker process (as an Airflow task does); time is "
            "the stage call's wall time, peak RSS the worker process's high-water mark (`VmHWM`, imports "
            "included).", ""]


def _machine_section(results: dict[str, dict]) -> list[str]:
    m = next(iter(results.values()))["machine"] if results else {}
    if not m:
        return []
    return ["## Machine", "",
            f"- `nproc`: {m['nproc']}; memory: {m['memory_gib']} GiB; CPU: {m['cpu']}; kernel {m['kernel']}",
            f"- Python {m['python']}, pandas {m['pandas']}, DuckDB {m['duckdb']}, SQLAlchemy {m['sqlalchemy']}, "
            f"PostgreSQL {m['postgresql']}, Airflow {m['airflow']}, Great Expectations "
            f"{m['great_expectations']}",
            "- absolute times move with the machine and the day (the same VM's COPY baseline at L has "
            "measured from 33 to 47 s); ratios within one invocation are the figures to read.", ""]


def _scale_heading(scale: str, rec: dict) -> list[str]:
    rows = rec.get("rows", {})
    lines = [f"## Scale {scale} ({rec.get('started', '')})", "",
             "Rows in the source: " + ", ".join(f"{k} {v:,}" for k, v in rows.items())
             + (f" (generated in {rec['generate_s']:.1f} s, written to a DuckDB source file in "
                f"{rec.get('write_source_s', 0):.1f} s)." if "generate_s" in rec
                else " (a source file kept from an earlier run at this scale, `--source`)."), ""]
    if rec.get("merged"):
        lines += ["Some runs below come from a later invocation on the same source file (`--source … --merge`, "
                  f"at {', '.join(rec['merged'])}); the baselines are from the first.", ""]
    return lines


def _stage_cells(res: dict | None) -> list[str]:
    if res is None:
        return ["–", "–"]
    if res.get("seconds") is None:
        return ["failed", "–"]
    return [_fmt_s(res["seconds"]), _fmt_gib(res.get("rss"))]


def _stage_table(runs: dict[str, dict]) -> list[str]:
    """One row per stage run on any warehouse, the totals, then the failures."""
    if not runs:
        return []
    names = list(dict.fromkeys(name for run in runs.values() for name in run))
    lines = ["| stage | " + " | ".join(f"{wh} s | {wh} peak RSS GiB" for wh in runs) + " |",
             "|---|" + "---:|---:|" * len(runs)]
    for name in names:
        cells = [cell for run in runs.values() for cell in _stage_cells(run.get(name))]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    totals = [cell for run in runs.values() for cell in (_fmt_s(full_time(run)), _fmt_gib(peak(run)))]
    lines.append("| **full grading (extract … publish)** | " + " | ".join(totals) + " |")
    if any(full_time(r, "incr ") for r in runs.values()):
        lines.append("| **daily incremental (+1 day, extract … publish)** | "
                     + " | ".join(f"{_fmt_s(full_time(r, 'incr '))} | –" for r in runs.values()) + " |")
    lines.append("")
    failures = [(wh, n, r["error"]) for wh, run in runs.items() for n, r in run.items() if r.get("error")]
    lines += [f"- {wh} {n} failed: `{err}`" for wh, n, err in failures]
    if failures:
        lines.append("")
    return lines


def _baseline_table(base: dict[str, dict]) -> list[str]:
    if not base:
        return []
    lines = ["| baseline (same data) | s | peak RSS GiB |", "|---|---:|---:|"]
    lines += [f"| {name} | {_fmt_s(res.get('seconds'))} | {_fmt_gib(res.get('rss'))} |" for name, res in base.items()]
    lines.append("")
    return lines


def _pipeline_seconds(run: dict, stages: tuple[str, ...]) -> float | None:
    total = 0.0
    for stage in stages:
        res = run.get(stage) or (run.get("extract (direct load)") if stage == "extract" else None)
        if res is None or res.get("seconds") is None:
            return None
        total += res["seconds"]
    return total


def _ratio_cell(a: float | None, b: float | None) -> str:
    return f"{a / b:.1f}×" if a is not None and b else "–"


def _plain_table(rec: dict) -> list[str]:
    """Pipeline / plain-SQL job per stage and in total, for each warehouse with both."""
    runs, base = rec.get("runs", {}), rec.get("baselines", {})
    whs = [wh for wh in runs if (base.get(plain_name(wh)) or {}).get("stages")]
    if not whs:
        return []
    lines = ["Pipeline / plain-SQL job (`bench/plain_job.py`, issue 24) per stage and in total, seconds:", "",
             "| pipeline stage | plain-SQL stage | " + " | ".join(
                 f"{wh} pipeline | {wh} plain | {wh} ratio" for wh in whs) + " |",
             "|---|---|" + "---:|---:|---:|" * len(whs)]
    for title, stages, plain in PLAIN_STAGES:
        cells = []
        for wh in whs:
            p = _pipeline_seconds(runs[wh], stages)
            b = (base[plain_name(wh)]["stages"].get(plain) or {}).get("seconds")
            cells += [_fmt_s(p), _fmt_s(b), _ratio_cell(p, b)]
        lines.append(f"| {title} | {plain} | " + " | ".join(cells) + " |")
    cells = []
    for wh in whs:
        p, b = full_time(runs[wh]), base[plain_name(wh)].get("seconds")
        cells += [_fmt_s(p), _fmt_s(b), _ratio_cell(p, b)]
    lines.append("| **full grading** | **whole job** | " + " | ".join(cells) + " |")
    cells = [cell for wh in whs for cell in (_fmt_gib(peak(runs[wh])), _fmt_gib(base[plain_name(wh)].get("rss")), "")]
    lines.append("| worker peak RSS GiB | | " + " | ".join(cells) + " |")
    lines += ["", "The plain-SQL job runs every stage in one fresh worker process (its peak RSS is that "
              "worker's); the pipeline's full grading total leaves out export and review, as above.", ""]
    return lines


def targets_24(results: dict[str, dict]) -> list[Row]:
    """(target, measured, status, note) for the plain-SQL job targets of issue 24."""
    return [_ratio_row(results, f"full run at L on {wh} ≤ {limit}× the plain-SQL job on {wh}", "L", wh,
                       plain_name(wh), limit) for wh, limit in PLAIN_LIMITS.items()]


def _targets_section(results: dict[str, dict]) -> list[str]:
    lines = ["## Targets of issue 8", "", "| target | measured | status | note |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in targets(results)]
    lines.append("")
    if any(plain_name(wh) in rec.get("baselines", {}) for rec in results.values() for wh in PLAIN_LIMITS):
        rows = targets_24(results)
        lines += ["## Targets of issue 24 (against the plain-SQL job)", "", "| target | measured | status | note |",
                  "|---|---|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    return lines


def kept_log(markdown: Path = RESULTS_MD) -> list[str]:
    """The hand-written log at the end of ``markdown`` (from LOG_HEADING on), as lines; none without one."""
    text = markdown.read_text(encoding="utf-8") if markdown.is_file() else ""
    start = text.find("\n" + LOG_HEADING + "\n")
    return text[start + 1:].rstrip("\n").split("\n") + [""] if start >= 0 else []


def render(results: dict[str, dict], keep_log_of: Path | None = RESULTS_MD) -> str:
    """The report of ``results``, ending with the hand-written log kept from ``keep_log_of``."""
    lines = _intro() + _machine_section(results)
    for scale, rec in results.items():
        lines += _scale_heading(scale, rec) + _stage_table(rec.get("runs", {})) + _baseline_table(
            rec.get("baselines", {})) + _plain_table(rec)
    lines += _targets_section(results)
    if keep_log_of is not None:
        lines += kept_log(keep_log_of)
    return "\n".join(lines)
