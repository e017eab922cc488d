"""What the pipeline writes where BI tools read (marts) never identifies a person.

Published tables carry customers by pseudonym (``customer_key``) only. Messages are the
leak to watch: an error quoting a source value can quote a customer's id - or, where a
mapping keys customers by e-mail, the e-mail. Messages name rows by pseudonym at their
source (grading.convert, grading.validation); ``redact`` is the net under them, applied to
every message stored in marts: e-mail addresses and international phone numbers are
masked, and a quoted value that is a known customer id (``ops.customer_keys``) is replaced
by its pseudonym.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.engine import Connection

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
PHONE = re.compile(r"\+\d[\d\s().-]{6,}\d")
# quoted values ('...' or "..."), how messages show source values
_QUOTED = re.compile(r"""(?P<q>['"])(?P<value>[^'"\n]{1,200})(?P=q)""")


def redact(conn: Connection | None, text: str | None) -> str | None:
    """``text`` with e-mails and phone numbers masked and quoted customer ids pseudonymised."""
    if not text:
        return text
    text = PHONE.sub("<phone>", EMAIL.sub("<e-mail>", text))
    quoted = {m.group("value") for m in _QUOTED.finditer(text)}
    if conn is None or not quoted:
        return text
    ids = sa.bindparam("ids", sorted(quoted), expanding=True)
    try:
        keys = dict(conn.execute(sa.text("SELECT customer_id, customer_key FROM ops.customer_keys "
                                         "WHERE customer_id IN :ids").bindparams(ids)).all())
    except sa.exc.DBAPIError:  # a warehouse not migrated yet has no keys to look up
        return text
    if not keys:
        return text
    return _QUOTED.sub(lambda m: f"{m.group('q')}{keys.get(m.group('value'), m.group('value'))}{m.group('q')}", text)
