"""The whole appliance, concern by concern — the pyinfra twin of playbooks/site.yml.

`appliance provision --only ...` narrows the concerns through LECTERN_CONCERNS.
"""

import os

from pyinfra import local

from appliance.provision import CONCERNS

selected = [name for name in os.environ.get("LECTERN_CONCERNS", "").split(",") if name]
for concern in selected or CONCERNS:
    local.include(f"appliance/deploys/{concern}.py")
