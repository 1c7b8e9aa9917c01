"""The image's runtime (``mt5farm.runtime``) and the mt5_image role's controller programs
(``mt5farm.build_context``, ``mt5farm.wheelhouse``, ``mt5farm.image_hash``) are imported
from the installed mt5farm package.

No bytecode is written next to them: the role hashes and packs the runtime's files (it
leaves ``*.pyc`` out, but a test run should not leave caches in the package either).
"""

import os
import shutil
import subprocess
import sys

import pytest
from farm_testing import unavailable

sys.dont_write_bytecode = True


def docker_problem() -> str | None:
    """Why the image builds cannot run on this machine, or None when they can."""
    if shutil.which("docker") is None:
        return "the docker command is not installed (apt-get install docker.io; make test-deps does it)"
    done = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return f"no Docker engine answers: {done.stderr.strip()[:200]} (make test-deps starts one)"
    if os.geteuid() != 0:
        return "the image build test runs as root (it makes a base image with debootstrap)"
    return None


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """This machine's Docker engine, as root, for the suites that build and run images.

    Without it they are skipped, except under CI (``CI`` set), where they fail: a CI run
    must not pass by skipping them (as the account service's suites do).
    """
    problem = docker_problem()
    if problem is None:
        return
    unavailable(f"the image build suites need Docker: {problem}")
