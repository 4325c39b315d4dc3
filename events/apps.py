from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "events"

    def ready(self) -> None:
        # The assistant's knowledge of session data: a summary for its system prompt, and
        # answers and tools scoped to the chat's organization (see events/assistant.py).
        from chats.selectors import context_provider_register, data_provider_register
        from events.assistant import EventsAssistantData, session_data_facts

        context_provider_register(session_data_facts)
        data_provider_register(EventsAssistantData)

        # Cameras knows nothing of events: every processed frame, captured or pushed, reaches
        # the recorder as a frame receiver (cameras/receivers.py), and a deleted camera's
        # events, snapshot files included, go just before it.
        from django.db.models.signals import pre_delete

        from cameras.models import Camera
        from cameras.receivers import frame_receiver_register
        from events.clips import ClipReceiver
        from events.recording import RecorderReceiver
        from events.services import camera_events_delete_before_camera

        frame_receiver_register(RecorderReceiver())
        # Each tracked event's clip, from a ring of recent frames (events/clips.py).
        frame_receiver_register(ClipReceiver())
        pre_delete.connect(
            camera_events_delete_before_camera,
            sender=Camera,
            dispatch_uid="events.camera_events_delete_before_camera",
        )
