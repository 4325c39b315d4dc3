from django.apps import AppConfig


class ProjectConfig(AppConfig):
    """The project's own system checks (no models)."""

    name = "project"

    def ready(self) -> None:
        from project import checks  # noqa: F401  (registers them)
