-- Primary keys on every published table, and foreign keys from the lists to the tier snapshot
-- they belong to (issue 21): BI tools read the grain from the catalogue and join on declared
-- keys. The keys are those include/sql/marts.yml declares (primary_key:); a test holds the two
-- together. Foreign keys are checked at commit (DEFERRABLE INITIALLY DEFERRED), so publish,
-- reruns and erasure may replace a period's rows in any order within their transaction.

ALTER TABLE marts.dim_customer ADD CONSTRAINT dim_customer_pkey PRIMARY KEY (customer_key);
ALTER TABLE marts.customer_features_snapshot ADD CONSTRAINT customer_features_snapshot_pkey PRIMARY KEY (as_of_date, customer_key);
ALTER TABLE marts.customer_tier_snapshot ADD CONSTRAINT customer_tier_snapshot_pkey PRIMARY KEY (as_of_date, customer_key);
ALTER TABLE marts.tier_history ADD CONSTRAINT tier_history_pkey PRIMARY KEY (customer_key, valid_from);
ALTER TABLE marts.elimination_candidates ADD CONSTRAINT elimination_candidates_pkey PRIMARY KEY (as_of_date, customer_key);
ALTER TABLE marts.winback_candidates ADD CONSTRAINT winback_candidates_pkey PRIMARY KEY (as_of_date, customer_key);
ALTER TABLE marts.core_customers ADD CONSTRAINT core_customers_pkey PRIMARY KEY (as_of_date, customer_key);
ALTER TABLE marts.lost_customers ADD CONSTRAINT lost_customers_pkey PRIMARY KEY (customer_key, lost_as_of);
ALTER TABLE marts.review_tier_distribution ADD CONSTRAINT review_tier_distribution_pkey PRIMARY KEY (quarter, tier);
ALTER TABLE marts.review_pareto ADD CONSTRAINT review_pareto_pkey PRIMARY KEY (quarter, decile);
ALTER TABLE marts.review_tier_migration ADD CONSTRAINT review_tier_migration_pkey PRIMARY KEY (quarter, from_tier, to_tier);
ALTER TABLE marts.review_retention ADD CONSTRAINT review_retention_pkey PRIMARY KEY (quarter, tier);
ALTER TABLE marts.review_satisfaction ADD CONSTRAINT review_satisfaction_pkey PRIMARY KEY (quarter, tier);
ALTER TABLE marts.review_winback ADD CONSTRAINT review_winback_pkey PRIMARY KEY (quarter, churn_reason);
ALTER TABLE marts.review_elimination ADD CONSTRAINT review_elimination_pkey PRIMARY KEY (quarter, rule_name);
ALTER TABLE marts.review_stability ADD CONSTRAINT review_stability_pkey PRIMARY KEY (quarter);
ALTER TABLE marts.review_fairness ADD CONSTRAINT review_fairness_pkey PRIMARY KEY (quarter, dimension, group_value);
ALTER TABLE marts.review_drift ADD CONSTRAINT review_drift_pkey PRIMARY KEY (quarter, tier);
ALTER TABLE marts.published_periods ADD CONSTRAINT published_periods_pkey PRIMARY KEY (as_of_date);
ALTER TABLE marts.elimination_decisions ADD CONSTRAINT elimination_decisions_pkey PRIMARY KEY (customer_key, as_of_date);
ALTER TABLE marts.elimination_status ADD CONSTRAINT elimination_status_pkey PRIMARY KEY (as_of_date, customer_key);
ALTER TABLE marts.candidate_exemptions ADD CONSTRAINT candidate_exemptions_pkey PRIMARY KEY (as_of_date, customer_key, list);
ALTER TABLE marts.service_entitlements ADD CONSTRAINT service_entitlements_pkey PRIMARY KEY (as_of_date, tier);
ALTER TABLE marts.action_treatments ADD CONSTRAINT action_treatments_pkey PRIMARY KEY (as_of_date, action);
ALTER TABLE marts.review_uplift ADD CONSTRAINT review_uplift_pkey PRIMARY KEY (quarter, list, segment_type, segment);
ALTER TABLE marts.review_scheme ADD CONSTRAINT review_scheme_pkey PRIMARY KEY (quarter, tier);
ALTER TABLE marts.score_cut_points ADD CONSTRAINT score_cut_points_pkey PRIMARY KEY (as_of_date, score, score_value);

ALTER TABLE marts.elimination_candidates ADD CONSTRAINT elimination_candidates_snapshot_fkey FOREIGN KEY (as_of_date, customer_key)
    REFERENCES marts.customer_tier_snapshot (as_of_date, customer_key) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE marts.winback_candidates ADD CONSTRAINT winback_candidates_snapshot_fkey FOREIGN KEY (as_of_date, customer_key)
    REFERENCES marts.customer_tier_snapshot (as_of_date, customer_key) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE marts.core_customers ADD CONSTRAINT core_customers_snapshot_fkey FOREIGN KEY (as_of_date, customer_key)
    REFERENCES marts.customer_tier_snapshot (as_of_date, customer_key) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE marts.candidate_exemptions ADD CONSTRAINT candidate_exemptions_snapshot_fkey FOREIGN KEY (as_of_date, customer_key)
    REFERENCES marts.customer_tier_snapshot (as_of_date, customer_key) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE marts.elimination_status ADD CONSTRAINT elimination_status_candidate_fkey FOREIGN KEY (as_of_date, customer_key)
    REFERENCES marts.elimination_candidates (as_of_date, customer_key) DEFERRABLE INITIALLY DEFERRED;
