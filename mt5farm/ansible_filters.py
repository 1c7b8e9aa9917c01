"""The one bridge from the package to Ansible's filter plugins (the only module that imports Ansible).

Each file under ``filter_plugins/`` is a shim (as kolla-ansible's ``ansible/filter_plugins``
over ``kolla_ansible``): it maps filter names to functions of this package with
``filters()``, which turns the package's ``FarmError`` into Ansible's ``AnsibleFilterError``
with the same message, so a playbook fails with the filter's own sentence.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible.template import accept_lazy_markers

from mt5farm.errors import FarmError


def ansible_filter(function: Callable[..., Any], *, lazy_markers: bool = False) -> Callable[..., Any]:
    """``function`` as an Ansible filter: a FarmError becomes an AnsibleFilterError, same message.

    ``lazy_markers``: mark the filter ``accept_lazy_markers`` (ansible-core 2.19), so values
    inside its arguments that could not be templated (an undefined vault entry) reach it
    as undefined markers instead of failing the task; only for functions that handle
    ``jinja2.Undefined`` themselves (mt5farm.inventory).
    """

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except FarmError as exc:
            # from None: the message is the whole story; a chained FarmError would only repeat it.
            raise AnsibleFilterError(str(exc)) from None

    return accept_lazy_markers(call) if lazy_markers else call


def filters(table: Mapping[str, Callable[..., Any]], lazy_markers: Iterable[str] = ()) -> dict[str, Callable[..., Any]]:
    """A FilterModule's ``filters()`` result: filter name → ``ansible_filter(function)``.

    ``lazy_markers``: the names among ``table`` that accept lazy markers (see ansible_filter).
    """
    lazy = set(lazy_markers)
    unknown = lazy - set(table)
    if unknown:
        raise ValueError(f"lazy_markers names filters not in the table: {sorted(unknown)}")
    return {name: ansible_filter(function, lazy_markers=name in lazy) for name, function in table.items()}
