"""Column types every service's tables use, declared once.

``Key`` is text compared byte-wise (collation "C"): ids sort and index the same
whatever the server's locale. ``Timestamp`` is always time-zone aware.
"""

from __future__ import annotations

from sqlalchemy import DateTime, Text

Key = Text(collation="C")
Timestamp = DateTime(timezone=True)
