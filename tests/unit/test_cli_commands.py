"""The command bodies (grading.cli_commands) through grading.cli.main, on the embedded defaults of a
fresh GRADING_HOME: generate leaves an existing source alone unless --force; erase counts with
--dry-run and changes nothing, refuses without --yes, and asks on a terminal."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from grading import cli_commands
from grading.cli import main
from grading.warehouse import migrate, open_engine

CUSTOMER = "C0000042"


@pytest.fixture
def warehouse_url(grading_home: Path) -> str:
    """The default warehouse of the home, migrated, holding one customer (a raw row, two orders, a key)."""
    grading_home.mkdir(parents=True)
    url = f"duckdb:///{grading_home / 'warehouse.duckdb'}"
    with open_engine(url) as engine:
        migrate(engine)
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO raw.customers (customer_id, created_at, extracted_at) "
                                 "VALUES (:c, '2024-01-01', '2024-02-01')"), {"c": CUSTOMER})
            for order in ("O1", "O2"):
                conn.execute(sa.text("INSERT INTO raw.orders VALUES (:o, :c, '2024-03-01', 'completed', 10, 1, "
                                     "'2024-04-01')"), {"o": order, "c": CUSTOMER})
            conn.execute(sa.text("INSERT INTO ops.customer_keys VALUES (:c, 'key-42')"), {"c": CUSTOMER})
    return url


def rows(url: str) -> dict[str, int]:
    with open_engine(url) as engine, engine.connect() as conn:
        return {table: conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar()  # noqa: S608 - constants
                for table in ("raw.customers", "raw.orders", "ops.customer_keys", "ops.erasures")}


def test_erase_dry_run_counts_and_changes_nothing(warehouse_url: str, capsys: pytest.CaptureFixture) -> None:
    before = rows(warehouse_url)
    assert main(["erase", "--customer-id", CUSTOMER, "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"erasing customer {CUSTOMER} would remove (nothing changed; --yes erases):"
    assert [line.split() for line in out[1:]] == [["ops.customer_keys", "1"], ["raw.customers", "1"],
                                                  ["raw.orders", "2"]]
    assert rows(warehouse_url) == before
    assert main(["erase", "--customer-id", CUSTOMER, "--dry-run", "--compact"]) == 2
    assert capsys.readouterr().err.startswith("error: --compact rewrites the warehouse file")
    assert main(["erase", "--customer-id", "C9999999", "--dry-run"]) == 1  # nobody of that id: a data error
    assert capsys.readouterr().err == "error: no rows of that customer in the warehouse; nothing erased\n"


def test_erase_needs_yes_without_a_terminal(warehouse_url: str, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(cli_commands, "on_terminal", lambda: False)
    before = rows(warehouse_url)
    assert main(["erase", "--customer-id", CUSTOMER]) == 2
    assert "pass --yes to confirm" in capsys.readouterr().err
    assert rows(warehouse_url) == before

    assert main(["erase", "--customer-id", CUSTOMER, "--yes"]) == 0
    assert capsys.readouterr().out.startswith("erased 4 row(s) from 3 table(s)")
    assert rows(warehouse_url) == {"raw.customers": 0, "raw.orders": 0, "ops.customer_keys": 0, "ops.erasures": 1}


def test_erase_on_a_terminal_asks_first(warehouse_url: str, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(cli_commands, "on_terminal", lambda: True)
    answers, prompts = iter(["n", "yes"]), []
    monkeypatch.setattr("builtins.input", lambda prompt: prompts.append(prompt) or next(answers))
    before = rows(warehouse_url)

    assert main(["erase", "--customer-id", CUSTOMER]) == 2  # answered no
    captured = capsys.readouterr()
    assert captured.out.startswith(f"erasing customer {CUSTOMER} removes:\n")
    assert captured.err == "error: not confirmed: nothing erased\n"
    assert rows(warehouse_url) == before

    assert main(["erase", "--customer-id", CUSTOMER]) == 0  # answered yes
    assert prompts == ["Erase them for good? [y/N] "] * 2
    assert rows(warehouse_url)["raw.orders"] == 0


def test_generate_leaves_an_existing_source_alone_unless_forced(grading_home: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    duck = grading_home / "elsewhere" / "source.duckdb"
    args = ["generate", "--customers", "20", "--seed", "1", "--source-url", f"duckdb:///{duck}"]
    duck.parent.mkdir(parents=True)
    duck.write_bytes(b"")  # any file there is a source generate would overwrite
    assert main(args) == 2
    assert capsys.readouterr().err == (
        f"error: the source duckdb:///{duck} exists already (the file {duck}): generate would replace its tables. "
        "Pass --force to overwrite it, or --source-url to write elsewhere\n")
    assert duck.read_bytes() == b""
    duck.unlink()
    assert main(args) == 0
    assert capsys.readouterr().out.startswith(f"demo source written to duckdb:///{duck}: 20 customers, ")
    assert main(args) == 2
    assert main([*args, "--force"]) == 0
