"""The move filter under ansible-core's templating, with real hostvars and a host that did not report.

The playbook is written here (tmp_path) with its own inventory of three Linux farm hosts: a
first play sets each reporting host's mt5_linux_volumes as the role's entry point `volumes`
does (farm-03 reports nothing), a second asks the filter for farm-02's plan, as
roles/mt5_linux/tasks/moves.yml does.
"""

from pathlib import Path

from farm_testing import run_ansible

INVENTORY = """
all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  children:
    mt5_linux:
      hosts:
        farm-01:
          mt5_accounts:
            - {login: 5001002, server: Demo, password: "{{ vault_undefined_password }}"}
        farm-02:
          mt5_accounts:
            - {login: 5001001, server: Demo, backend: simulator}
            - {login: 5001003, server: Demo, backend: simulator}
            - {login: 5001004, server: Demo, backend: simulator}
        farm-03:
          mt5_accounts: []
"""

PLAYBOOK = """
- name: Hosts report their account volumes (farm-03 does not)
  hosts: farm-01:farm-02
  gather_facts: false
  tasks:
    - name: Report
      ansible.builtin.set_fact:
        mt5_linux_volumes: "{{ {'farm-01': ['mt5-5001001-data', 'mt5-5001002-data'], 'farm-02': ['mt5-5001004-data']}[inventory_hostname] }}"

- name: The move filter over the real hostvars
  hosts: farm-02
  gather_facts: false
  vars:
    _hosts: "{{ groups['mt5_linux'] }}"
    _accounts: "{{ mt5_accounts | mt5_resolved_accounts('linux') }}"
    _plan: "{{ dict(_hosts | zip(_hosts | map('extract', hostvars))) | mt5_account_moves(inventory_hostname, _accounts, [5001003]) }}"
    _strict: "{{ dict(_hosts | zip(_hosts | map('extract', hostvars))) | mt5_account_moves(inventory_hostname, _accounts) }}"
    _of_01: >-
      {{ dict(_hosts | zip(_hosts | map('extract', hostvars)))
         | mt5_account_moves('farm-01', hostvars['farm-01']['mt5_accounts'] | mt5_resolved_accounts('linux')) }}
  tasks:
    - name: 5001001 moves from farm-01, 5001003 starts empty as allowed, 5001004 stays
      ansible.builtin.assert:
        that:
          - "_plan.moves == [{'login': 5001001, 'container': 'mt5-5001001', 'volume': 'mt5-5001001-data', 'source': 'farm-01'}]"
          - _plan.fresh == [5001003]
          - _plan.problems == []
          - _strict.problems | length == 1
          - "'account 5001003: its data volume mt5-5001003-data is not on farm-02, and farm-03 did not report' in _strict.problems[0]"
          - _of_01.keep == ['mt5-5001001-data']
"""


def test_the_move_filter_works_from_a_playbook(tmp_path: Path) -> None:
    (tmp_path / "hosts.yml").write_text(INVENTORY)
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    done = run_ansible(["-i", str(tmp_path / "hosts.yml"), str(tmp_path / "play.yml")])
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "failed=0" in output, output
