"""The one line between errors a retry can mend and errors it cannot.

A run fails for one of two kinds of reason. A server that did not answer, a lock held by
another run or a batch still in flight may be gone in a minute: the task should retry. A
batch the gate rejected, a rule file that does not parse, a source without a required
column or a connection that cannot be read will be exactly as wrong on the next try:
retrying only delays the alert and, on a schedule, fails the same period again. Every error
of the second kind derives from :class:`DataError`; the DAGs turn it into Airflow's
``AirflowFailException`` (fail now, no retries) and the command line into exit status 1.
"""

from __future__ import annotations


class DataError(Exception):
    """The data or the configuration cannot be graded as it stands; trying again will not help."""


class ConnectionConfigError(DataError, ValueError):
    """A configured connection cannot be turned into a database URL (names the connection)."""
