"""The whole appliance, concern by concern — the pyinfra twin of playbooks/site.yml."""

from pyinfra import local

for concern in ("base", "docker", "library_source", "proxy", "appliance", "backup", "updates"):
    local.include(f"appliance/deploys/{concern}.py")
