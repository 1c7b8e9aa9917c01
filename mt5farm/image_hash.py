"""The account image's tag: a hash of every build input (filters of the mt5_image role).

``roles/mt5_image/filter_plugins/mt5_image.py`` is a thin shim over this module; other roles
that tag an image by its inputs (the Windows image) use the same functions. Errors are
``AnsibleFilterError`` naming the filter, as the filters raise them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TAG_LENGTH = 16


def _check_inputs(inputs: Any) -> None:
    if not isinstance(inputs, Mapping):
        raise AnsibleFilterError(f"mt5_image_input_hash: expected a mapping of inputs, got {type(inputs).__name__}")
    for key in ("variant", "base_image_id", "files"):
        if key not in inputs:
            raise AnsibleFilterError(f"mt5_image_input_hash: the inputs lack {key!r}")
    if not isinstance(inputs["files"], Mapping) or not inputs["files"]:
        raise AnsibleFilterError("mt5_image_input_hash: 'files' must be a non-empty mapping of path -> sha256")
    for path, digest in inputs["files"].items():
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise AnsibleFilterError(f"mt5_image_input_hash: the digest of {path!r} is not a lowercase sha256 hex string: {digest!r}")
    base = inputs["base_image_id"]
    if not isinstance(base, str) or not base.startswith("sha256:"):
        raise AnsibleFilterError(f"mt5_image_input_hash: base_image_id must be an image id (sha256:...), got {base!r}")


def mt5_image_input_hash(inputs: Mapping[str, Any]) -> str:
    """First 16 hex digits of the sha256 of every build input, in a canonical form.

    ``inputs`` holds ``variant``, ``base_image_id`` (the id of the FROM image), ``files``
    (every file of the build context, by its path in the context, as sha256 hex: rendered
    Dockerfile and runtime files, wheels, operator-supplied files) and any further keys
    (e.g. build labels). Keys are sorted, so the order in which they were gathered does
    not matter; any change of a value or a file changes the tag.
    """
    _check_inputs(inputs)
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:_TAG_LENGTH]


def mt5_image_sha256(text: Any) -> str:
    """sha256 hex of a rendered text (UTF-8), as the file in the build context will hold it."""
    if not isinstance(text, str):
        raise AnsibleFilterError(f"mt5_image_sha256: expected text, got {type(text).__name__}")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
