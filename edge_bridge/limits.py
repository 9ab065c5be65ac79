"""Process limits for a bridge holding thousands of sockets.

Each SSE stream is a socket, and so is each connection to the broker and the database. The
soft limit on open files is often 1024 while the hard limit is far higher: raise the soft
one to the hard one at start, as servers holding many connections do.
"""

from __future__ import annotations

import logging
import resource

logger = logging.getLogger(__name__)


def raise_open_file_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to its hard limit; returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        logger.warning("Open file limit not raised soft=%d hard=%d reason=%s", soft, hard, exc)
        return soft
    logger.info("Open file limit raised from=%d to=%d", soft, hard)
    return hard
