"""The mt5_containers module's logic (Ansible module_utils: shipped to the host with the module).

Imported by ``library/mt5_containers.py`` as ``ansible.module_utils.mt5farm_containers``;
the modules here import each other relatively, so the same files are importable on the
controller as ``mt5farm_containers`` (the root ``pyproject.toml`` maps the name) for tests.
"""
