"""Trustworthy grading policy: rule identity, guarded elimination and its review, control
groups and uplift, and erasure."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from grading import demo
from grading.candidates import confirm, in_control_group
from grading.decisions import candidates_by_status, decide
from grading.erasure import erase
from grading.features import RULE_FEATURES
from grading.frames import read_frame
from grading.pipeline import Connections, run_grading
from grading.review.uplift import compare_groups, uplift_table
from grading.rules.files import load_tier_rules, rules_dir
from grading.rules.pins import load_rules
from grading.warehouse import open_engine
from tests.helpers import scalar

KEY = b"grading-dev-key-change-me"


def test_a_rule_file_change_changes_its_hash(tmp_path: Path) -> None:
    original = load_tier_rules(rules_dir() / "tiers.yaml", RULE_FEATURES)
    copy = tmp_path / "tiers.yaml"
    copy.write_text((rules_dir() / "tiers.yaml").read_text().replace("value: 50000", "value: 60000"))
    changed = load_tier_rules(copy, RULE_FEATURES)
    assert len(original.source.content_hash) == 64
    assert changed.source.content_hash != original.source.content_hash
    copy.write_text((rules_dir() / "tiers.yaml").read_text())
    assert load_tier_rules(copy, RULE_FEATURES).source.content_hash == original.source.content_hash


def test_control_groups_are_stable_and_about_the_share() -> None:
    ids = pd.Series([f"C{i:07d}" for i in range(20_000)])
    first = in_control_group(ids, date(2025, 1, 1), 0.1)
    assert first.equals(in_control_group(ids, date(2025, 1, 1), 0.1))  # a rerun draws the same customers
    assert 0.09 < first.mean() < 0.11
    assert not first.equals(in_control_group(ids, date(2025, 4, 1), 0.1))  # another period, another draw


def test_guarded_lists_need_consecutive_periods() -> None:
    _, rules = load_rules()
    assert rules.elimination.confirm_periods == 2
    flags = pd.DataFrame({"customer_id": ["new", "again", "third"], "flag": "elimination"})
    previous = {"elimination": pd.Series({"again": 1, "third": 2})}
    out = confirm(flags, previous, rules).set_index("customer_id")
    assert out["flag"].to_dict() == {"new": "elimination_pending", "again": "elimination", "third": "elimination"}
    assert out["periods_met"].to_dict() == {"new": 1, "again": 2, "third": 3}


def test_uplift_on_a_case_with_a_known_answer() -> None:
    significant = compare_groups(100, 30, 100, 10)
    assert significant["uplift"] == pytest.approx(0.2)
    spread = 1.959963984540054 * ((0.3 * 0.7 + 0.1 * 0.9) / 100) ** 0.5
    assert (significant["ci_low"], significant["ci_high"]) == pytest.approx((0.2 - spread, 0.2 + spread))
    assert significant["verdict"] == "acting raised the return rate (significant at 95%)"
    assert compare_groups(100, 22, 100, 18)["verdict"] == "no significant difference: the 95% interval includes 0"
    assert compare_groups(40, 4, 5, 1)["verdict"].startswith("too few customers to tell")
    assert compare_groups(40, 4, 0, 0)["verdict"] == "no control group"
    rows = pd.DataFrame({"list": "win_back", "reason": ["service"] * 4, "tier": "gold",
                         "control_group": [False, False, True, True], "returned": [1, 1, 0, 1],
                         "revenue": [10.0, 20.0, 0.0, 5.0]})
    table = uplift_table(rows, "2024Q4").set_index("segment_type")
    assert table.loc["all", "treated_rate"] == 1.0
    assert table.loc["all", "control_rate"] == 0.5
    assert table.loc["all", "treated_revenue"] == 30.0
    assert table.loc["all", "control_revenue"] == 5.0


@pytest.fixture(scope="module", params=["duckdb", "postgresql"])
def graded_periods(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Three periods graded once per warehouse for this module (the tests below only read, or
    decide and erase different things)."""
    import uuid

    from tests.conftest import _pg_admin_engine

    tmp = tmp_path_factory.mktemp("policy")
    data = demo.generate(customers=600, seed=23)
    source_url = f"sqlite:///{tmp / 'source.sqlite'}"
    demo.write_source(data, source_url)
    admin, name = None, None
    if request.param == "duckdb":
        url = f"duckdb:///{tmp / 'w.duckdb'}"
    else:
        admin, name = _pg_admin_engine(), f"grading_test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = admin.url.set(database=name).render_as_string(hide_password=False)
    conns = Connections(source_url=source_url, warehouse_url=url)
    for as_of in (date(2024, 7, 1), date(2024, 10, 1), date(2025, 1, 1)):
        run_grading(conns, as_of, run_id=f"run-{as_of}")
    yield url, data
    if admin is not None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_published_rows_carry_the_rule_hash_and_the_audit_lists_the_files(graded_periods) -> None:
    url, _ = graded_periods
    tier_rules, candidate_rules = load_rules()
    assert scalar(url, "SELECT COUNT(DISTINCT rules_sha256) FROM marts.customer_tier_snapshot") == 1
    assert scalar(url, "SELECT MAX(rules_sha256) FROM marts.customer_tier_snapshot") == tier_rules.source.content_hash
    assert scalar(url, "SELECT MAX(rules_sha256) FROM marts.winback_candidates") == candidate_rules.source.content_hash
    with open_engine(url) as engine, engine.connect() as conn:
        files = read_frame(conn, "SELECT kind, file_name, version, rules_sha256 FROM audit.run_rule_files "
                                 "WHERE run_id = 'run-2025-01-01' ORDER BY kind")
    assert files.to_dict("records") == [
        {"kind": "candidates", "file_name": "candidates.yaml", "version": candidate_rules.source.version,
         "rules_sha256": candidate_rules.source.content_hash},
        {"kind": "tiers", "file_name": "tiers.yaml", "version": tier_rules.source.version,
         "rules_sha256": tier_rules.source.content_hash}]


