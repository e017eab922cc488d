"""Fault injection: kill the worker at every stage's start, middle and last commit, then rerun.

docs/operations.md (What is guaranteed) promises that nothing unvalidated is published and that a rerun after any fault
publishes what a clean run publishes. Here, on each warehouse, one period is graded cleanly
stage by stage (its source holds a completed order of -50 that validation quarantines), with
a copy of the warehouse taken before each stage and every SQL statement and commit of the
stage counted. Then, for each stage and each point - its first statement, its middle
statement, and the commit that ends its largest transaction - a copy of the warehouse before
the stage is given to a worker process that runs the stage and kills itself (SIGKILL, as
``kill -9`` or the OOM killer would) at that point. The stage is then retried, as Airflow
retries a task, and the rest of the run follows; every published table must equal the clean
run's. After a kill in extract or validate, a run of a later period - which finds the batch
left without a verdict - must publish what grading that later period cleanly publishes.

Workers are forked from a server process that has imported the pipeline and Great
Expectations but never ran them (multiprocessing's forkserver), so a kill costs a stage,
not an interpreter start.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from grading import pipeline
from grading.keys import pseudonym
from grading.pipeline import Connections
from grading.settings import pseudonym_key
from tests.helpers import WarehouseCopies, fingerprint, scalar, source_with_a_bad_order

EARLIER, AS_OF, LATER = date(2024, 11, 1), date(2024, 12, 1), date(2025, 1, 1)
RUN = "faulted-run"
STAGES = ("extract", "validate", "features", "churn", "tiers", "flags", "publish")
POINTS = ("start", "middle", "before_commit")


def run_stage(stage: str, conns: Connections, as_of: date, run_id: str, batch: str | None) -> dict:
    """One stage as its Airflow task runs it (validate needs the batch extract returned)."""
    if stage == "validate":
        return pipeline.validate_stage(conns, as_of, run_id, batch)
    return getattr(pipeline, f"{stage}_stage")(conns, as_of, run_id)


def run_from(stage: str, conns: Connections, as_of: date, run_id: str, batch: str | None) -> None:
    """Retry ``stage`` and run the stages after it, as a retried task and its downstream tasks do."""
    for name in STAGES[STAGES.index(stage):]:
        summary = run_stage(name, conns, as_of, run_id, batch)
        if name == "extract":
            batch = summary["batch"]


@dataclass
class Census:
    """The SQL statements and commits of one stage: where its kill points are."""

    executes: int = 0
    # statements run in each transaction, by the commit that ended it (1-based commit number)
    per_commit: list[int] = field(default_factory=list)
    _since: int = 0

    def on_execute(self, *_args, **_kwargs) -> None:
        self.executes += 1
        self._since += 1

    def on_commit(self, *_args) -> None:
        self.per_commit.append(self._since)
        self._since = 0

    def point(self, name: str) -> tuple[str, int]:
        """(event, number): the statement or commit at which a worker kills itself."""
        if name == "start":
            return "before_cursor_execute", 1
        if name == "middle":
            return "before_cursor_execute", max(1, self.executes // 2)
        largest = max(range(len(self.per_commit)), key=lambda i: (self.per_commit[i], i))
        return "commit", largest + 1


@contextmanager
def _counted(census: Census) -> Iterator[None]:
    sa.event.listen(Engine, "before_cursor_execute", census.on_execute)
    sa.event.listen(Engine, "commit", census.on_commit)
    try:
        yield
    finally:
        sa.event.remove(Engine, "before_cursor_execute", census.on_execute)
        sa.event.remove(Engine, "commit", census.on_commit)


def _worker(stage: str, conns: Connections, batch: str | None, env: dict[str, str], event: str, number: int) -> None:
    """In the forked worker: run ``stage`` and SIGKILL this process at the ``number``-th ``event``."""
    os.environ.clear()
    os.environ.update(env)
    seen = itertools.count(1)

    def maybe_die(*_args, **_kwargs) -> None:
        if next(seen) == number:
            os.kill(os.getpid(), signal.SIGKILL)

    sa.event.listen(Engine, event, maybe_die)
    run_stage(stage, conns, AS_OF, RUN, batch)
    sys.exit(3)  # the stage ended before its kill point: the test must fail


_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["grading.pipeline", "grading.validation", "great_expectations", "sklearn.ensemble"])


def kill_during(stage: str, conns: Connections, batch: str | None, event: str, number: int) -> int:
    """Run ``stage`` in a worker that kills itself at the point; returns the worker's exit code."""
    worker = _CONTEXT.Process(target=_worker, args=(stage, conns, batch, dict(os.environ), event, number))
    worker.start()
    worker.join(timeout=300)
    if worker.is_alive():
        worker.kill()
        worker.join()
    return worker.exitcode


