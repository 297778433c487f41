from tests._support.service_fixtures import running_service  # noqa: F401
