"""pyinfra inventory built from the Ansible YAML inventory named by $LECTERN_INVENTORY.

pyinfra treats every module-level list as a group of (name, data) hosts.
"""

from __future__ import annotations

import os
from typing import Any

from appliance.inventory import load, pyinfra_data

_inventory = load(os.environ.get("LECTERN_INVENTORY", "inventories/lab"))
_groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
for _host in _inventory.hosts.values():
    for _group in _host.groups or ["ungrouped"]:
        _groups.setdefault(_group, []).append((_host.name, pyinfra_data(_host)))
globals().update(_groups)
