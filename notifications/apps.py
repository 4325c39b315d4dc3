from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        # The recorder tells what it wrote (events.signals); alerts are raised in its
        # transaction (notifications/matching.py).
        from events.signals import events_recorded
        from notifications.matching import alerts_raise

        events_recorded.connect(alerts_raise, dispatch_uid="notifications.alerts_raise")

        # Once committed, the bell's sockets hear of the browser alerts (notifications/browser.py).
        from notifications.browser import alerts_push
        from notifications.services import alerts_raised

        alerts_raised.connect(alerts_push, dispatch_uid="notifications.alerts_push")
