"""Which errors are data errors: the ones a retry cannot mend, failed at once by the DAGs."""

from __future__ import annotations

import pytest

from grading.convert import SourceDataError
from grading.errors import ConnectionConfigError, DataError
from grading.ledger import BatchInFlight
from grading.periods import PeriodOrderError
from grading.rules.files import RuleError
from grading.sources.model import MappingError
from grading.validation import SuiteError, ValidationFailed
from grading.yamlfile import YamlError


@pytest.mark.parametrize("error", [ValidationFailed, RuleError, SuiteError, MappingError, SourceDataError,
                                   YamlError, PeriodOrderError, ConnectionConfigError])
def test_data_and_configuration_errors_are_data_errors(error):
    assert issubclass(error, DataError)


def test_a_batch_in_flight_is_transient_not_a_data_error():
    """It clears once the other batch has its verdict: the task must retry, not fail."""
    assert not issubclass(BatchInFlight, DataError)


def test_value_errors_stay_value_errors():
    """Callers that caught ValueError before the base class existed still catch these."""
    assert issubclass(RuleError, ValueError)
    assert issubclass(ConnectionConfigError, ValueError)
