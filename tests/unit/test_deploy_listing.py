"""The pyinfra deploys' fast path for unchanged files (appliance.deploys.put/render).

The listing is read by a shell command on the host and compared with a state computed in
Python; both sides must agree byte for byte, or every file would be re-uploaded (slow) or,
worse, a changed file taken for unchanged. Run here with the real shell, stat and sha1sum.
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from pathlib import Path

from appliance.deploys import file_state, listing_command, parse_listing


def _list(directory: Path) -> dict[str, str]:
    out = subprocess.run(
        ["sh", "-c", listing_command(str(directory))], capture_output=True, text=True, check=True
    ).stdout
    return parse_listing(out)


def _owner(path: Path) -> tuple[str, str]:
    st = path.stat()
    return pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name


def test_an_unchanged_file_matches_and_any_change_does_not(tmp_path: Path) -> None:
    d = tmp_path / "with space"
    d.mkdir()
    conf = d / "lectern it's.conf"
    conf.write_bytes(b"a = 1\n")
    conf.chmod(0o640)
    user, group = _owner(conf)
    listing = _list(d)
    assert listing[conf.name] == file_state(b"a = 1\n", "640", user, group)
    assert listing[conf.name] == file_state(b"a = 1\n", "0640", user, group)
    assert listing[conf.name] != file_state(b"a = 2\n", "640", user, group)  # content
    assert listing[conf.name] != file_state(b"a = 1\n", "644", user, group)  # mode
    assert listing[conf.name] != file_state(b"a = 1\n", "640", "nobody", group)  # owner


def test_links_directories_and_missing_directories_are_not_listed(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "sub").mkdir()
    os.symlink(tmp_path / "file", tmp_path / "link")
    (tmp_path / "sub").chmod(0o750)
    listing = _list(tmp_path)
    assert set(listing) == {"file", "sub/"}  # a link goes through pyinfra
    user, group = _owner(tmp_path / "sub")
    assert listing["sub/"] == f"750:{user}:{group}"
    assert _list(tmp_path / "absent") == {}
    assert _list(tmp_path / "sub") == {}  # empty: the glob matches nothing
