"""Schema details of the events API that its serializers cannot say themselves."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiSerializerExtension


class EventOutputSchema(OpenApiSerializerExtension):
    """An event carries its label as `class`, the seed's name (a Python keyword, so the
    serializer adds it in `to_representation`)."""

    target_class = "events.api.EventOutputSerializer"

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        properties = dict(schema["properties"])
        identifier = properties.pop("id")
        label = {"type": "string", "description": "What was detected, e.g. `person`."}
        schema["properties"] = {"id": identifier, "class": label, **properties}
        schema["required"] = ["id", "class", *(n for n in schema["required"] if n != "id")]
        return schema
