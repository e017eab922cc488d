"""Customer grading: RFM and satisfaction features, tiers, elimination and win-back flags.

The package is the pipeline's logic; `dags/` only wires its functions into
Airflow tasks and `python -m grading` calls the same functions without a scheduler.
"""
