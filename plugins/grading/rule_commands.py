"""The rule commands of ``python -m grading``: check and dry-run rule files, publish the
criteria, backtest a proposed tier file. Split from grading.cli, which parses and dispatches."""

from __future__ import annotations

import argparse
import sys

from grading.settings import WAREHOUSE_CONN_ID, connection_url


def cmd_rules_check(args: argparse.Namespace) -> int:
    """Load each file, check it alone and with its counterpart in force; 1 on an error (or a
    warning, with --strict)."""
    from grading import yamlfile
    from grading.features import RULE_FEATURES
    from grading.rules import checks as rule_checks
    from grading.rules.files import RuleError, load_candidate_rules, load_tier_rules, rules_dir
    from grading.rules.pins import load_rules, load_service
    from grading.rules.service import check_coverage, load_service_levels

    loaders = {"tiers": load_tier_rules, "candidates": load_candidate_rules,
               "service_levels": lambda path, _features: load_service_levels(path)}
    loaded, failed = {}, False
    for path in args.files or []:
        try:
            doc = yamlfile.load(path, path.read_bytes())
            kind = doc.get("kind") if isinstance(doc, dict) else None
            if kind not in loaders:
                raise RuleError(f"{path}: kind must be one of {', '.join(loaders)}, got {kind!r}")
            loaded.setdefault(kind, []).append(loaders[kind](path, RULE_FEATURES))
        except (OSError, yamlfile.YamlError, RuleError) as exc:
            print(f"error: {exc}" if isinstance(exc, (yamlfile.YamlError, RuleError)) else f"error: {path}: "
                  f"{exc.strerror or exc}", file=sys.stderr)
            failed = True
    if not args.files:
        rules = load_rules()  # the files in force; their errors raise RuleError (exit 1)
        loaded = {"tiers": [rules[0]], "candidates": [rules[1]], "service_levels": [load_service(rules)]}
    # service levels and candidate rules are checked against the tier files given, or the one in force
    tier_files = loaded.get("tiers") or ([load_tier_rules(rules_dir() / "tiers.yaml", RULE_FEATURES)]
                                         if loaded.get("service_levels") or loaded.get("candidates") else [])
    for levels in loaded.get("service_levels", []):
        for tier_file in tier_files:
            try:
                check_coverage(levels, tier_file.tiers)
            except RuleError as exc:
                print(f"error: {exc}", file=sys.stderr)
                failed = True
    findings = [f for tier_file in loaded.get("tiers", []) for f in rule_checks.tier_findings(tier_file)]
    findings += [f for candidate_file in loaded.get("candidates", []) for tier_file in tier_files
                 for f in rule_checks.candidate_findings(candidate_file, tier_file)]
    for rules in (r for files in loaded.values() for r in files):
        source = rules.source
        print(f"ok  {source.path}  kind={source.kind} version={source.version} effective={source.effective_date} "
              f"sha256={source.content_hash[:12]}")
    for finding in findings:
        print(f"{finding.severity}: {finding}", file=sys.stderr if finding.severity == "error" else sys.stdout)
    refused = rule_checks.errors(findings) or (args.strict and findings)
    return 1 if failed or refused else 0


def cmd_rules_dry_run(args: argparse.Namespace) -> int:
    from grading.features import features_as_of, with_scores
    from grading.rules.pins import load_rules
    from grading.tiers import assign_tiers
    from grading.warehouse import open_engine

    tier_rules, _ = load_rules(tier_file=args.tiers, proposal=bool(args.tiers))
    with open_engine(connection_url(WAREHOUSE_CONN_ID)) as warehouse, warehouse.connect() as conn:
        frame = with_scores(conn, args.as_of, features_as_of(conn, args.as_of, tier_rules.qualification))
    tiers = assign_tiers(frame, tier_rules)
    counts = tiers.groupby(["tier_rule", "tier"]).size().rename("customers").reset_index()
    print(f"Dry run of {tier_rules.source.path} (version {tier_rules.source.version}) as of {args.as_of}; "
          "nothing written:")
    print(counts.to_string(index=False))
    return 0


