"""The guard's decisions, pure: which account containers it starts, and what a hold means."""

import json

import pytest

import mt5farm.guard as guard
from mt5farm.guard import Container, Guard, holds, judge


def inspect(
    name="mt5-5001001",
    status="exited",
    login="5001001",
    scope="accounts",
    started="2026-11-30T10:00:00.1Z",
    container_id=None,
    exit_code=137,
):
    labels = {}
    if scope is not None:
        labels["mt5farm.scope"] = scope
    if login is not None:
        labels["mt5farm.login"] = login
    return {
        "Id": container_id or ("c" + name),
        "Name": "/" + name,
        "Config": {"Labels": labels},
        "State": {"Status": status, "StartedAt": started, "FinishedAt": "2026-11-30T11:00:00Z", "ExitCode": exit_code},
    }


def test_an_exited_or_dead_account_container_is_started():
    for status in ("exited", "dead"):
        assert judge(Container.from_inspect(inspect(status=status)), None).action == "start"


@pytest.mark.parametrize("status", ["running", "restarting", "paused", "created", "removing"])
def test_containers_that_are_not_down_are_left_alone(status):
    assert judge(Container.from_inspect(inspect(status=status)), None).action == "none"


@pytest.mark.parametrize("labels", [dict(scope=None), dict(login=None), dict(scope="platform"), dict(scope=None, login=None)])
def test_containers_without_the_farms_labels_are_never_touched(labels):
    assert judge(Container.from_inspect(inspect(**labels)), None).action == "none"


def test_a_converges_replacement_is_never_started():
    assert judge(Container.from_inspect(inspect(name="mt5-5001001-mt5farm-next")), None).action == "none"
    assert judge(Container.from_inspect(inspect(name="mt5-5001001-mt5farm-prev")), None).action == "none"


def test_a_hold_counts_for_the_run_it_was_written_in_only():
    container = Container.from_inspect(inspect())
    marker = {"id": container.id, "started_at": container.started_at}
    assert holds(marker, container) and judge(container, marker).action == "held"
    later = Container.from_inspect(inspect(started="2026-11-30T10:30:00.2Z"))
    verdict = judge(later, marker)
    assert verdict.action == "start" and verdict.stale_marker, "it ran again since the hold: the marker is stale"
    recreated = Container.from_inspect(inspect(container_id="other"))
    assert judge(recreated, marker).action == "start", "a recreated container is not the held one"
    assert not holds({}, container) and not holds(None, container)


def test_marker_round_trip_and_names(tmp_path):
    container = Container.from_inspect(inspect())
    path = guard.write_marker(container, tmp_path / "held", by="alice")
    data = json.loads(path.read_text())
    assert data["started_at"] == container.started_at and data["id"] == container.id and data["by"] == "alice"
    assert holds(guard.read_marker(container.name, tmp_path / "held"), container)
    assert guard.remove_marker(container.name, tmp_path / "held") and not guard.remove_marker(container.name, tmp_path / "held")
    for bad in ("", "../x", ".hidden", "a/b"):
        with pytest.raises(ValueError):
            guard.marker_path(bad, tmp_path)
    (tmp_path / "held" / container.name).write_text("not json")
    assert guard.read_marker(container.name, tmp_path / "held") == {}, "an unreadable marker is stale, not a hold"


def test_one_pass_starts_the_down_and_logs_one_line_each(tmp_path, capsys):
    containers = [
        inspect("mt5-1", login="1"),
        inspect("mt5-2", login="2", status="running"),
        inspect("mt5-3", login="3"),
        inspect("other", login=None),
    ]
    held = Container.from_inspect(containers[2])
    guard.write_marker(held, tmp_path, by="bob")
    started = []
    dog = Guard(held_dir=tmp_path, list_fn=lambda: containers, start_fn=started.append)
    assert dog.check() == [("mt5-1", "started"), ("mt5-3", "held")]
    assert started == ["mt5-1"]
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("mt5farm-guard: login 1 container mt5-1: exited (exit code 137") and out[0].endswith("started it")
    assert "login 3 container mt5-3" in out[1] and "held by mt5farm-account stop (bob at" in out[1]
    dog.check()
    assert "held by" not in capsys.readouterr().out, "a hold is reported once, not every pass"


