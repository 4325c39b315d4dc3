from django.apps import AppConfig


class OrganizationsConfig(AppConfig):
    name = "organizations"
    verbose_name = "Organizations"

    def ready(self) -> None:
        # Removing a member, revoking a token, deactivating a user or lowering a role closes
        # their open sockets and streams, whichever path made the change.
        from organizations import revocation_signals

        revocation_signals.connect()
