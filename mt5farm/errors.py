"""The one error type of the farm's logic.

Every function of this package refuses bad input with ``FarmError``, whose message names
the function (as the roles call it: the filter name, e.g. ``mt5_size_gib``), the argument,
the bad value (never a secret) and what a good value looks like. It is a ``ValueError``, so
the package needs no Ansible; the filter plugins turn it into Ansible's
``AnsibleFilterError`` with the same message (``mt5farm.ansible_filters``).
"""

from __future__ import annotations


class FarmError(ValueError):
    """Bad input to one of the farm's functions; ``str(error)`` is the whole message."""
