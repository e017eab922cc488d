"""Docs: every check the gate made on a batch, in Great Expectations' Data Docs, readable offline.

Once the batch has its verdict, each table gets one GX validation result holding all of its
checks with their real outcome: the GX expectations (a large DuckDB batch's parts merged
into one) and the SQL checks across tables and periods (grading.validation.checks), which
GX cannot run itself (its ``UnexpectedRowsExpectation`` needs a SQL data source, and the
embedded warehouse is checked through pandas), recorded under their own names as GX
expectation types registered for rendering only. So a table with a failed check shows
"Failed", whichever kind of check it was, and the table's header names the batch's verdict.

GX's page templates load Bootstrap, jQuery, bootstrap-table and Font Awesome from CDNs;
without a network the pages came out unstyled and the index's tables (drawn by JavaScript)
empty. Here every page written loses those references and gets a small stylesheet and
script of ours, copied into the site's static folder; the index is a static HTML page of
ours listing every run's results. Nothing is fetched when the pages are opened.
"""

from __future__ import annotations

import functools
import html
import json
import logging
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from sqlalchemy.engine import Engine

from grading import privacy
from grading.validation.gx import DATA_DOCS_SITE, _gx_context
from grading.validation.results import CheckResult
from grading.validation.suites import SQL_CHECKS, Check, Suite

log = logging.getLogger("grading.validate")  # the stage's logger, under the name it had before the package

STYLESHEET = "grading-data-docs.css"  # in static/styles/ of the site
SCRIPT = "grading-data-docs.js"  # in static/scripts/ of the site


@functools.cache
def _register_sql_checks() -> None:
    """Make the suites' SQL checks GX expectation types of the same names, for rendering only.

    GX renders a result only when its expectation type is registered; these never run in
    GX (their ``_validate`` refuses): their outcome comes from grading.validation.checks.
    """
    from great_expectations.compatibility import pydantic
    from great_expectations.expectations.expectation import BatchExpectation

    def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
        raise NotImplementedError(f"{self.expectation_type} is run by grading.validation.checks, not by GX")

    class Config:
        extra = pydantic.Extra.allow  # the check's own settings (trailing_intervals, max_share, ...)

    for name in sorted(SQL_CHECKS):
        class_name = "".join(part.title() for part in name.split("_"))  # GX registers it as ``name``
        type(class_name, (BatchExpectation,), {"__module__": __name__, "__annotations__": {"column": "str | None"},
                                               "column": None, "Config": Config, "_validate": _validate})


def _statement(suite: Suite, check: Check) -> str:
    """What a SQL check expects, in words."""
    k, spec = check.kwargs, suite.spec
    if check.type == "expect_columns_to_have_usable_types":
        return f"Every canonical column of raw.{suite.table} exists with a type of its family."
    if check.type == "expect_column_values_to_reference_known_customers":
        return f"Every {check.column} names a customer of raw.customers."
    if check.type == "expect_keys_not_loaded_by_an_earlier_batch":
        return f"No {spec.key} of the batch was loaded by an earlier batch."
    if check.type == "expect_event_time_not_before_customer_created":
        return (f"{check.column} is at most {k.get('tolerance_hours', 24)} hours before the customer's "
                "created_at.")
    if check.type == "expect_interval_not_empty":
        period = "the period since the previous run" if k.get("scope", "interval") == "interval" \
            else "history before the as-of date"
        return f"Rows arrived for {period}, unless the source has none either."
    if check.type == "expect_interval_volume_within_band":
        return (f"The period's rows are {k.get('min_ratio', 0.7)} to {k.get('max_ratio', 2.0)} times the average "
                f"of the {k.get('trailing_intervals', 3)} periods before it (judged when that average is at least "
                f"{k.get('min_rows', 100)} rows).")
    return (f"At most {float(k.get('max_share', 0.05)):.0%} of the batch fails row-level checks (any share "
            f"when {k.get('min_rows', 10)} rows or fewer).")


def _severity(check: Check) -> str:
    return "critical: a failure rejects the batch" if check.severity == "critical" \
        else "row-level: failing rows move to ops.quarantine"


def _docs_suite(gx, suite: Suite):
    """The suite as Data Docs show it: GX expectations and SQL checks, each noting its severity
    and what to do when it fails."""
    def notes(check: Check) -> str:
        reason = f" Quarantine reason: {check.reason}." if check.reason else ""
        return f"Severity {_severity(check)}.{reason} {check.action}"

    expectations = [{**check.gx_config(), "notes": notes(check)} for check in suite.expectations]
    expectations += [_sql_config(suite, check) | {"notes": notes(check)} for check in suite.checks]
    return gx.ExpectationSuite(name=suite.name, expectations=expectations, meta=dict(suite.meta))


