"""The mt5_containers module's logic (Ansible module_utils: shipped to the host with the module).

Imported by ``library/mt5_containers.py`` as ``ansible.module_utils.mt5farm_containers``;
the modules here import each other relatively, so the same files are importable on the
controller as ``mt5farm_containers`` (the root ``pyproject.toml`` maps the name) for tests.

``module`` runs it: ``reconcile`` (validate -> plan -> apply) over ``spec`` (specs and the
config hash), ``plan`` (what to do), ``runner`` (the thread pool) and ``engine`` (Docker).
``arguments`` is the argument_spec. Standard library and the Docker SDK only: it runs on a
host's own Python (3.10 or newer).
"""
