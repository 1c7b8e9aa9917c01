"""The Docker engine: the SDK's low-level APIClient, one per worker thread.

Imported without the Docker SDK too: then :data:`DOCKER_IMPORT_ERROR` holds the traceback
and the module fails saying what to install, before anything here is called.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Collection
from typing import Any

from .spec import LABEL_HASH, LABEL_IMAGE, LABEL_SCOPE, PENDING_IMAGE_ID, SpecError, container_name

DOCKER_IMPORT_ERROR: str | None
try:
    import docker
    from docker.errors import DockerException, NotFound
    from docker.types import Mount
except ImportError:
    DOCKER_IMPORT_ERROR = traceback.format_exc()

    # A stand-in, so that `except DockerException` still names a class without the SDK.
    class DockerException(Exception):  # type: ignore[no-redef]  # the SDK's own class when it is installed
        """Never raised: the module fails on DOCKER_IMPORT_ERROR before it talks to Docker."""

else:
    DOCKER_IMPORT_ERROR = None

# A recreated container is created under this suffix, then renamed over the old one.
NEXT_SUFFIX = "-mt5farm-next"
# During an image update the old container waits, stopped, under this suffix until the new one
# is healthy: removed then, renamed back and started when the new one is not (a roll back).
PREV_SUFFIX = "-mt5farm-prev"
POLL_SECONDS = 0.5
# How often wait_healthy runs a starting container's healthcheck test itself, before Docker's
# first check (one interval after the start).
EARLY_CHECK_SECONDS = 2.0
HTTP_TIMEOUT = 300
HEALTH_LOG_LINES = 3
HEALTH_LOG_CHARS = 300
NANO = 1_000_000_000


def client_kwargs(docker_host: str | None = None, tls: dict[str, str] | None = None) -> dict[str, Any]:
    """APIClient arguments: from the environment (as before), or docker_host with mutual TLS.

    With tls, the engine's certificate is verified against tls.ca_cert and the client
    presents tls.client_cert/client_key; a tcp:// engine without tls is refused. Raises
    SpecError for tls without docker_host, a network engine without tls, or a missing file.
    """
    if docker_host is None and tls is None:
        from_env: dict[str, Any] = docker.utils.kwargs_from_env()
        return from_env
    if docker_host is None:
        raise SpecError("tls needs docker_host (the engine to present the client certificate to)")
    if tls is None:
        if docker_host.startswith(("tcp://", "http://", "https://")):
            raise SpecError(
                f"docker_host {docker_host} is a network engine: give tls (ca_cert, client_cert, client_key); "
                "the Docker API without mutual TLS is root on that host for anyone who reaches the port"
            )
        return {"base_url": docker_host}
    paths = {key: os.path.expanduser(tls[key]) for key in ("ca_cert", "client_cert", "client_key")}
    missing = [f"{key} {path}" for key, path in paths.items() if not os.path.isfile(path)]
    if missing:
        raise SpecError("tls: no such file: " + ", ".join(missing))
    config = docker.tls.TLSConfig(
        client_cert=(paths["client_cert"], paths["client_key"]),
        ca_cert=paths["ca_cert"],
        verify=True,
    )
    return {"base_url": docker_host, "tls": config}


def port_bindings(ports: list[dict[str, Any]]) -> tuple[list[tuple[int, str]], dict[str, list[tuple[str, int]]]]:
    """The exposed ``(port, protocol)`` list and ``{"8000/tcp": [(host_ip, host_port), ...]}`` of a spec's ports."""
    bindings: dict[str, list[tuple[str, int]]] = {}
    exposed: list[tuple[int, str]] = []
    for port in ports:
        key = f"{port['container_port']}/{port['protocol']}"
        if key not in bindings:
            exposed.append((port["container_port"], port["protocol"]))
        bindings.setdefault(key, []).append((port["host_ip"], port["host_port"]))
    return exposed, bindings


def healthcheck_payload(check: dict[str, Any] | None) -> dict[str, Any] | None:
    """The API's healthcheck from the spec's (seconds become nanoseconds; unset fields left out)."""
    if not check:
        return None
    payload: dict[str, Any] = {"test": check["test"]}
    for field in ("interval", "timeout", "start_period"):
        if check.get(field) is not None:
            payload[field] = int(check[field]) * NANO
    if check.get("retries") is not None:
        payload["retries"] = int(check["retries"])
    return payload


