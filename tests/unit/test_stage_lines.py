"""Each stage's one-line result (grading.stage_lines), from the summaries the stages return."""

from __future__ import annotations

from grading.stage_lines import stage_result


def test_the_churn_stage_line_says_what_scored_the_potential() -> None:
    churn = {"auc": None, "note": "not enough history to train"}
    scored = churn | {"potential_scorer": "model", "potential_customers": 1690, "potential_holdout_rmse": 13883.386,
                      "potential_baseline_rmse": 16223.63, "potential_reason": "its RMSE is lower"}
    assert stage_result("churn", scored, 0.1) == (
        "churn: not enough history to train; potential: 1,690 customers scored with BG/NBD + Gamma-Gamma, "
        "holdout RMSE 13883.39 against last year's spend 16223.63 in 0.1 s")
    fell_back = churn | {"potential_scorer": "last_year_spend", "potential_customers": 12,
                         "potential_holdout_rmse": None, "potential_reason": "less than two years of order history"}
    assert stage_result("churn", fell_back, 0.1) == (
        "churn: not enough history to train; potential: 12 customers scored with last year's spend, as less than "
        "two years of order history in 0.1 s")


def test_each_stage_result_is_one_line_of_rows_and_seconds() -> None:
    assert stage_result("extract", {"batch": "b", "rows": {"customers": 2000, "orders": 24512,
                                                           "customer_keys_added": 3},
                                    "rejected": {"orders": {"amount not a number": 2}},
                                    "suppressed": {"orders": 4}}, 3.21) == \
        ("extract: 2,000 customers, 24,512 orders; 2 rejected by the source mapping; 4 of erased customers skipped "
         "in 3.2 s")
    assert stage_result("validate", {"checks": 68, "failed": 1, "quarantined": {"orders": 3}, "data_docs": None},
                        5.0) == "validate: 68 checks, 1 failed, 3 rows quarantined in 5.0 s"
    assert stage_result("churn", {"auc": 0.78123, "baseline_auc": 0.7, "model_as_of": "2024-10-01", "note": None},
                        0.4) == \
        "churn: scored with the model as of 2024-10-01, holdout AUC 0.781 (baseline 0.700) in 0.4 s"
    fell_back = {"auc": 0.74, "beats_baseline": False, "model_as_of": "2024-10-01",
                 "note": "the recency rule scores, as its top decile holds more churners"}
    assert stage_result("churn", fell_back, 0.2) == ("churn: scored with the recency rule (model as of 2024-10-01): "
                                                     "the recency rule scores, as its top decile holds more churners "
                                                     "in 0.2 s")
    assert stage_result("churn", {"auc": None, "note": "not enough history to train"}, 0.1) == \
        "churn: not enough history to train in 0.1 s"
    assert stage_result("tiers", {"tiers": {"normal": 1700, "gold": 270, "platinum": 30}, "rule_version": "1.2.0"},
                        0.8) == \
        "tiers: 2,000 customers graded (1,700 normal, 270 gold, 30 platinum), rules 1.2.0 in 0.8 s"
    assert stage_result("flags", {"core": 5, "win_back": 4, "elimination": 0}, 0.3) == \
        "flags: 5 core, 4 win_back, 0 elimination candidates in 0.3 s"
    assert stage_result("publish", {"customer_tier_snapshot": 200, "winback_candidates": 4,
                                    "stale_periods": ["2025-04-01"]}, 1.0) == \
        ("publish: 204 rows in 2 tables (customer_tier_snapshot 200, winback_candidates 4); stale published "
         "periods: 2025-04-01 in 1.0 s")
    assert stage_result("export", {"targets": []}, 0.0) == "export: no export target configured in 0.0 s"
    assert stage_result("export", {"targets": [{"target": "files", "rows": 1209, "location": "/x/2025-01-01"}]},
                        1.0) == "export: files: 1,209 changes to /x/2025-01-01 in 1.0 s"
    assert stage_result("tiers", {"unexpected": 1}, 0.2) == "tiers: done in 0.2 s"  # never fails the stage
    assert stage_result("review", {"quarter": "2024Q4", "report": "/r/review.html"}, 2.0) == \
        "review: quarter 2024Q4, report /r/review.html in 2.0 s"