def _sql_config(suite: Suite, check: Check) -> dict:
    """A SQL check as a GX expectation configuration: its kwargs, and its statement as the
    description GX renders (escaped: GX puts a description into the page as it is)."""
    kwargs = {name: value for name, value in check.kwargs.items() if name != "column"}
    if check.column:
        kwargs["column"] = check.column  # GX shows it with that column's checks
    description = f"{_statement(suite, check)} (SQL check, {_severity(check)})"
    return {"type": check.type, "kwargs": kwargs, "description": html.escape(description, quote=False),
            "meta": {"severity": check.severity, "action": check.action, "reason": check.reason,
                     "check": check.index, "by": "sql"}}


def _sql_result(suite: Suite, result: CheckResult, redact):
    """A SQL check's result as a GX result: its outcome, and what it found as the observed value."""
    from great_expectations.core.expectation_validation_result import ExpectationValidationResult
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    if result.unexpected_count is not None:
        keys = f" (e.g. {', '.join(result.sample_keys)})" if result.sample_keys else ""
        observed = f"{result.unexpected_count:,} row(s){keys}"
    else:
        observed = redact(result.observed_value) or ""
    return ExpectationValidationResult(
        success=result.success, expectation_config=ExpectationConfiguration(**_sql_config(suite, result.check)),
        result={"observed_value": html.escape(observed, quote=False)})  # GX puts observed text in the page as is


def _escaped(value):
    """Values from the data (GX's sampled unexpected values, observed values) HTML-escaped: GX
    puts them into its pages as they are, so a source value could otherwise add markup or a script."""
    if isinstance(value, str):
        return html.escape(value, quote=False)
    if isinstance(value, list | tuple):
        return [_escaped(v) for v in value]
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    return value


def _table_result(gx, suite: Suite, gx_results: list, results: list[CheckResult], redact, *, run, batch: datetime,
                  rows: int, verdict: str):
    """The table's GX validation result holding every check of the batch."""
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )

    evrs = [ExpectationValidationResult(success=evr.success, expectation_config=evr.expectation_config,
                                        result=_escaped(evr.result or {}), exception_info=_escaped(evr.exception_info),
                                        meta=evr.meta) for evr in gx_results]
    evrs += [_sql_result(suite, r, redact) for r in results
             if r.check is not None and not r.check.by_gx and r.table == f"raw.{suite.table}"]
    passed = sum(bool(evr.success) for evr in evrs)
    statistics = {"evaluated_expectations": len(evrs), "successful_expectations": passed,
                  "unsuccessful_expectations": len(evrs) - passed,
                  "success_percent": 100.0 * passed / len(evrs) if evrs else None}
    meta = {"great_expectations_version": gx.__version__, "run_id": run, "validation_time": run.run_time,
            "batch_spec": {"data_asset_name": f"raw.{suite.table}: {rows:,} rows, {verdict}",
                           "extract_batch": str(batch), "rows": rows},
            "grading": {"table": f"raw.{suite.table}", "rows": rows, "verdict": verdict, "batch": str(batch)}}
    return ExpectationSuiteValidationResult(success=passed == len(evrs), results=evrs, suite_name=suite.name,
                                            statistics=statistics, meta=meta)