class Engine:
    """The Docker engine, with one low-level client per worker thread."""

    def __init__(self, docker_host: str | None = None, tls: dict[str, str] | None = None) -> None:
        self._kwargs = client_kwargs(docker_host, tls)
        # With mutual TLS the client trusts only tls.ca_cert: requests would otherwise take
        # REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE (and proxies) from the environment over it.
        self._trust_env = tls is None
        self.api = self._new_client("auto")
        self._version = self.api.api_version
        self._local = threading.local()
        self._clients = [self.api]
        self._lock = threading.Lock()

    def client(self) -> Any:
        """This thread's APIClient (made on first use, with the version the first one negotiated)."""
        api = getattr(self._local, "api", None)
        if api is None:
            api = self._new_client(self._version)
            self._local.api = api
            with self._lock:
                self._clients.append(api)
        return api

    def _new_client(self, version: str) -> Any:
        if self._trust_env:
            return docker.APIClient(version=version, timeout=HTTP_TIMEOUT, **self._kwargs)
        # Created with a fixed version (no request yet), so the first request already
        # ignores the environment; then the server's version is negotiated as with "auto".
        api = docker.APIClient(version=docker.constants.MINIMUM_DOCKER_API_VERSION, timeout=HTTP_TIMEOUT, **self._kwargs)
        api.trust_env = False
        if version == "auto":
            version = api._retrieve_server_version()
        api._version = version
        return api

    def close(self) -> None:
        for api in self._clients:
            try:
                api.close()
            except Exception:  # noqa: BLE001 - closing is best effort: the module's result is already decided
                pass

    # -- reads, on the main thread -------------------------------------------

    def listing(self, scope: str, **filters: Any) -> list[dict[str, Any]]:
        """``GET /containers/json?all=1`` of the scope (labels, state and image id included), more filters optional."""
        filters["label"] = f"{LABEL_SCOPE}={scope}"
        found: list[dict[str, Any]] = self.api.containers(all=True, filters=filters)
        return found

    def resolve_images(self, specs: list[dict[str, Any]], pending: Collection[str] = ()) -> dict[str, str]:
        """Image reference -> image id, one inspection per distinct reference; SpecError naming the missing ones.

        A missing reference listed in ``pending`` (check mode only: this run builds or ships
        it) resolves to :data:`.spec.PENDING_IMAGE_ID` instead of failing.
        """
        wanted: dict[str, list[str]] = {}
        for spec in specs:
            wanted.setdefault(spec["image"], []).append(spec["name"])
        resolved: dict[str, str] = {}
        missing: list[str] = []
        for reference, names in wanted.items():
            try:
                resolved[reference] = self.api.inspect_image(reference)["Id"]
            except NotFound:
                if reference in pending:
                    resolved[reference] = PENDING_IMAGE_ID
                    continue
                listed = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                missing.append(f"image {reference!r} (wanted by {listed})")
        if missing:
            raise SpecError(
                "not on this host: " + "; ".join(missing) + ". Images are built once and shipped to every host "
                "(docker load), never pulled: ship the image or fix the reference"
            )
        return resolved

    def check_networks(self, specs: list[dict[str, Any]], pending: Collection[str] = ()) -> None:
        """SpecError naming the networks the specs join that do not exist (those in ``pending`` excepted: check mode)."""
        missing = []
        for network in sorted({spec["network"] for spec in specs if spec.get("network")}):
            try:
                self.api.inspect_network(network)
            except NotFound:
                if network not in pending:
                    missing.append(network)
        if missing:
            raise SpecError(f"network(s) {', '.join(missing)} do not exist on this host; create them before the containers")

    def scope_volumes(self, scope: str) -> set[str]:
        """Names of the volumes labelled with the scope."""
        result = self.api.volumes(filters={"label": f"{LABEL_SCOPE}={scope}"}) or {}
        return {volume["Name"] for volume in result.get("Volumes") or []}

    # -- operations, each run in a worker thread ------------------------------

    def create(self, spec: dict[str, Any], scope: str, name: str | None = None) -> str:
        """Create (not start) the container of a hashed spec, labelled; returns its id."""
        api = self.client()
        labels = dict(spec["labels"])
        labels.update({LABEL_SCOPE: scope, LABEL_HASH: spec["_hash"], LABEL_IMAGE: spec["_image_id"]})
        mounts = [
            Mount(
                target=mount["target"],
                source=mount["source"],
                type=mount["type"],
                read_only=bool(mount["read_only"]),
                labels={LABEL_SCOPE: scope} if mount["type"] == "volume" else None,
            )
            for mount in spec["mounts"]
        ]
        exposed, bindings = port_bindings(spec["ports"])
        host_options = dict(
            mounts=mounts or None,
            port_bindings=bindings or None,
            restart_policy={"Name": spec["restart_policy"], "MaximumRetryCount": 0},
            mem_limit=spec.get("memory"),
            mem_reservation=spec.get("memory_reservation"),
            nano_cpus=spec.get("nano_cpus"),
            network_mode=spec.get("network"),
            init=True if spec.get("init") else None,
            cap_drop=spec["cap_drop"] or None,
            security_opt=spec["security_opt"] or None,
            read_only=True if spec.get("read_only") else None,
            tmpfs=spec["tmpfs"] or None,
            extra_hosts=spec.get("extra_hosts") or None,
            pids_limit=spec.get("pids_limit"),
            isolation=spec.get("isolation"),
        )
        host_config = api.create_host_config(**{key: value for key, value in host_options.items() if value is not None})
        created = api.create_container(
            image=spec["image"],
            name=name or spec["name"],
            command=spec.get("command"),
            hostname=spec.get("hostname"),
            user=spec.get("user"),
            environment=[f"{key}={value}" for key, value in sorted(spec["env"].items())] or None,
            labels=labels,
            ports=exposed or None,
            healthcheck=healthcheck_payload(spec.get("healthcheck")),
            stop_timeout=spec.get("stop_timeout"),
            host_config=host_config,
            detach=True,
            use_config_proxy=False,
        )
        container_id: str = created["Id"]
        return container_id

    def create_and_start(self, spec: dict[str, Any], scope: str) -> None:
        """Create and start a new container; SpecError when an unmanaged container has its name."""
        try:
            container_id = self.create(spec, scope)
        except DockerException as error:
            if getattr(error, "status_code", None) == 409:
                raise SpecError(
                    f"a container named {spec['name']} exists but is not labelled {LABEL_SCOPE}={scope}; "
                    "mt5_containers never touches it: rename or remove it"
                ) from error
            raise
        self.client().start(container_id)

    def recreate(self, spec: dict[str, Any], existing: dict[str, Any], scope: str) -> None:
        """Create the new container under ``<name>-mt5farm-next`` first; only then replace the old one."""
        api = self.client()
        next_name = spec["name"] + NEXT_SUFFIX
        container_id = self.create(spec, scope, name=next_name)
        try:
            self.remove(existing)
        except Exception:
            self._discard(container_id)
            raise
        api.rename(container_id, spec["name"])
        api.start(container_id)

    def update(self, spec: dict[str, Any], existing: dict[str, Any], scope: str) -> None:
        """An image update that can be rolled back: the old container is stopped and kept.

        The new container is created under ``<name>-mt5farm-next`` (the old one still serves
        meanwhile); then the old one is stopped and renamed ``<name>-mt5farm-prev``, the new one
        takes the name and starts. :meth:`commit` removes the old one once the new is healthy,
        :meth:`roll_back` puts it back. A failure before the new one starts puts the old one
        back at once (started again when it was running).
        """
        api = self.client()
        name = spec["name"]
        container_id = self.create(spec, scope, name=name + NEXT_SUFFIX)
        was_running = existing.get("State") in ("running", "restarting", "paused")
        try:
            self._discard_name(name + PREV_SUFFIX)  # a leftover of an interrupted run
            # Renamed before it stops, so that the host guard (mt5farm/guard.py), which starts
            # stopped account containers but leaves -mt5farm-prev ones alone, never restarts it.
            api.rename(existing["Id"], name + PREV_SUFFIX)
            if was_running:
                api.stop(existing["Id"])
        except Exception:
            self._discard(container_id)
            self._put_back(existing["Id"], name, was_running)
            raise
        try:
            api.rename(container_id, name)
            api.start(container_id)
        except Exception:
            self._discard(container_id)
            api.rename(existing["Id"], name)
            if was_running:
                api.start(existing["Id"])
            raise

    def commit(self, name: str) -> None:
        """The new container of ``name`` is healthy: remove the old one kept by :meth:`update`."""
        self._discard_name(name + PREV_SUFFIX)

    def roll_back(self, name: str) -> None:
        """The new container of ``name`` did not come healthy: remove it, put the old one back and start it."""
        api = self.client()
        previous = api.inspect_container(name + PREV_SUFFIX)
        self._discard_name(name)
        api.rename(previous["Id"], name)
        api.start(previous["Id"])

    def _discard_name(self, name: str) -> None:
        try:
            self.client().remove_container(name, v=True, force=True)
        except NotFound:
            pass

    def _put_back(self, container_id: str, name: str, start: bool) -> None:
        """Best effort: the old container under its own name again, started when it ran."""
        api = self.client()
        try:
            api.rename(container_id, name)
        except Exception:  # noqa: BLE001 - the error that matters is the one update re-raises
            pass  # still named -mt5farm-prev, or already named back
        if start:
            try:
                api.start(container_id)
            except Exception:  # noqa: BLE001 - as above
                pass

    def _discard(self, container_id: str) -> None:
        try:
            self.client().remove_container(container_id, v=True, force=True)
        except Exception:  # noqa: BLE001 - the error that matters is the removal's, re-raised by recreate
            pass  # the next run removes a leftover -mt5farm-next container of the scope

    def remove(self, existing: dict[str, Any]) -> None:
        """Stop gracefully (the container's own stop timeout), then remove with its anonymous volumes."""
        api = self.client()
        try:
            if existing.get("State") in ("running", "restarting", "paused"):
                api.stop(existing["Id"])
            api.remove_container(existing["Id"], v=True, force=True)
        except NotFound:
            pass  # already gone

    def start(self, existing: dict[str, Any]) -> None:
        """Start a stopped container, or unpause a paused one."""
        if existing.get("State") == "paused":
            self.client().unpause(existing["Id"])
        else:
            self.client().start(existing["Id"])

    def restart(self, spec: dict[str, Any], existing: dict[str, Any]) -> None:
        """Restart with the spec's stop timeout (10 s, Docker's default, when unset)."""
        timeout = spec.get("stop_timeout")
        self.client().restart(existing["Id"], timeout=10 if timeout is None else timeout)

    def remove_volume(self, name: str) -> None:
        self.client().remove_volume(name)

    # -- health ----------------------------------------------------------------

    def wait_healthy(self, scope: str, names: list[str], timeout: int) -> dict[str, dict[str, Any]]:
        """Wait until every name is running and healthy (or has no healthcheck).

        One filtered listing per poll. Docker runs a container's first check only one
        ``interval`` after its start (10 s for an account; the start_interval that would
        shorten it needs Docker 25): meanwhile, a container Docker still calls ``starting``
        gets the healthcheck's own test run here (:meth:`early_check`), at most every
        :data:`EARLY_CHECK_SECONDS`, and passing it counts as healthy, as Docker's first pass
        would. A failing early check counts for nothing: only Docker declares a container
        unhealthy. Returns the ones that did not make it, with details.
        """
        pending = set(names)
        deadline = time.monotonic() + timeout
        checked: dict[str, float] = {}
        while pending:
            ready = self.listing(scope, status="running", health=["healthy", "none"])
            pending -= {container_name(entry) for entry in ready}
            if pending and time.monotonic() < deadline:
                for entry in self.listing(scope, status="running", health="starting"):
                    name = container_name(entry)
                    if name in pending and time.monotonic() - checked.get(name, -EARLY_CHECK_SECONDS) >= EARLY_CHECK_SECONDS:
                        checked[name] = time.monotonic()
                        if self.early_check(entry["Id"]):
                            pending.discard(name)
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(POLL_SECONDS)
        return {name: self.health_details(name) for name in sorted(pending)}

    def early_check(self, container_id: str) -> bool:
        """Run the container's healthcheck test once, as Docker would (in the container, as its
        user), within the check's own timeout: True when it exits 0. Any error is a False."""
        try:
            check = self.api.inspect_container(container_id)["Config"].get("Healthcheck") or {}
            test = list(check.get("Test") or [])
            if not test or test[0] not in ("CMD", "CMD-SHELL"):
                return False
            command = ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
            limit = (check.get("Timeout") or 30 * 10**9) / 10**9
            deadline = time.monotonic() + limit
            # Attached output: exec_start then returns once the test has exited. Unattached, it
            # returns at once, and a test that takes any time (the account service's takes
            # about 0.2 s) would still be running, without an exit code, when it is read.
            exec_id = self.api.exec_create(container_id, command, stdout=True, stderr=True)["Id"]
            # Its own thread (and so its own client, Engine.client): a check that hangs past its
            # timeout is left behind, and this thread's client stays free.
            runner = threading.Thread(target=lambda: self.client().exec_start(exec_id), daemon=True)
            runner.start()
            runner.join(limit)
            if runner.is_alive():
                return False
            while True:
                result = self.api.exec_inspect(exec_id)
                if not result.get("Running") or time.monotonic() >= deadline:
                    return bool(not result.get("Running") and result.get("ExitCode") == 0)
                time.sleep(POLL_SECONDS)
        except Exception:  # noqa: BLE001 - a check that cannot run is a check that did not pass
            return False

    def health_details(self, name: str) -> dict[str, Any]:
        """``{state, health, last_checks: ["exit N: output", ...], exit_code (when not running)}``."""
        try:
            state = self.api.inspect_container(name)["State"]
        except NotFound:
            return {"state": "missing", "health": None, "last_checks": []}
        health = state.get("Health") or {}
        checks = []
        for entry in (health.get("Log") or [])[-HEALTH_LOG_LINES:]:
            output = " ".join(str(entry.get("Output") or "").split())[:HEALTH_LOG_CHARS]
            checks.append(f"exit {entry.get('ExitCode')}: {output}" if output else f"exit {entry.get('ExitCode')}")
        details = {"state": state.get("Status"), "health": health.get("Status"), "last_checks": checks}
        if state.get("Status") != "running":
            details["exit_code"] = state.get("ExitCode")
        return details
