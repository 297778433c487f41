from tests._support.service_fixtures import running_service, service_factory

__all__ = ["running_service", "service_factory"]
