"""Input serializers refuse fields they do not know instead of ignoring them: a client that sends
`score`, `status` or `reviewer` learns at once that the server owns those, rather than believing
it set them. Related objects named by a slug are looked up only with text the database can take."""

from __future__ import annotations

from collections.abc import Mapping

from rest_framework import serializers


class RefuseUnknownFields:
    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            writable = {name for name, f in self.fields.items() if not f.read_only}  # type: ignore[attr-defined]
            unknown = sorted(str(k) for k in data if k not in writable)
            if unknown:
                raise serializers.ValidationError(
                    {
                        name[:100]: ["is not a field the client can set (the server owns it, or it does not exist)"]
                        for name in unknown
                    }
                )
        return super().to_internal_value(data)  # type: ignore[misc]


class SlugRelatedField(serializers.SlugRelatedField):
    """A slug is a string. A NUL character in the looked-up value would make PostgreSQL refuse the
    query itself (a DataError, so a 500 and a broken transaction) instead of finding no row."""

    default_error_messages = {"invalid": "must be a name (a string without NUL characters)"}

    def to_internal_value(self, data):
        if not isinstance(data, str) or "\x00" in data:
            self.fail("invalid")
        return super().to_internal_value(data)
