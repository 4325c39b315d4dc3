"""JSON API for the models a chat may be answered with (DRF), and the field that takes one."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from chats.assistants.catalog import ModelChoiceError, chat_model_clean, models_available

MODEL_HELP = "An id from GET /api/v1/models; blank or null: the default model (`default` there)."


@extend_schema_field({"type": "string", "nullable": True, "maxLength": 200})
class ChatModelField(serializers.Field):
    """A model name, checked against the assistant server's list (`chat_model_clean`)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", MODEL_HELP)
        super().__init__(allow_null=True, **kwargs)

    def validate_empty_values(self, data):
        if data is None:
            return True, ""
        return super().validate_empty_values(data)

    def to_internal_value(self, data: object) -> str:
        try:
            return chat_model_clean(data)
        except ModelChoiceError as exc:
            raise serializers.ValidationError(exc.message) from None

    def to_representation(self, value: str) -> str:
        return value


ModelListSerializer = inline_serializer(
    "ModelList",
    {
        "backend": serializers.ChoiceField(choices=["openai", "builtin"]),
        "default": serializers.CharField(help_text="The model of a chat whose `model` is blank."),
        "models": inline_serializer(
            "Model",
            {"id": serializers.CharField(help_text="Pass it as a chat's `model`.")},
            many=True,
        ),
        "error": serializers.CharField(
            allow_null=True,
            help_text="Why the assistant server's list is missing (then only the default is "
            "listed, and any model name is accepted); null when it answered.",
        ),
    },
)


class ModelListApi(APIView):
    @extend_schema(
        summary="List the models a chat can use",
        description="With the `openai` backend, the models the assistant server lists "
        "(GET {OPENAI_BASE_URL}/models, cached for ASSISTANT_MODELS_CACHE_SECONDS); the builtin "
        "backend is one model, `builtin`. Answers 200 even when the server cannot be asked: "
        "`error` then says why.",
        responses=ModelListSerializer,
    )
    def get(self, request):
        catalog = models_available()
        return Response(
            {
                "backend": catalog.backend,
                "default": catalog.default,
                "models": [{"id": model} for model in catalog.models],
                "error": catalog.error,
            }
        )
