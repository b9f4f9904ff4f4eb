"""Copy-up: a new, empty volume mounted over a directory that has content in the image is first
filled with that content, as Docker does (moby's ``copyExistingContents``).

Docker's rule, kept here: the copy happens at each start, but only while the volume is empty (so it
happens once in practice, and a volume the user emptied is filled again); the volume's root then
takes the image directory's owner and mode (so ``VOLUME /var/lib/postgresql`` stays the
postgres user's).  ``nocopy`` (``-v NAME:/path:nocopy``, ``--mount volume-nocopy``) turns it off.

The image directory is found in the container's mounted root filesystem with chroot semantics
(:class:`~dockyard.containers.fsview.FSView`): a symlink in the image cannot make us copy host
files.  ``cp -a`` does the copy (owners, modes, times, links, devices, xattrs as GNU cp keeps them).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

from dockyard.containers.fsview import FSView
from dockyard.errors import FailedPrecondition, InvalidArgument


def is_empty(path: Path) -> bool:
    try:
        with os.scandir(path) as it:
            return next(it, None) is None
    except OSError:
        return False


def image_dir(rootfs: Path, target: str) -> Path | None:
    """The host path of ``target`` inside ``rootfs`` when it is a directory (symlinks resolved in
    the container), else None."""
    try:
        node = FSView(rootfs).resolve(target, follow=True)
    except (InvalidArgument, OSError):
        return None
    try:
        if node.st is None or not stat.S_ISDIR(node.st.st_mode):
            return None
        return Path(rootfs, *node.real)
    finally:
        node.close()


def copy_up(rootfs: Path, target: str, volume: Path) -> bool:
    """Fill the empty ``volume`` from the image's ``target``; returns whether anything was done.

    Raises FailedPrecondition naming the target when the copy fails (the caller adds the volume)."""
    if not is_empty(volume):
        return False
    src = image_dir(rootfs, target)
    if src is None:
        return False
    st = src.stat()
    if not is_empty(src):
        cp = shutil.which("cp") or "/bin/cp"
        p = subprocess.run([cp, "-a", "--", f"{src}/.", f"{volume}/"], capture_output=True, text=True, check=False)
        if p.returncode != 0:
            raise FailedPrecondition(f"copying the image's content of {target} into the volume: "
                                     f"{p.stderr.strip()}")
    try:  # a driver may not support owners (a blob store): the content matters more
        os.chown(volume, st.st_uid, st.st_gid)
        os.chmod(volume, stat.S_IMODE(st.st_mode))
    except OSError:
        pass
    return True
