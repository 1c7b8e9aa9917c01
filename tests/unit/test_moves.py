"""mt5farm.moves (the mt5_account_moves filter): which data volume moves from where to where."""

from __future__ import annotations

from typing import Any

import pytest

from mt5farm import moves
from mt5farm.accounts import mt5_resolved_accounts
from mt5farm.errors import FarmError


def resolved(*logins: int, disabled: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    """Resolved accounts of one host, as the role passes them."""
    return mt5_resolved_accounts([{"login": login, "server": "Demo", "enabled": login not in disabled} for login in logins])


def vol(login: int) -> str:
    return f"mt5-{login}-data"


# --- plan_moves: the decisions ------------------------------------------------------------


def test_an_account_whose_volume_is_here_stays() -> None:
    plan = moves.plan_moves("farm-b", resolved(1001), {"farm-a": [], "farm-b": [vol(1001)]})
    assert plan.as_dict() == {"moves": [], "fresh": [], "problems": [], "keep": []}


def test_an_account_whose_volume_is_on_one_other_host_moves_from_there() -> None:
    plan = moves.plan_moves("farm-b", resolved(1001, 1002), {"farm-a": [vol(1001), vol(9)], "farm-b": [vol(1002)]})
    assert plan.as_dict()["moves"] == [{"login": 1001, "container": "mt5-1001", "volume": vol(1001), "source": "farm-a"}]
    assert plan.problems == [] and plan.fresh == []


def test_a_new_account_starts_empty_when_every_host_reported() -> None:
    plan = moves.plan_moves("farm-b", resolved(1001), {"farm-a": [], "farm-b": []})
    assert plan.as_dict() == {"moves": [], "fresh": [], "problems": [], "keep": []}


def test_a_volume_on_two_hosts_is_a_problem_naming_the_account_both_hosts_and_the_fix() -> None:
    plan = moves.plan_moves("farm-c", resolved(1001), {"farm-a": [vol(1001)], "farm-b": [vol(1001)], "farm-c": []})
    assert plan.moves == []
    (problem,) = plan.problems
    assert problem.startswith(f"account 1001: its data volume {vol(1001)} is on farm-a and farm-b")
    assert "docker volume rm mt5-1001-data" in problem and "run again" in problem


def test_a_volume_here_and_on_another_host_is_a_problem_too() -> None:
    # A stale copy elsewhere (an older move that left it, an interrupted one): a later move
    # back must never pick it up, so the run stops until one copy is gone.
    plan = moves.plan_moves("farm-b", resolved(1001), {"farm-a": [vol(1001)], "farm-b": [vol(1001)]})
    assert plan.moves == [] and "is on farm-a and farm-b" in plan.problems[0]


def test_a_volume_nowhere_while_a_host_did_not_report_is_a_problem_naming_it_and_the_opt_in() -> None:
    plan = moves.plan_moves("farm-b", resolved(1001), {"farm-a": None, "farm-b": [], "farm-c": None})
    (problem,) = plan.problems
    assert problem.startswith(f"account 1001: its data volume {vol(1001)} is not on farm-b, and farm-a, farm-c did not report")
    assert "mt5_linux_start_without_data" in problem and "placed again" in problem
    assert plan.moves == [] and plan.fresh == []


def test_the_operator_may_start_such_an_account_empty() -> None:
    plan = moves.plan_moves("farm-b", resolved(1001, 1002), {"farm-a": None, "farm-b": []}, start_without_data=[1001])
    assert plan.fresh == [1001]
    assert len(plan.problems) == 1 and plan.problems[0].startswith("account 1002:")


def test_a_silent_host_does_not_matter_to_an_account_found_elsewhere_or_here() -> None:
    holdings = {"farm-a": [vol(1001)], "farm-b": [vol(1002)], "farm-c": None}
    plan = moves.plan_moves("farm-b", resolved(1001, 1002), holdings)
    assert [move.login for move in plan.moves] == [1001] and plan.problems == []


def test_disabled_accounts_are_left_alone() -> None:
    plan = moves.plan_moves("farm-b", resolved(1001, disabled=(1001,)), {"farm-a": [vol(1001)], "farm-b": [], "farm-c": None})
    assert plan.as_dict() == {"moves": [], "fresh": [], "problems": [], "keep": []}


def test_volumes_held_here_for_accounts_carried_elsewhere_are_kept() -> None:
    plan = moves.plan_moves("farm-a", resolved(), {"farm-a": [vol(1001), vol(7)], "farm-b": []}, elsewhere=[vol(1001), vol(5)])
    assert plan.keep == [vol(1001)]


def test_a_host_that_did_not_report_cannot_plan() -> None:
    with pytest.raises(FarmError, match="farm-b has not reported its account volumes"):
        moves.plan_moves("farm-b", resolved(1001), {"farm-a": [], "farm-b": None})


# --- mt5_account_moves: the filter over hostvars ------------------------------------------


def test_the_filter_reads_every_hosts_report_and_the_others_accounts() -> None:
    hosts: dict[str, dict[str, Any]] = {
        "farm-a": {"mt5_linux_volumes": [vol(1001), vol(1003)], "mt5_accounts": [{"login": 1003, "server": "Demo"}]},
        "farm-b": {"mt5_linux_volumes": [], "mt5_accounts": [{"login": 1001, "server": "Demo"}, {"login": 1002, "server": "D"}]},
    }
    plan = moves.mt5_account_moves(hosts, "farm-b", resolved(1001, 1002))
    assert plan == {
        "moves": [{"login": 1001, "container": "mt5-1001", "volume": vol(1001), "source": "farm-a"}],
        "fresh": [],
        "problems": [],
        "keep": [],
    }
    # farm-a keeps the volume it holds for farm-b's 1001 (it moves this run): never purged there.
    assert moves.mt5_account_moves(hosts, "farm-a", resolved(1003))["keep"] == [vol(1001)]


def test_the_filter_counts_a_host_without_the_fact_as_silent() -> None:
    hosts: dict[str, dict[str, Any]] = {"farm-a": {"mt5_accounts": []}, "farm-b": {"mt5_linux_volumes": []}}
    assert "farm-a did not report" in moves.mt5_account_moves(hosts, "farm-b", resolved(1001))["problems"][0]
    assert moves.mt5_account_moves(hosts, "farm-b", resolved(1001), [1001])["fresh"] == [1001]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([], "farm-b", []), "hosts must map each mt5_linux host to its variables, got a list"),
        (({"farm-a": {}}, "farm-b", []), "host 'farm-b' is not one of the mt5_linux hosts given (farm-a)"),
        (({"farm-b": {"mt5_linux_volumes": []}}, "farm-b", {}), "accounts must be the host's resolved accounts, got a mapping"),
        (({"farm-b": {"mt5_linux_volumes": []}}, "farm-b", [], ["1001"]), "start_without_data must be a list of logins"),
        (({"farm-b": {"mt5_linux_volumes": "mt5-1-data"}}, "farm-b", []), "mt5_linux_volumes of farm-b must be a list of volume names"),
    ],
)
def test_the_filter_names_a_bad_argument(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(FarmError, match="^mt5_account_moves: " + message.replace("(", r"\(").replace(")", r"\)")):
        moves.mt5_account_moves(*args)