def write_docs(warehouse: Engine, docs: Path | None, suites: Mapping[str, Suite], gx_results: Mapping[str, list],
               results: list[CheckResult], *, run_id: str, batch: datetime, rows: Mapping[str, int],
               verdicts: Mapping[str, str]) -> str | None:
    """Write the batch's Data Docs: a page per table with every check, the suites, the index.

    ``verdicts`` says per table what became of the batch (e.g. "batch rejected"). Returns
    the index's URL. Docs are a by-product: a folder that cannot be written is logged, not
    fatal to the run. Only this run's pages are rendered, so the cost does not grow with the
    history (the index lists every stored result).
    """
    if docs is None:
        return None
    try:
        _register_sql_checks()
        gx, context = _gx_context(docs)
        from great_expectations.core.run_identifier import RunIdentifier
        from great_expectations.data_context.types.resource_identifiers import (
            ExpectationSuiteIdentifier,
            ValidationResultIdentifier,
        )

        run = RunIdentifier(run_name=run_id, run_time=datetime.now(UTC))
        keys, pages = [], []
        with warehouse.connect() as conn:
            def redact(text: str | None) -> str | None:  # Data Docs hold no identifying value
                return privacy.redact(conn, text)

            for table, suite in suites.items():
                context.suites.add(_docs_suite(gx, suite))
                key = ValidationResultIdentifier(expectation_suite_identifier=ExpectationSuiteIdentifier(suite.name),
                                                 run_id=run, batch_identifier=f"batch-{batch:%Y%m%dT%H%M%S%f}")
                context.validation_results_store.set(key, _table_result(
                    gx, suite, gx_results.get(table, []), results, redact, run=run, batch=batch, rows=rows[table],
                    verdict=verdicts[table]))
                keys.append(key)
                pages += [docs / "validations" / suite.name / Path(*run.to_tuple()) / f"{key.batch_identifier}.html",
                          docs / "expectations" / f"{suite.name}.html"]
        context.build_data_docs(site_names=[DATA_DOCS_SITE], build_index=False, resource_identifiers=[
            *keys, *(ExpectationSuiteIdentifier(name=s.name) for s in suites.values())])
        first = not (docs / "static" / "styles" / STYLESHEET).exists()
        _write_static(docs)
        # pages written before the docs worked offline are fixed once, with the first build that has the stylesheet
        for page in ([*docs.glob("validations/**/*.html"), *docs.glob("expectations/**/*.html")] if first else pages):
            offline(page, docs)
        index = docs / "index.html"
        index.write_text(_index(context, suites), encoding="utf-8")
        return index.as_uri()
    except Exception as exc:  # docs must not decide the run's outcome
        log.warning("Great Expectations Data Docs were not written to %s: %s: %s", docs, type(exc).__name__, exc)
        return None


# --------------------------------------------------------------------------------------
# Offline pages

_REMOTE = re.compile(r"""<link\b[^>]*\bhref=["']https?://[^>]*>\s*|<script\b[^>]*\bsrc=["']https?://[^>]*>\s*</script>\s*""",
                     re.IGNORECASE)
_REMOTE_IMAGE = re.compile(r"""(<img\b[^>]*\bsrc=["'])https?://[^"']*?/([\w.-]+)(?:\?[^"']*)?(["'])""", re.IGNORECASE)
_REMOTE_CSS = re.compile(r"""url\(\s*["']?https?://[^)]*\)""", re.IGNORECASE)


def offline(page: Path, docs: Path) -> None:
    """Rewrite a Data Docs page to need nothing from the network.

    Stylesheets and scripts from CDNs are dropped, a remote image (GX's logo) points at the
    copy GX puts in static/images, and our stylesheet and script are linked instead. A page
    already rewritten is left as it is.
    """
    text = page.read_text(encoding="utf-8")
    if STYLESHEET in text:
        return
    static = Path(os.path.relpath(docs / "static", page.parent)).as_posix()
    text = _REMOTE.sub("", text)
    text = _REMOTE_CSS.sub("none", text)
    text = _REMOTE_IMAGE.sub(lambda m: f"{m[1]}{static}/images/{m[2]}{m[3]}", text)
    text = text.replace("</head>", f'<link rel="stylesheet" href="{static}/styles/{STYLESHEET}">\n</head>', 1)
    # last in the body, so its functions replace the jQuery ones GX's pages define inline
    text = text.replace("</body>", f'<script src="{static}/scripts/{SCRIPT}"></script>\n</body>', 1)
    page.write_text(text, encoding="utf-8")


def _write_static(docs: Path) -> None:
    for folder, name, text in (("styles", STYLESHEET, _stylesheet()), ("scripts", SCRIPT, _SCRIPT)):
        (docs / "static" / folder).mkdir(parents=True, exist_ok=True)
        (docs / "static" / folder / name).write_text(text, encoding="utf-8")


