"""OpenAPI post-processing: every operation documents the error answers it can give, in the one
error shape of the API, so clients (and the schema fuzzer in the tests) can rely on it."""

from __future__ import annotations

ERRORS_SCHEMA = {
    "type": "object",
    "required": ["errors"],
    "additionalProperties": False,
    "properties": {
        "errors": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "additionalProperties": False,
                "properties": {
                    "index": {"type": "integer", "minimum": 0, "description": "the row, for batches"},
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
        }
    },
}

ERROR_ANSWERS = {
    "400": "The request is malformed or invalid (every problem listed, nothing stored), or carries a credential in its URL.",
    "401": "No valid token (send Authorization: Token <key>).",
    "403": "The token's user does not have the role this operation needs.",
    "404": "No such object, or one this user may not see.",
    "405": "Method not allowed on this path.",
    "409": "The object's state does not allow this now (decided, or held by another reviewer).",
    "413": "The request body is larger than the limit.",
    "415": "The body is not JSON.",
    "429": "Too many requests for this token; retry after the Retry-After header's seconds.",
    "503": "The database is briefly unreachable; nothing was changed, so retry after the Retry-After header's seconds.",
}


def document_errors(result, generator, request, public):
    result.setdefault("components", {}).setdefault("schemas", {})["Errors"] = ERRORS_SCHEMA
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Errors"}}}
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            for code, description in ERROR_ANSWERS.items():
                responses.setdefault(code, {"description": description, "content": ref})
    return result
