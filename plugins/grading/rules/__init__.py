"""Rules as data: the rule model (model), reading and checking rule files (files), the checks across
rules and files (checks), and the rule files a run pinned and grades by (pins, with ``load_rules``)."""