def _index(context, suites: Mapping[str, Suite]) -> str:
    """The site's index, static HTML: every stored validation result, newest run first, and the suites."""
    store = context.validation_results_store
    rows = []
    for key in sorted(store.list_keys(), key=lambda k: (-k.run_id.run_time.timestamp(),
                                                        k.expectation_suite_identifier.name)):
        stored = json.loads(store.store_backend.get(store.key_to_tuple(key)))
        stats, grading = stored.get("statistics") or {}, (stored.get("meta") or {}).get("grading") or {}
        page = quote(Path("validations", key.expectation_suite_identifier.name, *key.run_id.to_tuple(),
                          f"{key.batch_identifier}.html").as_posix())
        status = '<span class="text-success">&#10004; passed</span>' if stored.get("success") \
            else '<span class="text-danger">&#10008; failed</span>'
        cells = [f"{key.run_id.run_time:%Y-%m-%d %H:%M:%S} UTC", key.run_id.run_name,
                 grading.get("table") or key.expectation_suite_identifier.name,
                 "" if grading.get("rows") is None else f"{grading['rows']:,}",
                 f"{stats.get('unsuccessful_expectations', '?')} of {stats.get('evaluated_expectations', '?')}",
                 grading.get("verdict", "")]
        verdict = ' class="text-danger"' if "rejected" in cells[-1] else ""
        rows.append(f"<tr><td>{status}</td>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells[:-1])
                    + f'<td{verdict}>{html.escape(cells[-1])}</td><td><a href="{page}">checks</a></td></tr>')
    suite_links = "".join(f'<li><a href="expectations/{quote(s.name)}.html">{html.escape(s.name)}</a></li>'
                          for s in suites.values())
    head = "".join(f"<th>{h}</th>" for h in ("Checks", "Run time", "Run", "Table", "Rows", "Failed", "Batch", ""))
    return f"""<!DOCTYPE html>
<html><head><meta charset="UTF-8"><title>Data Docs: validation of the extract batches</title>
<link rel="stylesheet" href="static/styles/{STYLESHEET}"></head>
<body><nav class="navbar sticky-top border-bottom"><strong>Data Docs</strong> validation of the extract batches</nav>
<div class="container-fluid pt-4 pb-4 pl-5 pr-5">
<p>Every check the validate stage made on each table of each extract batch: the Great Expectations expectations and
the SQL checks across tables and periods alike. A failed critical check rejects the batch (its rows leave raw); a
failed row-level check moves the failing rows to ops.quarantine and the batch passes. Every result is also in
audit.validation_results.</p>
<h5>Validation results</h5>
<div class="table-responsive"><table class="table table-sm"><thead><tr>{head}</tr></thead>
<tbody>{"".join(rows)}</tbody></table></div>
<h5>Expectation suites</h5><ul>{suite_links}</ul>
</div></body></html>
"""


# --------------------------------------------------------------------------------------
# The stylesheet and script standing in for Bootstrap 4, bootstrap-table, jQuery and Font Awesome

_CSS = """
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;font-size:.9rem;
line-height:1.5;color:#212529;background:#fff}
a{color:#0062cc;text-decoration:none}a:hover{text-decoration:underline}
h5,.h5{font-size:1.15rem;margin:.8rem 0 .5rem}h6,.h6{font-size:.95rem;font-weight:600;margin:0}
.lead{font-size:1.05rem}strong,b{font-weight:600}[hidden]{display:none!important}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em;white-space:pre-wrap}
.navbar{display:flex;align-items:center;gap:.5rem;padding:.5rem 1.5rem;background:#fff;height:auto!important}
.sticky-top{position:sticky;top:0;z-index:1020}.border-bottom{border-bottom:1px solid #dee2e6}
.navbar-brand img{height:32px!important}
.container-fluid{width:100%;box-sizing:border-box;padding-right:15px;padding-left:15px}
.row{display:flex;flex-wrap:wrap;margin-right:-15px;margin-left:-15px}
[class*=col-]{box-sizing:border-box;position:relative;width:100%;padding-right:15px;padding-left:15px}
.col-12{flex:0 0 100%;max-width:100%}.col-6{flex:0 0 50%;max-width:50%}
@media(min-width:768px){.col-md-2{flex:0 0 16.67%;max-width:16.67%}.col-md-10{flex:0 0 83.33%;max-width:83.33%}
.d-md-block{display:block!important}.d-md-inline-flex{display:inline-flex!important}}
@media(min-width:992px){.col-lg-2{flex:0 0 16.67%;max-width:16.67%}.col-lg-10{flex:0 0 83.33%;max-width:83.33%}}
.card{display:flex;flex-direction:column;border:1px solid rgba(0,0,0,.125);border-radius:.25rem;background:#fff}
.card-header{padding:.5rem .75rem;background:#f7f7f9;border-bottom:1px solid rgba(0,0,0,.125)}
.card-body{padding:.75rem}.card-text{margin:0}
.alert{padding:.6rem 1rem;margin-bottom:.5rem;border:1px solid transparent;border-radius:.25rem}
.alert-secondary{color:#383d41;background:#e2e3e5;border-color:#d6d8db}
.table{width:100%;margin-bottom:1rem;border-collapse:collapse}
.table th,.table td{padding:.5rem;vertical-align:top;border-top:1px solid #dee2e6;text-align:left}
.table thead th{border-bottom:2px solid #dee2e6;vertical-align:bottom}
.table-sm th,.table-sm td{padding:.25rem .4rem}.table-bordered th,.table-bordered td{border:1px solid #dee2e6}
.table-responsive{display:block;width:100%;overflow-x:auto}
.badge{display:inline-block;padding:.2em .45em;font-size:75%;font-weight:600;border-radius:.25rem;color:#fff}
.badge-secondary{background:#6c757d}.badge-danger{background:#dc3545}.badge-info{background:#17a2b8}
.btn{display:inline-block;padding:.3rem .6rem;border:1px solid transparent;border-radius:.25rem;cursor:pointer;
font-size:.85rem;color:#fff;background:#6c757d}.btn-primary{background:#007bff}.btn-primary.active{background:#0056b3}
.btn-sm{padding:.2rem .45rem;font-size:.8rem}.btn-group{display:inline-flex}
.btn-group-toggle input{position:absolute;clip:rect(0,0,0,0);pointer-events:none}
.nav{display:flex;flex-wrap:wrap;padding-left:0;margin:0;list-style:none}.nav-link{display:block;padding:.3rem .5rem}
.bg-light{background:#f8f9fa}.rounded{border-radius:.25rem}
.breadcrumb{display:flex;flex-wrap:wrap;list-style:none;padding:.4rem .8rem;border-radius:.25rem}
.breadcrumb-item+.breadcrumb-item::before{content:"/";padding:0 .5rem;color:#6c757d}
.collapse:not(.show){display:none}
.text-success{color:#28a745}.text-danger{color:#dc3545}.text-info{color:#17a2b8}.text-warning{color:#c69500}
.text-muted{color:#6c757d}.text-center{text-align:center}
.d-none{display:none}.d-flex{display:flex}.align-items-center{align-items:center}
.justify-content-center{justify-content:center}.float-left{float:left}.mr-auto{margin-right:auto}.h-100{height:100%}
i.fas{font-style:normal}.fa-check-circle::before{content:"\\2714"}.fa-times::before{content:"\\2718"}
.fa-exclamation-triangle::before{content:"\\26A0"}.fa-question-circle::before{content:"?"}
.fa-comment::before{content:"\\2139"}
footer{padding:.5rem 1.5rem;color:#6c757d;font-size:.8rem;border-top:1px solid #dee2e6}
"""