@dataclass
class Graded:
    """One warehouse: the state before each stage of a clean run, and what clean runs publish."""

    kind: str
    source_url: str
    copies: WarehouseCopies
    before: dict[str, str]  # stage -> name of the copy taken just before it
    census: dict[str, Census]
    batch: str  # the clean run's extract batch
    clean: dict[str, str]  # fingerprint after the clean run of AS_OF
    clean_later: dict[str, str]  # fingerprint after grading EARLIER, then LATER (AS_OF skipped)
    bad_customer: str

    def conns(self, url: str) -> Connections:
        return Connections(source_url=self.source_url, warehouse_url=url)


@pytest.fixture(scope="module", params=["duckdb", "postgresql"])
def graded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Graded]:
    folder = tmp_path_factory.mktemp(f"faults-{request.param}")
    with pytest.MonkeyPatch.context() as env:
        # a clean run quarantines the bad order, a run that grades an unchecked batch publishes it
        source, bad = source_with_a_bad_order(env, folder, seed=7)
        source_url = source.url
        with WarehouseCopies(request.param, folder) as copies:
            url = copies.create("base")
            pipeline.run_grading(Connections(source_url, url), EARLIER, run_id="earlier")
            copies.keep("graded-earlier", url)
            before, census, batch = {}, {}, None
            for stage in STAGES:
                before[stage] = f"before-{stage}"
                copies.keep(before[stage], url)
                census[stage] = Census()
                with _counted(census[stage]):
                    summary = run_stage(stage, Connections(source_url, url), AS_OF, RUN, batch)
                batch = summary["batch"] if stage == "extract" else batch
            clean = fingerprint(url)
            copies.keep("clean", url)
            later = copies.copy("graded-earlier", "clean-later")
            pipeline.run_grading(Connections(source_url, later), LATER, run_id="later")
            yield Graded(request.param, source_url, copies, before, census, batch, clean, fingerprint(later),
                         bad["customer_id"])


def _monetary(url: str, customer_id: str, as_of: date) -> float:
    return float(scalar(url, "SELECT monetary_365d FROM marts.customer_features_snapshot WHERE as_of_date = :d "
                             "AND customer_key = :k", d=as_of, k=pseudonym(customer_id, pseudonym_key())))


def test_the_clean_run_quarantines_the_bad_order(graded: Graded) -> None:
    url = graded.copies.copy("clean", "check-clean")
    assert scalar(url, "SELECT COUNT(DISTINCT row_key) FROM ops.quarantine WHERE reason LIKE '%amount=-50.00%'") == 1
    assert scalar(url, "SELECT COUNT(*) FROM raw.orders WHERE amount < 0") == 0
    assert _monetary(url, graded.bad_customer, AS_OF) >= 0
    assert all(len(c.per_commit) >= 2 and c.executes >= 3 for c in graded.census.values())


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("stage", STAGES)
def test_a_killed_stage_retried_publishes_what_a_clean_run_publishes(graded: Graded, stage: str, point: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADING_DATA_DOCS_DIR", "off")
    url = graded.copies.copy(graded.before[stage], f"{stage}-{point}")
    conns = graded.conns(url)
    batch = None if stage == "extract" else graded.batch
    event, number = graded.census[stage].point(point)
    assert kill_during(stage, conns, batch, event, number) == -signal.SIGKILL, "the worker was not killed"
    run_from(stage, conns, AS_OF, RUN, batch)
    assert fingerprint(url) == graded.clean


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("stage", ["extract", "validate"])
def test_a_batch_left_without_a_verdict_is_validated_by_the_next_run_of_any_period(
    graded: Graded, stage: str, point: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The killed run is abandoned; the next run grades a later period and takes the batch over."""
    monkeypatch.setenv("GRADING_DATA_DOCS_DIR", "off")
    url = graded.copies.copy(graded.before[stage], f"later-{stage}-{point}")
    batch = None if stage == "extract" else graded.batch
    event, number = graded.census[stage].point(point)
    assert kill_during(stage, graded.conns(url), batch, event, number) == -signal.SIGKILL
    pipeline.run_grading(graded.conns(url), LATER, run_id="later")
    assert _monetary(url, graded.bad_customer, LATER) >= 0
    assert fingerprint(url) == graded.clean_later


def test_helpers_compare_what_they_should(graded: Graded) -> None:
    """The fingerprint sees a published change (so equal fingerprints mean something)."""
    url = graded.copies.copy(graded.before["publish"], "fingerprint-check")
    run_from("publish", graded.conns(url), AS_OF, RUN, graded.batch)
    assert fingerprint(url) == graded.clean
    with graded.copies.engine(url) as engine, engine.begin() as conn:
        conn.execute(sa.text("UPDATE marts.customer_tier_snapshot SET tier_reason = tier_reason || '.' "
                             "WHERE customer_key = (SELECT MIN(customer_key) FROM marts.customer_tier_snapshot)"))
    assert fingerprint(url) != graded.clean

