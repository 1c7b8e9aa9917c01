"""The account service's dependencies, pinned, for a Python whose dependencies pip cannot resolve here.

pip evaluates environment markers (``sys_platform``) on the machine it runs on, so a
wheelhouse for Windows Python is downloaded with ``--no-deps`` and every dependency listed.
The pins are those of ``account_service/pyproject.toml`` and of the Linux image's
constraints (``roles/mt5_image/files/constraints/service-linux.txt``), plus what only
Windows needs (colorama for click, tzdata for psycopg). One copy for every role that puts
the account service into Windows Python (filter ``mt5_service_packages``).
"""

from __future__ import annotations

from mt5farm.errors import FarmError

SERVICE_PACKAGES: dict[str, tuple[str, ...]] = {
    "windows": (
        "annotated-doc==0.0.7",
        "annotated-types==0.8.0",
        "anyio==4.16.0",
        "click==8.5.1",
        "colorama==0.4.6",
        "fastapi==0.165.0",
        "h11==0.16.0",
        "httptools==0.9.0",
        "idna==3.20",
        "opentelemetry-api==1.45.2",
        "prometheus-client==0.26.0",
        "psycopg==3.3.9",
        "psycopg-binary==3.3.9",
        "pydantic==2.14.3",
        "pydantic-core==2.50.4",
        "redis==8.1.0",
        "starlette==1.10.0",
        "typing-extensions==4.16.0",
        "typing-inspection==0.4.5",
        "tzdata==2025.2",
        "uvicorn==0.54.0",
        "websockets==17.4",
    ),
}


def service_packages(os_name: str) -> list[str]:
    """The account service's pinned dependencies (``name==version`` strings) for ``os_name``.

    Only ``"windows"`` has such a list (Linux images resolve the service's dependencies with
    pip and a constraints file). Raises ``ValueError`` for any other value.
    """
    if os_name not in SERVICE_PACKAGES:
        raise FarmError(
            f"mt5_service_packages: no pinned account service packages for os {os_name!r}; expected one of {sorted(SERVICE_PACKAGES)}"
        )
    return list(SERVICE_PACKAGES[os_name])