def _stylesheet() -> str:
    """_CSS and the Bootstrap spacing utilities GX's pages use (m-2, pl-md-4, ...)."""
    sides = {"": ("",), "t": ("-top",), "b": ("-bottom",), "l": ("-left",), "r": ("-right",),
             "x": ("-left", "-right"), "y": ("-top", "-bottom")}
    sizes = ("0", ".25rem", ".5rem", "1rem", "1.5rem", "3rem")

    def rules(infix: str) -> str:
        return "".join(f".{p}{s}{infix}-{n}{{{';'.join(f'{prop}{side}:{size}!important' for side in sides[s])}}}"
                       for p, prop in (("m", "margin"), ("p", "padding")) for s in sides
                       for n, size in enumerate(sizes))

    return f"{_CSS}{rules('')}\n@media(min-width:576px){{{rules('-sm')}}}\n@media(min-width:768px){{{rules('-md')}}}\n"


_SCRIPT = """// Data Docs offline: what GX's pages asked of jQuery and Bootstrap's scripts, in plain JavaScript.
document.addEventListener("click", function (event) {
  var toggle = event.target.closest('[data-toggle="collapse"]');
  if (!toggle) return;
  event.preventDefault();
  var target = document.querySelector(toggle.getAttribute("href") || toggle.dataset.target);
  if (target) target.classList.toggle("show");
});
function gradingShowSucceeded(shown) {
  var display = shown ? "" : "none";
  document.querySelectorAll(".hide-succeeded-validation-target-child").forEach(function (el) {
    el.parentElement.style.display = display;
  });
  document.querySelectorAll(".hide-succeeded-validation-target").forEach(function (el) { el.style.display = display; });
  document.querySelectorAll(".hide-succeeded-validations-column-section-target-child").forEach(function (el) {
    var section = el.parentElement.parentElement;
    section.style.display = display;
    if (section.id) document.querySelectorAll('a[href$="' + section.id + '"]').forEach(function (a) {
      a.style.display = display;
    });
  });
  document.querySelectorAll(".btn-group-toggle .btn").forEach(function (button, i) {
    button.classList.toggle("active", (i === 0) === shown);
  });
}
function showAllValidations() { gradingShowSucceeded(true); }
function hideSucceededValidations() { gradingShowSucceeded(false); }
"""