def test_elimination_is_confirmed_then_reviewed(graded_periods) -> None:
    url, _ = graded_periods
    # The first graded period can list nobody: nobody has met the criteria twice yet.
    assert scalar(url, "SELECT COUNT(*) FROM marts.elimination_candidates WHERE as_of_date = '2024-07-01'") == 0
    assert scalar(url, "SELECT MIN(periods_met) FROM marts.elimination_candidates") == 2
    with open_engine(url) as engine:
        proposed = candidates_by_status(engine, "proposed", date(2025, 1, 1))
        assert len(proposed) >= 2
        first, second = proposed["customer_key"].iloc[0], proposed["customer_key"].iloc[1]
        decide(engine, first, date(2025, 1, 1), "approved", "alice", "two years of complaints")
        decide(engine, second, date(2025, 1, 1), "rejected", "bob")
        with pytest.raises(ValueError, match="is approved; only proposed candidates can be decided"):
            decide(engine, first, date(2025, 1, 1), "rejected", "carol")
        with pytest.raises(LookupError, match="no elimination candidate"):
            decide(engine, "nobody", date(2025, 1, 1), "approved", "alice")
        with pytest.raises(ValueError, match="decision must be one of"):
            decide(engine, second, date(2025, 1, 1), "maybe", "alice")
        expired = candidates_by_status(engine, "expired")
        if len(expired):
            row = expired.iloc[0]
            with pytest.raises(ValueError, match="is expired"):
                decide(engine, row["customer_key"], pd.Timestamp(row["as_of_date"]).date(), "approved", "alice")
        status = candidates_by_status(engine, as_of=date(2025, 1, 1)).set_index("customer_key")
    assert status.loc[first, "review_status"] == "approved"
    assert status.loc[first, "reviewer"] == "alice"
    assert status.loc[second, "review_status"] == "rejected"
    assert scalar(url, "SELECT COUNT(*) FROM marts.elimination_decisions") == 2


def test_score_cut_points_are_kept_and_ordered(graded_periods) -> None:
    url, _ = graded_periods
    with open_engine(url) as engine, engine.connect() as conn:
        cuts = read_frame(conn, "SELECT * FROM marts.score_cut_points WHERE score = 'm_score' ORDER BY as_of_date, "
                                "score_value")
        scored = scalar(url, "SELECT COUNT(*) FROM marts.customer_features_snapshot "
                             "WHERE as_of_date = '2025-01-01' AND monetary_365d > 0")
    latest = cuts[pd.to_datetime(cuts["as_of_date"]).dt.date == date(2025, 1, 1)]
    assert latest["score_value"].tolist() == [1, 2, 3, 4, 5]
    assert latest["customers"].sum() == scored
    assert (latest["min_value"].iloc[1:].to_numpy() > latest["max_value"].iloc[:-1].to_numpy()).all()  # no overlap
    first = cuts[pd.to_datetime(cuts["as_of_date"]).dt.date == date(2024, 7, 1)]
    assert set(first["note"]) == {"first period"}
    assert latest["note"].str.match(r"^(steady|m_score \d now ends at .* move\))$").all()


def test_erasure_leaves_no_trace_of_the_customer(graded_periods) -> None:
    url, data = graded_periods
    busiest = data.orders["customer_id"].value_counts().index[0]
    with open_engine(url) as engine:
        customer_key = scalar(url, "SELECT customer_key FROM ops.customer_keys WHERE customer_id = :c", c=busiest)
        deleted = erase(engine, busiest, KEY)
        assert deleted["raw.orders"] > 0
        assert "marts.customer_tier_snapshot" in deleted
        with pytest.raises(LookupError):
            erase(engine, busiest, KEY)
        with engine.connect() as conn:
            tables = conn.execute(sa.text(
                "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
                "AND table_schema IN ('raw', 'staging', 'ops', 'marts', 'audit') AND table_name <> 'erasures'")).all()
            for schema, table in tables:
                frame = read_frame(conn, f'SELECT * FROM "{schema}"."{table}"')  # noqa: S608
                text = [str(v) for v in frame.to_numpy().ravel()]
                assert not any(busiest in v or customer_key in v for v in text), f"{schema}.{table}"
    assert scalar(url, "SELECT COUNT(*) FROM ops.erasures WHERE customer_key = :k", k=customer_key) == 1