def test_a_stale_marker_is_removed_and_the_container_started(tmp_path, capsys):
    old = Container.from_inspect(inspect())
    guard.write_marker(old, tmp_path, by="bob")
    now = inspect(started="2026-11-30T12:00:00Z")
    started = []
    assert Guard(held_dir=tmp_path, list_fn=lambda: [now], start_fn=started.append).check() == [("mt5-5001001", "started")]
    assert not (tmp_path / "mt5-5001001").exists()
    assert "hold marker was for an earlier run (removed); started it" in capsys.readouterr().out


def test_a_failed_start_is_reported_once_and_retried(tmp_path, capsys):
    calls = []

    def fail(name):
        calls.append(name)
        raise guard.DockerError("port is already allocated")

    dog = Guard(held_dir=tmp_path, list_fn=lambda: [inspect()], start_fn=fail)
    dog.check()
    dog.check()
    assert calls == ["mt5-5001001", "mt5-5001001"]
    assert capsys.readouterr().out.count("docker start failed: port is already allocated") == 1


def test_an_engine_that_does_not_answer_is_reported_once(tmp_path, capsys):
    def down():
        raise guard.DockerError("Cannot connect to the Docker daemon")

    dog = Guard(held_dir=tmp_path, list_fn=down, start_fn=lambda name: None)
    assert dog.check() == [] and dog.check() == []
    assert capsys.readouterr().out.count("cannot list the account containers") == 1


# --- backups (mt5farm-account backup, restore; pure parts) ---------------------------------


def test_archive_names_sort_by_time_and_the_newest_comes_first(tmp_path):
    import datetime

    names = [guard.archive_name("mt5-5001001-data", datetime.datetime(2026, 12, day, 2, 30, tzinfo=datetime.UTC)) for day in (1, 3, 2)]
    assert names[0] == "mt5-5001001-data-20261201T023000Z.tar.gz"
    folder = tmp_path / "5001001"
    folder.mkdir()
    for name in [*names, "other.txt", names[0] + ".partial"]:
        (folder / name).write_text("x")
    assert [p.name for p in guard.archives_of(tmp_path, "5001001")] == sorted(names, reverse=True)
    assert guard.archives_of(tmp_path, "5009999") == []


def test_backup_state_counts_a_new_accounts_age_from_its_first_record(tmp_path):
    done = guard.Backup("5001001", tmp_path / "a.tar.gz", 41376, 0.356, 0.634)
    state = guard.record_backups(tmp_path, [done], ["5001002"], ["5001001", "5001002", "5001003"], now=1000.0)
    assert state["5001001"] == {
        "since": 1000.0, "last_success": 1000.0, "last_failed": 0, "size": 41376, "seconds": 0.634, "paused_seconds": 0.356
    }  # fmt: skip
    assert state["5001002"]["last_failed"] == 1 and state["5001002"]["last_success"] == 0
    later = guard.record_backups(tmp_path, [guard.Backup("5001002", tmp_path / "b", 1, 0.1, 0.2)], [], ["5001002"], now=2000.0)
    assert later["5001001"]["since"] == 1000.0  # kept across runs (state.json)
    assert later["5001002"]["last_failed"] == 0 and later["5001002"]["last_success"] == 2000.0
    text = guard.backup_metrics(later)
    assert 'mt5_backup_last_success_timestamp_seconds{kind="account",login="5001003"} 1000.0' in text  # since: never backed up
    assert 'mt5_backup_last_success_timestamp_seconds{kind="account",login="5001002"} 2000.0' in text
    assert 'mt5_backup_last_failed{kind="account",login="5001002"} 0' in text
    assert 'mt5_backup_last_size_bytes{kind="account",login="5001003"}' not in text  # no archive, no size
    assert text.count("# TYPE") == 4


def test_restore_refuses_an_archive_outside_the_logins_directory(tmp_path):
    container = guard.Container.from_inspect(inspect(status="running"))
    (tmp_path / "5001001").mkdir()
    for archive in ("../x.tar.gz", "missing.tar.gz", None):
        with pytest.raises(SystemExit, match="no archive"):
            guard.restore_account(container, tmp_path, archive, tmp_path / "held")


@pytest.mark.parametrize("argv", [["backup"], ["backup", "--all", "5001001"], ["backup", "5001001", "--keep", "0"]])
def test_backup_wants_logins_or_all_and_keeps_at_least_one(argv, capsys):
    with pytest.raises(SystemExit):
        guard.main(argv, prog="mt5farm-account")
    assert "backup:" in capsys.readouterr().err
