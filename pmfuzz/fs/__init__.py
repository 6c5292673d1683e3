"""The built-in DAX file-system model (target `daxfs`): layout, journal, iomap, DAX paths, reflink, designs, bugs."""

from .config import BUG_ORACLE, Bug, CilMode, Config, Design, LockScheme
from .daxfs import DaxfsTarget, MountedDaxfs

__all__ = ["DaxfsTarget", "MountedDaxfs", "Design", "Bug", "CilMode", "Config", "BUG_ORACLE", "LockScheme"]
