#!/usr/bin/env python3
"""A FUSE passthrough filesystem whose hard links can be made to misbehave.

    nolinkfs.py BACKING MOUNTPOINT [--link MODE] [--fsyncdir MODE]

Mounts BACKING at MOUNTPOINT in the foreground and mirrors it, until it is
unmounted (fusermount3 -u MOUNTPOINT) or signalled. tests/filesystems.rs
mounts it under a data directory to see what the server does on a
filesystem that lacks something it relies on.

--link MODE, what link(2) does:
  ok       makes a second name for the file, as a local filesystem does
  eperm    fails with EPERM, as object-store mounts (s3fs and the like) do
  enosys   is not implemented, so the kernel answers ENOSYS
  copy     copies the file to the new name instead of naming it again
(A link(2) that replaces an existing name cannot be shown here: the kernel
finds the name and fails with EEXIST before the filesystem is asked.)
--fsyncdir MODE, what fsync(2) of a directory does:
  ok       syncs the backing directory
  einval   fails with EINVAL, as some FUSE filesystems do

Needs mfusepy (PyPI) and libfuse 3, and the right to mount FUSE
filesystems (root, or fusermount3).
"""

import argparse
import errno
import os
import shutil
import sys

import mfusepy


class Passthrough(mfusepy.Operations):
    """Mirrors `root`; `link_mode` and `fsyncdir_mode` are the flags above."""

    use_ns = True

    def __init__(self, root, link_mode, fsyncdir_mode):
        self.root = os.path.realpath(root)
        self.link_mode = link_mode
        self.fsyncdir_mode = fsyncdir_mode

    def _full(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    # Metadata.

    def getattr(self, path, fh=None):
        st = os.fstat(fh) if fh is not None else os.lstat(self._full(path))
        keys = (
            "st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid",
            "st_size", "st_atime_ns", "st_mtime_ns", "st_ctime_ns",
        )
        attrs = {k.replace("_ns", ""): getattr(st, k) for k in keys}
        attrs["st_blocks"] = st.st_blocks
        attrs["st_blksize"] = st.st_blksize
        return attrs

    def access(self, path, amode):
        if not os.access(self._full(path), amode):
            raise mfusepy.FuseOSError(errno.EACCES)
        return 0

    def chmod(self, path, mode):
        os.chmod(self._full(path), mode)
        return 0

    def chown(self, path, uid, gid):
        os.chown(self._full(path), uid, gid, follow_symlinks=False)
        return 0

    def utimens(self, path, times=None):
        os.utime(self._full(path), ns=times, follow_symlinks=False)
        return 0

    def truncate(self, path, length, fh=None):
        if fh is not None:
            os.ftruncate(fh, length)
        else:
            os.truncate(self._full(path), length)
        return 0

    def statfs(self, path):
        st = os.statvfs(self._full(path))
        keys = (
            "f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail",
            "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax",
        )
        return {k: getattr(st, k) for k in keys}

    # Names.

    def mkdir(self, path, mode):
        os.mkdir(self._full(path), mode)
        return 0

    def rmdir(self, path):
        os.rmdir(self._full(path))
        return 0

    def unlink(self, path):
        os.unlink(self._full(path))
        return 0

    def rename(self, old, new):
        os.rename(self._full(old), self._full(new))
        return 0

    def symlink(self, path, target):
        os.symlink(target, self._full(path))
        return 0

    def readlink(self, path):
        return os.readlink(self._full(path))

    def link(self, path, existing):
        src, dst = self._full(existing), self._full(path)
        if self.link_mode == "eperm":
            raise mfusepy.FuseOSError(errno.EPERM)
        if self.link_mode == "copy":
            with open(src, "rb") as r, open(dst, "xb") as w:
                shutil.copyfileobj(r, w)
        else:
            os.link(src, dst)
        return 0

    # Directories.

    def opendir(self, path):
        return os.open(self._full(path), os.O_RDONLY | os.O_DIRECTORY)

    def releasedir(self, path, fh):
        os.close(fh)
        return 0

    def readdir(self, path, fh):
        # Each entry carries its inode number: with use_ino, an entry
        # without one would have inode 0, which readdir(3) skips.
        full = self._full(path)
        for name in [".", ".."] + os.listdir(full):
            st = os.lstat(os.path.join(full, name))
            yield name, {"st_mode": st.st_mode, "st_ino": st.st_ino}, 0

    def fsyncdir(self, path, datasync, fh):
        if self.fsyncdir_mode == "einval":
            raise mfusepy.FuseOSError(errno.EINVAL)
        os.fsync(fh)
        return 0

    # Files.

    def create(self, path, mode, flags):
        return os.open(self._full(path), flags | os.O_CREAT, mode)

    def open(self, path, flags):
        return os.open(self._full(path), flags)

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        return os.pwrite(fh, data, offset)

    def flush(self, path, fh):
        return 0

    def fsync(self, path, datasync, fh):
        if datasync:
            os.fdatasync(fh)
        else:
            os.fsync(fh)
        return 0

    def release(self, path, fh):
        os.close(fh)
        return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("backing")
    parser.add_argument("mountpoint")
    parser.add_argument(
        "--link", default="eperm", choices=["ok", "eperm", "enosys", "copy"]
    )
    parser.add_argument("--fsyncdir", default="ok", choices=["ok", "einval"])
    args = parser.parse_args()
    ops = Passthrough(args.backing, args.link, args.fsyncdir)
    if args.link == "enosys":
        # Without the callback, libfuse answers ENOSYS, as a filesystem that
        # never implemented hard links does.
        ops.link = None
    mfusepy.FUSE(
        ops,
        args.mountpoint,
        foreground=True,
        # Inode numbers of the backing files, so that two names of one file
        # show one inode, as on a local filesystem.
        use_ino=True,
        fsname="nolinkfs",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
