"""The platform filters under ansible-core's templating, with real hostvars and groups.

The playbook is written here (tmp_path) with its own inventory: two Linux farm hosts, the
first also the platform host, with a vault-style password that must never be templated.
"""

from pathlib import Path

from farm_testing import run_ansible

REPO = Path(__file__).resolve().parents[2]

INVENTORY = """
all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  children:
    mt5_linux:
      hosts:
        farm-01:
          mt5_bind_address: 10.0.0.11
          mt5_accounts:
            - {login: 5001001, server: Demo, backend: simulator}
            - {login: 5001002, server: Demo, password: "{{ vault_undefined_password }}", vnc: true, vnc_password: x}
        farm-02:
          mt5_bind_address: 10.0.0.12
          mt5_accounts:
            - {login: 7000123, server: Live, password: x, api_port: 25000}
    platform:
      hosts:
        farm-01:
"""

PLAYBOOK = """
- name: Platform filters over the real hostvars
  hosts: farm-02
  gather_facts: false
  vars:
    _farm: "{{ groups['mt5_linux'] }}"
    _accounts: "{{ dict(_farm | zip(_farm | map('extract', hostvars))) | mt5_platform_accounts(groups) }}"
  tasks:
    - name: Routes, targets and wiring come out of the inventory
      ansible.builtin.assert:
        that:
          - _accounts | map(attribute='login') | list == [5001001, 5001002, 7000123]
          - _accounts[1].vnc_port == 31002
          - (_accounts | mt5_platform_account_targets)[2].targets == ['10.0.0.12:25000']
          - (hostvars | mt5_platform_node_targets(groups, 9100)) | map(attribute='targets') | flatten == ['10.0.0.11:9100', '10.0.0.12:9100']
          - groups | mt5_platform_url('redis', 'farm-01', hostvars) == 'redis://mt5-redis:6379/0'
          - groups | mt5_platform_url('postgres', inventory_hostname, hostvars) == 'postgresql://mt5_writer@10.0.0.11:5432/mt5farm'
          - ('key-one-0123456789' | mt5_platform_api_keys(_accounts))[0].scope == '*'
"""


def test_platform_filters_work_from_a_playbook(tmp_path: Path) -> None:
    (tmp_path / "hosts.yml").write_text(INVENTORY)
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    done = run_ansible(["-i", str(tmp_path / "hosts.yml"), str(tmp_path / "play.yml")])
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "failed=0" in output, output