def cmd_criteria(args: argparse.Namespace) -> int:
    from grading import criteria
    from grading.rules.pins import load_rules, load_service
    from grading.settings import grading_home

    tier_rules, candidate_rules = load_rules(tier_file=args.tiers, candidate_file=args.candidates,
                                             proposal=bool(args.tiers or args.candidates))
    folder = args.output_dir or grading_home() / "criteria"
    levels = load_service((tier_rules, candidate_rules))
    for path in criteria.write(tier_rules, candidate_rules, folder, levels):
        print(f"wrote {path}")
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    from grading import backtest
    from grading.rules.pins import load_rules
    from grading.settings import grading_home
    from grading.warehouse import open_engine

    current, _ = load_rules()
    proposed, _ = load_rules(tier_file=args.tiers, proposal=True)
    with open_engine(connection_url(WAREHOUSE_CONN_ID)) as warehouse:
        as_of = args.as_of or backtest.latest_graded(warehouse)
        result = backtest.backtest(warehouse, as_of, current, proposed)
    print(f"Backtest of {args.tiers} (version {proposed.source.version}) against the rules in force "
          f"(version {current.source.version}) as of {as_of}; nothing published.")
    print(result["summary"].to_string(index=False))
    print(f"{len(result['movers']):,} customer(s) would change tier:")
    print(result["moves"].to_string(index=False) if len(result["moves"]) else "  none")
    folder = args.output_dir or grading_home() / "backtests" / f"{args.tiers.stem}_{as_of}"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("summary", "moves", "movers"):
        result[name].to_csv(folder / f"{name}.csv", index=False)
    print(f"CSV files (movers by pseudonymous key): {folder}")
    return 0


def cmd_rules_calibrate(args: argparse.Namespace) -> int:
    """Propose band thresholds for a target distribution, show what they make, write a candidate file."""
    import yaml

    from grading import calibrate, yamlfile
    from grading.features import RULE_FEATURES, features_as_of
    from grading.rules.files import load_tier_rules
    from grading.rules.pins import load_rules
    from grading.settings import grading_home
    from grading.tiers import assign_tiers
    from grading.warehouse import open_engine

    current, _ = load_rules()
    target = calibrate.Target.parse(args.shares, current.tiers, args.by)
    with open_engine(connection_url(WAREHOUSE_CONN_ID)) as warehouse, warehouse.connect() as conn:
        frame = features_as_of(conn, args.as_of, current.qualification)
    if args.feature not in frame.columns:
        raise ValueError(f"--feature {args.feature!r} is not a feature; use one of {', '.join(sorted(RULE_FEATURES))}")
    values = frame[args.feature]
    thresholds = calibrate.propose_thresholds(values, target)
    print(f"Calibrated {args.feature} bands for {args.shares} by {args.by} as of {args.as_of} "
          f"({len(frame):,} customers); nothing written to the warehouse.")
    table = calibrate.distribution(values, thresholds, current.tiers)
    print(table.to_string(index=False, float_format="{:,.2f}".format))
    in_force = assign_tiers(frame, current)["tier"]
    print(f"In force ({current.source.path.name} {current.source.version}): "
          + ", ".join(f"{tier} {(in_force == tier).sum():,}" for tier in current.tiers))

    document = calibrate.candidate_document(
        yamlfile.load(current.source.path, current.source.path.read_bytes()), thresholds, args.feature,
        version=f"{current.source.version}-calibrated-{args.as_of}",
        description=f"Tiers by {args.feature} at thresholds proposed for {args.shares} by {args.by} as of "
                    f"{args.as_of}: review, then set version and effective_date before adopting.")
    path = args.output or grading_home() / "calibrated" / f"tiers_{args.as_of}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# Proposed by: python -m grading rules calibrate --as-of {args.as_of} --shares {args.shares} "
              f"--by {args.by}\n# A candidate for review, not in force: check it, backtest it, then copy it to "
              "include/rules/tiers.yaml with a new version and effective date.\n")
    path.write_text(header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
    load_tier_rules(path, RULE_FEATURES)  # the candidate checks like any rule file
    print(f"Candidate rule file: {path}")
    print(f"Next: python -m grading rules check {path}; python -m grading backtest --tiers {path}")
    return 0
