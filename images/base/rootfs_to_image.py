#!/usr/bin/env python3
"""Turn a root filesystem tarball into a `docker load` archive with the right architecture.

`docker import --platform` is ignored by older engines (Debian's docker.io 20.10), which
would record an arm64 root filesystem as amd64. Writing the image config ourselves sets
architecture/variant exactly, and a fixed creation date keeps the image reproducible.

    rootfs_to_image.py ROOTFS.tar TAG ARCH [VARIANT] | docker load
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile

CREATED = "2000-01-01T00:00:00Z"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def main() -> None:
    rootfs, tag, arch = sys.argv[1:4]
    variant = sys.argv[4] if len(sys.argv) > 4 else ""
    digest = hashlib.sha256()
    with open(rootfs, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    diff_id = "sha256:" + digest.hexdigest()
    config = {
        "architecture": arch,
        "os": "linux",
        "created": CREATED,
        "config": {"Cmd": ["/bin/bash"], "Env": [f"PATH={PATH}", "LANG=C.UTF-8"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": CREATED, "created_by": f"lectern debootstrap {arch}"}],
    }
    if variant:
        config["variant"] = variant
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": ["layer.tar"]}])

    with tarfile.open(fileobj=sys.stdout.buffer, mode="w|") as out:
        for name, data in ((config_name, config_bytes), ("manifest.json", manifest.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
        out.add(rootfs, arcname="layer.tar")


if __name__ == "__main__":
    main()
