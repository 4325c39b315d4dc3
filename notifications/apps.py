from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        # The recorder tells what it wrote (events.signals); alerts are raised in its
        # transaction (notifications/matching.py).
        from events.signals import events_recorded
        from notifications.delivery import deliveries_wake
        from notifications.matching import alerts_raise
        from notifications.services import alerts_raised

        events_recorded.connect(alerts_raise, dispatch_uid="notifications.alerts_raise")

        # The assistant's knowledge of alerts (notifications/assistant.py): chats takes one data
        # source, and this one extends the events' one; INSTALLED_APPS lists events first, so
        # this registration, made later, is the one that stays.
        from chats.selectors import context_provider_register, data_provider_register
        from notifications.assistant import AlertsAssistantData, alert_facts

        context_provider_register(alert_facts)
        data_provider_register(AlertsAssistantData)
        # A rule or webhook changed in this process is matched with at once, not after the
        # rules cache's time (notifications.matching.RULES_CACHE_SECONDS).
        from django.db.models.signals import m2m_changed, post_delete, post_save

        from notifications.matching import rules_cache_clear
        from notifications.models import AlertRule, Webhook

        for model in (AlertRule, Webhook):
            for signal in (post_save, post_delete):
                signal.connect(
                    rules_cache_clear, sender=model, dispatch_uid=f"rules-{signal}-{model}"
                )
            m2m_changed.connect(
                rules_cache_clear, sender=model.cameras.through, dispatch_uid=f"rules-m2m-{model}"
            )

        # MQTT (notifications/mqtt.py): these receivers do nothing unless this process
        # publishes (MQTT_URL set, and the process records: daphne with CAMERAS_IN_PROCESS, or
        # runcameras).
        from cameras.models import Camera
        from cameras.receivers import frame_receiver_register
        from notifications.mqtt import (
            MqttFrameReceiver,
            mqtt_alerts_raised,
            mqtt_camera_deleted,
            mqtt_events_recorded,
        )

        frame_receiver_register(MqttFrameReceiver())
        events_recorded.connect(mqtt_events_recorded, dispatch_uid="notifications.mqtt_events")
        alerts_raised.connect(mqtt_alerts_raised, dispatch_uid="notifications.mqtt_alerts")
        post_delete.connect(
            mqtt_camera_deleted, sender=Camera, dispatch_uid="notifications.mqtt_camera_deleted"
        )

        # A webhook alert raised in this process wakes its delivery worker at once.
        alerts_raised.connect(deliveries_wake, dispatch_uid="notifications.deliveries_wake")

        # Once committed, the bell's sockets hear of the browser alerts (notifications/browser.py).
        from notifications.browser import alerts_push

        alerts_raised.connect(alerts_push, dispatch_uid="notifications.alerts_push")
