"""Settings: URL normalisation, redaction, validation. Pure logic, no database."""

from pathlib import Path

import pytest

from rhesis_pipeline.errors import ConfigurationError
from rhesis_pipeline.settings import Settings, libpq_url, normalise_database_url, redact_url


@pytest.mark.parametrize(
    "raw",
    [
        "postgres://u:p@h:5432/db",
        "postgresql://u:p@h:5432/db",
        "postgresql+psycopg2://u:p@h:5432/db",
        "  postgresql://u:p@h:5432/db  ",
    ],
)
def test_every_accepted_scheme_is_normalised_to_psycopg2(raw):
    assert normalise_database_url(raw) == "postgresql+psycopg2://u:p@h:5432/db"


def test_socket_urls_keep_their_query():
    url = normalise_database_url("postgresql://postgres@/rhesis?host=/tmp/sock")
    assert url == "postgresql+psycopg2://postgres@/rhesis?host=/tmp/sock"
    assert libpq_url(url).startswith("postgresql://postgres@/rhesis?host=")


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("mysql://u@h/db", "scheme 'mysql'"),
        ("postgresql+psycopg://u@h/db", "scheme 'postgresql+psycopg'"),
        ("just-a-word", "is not a URL"),
        ("postgresql://u@h:5432", "names no database"),
        ("postgresql://u@h:notaport/db", "cannot be parsed"),
        ("", "empty"),
    ],
)
def test_bad_urls_are_refused_with_a_message_naming_the_problem(raw, fragment):
    with pytest.raises(ConfigurationError, match=fragment.replace("+", r"\+")):
        normalise_database_url(raw)


def test_password_is_hidden_in_messages():
    assert redact_url("postgresql+psycopg2://u:s3cret@h/db") == "postgresql+psycopg2://u:***@h/db"
    with pytest.raises(ConfigurationError) as info:
        normalise_database_url("postgresql://u:s3cret@h:notaport/db")
    assert "s3cret" not in str(info.value)


def test_defaults_without_environment():
    s = Settings.from_env({})
    assert s.embedded and s.database_url is None
    assert s.worker_threads == 8 and s.worker_processes >= 1
    assert s.queues == ()
    assert s.data_dir.name == "rhesis-pipeline"


def test_values_are_read_and_validated():
    s = Settings.from_env(
        {
            "DATABASE_URL": "postgres://h/db",
            "RHESIS_DATA_DIR": "/srv/rp",
            "RHESIS_WORKER_THREADS": "3",
            "RHESIS_QUEUES": "a, b c",
            "RHESIS_LOG_LEVEL": "debug",
        }
    )
    assert not s.embedded
    assert s.data_dir == Path("/srv/rp")
    assert s.worker_threads == 3
    assert s.queues == ("a", "b", "c")
    assert s.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"RHESIS_WORKER_THREADS": "many"}, "RHESIS_WORKER_THREADS='many' is not a whole number"),
        ({"RHESIS_WORKER_THREADS": "0"}, "must be at least 1"),
        ({"RHESIS_QUEUES": "9bad"}, "not a valid queue name"),
        ({"RHESIS_LOG_LEVEL": "LOUD"}, "RHESIS_LOG_LEVEL"),
        ({"RHESIS_SWEEP_CRON": "0 0 * * 0"}, "Sunday"),
        ({"RHESIS_SWEEP_CRON": "0 0 * * sun"}, "Sunday"),
        ({"RHESIS_SWEEP_CRON": "@weekly"}, "@weekly"),
        ({"RHESIS_SWEEP_CRON": "every minute"}, "not a valid cron"),
        ({"RHESIS_DB_POOL_TIMEOUT": "0"}, "RHESIS_DB_POOL_TIMEOUT"),
    ],
)
def test_invalid_settings_name_the_variable(env, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        Settings.from_env(env)


def test_sunday_written_as_seven_is_accepted():
    assert Settings.from_env({"RHESIS_SWEEP_CRON": "0 3 * * 7"}).sweep_cron == "0 3 * * 7"
