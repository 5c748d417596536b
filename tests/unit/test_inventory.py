"""The inventory loader: one Ansible YAML inventory read for both engines."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appliance.inventory import InventoryError, load, pyinfra_data
from appliance.provision import (
    ProvisionError,
    check_reachable,
    check_secrets,
    check_variables,
    provision,
)

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    write(
        tmp_path / "hosts.yml",
        """
all:
  vars: {ansible_user: admin, ansible_become: true, tz: UTC, level: all}
  children:
    pi:
      hosts:
        kitchen-pi: {ansible_host: 10.0.0.5, level: host}
    server:
      vars: {level: server-inline}
      hosts:
        box: {ansible_host: 10.0.0.6, ansible_port: 2222}
    fleet:
      children:
        nas:
          hosts:
            attic: {}
""",
    )
    write(tmp_path / "group_vars" / "pi.yml", "tz: Europe/Oslo\nlevel: pi\n")
    write(tmp_path / "group_vars" / "nas" / "main.yml", "tz: Europe/Paris\n")
    write(tmp_path / "host_vars" / "box.yml", "level: host_vars\n")
    return tmp_path


def test_groups_and_membership(home: Path) -> None:
    inv = load(home)
    assert set(inv.hosts) == {"kitchen-pi", "box", "attic"}
    assert inv.groups["fleet"] == ["attic"]
    assert inv.hosts["attic"].groups == ["fleet", "nas"]
    assert inv.hosts["attic"].profile == "nas"
    assert inv.hosts["kitchen-pi"].address == "10.0.0.5"
    assert inv.hosts["attic"].address == "attic"


def test_variable_precedence_matches_ansible(home: Path) -> None:
    inv = load(home)
    # all < group_vars < inline host vars; host_vars file beats group vars.
    assert inv.hosts["kitchen-pi"].vars["tz"] == "Europe/Oslo"
    assert inv.hosts["kitchen-pi"].vars["level"] == "host"
    assert inv.hosts["box"].vars["tz"] == "UTC"
    assert inv.hosts["box"].vars["level"] == "host_vars"
    assert inv.hosts["attic"].vars["tz"] == "Europe/Paris"
    assert inv.hosts["attic"].vars["level"] == "all"


def test_select_by_host_group_and_all(home: Path) -> None:
    inv = load(home)
    assert [h.name for h in inv.select("pi")] == ["kitchen-pi"]
    assert {h.name for h in inv.select("fleet,box")} == {"attic", "box"}
    assert len(inv.select("all")) == 3
    with pytest.raises(InventoryError, match="'garage' is neither a host nor a group"):
        inv.select("garage")


def test_pyinfra_data_translates_connection_vars(home: Path) -> None:
    data = pyinfra_data(load(home).hosts["box"])
    assert data["ssh_hostname"] == "10.0.0.6"
    assert data["ssh_port"] == 2222
    assert data["ssh_user"] == "admin"
    assert data["_sudo"] is True
    assert data["tz"] == "UTC"  # non-connection variables pass through unchanged


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("hosts: {}\n", "top-level 'all:'"),
        ("all: {children: {pi: {hosts: {a: {}}, bogus: 1}}}\n", "unknown keys"),
        ("all: [1, 2]\n", "must be a mapping"),
        ("all: {vars: {a: 1}}\n", "no hosts defined"),
        ("all: {children: {pi: {hosts: {a: {}}}}\n  bad: [\n", "not valid YAML"),
    ],
)
def test_malformed_inventories_are_clear_errors(tmp_path: Path, content: str, message: str) -> None:
    write(tmp_path / "hosts.yml", content)
    with pytest.raises(InventoryError, match=message):
        load(tmp_path)


def test_missing_inventory_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="make lab"):
        load(tmp_path / "inventories" / "lab")


def test_unreachable_host_is_one_line_per_host(home: Path) -> None:
    inv = load(home)
    host = inv.hosts["kitchen-pi"]
    host.vars["ansible_host"] = "127.0.0.1"
    host.vars["ansible_port"] = 9  # discard port: nothing listens there
    with pytest.raises(ProvisionError) as err:
        check_reachable([host], timeout=1)
    assert str(err.value).startswith("kitchen-pi (127.0.0.1:9) is unreachable")
    assert "\n" not in str(err.value)


def test_secret_files_must_exist_and_be_private(home: Path, tmp_path: Path) -> None:
    host = load(home).hosts["box"]
    secret = tmp_path / "smb-password"
    host.vars["smb_password_file"] = str(secret)
    with pytest.raises(ProvisionError, match="does not exist"):
        check_secrets([host])
    secret.write_text("hunter2\n")
    os.chmod(secret, 0o644)
    with pytest.raises(ProvisionError, match="chmod 600"):
        check_secrets([host])
    os.chmod(secret, 0o600)
    check_secrets([host])


def test_unknown_engine_and_target_fail_before_connecting(home: Path) -> None:
    with pytest.raises(ProvisionError, match="unknown engine 'chef'"):
        provision("pi", "chef", home)
    with pytest.raises(ProvisionError, match="neither a host nor a group"):
        provision("toaster", "pyinfra", home)


def _vault(text: str, password: bytes) -> str:
    from ansible.constants import DEFAULT_VAULT_ID_MATCH
    from ansible.parsing.vault import VaultLib, VaultSecret

    lib = VaultLib([(DEFAULT_VAULT_ID_MATCH, VaultSecret(password))])
    return str(lib.encrypt(text).decode())


def test_vault_values_decrypt_like_ansible(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob = _vault("s3cret", b"vault-pw").replace("\n", "\n  ")
    write(home / "group_vars" / "server.yml", f"smb_password: !vault |\n  {blob}\n")
    pw = tmp_path / "vault-pass"
    pw.write_text("vault-pw\n")
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(pw))
    assert load(home).hosts["box"].vars["smb_password"] == "s3cret"
    pw.write_text("wrong\n")
    with pytest.raises(InventoryError, match="box: smb_password: cannot decrypt"):
        load(home)
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE")
    with pytest.raises(InventoryError, match="set ANSIBLE_VAULT_PASSWORD_FILE"):
        load(home)


def test_environment_overrides_for_pyinfra_secrets(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LECTERN_VAR_smb_password", "from-env")
    monkeypatch.setenv("LECTERN_VAR_tz", "Asia/Tokyo")
    inv = load(home)
    assert inv.hosts["box"].vars["smb_password"] == "from-env"
    assert inv.hosts["kitchen-pi"].vars["tz"] == "Asia/Tokyo"


def test_misspelled_role_variable_is_caught_with_a_suggestion(home: Path) -> None:
    write(home / "group_vars" / "server.yml", "lectern_base_timezon: Europe/Oslo\n")
    with pytest.raises(ProvisionError) as err:
        provision("server", "pyinfra", home)
    assert str(err.value).startswith("box: unknown variable lectern_base_timezon")
    assert "did you mean lectern_base_timezone?" in str(err.value)


@pytest.mark.parametrize(
    "example", sorted(p.name for p in (REPO / "inventories" / "examples").iterdir() if p.is_dir())
)
def test_example_inventories_load_and_use_only_known_variables(example: str) -> None:
    inv = load(REPO / "inventories" / "examples" / example)
    check_variables(list(inv.hosts.values()))
    assert all(h.profile in ("pi", "server", "nas") for h in inv.hosts.values())
