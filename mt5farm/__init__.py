"""MT5 Farm's own logic, importable: what the Ansible filter plugins, modules and roles use.

The filter plugins under ``filter_plugins/`` are thin shims over this package (as
kolla-ansible's ``ansible/filter_plugins`` are over ``kolla_ansible``); tests import it
directly. Installed editable into the controller virtualenv by ``scripts/bootstrap.sh``.
"""
